//! The store's parts and labour lists from a spreadsheet or CSV (the DMS's 配件价格表 and 工时表),
//! into the catalogue; the catalogue back out as the same kind of file; and, for HQ, the same
//! files converted into the `parts.toml` / `operations.toml` a signed price-list bundle carries.
//!
//! A file is read through a [`Mapping`] (our field → its column names; shipped ones in
//! `assets/import/parts/`), every row is checked, and the rows are merged onto the catalogue in
//! force. The result is whole catalogue text, validated with `Catalog::from_texts` together with
//! the other files in force: one bad row, or a result that does not validate, and nothing changes;
//! every bad row is listed with its line in the file and its field.
//!
//! Folding parts (`rows.rs`, `merge.rs`): the rows of one `part_no` make one catalogue part. Each
//! row is one origin (原厂 oem / 同质 equivalent / 修复 refurbished; empty: oem) with an optional
//! price and barcode; rows of the same part and origin must agree on the price. The oem rows'
//! price is `oem_cny`. The non-OEM rows' price is `aftermarket_cny` (副厂): the equivalent rows'
//! price, else the refurbished rows'; non-OEM rows without any price mean no aftermarket price.
//! An origin the file lists for a part replaces that origin's price and (when the file has a
//! barcode column) its barcodes, in file order; origins the file does not list keep theirs, so an
//! OEM-only price list leaves aftermarket prices and barcodes alone. Names and `fits` must agree
//! across a part's rows. A new part needs names, `fits` and an oem price; a part without an
//! English name takes the Chinese one. Parts the file does not mention are kept (never removed).
//!
//! Labour rows: one row per code. An existing code gets its names, hours and materials (and class)
//! replaced and keeps its matching rules (parts, damage, severity, parts_needed) unless the file
//! gives them. A new code without matching columns is added with none: the estimate never picks it
//! by itself. Codes the file does not mention are kept.
//!
//! Applying (`service.rs`) writes the store's own layer (`sync::layers`) and swaps the catalogue in
//! memory; importing a file whose content is already in force changes nothing and writes nothing.

mod export;
mod merge;
mod rows;
mod service;

use std::time::Instant;

use serde::Serialize;

pub use export::{export_csv, write_export};
pub use service::CatalogImport;

use super::table::{self, Mapping, TableError};
use crate::catalog::Catalog;

/// Which list a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogFile {
    Parts,
    Labour,
}

impl CatalogFile {
    pub fn parse(s: &str) -> Option<CatalogFile> {
        match s {
            "parts" => Some(CatalogFile::Parts),
            "labour" | "labor" => Some(CatalogFile::Labour),
            _ => None,
        }
    }

    /// The catalogue file it becomes.
    pub fn toml_name(self) -> &'static str {
        match self {
            CatalogFile::Parts => "parts.toml",
            CatalogFile::Labour => "operations.toml",
        }
    }

    /// The shipped mapping used when none is named.
    pub fn default_mapping(self) -> &'static str {
        match self {
            CatalogFile::Parts => "parts_zh",
            CatalogFile::Labour => "labour_zh",
        }
    }
}

pub use super::RowError;

/// What an import did, or would do (`dry_run`). Counts are of catalogue parts or operations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogReport {
    pub file: CatalogFile,
    /// Data rows read.
    pub rows: usize,
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// In the catalogue but not in the file: kept as they are.
    pub kept: usize,
    pub errors: Vec<RowError>,
    pub dry_run: bool,
    /// Whether the catalogue in force changed (false for a dry run, errors, or nothing new).
    pub applied: bool,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogImportError {
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("no mapping '{0}': name a shipped one ({1}) or a mapping file")]
    UnknownMapping(String, String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the catalogue in force does not validate: {0}")]
    Catalog(String),
    #[error("the file has errors: {0} rows refused (nothing was changed)")]
    Rows(usize),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The shipped mappings, by name (`assets/import/parts/<name>.toml`).
pub const MAPPINGS: &[(&str, &str)] = &[
    ("parts_zh", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/import/parts/parts_zh.toml"))),
    ("labour_zh", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/import/parts/labour_zh.toml"))),
];

/// A shipped mapping by name, else a mapping file at that path.
pub fn mapping(name_or_path: &str) -> Result<Mapping, CatalogImportError> {
    if let Some((_, text)) = MAPPINGS.iter().find(|(n, _)| *n == name_or_path) {
        return Ok(Mapping::parse(text)?);
    }
    let p = std::path::Path::new(name_or_path);
    if !p.exists() {
        let names = MAPPINGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        return Err(CatalogImportError::UnknownMapping(name_or_path.to_string(), names));
    }
    let text = std::fs::read_to_string(p).map_err(|source| CatalogImportError::Io { path: p.display().to_string(), source })?;
    Ok(Mapping::parse(&text)?)
}

/// The result of reading a file onto a catalogue: the new catalogue file's text and the report.
pub(crate) struct Outcome {
    pub text: Option<String>,
    pub report: CatalogReport,
}

/// Read `bytes` through `mapping` and merge the rows onto `base`; the catalogue file text comes
/// back only when every row is good. `validate` checks the text with the other files in force.
pub(crate) fn prepare(
    base: &Catalog,
    what: CatalogFile,
    file_name: &str,
    bytes: &[u8],
    mapping: &Mapping,
    dry_run: bool,
    validate: impl Fn(&str) -> Result<(), crate::catalog::CatalogError>,
) -> Result<Outcome, CatalogImportError> {
    let started = Instant::now();
    let t = table::read(file_name, bytes)?;
    let words = rows::Words::builtin();
    let merged = match what {
        CatalogFile::Parts => {
            let cols = mapping.resolve(&t.headers, rows::PART_FIELDS, rows::PART_REQUIRED)?;
            let (parsed, errors) = rows::read_parts(&t, &cols, &words);
            merge::parts(base, parsed, errors, cols.has("barcode"))
        }
        CatalogFile::Labour => {
            let cols = mapping.resolve(&t.headers, rows::LABOUR_FIELDS, rows::LABOUR_REQUIRED)?;
            let (parsed, errors) = rows::read_labour(&t, &cols, &words);
            merge::labour(base, parsed, errors)
        }
    };
    let mut errors = merged.errors;
    let mut text = None;
    if errors.is_empty() {
        let body = match what {
            CatalogFile::Parts => merge::parts_toml(base.version, &merged.parts, file_name),
            CatalogFile::Labour => merge::operations_toml(base.version, &merged.operations, file_name),
        };
        match validate(&body) {
            Ok(()) => text = Some(body),
            Err(e) => errors.push(merged.lines.error_for(&e)),
        }
    }
    let report = CatalogReport {
        file: what,
        rows: t.rows.len(),
        new: merged.counts.new,
        changed: merged.counts.changed,
        unchanged: merged.counts.unchanged,
        kept: merged.counts.kept,
        errors,
        dry_run,
        applied: false,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    Ok(Outcome { text, report })
}

/// HQ's side: read a list onto the catalogue files already in `out` (else the built-in ones) and
/// write the validated `parts.toml` and `operations.toml` there, for `servicebay hq-publish --kind
/// price_list`. No store, no layers: the bundle is what the stores will validate.
pub fn convert(
    what: CatalogFile,
    file_name: &str,
    bytes: &[u8],
    mapping: &Mapping,
    out: &std::path::Path,
) -> Result<CatalogReport, CatalogImportError> {
    let io = |p: &std::path::Path| {
        let p = p.display().to_string();
        move |source| CatalogImportError::Io { path: p.clone(), source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let text_of = |name: &str| -> Result<String, CatalogImportError> {
        let p = out.join(name);
        if p.exists() {
            std::fs::read_to_string(&p).map_err(io(&p))
        } else {
            Ok(Catalog::builtin_text(name).unwrap_or_default().to_string())
        }
    };
    let texts: Vec<String> = ["operations.toml", "parts.toml", "rates.toml", "knowledge.toml"]
        .iter()
        .map(|n| {
            if *n == "rates.toml" || *n == "knowledge.toml" {
                Ok(Catalog::builtin_text(n).unwrap_or_default().to_string())
            } else {
                text_of(n)
            }
        })
        .collect::<Result<_, _>>()?;
    let base = Catalog::from_texts(&texts[0], &texts[1], &texts[2], &texts[3]).map_err(|e| CatalogImportError::Catalog(e.to_string()))?;
    let o = prepare(&base, what, file_name, bytes, mapping, false, |t| {
        let (ops, parts) = match what {
            CatalogFile::Parts => (texts[0].as_str(), t),
            CatalogFile::Labour => (t, texts[1].as_str()),
        };
        Catalog::from_texts(ops, parts, &texts[2], &texts[3]).map(|_| ())
    })?;
    let Some(text) = o.text else { return Ok(o.report) };
    // Both files of the bundle, so `hq-publish` signs a consistent pair.
    let (ops, parts) = match what {
        CatalogFile::Parts => (texts[0].clone(), text),
        CatalogFile::Labour => (text, texts[1].clone()),
    };
    for (name, body) in [("operations.toml", ops), ("parts.toml", parts)] {
        let p = out.join(name);
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
    }
    let mut report = o.report;
    report.applied = true;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_mappings_parse_and_name_only_known_fields() {
        let names: Vec<&str> = MAPPINGS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["parts_zh", "labour_zh"]);
        let parts = mapping("parts_zh").unwrap();
        let headers: Vec<String> =
            ["配件编号", "配件名称", "英文名称", "适用部位", "配件来源/品质", "销售价", "条码"].map(String::from).to_vec();
        let c = parts.resolve(&headers, rows::PART_FIELDS, rows::PART_REQUIRED).unwrap();
        assert!(rows::PART_FIELDS.iter().all(|f| c.has(f)), "every parts field has a Chinese header");
        let labour = mapping("labour_zh").unwrap();
        let headers: Vec<String> = ["工时代码", "工时名称", "工种", "标准工时", "辅料费"].map(String::from).to_vec();
        labour.resolve(&headers, rows::LABOUR_FIELDS, rows::LABOUR_REQUIRED).unwrap();
        assert!(matches!(mapping("no-such-mapping"), Err(CatalogImportError::UnknownMapping(..))));
    }

    #[test]
    fn convert_writes_a_price_list_pair_that_a_bundle_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "配件编号,配件名称,英文名称,适用部位,配件来源/品质,销售价,条码\nDL-ACT-RF,右前门锁执行器,right front door lock actuator,车门,原厂,455,\n";
        let m = mapping("parts_zh").unwrap();
        let r = convert(CatalogFile::Parts, "p.csv", csv.as_bytes(), &m, dir.path()).unwrap();
        assert!(r.errors.is_empty() && r.applied && r.changed == 1, "{r:?}");
        // The pair seals into a price_list bundle, and the store's check of a bundle accepts it.
        let mut files = std::collections::BTreeMap::new();
        for n in ["parts.toml", "operations.toml"] {
            files.insert(n.to_string(), std::fs::read(dir.path().join(n)).unwrap());
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let sealed = crate::sync::wire::seal_bundle(&key, crate::sync::wire::BundleKind::PriceList, 1, "all", &files).unwrap();
        let opened = crate::sync::wire::open_bundle(&sealed, &key.verifying_key()).unwrap();
        let bundles = dir.path().join("store/bundles");
        let cat = crate::sync::bundles::catalog_with(&bundles, &opened.files).unwrap();
        assert_eq!(cat.part("DL-ACT-RF").unwrap().oem_cny, 455.0);
    }
}
