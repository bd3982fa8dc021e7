//! Photo metadata rows. The files themselves live on disk named by SHA-256 (see `media`).

use rusqlite::{params, OptionalExtension, Row};

use super::{StoreError, Tx};
use crate::domain::Photo;

const COLS: &str = "id, case_id, sha256, media_type, width, height, bytes, shot, uploaded_by, uploaded_at";

fn row_photo(r: &Row) -> rusqlite::Result<Photo> {
    Ok(Photo {
        id: r.get(0)?,
        case_id: r.get(1)?,
        sha256: r.get(2)?,
        media_type: r.get(3)?,
        width: r.get(4)?,
        height: r.get(5)?,
        bytes: r.get(6)?,
        shot: r.get(7)?,
        uploaded_by: r.get(8)?,
        uploaded_at: r.get(9)?,
    })
}

pub fn insert(tx: &Tx, p: &Photo) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO photos ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![p.id, p.case_id, p.sha256, p.media_type, p.width, p.height, p.bytes, p.shot, p.uploaded_by, p.uploaded_at],
    )?;
    Ok(())
}

pub fn get(tx: &Tx, id: &str) -> Result<Option<Photo>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {COLS} FROM photos WHERE id = ?1"), [id], row_photo).optional()?)
}

pub fn of_case(tx: &Tx, case_id: &str) -> Result<Vec<Photo>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {COLS} FROM photos WHERE case_id = ?1 ORDER BY id"))?;
    let v = st.query_map([case_id], row_photo)?.collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn sha_in_use(tx: &Tx, sha: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM photos WHERE sha256 = ?1)", [sha], |r| r.get(0))?)
}

/// The oldest photo that has no analysis yet (the analysis worker's queue).
pub fn next_unanalysed(tx: &Tx) -> Result<Option<Photo>, StoreError> {
    let cols = COLS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ");
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {cols} FROM photos p LEFT JOIN photo_analysis a ON a.photo_id = p.id WHERE a.photo_id IS NULL ORDER BY p.id LIMIT 1"),
            [],
            row_photo,
        )
        .optional()?)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Analysis {
    pub photo_id: String,
    pub status: String,
    pub model: Option<String>,
    pub quality: Option<serde_json::Value>,
    pub detections: Option<serde_json::Value>,
    pub shot: Option<String>,
    pub error: Option<String>,
    pub analysed_at: String,
}

pub fn save_analysis(tx: &Tx, a: &Analysis) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT OR REPLACE INTO photo_analysis (photo_id, status, model, quality, detections, shot, error, analysed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            a.photo_id,
            a.status,
            a.model,
            a.quality.as_ref().map(|q| q.to_string()),
            a.detections.as_ref().map(|d| d.to_string()),
            a.shot,
            a.error,
            a.analysed_at
        ],
    )?;
    Ok(())
}

pub fn analysis(tx: &Tx, photo_id: &str) -> Result<Option<Analysis>, StoreError> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(tx
        .conn()
        .query_row(
            "SELECT photo_id, status, model, quality, detections, shot, error, analysed_at FROM photo_analysis WHERE photo_id = ?1",
            [photo_id],
            |r| {
                Ok(Analysis {
                    photo_id: r.get(0)?,
                    status: r.get(1)?,
                    model: r.get(2)?,
                    quality: json(r.get(3)?),
                    detections: json(r.get(4)?),
                    shot: r.get(5)?,
                    error: r.get(6)?,
                    analysed_at: r.get(7)?,
                })
            },
        )
        .optional()?)
}

/// Vision findings of a photo (damage classes of a dealer's model).
pub fn insert_vision_finding(
    tx: &Tx,
    case_id: &str,
    photo_id: &str,
    part: &str,
    damage: &str,
    length_cm: Option<f64>,
    confidence: f32,
    bbox: &[f32; 4],
    at: &str,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO findings (id, case_id, source, part, damage_type, length_cm, confidence, photo_id, bbox, created_at, updated_at)
         VALUES (?1, ?2, 'vision', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![crate::domain::new_id(), case_id, part, damage, length_cm, confidence, photo_id, serde_json::json!(bbox).to_string(), at],
    )?;
    Ok(())
}

/// Lengths the customer stated for damage of `part` on a case (intake findings), for comparison
/// with what a photo measures.
pub fn stated_lengths(tx: &Tx, case_id: &str, part: &str) -> Result<Vec<f64>, StoreError> {
    let mut st = tx.conn().prepare_cached(
        "SELECT length_cm FROM findings WHERE case_id = ?1 AND source = 'customer' AND part = ?2 AND length_cm IS NOT NULL
           AND review_status <> 'rejected'",
    )?;
    let v = st.query_map(params![case_id, part], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(v)
}
