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

/// The case's latest message, if any.
pub fn last_message(tx: &Tx, case_id: &str) -> Result<Option<Message>, StoreError> {
    Ok(messages(tx, case_id)?.pop())
}

/// Replace an assistant message's words (the model's rewording of a template question), only if
/// it still says `expected`; false when it changed meanwhile.
pub fn reword(tx: &Tx, id: i64, expected: &str, text: &str, meta: &serde_json::Value) -> Result<bool, StoreError> {
    let n = tx.conn().execute(
        "UPDATE messages SET text = ?3, meta = ?4 WHERE id = ?1 AND text = ?2 AND sender = 'assistant'",
        params![id, expected, text, meta.to_string()],
    )?;
    Ok(n == 1)
}

pub fn outbox(tx: &Tx, case_id: &str, version: i64, at: &str, body: &serde_json::Value) -> Result<(), StoreError> {
    super::outbox::append(tx, &super::outbox::Record::Intake { case_id, version, body }, at)
}
