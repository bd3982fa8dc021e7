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
