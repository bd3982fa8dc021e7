//! The audit log: one append-only row per write and per read of a customer's personal data.
//! Rows name who, what, which record, when and from which address — never the data itself.

use rusqlite::params;
use serde::Serialize;

use super::{StoreError, Tx};
use crate::domain::Actor;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub user_id: Option<i64>,
    pub username: String,
    pub role: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub client_addr: Option<String>,
    pub outcome: String,
}

pub fn record(tx: &Tx, actor: &Actor, action: &str, target_type: &str, target_id: Option<&str>, outcome: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO audit_log (at, user_id, username, role, action, target_type, target_id, client_addr, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            crate::domain::now(),
            actor.user_id,
            actor.username,
            actor.role.map(|r| r.as_str()),
            action,
            target_type,
            target_id,
            actor.client_addr,
            outcome
        ],
    )?;
    Ok(())
}

/// Newest first; `before` is the id cursor of the previous page.
pub fn list(tx: &Tx, target_id: Option<&str>, before: Option<i64>, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
    let mut st = tx.conn().prepare(
        "SELECT id, at, user_id, username, role, action, target_type, target_id, client_addr, outcome FROM audit_log
         WHERE (?1 IS NULL OR target_id = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = st
        .query_map(params![target_id, before, limit], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                user_id: r.get(2)?,
                username: r.get(3)?,
                role: r.get(4)?,
                action: r.get(5)?,
                target_type: r.get(6)?,
                target_id: r.get(7)?,
                client_addr: r.get(8)?,
                outcome: r.get(9)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
