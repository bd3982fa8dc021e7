//! Backups: one archive file, online and consistent, encrypted, with the photos; restore into an
//! empty data directory.
//!
//! The archive is a zip (stored, not compressed: everything in it is ciphertext):
//! - `manifest.json`: format, time, store, schema, the master key's fingerprint (never the key);
//! - `servicebay.db`: a snapshot taken with SQLite's backup API in one step (one read
//!   transaction, so the writer goes on), keyed with the database key;
//! - `photos/<keyed name>`: the encrypted photo files the snapshot refers to, byte for byte.
//!
//! The case keys are not in the archive: they stay in the keyring beside the master key. A
//! customer erased after a backup was taken stays unreadable in that backup.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::files::PhotoFiles;
use crate::keys::{Keys, Secret};
use crate::store::{self, Store, StoreError};

pub const FORMAT: &str = "servicebay-backup-1";
pub const SUFFIX: &str = ".sbbackup";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("backup file error at {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0} is not a ServiceBay backup (or it is damaged): {1}")]
    NotABackup(String, String),
    #[error(
        "this backup was made under master key {found}, which this box does not have (current key {ours}); \
         restore it on the box it came from, or put its retired key in <key_dir>/retired/"
    )]
    ForeignKey { found: String, ours: String },
    #[error("the data directory {0} already holds a database; restore only into an empty directory")]
    NotEmpty(String),
    #[error("the restored database failed its check: {0}")]
    Verify(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io { path: path.to_path_buf(), message: e.to_string() }
}

fn zerr(path: &Path) -> impl Fn(zip::result::ZipError) -> BackupError + '_ {
    move |e| BackupError::NotABackup(path.display().to_string(), e.to_string())
}

/// `[backup]`: where the scheduled copies go and how many are kept.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub keep: usize,
    pub interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    pub store_id: String,
    pub schema: i64,
    pub key_fingerprint: String,
    pub photos: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub photos: usize,
    /// Photo files the snapshot names but that were gone (removed by retention meanwhile).
    pub missing: usize,
    pub millis: u128,
}

/// Write a backup of the live appliance to `out` (through a temporary name: a crash leaves no
/// half archive under the final name).
pub fn write(store: &Store, files: &PhotoFiles, keys: &Keys, store_id: &str, out: &Path) -> Result<BackupReport, BackupError> {
    let t0 = Instant::now();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let work = parent.join(format!(".servicebay-backup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let r = write_in(store, files, keys, store_id, out, &work);
    let _ = std::fs::remove_dir_all(&work);
    let mut rep = r?;
    rep.millis = t0.elapsed().as_millis();
    Ok(rep)
}

fn write_in(store: &Store, files: &PhotoFiles, keys: &Keys, store_id: &str, out: &Path, work: &Path) -> Result<BackupReport, BackupError> {
    let db = work.join("servicebay.db");
    let db_key = keys.db_key();
    store.snapshot(&db, &db_key)?;
    let (schema, photos) = store::with_file(&db, &db_key, |tx| {
        let v: i64 = tx.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok((v, store::privacy::kept_photos(tx)?))
    })?;
    let partial = out.with_extension("partial");
    let f = std::fs::File::create(&partial).map_err(io(&partial))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let mut copied = 0;
    let mut missing = 0;
    let mut entries = Vec::new();
    for (case_id, sha) in &photos {
        match files.stored_path(case_id, sha) {
            Ok(p) if p.exists() => entries.push(p),
            _ => missing += 1,
        }
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: crate::domain::now(),
        store_id: store_id.to_string(),
        schema,
        key_fingerprint: keys.fingerprint(),
        photos: entries.len(),
    };
    let z = zerr(&partial);
    zip.start_file("manifest.json", opts).map_err(&z)?;
    zip.write_all(&serde_json::to_vec_pretty(&manifest).unwrap_or_default()).map_err(io(&partial))?;
    zip.start_file("servicebay.db", opts).map_err(&z)?;
    let mut src = std::fs::File::open(&db).map_err(io(&db))?;
    std::io::copy(&mut src, &mut zip).map_err(io(&partial))?;
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match std::fs::File::open(&p) {
            Ok(mut src) => {
                zip.start_file(format!("photos/{name}"), opts).map_err(&z)?;
                std::io::copy(&mut src, &mut zip).map_err(io(&partial))?;
                copied += 1;
            }
            Err(_) => missing += 1,
        }
    }
    let w = zip.finish().map_err(&z)?;
    let f = w.into_inner().map_err(|e| BackupError::Io { path: partial.clone(), message: e.to_string() })?;
    f.sync_all().map_err(io(&partial))?;
    drop(f);
    std::fs::rename(&partial, out).map_err(io(out))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport { file: out.to_path_buf(), bytes, photos: copied, missing, millis: 0 })
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub created_at: String,
    pub schema: i64,
    pub integrity: String,
    pub photos: usize,
    /// Photos that decrypt with their case keys.
    pub photos_ok: usize,
    /// Photos whose case key was destroyed after the backup (their customers were erased).
    pub photos_erased: usize,
    pub rekeyed_from_retired: bool,
}

/// Restore `file` into `data_dir` (which must hold no database), then check it: integrity, and
/// every photo decrypted with its case key.
pub fn restore(file: &Path, data_dir: &Path, keys: &std::sync::Arc<Keys>) -> Result<RestoreReport, BackupError> {
    let db_path = data_dir.join("servicebay.db");
    if db_path.exists() {
        return Err(BackupError::NotEmpty(data_dir.display().to_string()));
    }
    let f = std::fs::File::open(file).map_err(io(file))?;
    let z = zerr(file);
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(&z)?;
    let manifest: Manifest = {
        let mut m = zip.by_name("manifest.json").map_err(&z)?;
        let mut text = String::new();
        m.read_to_string(&mut text).map_err(io(file))?;
        serde_json::from_str(&text).map_err(|e| BackupError::NotABackup(file.display().to_string(), e.to_string()))?
    };
    if manifest.format != FORMAT {
        return Err(BackupError::NotABackup(file.display().to_string(), format!("format {}", manifest.format)));
    }
    let (db_key, retired): (Secret, bool) = if manifest.key_fingerprint == keys.fingerprint() {
        (keys.db_key(), false)
    } else {
        let old = keys
            .retired()
            .into_iter()
            .find(|k| k.fingerprint() == manifest.key_fingerprint)
            .ok_or_else(|| BackupError::ForeignKey { found: manifest.key_fingerprint.clone(), ours: keys.fingerprint() })?;
        (crate::keys::db_key_of(&old), true)
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let tmp = data_dir.join("servicebay.db.restoring");
    {
        let mut src = zip.by_name("servicebay.db").map_err(&z)?;
        let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        std::io::copy(&mut src, &mut out).map_err(io(&tmp))?;
        out.sync_all().map_err(io(&tmp))?;
    }
    if retired {
        // Made under a retired key: re-key to today's key before it becomes the live database.
        store::rekey_file(&tmp, &db_key, &keys.db_key())?;
    }
    let (integrity, schema) = store::with_file(&tmp, &keys.db_key(), |tx| {
        let i: String = tx.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        let v: i64 = tx.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok((i, v))
    })
    .map_err(|e| BackupError::Verify(e.to_string()))?;
    if integrity != "ok" {
        let _ = std::fs::remove_file(&tmp);
        return Err(BackupError::Verify(format!("integrity check: {integrity}")));
    }
    let photos_dir = data_dir.join("photos");
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok()).filter(|n| n.starts_with("photos/")).map(|n| n.into_owned()).collect();
    for name in &names {
        let base = name.trim_start_matches("photos/");
        // Our names are hex; anything else would be a path trick.
        if base.len() < 3 || !base.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(BackupError::NotABackup(file.display().to_string(), format!("unexpected entry {name}")));
        }
        let dest_dir = photos_dir.join(&base[..2]);
        std::fs::create_dir_all(&dest_dir).map_err(io(&dest_dir))?;
        let dest = dest_dir.join(base);
        let mut src = zip.by_name(name).map_err(&z)?;
        let mut out = std::fs::File::create(&dest).map_err(io(&dest))?;
        std::io::copy(&mut src, &mut out).map_err(io(&dest))?;
        out.sync_all().map_err(io(&dest))?;
    }
    std::fs::rename(&tmp, &db_path).map_err(io(&db_path))?;
    let files = PhotoFiles::new(photos_dir, keys.clone());
    let kept = store::with_file(&db_path, &keys.db_key(), store::privacy::kept_photos)?;
    let (mut ok, mut erased) = (0, 0);
    for (case_id, sha) in &kept {
        match files.read(case_id, sha) {
            Ok(_) => ok += 1,
            Err(crate::media::MediaError::Key(crate::keys::KeyError::Destroyed(_))) => erased += 1,
            Err(e) => return Err(BackupError::Verify(format!("photo of case {case_id}: {e}"))),
        }
    }
    Ok(RestoreReport {
        created_at: manifest.created_at,
        schema,
        integrity,
        photos: kept.len(),
        photos_ok: ok,
        photos_erased: erased,
        rekeyed_from_retired: retired,
    })
}

/// The scheduled copies in `dir`, oldest first.
pub fn listed(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("servicebay-") && n.ends_with(SUFFIX)))
        .collect();
    v.sort();
    v
}

/// Keep the newest `keep` copies.
pub fn prune(dir: &Path, keep: usize) -> usize {
    let all = listed(dir);
    let extra = all.len().saturating_sub(keep);
    all.iter().take(extra).filter(|p| std::fs::remove_file(p).is_ok()).count()
}

/// The file name of a scheduled copy (sorts by time).
pub fn scheduled_name(store_id: &str) -> String {
    format!("servicebay-{}-{store_id}{SUFFIX}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
}
