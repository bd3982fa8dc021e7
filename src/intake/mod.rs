//! Guided intake: what the customer says → structured findings → the next question.
//!
//! Speaks the domain vocabulary (`domain::vocab`, re-exported here for the extractor's callers). Owns
//! extraction (`extract`: a deterministic Chinese/English lexicon pass as the
//! backbone, with the grammar-constrained LLM consulted only where the lexicon is unsure), the
//! `servicebay intake extract` entry point (`cli_extract`), and the dialogue turn (`policy`).
//!
//! Safety: customer text is only ever data. It goes into a user turn of the extraction prompt,
//! the model's answer is parsed against a closed vocabulary (anything else is dropped), and
//! nothing in this module can touch prices, case states or roles.

pub mod eval;
mod homophone;
pub mod lexicon;
pub mod policy;

use serde::{Deserialize, Serialize};

use crate::llm::{ChatMessage, GenParams, LlmError, Sampling, TextGen};

pub use crate::domain::vocab::{DamageType, Finding, Part, Position};

/// Exactly the wire form of `servicebay intake extract`: the six schema fields, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractedFinding {
    pub part: Part,
    pub position: Option<Position>,
    pub damage_type: DamageType,
    pub length_cm: Option<f64>,
    pub primer_visible: Option<bool>,
    pub occurs_when: Option<String>,
}

impl From<&Finding> for ExtractedFinding {
    fn from(f: &Finding) -> Self {
        ExtractedFinding {
            part: f.part,
            position: f.position,
            damage_type: f.damage_type,
            length_cm: f.length_cm,
            primer_visible: f.primer_visible,
            occurs_when: f.occurs_when.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractionJson {
    pub findings: Vec<ExtractedFinding>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the text is empty")]
    EmptyText,
    #[error("the text is too long ({0} characters, at most {MAX_TEXT_CHARS})")]
    TooLong(usize),
    #[error("intake policy file {file}: {reason}")]
    Policy { file: String, reason: String },
    #[error("template: {0}")]
    Template(#[from] crate::llm::prompts::TemplateError),
    #[error("cannot encode the result: {0}")]
    Encode(String),
}

/// Longer texts are not a customer message; refusing them bounds the work per call.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Result of extraction, with how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction {
    pub findings: Vec<Finding>,
    /// Facts without a part ("大概30公分", "开关门的时候"): answers to the last question.
    pub loose: lexicon::LooseFacts,
    /// True when the lexicon was unsure and no model could help: a person should look.
    pub degraded: bool,
    /// True when the model's answer was merged in.
    pub llm_used: bool,
    /// Why the model was not used, when it was wanted.
    pub llm_error: Option<String>,
}

/// Extraction: the lexicon decides; the model fills what the lexicon could not.
pub fn extract(text: &str, engine: &dyn TextGen) -> Result<Extraction, IntakeError> {
    extract_with(&lexicon::active(), text, engine)
}

/// `extract` with the lexicon given (a candidate lexicon being scored, see `lexicon::gate`).
pub fn extract_with(lexicon: &lexicon::Lexicon, text: &str, engine: &dyn TextGen) -> Result<Extraction, IntakeError> {
    let text = check_text(text)?;
    let lex = lexicon::analyse_with(lexicon, text);
    let mut out =
        Extraction { findings: lex.findings.clone(), loose: lex.loose.clone(), degraded: false, llm_used: false, llm_error: None };
    if !lex.unsure {
        return Ok(out);
    }
    if !engine.is_available() {
        out.degraded = true;
        return Ok(out);
    }
    match llm_extract(text, engine) {
        Ok(llm) => {
            out.llm_used = true;
            out.findings = merge_llm(&lex.findings, &llm, &lex);
        }
        Err(e) => {
            out.degraded = true;
            out.llm_error = Some(e.to_string());
        }
    }
    Ok(out)
}

/// The model alone, no lexicon (the evaluation's comparison column; not used by the product).
pub fn extract_llm_only(text: &str, engine: &dyn TextGen) -> Result<Extraction, IntakeError> {
    let text = check_text(text)?;
    let mut out = Extraction { findings: Vec::new(), loose: Default::default(), degraded: false, llm_used: true, llm_error: None };
    match llm_extract(text, engine) {
        Ok(v) => out.findings = v.iter().map(|l| Finding::new(l.part, l.position, l.damage_type)).collect(),
        Err(e) => {
            out.degraded = true;
            out.llm_error = Some(e.to_string());
        }
    }
    Ok(out)
}

fn check_text(text: &str) -> Result<&str, IntakeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(IntakeError::EmptyText);
    }
    let n = t.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(IntakeError::TooLong(n));
    }
    Ok(t)
}

/// `servicebay intake extract [--json] TEXT`: JSON of the schema, or a short human summary.
pub fn cli_extract(text: &str, json: bool, engine: &dyn TextGen) -> Result<String, IntakeError> {
    let ex = extract(text, engine)?;
    let doc = ExtractionJson { findings: ex.findings.iter().map(ExtractedFinding::from).collect() };
    if json {
        return serde_json::to_string(&doc).map_err(|e| IntakeError::Encode(e.to_string()));
    }
    let mut s = String::new();
    for f in &doc.findings {
        s.push_str(&format!(
            "- {} {} {}{}{}{}\n",
            f.position.map(|p| p.id()).unwrap_or("-"),
            f.part,
            f.damage_type,
            f.length_cm.map(|l| format!(" length={l}cm")).unwrap_or_default(),
            f.primer_visible.map(|p| format!(" primer_visible={p}")).unwrap_or_default(),
            f.occurs_when.as_ref().map(|w| format!(" when={w}")).unwrap_or_default(),
        ));
    }
    if doc.findings.is_empty() {
        s.push_str("(no findings)\n");
    }
    if ex.degraded {
        s.push_str("degraded: no language model; the lexicon was unsure, a person should check\n");
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// The model's part of extraction.

/// Compact output "part position damage" per finding, ';'-separated: short outputs are fast
/// (about 21 tokens/s here) and the grammar keeps every word inside the vocabulary.
pub fn extraction_grammar() -> String {
    let alt = |ids: Vec<&str>| ids.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(" | ");
    let mut positions: Vec<&str> = Position::ALL.iter().map(|p| p.id()).collect();
    positions.push("none");
    format!(
        "root ::= finding (\";\" finding){{0,3}}\nfinding ::= part \" \" position \" \" damage\npart ::= {}\nposition ::= {}\ndamage ::= {}\n",
        alt(Part::ALL.iter().map(|p| p.id()).collect()),
        alt(positions),
        alt(DamageType::ALL.iter().map(|d| d.id()).collect()),
    )
}

/// Fixed system prompt + few-shot examples: identical on every call, so the engine keeps their
/// KV cache and a turn costs only the new user text.
pub fn extraction_prefix() -> Vec<ChatMessage> {
    let sys = "Extract car problems. Output: part position damage; separated by ';'.\n\
part: bumper(保险杠) hood(发动机盖/引擎盖) trunk_lid(后备箱) roof(车顶) windshield(前挡风玻璃) rear_windshield(后挡) door(车门) fender(翼子板) quarter_panel(后叶子板) headlight(大灯) taillight(尾灯) mirror(后视镜) wheel_rim(轮毂) tire(轮胎) engine(发动机) transmission(变速箱) brakes(刹车) suspension(底盘/减震) steering(方向盘) air_conditioning(空调) electrical(电瓶/电路) infotainment(中控/车机) other\n\
position: left_front right_front left_rear right_rear front rear left right none\n\
damage: scratch(划痕) dent(凹陷) crack(裂) paint_damage(掉漆) broken(碎/坏) abnormal_noise(异响) leak(漏) warning_light(故障灯) vibration(抖) not_working(不工作) other";
    let shots = [
        ("我的车右前门有刮痕，还有异响", "door right_front scratch;door right_front abnormal_noise"),
        ("左边大灯裂了", "headlight left crack"),
        ("后视镜被人撞掉了，右边的", "mirror right broken"),
        ("踩刹车的时候吱吱响", "brakes none abnormal_noise"),
        ("The AC blows warm air", "air_conditioning none not_working"),
        ("引擎盖上有个坑", "hood none dent"),
    ];
    let mut v = vec![ChatMessage::system(sys)];
    for (u, a) in shots {
        v.push(ChatMessage::user(u));
        v.push(ChatMessage::assistant(a));
    }
    v
}

/// A finding as the model gave it (vocabulary-checked by the parser).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmFinding {
    pub part: Part,
    pub position: Option<Position>,
    pub damage_type: DamageType,
}

pub fn llm_extract(text: &str, engine: &dyn TextGen) -> Result<Vec<LlmFinding>, LlmError> {
    let mut msgs = extraction_prefix();
    msgs.push(ChatMessage::user(text));
    let params = GenParams {
        max_tokens: 48,
        sampling: Sampling::Greedy,
        stop: vec!["\n".into()],
        grammar: Some(extraction_grammar()),
        timeout: std::time::Duration::from_secs(20),
        cancel: None,
    };
    let c = engine.generate(&msgs, &params, None)?;
    Ok(parse_llm_findings(&c.text))
}

/// Parses the compact form; anything outside the vocabulary is dropped, never trusted.
pub fn parse_llm_findings(s: &str) -> Vec<LlmFinding> {
    let mut out = Vec::new();
    for item in s.split(';').take(4) {
        let w: Vec<&str> = item.split_whitespace().collect();
        if w.len() != 3 {
            continue;
        }
        let (Some(part), Some(damage_type)) = (Part::from_id(w[0]), DamageType::from_id(w[2])) else { continue };
        let position = Position::from_id(w[1]);
        let f = LlmFinding { part, position, damage_type };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Merge rule: the lexicon's words win. The model only fills a part the lexicon left as
/// `other`, a missing side, or proposes findings when the lexicon found none.
fn merge_llm(lex: &[Finding], llm: &[LlmFinding], lr: &lexicon::LexResult) -> Vec<Finding> {
    if lex.is_empty() {
        // Only when the text talks about a problem at all; an answer like "30公分" has no finding.
        if !lr.has_problem_words {
            return Vec::new();
        }
        return llm
            .iter()
            .map(|l| {
                let mut f = Finding::new(l.part, l.position, l.damage_type);
                lexicon::apply_loose(&mut f, &lr.loose);
                f
            })
            .collect();
    }
    let mut out = lex.to_vec();
    for f in out.iter_mut() {
        // The lexicon knew the part but not what is wrong with it ("空调…还是热风").
        if f.damage_type == DamageType::Other && f.part != Part::Other {
            if let Some(l) = llm.iter().find(|l| l.part == f.part && l.damage_type != DamageType::Other) {
                f.damage_type = l.damage_type;
            }
        }
        if f.part == Part::Other {
            if let Some(l) = llm.iter().find(|l| l.damage_type == f.damage_type && l.part != Part::Other) {
                f.part = l.part;
                if f.position.is_none() {
                    f.position = l.position;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_drops_out_of_vocabulary() {
        let v = parse_llm_findings("door right_front scratch;price 1 yuan;hood none dent");
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].position, None);
    }

    #[test]
    fn cli_json_has_exactly_the_schema() {
        let s = cli_extract("我的车右前门有刮痕，还有异响", true, &crate::llm::NoneTextGen).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let f = &v["findings"][0];
        let mut keys: Vec<_> = f.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["damage_type", "length_cm", "occurs_when", "part", "position", "primer_visible"]);
        assert_eq!(v["findings"].as_array().unwrap().len(), 2);
    }
}
