//! Which text of each catalogue file is in force: the store's own import (`servicebay catalog
//! import`, the manager's upload), the applied HQ bundle of the file's kind, or the built-in file.
//!
//! Rule: the latest list loaded is the one in force. Wall clocks do not decide it (the box's clock
//! and HQ's may disagree, and a clock set back would silently revert a price list). Instead an
//! import records the version of the bundle of its kind that was installed when it was made
//! (`over`, 0 when none). The import stays in force while that bundle is the current one; once HQ
//! installs a newer bundle of the kind (versions only grow, `bundles.rs` refuses older ones) the
//! bundle is. A later import records that newer version and wins again. A bundle that does not
//! carry the file leaves the import in force for it.
//!
//! On disk, `<data_dir>/catalog/local/`: the text as `<name>.<sha12>` (e.g. `parts.toml.3fa2…`)
//! and its record `<name>.layer` (TOML: text file, sha256, time, source, `over`). The text is
//! written first, the record is renamed into place last: that rename is the commit point, so a
//! crash leaves the previous import in force. A record whose text is missing or altered is ignored
//! with a warning (the bundle or built-in file is used for it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::wire::BundleKind;

/// The local import layer beside the bundles: `<data_dir>/catalog/local` for `<data_dir>/bundles`.
pub fn local_dir(bundles_dir: &Path) -> PathBuf {
    bundles_dir.parent().unwrap_or(bundles_dir).join("catalog").join("local")
}

/// The record of one imported file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRecord {
    /// The text's file name inside the local directory.
    pub file: String,
    pub sha256: String,
    pub imported_at: String,
    /// The imported file's name (never its content).
    pub source: String,
    /// The version of the bundle of this file's kind installed when the import was made; 0: none.
    pub over: u64,
}

/// Where one file's text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Builtin,
    Bundle,
    Local,
}

/// The layering rule: `local_over` is the import's recorded bundle version (None: no import),
/// `bundle` the installed bundle's version when it carries the file (None: no such bundle).
pub fn in_force(local_over: Option<u64>, bundle: Option<u64>) -> Layer {
    match (local_over, bundle) {
        (Some(over), Some(v)) if v > over => Layer::Bundle,
        (Some(_), _) => Layer::Local,
        (None, Some(_)) => Layer::Bundle,
        (None, None) => Layer::Builtin,
    }
}

/// The kind of bundle that carries a catalogue file.
pub fn kind_of(name: &str) -> Option<BundleKind> {
    match name {
        "parts.toml" | "operations.toml" => Some(BundleKind::PriceList),
        "rates.toml" => Some(BundleKind::LabourRates),
        "knowledge.toml" => Some(BundleKind::KnowledgeBase),
        _ => None,
    }
}

/// The installed bundle version of `kind` (the `current` link's target `v<N>`), if any.
pub fn bundle_version(bundles_dir: &Path, kind: BundleKind) -> Option<u64> {
    let link = std::fs::read_link(bundles_dir.join(kind.as_str()).join("current")).ok()?;
    link.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The imported text of `name` and its record; None when there is none or it is unusable.
pub fn read_local(local_dir: &Path, name: &str) -> Option<(String, LayerRecord)> {
    let rec_path = local_dir.join(format!("{name}.layer"));
    let rec_text = std::fs::read_to_string(&rec_path).ok()?;
    let rec: LayerRecord = match toml::from_str(&rec_text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(file = %rec_path.display(), error = %e, "local catalogue record unreadable; ignored");
            return None;
        }
    };
    let ok_name = rec.file.starts_with(name) && !rec.file.contains('/');
    match std::fs::read_to_string(local_dir.join(&rec.file)) {
        Ok(text) if ok_name && sha256_hex(&text) == rec.sha256 => Some((text, rec)),
        _ => {
            tracing::warn!(file = %rec_path.display(), "local catalogue text missing or altered; ignored");
            None
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Install `text` as the store's own `name`, layered over bundle version `over`. The record's
/// rename commits it; older texts of `name` are removed afterwards.
pub fn write_local(local_dir: &Path, name: &str, text: &str, source: &str, over: u64) -> std::io::Result<LayerRecord> {
    std::fs::create_dir_all(local_dir)?;
    let sha = sha256_hex(text);
    let file = format!("{name}.{}", &sha[..12]);
    let tmp = local_dir.join(format!(".{file}.tmp"));
    write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, local_dir.join(&file))?;
    let rec = LayerRecord { file: file.clone(), sha256: sha, imported_at: crate::domain::now(), source: source.to_string(), over };
    let rec_text = toml::to_string(&rec).map_err(std::io::Error::other)?;
    let rec_tmp = local_dir.join(format!(".{name}.layer.tmp"));
    write_synced(&rec_tmp, rec_text.as_bytes())?;
    std::fs::rename(&rec_tmp, local_dir.join(format!("{name}.layer")))?;
    if let Ok(d) = std::fs::File::open(local_dir) {
        let _ = d.sync_all();
    }
    // Old texts are no longer referenced; failing to remove one is harmless.
    if let Ok(entries) = std::fs::read_dir(local_dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n != file && n.starts_with(&format!("{name}.")) && !n.ends_with(".layer") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_list_loaded_is_in_force() {
        // Nothing loaded: the starter file.
        assert_eq!(in_force(None, None), Layer::Builtin);
        // Only HQ's bundle, or only an import.
        assert_eq!(in_force(None, Some(3)), Layer::Bundle);
        assert_eq!(in_force(Some(0), None), Layer::Local);
        // An import made over bundle v3 stays in force while v3 is installed...
        assert_eq!(in_force(Some(3), Some(3)), Layer::Local);
        // ...a later bundle replaces it...
        assert_eq!(in_force(Some(3), Some(4)), Layer::Bundle);
        // ...and an import made after that bundle replaces the bundle again.
        assert_eq!(in_force(Some(4), Some(4)), Layer::Local);
        // An import over no bundle loses to the first bundle that arrives.
        assert_eq!(in_force(Some(0), Some(1)), Layer::Bundle);
    }

    #[test]
    fn a_record_commits_the_text_and_an_altered_text_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let local = local_dir(&dir.path().join("bundles"));
        assert_eq!(local, dir.path().join("catalog/local"));
        assert!(read_local(&local, "parts.toml").is_none());
        write_local(&local, "parts.toml", "version = 1\n", "a.xlsx", 2).unwrap();
        let rec = write_local(&local, "parts.toml", "version = 2\n", "b.xlsx", 2).unwrap();
        let (text, r) = read_local(&local, "parts.toml").unwrap();
        assert_eq!((text.as_str(), r.over, r.source.as_str()), ("version = 2\n", 2, "b.xlsx"));
        // The first text is gone: one text and one record.
        assert_eq!(std::fs::read_dir(&local).unwrap().count(), 2);
        std::fs::write(local.join(&rec.file), "version = 3\n").unwrap();
        assert!(read_local(&local, "parts.toml").is_none());
    }

    #[test]
    fn bundle_version_reads_the_current_link() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(bundle_version(dir.path(), BundleKind::PriceList), None);
        let kind = dir.path().join("price_list");
        std::fs::create_dir_all(kind.join("v7")).unwrap();
        std::os::unix::fs::symlink("v7", kind.join("current")).unwrap();
        assert_eq!(bundle_version(dir.path(), BundleKind::PriceList), Some(7));
    }
}
