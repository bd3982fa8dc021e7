//! Extraction quality: precision, recall and F1 per slot against a gold JSONL set.
//!
//! Owns the scoring rules. Predicted findings are paired with gold findings (same part and
//! damage first, then same damage, then same part); each slot then counts TP / FP / FN on its
//! non-null values. Lengths match within 20 % (or 3 cm); `occurs_when` matches when one text
//! contains the other or they share most characters, since it is free text.

use std::path::Path;

use serde::Deserialize;

use super::{ExtractedFinding, Extraction, IntakeError};

#[derive(Debug, Clone, Deserialize)]
pub struct EvalCase {
    pub text: String,
    pub findings: Vec<ExtractedFinding>,
}

pub fn load_cases(path: &Path) -> Result<Vec<EvalCase>, IntakeError> {
    let f = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| IntakeError::Policy { file: f.clone(), reason: e.to_string() })?;
    parse_cases(&text, &f)
}

/// The cases of a JSONL text (`file` names it in errors).
pub fn parse_cases(text: &str, file: &str) -> Result<Vec<EvalCase>, IntakeError> {
    let f = file.to_string();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| IntakeError::Policy { file: f.clone(), reason: format!("line {}: {e}", i + 1) }))
        .collect()
}

pub const SLOTS: [&str; 7] = ["finding", "part", "position", "damage_type", "length_cm", "primer_visible", "occurs_when"];

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub tp: u32,
    pub fp: u32,
    pub fn_: u32,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub counts: [Counts; 7],
    pub cases: usize,
    pub llm_calls: usize,
    pub degraded: usize,
    /// Texts whose (part, position, damage) set was not exactly right.
    pub misses: Vec<String>,
    pub total_ms: f64,
}

impl Report {
    pub fn slot(&self, name: &str) -> Counts {
        SLOTS.iter().position(|s| *s == name).map(|i| self.counts[i]).unwrap_or_default()
    }

    pub fn table(&self, title: &str) -> String {
        let mut s = format!(
            "{title}: {} utterances, model consulted on {}, degraded {}, {:.0} ms/utterance\n{:<15} {:>9} {:>9} {:>9}\n",
            self.cases,
            self.llm_calls,
            self.degraded,
            self.total_ms / self.cases.max(1) as f64,
            "slot",
            "precision",
            "recall",
            "F1"
        );
        for (i, n) in SLOTS.iter().enumerate() {
            let c = self.counts[i];
            s.push_str(&format!("{:<15} {:>9.3} {:>9.3} {:>9.3}\n", n, c.precision(), c.recall(), c.f1()));
        }
        s
    }
}

fn len_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 3.0 || (a - b).abs() <= 0.2 * b.abs()
}

fn when_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    if a.contains(&b) || b.contains(&a) {
        return true;
    }
    let ca: std::collections::BTreeSet<char> = a.chars().filter(|c| !c.is_whitespace() && *c != '/').collect();
    let cb: std::collections::BTreeSet<char> = b.chars().filter(|c| !c.is_whitespace() && *c != '/').collect();
    let inter = ca.intersection(&cb).count() as f64;
    inter / (ca.len().min(cb.len()).max(1) as f64) >= 0.6
}

fn pair(pred: &[ExtractedFinding], gold: &[ExtractedFinding]) -> Vec<(Option<usize>, Option<usize>)> {
    let mut used_p = vec![false; pred.len()];
    let mut pairs = Vec::new();
    let mut gold_pair = vec![None; gold.len()];
    let score = |p: &ExtractedFinding, g: &ExtractedFinding| -> u32 {
        (p.part == g.part) as u32 * 4 + (p.damage_type == g.damage_type) as u32 * 3 + (p.position == g.position) as u32 * 2
    };
    // Greedy best-score pairing: sets are tiny (1-4 findings).
    loop {
        let mut best: Option<(u32, usize, usize)> = None;
        for (gi, g) in gold.iter().enumerate() {
            if gold_pair[gi].is_some() {
                continue;
            }
            for (pi, p) in pred.iter().enumerate() {
                if used_p[pi] {
                    continue;
                }
                let s = score(p, g);
                if s >= 3 && best.map(|b| s > b.0).unwrap_or(true) {
                    best = Some((s, gi, pi));
                }
            }
        }
        let Some((_, gi, pi)) = best else { break };
        gold_pair[gi] = Some(pi);
        used_p[pi] = true;
    }
    for (gi, p) in gold_pair.iter().enumerate() {
        pairs.push((*p, Some(gi)));
    }
    for (pi, u) in used_p.iter().enumerate() {
        if !u {
            pairs.push((Some(pi), None));
        }
    }
    pairs
}

/// Scores one utterance into `r`.
pub fn score_case(r: &mut Report, text: &str, pred: &[ExtractedFinding], gold: &[ExtractedFinding]) {
    r.cases += 1;
    let key = |f: &ExtractedFinding| (f.part, f.position, f.damage_type);
    let mut pk: Vec<_> = pred.iter().map(key).collect();
    let mut gk: Vec<_> = gold.iter().map(key).collect();
    pk.sort();
    pk.dedup();
    gk.sort();
    for k in &pk {
        if gk.contains(k) {
            r.counts[0].tp += 1
        } else {
            r.counts[0].fp += 1
        }
    }
    for k in &gk {
        if !pk.contains(k) {
            r.counts[0].fn_ += 1;
        }
    }
    if pk != gk {
        r.misses.push(format!("{text}\n    pred {pk:?}\n    gold {gk:?}"));
    }
    for (p, g) in pair(pred, gold) {
        let p = p.map(|i| &pred[i]);
        let g = g.map(|i| &gold[i]);
        // Each slot: (pred value present, gold value present, equal)
        let slots: [(bool, bool, bool); 6] = [
            (p.is_some(), g.is_some(), matches!((p, g), (Some(a), Some(b)) if a.part == b.part)),
            (
                p.and_then(|x| x.position).is_some(),
                g.and_then(|x| x.position).is_some(),
                matches!((p, g), (Some(a), Some(b)) if a.position.is_some() && a.position == b.position),
            ),
            (p.is_some(), g.is_some(), matches!((p, g), (Some(a), Some(b)) if a.damage_type == b.damage_type)),
            (
                p.and_then(|x| x.length_cm).is_some(),
                g.and_then(|x| x.length_cm).is_some(),
                matches!((p.and_then(|x| x.length_cm), g.and_then(|x| x.length_cm)), (Some(a), Some(b)) if len_eq(a, b)),
            ),
            (
                p.and_then(|x| x.primer_visible).is_some(),
                g.and_then(|x| x.primer_visible).is_some(),
                matches!((p.and_then(|x| x.primer_visible), g.and_then(|x| x.primer_visible)), (Some(a), Some(b)) if a == b),
            ),
            (
                p.and_then(|x| x.occurs_when.as_ref()).is_some(),
                g.and_then(|x| x.occurs_when.as_ref()).is_some(),
                matches!((p.and_then(|x| x.occurs_when.as_deref()), g.and_then(|x| x.occurs_when.as_deref())), (Some(a), Some(b)) if when_eq(a, b)),
            ),
        ];
        for (i, (hp, hg, eq)) in slots.iter().enumerate() {
            let c = &mut r.counts[i + 1];
            if *eq {
                c.tp += 1;
            } else {
                if *hp {
                    c.fp += 1;
                }
                if *hg {
                    c.fn_ += 1;
                }
            }
        }
    }
}

/// Runs `extract` over the cases and scores it.
pub fn evaluate(cases: &[EvalCase], mut extract: impl FnMut(&str) -> Result<Extraction, IntakeError>) -> Report {
    let mut r = Report::default();
    for c in cases {
        let t0 = std::time::Instant::now();
        let ex = extract(&c.text);
        r.total_ms += t0.elapsed().as_secs_f64() * 1000.0;
        let pred: Vec<ExtractedFinding> = match &ex {
            Ok(e) => {
                if e.llm_used {
                    r.llm_calls += 1;
                }
                if e.degraded {
                    r.degraded += 1;
                }
                e.findings.iter().map(ExtractedFinding::from).collect()
            }
            Err(_) => Vec::new(),
        };
        score_case(&mut r, &c.text, &pred, &c.findings);
    }
    r
}

/// `servicebay intake eval FILE`: the P/R/F1 table for a labelled set, lexicon + the engine given
/// (the model is consulted where the lexicon is unsure), optionally with every miss listed.
pub fn cli_eval(path: &Path, engine: &dyn crate::llm::TextGen, misses: bool) -> Result<String, IntakeError> {
    let cases = load_cases(path)?;
    let report = evaluate(&cases, |t| super::extract(t, engine));
    let title = format!("{} ({} utterances, engine {})", path.display(), cases.len(), engine.name());
    let mut out = report.table(&title);
    if misses {
        for m in &report.misses {
            out.push_str(&format!("\nMISS {m}"));
        }
    }
    Ok(out)
}
