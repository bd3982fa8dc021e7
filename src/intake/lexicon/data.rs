//! The lexicon's words as data: `assets/intake/lexicon/*.toml`, parsed and validated into a
//! [`Lexicon`] the passes read.
//!
//! Invariants a loaded `Lexicon` keeps (each broken one is a load error naming the file, the line
//! and the fix): every part, damage and side name is one the code knows; no word is empty or has
//! upper-case letters (the text is lower-cased before matching, so it could never match); no word
//! is listed twice in one table or list (the later row would be shadowed by the first, which wins
//! among equally long words); a plain-name pattern compiles and its replacement is a part word.
//! Row order is kept exactly as written: among equally long matches the first row wins.

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::{Lat, Lon};
use crate::intake::homophone::Homophones;
use crate::intake::{DamageType, Part};

/// The lexicon's files, in the order a bundle or the builtin set supplies them.
pub const FILES: [&str; 10] = [
    "parts.toml",
    "damages.toml",
    "compounds.toml",
    "situations.toml",
    "positions.toml",
    "negations.toml",
    "masks.toml",
    "typos.toml",
    "facts.toml",
    "clauses.toml",
];

macro_rules! builtin_files {
    ($($name:literal),+) => {
        const BUILTIN: &[(&str, &str)] = &[
            $(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/intake/lexicon/", $name)))),+
        ];
    };
}
builtin_files!(
    "parts.toml",
    "damages.toml",
    "compounds.toml",
    "situations.toml",
    "positions.toml",
    "negations.toml",
    "masks.toml",
    "typos.toml",
    "facts.toml",
    "clauses.toml"
);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LexiconError {
    #[error("lexicon {file}: {reason}")]
    Syntax { file: String, reason: String },
    #[error("lexicon {file} line {line}: {reason}; fix: {fix}")]
    Invalid { file: String, line: usize, reason: String, fix: String },
    #[error("lexicon file {0} is missing; fix: supply all of {files}", files = FILES.join(", "))]
    Missing(String),
    #[error("lexicon file {0} is not one of the lexicon's files; fix: name it one of {files}", files = FILES.join(", "))]
    UnknownFile(String),
}

// --- raw files ------------------------------------------------------------------------------

type Word = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParts {
    parts: Vec<RawPart>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    word: Word,
    part: Word,
    lon: Option<Word>,
    lat: Option<Word>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDamages {
    weak: Vec<Word>,
    dent_words: Vec<Word>,
    powerless: Vec<Word>,
    paint_on_dent: Vec<Word>,
    damages: Vec<RawDamage>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDamage {
    word: Word,
    damage: Word,
    #[serde(default)]
    depends_on_part: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompounds {
    compounds: Vec<RawCompound>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompound {
    word: Word,
    part: Word,
    damage: Word,
    light: Option<Word>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSituations {
    time_markers: Vec<Word>,
    found: Vec<Word>,
    not_situations: Vec<Word>,
    not_when: Vec<Word>,
    when_fillers: Vec<Word>,
    situations: Vec<RawSituation>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSituation {
    word: Word,
    means: Word,
    part: Option<Word>,
    #[serde(default)]
    needs_time_marker: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPositions {
    locators: Vec<Word>,
    sides: Vec<RawSide>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSide {
    word: Word,
    lat: Option<Word>,
    lon: Option<Word>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNegations {
    negators: Vec<Word>,
    fillers: Vec<Word>,
    denied_after: Vec<Word>,
    fillers_after: Vec<Word>,
}

/// clauses.toml: the words each clause rule looks for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClauses {
    new_problem: Vec<Word>,
    guess: Vec<Word>,
    audio: Vec<Word>,
    near_before: Vec<Word>,
    near_after: Vec<Word>,
    car_ends: Vec<Word>,
    fine: Vec<Word>,
    same_side: Vec<Word>,
    both_doors: Vec<Word>,
    all_doors: Vec<Word>,
    both_sides: Vec<Word>,
    two_wheels: Vec<Word>,
    lamp_out: Vec<Word>,
    points_forward: Vec<Word>,
    all_of: Vec<Word>,
    false_alarm: Vec<Word>,
    tyre: Vec<Word>,
    dashboard: Vec<Word>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasks {
    mask: Vec<Word>,
    fixed: Vec<Word>,
    foreign: Vec<Word>,
    not_a_problem: Vec<Word>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypos {
    typos: Vec<RawTypo>,
    plain_names: Vec<RawPlainName>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypo {
    typo: Word,
    word: Word,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlainName {
    pattern: Word,
    word: Word,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFacts {
    since: Vec<Word>,
    leak_words: Vec<Word>,
    leak_fluids: Vec<RawFluid>,
    primer: RawPrimer,
    paint_broken: RawYesNo,
    battery: RawBattery,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFluid {
    word: Word,
    fluid: Word,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrimer {
    unsure: Vec<Word>,
    no: Vec<Word>,
    yes: Vec<Word>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYesNo {
    no: Vec<Word>,
    yes: Vec<Word>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBattery {
    named: Vec<Word>,
    cleared: Vec<Word>,
}

// --- the loaded lexicon ---------------------------------------------------------------------

/// A part word's hit: the part and the sides the word itself says.
pub(super) type PartHit = (Part, Option<Lon>, Option<Lat>);

/// The words of clauses.toml, by the rule that looks for them.
pub(super) struct ClauseWords {
    pub new_problem: Vec<String>,
    pub guess: Vec<String>,
    pub audio: Vec<String>,
    pub near_before: Vec<String>,
    pub near_after: Vec<String>,
    pub car_ends: Vec<String>,
    pub fine: Vec<String>,
    pub same_side: Vec<String>,
    pub both_doors: Vec<String>,
    pub all_doors: Vec<String>,
    pub both_sides: Vec<String>,
    pub two_wheels: Vec<String>,
    pub lamp_out: Vec<String>,
    pub points_forward: Vec<String>,
    pub all_of: Vec<String>,
    pub false_alarm: Vec<String>,
    pub tyre: Vec<String>,
    pub dashboard: Vec<String>,
}

pub(super) struct Situation {
    pub word: String,
    pub means: String,
    pub part: Option<Part>,
    pub needs_marker: bool,
}

/// The intake lexicon: every word the passes match, in file order.
pub struct Lexicon {
    pub(super) parts: Vec<(String, PartHit)>,
    /// Part words starting like a situation ("倒车影像"): matched before the situations.
    pub(super) early_parts: Vec<(String, PartHit)>,
    pub(super) damages: Vec<(String, (DamageType, bool))>,
    pub(super) compounds: Vec<(String, (Part, DamageType))>,
    /// Compounds about starting ("冷车启动困难"): matched before the situation takes their words.
    pub(super) early_compounds: Vec<(String, (Part, DamageType))>,
    /// (compound word, warning light) in compound order.
    pub(super) lights: Vec<(String, String)>,
    pub(super) situations: Vec<Situation>,
    pub(super) time_markers: Vec<String>,
    pub(super) found: Vec<String>,
    pub(super) not_situations: Vec<String>,
    pub(super) not_when: Vec<String>,
    pub(super) when_fillers: Vec<String>,
    pub(super) sides: Vec<(String, Option<Lat>, Option<Lon>)>,
    pub(super) locators: Vec<String>,
    pub(super) negators: Vec<String>,
    pub(super) neg_fillers: Vec<String>,
    pub(super) denied_after: Vec<String>,
    pub(super) neg_fillers_after: Vec<String>,
    /// clauses.toml, one list per rule.
    pub(super) clause: ClauseWords,
    pub(super) mask: Vec<String>,
    pub(super) fixed: Vec<String>,
    pub(super) foreign: Vec<String>,
    pub(super) not_a_problem: Vec<String>,
    pub(super) weak: Vec<String>,
    pub(super) dent_words: Vec<String>,
    pub(super) powerless: Vec<String>,
    pub(super) paint_on_dent: Vec<String>,
    pub(super) typos: Vec<(String, String)>,
    pub(super) plain_names: Vec<(Regex, String)>,
    pub(super) since: Vec<String>,
    pub(super) leak_words: Vec<String>,
    pub(super) leak_fluids: Vec<(String, String)>,
    pub(super) primer_unsure: Vec<String>,
    pub(super) primer_no: Vec<String>,
    pub(super) primer_yes: Vec<String>,
    pub(super) paint_no: Vec<String>,
    pub(super) paint_yes: Vec<String>,
    pub(super) battery_named: Vec<String>,
    pub(super) battery_cleared: Vec<String>,
    /// The lexicon's own Chinese words, for repairing homophone typos before matching.
    pub(super) homophones: Homophones,
}

impl fmt::Debug for Lexicon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lexicon")
            .field("parts", &self.parts.len())
            .field("damages", &self.damages.len())
            .field("compounds", &self.compounds.len())
            .field("situations", &self.situations.len())
            .finish_non_exhaustive()
    }
}

impl Lexicon {
    /// The lexicon built into the binary.
    pub fn builtin() -> Lexicon {
        Self::from_texts(BUILTIN).unwrap_or_else(|e| panic!("builtin intake lexicon invalid: {e}"))
    }

    /// The builtin text of one lexicon file (`parts.toml` …), for publishing a changed copy.
    pub fn builtin_text(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// Parses and validates the lexicon from its files' texts, (file name, text) in any order.
    pub fn from_texts(texts: &[(&str, &str)]) -> Result<Lexicon, LexiconError> {
        if let Some((n, _)) = texts.iter().find(|(n, _)| !FILES.contains(n)) {
            return Err(LexiconError::UnknownFile(n.to_string()));
        }
        let get =
            |name: &str| texts.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| LexiconError::Missing(name.to_string()));
        let parts: RawParts = parse("parts.toml", get("parts.toml")?)?;
        let damages: RawDamages = parse("damages.toml", get("damages.toml")?)?;
        let compounds: RawCompounds = parse("compounds.toml", get("compounds.toml")?)?;
        let situations: RawSituations = parse("situations.toml", get("situations.toml")?)?;
        let positions: RawPositions = parse("positions.toml", get("positions.toml")?)?;
        let negations: RawNegations = parse("negations.toml", get("negations.toml")?)?;
        let masks: RawMasks = parse("masks.toml", get("masks.toml")?)?;
        let typos: RawTypos = parse("typos.toml", get("typos.toml")?)?;
        let facts: RawFacts = parse("facts.toml", get("facts.toml")?)?;
        let clauses: RawClauses = parse("clauses.toml", get("clauses.toml")?)?;

        let c = Check { file: "parts.toml", text: get("parts.toml")? };
        c.unique("parts", parts.parts.iter().map(|r| &r.word))?;
        let mut part_rows = Vec::new();
        for r in &parts.parts {
            let lon = r.lon.as_ref().map(|x| c.lon(x)).transpose()?;
            let lat = r.lat.as_ref().map(|x| c.lat(x)).transpose()?;
            part_rows.push((c.word(&r.word)?, (c.part(&r.part)?, lon, lat)));
        }

        let c = Check { file: "damages.toml", text: get("damages.toml")? };
        c.unique("damages", damages.damages.iter().map(|r| &r.word))?;
        let mut damage_rows = Vec::new();
        for r in &damages.damages {
            damage_rows.push((c.word(&r.word)?, (c.damage(&r.damage)?, r.depends_on_part)));
        }
        let weak = c.list("weak", &damages.weak)?;
        let dent_words = c.list("dent_words", &damages.dent_words)?;
        let powerless = c.list("powerless", &damages.powerless)?;
        let paint_on_dent = c.list("paint_on_dent", &damages.paint_on_dent)?;

        let c = Check { file: "compounds.toml", text: get("compounds.toml")? };
        c.unique("compounds", compounds.compounds.iter().map(|r| &r.word))?;
        let (mut compound_rows, mut lights) = (Vec::new(), Vec::new());
        for r in &compounds.compounds {
            let (word, part, damage) = (c.word(&r.word)?, c.part(&r.part)?, c.damage(&r.damage)?);
            if let Some(l) = &r.light {
                if damage != DamageType::WarningLight {
                    return Err(c.invalid(
                        l,
                        "a light is named for a damage that is not warning_light",
                        "remove `light` or set damage = \"warning_light\"",
                    ));
                }
                lights.push((word.clone(), c.word(l)?));
            }
            compound_rows.push((word, (part, damage)));
        }

        let c = Check { file: "situations.toml", text: get("situations.toml")? };
        c.unique("situations", situations.situations.iter().map(|r| &r.word))?;
        let mut situation_rows = Vec::new();
        for r in &situations.situations {
            let part = r.part.as_ref().map(|p| c.part(p)).transpose()?;
            situation_rows.push(Situation { word: c.word(&r.word)?, means: c.text(&r.means)?, part, needs_marker: r.needs_time_marker });
        }
        let time_markers = c.list("time_markers", &situations.time_markers)?;
        let found = c.list("found", &situations.found)?;
        let not_situations = c.list("not_situations", &situations.not_situations)?;
        let not_when = c.list("not_when", &situations.not_when)?;
        let when_fillers = c.list("when_fillers", &situations.when_fillers)?;

        let c = Check { file: "positions.toml", text: get("positions.toml")? };
        c.unique("sides", positions.sides.iter().map(|r| &r.word))?;
        let mut sides = Vec::new();
        for r in &positions.sides {
            let lat = r.lat.as_ref().map(|x| c.lat(x)).transpose()?;
            let lon = r.lon.as_ref().map(|x| c.lon(x)).transpose()?;
            if lat.is_none() && lon.is_none() {
                return Err(c.invalid(
                    &r.word,
                    "a side word that says no side",
                    "add lat = \"left\"/\"right\" or lon = \"front\"/\"rear\"",
                ));
            }
            sides.push((c.word(&r.word)?, lat, lon));
        }
        let locators = c.list("locators", &positions.locators)?;

        let c = Check { file: "negations.toml", text: get("negations.toml")? };
        let negators = c.list("negators", &negations.negators)?;
        let neg_fillers = c.list("fillers", &negations.fillers)?;
        let denied_after = c.list("denied_after", &negations.denied_after)?;
        let neg_fillers_after = c.list("fillers_after", &negations.fillers_after)?;

        let c = Check { file: "clauses.toml", text: get("clauses.toml")? };
        let clause = ClauseWords {
            new_problem: c.list("new_problem", &clauses.new_problem)?,
            guess: c.list("guess", &clauses.guess)?,
            audio: c.list("audio", &clauses.audio)?,
            near_before: c.list("near_before", &clauses.near_before)?,
            near_after: c.list("near_after", &clauses.near_after)?,
            car_ends: c.list("car_ends", &clauses.car_ends)?,
            fine: c.list("fine", &clauses.fine)?,
            same_side: c.list("same_side", &clauses.same_side)?,
            both_doors: c.list("both_doors", &clauses.both_doors)?,
            all_doors: c.list("all_doors", &clauses.all_doors)?,
            both_sides: c.list("both_sides", &clauses.both_sides)?,
            two_wheels: c.list("two_wheels", &clauses.two_wheels)?,
            lamp_out: c.list("lamp_out", &clauses.lamp_out)?,
            points_forward: c.list("points_forward", &clauses.points_forward)?,
            all_of: c.list("all_of", &clauses.all_of)?,
            false_alarm: c.list("false_alarm", &clauses.false_alarm)?,
            tyre: c.list("tyre", &clauses.tyre)?,
            dashboard: c.list("dashboard", &clauses.dashboard)?,
        };

        let c = Check { file: "masks.toml", text: get("masks.toml")? };
        let mask = c.list("mask", &masks.mask)?;
        let fixed = c.list("fixed", &masks.fixed)?;
        let foreign = c.list("foreign", &masks.foreign)?;
        let not_a_problem = c.list("not_a_problem", &masks.not_a_problem)?;

        let c = Check { file: "typos.toml", text: get("typos.toml")? };
        c.unique("typos", typos.typos.iter().map(|r| &r.typo))?;
        let mut typo_rows = Vec::new();
        for r in &typos.typos {
            let (typo, word) = (c.word(&r.typo)?, c.word(&r.word)?);
            if typo == word {
                return Err(c.invalid(&r.word, "a typo replaced by itself", "remove the row"));
            }
            typo_rows.push((typo, word));
        }
        let mut plain_names = Vec::new();
        for r in &typos.plain_names {
            let re = Regex::new(r.pattern.get_ref())
                .map_err(|e| c.invalid(&r.pattern, &format!("pattern does not compile: {e}"), "correct the regular expression"))?;
            if re.is_match("") {
                return Err(c.invalid(&r.pattern, "the pattern matches empty text", "make the pattern require at least one character"));
            }
            let word = c.word(&r.word)?;
            if !part_rows.iter().any(|(w, _)| *w == word) {
                return Err(c.invalid(&r.word, &format!("\"{word}\" is not a part word"), "use a word of parts.toml or add it there"));
            }
            plain_names.push((re, word));
        }

        let c = Check { file: "facts.toml", text: get("facts.toml")? };
        let since = c.list("since", &facts.since)?;
        let leak_words = c.list("leak_words", &facts.leak_words)?;
        c.unique("leak_fluids", facts.leak_fluids.iter().map(|r| &r.word))?;
        let mut leak_fluids = Vec::new();
        for r in &facts.leak_fluids {
            leak_fluids.push((c.word(&r.word)?, c.word(&r.fluid)?));
        }
        let primer_unsure = c.list("primer.unsure", &facts.primer.unsure)?;
        let primer_no = c.list("primer.no", &facts.primer.no)?;
        let primer_yes = c.list("primer.yes", &facts.primer.yes)?;
        let paint_no = c.list("paint_broken.no", &facts.paint_broken.no)?;
        let paint_yes = c.list("paint_broken.yes", &facts.paint_broken.yes)?;
        let battery_named = c.list("battery.named", &facts.battery.named)?;
        let battery_cleared = c.list("battery.cleared", &facts.battery.cleared)?;

        let early_parts = part_rows.iter().filter(|(w, _)| w.starts_with("倒车")).cloned().collect();
        let early_compounds = compound_rows.iter().filter(|(w, _)| w.contains("启动") || w.contains("打火")).cloned().collect();
        let homophones = {
            let words = part_rows.iter().map(|x| x.0.as_str()).chain(damage_rows.iter().map(|x| x.0.as_str()));
            let words = words.chain(compound_rows.iter().map(|x| x.0.as_str())).chain(situation_rows.iter().map(|x| x.word.as_str()));
            Homophones::new(words)
        };
        Ok(Lexicon {
            parts: part_rows,
            early_parts,
            damages: damage_rows,
            compounds: compound_rows,
            early_compounds,
            lights,
            situations: situation_rows,
            time_markers,
            found,
            not_situations,
            not_when,
            when_fillers,
            sides,
            locators,
            negators,
            neg_fillers,
            denied_after,
            neg_fillers_after,
            clause,
            mask,
            fixed,
            foreign,
            not_a_problem,
            weak,
            dent_words,
            powerless,
            paint_on_dent,
            typos: typo_rows,
            plain_names,
            since,
            leak_words,
            leak_fluids,
            primer_unsure,
            primer_no,
            primer_yes,
            paint_no,
            paint_yes,
            battery_named,
            battery_cleared,
            homophones,
        })
    }

    /// Row counts, for logs and the bundle's record.
    pub fn summary(&self) -> String {
        format!(
            "{} parts, {} damages, {} compounds, {} situations",
            self.parts.len(),
            self.damages.len(),
            self.compounds.len(),
            self.situations.len()
        )
    }
}

fn parse<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, LexiconError> {
    toml::from_str(text).map_err(|e| LexiconError::Syntax { file: file.to_string(), reason: e.to_string().trim_end().replace('\n', " | ") })
}

/// Validation of one file's values, with the line of each value for the error.
struct Check<'a> {
    file: &'a str,
    text: &'a str,
}

impl Check<'_> {
    fn line(&self, w: &Word) -> usize {
        let at = w.span().start.min(self.text.len());
        self.text[..at].matches('\n').count() + 1
    }

    fn invalid(&self, w: &Word, reason: &str, fix: &str) -> LexiconError {
        LexiconError::Invalid { file: self.file.to_string(), line: self.line(w), reason: reason.to_string(), fix: fix.to_string() }
    }

    /// A word to match: not blank, and lower case like the text it is matched in.
    fn word(&self, w: &Word) -> Result<String, LexiconError> {
        let s = w.get_ref();
        if s.trim().is_empty() {
            return Err(self.invalid(w, "an empty word matches everywhere", "write the word, or remove the row"));
        }
        if s.to_lowercase() != *s {
            return Err(self.invalid(
                w,
                &format!("\"{s}\" has upper-case letters and never matches (the text is lower-cased first)"),
                &format!("write \"{}\"", s.to_lowercase()),
            ));
        }
        Ok(s.clone())
    }

    /// A text that is kept, not matched (a situation's short name).
    fn text(&self, w: &Word) -> Result<String, LexiconError> {
        if w.get_ref().trim().is_empty() {
            return Err(self.invalid(w, "empty text", "write the short name kept as occurs_when"));
        }
        Ok(w.get_ref().clone())
    }

    fn list(&self, name: &str, words: &[Word]) -> Result<Vec<String>, LexiconError> {
        self.unique(name, words.iter())?;
        words.iter().map(|w| self.word(w)).collect()
    }

    /// No word twice in one table: the later row would never be used.
    fn unique<'w>(&self, name: &str, words: impl Iterator<Item = &'w Word>) -> Result<(), LexiconError> {
        let mut seen: Vec<&Word> = Vec::new();
        for w in words {
            if let Some(first) = seen.iter().find(|x| x.get_ref() == w.get_ref()) {
                return Err(self.invalid(
                    w,
                    &format!("\"{}\" is in `{name}` already (line {}): the first row shadows this one", w.get_ref(), self.line(first)),
                    "remove one of the two rows",
                ));
            }
            seen.push(w);
        }
        Ok(())
    }

    fn part(&self, w: &Word) -> Result<Part, LexiconError> {
        Part::from_id(w.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = Part::ALL.iter().map(|p| p.id()).collect();
            self.invalid(w, &format!("unknown part \"{}\"", w.get_ref()), &format!("use one of {}", names.join(", ")))
        })
    }

    fn damage(&self, w: &Word) -> Result<DamageType, LexiconError> {
        DamageType::from_id(w.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = DamageType::ALL.iter().map(|d| d.id()).collect();
            self.invalid(w, &format!("unknown damage \"{}\"", w.get_ref()), &format!("use one of {}", names.join(", ")))
        })
    }

    fn lon(&self, w: &Word) -> Result<Lon, LexiconError> {
        match w.get_ref().as_str() {
            "front" => Ok(Lon::F),
            "rear" => Ok(Lon::B),
            other => Err(self.invalid(w, &format!("unknown lon \"{other}\""), "use \"front\" or \"rear\"")),
        }
    }

    fn lat(&self, w: &Word) -> Result<Lat, LexiconError> {
        match w.get_ref().as_str() {
            "left" => Ok(Lat::L),
            "right" => Ok(Lat::R),
            other => Err(self.invalid(w, &format!("unknown lat \"{other}\""), "use \"left\" or \"right\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The builtin files with `file`'s text replaced.
    fn with(file: &str, text: &str) -> Result<Lexicon, LexiconError> {
        let texts: Vec<(&str, &str)> = BUILTIN.iter().map(|(n, t)| (*n, if *n == file { text } else { *t })).collect();
        Lexicon::from_texts(&texts)
    }

    fn invalid(r: Result<Lexicon, LexiconError>) -> (String, usize, String, String) {
        match r.unwrap_err() {
            LexiconError::Invalid { file, line, reason, fix } => (file, line, reason, fix),
            e => panic!("not a validation error: {e}"),
        }
    }

    #[test]
    fn builtin_lexicon_loads_with_every_table() {
        let l = Lexicon::builtin();
        assert!(l.parts.len() > 200 && l.damages.len() > 300 && l.compounds.len() > 100 && l.situations.len() > 90, "{l:?}");
        assert!(!l.early_parts.is_empty() && !l.early_compounds.is_empty() && !l.lights.is_empty());
    }

    #[test]
    fn unknown_part_names_file_line_and_the_names_to_use() {
        let text = "parts = [\n    { word = \"前杠\", part = \"bumper\" },\n    { word = \"后杠\", part = \"rear_bumper\" },\n]\n";
        let (file, line, reason, fix) = invalid(with("parts.toml", text));
        assert_eq!((file.as_str(), line), ("parts.toml", 3));
        assert!(reason.contains("rear_bumper"), "{reason}");
        assert!(fix.contains("bumper") && fix.contains("quarter_panel"), "{fix}");
    }

    #[test]
    fn unknown_damage_and_side_are_refused() {
        let dmg = Lexicon::builtin_text("damages.toml").unwrap().replacen("damage = \"scratch\"", "damage = \"scrach\"", 1);
        let (file, _, reason, _) = invalid(with("damages.toml", &dmg));
        assert_eq!(file, "damages.toml");
        assert!(reason.contains("scrach"), "{reason}");
        let text = "parts = [\n    { word = \"前杠\", part = \"bumper\", lon = \"middle\" },\n]\n";
        let (_, line, reason, fix) = invalid(with("parts.toml", text));
        assert_eq!(line, 2);
        assert!(reason.contains("middle") && fix.contains("front"), "{reason} / {fix}");
    }

    #[test]
    fn empty_and_upper_case_words_are_refused() {
        let text = "parts = [\n    { word = \"前杠\", part = \"bumper\" },\n    { word = \" \", part = \"door\" },\n]\n";
        let (_, line, reason, _) = invalid(with("parts.toml", text));
        assert_eq!(line, 3);
        assert!(reason.contains("empty"), "{reason}");
        let neg = "negators = [\"没\", \"Not\"]\nfillers = []\ndenied_after = []\nfillers_after = []\n";
        let (file, line, reason, fix) = invalid(with("negations.toml", neg));
        assert_eq!((file.as_str(), line), ("negations.toml", 1));
        assert!(reason.contains("upper-case") && fix.contains("\"not\""), "{reason} / {fix}");
    }

    #[test]
    fn a_shadowed_duplicate_names_both_lines() {
        let text = "parts = [\n    { word = \"前杠\", part = \"bumper\" },\n    { word = \"门\", part = \"door\" },\n    { word = \"前杠\", part = \"hood\" },\n]\n";
        let (_, line, reason, fix) = invalid(with("parts.toml", text));
        assert_eq!(line, 4);
        assert!(reason.contains("line 2") && reason.contains("shadows"), "{reason}");
        assert!(fix.contains("remove"), "{fix}");
        let masks = "mask = [\"以前\",\n  \"以前\"]\nfixed = []\nforeign = []\nnot_a_problem = []\n";
        assert_eq!(invalid(with("masks.toml", masks)).1, 2);
    }

    #[test]
    fn plain_names_must_compile_and_name_a_part_word() {
        let typos = "typos = []\nplain_names = [\n    { pattern = '(轮子', word = \"叶子板\" },\n]\n";
        let (file, line, reason, _) = invalid(with("typos.toml", typos));
        assert_eq!((file.as_str(), line), ("typos.toml", 3));
        assert!(reason.contains("compile"), "{reason}");
        let typos = "typos = []\nplain_names = [\n    { pattern = '铁皮', word = \"铁皮板\" },\n]\n";
        let (_, _, reason, fix) = invalid(with("typos.toml", typos));
        assert!(reason.contains("not a part word") && fix.contains("parts.toml"), "{reason} / {fix}");
    }

    #[test]
    fn syntax_unknown_fields_and_missing_files_are_refused() {
        let e = with("parts.toml", "parts = [\n    { word = \"前杠\", part = \"bumper\", colour = \"red\" },\n]\n").unwrap_err();
        assert!(
            matches!(&e, LexiconError::Syntax { file, reason } if file == "parts.toml" && reason.contains("colour") && reason.contains("line 2")),
            "{e}"
        );
        let texts: Vec<(&str, &str)> = BUILTIN.iter().filter(|(n, _)| *n != "facts.toml").cloned().collect();
        assert_eq!(Lexicon::from_texts(&texts).unwrap_err(), LexiconError::Missing("facts.toml".into()));
        let mut texts: Vec<(&str, &str)> = BUILTIN.to_vec();
        texts.push(("extra.toml", ""));
        assert_eq!(Lexicon::from_texts(&texts).unwrap_err(), LexiconError::UnknownFile("extra.toml".into()));
    }

    #[test]
    fn a_light_only_on_a_warning_light() {
        let text = "compounds = [\n    { word = \"不制冷\", part = \"air_conditioning\", damage = \"not_working\", light = \"ac\" },\n]\n";
        let (_, line, reason, _) = invalid(with("compounds.toml", text));
        assert_eq!(line, 2);
        assert!(reason.contains("warning_light"), "{reason}");
    }
}
