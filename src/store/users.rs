//! Users and login sessions. Password hashes and token hashes never leave this module except to
//! `auth`, which verifies them.

use rusqlite::{params, OptionalExtension, Row};

use super::{StoreError, Tx};
use crate::domain::{Role, User};

const COLS: &str = "id, username, display_name, role, disabled, must_change_password, created_at";

fn row_user(r: &Row) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        // The CHECK constraint keeps roles valid; fall back to the least privileged one defensively.
        role: Role::parse(&role).unwrap_or(Role::HqAuditor),
        disabled: r.get(4)?,
        must_change_password: r.get(5)?,
        created_at: r.get(6)?,
    })
}

pub fn insert(tx: &Tx, username: &str, display_name: &str, role: Role, hash: &str, must_change: bool) -> Result<User, StoreError> {
    let now = crate::domain::now();
    let exists: bool = tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)", [username], |r| r.get(0))?;
    if exists {
        return Err(StoreError::Conflict(format!("user '{username}' already exists")));
    }
    tx.conn().execute(
        "INSERT INTO users (username, display_name, role, password_hash, must_change_password, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![username, display_name, role.as_str(), hash, must_change, now],
    )?;
    let id = tx.conn().last_insert_rowid();
    by_id(tx, id)?.ok_or(StoreError::NotFound("user"))
}

pub fn by_id(tx: &Tx, id: i64) -> Result<Option<User>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {COLS} FROM users WHERE id = ?1"), [id], row_user).optional()?)
}

/// The user and their password hash, for login.
pub fn credentials(tx: &Tx, username: &str) -> Result<Option<(User, String)>, StoreError> {
    Ok(tx
        .conn()
        .query_row(&format!("SELECT {COLS}, password_hash FROM users WHERE username = ?1"), [username], |r| Ok((row_user(r)?, r.get(7)?)))
        .optional()?)
}

pub fn list(tx: &Tx) -> Result<Vec<User>, StoreError> {
    let mut st = tx.conn().prepare(&format!("SELECT {COLS} FROM users ORDER BY id"))?;
    let v = st.query_map([], row_user)?.collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn count(tx: &Tx) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

/// Disable or enable; disabling also ends every session of that user.
pub fn set_disabled(tx: &Tx, id: i64, disabled: bool) -> Result<(), StoreError> {
    let n =
        tx.conn().execute("UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1", params![id, disabled, crate::domain::now()])?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    if disabled {
        tx.conn().execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    }
    Ok(())
}

/// New password hash; ends every session of that user (a reset must log out a thief).
pub fn set_password(tx: &Tx, id: i64, hash: &str, must_change: bool) -> Result<(), StoreError> {
    let n = tx.conn().execute(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, hash, must_change, crate::domain::now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    tx.conn().execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    Ok(())
}

pub fn insert_session(tx: &Tx, token_hash: &str, user_id: i64, expires_at: &str, addr: Option<&str>) -> Result<(), StoreError> {
    let now = crate::domain::now();
    // Housekeeping on the write path keeps the table small without a separate timer.
    tx.conn().execute("DELETE FROM sessions WHERE expires_at <= ?1", [&now])?;
    tx.conn().execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, client_addr) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, user_id, now, expires_at, addr],
    )?;
    Ok(())
}

/// The enabled user owning an unexpired session.
pub fn session_user(tx: &Tx, token_hash: &str, now: &str) -> Result<Option<User>, StoreError> {
    let cols = COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ");
    Ok(tx
        .conn()
        .query_row(
            &format!(
                "SELECT {cols} FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.disabled = 0"
            ),
            params![token_hash, now],
            row_user,
        )
        .optional()?)
}

pub fn delete_session(tx: &Tx, token_hash: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])? > 0)
}
