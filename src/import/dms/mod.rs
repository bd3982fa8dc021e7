//! The dealer's DMS/CRM export → customers, vehicles and the cars' earlier workshop visits.
//!
//! Flow: `table::read` (CSV/XLSX/XLS/ODS) → `parse` (pure: every row checked, rows of one repair
//! order folded into one visit) → `DmsImport::run` (one write transaction: upserts keyed by phone
//! and VIN, visits keyed by (vehicle, day, repair order), one import run row, one audit row).
//!
//! Invariants:
//! - A file with any bad row imports nothing; the report names every bad row (line and field), up
//!   to `MAX_ERRORS` of them, and how many there were.
//! - Importing the same file twice changes nothing the second time (no `updated_at` moves): a value
//!   is written only where it differs, and an empty cell never erases a stored value.
//! - Customers and vehicles stay in the store: nothing of an import goes to the outbox (personal
//!   data); the audit row holds counts and the file's SHA-256, never names or numbers.
//! - Mapping files are data (`assets/import/dms/*.toml`), compiled in and checked by a test.

pub mod fields;
pub mod parse;
pub mod service;

use serde::Serialize;

use super::table::{Mapping, TableError};
use crate::store::StoreError;

pub use parse::{parse, CustomerIn, Parsed, VehicleIn, VisitIn};
pub use service::DmsImport;

/// Every field a mapping may name.
pub const FIELDS: &[&str] =
    &["name", "phone", "vin", "plate", "make", "model", "year", "mileage_km", "visit_date", "ro_no", "operations", "parts", "amount"];
/// A row is nothing without these.
pub const REQUIRED: &[&str] = &["name", "phone", "vin"];
/// Bad rows listed in a report (the count says how many there were in all).
pub const MAX_ERRORS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DmsError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no mapping named '{0}': use one of {1}, or the path of a mapping file")]
    UnknownMapping(String, String),
    #[error("built-in mapping {file}: {reason}")]
    BuiltinMapping { file: String, reason: String },
    #[error("cannot read the mapping file {path}: {reason}")]
    MappingFile { path: String, reason: String },
    #[error("{0} rows were refused; nothing was imported (fix the file and import it again)")]
    Refused(usize),
}

impl DmsError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, DmsError::Store(e) if e.is_retriable())
    }
}

pub use super::RowError;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DmsReport {
    /// The `import_runs` row of this run.
    pub import_id: String,
    pub file_sha256: String,
    pub mapping: String,
    /// Data rows read (blank lines not counted).
    pub rows: usize,
    pub customers: Counts,
    pub vehicles: Counts,
    pub visits: Counts,
    /// The refused rows, at most `MAX_ERRORS`; `errors_total` counts them all.
    pub errors: Vec<RowError>,
    pub errors_total: usize,
    pub dry_run: bool,
    pub elapsed_ms: u64,
}

impl DmsReport {
    /// Rows were refused, so nothing was imported.
    pub fn refused(&self) -> bool {
        self.errors_total > 0
    }
}

const BUILTIN: &[(&str, &str)] = &[
    ("generic_zh", include_str!("../../../assets/import/dms/generic_zh.toml")),
    ("ro_lines_zh", include_str!("../../../assets/import/dms/ro_lines_zh.toml")),
    ("crm_zh", include_str!("../../../assets/import/dms/crm_zh.toml")),
];

/// The mappings shipped with the appliance, by name, each parsed and checked against `FIELDS`.
pub fn builtin_mappings() -> Result<Vec<(&'static str, Mapping)>, DmsError> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            let file = format!("assets/import/dms/{name}.toml");
            let m = Mapping::parse(text).map_err(|e| DmsError::BuiltinMapping { file: file.clone(), reason: e.to_string() })?;
            check_mapping(&m).map_err(|reason| DmsError::BuiltinMapping { file, reason })?;
            Ok((*name, m))
        })
        .collect()
}

/// Every field known, the required ones present, no empty column list.
pub fn check_mapping(m: &Mapping) -> Result<(), String> {
    if let Some(f) = m.columns.keys().find(|f| !FIELDS.contains(&f.as_str())) {
        return Err(format!("unknown field '{f}' (known: {})", FIELDS.join(", ")));
    }
    if let Some(f) = REQUIRED.iter().find(|f| !m.columns.contains_key(**f)) {
        return Err(format!("field '{f}' has no column names; add `{f} = [\"…\"]` under [columns]"));
    }
    if let Some((f, _)) = m.columns.iter().find(|(_, names)| names.is_empty() || names.iter().any(|n| n.trim().is_empty())) {
        return Err(format!("field '{f}' lists an empty column name"));
    }
    Ok(())
}

/// A built-in mapping by name, or a mapping file by path (anything with a '/' or ending `.toml`).
pub fn mapping(name_or_path: &str) -> Result<(String, Mapping), DmsError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        let fail = |reason: String| DmsError::MappingFile { path: name_or_path.to_string(), reason };
        let text = std::fs::read_to_string(name_or_path).map_err(|e| fail(e.to_string()))?;
        let m = Mapping::parse(&text).map_err(|e| fail(e.to_string()))?;
        check_mapping(&m).map_err(fail)?;
        return Ok((name_or_path.to_string(), m));
    }
    let all = builtin_mappings()?;
    let names = all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    all.into_iter()
        .find(|(n, _)| *n == name_or_path)
        .map(|(n, m)| (n.to_string(), m))
        .ok_or_else(|| DmsError::UnknownMapping(name_or_path.to_string(), names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_mappings_load_and_differ() {
        let all = builtin_mappings().unwrap();
        assert_eq!(all.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["generic_zh", "ro_lines_zh", "crm_zh"]);
        for (name, m) in &all {
            assert!(!m.description.is_empty(), "{name} says what it is for");
            for f in FIELDS {
                assert!(m.columns.contains_key(*f), "{name} maps {f}");
            }
        }
        // Each layout has its own phone column name first: they are not copies.
        let firsts: std::collections::BTreeSet<_> = all.iter().map(|(_, m)| m.columns["phone"][0].clone()).collect();
        assert_eq!(firsts.len(), 3);
        assert!(matches!(mapping("nope"), Err(DmsError::UnknownMapping(_, names)) if names.contains("generic_zh")));
    }

    #[test]
    fn a_mapping_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "[columns]\nname = [\"姓名\"]\nphone = [\"电话\"]\nvin = [\"VIN\"]\ncolour = [\"颜色\"]\n").unwrap();
        let e = mapping(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("unknown field 'colour'"), "{e}");
        std::fs::write(&p, "[columns]\nname = [\"姓名\"]\nphone = [\"电话\"]\n").unwrap();
        assert!(mapping(p.to_str().unwrap()).unwrap_err().to_string().contains("'vin'"));
        std::fs::write(&p, "[columns]\nname = [\"姓名\"]\nphone = [\"电话\"]\nvin = [\"VIN\"]\n").unwrap();
        assert!(mapping(p.to_str().unwrap()).is_ok());
    }
}
