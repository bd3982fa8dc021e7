//! Sync bookkeeping: reading the outbox for the uplink, forgetting rows HQ acknowledged, and the
//! signed bundles applied or refused. See `sync` for the delivery invariants.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

/// One outbox row as the store keeps it. The store knows nothing of the wire: `sync::wire` turns
/// these into `Record`s (the dependency points from sync to the store, never back).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    pub event_id: String,
    pub record_type: String,
    pub record_id: String,
    pub version: i64,
    pub schema_version: i64,
    pub at: String,
    /// The record's JSON body, as committed.
    pub body: String,
}

/// Outbox rows after `after_seq`, in order, bounded by count and by total body bytes (at least
/// one row, so a single large row still moves).
pub fn batch_after(tx: &Tx, after_seq: i64, max_records: usize, max_bytes: usize) -> Result<Vec<OutboxRow>, StoreError> {
    let mut st = tx.conn().prepare_cached(
        "SELECT seq, event_id, record_type, record_id, version, schema_version, at, body FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = st.query(params![after_seq, max_records as i64])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next()? {
        let rec = OutboxRow {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            record_type: r.get(2)?,
            record_id: r.get(3)?,
            version: r.get(4)?,
            schema_version: r.get(5)?,
            at: r.get(6)?,
            body: r.get(7)?,
        };
        bytes += rec.body.len() + rec.event_id.len() + rec.record_id.len() + 96;
        if !out.is_empty() && bytes > max_bytes {
            break;
        }
        out.push(rec);
    }
    Ok(out)
}

/// HQ stored everything up to `acked_seq`: those rows leave the outbox. Acks never move backwards
/// (two HQ workers may publish theirs out of order). Returns the effective acked sequence.
pub fn ack(tx: &Tx, acked_seq: i64, at: &str) -> Result<i64, StoreError> {
    let current: i64 = tx.conn().query_row("SELECT acked_seq FROM sync_state WHERE id = 1", [], |r| r.get(0))?;
    if acked_seq <= current {
        return Ok(current);
    }
    tx.conn().execute("DELETE FROM outbox WHERE seq <= ?1", [acked_seq])?;
    tx.conn().execute("UPDATE sync_state SET acked_seq = ?1, last_ack_at = ?2 WHERE id = 1", params![acked_seq, at])?;
    Ok(acked_seq)
}

/// The newest sequence in the outbox (0 when empty): an index lookup, cheap on every batch.
pub fn head_seq(tx: &Tx) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))?)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxState {
    pub acked_seq: i64,
    pub last_ack_at: Option<String>,
    pub depth: i64,
    pub head_seq: i64,
    pub oldest_at: Option<String>,
}

pub fn outbox_state(tx: &Tx) -> Result<OutboxState, StoreError> {
    let (acked_seq, last_ack_at) =
        tx.conn().query_row("SELECT acked_seq, last_ack_at FROM sync_state WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (depth, head_seq) = tx
        .conn()
        .query_row("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM outbox", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    let oldest_at = tx.conn().query_row("SELECT at FROM outbox ORDER BY seq LIMIT 1", [], |r| r.get(0)).optional()?;
    Ok(OutboxState { acked_seq, last_ack_at, depth, head_seq: head_seq.max(acked_seq), oldest_at })
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppliedBundle {
    pub version: u64,
    pub sha256: String,
    pub target: String,
    pub applied_at: String,
}

pub fn applied_bundles(tx: &Tx) -> Result<BTreeMap<String, AppliedBundle>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT kind, version, sha256, target, applied_at FROM bundles ORDER BY kind")?;
    let v = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                AppliedBundle { version: r.get::<_, i64>(1)? as u64, sha256: r.get(2)?, target: r.get(3)?, applied_at: r.get(4)? },
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn record_bundle(tx: &Tx, kind: &str, b: &AppliedBundle) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO bundles (kind, version, sha256, target, applied_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(kind) DO UPDATE SET version = excluded.version, sha256 = excluded.sha256, target = excluded.target,
                                         applied_at = excluded.applied_at",
        params![kind, b.version as i64, b.sha256, b.target, b.applied_at],
    )?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejection {
    pub at: String,
    pub topic: String,
    pub kind: Option<String>,
    pub version: Option<u64>,
    pub reason: String,
}

/// Keeps the last 100 refusals: enough for a manager to see what HQ sent wrong, bounded on disk.
pub fn record_rejection(tx: &Tx, r: &Rejection) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO bundle_rejections (at, topic, kind, version, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![r.at, r.topic, r.kind, r.version.map(|v| v as i64), r.reason],
    )?;
    tx.conn().execute("DELETE FROM bundle_rejections WHERE id <= (SELECT MAX(id) - 100 FROM bundle_rejections)", [])?;
    Ok(())
}

pub fn rejections(tx: &Tx, limit: usize) -> Result<Vec<Rejection>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT at, topic, kind, version, reason FROM bundle_rejections ORDER BY id DESC LIMIT ?1")?;
    let v = st
        .query_map([limit as i64], |r| {
            Ok(Rejection {
                at: r.get(0)?,
                topic: r.get(1)?,
                kind: r.get(2)?,
                version: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                reason: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}
