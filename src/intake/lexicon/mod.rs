//! The deterministic Chinese + English lexicon pass: the backbone of extraction.
//!
//! Words are data, rules are code. The words (parts, sides, damage words, compounds, situations,
//! negations, masks, typos, facts, and the words each clause rule looks for) live in
//! `assets/intake/lexicon/*.toml`, loaded and validated by `data` into a [`Lexicon`]; the passes
//! over a message (`passes`), the shared rules (`rules`: matching, sides, negation, part
//! conventions), the facts and number parsing (`facts`: 厘米/公分/cm/米/一米/十几公分…) and the
//! gate a new lexicon passes (`gate`) are code.
//!
//! The active lexicon is process-wide and swappable without a restart: `install` replaces it
//! (a signed `lexicon` bundle from HQ does, see src/sync/bundles.rs); `analyse` reads the one
//! active when it starts, so a message is always read by one lexicon whole.

use std::sync::{Arc, OnceLock, RwLock};

use crate::intake::{Finding, Position};

mod data;
mod facts;
pub mod gate;
mod passes;
mod rules;
#[cfg(test)]
mod tests;

pub use data::{Lexicon, LexiconError, FILES};
pub use facts::apply_loose;
pub use rules::normalize;

/// Facts said without naming a part: usually the answer to our last question.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LooseFacts {
    pub length_cm: Option<f64>,
    /// A number without unit ("30左右"): a length only if we just asked for one.
    pub bare_number: Option<f64>,
    pub primer_visible: Option<bool>,
    pub paint_broken: Option<bool>,
    pub occurs_when: Option<String>,
    pub which_light: Option<String>,
    pub since_when: Option<String>,
    pub leak_fluid: Option<String>,
    /// Side words in a clause that named nothing else ("…，右边的").
    pub side_only: Option<Position>,
}

impl LooseFacts {
    pub fn is_empty(&self) -> bool {
        *self == LooseFacts::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LexResult {
    pub findings: Vec<Finding>,
    pub loose: LooseFacts,
    /// The lexicon could not place something (a symptom with no part, a part with no symptom).
    pub unsure: bool,
    /// The text mentions a problem at all (damage word or symptom phrase).
    pub has_problem_words: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lat {
    L,
    R,
}
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lon {
    F,
    B,
}

fn slot() -> &'static RwLock<Arc<Lexicon>> {
    static ACTIVE: OnceLock<RwLock<Arc<Lexicon>>> = OnceLock::new();
    ACTIVE.get_or_init(|| RwLock::new(Arc::new(Lexicon::builtin())))
}

/// The lexicon extraction reads now (the builtin one until a bundle installs another).
pub fn active() -> Arc<Lexicon> {
    // A poisoned lock still holds a whole Arc: a writer only ever swaps it.
    slot().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes `lexicon` the active one for every message read from now on; returns the previous.
pub fn install(lexicon: Arc<Lexicon>) -> Arc<Lexicon> {
    let mut g = slot().write().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *g, lexicon)
}

/// Reads one message with the active lexicon.
pub fn analyse(text: &str) -> LexResult {
    analyse_with(&active(), text)
}

/// Reads one message with the lexicon given (a candidate being scored, a test's).
pub fn analyse_with(lexicon: &Lexicon, text: &str) -> LexResult {
    passes::analyse(lexicon, text)
}

/// The parts a text names, in order, without damage words or sides: a workshop line of a DMS
/// export ("右前门钣金喷漆" → door, "更换前保险杠" → bumper). Longest word first, as in `analyse`.
pub fn parts_named(text: &str) -> Vec<crate::domain::vocab::Part> {
    use crate::domain::vocab::Part;
    let lx = active();
    let norm = normalize(text);
    let table: Vec<(&str, Part)> = lx.early_parts.iter().chain(lx.parts.iter()).map(|(w, (p, _, _))| (w.as_str(), *p)).collect();
    let mut used = vec![false; norm.len()];
    let mut out = Vec::new();
    for h in rules::find(&norm, &table, &mut used) {
        if h.val != Part::Other && !out.contains(&h.val) {
            out.push(h.val);
        }
    }
    out
}
