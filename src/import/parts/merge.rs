//! Checked rows onto the catalogue in force: the folding and keeping rules of the module doc, the
//! counts of the report, and the catalogue file text. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rows::{FoldedPart, LabourRow};
use super::RowError;
use crate::catalog::{Catalog, CatalogError, Operation, PartBarcode, PartItem};
use crate::domain::workshop::Origin;

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub kept: usize,
}

/// The first line of each catalogue entry (part number or code) in the file, to name the line
/// when the catalogue as a whole refuses an entry.
#[derive(Debug, Default)]
pub struct Lines {
    key_field: &'static str,
    at: BTreeMap<String, usize>,
}

impl Lines {
    pub fn error_for(&self, e: &CatalogError) -> RowError {
        let line = match e {
            CatalogError::Invalid { entry, .. } => self.at.get(entry).copied(),
            _ => None,
        };
        // Line 0: the refusal concerns an entry that is not in the file (one the rows broke).
        RowError { line: line.unwrap_or(0), field: self.key_field.into(), message: e.to_string() }
    }
}

pub struct Merged {
    pub parts: Vec<PartItem>,
    pub operations: Vec<Operation>,
    pub errors: Vec<RowError>,
    pub counts: Counts,
    pub lines: Lines,
}

fn same<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

fn count<T: Serialize>(c: &mut Counts, old: Option<&T>, new: &T) {
    match old {
        None => c.new += 1,
        Some(o) if same(o, new) => c.unchanged += 1,
        Some(_) => c.changed += 1,
    }
}

fn is_oem(o: Origin) -> bool {
    o == Origin::Oem
}

/// One folded part onto its catalogue entry (`old`), or a new part.
fn fold(f: &FoldedPart, old: Option<&PartItem>, has_barcodes: bool, errors: &mut Vec<RowError>) -> Option<PartItem> {
    let missing = |errors: &mut Vec<RowError>, field: &str, what: &str| {
        errors.push(RowError { line: f.first_line, field: field.into(), message: format!("{} is a new part: {what}", f.part_no) });
    };
    let name_zh = f.name_zh.clone().or_else(|| old.map(|o| o.name_zh.clone()));
    let name_en = f.name_en.clone().or_else(|| old.map(|o| o.name_en.clone())).or_else(|| name_zh.clone());
    let fits = f.fits.or(old.map(|o| o.fits));
    let listed_oem = f.prices.iter().find(|(o, _)| is_oem(*o)).and_then(|(_, p)| *p);
    let oem_cny = listed_oem.or(old.map(|o| o.oem_cny));
    let non_oem: Vec<&(Origin, Option<f64>)> = f.prices.iter().filter(|(o, _)| !is_oem(*o)).collect();
    let aftermarket_cny = if non_oem.is_empty() {
        old.and_then(|o| o.aftermarket_cny)
    } else {
        let price = |o: Origin| non_oem.iter().find(|(x, _)| *x == o).and_then(|(_, p)| *p);
        price(Origin::Equivalent).or(price(Origin::Refurbished))
    };
    let (Some(name_zh), Some(name_en), Some(fits), Some(oem_cny)) = (name_zh, name_en, fits, oem_cny) else {
        if f.name_zh.is_none() && old.is_none() {
            missing(errors, "name_zh", "it needs a name");
        }
        if f.fits.is_none() && old.is_none() {
            missing(errors, "fits", "it needs the part it fits (适用部位)");
        }
        if listed_oem.is_none() && old.is_none() {
            missing(errors, "price_cny", "it needs an OEM (原厂) price");
        }
        return None;
    };
    let barcodes = if has_barcodes {
        let listed: Vec<Origin> = f.prices.iter().map(|(o, _)| *o).collect();
        let mut v: Vec<PartBarcode> = f.barcodes.iter().map(|(g, o)| PartBarcode { gtin: g.clone(), origin: *o }).collect();
        v.extend(old.into_iter().flat_map(|o| o.barcodes.iter()).filter(|b| !listed.contains(&b.origin)).cloned());
        v
    } else {
        old.map(|o| o.barcodes.clone()).unwrap_or_default()
    };
    Some(PartItem { part_no: f.part_no.clone(), name_zh, name_en, fits, oem_cny, aftermarket_cny, barcodes })
}

pub fn parts(base: &Catalog, folded: Vec<FoldedPart>, mut errors: Vec<RowError>, has_barcodes: bool) -> Merged {
    let mut counts = Counts::default();
    let mut lines = Lines { key_field: "part_no", at: BTreeMap::new() };
    let mut by_no: BTreeMap<String, PartItem> = BTreeMap::new();
    let mut added = Vec::new();
    for f in &folded {
        lines.at.insert(f.part_no.clone(), f.first_line);
        let old = base.part(&f.part_no);
        if let Some(p) = fold(f, old, has_barcodes, &mut errors) {
            count(&mut counts, old, &p);
            if old.is_none() {
                added.push(p.part_no.clone());
            }
            by_no.insert(p.part_no.clone(), p);
        }
    }
    let mut out = Vec::with_capacity(base.parts.len() + added.len());
    for p in &base.parts {
        match by_no.remove(&p.part_no) {
            Some(new) => out.push(new),
            None => {
                counts.kept += 1;
                out.push(p.clone());
            }
        }
    }
    out.extend(added.iter().filter_map(|n| by_no.remove(n)));
    Merged { parts: out, operations: Vec::new(), errors, counts, lines }
}

pub fn labour(base: &Catalog, rows: Vec<LabourRow>, mut errors: Vec<RowError>) -> Merged {
    let mut counts = Counts::default();
    let mut lines = Lines { key_field: "code", at: BTreeMap::new() };
    let mut by_code: BTreeMap<String, Operation> = BTreeMap::new();
    let mut added = Vec::new();
    for r in rows {
        lines.at.insert(r.code.clone(), r.line);
        let old = base.operation(&r.code);
        let labour_class = match r.labour_class.or(old.map(|o| o.labour_class)) {
            Some(c) => c,
            None => {
                errors.push(RowError {
                    line: r.line,
                    field: "labour_class".into(),
                    message: format!("{} is a new code: it needs a labour class (工种)", r.code),
                });
                continue;
            }
        };
        let given = [r.parts.is_some(), r.damage.is_some(), r.severity.is_some()];
        if old.is_none() && given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
            errors.push(RowError {
                line: r.line,
                field: "parts".into(),
                message: format!("{} is a new code: give parts, damage and severity together, or none", r.code),
            });
            continue;
        }
        let op = Operation {
            code: r.code.clone(),
            name_en: r.name_en.clone().or_else(|| old.map(|o| o.name_en.clone())).unwrap_or_else(|| r.name_zh.clone()),
            name_zh: r.name_zh,
            labour_class,
            hours: r.hours,
            materials_cny: r.materials_cny.or(old.map(|o| o.materials_cny)).unwrap_or(0.0),
            parts: r.parts.or_else(|| old.map(|o| o.parts.clone())).unwrap_or_default(),
            damage: r.damage.or_else(|| old.map(|o| o.damage.clone())).unwrap_or_default(),
            severity: r.severity.or_else(|| old.map(|o| o.severity.clone())).unwrap_or_default(),
            parts_needed: r.parts_needed.or_else(|| old.map(|o| o.parts_needed.clone())).unwrap_or_default(),
        };
        count(&mut counts, old, &op);
        if old.is_none() {
            added.push(op.code.clone());
        }
        by_code.insert(op.code.clone(), op);
    }
    let mut out = Vec::with_capacity(base.operations.len() + added.len());
    for o in &base.operations {
        match by_code.remove(&o.code) {
            Some(new) => out.push(new),
            None => {
                counts.kept += 1;
                out.push(o.clone());
            }
        }
    }
    out.extend(added.iter().filter_map(|c| by_code.remove(c)));
    Merged { parts: Vec::new(), operations: out, errors, counts, lines }
}

fn header(source: &str) -> String {
    let clean: String = source.chars().filter(|c| !c.is_control()).collect();
    format!("# Written by `servicebay catalog` from the list \"{clean}\" and validated with the other catalogue files.\n")
}

#[derive(Serialize)]
struct PartsOut<'a> {
    version: u32,
    part: &'a [PartItem],
}

#[derive(Serialize)]
struct OpsOut<'a> {
    version: u32,
    operation: &'a [Operation],
}

pub fn parts_toml(version: u32, parts: &[PartItem], source: &str) -> String {
    // Serialising plain structs of strings and numbers cannot fail; an error would show as a
    // text that does not validate, which refuses the import.
    header(source) + &toml::to_string(&PartsOut { version, part: parts }).unwrap_or_default()
}

pub fn operations_toml(version: u32, ops: &[Operation], source: &str) -> String {
    header(source) + &toml::to_string(&OpsOut { version, operation: ops }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_text_round_trips() {
        let c = Catalog::builtin();
        let p = parts_toml(c.version, &c.parts, "x.csv");
        let o = operations_toml(c.version, &c.operations, "x.csv");
        let again =
            Catalog::from_texts(&o, &p, Catalog::builtin_text("rates.toml").unwrap(), Catalog::builtin_text("knowledge.toml").unwrap())
                .unwrap();
        assert!(same(&again.parts, &c.parts) && same(&again.operations, &c.operations));
    }
}
