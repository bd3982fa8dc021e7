//! Cases, their append-only timeline and the outbox rows that carry them to HQ.
//!
//! Every change to a case writes, in the same transaction: the case row (version + 1), one timeline
//! event, and one outbox row with the case's new state. So HQ can never see a state the store lost,
//! and the store can never commit a state HQ will not eventually get.

use super::outbox::{CaseEvent, Record};
use super::{parse_status, StoreError, Tx};
use crate::domain::case::Case;
use crate::domain::{Actor, CaseStatus, TimelineEntry};
use rusqlite::{params, OptionalExtension, Row};

const COLS: &str =
    "id, store_id, customer_id, vehicle_id, status, prior_status, summary, assigned_to, needs_review, created_at, updated_at, version";

fn row_case(r: &Row) -> rusqlite::Result<Case> {
    let status: String = r.get(4)?;
    Ok(Case {
        id: r.get(0)?,
        store_id: r.get(1)?,
        customer_id: r.get(2)?,
        vehicle_id: r.get(3)?,
        // An unknown status (a newer binary's) reads as escalated: a person looks, nothing moves.
        status: CaseStatus::parse(&status).unwrap_or(CaseStatus::Escalated),
        prior_status: parse_status(r.get(5)?),
        summary: r.get(6)?,
        assigned_to: r.get(7)?,
        needs_review: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        version: r.get(11)?,
    })
}

/// Filters for listing; all optional. `before` is the id of the last case of the previous page.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub customer_id: Option<String>,
    pub assigned_to: Option<i64>,
    pub needs_review: Option<bool>,
    pub before: Option<String>,
    pub limit: u32,
}

pub fn ensure_store(tx: &Tx, id: &str, name: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO stores (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET name = excluded.name",
        params![id, name, crate::domain::now()],
    )?;
    Ok(())
}

pub fn get(tx: &Tx, id: &str) -> Result<Option<Case>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {COLS} FROM cases WHERE id = ?1"), [id], row_case).optional()?)
}

pub fn list(tx: &Tx, f: &CaseFilter) -> Result<Vec<Case>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {COLS} FROM cases
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR customer_id = ?2) AND (?3 IS NULL OR assigned_to = ?3)
           AND (?4 IS NULL OR needs_review = ?4) AND (?5 IS NULL OR id < ?5)
         ORDER BY id DESC LIMIT ?6"
    ))?;
    let v = st
        .query_map(params![f.status.map(|s| s.as_str()), f.customer_id, f.assigned_to, f.needs_review, f.before, f.limit], row_case)?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn timeline(tx: &Tx, case_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
    let mut st = tx
        .conn()
        .prepare_cached("SELECT id, at, actor, kind, from_status, to_status, reason FROM case_events WHERE case_id = ?1 ORDER BY id")?;
    let v = st
        .query_map([case_id], |r| {
            Ok(TimelineEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                kind: r.get(3)?,
                from_status: parse_status(r.get(4)?),
                to_status: parse_status(r.get(5)?),
                reason: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Counts per status, for metrics and the manager's board.
pub fn count_by_status(tx: &Tx) -> Result<Vec<(String, i64)>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT status, COUNT(*) FROM cases GROUP BY status")?;
    let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Open cases flagged for a person (the number on the Today board).
pub fn count_needs_review(tx: &Tx) -> Result<i64, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT COUNT(*) FROM cases WHERE needs_review = 1 AND status NOT IN ('closed', 'cancelled')", [], |r| r.get(0))?)
}

/// A timeline event to append with a change.
pub struct Event<'a> {
    pub kind: &'a str,
    pub from: Option<CaseStatus>,
    pub to: Option<CaseStatus>,
    pub reason: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// An event that moves nothing (a note on the timeline).
    pub fn note(kind: &'a str, reason: &'a str) -> Event<'a> {
        Event { kind, from: None, to: None, reason: Some(reason) }
    }
}

pub fn insert(tx: &Tx, case: &Case, actor: &Actor, event: Event) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO cases ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            case.id,
            case.store_id,
            case.customer_id,
            case.vehicle_id,
            case.status.as_str(),
            case.prior_status.map(|s| s.as_str()),
            case.summary,
            case.assigned_to,
            case.needs_review,
            case.created_at,
            case.updated_at,
            case.version
        ],
    )?;
    append(tx, case, actor, event)
}

/// Persist a changed case (status, prior, assignment, review flag) with its event and outbox row.
/// `expected_version` guards against a lost update from a concurrent writer's stale read.
/// Put an event on a case's timeline that changes nothing but the case's version (and, with
/// `flag`, hands it to a person): finding reviews, measurements, photo assessments.
pub fn note(tx: &Tx, case_id: &str, actor: &Actor, at: &str, flag: bool, event: Event) -> Result<Case, StoreError> {
    let mut case = get(tx, case_id)?.ok_or(StoreError::NotFound("case"))?;
    let expected = case.version;
    case.version += 1;
    case.updated_at = at.to_string();
    case.needs_review |= flag;
    update(tx, &case, expected, actor, event)?;
    Ok(case)
}

pub fn update(tx: &Tx, case: &Case, expected_version: i64, actor: &Actor, event: Event) -> Result<(), StoreError> {
    let n = tx.conn().execute(
        "UPDATE cases SET status = ?2, prior_status = ?3, assigned_to = ?4, needs_review = ?5, updated_at = ?6, version = ?7
         WHERE id = ?1 AND version = ?8",
        params![
            case.id,
            case.status.as_str(),
            case.prior_status.map(|s| s.as_str()),
            case.assigned_to,
            case.needs_review,
            case.updated_at,
            case.version,
            expected_version
        ],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict("the case was changed meanwhile; reload and retry".into()));
    }
    append(tx, case, actor, event)
}

fn append(tx: &Tx, case: &Case, actor: &Actor, e: Event) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO case_events (case_id, at, actor_id, actor, kind, from_status, to_status, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            case.id,
            case.updated_at,
            actor.user_id,
            actor.username,
            e.kind,
            e.from.map(|s| s.as_str()),
            e.to.map(|s| s.as_str()),
            e.reason
        ],
    )?;
    let event = CaseEvent { kind: e.kind, actor: &actor.username, from: e.from, to: e.to, reason: e.reason };
    super::outbox::append(tx, &Record::Case { case, event }, &case.updated_at)
}
