//! The one list of what is wrong with a car: findings from the customer's words, from photos and
//! from advisors, each with every source that reported it, and a person's review of each.
//!
//! Invariants:
//! - A finding that several sources report is one row: a photo that confirms what the customer
//!   said adds `vision` to that row's sources (and its box and measurement), it does not add a row.
//! - A person's decision (confirmed / corrected / rejected) is never overwritten by a later
//!   extraction; customer findings the conversation no longer says are removed only while pending.
//! - Every change writes a new `version` and an outbox record.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::outbox::Record;
use super::{StoreError, Tx};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingRecord {
    pub id: String,
    pub case_id: String,
    /// Who first reported it (`customer`, `vision`, `advisor`).
    pub source: String,
    /// Everyone who reported it, in order.
    pub sources: Vec<String>,
    pub part: String,
    pub position: Option<String>,
    pub damage_type: String,
    /// The length the estimate uses (the customer's, or a photo's measurement that agrees with it).
    pub length_cm: Option<f64>,
    /// What a photo measured, kept beside the customer's words.
    pub measured_cm: Option<f64>,
    pub primer_visible: Option<bool>,
    pub occurs_when: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    pub confidence: Option<f64>,
    pub review_status: String,
    pub photo_id: Option<String>,
    pub bbox: Option<serde_json::Value>,
    pub note: Option<String>,
    pub updated_at: String,
}

impl FindingRecord {
    pub fn has_source(&self, s: &str) -> bool {
        self.sources.iter().any(|x| x == s)
    }
}

const COLS: &str = "id, case_id, source, sources, part, position, damage_type, length_cm, measured_cm, primer_visible, occurs_when, facts,
     confidence, review_status, photo_id, bbox, note, updated_at";

fn json_col<T: serde::de::DeserializeOwned + Default>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let s: Option<String> = r.get(i)?;
    match s {
        None => Ok(T::default()),
        Some(s) => {
            serde_json::from_str(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
        }
    }
}

fn row(r: &Row) -> rusqlite::Result<FindingRecord> {
    Ok(FindingRecord {
        id: r.get(0)?,
        case_id: r.get(1)?,
        source: r.get(2)?,
        sources: json_col(r, 3)?,
        part: r.get(4)?,
        position: r.get(5)?,
        damage_type: r.get(6)?,
        length_cm: r.get(7)?,
        measured_cm: r.get(8)?,
        primer_visible: r.get(9)?,
        occurs_when: r.get(10)?,
        facts: json_col(r, 11)?,
        confidence: r.get(12)?,
        review_status: r.get(13)?,
        photo_id: r.get(14)?,
        bbox: json_col::<Option<serde_json::Value>>(r, 15)?,
        note: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn corrupt(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => StoreError::Corrupt(format!("a finding's JSON column: {inner}")),
        e => e.into(),
    }
}

pub fn of_case(tx: &Tx, case_id: &str) -> Result<Vec<FindingRecord>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {COLS} FROM findings WHERE case_id = ?1 ORDER BY created_at, id"))?;
    let v = st.query_map([case_id], row)?.collect::<Result<_, _>>().map_err(corrupt)?;
    Ok(v)
}

pub fn get(tx: &Tx, id: &str) -> Result<Option<FindingRecord>, StoreError> {
    tx.conn().query_row(&format!("SELECT {COLS} FROM findings WHERE id = ?1"), [id], row).optional().map_err(corrupt)
}

fn encode<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode(format!("finding: {e}")))
}

/// Write every field of `f` (the row must exist), bump its version, and send it to HQ.
pub fn save(tx: &Tx, f: &FindingRecord) -> Result<(), StoreError> {
    let version: i64 = tx.conn().query_row(
        "UPDATE findings SET sources = ?2, part = ?3, position = ?4, damage_type = ?5, length_cm = ?6, measured_cm = ?7,
                primer_visible = ?8, occurs_when = ?9, facts = ?10, confidence = ?11, review_status = ?12, photo_id = ?13,
                bbox = ?14, note = ?15, updated_at = ?16, version = version + 1
         WHERE id = ?1 RETURNING version",
        params![
            f.id,
            encode(&f.sources)?,
            f.part,
            f.position,
            f.damage_type,
            f.length_cm,
            f.measured_cm,
            f.primer_visible,
            f.occurs_when,
            encode(&f.facts)?,
            f.confidence,
            f.review_status,
            f.photo_id,
            f.bbox.as_ref().map(|b| b.to_string()),
            f.note,
            f.updated_at
        ],
        |r| r.get(0),
    )?;
    super::outbox::append(tx, &Record::Finding { id: &f.id, version, body: f }, &f.updated_at)
}

/// Insert a new finding (its first source is `f.source`) and send it to HQ: the row is created
/// empty at version 0, then written by `save` like every later change (one path for all fields).
pub fn insert(tx: &Tx, f: &FindingRecord) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO findings (id, case_id, source, part, damage_type, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)",
        params![f.id, f.case_id, f.source, f.part, f.damage_type, f.updated_at],
    )?;
    save(tx, f)
}

/// Remove a finding that nobody reports any more (a pending customer finding the conversation no
/// longer says). HQ gets a tombstone: the record with review_status `withdrawn`.
pub fn withdraw(tx: &Tx, f: &FindingRecord, at: &str) -> Result<(), StoreError> {
    let version: i64 = tx.conn().query_row("SELECT version + 1 FROM findings WHERE id = ?1", [&f.id], |r| r.get(0))?;
    tx.conn().execute("DELETE FROM findings WHERE id = ?1", [&f.id])?;
    let gone = FindingRecord { review_status: "withdrawn".into(), updated_at: at.to_string(), ..f.clone() };
    super::outbox::append(tx, &Record::Finding { id: &f.id, version, body: &gone }, at)
}

/// Whether two findings name the same problem: same part and damage, and the same side where both
/// say one (a photo seldom knows the side).
pub fn same_problem(a: &FindingRecord, part: &str, position: Option<&str>, damage: &str) -> bool {
    a.part == part && a.damage_type == damage && (a.position.is_none() || position.is_none() || a.position.as_deref() == position)
}

/// Photo findings a person has reviewed, grouped by photo (ordered), for the retraining export.
/// Photos that still have a pending photo finding are left out: they are not ground truth yet.
pub fn reviewed_photo_findings(tx: &Tx) -> Result<Vec<FindingRecord>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {COLS} FROM findings f WHERE photo_id IS NOT NULL AND bbox IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM findings p WHERE p.photo_id = f.photo_id AND p.bbox IS NOT NULL AND p.review_status = 'pending')
         ORDER BY photo_id, created_at, id"
    ))?;
    let v = st.query_map([], row)?.collect::<Result<_, _>>().map_err(corrupt)?;
    Ok(v)
}
