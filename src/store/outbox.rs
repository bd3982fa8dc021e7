//! The outbox: every change HQ needs is appended here in the same transaction as the change itself
//! (store-and-forward; the sync task sends rows and removes them only after HQ's application ack).
//! This is the one writer of outbox rows.

use rusqlite::params;

use super::{StoreError, Tx};

pub fn append(
    tx: &Tx,
    record_type: &str,
    record_id: &str,
    version: i64,
    schema_version: i64,
    at: &str,
    body: &str,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO outbox (event_id, record_type, record_id, version, schema_version, at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![crate::domain::new_id(), record_type, record_id, version, schema_version, at, body],
    )?;
    Ok(())
}

pub fn depth(tx: &Tx) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?)
}
