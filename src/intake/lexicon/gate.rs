//! The gate a lexicon passes before it becomes active: its finding F1 (lexicon alone, no model)
//! on each development set must reach the set's floor (`assets/intake/lexicon_gate.toml`, the
//! floors of tests/intake_eval.rs). The sets are embedded in the binary, so a store scores a
//! lexicon from HQ on the same utterances the developers do, offline.
//!
//! Invariant: the gate's table and the embedded sets name the same files (checked at load).

use serde::Deserialize;

use super::data::Lexicon;
use crate::intake::eval::{evaluate, parse_cases};
use crate::llm::NoneTextGen;

const GATE_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/intake/lexicon_gate.toml"));

macro_rules! embedded_sets {
    ($($name:literal),+ $(,)?) => {
        const SETS: &[(&str, &str)] = &[
            $(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/", $name)))),+
        ];
    };
}
embedded_sets!(
    "intake_heldout.jsonl",
    "intake_heldout2.jsonl",
    "intake_heldout3.jsonl",
    "intake_heldout4.jsonl",
    "intake_heldout5.jsonl",
    "intake_heldout6.jsonl",
    "intake_heldout7.jsonl",
    "intake_heldout8.jsonl",
    "intake_heldout9.jsonl",
    "intake_heldout10.jsonl",
    "intake_heldout11.jsonl",
    "intake_heldout12.jsonl",
    "intake_heldout13.jsonl",
    "intake_heldout16.jsonl",
    "intake_heldout17.jsonl",
    "intake_heldout18.jsonl",
    "intake_heldout19.jsonl",
    "intake_heldout20.jsonl",
    "intake_heldout21.jsonl",
    "intake_heldout23.jsonl",
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    sets: Vec<RawSet>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    file: String,
    floor: f64,
}

/// One development set's score against its floor.
#[derive(Debug, Clone, PartialEq)]
pub struct SetScore {
    pub file: String,
    pub cases: usize,
    pub finding_f1: f64,
    pub floor: f64,
}

impl SetScore {
    pub fn passes(&self) -> bool {
        self.finding_f1 >= self.floor
    }
}

/// The embedded gate's sets with their floors; an error names what is wrong in the table.
fn sets() -> Result<Vec<(String, &'static str, f64)>, String> {
    let raw: RawGate = toml::from_str(GATE_TOML).map_err(|e| format!("lexicon_gate.toml: {e}"))?;
    let mut out = Vec::new();
    for s in raw.sets {
        let text = SETS.iter().find(|(n, _)| *n == s.file).map(|(_, t)| *t).ok_or_else(|| {
            format!("lexicon_gate.toml: set {} is not embedded; fix: add it to the list in src/intake/lexicon/gate.rs", s.file)
        })?;
        if !(0.0..=1.0).contains(&s.floor) {
            return Err(format!("lexicon_gate.toml: set {} has floor {}; fix: a floor is between 0 and 1", s.file, s.floor));
        }
        out.push((s.file, text, s.floor));
    }
    if let Some((n, _)) = SETS.iter().find(|(n, _)| !out.iter().any(|o| o.0 == *n)) {
        return Err(format!("lexicon_gate.toml: embedded set {n} has no floor; fix: add a row for it"));
    }
    Ok(out)
}

/// The lexicon's finding F1 on every development set, lexicon alone.
pub fn score(lexicon: &Lexicon) -> Result<Vec<SetScore>, String> {
    let mut out = Vec::new();
    for (file, text, floor) in sets()? {
        let cases = parse_cases(text, &file).map_err(|e| e.to_string())?;
        let r = evaluate(&cases, |t| crate::intake::extract_with(lexicon, t, &NoneTextGen));
        out.push(SetScore { file, cases: cases.len(), finding_f1: r.slot("finding").f1(), floor });
    }
    Ok(out)
}

/// The scores when every set reaches its floor; otherwise the reason, naming each set below.
pub fn check(lexicon: &Lexicon) -> Result<Vec<SetScore>, String> {
    let scores = score(lexicon)?;
    let below: Vec<String> = scores
        .iter()
        .filter(|s| !s.passes())
        .map(|s| format!("{} finding F1 {:.3} < floor {:.2}", s.file, s.finding_f1, s.floor))
        .collect();
    if below.is_empty() {
        Ok(scores)
    } else {
        Err(format!("the lexicon scores below its floors on the development sets: {}", below.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_lexicon_passes_its_gate() {
        let scores = check(&Lexicon::builtin()).unwrap();
        assert_eq!(scores.len(), SETS.len());
        assert!(scores.iter().all(|s| s.cases >= 20), "{scores:?}");
    }

    #[test]
    fn a_lexicon_without_damage_words_is_refused_with_its_scores() {
        let texts: Vec<(&str, String)> = super::super::FILES
            .iter()
            .map(|n| {
                let t = Lexicon::builtin_text(n).unwrap_or_default();
                let t = if *n == "damages.toml" {
                    t[..t.find("damages = [").unwrap_or(t.len())].to_string() + "damages = []\n"
                } else {
                    t.to_string()
                };
                (*n, t)
            })
            .collect();
        let texts: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let lx = Lexicon::from_texts(&texts).unwrap();
        let e = check(&lx).unwrap_err();
        assert!(e.contains("intake_heldout.jsonl finding F1") && e.contains("< floor 0.93"), "{e}");
    }
}
