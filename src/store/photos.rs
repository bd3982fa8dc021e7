//! Photo metadata rows. The files themselves live on disk encrypted per case (see `files`).

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

/// Whether a row of this case still uses the picture (each case has its own encrypted copy).
pub fn sha_in_case(tx: &Tx, case_id: &str, sha: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM photos WHERE case_id = ?1 AND sha256 = ?2)", [case_id, sha], |r| r.get(0))?)
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
    /// The detector had a face or person class: its boxes can drive the privacy blur.
    pub privacy_capable: bool,
}

pub fn save_analysis(tx: &Tx, a: &Analysis) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT OR REPLACE INTO photo_analysis (photo_id, status, model, quality, detections, shot, error, analysed_at, privacy_capable)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            a.photo_id,
            a.status,
            a.model,
            a.quality.as_ref().map(|q| q.to_string()),
            a.detections.as_ref().map(|d| d.to_string()),
            a.shot,
            a.error,
            a.analysed_at,
            a.privacy_capable
        ],
    )?;
    Ok(())
}

pub fn analysis(tx: &Tx, photo_id: &str) -> Result<Option<Analysis>, StoreError> {
    // A stored column that does not parse is an error (never read as "no detections").
    let json = |i: usize, s: Option<String>| -> rusqlite::Result<Option<serde_json::Value>> {
        s.map(|s| {
            serde_json::from_str(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
        })
        .transpose()
    };
    tx.conn()
        .query_row(
            "SELECT photo_id, status, model, quality, detections, shot, error, analysed_at, privacy_capable FROM photo_analysis WHERE photo_id = ?1",
            [photo_id],
            |r| {
                Ok(Analysis {
                    photo_id: r.get(0)?,
                    status: r.get(1)?,
                    model: r.get(2)?,
                    quality: json(3, r.get(3)?)?,
                    detections: json(4, r.get(4)?)?,
                    shot: r.get(5)?,
                    error: r.get(6)?,
                    analysed_at: r.get(7)?,
                    privacy_capable: r.get(8)?,
                })
            },
        )
        .optional()
        .map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner) => StoreError::Corrupt(format!("the analysis of photo {photo_id}: {inner}")),
            e => e.into(),
        })
}

/// Photos of a case whose analysis passed the quality gate.
pub fn passed_quality(tx: &Tx, case_id: &str) -> Result<u32, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COUNT(*) FROM photos p JOIN photo_analysis a ON a.photo_id = p.id
         WHERE p.case_id = ?1 AND a.status = 'done' AND json_extract(a.quality, '$.ok') = 1",
        [case_id],
        |r| r.get(0),
    )?)
}

/// An advisor's waiver of the photos: (reason, who, when).
pub fn waiver(tx: &Tx, case_id: &str) -> Result<Option<(String, String, String)>, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT reason, waived_by, at FROM photo_waivers WHERE case_id = ?1", [case_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

pub fn save_waiver(tx: &Tx, case_id: &str, reason: &str, by: &str, at: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO photo_waivers (case_id, reason, waived_by, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(case_id) DO UPDATE SET reason = excluded.reason, waived_by = excluded.waived_by, at = excluded.at",
        params![case_id, reason, by, at],
    )?;
    Ok(())
}

/// Lengths the customer stated for damage of `part` on a case (intake findings), for comparison
/// with what a photo measures.
pub fn stated_lengths(tx: &Tx, case_id: &str, part: &str) -> Result<Vec<f64>, StoreError> {
    let mut st = tx.conn().prepare_cached(
        "SELECT length_cm FROM findings WHERE case_id = ?1 AND part = ?2 AND length_cm IS NOT NULL AND review_status <> 'rejected'
           AND EXISTS (SELECT 1 FROM json_each(findings.sources) WHERE value = 'customer')",
    )?;
    let v = st.query_map(params![case_id, part], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(v)
}
