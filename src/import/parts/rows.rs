//! Rows → checked values: each cell parsed for what its field means, every problem collected with
//! its line and field (never the first only). Parts rows of one `part_no` are folded here; how the
//! folded part meets the catalogue is `merge.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RowError;
use crate::catalog::{valid_gtin, LabourClass, Severity};
use crate::domain::vocab::{DamageType, Part};
use crate::domain::workshop::Origin;
use crate::import::table::{Columns, Row, Table};

pub const PART_FIELDS: &[&str] = &["part_no", "name_zh", "name_en", "fits", "origin", "price_cny", "barcode"];
pub const PART_REQUIRED: &[&str] = &["part_no", "name_zh", "price_cny"];
pub const LABOUR_FIELDS: &[&str] =
    &["code", "name_zh", "name_en", "labour_class", "hours", "materials_cny", "parts", "damage", "severity", "parts_needed"];
pub const LABOUR_REQUIRED: &[&str] = &["code", "name_zh", "hours"];

const WORDS_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/import/catalog_words.toml"));

/// The words of `assets/import/catalog_words.toml`, by value.
#[derive(Debug)]
pub struct Words {
    origin: Vec<(Origin, Vec<String>)>,
    labour_class: Vec<(LabourClass, Vec<String>)>,
    severity: Vec<(Severity, Vec<String>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWords {
    origin: BTreeMap<String, Vec<String>>,
    labour_class: BTreeMap<String, Vec<String>>,
    severity: BTreeMap<String, Vec<String>>,
}

fn by_id<T: for<'de> Deserialize<'de>>(table: &str, m: BTreeMap<String, Vec<String>>) -> Result<Vec<(T, Vec<String>)>, String> {
    m.into_iter()
        .map(|(k, w)| {
            serde_json::from_value(serde_json::Value::String(k.clone()))
                .map(|v| (v, w))
                .map_err(|_| format!("[{table}] {k} is not a value"))
        })
        .collect()
}

impl Words {
    /// The compiled-in words; a unit test checks they parse and cover every value.
    pub fn builtin() -> Words {
        Self::parse(WORDS_TOML).unwrap_or_else(|e| panic!("assets/import/catalog_words.toml: {e}"))
    }

    fn parse(text: &str) -> Result<Words, String> {
        let r: RawWords = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(Words {
            origin: by_id("origin", r.origin)?,
            labour_class: by_id("labour_class", r.labour_class)?,
            severity: by_id("severity", r.severity)?,
        })
    }

    fn find<T: Copy + Serialize>(map: &[(T, Vec<String>)], text: &str) -> Option<T> {
        let t = text.trim().to_lowercase();
        map.iter().find(|(k, words)| id_of(k) == t || words.iter().any(|w| w.to_lowercase() == t)).map(|(k, _)| *k)
    }

    fn first<T: Copy + Serialize + PartialEq>(map: &[(T, Vec<String>)], v: T) -> String {
        map.iter().find(|(k, _)| *k == v).and_then(|(_, w)| w.first()).cloned().unwrap_or_else(|| id_of(&v))
    }

    pub fn origin(&self, s: &str) -> Option<Origin> {
        Self::find(&self.origin, s)
    }
    pub fn labour_class(&self, s: &str) -> Option<LabourClass> {
        Self::find(&self.labour_class, s)
    }
    pub fn severity(&self, s: &str) -> Option<Severity> {
        Self::find(&self.severity, s)
    }

    /// The word an export writes (the first listed, else the id).
    pub fn origin_word(&self, o: Origin) -> String {
        Self::first(&self.origin, o)
    }
    pub fn labour_class_word(&self, c: LabourClass) -> String {
        Self::first(&self.labour_class, c)
    }
    pub fn severity_word(&self, s: Severity) -> String {
        Self::first(&self.severity, s)
    }
}

/// The snake_case wire id of a vocabulary value.
pub fn id_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A part by its id (`door`) or Chinese name (`车门`).
pub fn part_from(s: &str) -> Option<Part> {
    Part::from_id(s).or_else(|| Part::ALL.iter().copied().find(|p| p.name_zh() == s))
}

pub fn damage_from(s: &str) -> Option<DamageType> {
    DamageType::from_id(s).or_else(|| DamageType::ALL.iter().copied().find(|d| d.name_zh() == s))
}

/// What an export writes for a part: its Chinese name where that names it alone, else its id.
pub fn part_word(p: Part) -> String {
    if Part::ALL.iter().filter(|q| q.name_zh() == p.name_zh()).count() == 1 {
        p.name_zh().to_string()
    } else {
        p.id().to_string()
    }
}

pub fn damage_word(d: DamageType) -> String {
    if DamageType::ALL.iter().filter(|q| q.name_zh() == d.name_zh()).count() == 1 {
        d.name_zh().to_string()
    } else {
        d.id().to_string()
    }
}

/// The separator an export writes between list items; imports accept any of `SEPARATORS`.
pub const LIST_SEPARATOR: &str = "、";
const SEPARATORS: &[char] = &['、', ';', '；', ',', '，', '|', '/'];

fn list(s: &str) -> Vec<&str> {
    s.split(SEPARATORS).map(str::trim).filter(|x| !x.is_empty()).collect()
}

/// Money or hours as people type it: `¥1,280.00`, `1280元`, ` 2.5 `.
fn number(s: &str) -> Option<f64> {
    let cleaned: String = s.chars().filter(|c| !matches!(c, '¥' | '￥' | ',' | '，' | '元' | ' ')).collect();
    cleaned.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn err(errors: &mut Vec<RowError>, row: &Row, field: &str, message: impl Into<String>) {
    errors.push(RowError { line: row.line, field: field.into(), message: message.into() });
}

/// A code or part number: printable, no spaces, at most 64 characters.
fn check_key(s: &str) -> Result<(), String> {
    if s.chars().count() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("'{s}' must be at most 64 characters without spaces"))
    } else {
        Ok(())
    }
}

/// One `part_no`'s rows folded: what the file says about it.
#[derive(Debug, Default)]
pub struct FoldedPart {
    pub part_no: String,
    pub first_line: usize,
    pub name_zh: Option<String>,
    pub name_en: Option<String>,
    pub fits: Option<Part>,
    /// Origins the file lists for this part, with their price when one is given.
    pub prices: Vec<(Origin, Option<f64>)>,
    /// Barcodes in file order.
    pub barcodes: Vec<(String, Origin)>,
}

/// A value that all rows of a part must agree on: the first given one, and its line.
fn agree<T: PartialEq + Clone + std::fmt::Debug>(slot: &mut Option<(T, usize)>, v: T, row: &Row, field: &str, errors: &mut Vec<RowError>) {
    match slot {
        Some((old, line)) if *old != v => err(errors, row, field, format!("{v:?} differs from {old:?} on line {line} for the same part")),
        Some(_) => {}
        None => *slot = Some((v, row.line)),
    }
}

#[derive(Default)]
struct Acc {
    part: FoldedPart,
    name_zh: Option<(String, usize)>,
    name_en: Option<(String, usize)>,
    fits: Option<(Part, usize)>,
    price: Vec<(Origin, Option<(f64, usize)>)>,
}

pub fn read_parts(t: &Table, c: &Columns, words: &Words) -> (Vec<FoldedPart>, Vec<RowError>) {
    let mut errors = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    let mut gtin_at: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for row in &t.rows {
        let Some(part_no) = c.get(row, "part_no") else {
            err(&mut errors, row, "part_no", "empty part number");
            continue;
        };
        if let Err(m) = check_key(part_no) {
            err(&mut errors, row, "part_no", m);
            continue;
        }
        let a = acc.entry(part_no.to_string()).or_insert_with(|| {
            order.push(part_no.to_string());
            Acc { part: FoldedPart { part_no: part_no.to_string(), first_line: row.line, ..Default::default() }, ..Default::default() }
        });
        if let Some(n) = c.get(row, "name_zh") {
            agree(&mut a.name_zh, n.to_string(), row, "name_zh", &mut errors);
        }
        if let Some(n) = c.get(row, "name_en") {
            agree(&mut a.name_en, n.to_string(), row, "name_en", &mut errors);
        }
        if let Some(f) = c.get(row, "fits") {
            match part_from(f) {
                Some(p) => agree(&mut a.fits, p, row, "fits", &mut errors),
                None => err(&mut errors, row, "fits", format!("'{f}' is not a known part (e.g. 车门 / door)")),
            }
        }
        let origin = match c.get(row, "origin") {
            None => Origin::Oem,
            Some(o) => match words.origin(o) {
                Some(o) => o,
                None => {
                    err(&mut errors, row, "origin", format!("'{o}' is not an origin (原厂 / 同质 / 修复)"));
                    continue;
                }
            },
        };
        let at = match a.price.iter().position(|(o, _)| *o == origin) {
            Some(i) => i,
            None => {
                a.price.push((origin, None));
                a.price.len() - 1
            }
        };
        let slot = &mut a.price[at].1;
        if let Some(p) = c.get(row, "price_cny") {
            match number(p) {
                Some(x) if x > 0.0 && x < 1_000_000.0 => match slot {
                    Some((old, line)) if *old != x => {
                        err(&mut errors, row, "price_cny", format!("{x} differs from {old} on line {line} for the same part and origin"))
                    }
                    Some(_) => {}
                    None => *slot = Some((x, row.line)),
                },
                _ => err(&mut errors, row, "price_cny", format!("'{p}' is not a price between 0 and 1,000,000 CNY")),
            }
        }
        if let Some(g) = c.get(row, "barcode") {
            if !valid_gtin(g) {
                err(&mut errors, row, "barcode", format!("'{g}' is not a GTIN-8/12/13/14 with a correct check digit"));
            } else {
                let key = format!("{g:0>14}");
                match gtin_at.get(&key) {
                    Some((other, line)) if other != part_no => {
                        err(&mut errors, row, "barcode", format!("{g} is also the barcode of {other} on line {line}"))
                    }
                    Some(_) if a.part.barcodes.iter().any(|(b, o)| format!("{b:0>14}") == key && *o != origin) => {
                        err(&mut errors, row, "barcode", format!("{g} is listed with two origins for this part"))
                    }
                    Some(_) => {}
                    None => {
                        gtin_at.insert(key, (part_no.to_string(), row.line));
                        a.part.barcodes.push((g.to_string(), origin));
                    }
                }
            }
        }
    }
    let parts = order
        .into_iter()
        .filter_map(|n| acc.remove(&n))
        .map(|a| {
            let mut p = a.part;
            p.name_zh = a.name_zh.map(|x| x.0);
            p.name_en = a.name_en.map(|x| x.0);
            p.fits = a.fits.map(|x| x.0);
            p.prices = a.price.into_iter().map(|(o, v)| (o, v.map(|x| x.0))).collect();
            p
        })
        .collect();
    (parts, errors)
}

/// One labour row; `None`: the file does not give that field for this row.
#[derive(Debug, Default)]
pub struct LabourRow {
    pub line: usize,
    pub code: String,
    pub name_zh: String,
    pub name_en: Option<String>,
    pub labour_class: Option<LabourClass>,
    pub hours: f64,
    pub materials_cny: Option<f64>,
    pub parts: Option<Vec<Part>>,
    pub damage: Option<Vec<DamageType>>,
    pub severity: Option<Vec<Severity>>,
    pub parts_needed: Option<Vec<String>>,
}

fn items<T>(row: &Row, c: &Columns, field: &str, parse: impl Fn(&str) -> Option<T>, errors: &mut Vec<RowError>) -> Option<Vec<T>> {
    let cell = c.get(row, field)?;
    let mut out = Vec::new();
    for item in list(cell) {
        match parse(item) {
            Some(v) => out.push(v),
            None => err(errors, row, field, format!("'{item}' is not known here")),
        }
    }
    Some(out)
}

pub fn read_labour(t: &Table, c: &Columns, words: &Words) -> (Vec<LabourRow>, Vec<RowError>) {
    let mut errors = Vec::new();
    let mut out: Vec<LabourRow> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in &t.rows {
        let before = errors.len();
        let Some(code) = c.get(row, "code") else {
            err(&mut errors, row, "code", "empty labour code");
            continue;
        };
        if let Err(m) = check_key(code) {
            err(&mut errors, row, "code", m);
        }
        if let Some(line) = seen.insert(code.to_string(), row.line) {
            err(&mut errors, row, "code", format!("{code} is also on line {line}"));
        }
        let name_zh = c.get(row, "name_zh").unwrap_or_default();
        if name_zh.is_empty() {
            err(&mut errors, row, "name_zh", "empty name");
        }
        let hours = match c.get(row, "hours").map(|h| (h, number(h))) {
            Some((_, Some(h))) if h > 0.0 && h <= 40.0 => h,
            Some((h, _)) => {
                err(&mut errors, row, "hours", format!("'{h}' is not a number of hours in (0, 40]"));
                0.0
            }
            None => {
                err(&mut errors, row, "hours", "empty standard hours");
                0.0
            }
        };
        let labour_class = c.get(row, "labour_class").and_then(|s| {
            let v = words.labour_class(s);
            if v.is_none() {
                err(&mut errors, row, "labour_class", format!("'{s}' is not a labour class (钣金 / 喷漆 / 机修 / 电工 / 玻璃 / 诊断)"));
            }
            v
        });
        let materials_cny = if c.has("materials_cny") {
            match c.get(row, "materials_cny").map(|m| (m, number(m))) {
                None => Some(0.0),
                Some((_, Some(m))) if (0.0..100_000.0).contains(&m) => Some(m),
                Some((m, _)) => {
                    err(&mut errors, row, "materials_cny", format!("'{m}' is not an amount between 0 and 100,000 CNY"));
                    None
                }
            }
        } else {
            None
        };
        let parts = items(row, c, "parts", part_from, &mut errors);
        let damage = items(row, c, "damage", damage_from, &mut errors);
        let severity = items(row, c, "severity", |s| words.severity(s), &mut errors);
        let parts_needed = items(row, c, "parts_needed", |s| check_key(s).ok().map(|_| s.to_string()), &mut errors);
        if errors.len() == before {
            out.push(LabourRow {
                line: row.line,
                code: code.to_string(),
                name_zh: name_zh.to_string(),
                name_en: c.get(row, "name_en").map(str::to_string),
                labour_class,
                hours,
                materials_cny,
                parts,
                damage,
                severity,
                parts_needed,
            });
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::table::{self, Mapping};

    #[test]
    fn words_cover_every_value() {
        let w = Words::builtin();
        for o in [Origin::Oem, Origin::Equivalent, Origin::Refurbished] {
            assert_eq!(w.origin(&w.origin_word(o)), Some(o));
            assert_eq!(w.origin(o.as_str()), Some(o));
        }
        for c in LabourClass::ALL {
            assert_eq!(w.labour_class(&w.labour_class_word(c)), Some(c));
        }
        for s in [Severity::Light, Severity::Moderate, Severity::Deep, Severity::Any] {
            assert_eq!(w.severity(&w.severity_word(s)), Some(s));
        }
        assert_eq!(w.origin("OEM"), Some(Origin::Oem));
        for p in Part::ALL {
            assert_eq!(part_from(&part_word(*p)), Some(*p));
        }
        for d in DamageType::ALL {
            assert_eq!(damage_from(&damage_word(*d)), Some(*d));
        }
    }

    fn parts_of(csv: &str) -> (Vec<FoldedPart>, Vec<RowError>) {
        let t = table::read("p.csv", csv.as_bytes()).unwrap();
        let m = Mapping::parse(super::super::MAPPINGS[0].1).unwrap();
        let c = m.resolve(&t.headers, PART_FIELDS, PART_REQUIRED).unwrap();
        read_parts(&t, &c, &Words::builtin())
    }

    #[test]
    fn rows_of_one_part_fold_by_origin() {
        let (p, e) = parts_of(
            "配件编号,配件名称,配件来源/品质,销售价,条码\n\
             X-1,甲,原厂,\"¥1,200\",6901234000023\n\
             X-1,甲,同质,600,6907654000025\n\
             X-1,,原厂,1200元,\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].prices, [(Origin::Oem, Some(1200.0)), (Origin::Equivalent, Some(600.0))]);
        assert_eq!(p[0].barcodes.len(), 2);
    }

    #[test]
    fn every_bad_row_is_named_by_line_and_field() {
        let (_, e) = parts_of(
            "配件编号,配件名称,配件来源/品质,销售价,条码\n\
             X-1,甲,原厂,100,6901234000024\n\
             X-1,乙,原厂,110,\n\
             X-2,丙,进口,100,\n\
             ,丁,原厂,100,\n",
        );
        let got: Vec<(usize, &str)> = e.iter().map(|r| (r.line, r.field.as_str())).collect();
        assert_eq!(got, [(2, "barcode"), (3, "name_zh"), (3, "price_cny"), (4, "origin"), (5, "part_no")]);
    }
}
