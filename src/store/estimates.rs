//! Estimates (versioned per case) with their line items. Money is stored in fen.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{StoreError, Tx};

pub struct NewEstimate<'a> {
    pub id: &'a str,
    pub case_id: &'a str,
    pub total_fen: i64,
    pub min_fen: Option<i64>,
    pub max_fen: Option<i64>,
    pub duration_days: f64,
    pub created_by: Option<i64>,
    pub at: &'a str,
    pub plan_json: &'a str,
    pub explanation: &'a str,
    pub explanation_from_llm: bool,
}

pub struct Item<'a> {
    pub kind: &'a str,
    pub code: &'a str,
    pub name_zh: &'a str,
    pub name_en: &'a str,
    pub hours: Option<f64>,
    pub rate_fen: Option<i64>,
    pub qty: Option<f64>,
    pub unit_price_fen: Option<i64>,
    pub amount_fen: i64,
    pub part_origin: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredEstimate {
    pub id: String,
    pub case_id: String,
    pub version: i64,
    pub total_fen: i64,
    pub created_at: String,
    pub plan: serde_json::Value,
    pub explanation: String,
    pub explanation_from_llm: bool,
    pub items: i64,
    /// `offered`, or `approved` once the customer said yes (derived from `approvals`, the one record).
    pub status: String,
}

/// The model's checked wording for an estimate; false when that estimate is gone.
pub fn set_explanation(tx: &Tx, estimate_id: &str, text: &str) -> Result<bool, StoreError> {
    let n =
        tx.conn().execute("UPDATE estimates SET explanation = ?2, explanation_from_llm = 1 WHERE id = ?1", params![estimate_id, text])?;
    Ok(n == 1)
}

/// Insert the next version for the case; returns it.
pub fn insert(tx: &Tx, e: &NewEstimate, items: &[Item]) -> Result<i64, StoreError> {
    let version: i64 =
        tx.conn().query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM estimates WHERE case_id = ?1", [e.case_id], |r| r.get(0))?;
    tx.conn().execute(
        "INSERT INTO estimates (id, case_id, version, currency, total_fen, min_fen, max_fen, duration_days, status, created_by, created_at, plan, explanation, explanation_from_llm)
         VALUES (?1, ?2, ?3, 'CNY', ?4, ?5, ?6, ?7, 'draft', ?8, ?9, ?10, ?11, ?12)",
        params![e.id, e.case_id, version, e.total_fen, e.min_fen, e.max_fen, e.duration_days, e.created_by, e.at, e.plan_json, e.explanation, e.explanation_from_llm],
    )?;
    for i in items {
        tx.conn().execute(
            "INSERT INTO estimate_items (estimate_id, kind, code, name_zh, name_en, hours, rate_fen, qty, unit_price_fen, amount_fen, part_origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![e.id, i.kind, i.code, i.name_zh, i.name_en, i.hours, i.rate_fen, i.qty, i.unit_price_fen, i.amount_fen, i.part_origin],
        )?;
    }
    super::outbox::append(tx, &super::outbox::Record::Estimate { id: e.id, version, plan_json: e.plan_json }, e.at)?;
    Ok(version)
}

/// The latest estimate version of a case: (id, version), if any.
pub fn latest_id(tx: &Tx, case_id: &str) -> Result<Option<(String, i64)>, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT id, version FROM estimates WHERE case_id = ?1 ORDER BY version DESC LIMIT 1", [case_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// SHA-256 over the priced lines and the total of one estimate, in a fixed text form: what an
/// approval certifies. Any change of a line, a price or the total changes it.
pub fn lines_sha256(tx: &Tx, estimate_id: &str) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let total: i64 = tx.conn().query_row("SELECT total_fen FROM estimates WHERE id = ?1", [estimate_id], |r| r.get(0))?;
    h.update(format!("total_fen={total}\n"));
    let mut st = tx.conn().prepare_cached(
        "SELECT kind, code, hours, rate_fen, qty, unit_price_fen, amount_fen, COALESCE(part_origin, '') FROM estimate_items
         WHERE estimate_id = ?1 ORDER BY id",
    )?;
    let mut rows = st.query([estimate_id])?;
    while let Some(r) = rows.next()? {
        let line = format!(
            "{}|{}|{:?}|{:?}|{:?}|{:?}|{}|{}\n",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<f64>>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<f64>>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, String>(7)?
        );
        h.update(line);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn latest(tx: &Tx, case_id: &str) -> Result<Option<StoredEstimate>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT e.id, e.case_id, e.version, e.total_fen, e.created_at, e.plan, e.explanation, e.explanation_from_llm,
                    (SELECT COUNT(*) FROM estimate_items i WHERE i.estimate_id = e.id),
                    CASE WHEN EXISTS (SELECT 1 FROM approvals a WHERE a.estimate_id = e.id) THEN 'approved' ELSE 'offered' END
             FROM estimates e WHERE e.case_id = ?1 ORDER BY e.version DESC LIMIT 1",
            [case_id],
            |r| {
                let plan: Option<String> = r.get(5)?;
                let plan = match plan {
                    None => serde_json::Value::Null,
                    Some(p) => serde_json::from_str(&p)
                        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e)))?,
                };
                Ok(StoredEstimate {
                    id: r.get(0)?,
                    case_id: r.get(1)?,
                    version: r.get(2)?,
                    total_fen: r.get(3)?,
                    created_at: r.get(4)?,
                    plan,
                    explanation: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                    explanation_from_llm: r.get(7)?,
                    items: r.get(8)?,
                    status: r.get(9)?,
                })
            },
        )
        .optional()
        .map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner) => StoreError::Corrupt(format!("an estimate's plan: {inner}")),
            e => e.into(),
        })?)
}
