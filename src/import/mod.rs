//! Store data brought in from files: the dealer's DMS export (customers, vehicles, service
//! history) and the parts and labour lists. Each importer reads a [`table::Table`] through a
//! [`table::Mapping`], checks every row before it writes any, and writes the whole file in one
//! transaction or nothing.
//!
//! [`Imports`] is the one entry the API, the manager's page and the CLI share: which file it is
//! (`ImportKind`), which shipped mapping reads it, dry run or not. Mapping files by path are for
//! the CLI only (the box's files are not the tablet's to name).

pub mod dms;
pub mod parts;
pub mod table;

use std::sync::Arc;

use serde::Serialize;

use crate::domain::Actor;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    Dms,
    Parts,
    Labour,
}

impl ImportKind {
    pub const ALL: [ImportKind; 3] = [ImportKind::Dms, ImportKind::Parts, ImportKind::Labour];

    pub fn parse(s: &str) -> Option<ImportKind> {
        ImportKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Dms => "dms",
            ImportKind::Parts => "parts",
            ImportKind::Labour => "labour",
        }
    }

    fn catalog_file(self) -> Option<parts::CatalogFile> {
        match self {
            ImportKind::Dms => None,
            ImportKind::Parts => Some(parts::CatalogFile::Parts),
            ImportKind::Labour => Some(parts::CatalogFile::Labour),
        }
    }
}

/// One refused cell: the file's line (the header is line 1), our field name, what is wrong.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowError {
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// A shipped mapping, as the manager picks it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MappingInfo {
    pub kind: ImportKind,
    pub name: String,
    pub description: String,
}

/// Every shipped mapping, DMS first.
pub fn mappings() -> Result<Vec<MappingInfo>, ImportError> {
    let mut out: Vec<MappingInfo> = dms::builtin_mappings()?
        .into_iter()
        .map(|(name, m)| MappingInfo { kind: ImportKind::Dms, name: name.to_string(), description: m.description })
        .collect();
    for (name, text) in parts::MAPPINGS {
        let m = table::Mapping::parse(text)?;
        let kind = if name.starts_with("labour") { ImportKind::Labour } else { ImportKind::Parts };
        out.push(MappingInfo { kind, name: name.to_string(), description: m.description });
    }
    Ok(out)
}

/// What a run did, or would do.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Dms(dms::DmsReport),
    Catalog(parts::CatalogReport),
}

impl Report {
    pub fn errors(&self) -> &[RowError] {
        match self {
            Report::Dms(r) => &r.errors,
            Report::Catalog(r) => &r.errors,
        }
    }

    /// Rows were refused: nothing was imported.
    pub fn refused(&self) -> bool {
        !self.errors().is_empty()
    }

    pub fn dry_run(&self) -> bool {
        match self {
            Report::Dms(r) => r.dry_run,
            Report::Catalog(r) => r.dry_run,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Dms(#[from] dms::DmsError),
    #[error(transparent)]
    Catalog(#[from] parts::CatalogImportError),
    #[error(transparent)]
    Table(#[from] table::TableError),
    #[error("no {kind} mapping named '{name}': use one of {known}")]
    UnknownMapping { kind: &'static str, name: String, known: String },
}

/// The importers behind one call.
pub struct Imports {
    pub dms: dms::DmsImport,
    pub catalog: Arc<parts::CatalogImport>,
}

impl Imports {
    /// Run `kind`'s importer on a file with the shipped mapping `mapping` (its default when
    /// `None`). `Ok` with `refused()` when rows were refused.
    pub async fn run(
        &self,
        actor: &Actor,
        kind: ImportKind,
        file_name: &str,
        bytes: Vec<u8>,
        mapping: Option<&str>,
        dry_run: bool,
    ) -> Result<Report, ImportError> {
        let all = mappings()?;
        let of_kind: Vec<&MappingInfo> = all.iter().filter(|m| m.kind == kind).collect();
        let name = match mapping {
            Some(n) => n.to_string(),
            None => of_kind.first().map(|m| m.name.clone()).unwrap_or_default(),
        };
        if !of_kind.iter().any(|m| m.name == name) {
            let known = of_kind.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ImportError::UnknownMapping { kind: kind.as_str(), name, known });
        }
        match kind.catalog_file() {
            None => {
                let (name, m) = dms::mapping(&name)?;
                Ok(Report::Dms(self.dms.run_named(actor, file_name, bytes, &name, &m, dry_run).await?))
            }
            Some(file) => {
                let m = parts::mapping(&name)?;
                Ok(Report::Catalog(self.catalog.run(actor, file, file_name, bytes, &m, dry_run).await?))
            }
        }
    }
}
