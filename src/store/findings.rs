//! Findings of a case (customer words, photos, advisors) and their review by a person.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{StoreError, Tx};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingRecord {
    pub id: String,
    pub case_id: String,
    pub source: String,
    pub part: String,
    pub position: Option<String>,
    pub damage_type: String,
    pub length_cm: Option<f64>,
    pub primer_visible: Option<bool>,
    pub occurs_when: Option<String>,
    pub confidence: Option<f64>,
    pub review_status: String,
    pub photo_id: Option<String>,
    pub bbox: Option<serde_json::Value>,
    pub updated_at: String,
}

const COLS: &str =
    "id, case_id, source, part, position, damage_type, length_cm, primer_visible, occurs_when, confidence, review_status, photo_id, bbox, updated_at";

fn row(r: &Row) -> rusqlite::Result<FindingRecord> {
    let bbox: Option<String> = r.get(12)?;
    Ok(FindingRecord {
        id: r.get(0)?,
        case_id: r.get(1)?,
        source: r.get(2)?,
        part: r.get(3)?,
        position: r.get(4)?,
        damage_type: r.get(5)?,
        length_cm: r.get(6)?,
        primer_visible: r.get(7)?,
        occurs_when: r.get(8)?,
        confidence: r.get(9)?,
        review_status: r.get(10)?,
        photo_id: r.get(11)?,
        bbox: bbox.and_then(|b| serde_json::from_str(&b).ok()),
        updated_at: r.get(13)?,
    })
}

pub fn of_case(tx: &Tx, case_id: &str) -> Result<Vec<FindingRecord>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {COLS} FROM findings WHERE case_id = ?1 ORDER BY created_at, id"))?;
    let v = st.query_map([case_id], row)?.collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn get(tx: &Tx, id: &str) -> Result<Option<FindingRecord>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {COLS} FROM findings WHERE id = ?1"), [id], row).optional()?)
}

/// Store a person's decision (and corrections) on a finding.
pub fn save_review(tx: &Tx, f: &FindingRecord) -> Result<(), StoreError> {
    // Each review is a new version, so HQ keeps the latest decision whatever order batches land in.
    let version: i64 = tx.conn().query_row(
        "UPDATE findings SET part = ?2, position = ?3, damage_type = ?4, length_cm = ?5, review_status = ?6, updated_at = ?7,
                version = version + 1 WHERE id = ?1 RETURNING version",
        params![f.id, f.part, f.position, f.damage_type, f.length_cm, f.review_status, f.updated_at],
        |r| r.get(0),
    )?;
    super::outbox::append(tx, "finding", &f.id, version, 1, &f.updated_at, &serde_json::to_string(f).unwrap_or_default())
}

/// Photo findings a person has reviewed, grouped by photo (ordered), for the retraining export.
/// Photos that still have a pending photo finding are left out: they are not ground truth yet.
pub fn reviewed_photo_findings(tx: &Tx) -> Result<Vec<FindingRecord>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {COLS} FROM findings f WHERE source = 'vision' AND photo_id IS NOT NULL AND bbox IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM findings p WHERE p.photo_id = f.photo_id AND p.source = 'vision' AND p.review_status = 'pending')
         ORDER BY photo_id, created_at, id"
    ))?;
    let v = st.query_map([], row)?.collect::<Result<_, _>>()?;
    Ok(v)
}
