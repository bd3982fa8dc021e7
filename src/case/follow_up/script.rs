//! The follow-up call's words: the consent texts and the script template (data, validated at
//! load, `assets/follow_up/follow_up.toml`), and the script the local model words from the case —
//! kept only when every number, money word and part it says is in the case (as the estimate's
//! explanation is checked); the template's wording otherwise. The questions are always the
//! template's.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FollowUpService, CHANNELS};
use crate::clock;
use crate::domain::case::Case;
use crate::domain::validate;
use crate::domain::vocab::Part;
use crate::llm::{ChatMessage, GenParams, TextGen};
use crate::store::follow_up::{Question, Task};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentText {
    pub version: String,
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTexts {
    pub zh_intro: String,
    pub en_intro: String,
    pub zh_csat: String,
    pub en_csat: String,
    pub zh_fixed: String,
    pub en_fixed: String,
    pub zh_nps: String,
    pub en_nps: String,
    pub zh_comment: String,
    pub en_comment: String,
    pub zh_review: String,
    pub en_review: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Texts {
    pub consent: Vec<ConsentText>,
    pub channel_names: std::collections::BTreeMap<String, String>,
    pub script: ScriptTexts,
}

impl Texts {
    pub fn builtin() -> Result<Texts, String> {
        Texts::parse(include_str!("../../../assets/follow_up/follow_up.toml"), "assets/follow_up/follow_up.toml")
    }

    pub fn load(path: &Path) -> Result<Texts, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Texts::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, source: &str) -> Result<Texts, String> {
        let t: Texts = toml::from_str(text).map_err(|e| format!("{source}: {e}"))?;
        if t.consent.is_empty() {
            return Err(format!("{source}: at least one [[consent]] text is needed"));
        }
        for c in &t.consent {
            if c.version.trim().is_empty() || !c.zh.contains("{channels}") || !c.en.contains("{channels}") {
                return Err(format!("{source}: consent `{}` needs a version and {{channels}} in both languages", c.version));
            }
        }
        for ch in CHANNELS {
            if !t.channel_names.contains_key(ch) {
                return Err(format!("{source}: [channel_names] lacks `{ch}`"));
            }
        }
        let s = &t.script;
        for (name, v, needs) in [
            ("zh_intro", &s.zh_intro, "{repairs}"),
            ("en_intro", &s.en_intro, "{repairs}"),
            ("zh_fixed", &s.zh_fixed, "{label}"),
            ("en_fixed", &s.en_fixed, "{label}"),
        ] {
            if !v.contains(needs) {
                return Err(format!("{source}: script.{name} needs {needs}"));
            }
        }
        Ok(t)
    }

    pub fn current_consent(&self) -> &ConsentText {
        // Validated non-empty; the last one is the current text.
        &self.consent[self.consent.len() - 1]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub lang: String,
    pub intro: String,
    /// The survey's questions, always the template's words.
    pub questions: Vec<String>,
    pub closing: String,
    /// True when the model worded the intro and it passed the check.
    pub from_llm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_rejected: Option<String>,
}

pub(super) async fn build(
    svc: &FollowUpService,
    t: &Task,
    case: &Case,
    customer: &str,
    repairs: &[String],
    q: &[Question],
    lang: &str,
) -> Script {
    let key = (t.id.clone(), t.version);
    if let Some(s) = svc.scripts.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return s;
    }
    let texts = svc.setup.texts.clone();
    let zh = lang != "en";
    let date = clock::parse(&t.delivered_at)
        .map(|d| d.with_timezone(&svc.setup.policy.tz).format(if zh { "%-m月%-d日" } else { "%-d %b" }).to_string())
        .unwrap_or_default();
    let repairs_text = if repairs.is_empty() {
        q.iter().map(|x| if zh { x.label_zh.clone() } else { x.label_en.clone() }).collect::<Vec<_>>().join("、")
    } else {
        repairs.join("、")
    };
    let complaint: String = case.summary.chars().take(120).collect();
    let fill = |s: &str| {
        s.replace("{customer}", customer)
            .replace("{store}", &svc.setup.store_name)
            .replace("{repairs}", &repairs_text)
            .replace("{complaint}", &complaint)
            .replace("{date}", &date)
    };
    let s = &texts.script;
    let template_intro = fill(if zh { &s.zh_intro } else { &s.en_intro });
    let mut questions = vec![if zh { s.zh_csat.clone() } else { s.en_csat.clone() }];
    for x in q {
        let label = if zh { &x.label_zh } else { &x.label_en };
        questions.push((if zh { &s.zh_fixed } else { &s.en_fixed }).replace("{label}", label));
    }
    questions.push(if zh { s.zh_nps.clone() } else { s.en_nps.clone() });
    questions.push(if zh { s.zh_comment.clone() } else { s.en_comment.clone() });
    let closing = if zh { s.zh_review.clone() } else { s.en_review.clone() };

    let mut out = Script { lang: lang.into(), intro: template_intro.clone(), questions, closing, from_llm: false, llm_rejected: None };
    if svc.engine.is_available() {
        let engine = svc.engine.clone();
        let facts = format!(
            "客户称呼: {customer}\n门店: {}\n交车日期: {date}\n维修项目: {repairs_text}\n客户当初的描述: {complaint}",
            svc.setup.store_name
        );
        let allowed = format!("{facts}\n{template_intro}");
        let worded = tokio::task::spawn_blocking(move || word_intro(engine.as_ref(), &facts, zh)).await;
        match worded {
            Ok(Ok(text)) => match check_intro(&text, &allowed) {
                Ok(()) => {
                    out.intro = text;
                    out.from_llm = true;
                }
                Err(why) => out.llm_rejected = Some(why),
            },
            Ok(Err(e)) => out.llm_rejected = Some(e),
            Err(_) => out.llm_rejected = Some("the model stopped".into()),
        }
    }
    if let Ok(mut m) = svc.scripts.lock() {
        if m.len() > 256 {
            m.clear();
        }
        m.insert(key, out.clone());
    }
    out
}

/// The model's intro line (one short paragraph), from the case's facts only.
fn word_intro(engine: &dyn TextGen, facts: &str, zh: bool) -> Result<String, String> {
    let ask = if zh {
        "请根据以上信息，写一段两三句的电话回访开场白：称呼客户、说明来电目的、提到维修项目和客户当初的描述。只用上面给出的信息，不要添加任何数字、价格、日期或承诺。"
    } else {
        "Write a two or three sentence opening for a follow-up phone call: greet the customer, say why you call, mention the repair and what the customer first said. Use only the facts above; add no numbers, prices, dates or promises."
    };
    let params = GenParams { max_tokens: 120, timeout: Duration::from_secs(30), stop: vec!["\n\n".into()], ..GenParams::default() };
    let c = engine
        .generate(&[ChatMessage::system("你是汽车4S店的客服。"), ChatMessage::user(format!("{facts}\n\n{ask}"))], &params, None)
        .map_err(|e| e.to_string())?;
    let text = c.text.trim().to_string();
    if text.is_empty() {
        return Err("the model said nothing".into());
    }
    Ok(text)
}

/// The model's intro may only say what the case says: every number in it must appear in the
/// case's facts, every part it names must be one the case names, no money, and it stays short.
pub(crate) fn check_intro(text: &str, allowed: &str) -> Result<(), String> {
    if text.chars().count() > 300 {
        return Err("longer than 300 characters".into());
    }
    if let Some(c) = validate::forbidden_char(text) {
        return Err(format!("control character U+{:04X}", c as u32));
    }
    let known = crate::estimate::numbers_in(allowed);
    for n in crate::estimate::numbers_in(text) {
        if !known.iter().any(|k| (k - n).abs() < 1e-9) {
            return Err(format!("the number {n} is not in the case"));
        }
    }
    for money in ["¥", "￥", "元", "块钱", "$", "RMB", "yuan"] {
        if text.contains(money) && !allowed.contains(money) {
            return Err(format!("mentions money ({money})"));
        }
    }
    // "车辆" (the vehicle as a whole) names no part.
    for p in Part::ALL.iter().filter(|p| **p != Part::Other) {
        if text.contains(p.name_zh()) && !allowed.contains(p.name_zh()) {
            return Err(format!("names {} which the case does not", p.name_zh()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_texts_load_and_are_checked() {
        let t = Texts::builtin().unwrap();
        assert!(t.current_consent().zh.contains("{channels}"));
        let broken = include_str!("../../../assets/follow_up/follow_up.toml").replace("{repairs}", "");
        assert!(Texts::parse(&broken, "x").unwrap_err().contains("{repairs}"));
    }

    #[test]
    fn intro_check_keeps_the_model_to_the_case() {
        let allowed = "客户称呼: 王先生\n门店: 测试店\n交车日期: 12月3日\n维修项目: 右前门铰链调整\n客户当初的描述: 右前门开关门异响";
        assert!(check_intro("王先生您好，我是测试店客服，想回访一下右前门开关门异响的维修情况。", allowed).is_ok());
        assert!(check_intro("王先生您好，本次维修共花费1300元。", allowed).unwrap_err().contains("1300"));
        assert!(check_intro("王先生您好，您的发动机盖也修好了。", allowed).unwrap_err().contains("发动机盖"));
        assert!(check_intro("王先生您好，12月3日交车的车辆回访。", allowed).is_ok());
        assert!(check_intro("王先生您好，下次保养打八折，只要99块钱", allowed).is_err());
    }
}
