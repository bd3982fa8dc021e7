//! SQLite storage: one writer thread, a few read connections, embedded numbered migrations.
//!
//! Invariants:
//! - Every write runs on the single writer thread inside `BEGIN IMMEDIATE` (rusqlite's default
//!   DEFERRED transactions fail at once with SQLITE_BUSY on read-then-write). Jobs queued together are
//!   group-committed: one transaction, one savepoint per job, so a failing job rolls back alone.
//! - A job's result is delivered only after COMMIT returned (WAL + synchronous=FULL): a caller that
//!   got Ok — and so an HTTP 2xx — holds committed, durable data.
//! - The write queue is bounded; when full, callers get `Busy` (HTTP 503) instead of unbounded growth.
//! - The database is SQLCipher, keyed with a raw 256-bit key (`keys::Keys::db_key`), temp files
//!   in memory. A plaintext database from an older version is converted once, on open: a backup
//!   copy first, then `sqlcipher_export`, then a verification (integrity and row counts) before the
//!   encrypted file replaces it (`encrypt_plaintext`).
//! - Pending migrations run only after a backup copy of the database (SQLite backup API, into a
//!   copy keyed like the original: no plaintext copy is ever written).
//! - The WAL is bounded: automatic passive checkpoints plus `journal_size_limit`, and a TRUNCATE
//!   checkpoint on clean shutdown.

pub mod audit;
pub mod cases;
pub mod estimates;
pub mod findings;
pub mod follow_up;
pub mod history;
pub mod intake;
pub mod kpi;
pub mod outbox;
pub mod people;
pub mod photos;
pub mod privacy;
pub mod schedule;
pub mod sync;
pub mod users;
pub mod workshop;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::keys::Secret;

/// Migrations embedded in the binary, applied in order; `PRAGMA user_version` records the last one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "intake", include_str!("migrations/0002_intake.sql")),
    (3, "estimate_plan", include_str!("migrations/0003_estimate_plan.sql")),
    (4, "photo_analysis", include_str!("migrations/0004_photo_analysis.sql")),
    (5, "sync", include_str!("migrations/0005_sync.sql")),
    (6, "workflow", include_str!("migrations/0006_workflow.sql")),
    (7, "data_protection", include_str!("migrations/0007_data_protection.sql")),
    (8, "workshop", include_str!("migrations/0008_workshop.sql")),
    (9, "follow_up", include_str!("migrations/0009_follow_up.sql")),
    (10, "import", include_str!("migrations/0010_import.sql")),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const WRITE_QUEUE: usize = 4096;
const MAX_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is busy; try again shortly")]
    Busy,
    #[error("the disk is full: free space in the data directory, then retry (nothing was written)")]
    DiskFull,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A state conflict (a stale version, a unique rule): the caller may reload and retry (409).
    #[error("{0}")]
    Conflict(String),
    /// COMMIT itself failed (I/O, corruption): nothing was written; an operator must look (500).
    #[error("commit failed: {0}")]
    Commit(String),
    /// Stored data that cannot be read back (a JSON column that does not parse): never reset
    /// silently; an operator must look (500).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A value could not be encoded for storage.
    #[error("cannot encode {0}")]
    Encode(String),
    #[error("file error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the store is shut down")]
    Closed,
    /// The database does not open with this key (or is not a database).
    #[error("{0}")]
    Locked(String),
    #[error("internal error in a database job")]
    Panicked,
}

impl StoreError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Busy | StoreError::Closed)
    }

    /// Classify SQLite's error codes once, so the API can answer 503/507 instead of 500.
    fn classify(e: rusqlite::Error) -> StoreError {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.code {
                rusqlite::ErrorCode::DiskFull => return StoreError::DiskFull,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => return StoreError::Busy,
                rusqlite::ErrorCode::ConstraintViolation => return StoreError::Conflict(e.to_string()),
                _ => {}
            }
        }
        StoreError::Sqlite(e)
    }
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The connection a job runs on. Repositories take `&Tx`; services pass it along without knowing SQL.
pub struct Tx<'a>(&'a Connection);

impl Tx<'_> {
    pub(crate) fn conn(&self) -> &Connection {
        self.0
    }
}

type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Deliver + Send>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    key: Secret,
    writer: Mutex<Option<mpsc::SyncSender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    queued: Arc<AtomicUsize>,
}

/// What `Store::open` did to the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    pub from: i64,
    pub to: i64,
    pub backup: Option<PathBuf>,
    /// What the one-time conversion of a plaintext database did, when it ran.
    pub encrypted: Option<String>,
}

/// Key a fresh connection (the first statement it runs) and prove the key fits.
pub fn apply_key(conn: &Connection, path: &Path, key: &Secret) -> Result<(), StoreError> {
    conn.execute_batch(&format!("PRAGMA key = \"{}\"; PRAGMA temp_store = MEMORY;", key.sqlcipher_pragma().as_str()))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).map_err(|_| {
        StoreError::Locked(format!(
            "{} does not open with this appliance's key: it was encrypted with another master key, or it is not a ServiceBay database",
            path.display()
        ))
    })?;
    Ok(())
}

/// A keyed connection for tools and tests that read the database directly.
pub fn open_keyed(path: &Path, key: &Secret, read_only: bool) -> Result<Connection, StoreError> {
    open_conn(path, read_only, key)
}

fn open_conn(path: &Path, read_only: bool, key: &Secret) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    apply_key(&conn, path, key)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    if !read_only {
        // WAL + FULL: a committed transaction survives power loss; bounded WAL file.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 1000;
             PRAGMA journal_size_limit = 67108864;",
        )?;
    }
    Ok(conn)
}

/// Apply pending migrations, backing up the database first when it already holds a schema.
pub fn migrate(conn: &mut Connection, db_path: &Path, key: &Secret) -> Result<MigrationReport, StoreError> {
    migrate_with(conn, db_path, key, MIGRATIONS)
}

/// A consistent copy of the live database into `dest`, keyed with `key` (SQLite's backup API in one
/// step: it reads one snapshot while the writer goes on in WAL mode).
pub fn snapshot_to(conn: &Connection, dest: &Path, key: &Secret) -> Result<(), StoreError> {
    let mut out = Connection::open(dest)?;
    out.execute_batch(&format!("PRAGMA key = \"{}\";", key.sqlcipher_pragma().as_str()))?;
    let b = rusqlite::backup::Backup::new(conn, &mut out)?;
    // -1: every page in one step, i.e. one read transaction and so one consistent snapshot.
    // (Busy/Locked only come from the destination, which nobody else has open: retry briefly.)
    let mut tries = 0;
    loop {
        match b.step(-1)? {
            rusqlite::backup::StepResult::Done => break,
            _ if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return Err(StoreError::Busy),
        }
    }
    drop(b);
    out.execute_batch("PRAGMA journal_mode = DELETE;")?;
    Ok(())
}

/// Run `f` on a keyed connection to a database file that no `Store` serves (a backup's snapshot,
/// a restored file).
pub fn with_file<T>(path: &Path, key: &Secret, f: impl FnOnce(&Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let conn = Connection::open(path)?;
    apply_key(&conn, path, key)?;
    f(&Tx(&conn))
}

/// Re-encrypt a database file from one key to another (`sqlcipher_export` into a new file, then a
/// rename): a restore of a backup made before a key rotation, and `key rotate`.
pub fn rekey_file(path: &Path, old: &Secret, new: &Secret) -> Result<(), StoreError> {
    let conn = Connection::open(path)?;
    apply_key(&conn, path, old)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let next = path.with_extension("rekeying");
    let _ = std::fs::remove_file(&next);
    let next_str = next.to_str().ok_or_else(|| StoreError::Migration("the data directory's path is not UTF-8".into()))?;
    conn.execute("ATTACH DATABASE ?1 AS rekeyed KEY ?2", rusqlite::params![next_str, new.sqlcipher_pragma().as_str()])?;
    conn.query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(()))?;
    conn.execute_batch(&format!("PRAGMA rekeyed.user_version = {version}; DETACH DATABASE rekeyed;"))?;
    drop(conn);
    let integrity: String = with_file(&next, new, |tx| Ok(tx.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0))?))?;
    if integrity != "ok" {
        let _ = std::fs::remove_file(&next);
        return Err(StoreError::Migration(format!("the re-keyed copy failed its check ({integrity}); the database is unchanged")));
    }
    std::fs::rename(&next, path).map_err(io_err(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(())
}

fn migrate_with(
    conn: &mut Connection,
    db_path: &Path,
    key: &Secret,
    migrations: &[(i64, &str, &str)],
) -> Result<MigrationReport, StoreError> {
    let latest = migrations.last().map(|m| m.0).unwrap_or(0);
    let from: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if from > latest {
        return Err(StoreError::Migration(format!(
            "database schema v{from} is newer than this binary supports (v{latest}); install the newer servicebay"
        )));
    }
    let pending: Vec<_> = migrations.iter().filter(|(v, _, _)| *v > from).collect();
    let mut backup = None;
    if !pending.is_empty() && from > 0 {
        let dir = db_path.parent().unwrap_or(Path::new(".")).join("backups");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let dest = dir.join(format!("servicebay-v{from}-{stamp}.db"));
        snapshot_to(conn, &dest, key)?;
        backup = Some(dest);
    }
    for (version, name, sql) in pending {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql).map_err(|e| StoreError::Migration(format!("{version:04}_{name}: {e}")))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    let to: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(MigrationReport { from, to, backup, encrypted: None })
}

fn table_counts(conn: &Connection, schema: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let names: Vec<String> = conn
        .prepare(&format!("SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    names
        .into_iter()
        .map(|n| {
            let c: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {schema}.\"{n}\""), [], |r| r.get(0))?;
            Ok((n, c))
        })
        .collect()
}

/// Convert a plaintext database (from a version before encryption) in place: backup copy, then
/// `sqlcipher_export` into a new keyed file, verified (integrity, same tables and row counts)
/// before it replaces the original. The plaintext copies are removed once the encrypted file is in
/// place; on any failure the original stays untouched and the error says what failed.
pub fn encrypt_plaintext(path: &Path, key: &Secret) -> Result<String, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups).map_err(io_err(&backups))?;
    let copy = backups.join(format!("servicebay-plaintext-{stamp}.db"));
    let enc = dir.join("servicebay.db.encrypting");
    let _ = std::fs::remove_file(&enc);
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    conn.backup(rusqlite::DatabaseName::Main, &copy, None)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let before = table_counts(&conn, "main")?;
    let enc_str = enc.to_str().ok_or_else(|| StoreError::Migration("the data directory's path is not UTF-8".into()))?;
    conn.execute("ATTACH DATABASE ?1 AS encrypted KEY ?2", rusqlite::params![enc_str, key.sqlcipher_pragma().as_str()])?;
    conn.query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))?;
    conn.execute_batch(&format!("PRAGMA encrypted.user_version = {version}; DETACH DATABASE encrypted;"))?;
    drop(conn);
    let check = Connection::open(&enc)?;
    apply_key(&check, &enc, key)?;
    let integrity: String = check.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let after = table_counts(&check, "main")?;
    let v2: i64 = check.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    drop(check);
    if integrity != "ok" || after != before || v2 != version {
        let _ = std::fs::remove_file(&enc);
        return Err(StoreError::Migration(format!(
            "the encrypted copy did not verify (integrity {integrity}, {} tables before, {} after); the plaintext database is unchanged",
            before.len(),
            after.len()
        )));
    }
    std::fs::rename(&enc, path).map_err(io_err(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    for side in ["servicebay.db-wal", "servicebay.db-shm"] {
        let _ = std::fs::remove_file(dir.join(side));
    }
    let _ = std::fs::remove_file(&copy);
    let rows: i64 = before.iter().map(|(_, c)| c).sum();
    Ok(format!("encrypted the database ({} tables, {rows} rows, schema v{version}; verified)", before.len()))
}

impl Store {
    /// Open (creating if needed) `data_dir/servicebay.db`, migrate, start the writer thread.
    pub fn open(data_dir: &Path, key: &Secret, read_connections: usize) -> Result<(Store, MigrationReport), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join("servicebay.db");
        let encrypted = if crate::keys::is_plaintext_sqlite(&path) { Some(encrypt_plaintext(&path, key)?) } else { None };
        let mut conn = open_conn(&path, false, key)?;
        let mut report = migrate(&mut conn, &path, key)?;
        report.encrypted = encrypted;
        let readers = (0..read_connections.max(1)).map(|_| open_conn(&path, true, key).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        let handle =
            std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || writer_loop(conn, rx, q)).map_err(io_err(&path))?;
        let inner = Inner {
            path,
            key: key.clone(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers,
            next_reader: AtomicUsize::new(0),
            queued,
        };
        Ok((Store { inner: Arc::new(inner) }, report))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A consistent, keyed copy of the database while the writer goes on (backups).
    pub fn snapshot(&self, dest: &Path, key: &Secret) -> Result<(), StoreError> {
        let conn = open_conn(&self.inner.path, true, &self.inner.key)?;
        snapshot_to(&conn, dest, key)
    }

    /// Jobs waiting for the writer (a metric).
    pub fn write_queue_depth(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Run `f` in the write transaction; Ok only once committed.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx) -> Result<T, E> + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn: &Connection| -> Deliver {
            // Savepoint per job: a failing job is undone without touching its batch neighbours.
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                let e = StoreError::classify(e);
                return Box::new(move |_| {
                    let _ = done_tx.send(Err(E::from(e)));
                });
            }
            let out = catch_unwind(AssertUnwindSafe(|| f(&Tx(conn)))).unwrap_or_else(|_| Err(E::from(StoreError::Panicked)));
            let end = if out.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
            let end_result = conn.execute_batch(end).map_err(StoreError::classify);
            Box::new(move |commit: Result<(), StoreError>| {
                let result = match (out, end_result, commit) {
                    (Ok(v), Ok(()), Ok(())) => Ok(v),
                    (Err(e), _, _) => Err(e),
                    (Ok(_), Err(e), _) | (Ok(_), Ok(()), Err(e)) => Err(E::from(e)),
                };
                let _ = done_tx.send(result);
            })
        });
        let sender = {
            let guard = self.inner.writer.lock().map_err(|_| E::from(StoreError::Closed))?;
            guard.clone().ok_or_else(|| E::from(StoreError::Closed))?
        };
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = sender.try_send(job) {
            self.inner.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(E::from(match e {
                mpsc::TrySendError::Full(_) => StoreError::Busy,
                mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
            }));
        }
        done_rx.await.unwrap_or_else(|_| Err(E::from(StoreError::Closed)))
    }

    /// Run `f` on a read connection, off the async runtime.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx) -> Result<T, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i].lock().map_err(|_| E::from(StoreError::Panicked))?;
            f(&Tx(&conn))
        });
        task.await.unwrap_or_else(|_| Err(E::from(StoreError::Panicked)))
    }

    /// Stop the writer after the queued jobs, then checkpoint the WAL into the database file.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Some(h) = self.inner.writer_thread.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, queued: Arc<AtomicUsize>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        run_batch(&mut conn, batch);
    }
    // Clean shutdown: fold the WAL back into the main file.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = StoreError::classify(e);
        tracing::error!(error = %e, "cannot begin write transaction");
        for job in batch {
            // Jobs were never run; tell each caller the write did not happen.
            let deliver = fail_job(job);
            deliver(Err(StoreError::Busy));
        }
        return;
    }
    let delivers: Vec<Deliver> = batch.into_iter().map(|job| job(conn)).collect();
    let commit = conn.execute_batch("COMMIT").map_err(StoreError::classify);
    if let Err(e) = &commit {
        tracing::error!(error = %e, "commit failed; the whole batch is rolled back");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for d in delivers {
        d(match &commit {
            Ok(()) => Ok(()),
            Err(StoreError::DiskFull) => Err(StoreError::DiskFull),
            Err(StoreError::Busy) => Err(StoreError::Busy),
            Err(e) => Err(StoreError::Commit(e.to_string())),
        });
    }
}

/// Drop a job without running it: its oneshot sender is dropped, so the caller sees `Closed`.
fn fail_job(job: Job) -> Deliver {
    drop(job);
    Box::new(|_| {})
}

/// Helpers for optional columns and enum text in repositories.
pub(crate) fn parse_status(s: Option<String>) -> Option<crate::domain::CaseStatus> {
    s.as_deref().and_then(crate::domain::CaseStatus::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::random()
    }

    fn keyed(path: &Path, k: &Secret) -> Connection {
        let c = Connection::open(path).unwrap();
        apply_key(&c, path, k).unwrap();
        c
    }

    #[test]
    fn fresh_database_migrates_to_latest_without_backup() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let (store, report) = Store::open(dir.path(), &k, 2).unwrap();
        assert_eq!(report, MigrationReport { from: 0, to: SCHEMA_VERSION, backup: None, encrypted: None });
        store.close();
        // Reopening finds nothing pending.
        let (_s, again) = Store::open(dir.path(), &k, 1).unwrap();
        assert_eq!(again.from, SCHEMA_VERSION);
        assert_eq!(again.backup, None);
    }

    #[test]
    fn every_migration_applies_and_creates_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let k = key();
        let mut conn = keyed(&path, &k);
        migrate(&mut conn, &path, &k).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for t in [
            "appointments",
            "approvals",
            "audit_log",
            "case_events",
            "cases",
            "customers",
            "estimate_items",
            "estimates",
            "findings",
            "messages",
            "outbox",
            "photo_waivers",
            "photos",
            "qc_reports",
            "sessions",
            "stores",
            "surveys",
            "users",
            "vehicles",
            "work_order_lines",
            "work_orders",
        ] {
            assert!(tables.iter().any(|x| x == t), "missing table {t}");
        }
        assert!(tables.iter().any(|x| x == "case_intake"), "migration 0002");
        assert!(tables.iter().any(|x| x == "photo_analysis"), "migration 0004");
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('estimates')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for c in ["plan", "explanation", "explanation_from_llm"] {
            assert!(cols.iter().any(|x| x == c), "migration 0003: estimates.{c}");
        }
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // The timeline is append-only.
        conn.execute_batch(
            "INSERT INTO stores VALUES ('s','S','t');
             INSERT INTO customers (id,name,created_at,updated_at) VALUES ('c','C','t','t');
             INSERT INTO cases (id,store_id,customer_id,status,summary,created_at,updated_at) VALUES ('k','s','c','reported','x','t','t');
             INSERT INTO case_events (case_id,at,actor,kind) VALUES ('k','t','a','created');",
        )
        .unwrap();
        assert!(conn.execute("UPDATE case_events SET actor='b'", []).is_err());
        assert!(conn.execute("DELETE FROM case_events", []).is_err());
    }

    /// 0006 on a v5 database with data: findings gain their source list, old analyses are not
    /// trusted for the privacy blur, and the rows read back through the repositories.
    #[test]
    fn workflow_migration_upgrades_v5_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebay.db");
        let k = key();
        let mut conn = keyed(&path, &k);
        migrate_with(&mut conn, &path, &k, &MIGRATIONS[..5]).unwrap();
        conn.execute_batch(
            "INSERT INTO stores VALUES ('s','S','t');
             INSERT INTO customers (id,name,created_at,updated_at) VALUES ('c','C','t','t');
             INSERT INTO cases (id,store_id,customer_id,status,summary,created_at,updated_at) VALUES ('k','s','c','intake','x','t','t');
             INSERT INTO findings (id,case_id,source,part,damage_type,created_at,updated_at) VALUES ('f1','k','customer','door','scratch','t','t');
             INSERT INTO photos (id,case_id,sha256,media_type,width,height,bytes,uploaded_by,uploaded_at) VALUES ('p','k','h','image/jpeg',1,1,1,'a','t');
             INSERT INTO photo_analysis (photo_id,status,detections,analysed_at) VALUES ('p','done','[]','t');",
        )
        .unwrap();
        let report = migrate(&mut conn, &path, &k).unwrap();
        assert_eq!((report.from, report.to), (5, SCHEMA_VERSION));
        assert!(report.backup.is_some());
        let tx = Tx(&conn);
        let f = findings::of_case(&tx, "k").unwrap();
        assert_eq!((f.len(), f[0].sources.clone()), (1, vec!["customer".to_string()]));
        let a = photos::analysis(&tx, "p").unwrap().unwrap();
        assert!(!a.privacy_capable, "an analysis from before 0006 is not trusted for the blur");
        assert_eq!(photos::passed_quality(&tx, "k").unwrap(), 0);
    }

    /// 0010 on a v9 database with a car: its visits can be stored once per natural key, and the
    /// import runs table takes its row.
    #[test]
    fn import_migration_adds_service_history_keyed_naturally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebay.db");
        let k = key();
        let mut conn = keyed(&path, &k);
        migrate_with(&mut conn, &path, &k, &MIGRATIONS[..9]).unwrap();
        conn.execute_batch(
            "INSERT INTO customers (id,name,created_at,updated_at) VALUES ('c','C','t','t');
             INSERT INTO vehicles (id,customer_id,vin,created_at,updated_at) VALUES ('v','c','LSVAA4182E2123456','t','t');",
        )
        .unwrap();
        let report = migrate(&mut conn, &path, &k).unwrap();
        assert_eq!((report.from, report.to), (9, SCHEMA_VERSION));
        let visit = "INSERT INTO service_history (id,vehicle_id,visit_date,ro_no,import_id,created_at,updated_at)
                     VALUES (?1,'v','2024-03-05','RO1','i','t','t')";
        conn.execute(visit, ["h1"]).unwrap();
        assert!(conn.execute(visit, ["h2"]).is_err(), "one row per (vehicle, day, repair order)");
        conn.execute(
            "INSERT INTO import_runs (id,kind,file_name,file_sha256,mapping,dry_run,counts,actor,at) VALUES ('i','dms','a.csv','h','m',0,'{}','cli','t')",
            [],
        )
        .unwrap();
        assert!(conn.execute("UPDATE service_history SET source = 'hq'", []).is_err(), "only DMS history so far");
    }

    #[test]
    fn pending_migration_takes_a_backup_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebay.db");
        let k = key();
        let mut conn = keyed(&path, &k);
        migrate(&mut conn, &path, &k).unwrap();
        conn.execute("INSERT INTO stores VALUES ('s1','S','t')", []).unwrap();
        // A newer binary with one more migration: the current file is backed up before it runs.
        let mut next = MIGRATIONS.to_vec();
        next.push((SCHEMA_VERSION + 1, "extra", "ALTER TABLE stores ADD COLUMN city TEXT;"));
        let report = migrate_with(&mut conn, &path, &k, &next).unwrap();
        assert_eq!((report.from, report.to), (SCHEMA_VERSION, SCHEMA_VERSION + 1));
        let backup = report.backup.expect("backup taken");
        assert!(!crate::keys::is_plaintext_sqlite(&backup), "the migration backup is encrypted too");
        let old = keyed(&backup, &k);
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        let n: i64 = old.query_row("SELECT COUNT(*) FROM stores", [], |r| r.get(0)).unwrap();
        assert_eq!((v, n), (SCHEMA_VERSION, 1));
        // A binary older than the database refuses to touch it.
        let err = migrate(&mut conn, &path, &k).unwrap_err();
        assert!(err.to_string().contains("newer than this binary"), "{err}");
    }

    #[tokio::test]
    async fn failing_job_rolls_back_alone_and_commit_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &key(), 2).unwrap();
        let ok = store.write(|tx| -> Result<(), StoreError> {
            tx.conn().execute("INSERT INTO stores VALUES ('a','A','t')", [])?;
            Ok(())
        });
        let bad = store.write(|tx| -> Result<(), StoreError> {
            tx.conn().execute("INSERT INTO stores VALUES ('b','B','t')", [])?;
            Err(StoreError::Conflict("nope".into()))
        });
        let (ok, bad) = tokio::join!(ok, bad);
        ok.unwrap();
        assert!(bad.is_err());
        let names: Vec<String> = store
            .read(|tx| -> Result<Vec<String>, StoreError> {
                let mut st = tx.conn().prepare("SELECT id FROM stores ORDER BY id")?;
                let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(v)
            })
            .await
            .unwrap();
        assert_eq!(names, vec!["a".to_string()]);
        store.close();
    }

    /// An older appliance's plaintext database is converted on open: same rows, no SQLite header,
    /// no plaintext copy left behind, and the wrong key is refused with a clear message.
    #[test]
    fn plaintext_database_is_encrypted_on_open_and_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebay.db");
        {
            let mut plain = Connection::open(&path).unwrap();
            plain.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
            let none = Secret::random();
            // Migrations written with an unkeyed connection: that is plain SQLite.
            migrate_with(&mut plain, &path, &none, &MIGRATIONS[..6]).unwrap();
            plain.execute_batch("INSERT INTO stores VALUES ('s','门店 13800138000','t');").unwrap();
        }
        assert!(crate::keys::is_plaintext_sqlite(&path));
        let k = key();
        let (store, report) = Store::open(dir.path(), &k, 1).unwrap();
        assert!(report.encrypted.as_deref().unwrap_or("").contains("verified"), "{report:?}");
        store.close();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.starts_with(b"SQLite format 3"), "no SQLite header");
        assert!(!bytes.windows(11).any(|w| w == b"13800138000"));
        // Left in backups/: only the (encrypted) copy taken before migration 0007 ran.
        for e in std::fs::read_dir(dir.path().join("backups")).unwrap() {
            let p = e.unwrap().path();
            assert!(!crate::keys::is_plaintext_sqlite(&p), "no plaintext copy is left: {}", p.display());
            assert!(!std::fs::read(&p).unwrap().windows(11).any(|w| w == b"13800138000"));
        }
        assert!(report.backup.is_some());
        let c = keyed(&path, &k);
        let name: String = c.query_row("SELECT name FROM stores", [], |r| r.get(0)).unwrap();
        assert_eq!(name, "门店 13800138000");
        let err = Store::open(dir.path(), &Secret::random(), 1).err().expect("wrong key refused");
        assert!(matches!(err, StoreError::Locked(_)) && err.to_string().contains("another master key"), "{err}");
    }
}
