//! The one way to photo bytes on disk. Analysis, renders, exports and backups all come here.
//!
//! Invariants:
//! - A photo is stored encrypted with its case's data key (AES-256-GCM; the case id and the
//!   content hash as associated data, so a file moved to another case or name does not open).
//!   File: `SBP1` ‖ nonce ‖ ciphertext ‖ tag.
//! - Its file name is a keyed hash (HMAC with the case key) of the content hash: the name says
//!   nothing about the picture, and two cases holding the same picture hold two different files.
//! - Writes go to a temporary name, are fsynced and renamed: a crash never leaves half a photo.
//! - Plaintext never touches the disk here: decryption happens in memory, for the caller.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::keys::{self, Keys};
use crate::media::{sha256_hex, MediaError};

const MAGIC: &[u8; 4] = b"SBP1";

/// Encrypted photo files under one root.
#[derive(Debug, Clone)]
pub struct PhotoFiles {
    root: PathBuf,
    keys: Arc<Keys>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Io { path: path.to_path_buf(), source }
}

fn aad(case_id: &str, sha: &str) -> Vec<u8> {
    format!("{case_id}\n{sha}").into_bytes()
}

impl PhotoFiles {
    pub fn new(root: PathBuf, keys: Arc<Keys>) -> PhotoFiles {
        PhotoFiles { root, keys }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Where the case's copy of the picture with this content hash lives (encrypted).
    pub fn stored_path(&self, case_id: &str, sha: &str) -> Result<PathBuf, MediaError> {
        let key = self.keys.case_key(case_id, false)?;
        Ok(self.path_named(&keys::keyed_name(&key, &[b"photo", sha.as_bytes()])))
    }

    fn path_named(&self, name: &str) -> PathBuf {
        self.root.join(name.get(0..2).unwrap_or("xx")).join(name)
    }

    /// Encrypt and store durably; returns (content SHA-256, whether this call created the file).
    pub fn put(&self, case_id: &str, bytes: &[u8]) -> Result<(String, bool), MediaError> {
        let sha = sha256_hex(bytes);
        let key = self.keys.case_key(case_id, true)?;
        let dest = self.path_named(&keys::keyed_name(&key, &[b"photo", sha.as_bytes()]));
        if dest.exists() {
            return Ok((sha, false));
        }
        let sealed = keys::seal(&key, bytes, &aad(case_id, &sha))?;
        self.write_file(&dest, &sealed)?;
        Ok((sha, true))
    }

    fn write_file(&self, dest: &Path, sealed: &[u8]) -> Result<(), MediaError> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(sealed)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            std::fs::File::open(&dir)?.sync_all()
        };
        if let Err(e) = write() {
            // Disk full or similar: leave nothing behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(MediaError::Io { path: dest.to_path_buf(), source: e });
        }
        Ok(())
    }

    /// Decrypt a stored photo into memory.
    pub fn read(&self, case_id: &str, sha: &str) -> Result<Vec<u8>, MediaError> {
        let key = self.keys.case_key(case_id, false)?;
        let p = self.path_named(&keys::keyed_name(&key, &[b"photo", sha.as_bytes()]));
        let sealed = std::fs::read(&p).map_err(io(&p))?;
        let body = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(|| MediaError::Tampered(p.display().to_string()))?;
        keys::open(&key, body, &aad(case_id, sha)).ok_or_else(|| MediaError::Tampered(p.display().to_string()))
    }

    /// Decrypt and decode (the detector, renders, exports).
    pub fn open_image(&self, case_id: &str, sha: &str) -> Result<image::DynamicImage, String> {
        let bytes = self.read(case_id, sha).map_err(|e| e.to_string())?;
        crate::vision::preprocess::decode_image(&bytes, &format!("photo {sha}")).map_err(|e| e.to_string())
    }

    /// Remove the case's copy (retention, erasure, an upload whose row was refused).
    pub fn remove(&self, case_id: &str, sha: &str) {
        if let Ok(p) = self.stored_path(case_id, sha) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// A photo stored by an older version (plaintext, named by its SHA-256): encrypt it under its
    /// case and remove the plaintext. Ok(true) when one was converted.
    pub fn adopt_plaintext(&self, case_id: &str, sha: &str) -> Result<bool, MediaError> {
        let old = self.root.join(sha.get(0..2).unwrap_or("xx")).join(sha);
        let Ok(bytes) = std::fs::read(&old) else { return Ok(false) };
        if bytes.starts_with(MAGIC) || sha256_hex(&bytes) != sha {
            return Ok(false);
        }
        self.put(case_id, &bytes)?;
        Ok(std::fs::remove_file(&old).is_ok())
    }

    /// Temporary files left by a crash mid-write; removed at start.
    pub fn clean_tmp(&self) {
        if let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(root: &Path) -> PhotoFiles {
        let cfg = keys::KeyConfig { key_dir: root.join("keys"), data_dir: root.join("data"), require_tpm: false, credentials_dir: None };
        PhotoFiles::new(root.join("data/photos"), Arc::new(Keys::load(&cfg).unwrap()))
    }

    fn all_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.extend(all_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn stored_encrypted_under_a_keyed_name_and_idempotent_per_case() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let pic = b"plate \xe4\xba\xacA12345 and a face".to_vec();
        let (sha, created) = f.put("case-1", &pic).unwrap();
        assert!(created);
        assert_eq!(f.put("case-1", &pic).unwrap(), (sha.clone(), false));
        let (_, again) = f.put("case-2", &pic).unwrap();
        assert!(again, "another case keeps its own copy under its own key");
        assert_eq!(f.read("case-1", &sha).unwrap(), pic);
        let stored = all_files(f.root());
        assert_eq!(stored.len(), 2);
        for p in &stored {
            let bytes = std::fs::read(p).unwrap();
            assert!(!bytes.windows(6).any(|w| w == b"A12345"), "no plaintext on disk");
            assert!(!p.to_string_lossy().contains(&sha), "the name is not the content hash");
        }
    }

    #[test]
    fn a_destroyed_case_key_makes_the_photo_unreadable_and_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let (sha, _) = f.put("c", b"picture bytes").unwrap();
        let p = f.stored_path("c", &sha).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[30] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(f.read("c", &sha), Err(MediaError::Tampered(_))));
        f.keys().destroy("c").unwrap();
        assert!(matches!(f.read("c", &sha), Err(MediaError::Key(keys::KeyError::Destroyed(_)))));
    }

    #[test]
    fn old_plaintext_photos_are_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let sha = sha256_hex(b"legacy");
        let old = f.root().join(&sha[..2]).join(&sha);
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, b"legacy").unwrap();
        assert!(f.adopt_plaintext("c", &sha).unwrap());
        assert!(!old.exists());
        assert_eq!(f.read("c", &sha).unwrap(), b"legacy");
    }
}
