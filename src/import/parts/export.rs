//! The catalogue as the lists it is imported from: `parts.csv` and `labour.csv`, UTF-8 with a BOM
//! (so Excel opens the Chinese right), headed with the first column name of each field of the
//! shipped mappings. Invariant: importing the export onto any catalogue gives back these parts and
//! operations exactly (a test checks it), so the rows follow the folding rule of the module doc:
//! one row per barcode (in order), plus an oem row carrying the OEM price when no oem barcode does,
//! plus an equivalent row carrying the aftermarket price when no equivalent barcode does.

use std::path::Path;

use super::rows::{self, Words};
use super::{mapping, CatalogFile, CatalogImportError};
use crate::catalog::{Catalog, PartItem};
use crate::domain::workshop::Origin;

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn headers(what: CatalogFile, fields: &[&str]) -> Result<Vec<String>, CatalogImportError> {
    let m = mapping(what.default_mapping())?;
    Ok(fields.iter().map(|f| m.columns.get(*f).and_then(|n| n.first()).cloned().unwrap_or_else(|| f.to_string())).collect())
}

fn money(x: f64) -> String {
    format!("{x}")
}

fn part_rows(p: &PartItem, w: &Words) -> Vec<Vec<String>> {
    let price = |o: Origin| match o {
        Origin::Oem => money(p.oem_cny),
        Origin::Equivalent => p.aftermarket_cny.map(money).unwrap_or_default(),
        Origin::Refurbished => String::new(),
    };
    let row = |o: Origin, gtin: &str| {
        vec![p.part_no.clone(), p.name_zh.clone(), p.name_en.clone(), rows::part_word(p.fits), w.origin_word(o), price(o), gtin.to_string()]
    };
    let mut out = Vec::new();
    if !p.barcodes.iter().any(|b| b.origin == Origin::Oem) {
        out.push(row(Origin::Oem, ""));
    }
    out.extend(p.barcodes.iter().map(|b| row(b.origin, &b.gtin)));
    if p.aftermarket_cny.is_some() && !p.barcodes.iter().any(|b| b.origin == Origin::Equivalent) {
        out.push(row(Origin::Equivalent, ""));
    }
    out
}

/// One list of the catalogue as CSV bytes.
pub fn export_csv(cat: &Catalog, what: CatalogFile) -> Result<Vec<u8>, CatalogImportError> {
    let w = Words::builtin();
    let mut out = csv::Writer::from_writer(BOM.to_vec());
    let csv_err = |e: csv::Error| CatalogImportError::Io { path: "csv".into(), source: std::io::Error::other(e) };
    match what {
        CatalogFile::Parts => {
            out.write_record(headers(what, rows::PART_FIELDS)?).map_err(csv_err)?;
            for p in &cat.parts {
                for r in part_rows(p, &w) {
                    out.write_record(r).map_err(csv_err)?;
                }
            }
        }
        CatalogFile::Labour => {
            out.write_record(headers(what, rows::LABOUR_FIELDS)?).map_err(csv_err)?;
            let join = |v: Vec<String>| v.join(rows::LIST_SEPARATOR);
            for o in &cat.operations {
                out.write_record([
                    o.code.clone(),
                    o.name_zh.clone(),
                    o.name_en.clone(),
                    w.labour_class_word(o.labour_class),
                    money(o.hours),
                    money(o.materials_cny),
                    join(o.parts.iter().map(|p| rows::part_word(*p)).collect()),
                    join(o.damage.iter().map(|d| rows::damage_word(*d)).collect()),
                    join(o.severity.iter().map(|s| w.severity_word(*s)).collect()),
                    join(o.parts_needed.clone()),
                ])
                .map_err(csv_err)?;
            }
        }
    }
    out.into_inner().map_err(|e| CatalogImportError::Io { path: "csv".into(), source: std::io::Error::other(e.to_string()) })
}

/// `parts.csv` and `labour.csv` into `dir` (created if needed).
pub fn write_export(cat: &Catalog, dir: &Path) -> Result<(), CatalogImportError> {
    std::fs::create_dir_all(dir).map_err(|source| CatalogImportError::Io { path: dir.display().to_string(), source })?;
    for (name, what) in [("parts.csv", CatalogFile::Parts), ("labour.csv", CatalogFile::Labour)] {
        let p = dir.join(name);
        std::fs::write(&p, export_csv(cat, what)?).map_err(|source| CatalogImportError::Io { path: p.display().to_string(), source })?;
    }
    Ok(())
}
