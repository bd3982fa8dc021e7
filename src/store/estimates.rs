//! Estimates (versioned per case) with their line items, and the bookings the plan's free slots
//! must avoid. Money is stored in fen.

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
    super::outbox::append(tx, "estimate", e.id, version, 1, e.at, e.plan_json)?;
    Ok(version)
}

pub fn latest(tx: &Tx, case_id: &str) -> Result<Option<StoredEstimate>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT e.id, e.case_id, e.version, e.total_fen, e.created_at, e.plan, e.explanation, e.explanation_from_llm,
                    (SELECT COUNT(*) FROM estimate_items i WHERE i.estimate_id = e.id)
             FROM estimates e WHERE e.case_id = ?1 ORDER BY e.version DESC LIMIT 1",
            [case_id],
            |r| {
                let plan: Option<String> = r.get(5)?;
                Ok(StoredEstimate {
                    id: r.get(0)?,
                    case_id: r.get(1)?,
                    version: r.get(2)?,
                    total_fen: r.get(3)?,
                    created_at: r.get(4)?,
                    plan: plan.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or(serde_json::Value::Null),
                    explanation: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                    explanation_from_llm: r.get(7)?,
                    items: r.get(8)?,
                })
            },
        )
        .optional()?)
}

/// Booked work that has not ended yet: (start, end) as stored (RFC 3339 local times).
pub fn bookings_after(tx: &Tx, from: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = tx.conn().prepare_cached("SELECT starts_at, ends_at FROM appointments WHERE status = 'booked' AND ends_at > ?1")?;
    let v = st.query_map([from], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(v)
}
