//! The store's catalogue: labour operations, labour rates and opening hours per store, parts with
//! OEM (原厂) and aftermarket (副厂) prices, and the fault → cause → solution knowledge base.
//!
//! Loaded from four TOML files (`assets/catalog/{operations,parts,rates,knowledge}.toml`),
//! validated as a whole at load so a bad file pushed by HQ is refused with an error naming the
//! file and the entry, and the previous catalogue stays in use. The starter files are compiled
//! in (`Catalog::builtin`) so the appliance always has one. Prices are CNY, VAT included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

use crate::domain::vocab::{DamageType, Part, Position};

const OPERATIONS_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/catalog/operations.toml"));
const PARTS_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/catalog/parts.toml"));
const RATES_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/catalog/rates.toml"));
const KNOWLEDGE_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/catalog/knowledge.toml"));

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalogue file {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("catalogue file {file} is not valid: {reason}")]
    Parse { file: String, reason: String },
    #[error("catalogue file {file}, entry `{entry}`: {reason}")]
    Invalid { file: String, entry: String, reason: String },
}

fn invalid(file: &str, entry: &str, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid { file: file.into(), entry: entry.into(), reason: reason.into() }
}

/// Which rate applies to an operation's hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabourClass {
    Body,
    Paint,
    Mechanical,
    Electrical,
    Glass,
    Diagnostic,
}

impl LabourClass {
    pub const ALL: [LabourClass; 6] = [
        LabourClass::Body,
        LabourClass::Paint,
        LabourClass::Mechanical,
        LabourClass::Electrical,
        LabourClass::Glass,
        LabourClass::Diagnostic,
    ];
}

/// How bad a body damage is; decides between e.g. polish (light) and panel + repaint (deep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Light,
    Moderate,
    Deep,
    /// In operation files only: the operation applies whatever the severity.
    Any,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub labour_class: LabourClass,
    pub hours: f64,
    /// Fixed consumables (paint, fluids) billed with the labour line.
    #[serde(default)]
    pub materials_cny: f64,
    pub parts: Vec<Part>,
    pub damage: Vec<DamageType>,
    pub severity: Vec<Severity>,
    /// Part-number prefixes; the finding's side is appended (`-RF`, `-R`, `-F`) when needed.
    #[serde(default)]
    pub parts_needed: Vec<String>,
}

impl Operation {
    pub fn applies(&self, part: Part, damage: DamageType, severity: Severity) -> bool {
        self.parts.contains(&part)
            && self.damage.contains(&damage)
            && (self.severity.contains(&Severity::Any) || self.severity.contains(&severity))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartItem {
    pub part_no: String,
    pub name_zh: String,
    pub name_en: String,
    pub fits: Part,
    pub oem_cny: f64,
    #[serde(default)]
    pub aftermarket_cny: Option<f64>,
    /// The barcodes (GTIN) printed on this part's packaging, each with the origin it identifies, so
    /// a scanned label is matched to the part and to 原厂 / 同质 / 修复.
    #[serde(default, rename = "barcode")]
    pub barcodes: Vec<PartBarcode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartBarcode {
    pub gtin: String,
    pub origin: crate::domain::workshop::Origin,
}

/// A GTIN-8/12/13/14 with a correct GS1 check digit.
pub fn valid_gtin(s: &str) -> bool {
    let d: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != s.len() || ![8, 12, 13, 14].contains(&d.len()) {
        return false;
    }
    let (body, check) = d.split_at(d.len() - 1);
    let sum: u32 = body.iter().rev().enumerate().map(|(i, x)| if i % 2 == 0 { x * 3 } else { *x }).sum();
    (10 - sum % 10) % 10 == check[0]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRates {
    pub id: String,
    pub currency: String,
    pub rates: BTreeMap<LabourClass, f64>,
    /// Work bays that can take a car at the same time.
    pub bays: u32,
    pub open: NaiveTime,
    pub close: NaiveTime,
    /// ISO weekday numbers, Monday = 1.
    pub workdays: Vec<u8>,
    /// Times customers may bring the car in.
    pub slot_starts: Vec<NaiveTime>,
    /// Days the store is closed besides its weekly closing days: its own, plus every `[[holiday]]`
    /// of rates.toml (added at load).
    #[serde(default)]
    pub closed: Vec<Closure>,
}

/// Closed from `from` to `to`, both included (春节, a store's own closing days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    pub name: String,
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
}

impl StoreRates {
    /// Whether the store takes cars on `date`: a workday and not inside a closure.
    pub fn is_open(&self, date: chrono::NaiveDate) -> bool {
        use chrono::Datelike;
        self.workdays.contains(&(date.weekday().number_from_monday() as u8)) && !self.closed.iter().any(|c| c.from <= date && date <= c.to)
    }
}

impl StoreRates {
    pub fn rate(&self, class: LabourClass) -> f64 {
        // Validation guarantees every class has a rate.
        self.rates.get(&class).copied().unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub id: String,
    pub part: Part,
    pub damage: DamageType,
    #[serde(default)]
    pub when_keywords: Vec<String>,
    pub cause_zh: String,
    pub cause_en: String,
    pub solution_zh: String,
    pub solution_en: String,
    pub operations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpsFile {
    version: u32,
    operation: Vec<Operation>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartsFile {
    version: u32,
    part: Vec<PartItem>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    version: u32,
    store: Vec<StoreRates>,
    /// Public holidays for every store (the store calendar; HQ replaces it with the rates bundle).
    #[serde(default)]
    holiday: Vec<Closure>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnowledgeFile {
    version: u32,
    fault: Vec<Fault>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub operations: Vec<Operation>,
    pub parts: Vec<PartItem>,
    pub stores: Vec<StoreRates>,
    pub faults: Vec<Fault>,
    /// Highest file version seen; shows in health output which catalogue is live.
    pub version: u32,
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, file: &str) -> Result<T, CatalogError> {
    toml::from_str(text).map_err(|e| CatalogError::Parse { file: file.into(), reason: e.to_string() })
}

impl Catalog {
    /// The compiled-in starter catalogue. A unit test validates it, so this cannot fail.
    pub fn builtin() -> Catalog {
        Self::from_texts(OPERATIONS_TOML, PARTS_TOML, RATES_TOML, KNOWLEDGE_TOML)
            .unwrap_or_else(|e| panic!("builtin catalogue invalid: {e}"))
    }

    /// The text of a built-in starter file (`operations.toml`, `parts.toml`, `rates.toml`, `knowledge.toml`).
    pub fn builtin_text(name: &str) -> Option<&'static str> {
        match name {
            "operations.toml" => Some(OPERATIONS_TOML),
            "parts.toml" => Some(PARTS_TOML),
            "rates.toml" => Some(RATES_TOML),
            "knowledge.toml" => Some(KNOWLEDGE_TOML),
            _ => None,
        }
    }

    /// Loads and validates `operations.toml`, `parts.toml`, `rates.toml`, `knowledge.toml` from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| CatalogError::Read { file: p.display().to_string(), reason: e.to_string() })
        };
        Self::from_texts(&read("operations.toml")?, &read("parts.toml")?, &read("rates.toml")?, &read("knowledge.toml")?)
    }

    pub fn from_texts(ops: &str, parts: &str, rates: &str, knowledge: &str) -> Result<Catalog, CatalogError> {
        let o: OpsFile = parse(ops, "operations.toml")?;
        let p: PartsFile = parse(parts, "parts.toml")?;
        let mut r: RatesFile = parse(rates, "rates.toml")?;
        for s in &mut r.store {
            s.closed.extend(r.holiday.iter().cloned());
        }
        let k: KnowledgeFile = parse(knowledge, "knowledge.toml")?;
        let cat = Catalog {
            version: o.version.max(p.version).max(r.version).max(k.version),
            operations: o.operation,
            parts: p.part,
            stores: r.store,
            faults: k.fault,
        };
        cat.validate()?;
        Ok(cat)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let mut seen = BTreeSet::new();
        let mut gtins = BTreeSet::new();
        for p in &self.parts {
            let f = "parts.toml";
            if !seen.insert(p.part_no.as_str()) {
                return Err(invalid(f, &p.part_no, "duplicate part number"));
            }
            if p.name_zh.trim().is_empty() || p.name_en.trim().is_empty() {
                return Err(invalid(f, &p.part_no, "empty name"));
            }
            if !(p.oem_cny > 0.0 && p.oem_cny < 1_000_000.0) {
                return Err(invalid(f, &p.part_no, format!("OEM price {} out of range", p.oem_cny)));
            }
            for b in &p.barcodes {
                if !valid_gtin(&b.gtin) {
                    return Err(invalid(f, &p.part_no, format!("barcode {} is not a GTIN with a valid check digit", b.gtin)));
                }
                if !gtins.insert(format!("{:0>14}", b.gtin)) {
                    return Err(invalid(f, &p.part_no, format!("barcode {} is listed for two parts", b.gtin)));
                }
            }
            if let Some(a) = p.aftermarket_cny {
                // An aftermarket part dearer than OEM is almost certainly a typo.
                if !(a > 0.0 && a <= p.oem_cny) {
                    return Err(invalid(f, &p.part_no, format!("aftermarket price {a} must be > 0 and <= OEM {}", p.oem_cny)));
                }
            }
        }
        let mut codes = BTreeSet::new();
        for op in &self.operations {
            let f = "operations.toml";
            if !codes.insert(op.code.as_str()) {
                return Err(invalid(f, &op.code, "duplicate operation code"));
            }
            if op.name_zh.trim().is_empty() || op.name_en.trim().is_empty() {
                return Err(invalid(f, &op.code, "empty name"));
            }
            if !(op.hours > 0.0 && op.hours <= 40.0) {
                return Err(invalid(f, &op.code, format!("hours {} must be in (0, 40]", op.hours)));
            }
            if !(op.materials_cny >= 0.0 && op.materials_cny < 100_000.0) {
                return Err(invalid(f, &op.code, format!("materials {} out of range", op.materials_cny)));
            }
            // All three empty: an operation the estimate never picks by itself (a store's own
            // labour code imported without matching rules); it is still priced when named.
            let unmatched = op.parts.is_empty() && op.damage.is_empty() && op.severity.is_empty();
            if !unmatched && (op.parts.is_empty() || op.damage.is_empty() || op.severity.is_empty()) {
                return Err(invalid(f, &op.code, "give parts, damage and severity together (or none: never matched by the estimate)"));
            }
            for prefix in &op.parts_needed {
                if self.resolve_parts(prefix, None).is_empty() {
                    return Err(invalid(f, &op.code, format!("parts_needed `{prefix}` matches no part in parts.toml")));
                }
            }
        }
        if !self.stores.iter().any(|s| s.id == "default") {
            return Err(invalid("rates.toml", "store", "a store with id `default` is required"));
        }
        for s in &self.stores {
            let f = "rates.toml";
            for c in LabourClass::ALL {
                match s.rates.get(&c) {
                    Some(r) if *r > 0.0 && *r < 10_000.0 => {}
                    _ => return Err(invalid(f, &s.id, format!("missing or invalid rate for {c:?}"))),
                }
            }
            if s.bays == 0 || s.open >= s.close {
                return Err(invalid(f, &s.id, "needs at least one bay and open < close"));
            }
            if s.workdays.is_empty() || s.workdays.iter().any(|d| !(1..=7).contains(d)) {
                return Err(invalid(f, &s.id, "workdays must be ISO weekday numbers 1..=7"));
            }
            if s.slot_starts.is_empty() || s.slot_starts.iter().any(|t| *t < s.open || *t >= s.close) {
                return Err(invalid(f, &s.id, "slot_starts must lie within opening hours"));
            }
            if let Some(c) = s.closed.iter().find(|c| c.from > c.to || c.name.trim().is_empty()) {
                return Err(invalid(f, &s.id, format!("closure `{}`: needs a name and from <= to", c.name)));
            }
        }
        for fl in &self.faults {
            for c in &fl.operations {
                if !codes.contains(c.as_str()) {
                    return Err(invalid("knowledge.toml", &fl.id, format!("unknown operation `{c}`")));
                }
            }
        }
        Ok(())
    }

    pub fn store(&self, id: &str) -> &StoreRates {
        // Validation guarantees `default` exists; `stores` is never empty.
        self.stores.iter().find(|s| s.id == id).or_else(|| self.stores.iter().find(|s| s.id == "default")).unwrap_or(&self.stores[0])
    }

    pub fn operation(&self, code: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.code == code)
    }

    pub fn part(&self, part_no: &str) -> Option<&PartItem> {
        self.parts.iter().find(|p| p.part_no == part_no)
    }

    /// The part and origin a scanned GTIN identifies.
    /// GTINs compare as GTIN-14 (an EAN-13 on the box equals the AI 01 in a DataMatrix).
    pub fn part_by_gtin(&self, gtin: &str) -> Option<(&PartItem, crate::domain::workshop::Origin)> {
        let key = format!("{gtin:0>14}");
        self.parts.iter().find_map(|p| p.barcodes.iter().find(|b| format!("{:0>14}", b.gtin) == key).map(|b| (p, b.origin)))
    }

    /// The parts a `parts_needed` prefix means for a finding at `position`: the exact number, or
    /// the prefix plus the side suffix (`-RF`, `-R`, `-F`). Without a side, all sided variants.
    pub fn resolve_parts(&self, prefix: &str, position: Option<Position>) -> Vec<&PartItem> {
        if let Some(p) = self.part(prefix) {
            return vec![p];
        }
        let suffixes: &[&str] = match position {
            Some(Position::LeftFront) => &["LF", "L", "F"],
            Some(Position::RightFront) => &["RF", "R", "F"],
            Some(Position::LeftRear) => &["LR", "L", "R"],
            Some(Position::RightRear) => &["RR", "R", "R"],
            Some(Position::Front) => &["F", "LF"],
            Some(Position::Rear) => &["R", "LR"],
            Some(Position::Left) => &["L", "LF"],
            Some(Position::Right) => &["R", "RF"],
            None => &[],
        };
        for s in suffixes {
            if let Some(p) = self.part(&format!("{prefix}-{s}")) {
                return vec![p];
            }
        }
        if position.is_some() {
            return Vec::new();
        }
        // Unknown side: every sided variant (suffix is 1-2 capital letters).
        self.parts
            .iter()
            .filter(|p| {
                p.part_no
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('-'))
                    .map(|r| (1..=2).contains(&r.len()) && r.chars().all(|c| c.is_ascii_uppercase()))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// The first knowledge-base fault matching a symptom; `when` is the finding's `occurs_when`.
    pub fn fault_for(&self, part: Part, damage: DamageType, when: Option<&str>) -> Option<&Fault> {
        let when_l = when.map(|w| w.to_lowercase()).unwrap_or_default();
        self.faults.iter().find(|f| {
            f.part == part
                && f.damage == damage
                && (f.when_keywords.is_empty() || f.when_keywords.iter().any(|k| when_l.contains(&k.to_lowercase())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_is_valid_and_big_enough() {
        let c = Catalog::builtin();
        assert!(c.operations.len() >= 40, "{} operations", c.operations.len());
        assert!(c.parts.len() >= 100, "{} parts", c.parts.len());
        let s = c.store("default");
        let panel = c.operation("BP-DOOR-PANEL").unwrap();
        assert_eq!(panel.hours * s.rate(panel.labour_class) + panel.materials_cny, 400.0);
        let paint = c.operation("PT-DOOR-PAINT").unwrap();
        assert_eq!(paint.hours * s.rate(paint.labour_class) + paint.materials_cny, 800.0);
        let hinge = c.operation("MC-DOOR-HINGE").unwrap();
        assert_eq!(hinge.hours * s.rate(hinge.labour_class) + hinge.materials_cny, 100.0);
    }

    #[test]
    fn resolves_sided_parts() {
        let c = Catalog::builtin();
        let v = c.resolve_parts("DL-ACT", Some(Position::RightFront));
        assert_eq!(v[0].part_no, "DL-ACT-RF");
        assert_eq!(c.resolve_parts("HL", Some(Position::Left))[0].part_no, "HL-L");
        assert_eq!(c.resolve_parts("HL", None).len(), 2);
    }

    #[test]
    fn bad_entry_is_named() {
        let bad = OPERATIONS_TOML.replacen("hours = 2.0", "hours = -1.0", 1);
        let e = Catalog::from_texts(&bad, PARTS_TOML, RATES_TOML, KNOWLEDGE_TOML).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("operations.toml") && m.contains("BP-DOOR-PANEL"), "{m}");
    }
}

/// The catalogue in use, shared by the services that price work. HQ bundles replace it whole
/// (already validated); readers keep the `Arc` they took, so a plan is priced from one catalogue.
#[derive(Clone)]
pub struct SharedCatalog(Arc<RwLock<Arc<Catalog>>>);

impl SharedCatalog {
    pub fn new(c: Catalog) -> SharedCatalog {
        SharedCatalog(Arc::new(RwLock::new(Arc::new(c))))
    }

    pub fn get(&self) -> Arc<Catalog> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn replace(&self, c: Catalog) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(c),
            Err(p) => *p.into_inner() = Arc::new(c),
        }
    }
}
