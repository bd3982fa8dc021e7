//! `CatalogImport`: a parts or labour list into the store's catalogue, at once. One import at a
//! time (a mutex): each merges onto the catalogue the previous one left in force.
//!
//! Applying happens inside the store's write transaction: the layer file is written (its record
//! renamed into place, `sync::layers`) and the audit row inserted together; a failed file write
//! rolls the audit row back. The catalogue in memory is swapped after COMMIT, re-read from the
//! files in force, so memory and disk agree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{prepare, CatalogFile, CatalogImportError, CatalogReport};
use crate::catalog::SharedCatalog;
use crate::domain::Actor;
use crate::import::table::Mapping;
use crate::store::{audit, Store};
use crate::sync::bundles::{catalog_with, checked_with};
use crate::sync::layers;
use crate::sync::wire::BundleKind;

pub struct CatalogImport {
    store: Store,
    catalog: SharedCatalog,
    bundles_dir: PathBuf,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl CatalogImport {
    /// `bundles_dir` is the config's `bundles_dir()`; the import layer lives beside it.
    pub fn new(store: Store, catalog: SharedCatalog, bundles_dir: PathBuf) -> CatalogImport {
        CatalogImport { store, catalog, bundles_dir, one_at_a_time: tokio::sync::Mutex::new(()) }
    }

    /// Read `bytes` (named `file_name`, which decides CSV or spreadsheet) through `mapping`; unless
    /// `dry_run`, a file without errors that changes anything is in force when this returns.
    pub async fn run(
        &self,
        actor: &Actor,
        what: CatalogFile,
        file_name: &str,
        bytes: Vec<u8>,
        mapping: &Mapping,
        dry_run: bool,
    ) -> Result<CatalogReport, CatalogImportError> {
        let _one = self.one_at_a_time.lock().await;
        let started = std::time::Instant::now();
        let base = self.catalog.get();
        let dir = self.bundles_dir.clone();
        let (name, mapping, file) = (what.toml_name(), mapping.clone(), file_name.to_string());
        let outcome = tokio::task::spawn_blocking(move || {
            prepare(&base, what, &file, &bytes, &mapping, dry_run, |text| {
                let over = BTreeMap::from([(name.to_string(), text.as_bytes().to_vec())]);
                checked_with(&dir, &over).map(|_| ())
            })
        })
        .await
        .map_err(|e| CatalogImportError::Catalog(format!("the import worker failed: {e}")))??;
        let mut report = outcome.report;
        let nothing_new = report.new == 0 && report.changed == 0;
        let Some(text) = outcome.text.filter(|_| !dry_run && !nothing_new) else {
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        };
        let (actor, dir, file) = (actor.clone(), self.bundles_dir.clone(), file_name.to_string());
        let summary =
            format!("applied: {} new, {} changed, {} unchanged, {} kept", report.new, report.changed, report.unchanged, report.kept);
        self.store
            .write(move |tx| -> Result<(), CatalogImportError> {
                audit::record(tx, &actor, "catalog.import", "catalog", Some(name), &summary)?;
                let over = layers::bundle_version(&dir, BundleKind::PriceList).unwrap_or(0);
                let local = layers::local_dir(&dir);
                layers::write_local(&local, name, &text, &file, over)
                    .map_err(|source| CatalogImportError::Io { path: local.display().to_string(), source })?;
                Ok(())
            })
            .await?;
        let now_in_force = catalog_with(&self.bundles_dir, &BTreeMap::new()).map_err(CatalogImportError::Catalog)?;
        self.catalog.replace(now_in_force);
        tracing::info!(file = name, new = report.new, changed = report.changed, "catalogue list imported");
        report.applied = true;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}
