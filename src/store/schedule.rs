//! Customer approvals of estimate versions and the appointments they allow: rows, reads, and the
//! bookings that count against the bays. Capacity is decided by the caller inside the same write
//! transaction (the single writer makes check-then-insert atomic).

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::outbox::Record;
use super::{StoreError, Tx};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Approval {
    pub id: String,
    pub case_id: String,
    pub estimate_id: String,
    pub estimate_version: i64,
    pub approved_by: String,
    pub channel: String,
    pub has_signature: bool,
    pub lines_sha256: String,
    pub recorded_by: String,
    pub approved_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Appointment {
    pub id: String,
    pub case_id: String,
    pub bay: String,
    pub starts_at: String,
    pub ends_at: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub version: i64,
}

pub fn insert_approval(tx: &Tx, a: &Approval, signature_png: Option<&[u8]>, recorded_by_id: Option<i64>) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO approvals (id, case_id, estimate_id, estimate_version, approved_by, channel, signature_png, lines_sha256,
                                recorded_by, recorded_by_id, approved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            a.id,
            a.case_id,
            a.estimate_id,
            a.estimate_version,
            a.approved_by,
            a.channel,
            signature_png,
            a.lines_sha256,
            a.recorded_by,
            recorded_by_id,
            a.approved_at
        ],
    )?;
    super::outbox::append(tx, &Record::Approval { body: a }, &a.approved_at)
}

/// The approval of one estimate, if the customer gave it.
pub fn approval_of(tx: &Tx, estimate_id: &str) -> Result<Option<Approval>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT id, case_id, estimate_id, estimate_version, approved_by, channel, signature_png IS NOT NULL, lines_sha256,
                    recorded_by, approved_at FROM approvals WHERE estimate_id = ?1",
            [estimate_id],
            |r| {
                Ok(Approval {
                    id: r.get(0)?,
                    case_id: r.get(1)?,
                    estimate_id: r.get(2)?,
                    estimate_version: r.get(3)?,
                    approved_by: r.get(4)?,
                    channel: r.get(5)?,
                    has_signature: r.get(6)?,
                    lines_sha256: r.get(7)?,
                    recorded_by: r.get(8)?,
                    approved_at: r.get(9)?,
                })
            },
        )
        .optional()?)
}

const APPT_COLS: &str = "id, case_id, bay, starts_at, ends_at, status, created_at, COALESCE(updated_at, created_at), version";

fn appt(r: &Row) -> rusqlite::Result<Appointment> {
    Ok(Appointment {
        id: r.get(0)?,
        case_id: r.get(1)?,
        bay: r.get(2)?,
        starts_at: r.get(3)?,
        ends_at: r.get(4)?,
        status: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        version: r.get(8)?,
    })
}

/// The case's booked appointment (at most one).
pub fn booked_of(tx: &Tx, case_id: &str) -> Result<Option<Appointment>, StoreError> {
    Ok(tx
        .conn()
        .query_row(&format!("SELECT {APPT_COLS} FROM appointments WHERE case_id = ?1 AND status = 'booked'"), [case_id], appt)
        .optional()?)
}

/// The case's latest appointment, booked or not.
pub fn latest_of(tx: &Tx, case_id: &str) -> Result<Option<Appointment>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {APPT_COLS} FROM appointments WHERE case_id = ?1 ORDER BY (status = 'booked') DESC, COALESCE(updated_at, created_at) DESC LIMIT 1"),
            [case_id],
            appt,
        )
        .optional()?)
}

/// Booked appointments that start in [from, to), in time order (the day's board).
pub fn booked_starting(tx: &Tx, from: &str, to: &str) -> Result<Vec<Appointment>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {APPT_COLS} FROM appointments WHERE status = 'booked' AND starts_at >= ?1 AND starts_at < ?2 ORDER BY starts_at, bay"
    ))?;
    let v = st.query_map([from, to], appt)?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Booked work that has not ended yet: (start, end), local times as stored.
pub fn bookings_after(tx: &Tx, from: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT starts_at, ends_at FROM appointments WHERE status = 'booked' AND ends_at > ?1")?;
    let v = st.query_map([from], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Booked appointments overlapping [start, end) (local times as stored), other than `except_case`'s.
pub fn overlapping(tx: &Tx, start: &str, end: &str, except_case: &str) -> Result<Vec<Appointment>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {APPT_COLS} FROM appointments WHERE status = 'booked' AND starts_at < ?2 AND ends_at > ?1 AND case_id <> ?3"
    ))?;
    let v = st.query_map(params![start, end, except_case], appt)?.collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn insert_appointment(tx: &Tx, a: &Appointment) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO appointments (id, case_id, bay, starts_at, ends_at, status, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![a.id, a.case_id, a.bay, a.starts_at, a.ends_at, a.status, a.created_at, a.updated_at, a.version],
    )?;
    super::outbox::append(tx, &Record::Appointment { body: a }, &a.updated_at)
}

/// Save a moved or cancelled appointment (version + 1 is the caller's).
pub fn update_appointment(tx: &Tx, a: &Appointment) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE appointments SET bay = ?2, starts_at = ?3, ends_at = ?4, status = ?5, updated_at = ?6, version = ?7 WHERE id = ?1",
        params![a.id, a.bay, a.starts_at, a.ends_at, a.status, a.updated_at, a.version],
    )?;
    super::outbox::append(tx, &Record::Appointment { body: a }, &a.updated_at)
}
