//! Keys: the master key, the keys derived from it, and the per-case data keys (the keyring).
//!
//! Where the master key comes from, in order:
//! 1. a systemd credential (`LoadCredentialEncrypted=servicebay-master-key:…` in the unit), sealed
//!    by `scripts/key-setup.sh` to the TPM2 when the box has one, else to the host secret; the
//!    script records which in `<key_dir>/sealing`;
//! 2. otherwise the 0600 file `<key_dir>/master.key` (64 hex digits), outside the data directory.
//!    It is made on the first start of an empty appliance, never later: a database that exists
//!    while its key does not is a lost key, explained and refused, never silently replaced.
//!
//! Invariants:
//! - The master key never encrypts data itself. The database key and the case-key wrapping key
//!   are HMAC-SHA256 derivations of it, each under its own label.
//! - Every case has its own random 256-bit data key, stored only wrapped (AES-256-GCM, the case id
//!   as associated data) in the keyring `<key_dir>/case-keys.db`. The keyring lives beside the
//!   master key, not in the data directory, so no backup carries it: destroying a case key
//!   (erasure) makes that case's photos unreadable in every backup ever taken (crypto-shredding).
//! - The keyring records the fingerprint of the master key that wrapped it; a rotation re-wraps
//!   every key in one transaction and switches the fingerprint with it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The name of the systemd credential (and of the file under `$CREDENTIALS_DIRECTORY`).
pub const CREDENTIAL: &str = "servicebay-master-key";
pub const KEY_FILE: &str = "master.key";
pub const KEYRING_FILE: &str = "case-keys.db";
const SEALING_FILE: &str = "sealing";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the master key is missing: {where_} does not exist, but the data in {data} was encrypted with it. \
         Nothing can be read without it. Put the key file back from your escrow copy (see README \"Where the key lives\"), \
         or, on a systemd box, restore the encrypted credential; then start again"
    )]
    Lost { where_: String, data: String },
    #[error("the master key at {0} is unreadable or malformed (expected 64 hex digits): {1}")]
    Malformed(String, String),
    #[error("the key file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    Exposed { path: String, mode: u32 },
    #[error("[storage] require_tpm = true, but the master key is protected by {0}; seal it to the TPM2 with scripts/key-setup.sh --tpm2")]
    TpmRequired(&'static str),
    #[error("the key directory {0} is inside the data directory; set [storage] key_dir to a directory outside it")]
    InsideDataDir(String),
    #[error("this data was encrypted with another master key (fingerprint {found}; this key is {ours}); use the key it was made with")]
    WrongKey { found: String, ours: String },
    #[error("the keyring {path}: {message}")]
    Keyring { path: String, message: String },
    #[error("case {0}: its key was destroyed (the customer's data was erased)")]
    Destroyed(String),
    #[error("a key operation failed: {0}")]
    Crypto(&'static str),
    #[error("{0}")]
    Unsupported(String),
    #[error("key storage error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

/// What protects the master key at rest, as `servicebay key status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Tpm2,
    HostSecret,
    KeyFile,
}

impl KeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Tpm2 => "tpm2",
            KeyMode::HostSecret => "host secret",
            KeyMode::KeyFile => "key file",
        }
    }
}

/// Where keys live and what is demanded of them (`[storage]` in the config).
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub key_dir: PathBuf,
    pub data_dir: PathBuf,
    pub require_tpm: bool,
    /// `$CREDENTIALS_DIRECTORY` as systemd set it (None outside a unit).
    pub credentials_dir: Option<PathBuf>,
}

/// 32 secret bytes, wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; 32]>);

impl Secret {
    pub fn random() -> Secret {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        Secret(k)
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }
    fn from_hex(text: &str) -> Option<Secret> {
        let mut raw = Zeroizing::new(hex::decode(text.trim()).ok()?);
        if raw.len() != 32 {
            raw.zeroize();
            return None;
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&raw);
        Some(Secret(k))
    }
    /// HMAC-SHA256(self, label): one derived key per purpose.
    fn derive(&self, label: &str) -> Secret {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&mac.finalize().into_bytes());
        Secret(k)
    }
    /// A short public name for this key (never the key): shown in status, stored in backups.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.derive("servicebay key fingerprint v1").bytes()[..8])
    }
    /// The SQLCipher key, as the `PRAGMA key` literal for a raw 256-bit key.
    pub fn sqlcipher_pragma(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("x'{}'", self.hex().as_str()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

/// Seal `plain` with AES-256-GCM under `key`: nonce (12 bytes) ‖ ciphertext ‖ tag.
pub fn seal(key: &Secret, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).map_err(|_| KeyError::Crypto("bad key length"))?;
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad }).map_err(|_| KeyError::Crypto("encryption failed"))?;
    let mut out = Vec::with_capacity(12 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Open what `seal` made; None when the key is wrong or the bytes were changed.
pub fn open(key: &Secret, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).ok()?;
    cipher.decrypt(Nonce::from_slice(&sealed[..12]), Payload { msg: &sealed[12..], aad }).ok()
}

/// The master key and what it protects.
pub struct Keys {
    master: Secret,
    mode: KeyMode,
    key_dir: PathBuf,
    /// Not cached in memory: another process on the box (the CLI's erase) may destroy a key,
    /// and an unwrap is one indexed read and one AES-GCM block, small beside a photo's decode.
    ring: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("mode", &self.mode).field("master", &self.master).finish()
    }
}

/// `servicebay key status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    pub mode: &'static str,
    pub fingerprint: String,
    pub key_dir: String,
    pub case_keys: i64,
    pub destroyed: i64,
    pub tpm_present: bool,
}

pub fn tpm_present() -> bool {
    Path::new("/dev/tpmrm0").exists() || Path::new("/sys/class/tpm/tpm0").exists()
}

/// Whether a file starts with SQLite's plaintext header (an unencrypted database).
pub fn is_plaintext_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"SQLite format 3\0"
}

impl KeyConfig {
    fn check(&self) -> Result<(), KeyError> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        if abs(&self.key_dir).starts_with(abs(&self.data_dir)) {
            return Err(KeyError::InsideDataDir(self.key_dir.display().to_string()));
        }
        Ok(())
    }
}

/// Read the master key from the credential or the key file, making the key file on the first start
/// of an empty appliance.
fn load_master(cfg: &KeyConfig) -> Result<(Secret, KeyMode), KeyError> {
    if let Some(dir) = &cfg.credentials_dir {
        let p = dir.join(CREDENTIAL);
        if p.exists() {
            let text = Zeroizing::new(std::fs::read_to_string(&p).map_err(io(&p))?);
            let key = Secret::from_hex(&text).ok_or_else(|| KeyError::Malformed(p.display().to_string(), "not 64 hex digits".into()))?;
            let sealing = std::fs::read_to_string(cfg.key_dir.join(SEALING_FILE)).unwrap_or_default();
            // Claim the TPM only when the record says so and the device is there.
            let mode = if sealing.trim() == "tpm2" && tpm_present() { KeyMode::Tpm2 } else { KeyMode::HostSecret };
            return Ok((key, mode));
        }
    }
    let p = cfg.key_dir.join(KEY_FILE);
    if p.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).map_err(io(&p))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed { path: p.display().to_string(), mode });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(&p).map_err(io(&p))?);
        let key = Secret::from_hex(&text).ok_or_else(|| KeyError::Malformed(p.display().to_string(), "not 64 hex digits".into()))?;
        return Ok((key, KeyMode::KeyFile));
    }
    let db = cfg.data_dir.join("servicebay.db");
    if db.exists() && !is_plaintext_sqlite(&db) {
        let where_ = match &cfg.credentials_dir {
            Some(d) => format!("neither the credential {} nor {}", d.join(CREDENTIAL).display(), p.display()),
            None => p.display().to_string(),
        };
        return Err(KeyError::Lost { where_, data: cfg.data_dir.display().to_string() });
    }
    let key = Secret::random();
    write_key_file(&cfg.key_dir, &key)?;
    tracing::warn!(path = %p.display(), "made a new master key file; keep an escrow copy of it off this box");
    Ok((key, KeyMode::KeyFile))
}

fn make_private_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Write `<dir>/master.key` (0600) durably, through a temporary name.
fn write_key_file(dir: &Path, key: &Secret) -> Result<(), KeyError> {
    make_private_dir(dir)?;
    let tmp = dir.join(format!("{KEY_FILE}.tmp"));
    let dest = dir.join(KEY_FILE);
    let mut text = key.hex();
    text.push('\n');
    crate::fsutil::write_secret(&tmp, &text).map_err(io(&tmp))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

fn ring_err(path: &Path) -> impl Fn(rusqlite::Error) -> KeyError + '_ {
    move |e| KeyError::Keyring { path: path.display().to_string(), message: e.to_string() }
}

fn open_ring(dir: &Path) -> Result<rusqlite::Connection, KeyError> {
    make_private_dir(dir)?;
    let path = dir.join(KEYRING_FILE);
    let e = ring_err(&path);
    let conn = rusqlite::Connection::open(&path).map_err(&e)?;
    // The daemon and a CLI command (erase, rotate) may both write it.
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(&e)?;
    // secure_delete: a destroyed key's bytes are overwritten in the file, not just unlinked.
    conn.execute_batch(
        "PRAGMA secure_delete = ON;
         PRAGMA journal_mode = DELETE;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS case_keys (case_id TEXT PRIMARY KEY, wrapped BLOB NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS destroyed (case_id TEXT PRIMARY KEY, at TEXT NOT NULL);",
    )
    .map_err(&e)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(conn)
}

impl Keys {
    /// Load the master key and open the keyring; refuse clearly when a safeguard cannot hold.
    pub fn load(cfg: &KeyConfig) -> Result<Keys, KeyError> {
        cfg.check()?;
        let (master, mode) = load_master(cfg)?;
        if cfg.require_tpm && mode != KeyMode::Tpm2 {
            return Err(KeyError::TpmRequired(mode.as_str()));
        }
        let ring = open_ring(&cfg.key_dir)?;
        let fp = master.fingerprint();
        let path = cfg.key_dir.join(KEYRING_FILE);
        let found: Option<String> =
            ring.query_row("SELECT v FROM meta WHERE k = 'master'", [], |r| r.get(0)).optional().map_err(ring_err(&path))?;
        match found {
            Some(found) if found != fp => return Err(KeyError::WrongKey { found, ours: fp }),
            Some(_) => {}
            None => {
                ring.execute("INSERT INTO meta (k, v) VALUES ('master', ?1)", [&fp]).map_err(ring_err(&path))?;
            }
        }
        Ok(Keys { master, mode, key_dir: cfg.key_dir.clone(), ring: Mutex::new(ring) })
    }

    pub fn mode(&self) -> KeyMode {
        self.mode
    }

    pub fn fingerprint(&self) -> String {
        self.master.fingerprint()
    }

    pub fn key_dir(&self) -> &Path {
        &self.key_dir
    }

    /// The SQLCipher key of the database.
    pub fn db_key(&self) -> Secret {
        db_key_of(&self.master)
    }

    fn wrap_key(master: &Secret) -> Secret {
        master.derive("servicebay case key wrapping v1")
    }

    fn ring_path(&self) -> PathBuf {
        self.key_dir.join(KEYRING_FILE)
    }

    /// The case's data key; made (and stored wrapped) on first use when `create`.
    pub fn case_key(&self, case_id: &str, create: bool) -> Result<Secret, KeyError> {
        let path = self.ring_path();
        let ring = self.ring.lock().map_err(|_| KeyError::Crypto("keyring lock poisoned"))?;
        let wrapped: Option<Vec<u8>> = ring
            .query_row("SELECT wrapped FROM case_keys WHERE case_id = ?1", [case_id], |r| r.get(0))
            .optional()
            .map_err(ring_err(&path))?;
        let key = match wrapped {
            Some(w) => {
                let raw = Zeroizing::new(
                    open(&Self::wrap_key(&self.master), &w, case_id.as_bytes()).ok_or(KeyError::Crypto("a case key does not unwrap"))?,
                );
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(raw.get(..32).ok_or(KeyError::Crypto("a case key has the wrong length"))?);
                Secret(k)
            }
            None => {
                let destroyed: bool = ring
                    .query_row("SELECT EXISTS(SELECT 1 FROM destroyed WHERE case_id = ?1)", [case_id], |r| r.get(0))
                    .map_err(ring_err(&path))?;
                if destroyed || !create {
                    return Err(KeyError::Destroyed(case_id.to_string()));
                }
                let k = Secret::random();
                let w = seal(&Self::wrap_key(&self.master), k.bytes(), case_id.as_bytes())?;
                ring.execute("INSERT INTO case_keys (case_id, wrapped, created_at) VALUES (?1, ?2, ?3)", params![case_id, w, now()])
                    .map_err(ring_err(&path))?;
                k
            }
        };
        Ok(key)
    }

    /// Destroy a case's key for good (crypto-shredding). Idempotent.
    pub fn destroy(&self, case_id: &str) -> Result<(), KeyError> {
        let path = self.ring_path();
        let mut ring = self.ring.lock().map_err(|_| KeyError::Crypto("keyring lock poisoned"))?;
        let tx = ring.transaction().map_err(ring_err(&path))?;
        tx.execute("DELETE FROM case_keys WHERE case_id = ?1", [case_id]).map_err(ring_err(&path))?;
        tx.execute("INSERT OR IGNORE INTO destroyed (case_id, at) VALUES (?1, ?2)", params![case_id, now()]).map_err(ring_err(&path))?;
        tx.commit().map_err(ring_err(&path))
    }

    pub fn status(&self) -> Result<KeyStatus, KeyError> {
        let path = self.ring_path();
        let ring = self.ring.lock().map_err(|_| KeyError::Crypto("keyring lock poisoned"))?;
        let count = |sql: &str| ring.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(ring_err(&path));
        Ok(KeyStatus {
            mode: self.mode.as_str(),
            fingerprint: self.fingerprint(),
            key_dir: self.key_dir.display().to_string(),
            case_keys: count("SELECT COUNT(*) FROM case_keys")?,
            destroyed: count("SELECT COUNT(*) FROM destroyed")?,
            tpm_present: tpm_present(),
        })
    }

    /// Re-wrap every case key under `new` and record its fingerprint, in one keyring transaction.
    /// The caller has already re-keyed the database; the key file is switched after this.
    pub fn rewrap_all(&self, new: &Secret) -> Result<usize, KeyError> {
        let path = self.ring_path();
        let mut ring = self.ring.lock().map_err(|_| KeyError::Crypto("keyring lock poisoned"))?;
        let tx = ring.transaction().map_err(ring_err(&path))?;
        let rows: Vec<(String, Vec<u8>)> = {
            let mut st = tx.prepare("SELECT case_id, wrapped FROM case_keys").map_err(ring_err(&path))?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(ring_err(&path))?
                .collect::<Result<_, _>>()
                .map_err(ring_err(&path))?;
            v
        };
        let (old_wrap, new_wrap) = (Self::wrap_key(&self.master), Self::wrap_key(new));
        for (case_id, w) in &rows {
            let raw = Zeroizing::new(open(&old_wrap, w, case_id.as_bytes()).ok_or(KeyError::Crypto("a case key does not unwrap"))?);
            let w2 = seal(&new_wrap, &raw, case_id.as_bytes())?;
            tx.execute("UPDATE case_keys SET wrapped = ?2 WHERE case_id = ?1", params![case_id, w2]).map_err(ring_err(&path))?;
        }
        tx.execute("UPDATE meta SET v = ?1 WHERE k = 'master'", [new.fingerprint()]).map_err(ring_err(&path))?;
        tx.commit().map_err(ring_err(&path))?;
        Ok(rows.len())
    }

    /// Replace the key file with `new` (key-file mode only), keeping the old one under `retired/`
    /// so that backups made before the rotation can still be restored.
    pub fn install_key_file(&self, new: &Secret) -> Result<PathBuf, KeyError> {
        if self.mode != KeyMode::KeyFile {
            return Err(KeyError::Unsupported(
                "the master key is a systemd credential; rotation is supported in key-file mode only (README: Where the key lives)".into(),
            ));
        }
        let retired = self.key_dir.join("retired");
        make_private_dir(&retired)?;
        let old = retired.join(format!("master-{}.key", self.fingerprint()));
        let mut text = self.master.hex();
        text.push('\n');
        crate::fsutil::write_secret(&old, &text).map_err(io(&old))?;
        write_key_file(&self.key_dir, new)?;
        Ok(old)
    }

    /// Keys retired by rotations (for restoring older backups).
    pub fn retired(&self) -> Vec<Secret> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.key_dir.join("retired")) {
            for e in rd.flatten() {
                if let Some(k) = std::fs::read_to_string(e.path()).ok().and_then(|t| Secret::from_hex(&Zeroizing::new(t))) {
                    out.push(k);
                }
            }
        }
        out
    }
}

pub fn db_key_of(master: &Secret) -> Secret {
    master.derive("servicebay sqlcipher database key v1")
}

/// A keyed name: HMAC(key, parts) as hex (photo file names, so that a name says nothing).
pub fn keyed_name(key: &Secret, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_le_bytes());
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Read the database key for tools and tests that open the database directly: the key file, or
/// the systemd credential when run under the unit.
pub fn db_key_for(cfg: &KeyConfig) -> Result<Secret, KeyError> {
    let (master, _) = load_master(cfg)?;
    Ok(db_key_of(&master))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(root: &Path) -> KeyConfig {
        KeyConfig { key_dir: root.join("keys"), data_dir: root.join("data"), require_tpm: false, credentials_dir: None }
    }

    #[test]
    fn seal_opens_only_with_the_key_and_the_same_context() {
        let (k, other) = (Secret::random(), Secret::random());
        let s = seal(&k, b"phone 13800138000", b"case-1").unwrap();
        assert_eq!(open(&k, &s, b"case-1").unwrap(), b"phone 13800138000");
        assert!(open(&other, &s, b"case-1").is_none());
        assert!(open(&k, &s, b"case-2").is_none(), "bound to its case");
        let mut bad = s.clone();
        bad[20] ^= 1;
        assert!(open(&k, &bad, b"case-1").is_none(), "tampering is detected");
    }

    #[test]
    fn first_start_makes_a_private_key_file_and_case_keys_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let keys = Keys::load(&c).unwrap();
        assert_eq!(keys.mode(), KeyMode::KeyFile);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(c.key_dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600);
        }
        let k1 = keys.case_key("c1", true).unwrap();
        assert!(matches!(keys.case_key("c2", false), Err(KeyError::Destroyed(_))), "never made without asking");
        drop(keys);
        let keys = Keys::load(&c).unwrap();
        assert_eq!(keys.case_key("c1", false).unwrap().bytes(), k1.bytes());
        keys.destroy("c1").unwrap();
        assert!(matches!(keys.case_key("c1", true), Err(KeyError::Destroyed(_))), "a destroyed key is never remade");
        assert_eq!(keys.status().unwrap().destroyed, 1);
    }

    #[test]
    fn a_missing_key_for_encrypted_data_is_explained_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        std::fs::create_dir_all(&c.data_dir).unwrap();
        std::fs::write(c.data_dir.join("servicebay.db"), [7u8; 4096]).unwrap();
        let e = Keys::load(&c).unwrap_err();
        assert!(matches!(e, KeyError::Lost { .. }), "{e}");
        assert!(e.to_string().contains("escrow"), "{e}");
        assert!(!c.key_dir.join(KEY_FILE).exists(), "no new key was made");
    }

    #[test]
    fn loose_permissions_tpm_demands_and_key_dirs_inside_the_data_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        Keys::load(&c).unwrap();
        let tpm = KeyConfig { require_tpm: true, ..c.clone() };
        assert!(matches!(Keys::load(&tpm), Err(KeyError::TpmRequired("key file"))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(c.key_dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Keys::load(&c), Err(KeyError::Exposed { .. })));
        }
        let inside = KeyConfig { key_dir: c.data_dir.join("keys"), ..c };
        assert!(matches!(Keys::load(&inside), Err(KeyError::InsideDataDir(_))));
    }

    #[test]
    fn rotation_rewraps_and_the_old_key_no_longer_fits() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let keys = Keys::load(&c).unwrap();
        let k1 = keys.case_key("c1", true).unwrap();
        let new = Secret::random();
        assert_eq!(keys.rewrap_all(&new).unwrap(), 1);
        keys.install_key_file(&new).unwrap();
        drop(keys);
        let keys = Keys::load(&c).unwrap();
        assert_eq!(keys.fingerprint(), new.fingerprint());
        assert_eq!(keys.case_key("c1", false).unwrap().bytes(), k1.bytes());
        assert_eq!(keys.retired().len(), 1);
    }
}
