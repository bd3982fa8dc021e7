//! Signed config bundles from HQ: price list, labour rates, knowledge base, detector models, the
//! intake lexicon.
//!
//! A bundle is applied only if its ed25519 signature verifies with the HQ key in the store's
//! config, its target is this store (on the store's topic) or "all" (on the all-stores topic), its
//! version is newer than the applied one of its kind, its files match the signed hashes, and its
//! content validates (the whole catalogue re-checked; a detector model loaded). Otherwise it is
//! refused, the refusal is recorded for the manager, and what was applied stays.
//!
//! On disk: `<data_dir>/bundles/<kind>/v<version>/` written in a temporary directory first, then
//! renamed, then the `current` symlink is swapped with an atomic rename. The catalogue in memory is
//! swapped after the files are in place; the version is recorded last. A crash in between leaves
//! the new files active with the old version recorded: HQ's retained bundle is applied again on the
//! next connect, which is harmless. Detector models take effect at the next start.
//!
//! A lexicon bundle must also keep extraction as good as it is: it is scored on the development
//! sets built into the binary (`intake::lexicon::gate`) and refused, with its scores in the
//! reason, if any set falls below its floor. Its files replace the built-in ones of the same name;
//! the lexicon in memory is swapped after the files are in place, like the catalogue.
//!
//! The store may import its own parts and labour lists (`import::parts`); per catalogue file the
//! latest list loaded is in force, the bundle or the import (`layers.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::layers;
use super::wire::{self, BundleKind};
use super::{topics, LinkState};
use crate::catalog::{Catalog, CatalogError, SharedCatalog};
use crate::intake::lexicon::{self, Lexicon};
use crate::store::sync::{AppliedBundle, Rejection};
use crate::store::{self, Store};

#[derive(Clone)]
pub struct BundleApplier {
    pub store: Store,
    pub store_id: String,
    pub dir: PathBuf,
    pub key: Option<ed25519_dalek::VerifyingKey>,
    pub catalog: SharedCatalog,
    pub(super) state: Arc<Mutex<LinkState>>,
}

/// The directory of the active bundle of `kind`, if one was applied.
pub fn current_dir(bundles_dir: &Path, kind: BundleKind) -> Option<PathBuf> {
    let p = bundles_dir.join(kind.as_str()).join("current");
    p.exists().then_some(p)
}

/// The catalogue in force: per file the newer of the store's own import and the applied bundle
/// (`layers.rs`), else the built-in starter file. A set that no longer validates is reported and
/// the built-in catalogue is used.
pub fn load_catalog(bundles_dir: &Path) -> Catalog {
    match catalog_with(bundles_dir, &BTreeMap::new()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the catalogue files in force do not validate; using the built-in catalogue");
            Catalog::builtin()
        }
    }
}

/// The catalogue texts: `overrides` first (a bundle or an import being checked), then for each
/// file the layer in force (`layers::in_force`), validated as a whole.
pub fn catalog_with(bundles_dir: &Path, overrides: &BTreeMap<String, Vec<u8>>) -> Result<Catalog, String> {
    checked_with(bundles_dir, overrides).map_err(|e| e.to_string())
}

/// [`catalog_with`] with the catalogue's own error (which names the file and the entry).
pub fn checked_with(bundles_dir: &Path, overrides: &BTreeMap<String, Vec<u8>>) -> Result<Catalog, CatalogError> {
    let local = layers::local_dir(bundles_dir);
    let text = |name: &str, kind: BundleKind| -> Result<String, CatalogError> {
        if let Some(b) = overrides.get(name) {
            return String::from_utf8(b.clone()).map_err(|_| CatalogError::Read { file: name.into(), reason: "not UTF-8".into() });
        }
        let bundled = current_dir(bundles_dir, kind).map(|d| d.join(name)).filter(|p| p.exists());
        let bundle_version = bundled.as_ref().map(|_| layers::bundle_version(bundles_dir, kind).unwrap_or(0));
        let imported = layers::read_local(&local, name);
        match layers::in_force(imported.as_ref().map(|(_, r)| r.over), bundle_version) {
            layers::Layer::Local => Ok(imported.map(|(t, _)| t).unwrap_or_default()),
            layers::Layer::Bundle => {
                let p = bundled.unwrap_or_default();
                std::fs::read_to_string(&p).map_err(|e| CatalogError::Read { file: p.display().to_string(), reason: e.to_string() })
            }
            layers::Layer::Builtin => Ok(Catalog::builtin_text(name).unwrap_or_default().to_string()),
        }
    };
    let ops = text("operations.toml", BundleKind::PriceList)?;
    let parts = text("parts.toml", BundleKind::PriceList)?;
    let rates = text("rates.toml", BundleKind::LabourRates)?;
    let knowledge = text("knowledge.toml", BundleKind::KnowledgeBase)?;
    Catalog::from_texts(&ops, &parts, &rates, &knowledge)
}

/// The lexicon of the applied `lexicon` bundle over the built-in files; None when none was applied
/// or it no longer validates (reported; the built-in lexicon stays).
pub fn load_lexicon(bundles_dir: &Path) -> Option<Lexicon> {
    let dir = current_dir(bundles_dir, BundleKind::Lexicon)?;
    let mut files = BTreeMap::new();
    for name in lexicon::FILES {
        let p = dir.join(name);
        if p.exists() {
            match std::fs::read(&p) {
                Ok(b) => {
                    files.insert(name.to_string(), b);
                }
                Err(e) => {
                    tracing::error!(error = %io(e, &p), "applied lexicon bundle unreadable; using the built-in lexicon");
                    return None;
                }
            }
        }
    }
    match lexicon_over_builtin(&files) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, "applied lexicon bundle does not validate; using the built-in lexicon");
            None
        }
    }
}

/// The lexicon from `files` (a bundle's), the built-in text for any file it does not carry.
fn lexicon_over_builtin(files: &BTreeMap<String, Vec<u8>>) -> Result<Lexicon, String> {
    let mut texts: Vec<(&str, String)> = Vec::new();
    for name in lexicon::FILES {
        let text = match files.get(name) {
            Some(b) => String::from_utf8(b.clone()).map_err(|_| format!("{name} is not UTF-8"))?,
            None => Lexicon::builtin_text(name).unwrap_or_default().to_string(),
        };
        texts.push((name, text));
    }
    let refs: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (*n, t.as_str())).collect();
    Lexicon::from_texts(&refs).map_err(|e| e.to_string())
}

fn io(e: std::io::Error, p: &Path) -> String {
    format!("{}: {e}", p.display())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io(e, path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io(e, path))
}

/// Write the files as `<kind>/v<version>/` and point `<kind>/current` at it, atomically.
fn install(bundles_dir: &Path, kind: BundleKind, version: u64, files: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let kind_dir = bundles_dir.join(kind.as_str());
    std::fs::create_dir_all(&kind_dir).map_err(|e| io(e, &kind_dir))?;
    let tmp = kind_dir.join(format!(".tmp-v{version}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io(e, &tmp))?;
    for (name, bytes) in files {
        write_synced(&tmp.join(name), bytes)?;
    }
    let final_dir = kind_dir.join(format!("v{version}"));
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| io(e, &final_dir))?;
    let link_tmp = kind_dir.join(".current.tmp");
    let _ = std::fs::remove_file(&link_tmp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(format!("v{version}"), &link_tmp).map_err(|e| io(e, &link_tmp))?;
    std::fs::rename(&link_tmp, kind_dir.join("current")).map_err(|e| io(e, &kind_dir))?;
    if let Ok(d) = std::fs::File::open(&kind_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Outcome of one message on a config topic.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Applied { kind: BundleKind, version: u64 },
    AlreadyApplied,
    Rejected(String),
}

impl BundleApplier {
    /// Verify, check and apply one bundle; a refusal is logged and recorded, never fatal.
    pub async fn handle(&self, topic: &str, payload: bytes::Bytes) -> Outcome {
        let this = self.clone();
        let topic_owned = topic.to_string();
        let outcome = tokio::task::spawn_blocking(move || this.apply_blocking(&topic_owned, &payload))
            .await
            .unwrap_or_else(|e| Err((None, format!("bundle worker failed: {e}"))));
        match outcome {
            Ok(o) => {
                if let Outcome::Applied { kind, version } = &o {
                    tracing::info!(kind = kind.as_str(), version, "HQ bundle applied");
                }
                o
            }
            Err((head, reason)) => {
                tracing::warn!(topic, %reason, "HQ bundle refused; the applied one stays");
                let r = Rejection {
                    at: crate::domain::now(),
                    topic: topic.to_string(),
                    kind: head.map(|(k, _)| k.as_str().to_string()),
                    version: head.map(|(_, v)| v),
                    reason: reason.clone(),
                };
                // The row first, then the counter: a status read never sees a count without its row.
                let _ = self.store.write(move |tx| store::sync::record_rejection(tx, &r)).await;
                if let Ok(mut s) = self.state.lock() {
                    s.bundles_rejected += 1;
                }
                Outcome::Rejected(reason)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn apply_blocking(&self, topic: &str, payload: &[u8]) -> Result<Outcome, (Option<(BundleKind, u64)>, String)> {
        // A retained message is cleared by an empty payload: nothing to apply.
        if payload.is_empty() {
            return Ok(Outcome::AlreadyApplied);
        }
        let key = self.key.as_ref().ok_or((None, "no HQ public key configured (sync.hq_public_key)".to_string()))?;
        let b = wire::open_bundle(payload, key).map_err(|e| (None, e.to_string()))?;
        let (kind, version) = (b.manifest.kind, b.manifest.version);
        let head = Some((kind, version));
        let expected = if topic == topics::config("all") { "all" } else { self.store_id.as_str() };
        if topic != topics::config("all") && topic != topics::config(&self.store_id) {
            return Err((head, format!("bundle on an unexpected topic {topic}")));
        }
        if b.manifest.target != expected {
            return Err((head, format!("bundle targets '{}' but arrived on the topic for '{expected}'", b.manifest.target)));
        }
        let rt = tokio::runtime::Handle::current();
        let applied = rt.block_on(self.store.read(store::sync::applied_bundles)).map_err(|e| (head, e.to_string()))?;
        if let Some(a) = applied.get(kind.as_str()) {
            if version == a.version && b.sha256 == a.sha256 {
                return Ok(Outcome::AlreadyApplied);
            }
            if version <= a.version {
                return Err((head, format!("version {version} is not newer than the applied {}", a.version)));
            }
        }
        let mut new_lexicon = None;
        let new_catalog = match kind {
            BundleKind::DetectorModel => {
                self.check_detector(&b.files).map_err(|e| (head, e))?;
                None
            }
            BundleKind::Lexicon => {
                let l = lexicon_over_builtin(&b.files).map_err(|e| (head, format!("lexicon does not validate: {e}")))?;
                let scores = lexicon::gate::check(&l).map_err(|e| (head, e))?;
                let worst = scores.iter().map(|s| s.finding_f1 - s.floor).fold(f64::INFINITY, f64::min);
                tracing::info!(version, lexicon = %l.summary(), margin = worst, "lexicon bundle passes its gate");
                new_lexicon = Some(l);
                None
            }
            _ => Some(catalog_with(&self.dir, &b.files).map_err(|e| (head, format!("catalogue does not validate: {e}")))?),
        };
        install(&self.dir, kind, version, &b.files).map_err(|e| (head, format!("cannot write the bundle: {e}")))?;
        if let Some(c) = new_catalog {
            self.catalog.replace(c);
        }
        if let Some(l) = new_lexicon {
            lexicon::install(Arc::new(l));
        }
        let rec = AppliedBundle { version, sha256: b.sha256.clone(), target: b.manifest.target.clone(), applied_at: crate::domain::now() };
        let k = kind.as_str();
        rt.block_on(self.store.write(move |tx| store::sync::record_bundle(tx, k, &rec))).map_err(|e| (head, e.to_string()))?;
        Ok(Outcome::Applied { kind, version })
    }

    /// A detector bundle must load: its card parses, its weights fit the card.
    fn check_detector(&self, files: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        let names: Vec<&str> = files.keys().filter_map(|n| n.strip_suffix(".safetensors")).collect();
        let [name] = names.as_slice() else {
            return Err("a detector bundle holds exactly one NAME.safetensors and its NAME.toml".into());
        };
        if !files.contains_key(&format!("{name}.toml")) || files.len() != 2 {
            return Err(format!("a detector bundle holds exactly {name}.safetensors and {name}.toml"));
        }
        let tmp = tempdir_in(&self.dir).map_err(|e| e.to_string())?;
        for (n, bytes) in files {
            write_synced(&tmp.join(n), bytes)?;
        }
        let loaded = crate::vision::load_detector(&tmp, name, Default::default());
        let _ = std::fs::remove_dir_all(&tmp);
        loaded.map(|_| ()).map_err(|e| format!("detector model does not load: {e}"))
    }
}

fn tempdir_in(dir: &Path) -> std::io::Result<PathBuf> {
    let p = dir.join(format!(".check-{}", crate::domain::new_id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}
