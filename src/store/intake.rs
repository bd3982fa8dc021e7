//! The intake conversation's persisted state and messages. The state is the dialogue policy's own
//! JSON (opaque here); `version` guards against two turns racing on one case.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{StoreError, Tx};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub id: i64,
    pub at: String,
    pub sender: String,
    pub text: String,
    pub meta: Option<serde_json::Value>,
}

/// (state JSON, version) of a case's conversation, if it has started.
pub fn state(tx: &Tx, case_id: &str) -> Result<Option<(String, i64)>, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT state, version FROM case_intake WHERE case_id = ?1", [case_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Save the new state if nobody else saved one since `expected` (0 = none yet).
pub fn save_state(tx: &Tx, case_id: &str, state: &str, expected: i64, at: &str) -> Result<i64, StoreError> {
    let n = if expected == 0 {
        tx.conn().execute(
            "INSERT INTO case_intake (case_id, state, version, updated_at) VALUES (?1, ?2, 1, ?3) ON CONFLICT(case_id) DO NOTHING",
            params![case_id, state, at],
        )?
    } else {
        tx.conn().execute(
            "UPDATE case_intake SET state = ?2, version = version + 1, updated_at = ?3 WHERE case_id = ?1 AND version = ?4",
            params![case_id, state, at, expected],
        )?
    };
    if n == 0 {
        return Err(StoreError::Conflict("another message on this case was answered meanwhile; send it again".into()));
    }
    Ok(expected + 1)
}

pub fn add_message(
    tx: &Tx,
    case_id: &str,
    at: &str,
    sender: &str,
    text: &str,
    meta: Option<&serde_json::Value>,
) -> Result<i64, StoreError> {
    tx.conn().execute(
        "INSERT INTO messages (case_id, at, sender, text, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![case_id, at, sender, text, meta.map(|m| m.to_string())],
    )?;
    Ok(tx.conn().last_insert_rowid())
}

pub fn messages(tx: &Tx, case_id: &str) -> Result<Vec<Message>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT id, at, sender, text, meta FROM messages WHERE case_id = ?1 ORDER BY id")?;
    let v = st
        .query_map([case_id], |r| {
            let meta: Option<String> = r.get(4)?;
            Ok(Message {
                id: r.get(0)?,
                at: r.get(1)?,
                sender: r.get(2)?,
                text: r.get(3)?,
                meta: meta.and_then(|m| serde_json::from_str(&m).ok()),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// One finding as the `findings` table stores it (vocabulary values as text).
pub struct FindingRow<'a> {
    pub part: &'a str,
    pub position: Option<&'a str>,
    pub damage_type: &'a str,
    pub length_cm: Option<f64>,
    pub primer_visible: Option<bool>,
    pub occurs_when: Option<&'a str>,
}

/// Replace the customer-reported findings of a case (they are derived from the conversation). A
/// finding a person has reviewed is kept as the person left it and is not added again.
pub fn replace_customer_findings(tx: &Tx, case_id: &str, rows: &[FindingRow], at: &str) -> Result<(), StoreError> {
    tx.conn().execute("DELETE FROM findings WHERE case_id = ?1 AND source = 'customer' AND review_status = 'pending'", [case_id])?;
    for f in rows {
        let reviewed: bool = tx.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM findings WHERE case_id = ?1 AND source = 'customer' AND review_status != 'pending'
                           AND part = ?2 AND position IS ?3 AND damage_type = ?4)",
            params![case_id, f.part, f.position, f.damage_type],
            |r| r.get(0),
        )?;
        if reviewed {
            continue;
        }
        tx.conn().execute(
            "INSERT INTO findings (id, case_id, source, part, position, damage_type, length_cm, primer_visible, occurs_when, created_at, updated_at)
             VALUES (?1, ?2, 'customer', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            params![crate::domain::new_id(), case_id, f.part, f.position, f.damage_type, f.length_cm, f.primer_visible, f.occurs_when, at],
        )?;
    }
    Ok(())
}

pub fn outbox(tx: &Tx, case_id: &str, version: i64, at: &str, body: &serde_json::Value) -> Result<(), StoreError> {
    super::outbox::append(tx, "intake", case_id, version, 1, at, &body.to_string())
}
