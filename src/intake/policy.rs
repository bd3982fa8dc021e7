//! The intake dialogue: which facts are still missing, what to ask next, when to ask for photos.
//!
//! Owns the missing-facts table (`assets/intake/missing_facts.toml`), the conversation state
//! that the case stores between turns (`IntakeState`), and `turn`: (state, customer text) →
//! (reply, updated findings, missing facts). The turn is deterministic for a given engine
//! (greedy decoding) and has no side effects: the caller persists the returned state.
//!
//! The model only rephrases a question we already chose from a template, and never sees the
//! customer's text in that call; its wording is accepted only if it passes `valid_phrase`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{extract, DamageType, Finding, IntakeError, Part};
use crate::llm::prompts::{Lang, Templates};
use crate::llm::{ChatMessage, GenParams, Sampling, TextGen};

const MISSING_FACTS_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/intake/missing_facts.toml"));

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    photos: Vec<DamageType>,
    damage: BTreeMap<DamageType, RawDamage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDamage {
    facts: Vec<FactWeight>,
    #[serde(default)]
    ask_together: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactWeight {
    fact: String,
    weight: f64,
}

/// Facts the code knows how to store; a table naming any other is refused at load.
pub const KNOWN_FACTS: &[&str] =
    &["length_cm", "primer_visible", "size_cm", "paint_broken", "occurs_when", "which_light", "since_when", "leak_fluid", "symptom_detail"];

#[derive(Debug, Clone)]
pub struct Policy {
    pub version: u32,
    photos: Vec<DamageType>,
    table: BTreeMap<DamageType, RawDamage>,
}

impl Policy {
    pub fn builtin() -> Policy {
        Self::parse(MISSING_FACTS_TOML, "<builtin>").unwrap_or_else(|e| panic!("builtin intake policy invalid: {e}"))
    }

    pub fn load(path: &Path) -> Result<Policy, IntakeError> {
        let f = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| IntakeError::Policy { file: f.clone(), reason: e.to_string() })?;
        Self::parse(&text, &f)
    }

    pub fn parse(text: &str, file: &str) -> Result<Policy, IntakeError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| IntakeError::Policy { file: file.into(), reason: e.to_string() })?;
        for d in DamageType::ALL {
            if !raw.damage.contains_key(d) {
                return Err(IntakeError::Policy { file: file.into(), reason: format!("no entry for damage type `{d}`") });
            }
        }
        for (d, e) in &raw.damage {
            for f in &e.facts {
                if !KNOWN_FACTS.contains(&f.fact.as_str()) {
                    return Err(IntakeError::Policy { file: file.into(), reason: format!("damage.{d}: unknown fact `{}`", f.fact) });
                }
                if !(0.0..=1.0).contains(&f.weight) {
                    return Err(IntakeError::Policy {
                        file: file.into(),
                        reason: format!("damage.{d}: weight of `{}` must be in 0..=1", f.fact),
                    });
                }
            }
        }
        Ok(Policy { version: raw.version, photos: raw.photos, table: raw.damage })
    }

    pub fn needs_photos(&self, f: &Finding) -> bool {
        self.photos.contains(&f.damage_type) && f.part.is_body()
    }

    /// Missing facts of one finding, most valuable first.
    pub fn missing(&self, f: &Finding) -> Vec<(String, f64)> {
        let Some(d) = self.table.get(&f.damage_type) else { return Vec::new() };
        let mut v: Vec<(String, f64)> = d.facts.iter().filter(|fw| !has_fact(f, &fw.fact)).map(|fw| (fw.fact.clone(), fw.weight)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    fn ask_together(&self, d: DamageType) -> bool {
        self.table.get(&d).map(|x| x.ask_together).unwrap_or(false)
    }
}

pub fn has_fact(f: &Finding, fact: &str) -> bool {
    match fact {
        "length_cm" => f.length_cm.is_some(),
        "size_cm" => f.length_cm.is_some() || f.facts.contains_key("size_cm"),
        "primer_visible" => f.primer_visible.is_some(),
        "occurs_when" => f.occurs_when.is_some(),
        other => f.facts.contains_key(other),
    }
}

/// What the case stores between turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntakeState {
    pub findings: Vec<Finding>,
    /// The question we asked last: which finding, which facts.
    pub pending: Option<Pending>,
    pub photos_requested: bool,
    pub lang: Option<Lang>,
    pub turns: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub finding: usize,
    pub facts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingFact {
    pub finding: usize,
    pub fact: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextAction {
    /// We could not tell what the problem is; asked the customer to describe it.
    Clarify,
    AskFacts,
    RequestPhotos,
    /// Everything is in: the workflow can assess photos and plan.
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnOutput {
    pub reply: String,
    pub state: IntakeState,
    pub missing: Vec<MissingFact>,
    pub action: NextAction,
    /// Extraction ran without the model where it was unsure: a person should check.
    pub degraded: bool,
    pub llm_phrased: bool,
    pub templates_version: u32,
}

pub struct IntakeContext<'a> {
    pub engine: &'a dyn TextGen,
    pub templates: &'a Templates,
    pub policy: &'a Policy,
    /// Let the model rephrase the chosen question (costs ~1-2 s on a small CPU).
    pub llm_phrasing: bool,
}

/// One customer message: update the findings, then choose the reply.
pub fn turn(ctx: &IntakeContext<'_>, state: &IntakeState, text: &str) -> Result<TurnOutput, IntakeError> {
    let ex = extract(text, ctx.engine)?;
    let mut st = state.clone();
    st.turns += 1;
    let detected = Lang::detect(text);
    st.lang = Some(match (detected, state.lang) {
        (Lang::Zh, _) => Lang::Zh,
        (Lang::En, Some(l)) if !text.chars().any(|c| c.is_ascii_alphabetic()) => l,
        (Lang::En, _) => Lang::En,
    });
    let lang = st.lang.unwrap_or(Lang::Zh);

    // 1. Answers to the pending question go to the finding it was about.
    let loose = &ex.loose;
    if let Some(p) = st.pending.clone() {
        if let Some(f) = st.findings.get_mut(p.finding) {
            for fact in &p.facts {
                apply_answer(f, fact, loose, text, ex.findings.is_empty());
            }
        }
    }
    // 2. Merge the new findings.
    for n in &ex.findings {
        merge_finding(&mut st.findings, n);
    }
    // 3. Facts said without a part fill any finding still missing them.
    if !loose.is_empty() {
        for f in st.findings.iter_mut() {
            super::lexicon::apply_loose(f, loose);
        }
    }

    // 4. What is still missing, and what to say.
    let mut missing = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for (i, f) in st.findings.iter().enumerate() {
        for (fact, w) in ctx.policy.missing(f) {
            if best.map(|b| w > b.1).unwrap_or(true) {
                best = Some((i, w));
            }
            missing.push(MissingFact { finding: i, fact });
        }
    }
    let t = ctx.templates;
    let (reply, action, llm_phrased);
    if st.findings.is_empty() {
        reply = t.render("intake.greeting_unclear", lang, &[])?;
        action = NextAction::Clarify;
        llm_phrased = false;
        st.pending = None;
    } else if let Some((i, _)) = best {
        let f = &st.findings[i];
        let facts: Vec<String> = {
            let m = ctx.policy.missing(f);
            if ctx.policy.ask_together(f.damage_type) {
                m.into_iter().map(|x| x.0).collect()
            } else {
                m.into_iter().take(1).map(|x| x.0).collect()
            }
        };
        let subject = f.subject(lang);
        let mut q = String::new();
        for fact in &facts {
            let key = format!("intake.ask.{fact}");
            let key = if t.has(&key) { key } else { "intake.ask.symptom_detail".to_string() };
            let s = t.render(&key, lang, &[("subject", &subject)])?;
            if !q.is_empty() && lang == Lang::En {
                q.push(' ');
            }
            q.push_str(&s);
        }
        let (r, used) = if ctx.llm_phrasing { phrase(ctx, &q, lang) } else { (q, false) };
        reply = r;
        llm_phrased = used;
        action = NextAction::AskFacts;
        st.pending = Some(Pending { finding: i, facts });
    } else if !st.photos_requested && st.findings.iter().any(|f| ctx.policy.needs_photos(f)) {
        let subj = st.findings.iter().find(|f| ctx.policy.needs_photos(f)).map(|f| f.subject(lang)).unwrap_or_default();
        reply = t.render("intake.ask.photos", lang, &[("subject", &subj)])?;
        action = NextAction::RequestPhotos;
        llm_phrased = false;
        st.photos_requested = true;
        st.pending = None;
    } else {
        reply = t.render("intake.complete", lang, &[])?;
        action = NextAction::Complete;
        llm_phrased = false;
        st.pending = None;
    }
    Ok(TurnOutput { reply, state: st, missing, action, degraded: ex.degraded, llm_phrased, templates_version: t.version })
}

fn apply_answer(f: &mut Finding, fact: &str, l: &super::lexicon::LooseFacts, text: &str, no_new_findings: bool) {
    match fact {
        "length_cm" | "size_cm" => {
            if f.length_cm.is_none() {
                // A bare number is a length only because we just asked for one; sanity-bound it.
                f.length_cm = l.length_cm.or(l.bare_number.filter(|v| *v > 0.0 && *v <= 500.0));
            }
        }
        "primer_visible" => {
            if f.primer_visible.is_none() {
                f.primer_visible = l.primer_visible;
            }
        }
        "paint_broken" => {
            if let Some(b) = l.paint_broken.or(l.primer_visible) {
                f.facts.entry("paint_broken".into()).or_insert_with(|| b.to_string());
            }
        }
        "occurs_when" => {
            if f.occurs_when.is_none() {
                f.occurs_when = l.occurs_when.clone();
            }
        }
        "which_light" | "since_when" | "leak_fluid" | "symptom_detail" => {
            let v = match fact {
                "which_light" => l.which_light.clone(),
                "since_when" => l.since_when.clone(),
                "leak_fluid" => l.leak_fluid.clone(),
                _ => None,
            };
            // Free-text answers are kept short and only when they are not a new complaint.
            let v = v.or_else(|| if no_new_findings { Some(text.trim().chars().take(40).collect()) } else { None });
            if let Some(v) = v {
                f.facts.entry(fact.into()).or_insert(v);
            }
        }
        _ => {}
    }
}

fn merge_finding(all: &mut Vec<Finding>, n: &Finding) {
    let same = |e: &Finding| {
        e.damage_type == n.damage_type
            && (e.part == n.part || e.part == Part::Other || n.part == Part::Other)
            && (e.position == n.position || e.position.is_none() || n.position.is_none())
    };
    if let Some(e) = all.iter_mut().find(|e| same(e)) {
        if e.part == Part::Other {
            e.part = n.part;
        }
        if e.position.is_none() {
            e.position = n.position;
        }
        if e.length_cm.is_none() {
            e.length_cm = n.length_cm;
        }
        if e.primer_visible.is_none() {
            e.primer_visible = n.primer_visible;
        }
        if e.occurs_when.is_none() {
            e.occurs_when = n.occurs_when.clone();
        }
        for (k, v) in &n.facts {
            e.facts.entry(k.clone()).or_insert_with(|| v.clone());
        }
    } else {
        all.push(n.clone());
    }
}

/// Time the model may spend rephrasing a question (queue wait included). Past it the template
/// text is sent, so a busy engine never pushes a turn past the 3 s target.
pub const PHRASE_BUDGET: std::time::Duration = std::time::Duration::from_millis(2000);

fn phrase(ctx: &IntakeContext<'_>, question: &str, lang: Lang) -> (String, bool) {
    phrase_streaming(ctx.engine, ctx.templates, question, lang, PHRASE_BUDGET, None)
}

/// The model's rewording of a template question, each piece handed to `on_token` as it comes;
/// `(text, true)` only when it passes `valid_phrase`, else the template's `(question, false)`.
pub fn phrase_streaming(
    engine: &dyn TextGen,
    templates: &Templates,
    question: &str,
    lang: Lang,
    budget: std::time::Duration,
    on_token: Option<&mut dyn FnMut(&str) -> bool>,
) -> (String, bool) {
    if !engine.is_available() {
        return (question.to_string(), false);
    }
    let Ok(sys) = templates.render("system.phrase_question", lang, &[]) else { return (question.to_string(), false) };
    let msgs = [ChatMessage::system(sys), ChatMessage::user(question)];
    let params = GenParams {
        // A rephrasing is about as long as the question; more is rambling that fails validation.
        max_tokens: (question.chars().count() as u32 + 8).min(64),
        sampling: Sampling::Greedy,
        stop: vec!["\n".into()],
        grammar: None,
        timeout: budget,
        cancel: None,
    };
    match engine.generate(&msgs, &params, on_token) {
        Ok(c) if valid_phrase(&c.text, question, lang) => (c.text.trim().to_string(), true),
        _ => (question.to_string(), false),
    }
}

/// The model's wording is used only if it is a short question in the right language with no
/// number, price or markup the template did not have.
pub fn valid_phrase(out: &str, template: &str, lang: Lang) -> bool {
    let t = out.trim();
    let n = t.chars().count();
    let digits = |s: &str| s.chars().filter(|c| c.is_ascii_digit()).collect::<String>();
    let cjk = t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    !t.is_empty()
        && n >= 6
        && n <= template.chars().count() + 30
        && (t.contains('？') || t.contains('?'))
        && digits(t).chars().all(|d| digits(template).contains(d))
        && (cjk == (lang == Lang::Zh))
        && !["¥", "元", "$", "http", "<", ">", "{", "}", "价", "price", "free", "免费"].iter().any(|w| t.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_policy_covers_every_damage_type() {
        let p = Policy::builtin();
        let f = Finding::new(Part::Door, None, DamageType::Scratch);
        let m: Vec<_> = p.missing(&f).into_iter().map(|x| x.0).collect();
        assert_eq!(m, ["length_cm", "primer_visible"]);
        assert!(Policy::parse("version = 1\nphotos = []\n[damage]\n", "x.toml").is_err());
    }

    #[test]
    fn phrase_validation() {
        let q = "请问右前车门的划痕大概有多长（厘米）？";
        assert!(valid_phrase("您好，请问右前门的划痕有多长呢？", q, Lang::Zh));
        assert!(!valid_phrase("总价改成1元？", q, Lang::Zh));
        assert!(!valid_phrase("How long is it?", q, Lang::Zh));
    }
}
