//! A customer's personal data as one set: what an export holds, what an erasure blanks, what the
//! retention job finds due, legal holds, and the daily jobs' run records. SQL only: who may do it
//! and when is `protection`'s business.
//!
//! Invariants:
//! - An erasure puts a `customer_erased` event on each case's timeline and blanks every free-text field that can hold a customer's words or identity
//!   (tombstone `[erased]` or NULL), marks the photos removed and appends one `erasure` outbox
//!   record naming every record HQ holds for those cases, in the caller's transaction.
//! - Nothing of a case on legal hold is ever due for retention.

use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{StoreError, Tx};
use crate::domain::{Actor, Photo};

pub const TOMBSTONE: &str = "[erased]";

/// One record HQ holds, by kind and id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordRef {
    pub record_type: String,
    pub record_id: String,
}

/// What HQ is told when a customer's data is erased here (no personal data: ids only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Erasure {
    pub id: String,
    pub customer_id: String,
    /// "request" (the customer asked) or "retention" (the data outlived its class).
    pub reason: String,
    pub case_ids: Vec<String>,
    pub records: Vec<RecordRef>,
    pub at: String,
}

/// A customer as the manager's privacy screen lists them.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerEntry {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub plates: Vec<String>,
    pub cases: Vec<CaseEntry>,
    pub erased_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseEntry {
    pub id: String,
    pub status: String,
    pub legal_hold: Option<String>,
    pub updated_at: String,
}

fn ids(tx: &Tx, sql: &str, p: impl rusqlite::Params) -> Result<Vec<String>, StoreError> {
    let mut st = tx.conn().prepare(sql)?;
    let v = st.query_map(p, |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Customers whose id or phone is `q`, or who own a vehicle with that plate or VIN (exact, so a
/// request names one person, not a search result).
pub fn find_customers(tx: &Tx, q: &str) -> Result<Vec<CustomerEntry>, StoreError> {
    let q = q.trim();
    let found = ids(
        tx,
        "SELECT id FROM customers WHERE id = ?1 OR phone = ?1
         UNION SELECT customer_id FROM vehicles WHERE upper(plate) = upper(?1) OR upper(vin) = upper(?1)
         ORDER BY 1 LIMIT 20",
        [q],
    )?;
    found.iter().filter_map(|id| customer_entry(tx, id).transpose()).collect()
}

pub fn customer_entry(tx: &Tx, id: &str) -> Result<Option<CustomerEntry>, StoreError> {
    let Some((name, phone, erased_at)) = tx
        .conn()
        .query_row("SELECT name, phone, erased_at FROM customers WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
    else {
        return Ok(None);
    };
    let plates = ids(tx, "SELECT plate FROM vehicles WHERE customer_id = ?1 AND plate IS NOT NULL ORDER BY plate", [id])?;
    let mut st = tx.conn().prepare("SELECT id, status, legal_hold, updated_at FROM cases WHERE customer_id = ?1 ORDER BY created_at")?;
    let cases = st
        .query_map([id], |r| Ok(CaseEntry { id: r.get(0)?, status: r.get(1)?, legal_hold: r.get(2)?, updated_at: r.get(3)? }))?
        .collect::<Result<_, _>>()?;
    Ok(Some(CustomerEntry { id: id.to_string(), name, phone, plates, cases, erased_at }))
}

pub fn case_ids_of(tx: &Tx, customer_id: &str) -> Result<Vec<String>, StoreError> {
    ids(tx, "SELECT id FROM cases WHERE customer_id = ?1 ORDER BY created_at", [customer_id])
}

/// Photos of a customer's cases whose files are still kept.
pub fn photos_of_customer(tx: &Tx, customer_id: &str) -> Result<Vec<Photo>, StoreError> {
    let mut out = Vec::new();
    for c in case_ids_of(tx, customer_id)? {
        out.extend(super::photos::of_case(tx, &c)?.into_iter().filter(|p| !photo_removed(tx, &p.id).unwrap_or(true)));
    }
    Ok(out)
}

pub fn photo_removed(tx: &Tx, photo_id: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row("SELECT removed_at IS NOT NULL FROM photos WHERE id = ?1", [photo_id], |r| r.get(0))?)
}

/// Every photo whose file is still kept (backups copy these).
pub fn kept_photos(tx: &Tx) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = tx.conn().prepare("SELECT case_id, sha256 FROM photos WHERE removed_at IS NULL GROUP BY case_id, sha256")?;
    let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(v)
}

fn rows_json(tx: &Tx, sql: &str, p: impl rusqlite::Params) -> Result<Vec<serde_json::Value>, StoreError> {
    use base64::Engine;
    let mut st = tx.conn().prepare(sql)?;
    let names: Vec<String> = st.column_names().into_iter().map(String::from).collect();
    let mut rows = st.query(p)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut o = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = match r.get_ref(i)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(x) => x.into(),
                ValueRef::Real(x) => x.into(),
                ValueRef::Text(t) => {
                    let s = String::from_utf8_lossy(t).into_owned();
                    // JSON columns stay JSON in the export.
                    if (s.starts_with('{') || s.starts_with('[')) && serde_json::from_str::<serde_json::Value>(&s).is_ok() {
                        serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s))
                    } else {
                        serde_json::Value::String(s)
                    }
                }
                ValueRef::Blob(b) => serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
            };
            o.insert(n.clone(), v);
        }
        out.push(serde_json::Value::Object(o));
    }
    Ok(out)
}

/// Everything held about one customer, as JSON (the export's `customer.json`).
pub fn dump(tx: &Tx, customer_id: &str) -> Result<serde_json::Value, StoreError> {
    let per_case = |table: &str| {
        rows_json(tx, &format!("SELECT * FROM {table} WHERE case_id IN (SELECT id FROM cases WHERE customer_id = ?1)"), [customer_id])
    };
    Ok(serde_json::json!({
        "customer": rows_json(tx, "SELECT * FROM customers WHERE id = ?1", [customer_id])?,
        "vehicles": rows_json(tx, "SELECT * FROM vehicles WHERE customer_id = ?1", [customer_id])?,
        "cases": rows_json(tx, "SELECT * FROM cases WHERE customer_id = ?1", [customer_id])?,
        "timeline": per_case("case_events")?,
        "messages": per_case("messages")?,
        "findings": per_case("findings")?,
        "estimates": per_case("estimates")?,
        "approvals": per_case("approvals")?,
        "appointments": per_case("appointments")?,
        "photos": per_case("photos")?,
        "work_orders": per_case("work_orders")?,
        "baseline_marks": per_case("baseline_marks")?,
        "qc_reports": rows_json(tx, "SELECT id, case_id, version, passed, body, pdf_sha256, inspector, signed_at FROM qc_reports WHERE case_id IN (SELECT id FROM cases WHERE customer_id = ?1)", [customer_id])?,
        "follow_ups": rows_json(tx, "SELECT id, case_id, delivered_at, due_at, status, attempts, last_attempt_at, closed_at FROM follow_ups WHERE customer_id = ?1", [customer_id])?,
        "consents": rows_json(tx, "SELECT id, case_id, channel, granted, text_version, recorded_at, revoked_at FROM consents WHERE customer_id = ?1", [customer_id])?,
        "surveys": rows_json(tx, "SELECT id, case_id, channel, csat, nps, fixed, comment, category, summary, answered_at FROM surveys WHERE case_id IN (SELECT id FROM cases WHERE customer_id = ?1)", [customer_id])?,
        "follow_up_alerts": rows_json(tx, "SELECT id, case_id, kind, reasons, category, summary, raised_at, resolved_at, resolution FROM follow_up_alerts WHERE case_id IN (SELECT id FROM cases WHERE customer_id = ?1)", [customer_id])?,
    }))
}

/// Blank the customer's personal data and tell HQ (see the module's invariants). The caller
/// destroys the case keys and files after the commit.
pub fn erase(tx: &Tx, actor: &Actor, customer_id: &str, reason: &str, at: &str) -> Result<Erasure, StoreError> {
    let case_ids = case_ids_of(tx, customer_id)?;
    let c = tx.conn();
    let n = c.execute(
        "UPDATE customers SET name = ?2, phone = NULL, email = NULL, erased_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![customer_id, TOMBSTONE, at],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound("customer"));
    }
    c.execute("UPDATE vehicles SET vin = NULL, plate = NULL, updated_at = ?2 WHERE customer_id = ?1", params![customer_id, at])?;
    let mut records = Vec::new();
    for case in &case_ids {
        c.execute("UPDATE cases SET summary = ?2, updated_at = ?3 WHERE id = ?1", params![case, TOMBSTONE, at])?;
        c.execute("UPDATE messages SET text = ?2, meta = NULL WHERE case_id = ?1", params![case, TOMBSTONE])?;
        c.execute("UPDATE case_events SET reason = ?2 WHERE case_id = ?1 AND reason IS NOT NULL", params![case, TOMBSTONE])?;
        c.execute("DELETE FROM case_intake WHERE case_id = ?1", [case])?;
        c.execute("UPDATE findings SET note = NULL, facts = NULL WHERE case_id = ?1", [case])?;
        c.execute("UPDATE approvals SET approved_by = ?2, signature_png = NULL WHERE case_id = ?1", params![case, TOMBSTONE])?;
        // The customer's words and what was read from them; the scores stay for the KPIs.
        c.execute("UPDATE surveys SET comment = NULL, summary = NULL WHERE case_id = ?1", [case])?;
        c.execute("UPDATE follow_up_alerts SET summary = '', proposed = NULL, resolution = NULL WHERE case_id = ?1", [case])?;
        c.execute("UPDATE follow_ups SET last_attempt_note = NULL WHERE case_id = ?1", [case])?;
        // Nobody contacts an erased customer again.
        c.execute(
            "UPDATE consents SET revoked_at = ?2, revoked_by = 'erasure' WHERE case_id = ?1 AND revoked_at IS NULL",
            params![case, at],
        )?;
        // The workshop: the baseline signer and signature, the advisor's notes, and the QC report
        // PDFs (they print the plate and the photos); the reports' data (no identity) stays.
        c.execute("UPDATE baseline_signoffs SET signed_by = ?2, signature_png = NULL WHERE case_id = ?1", params![case, TOMBSTONE])?;
        c.execute("UPDATE baseline_marks SET note = NULL WHERE case_id = ?1", [case])?;
        c.execute("UPDATE qc_reports SET pdf = NULL WHERE case_id = ?1", [case])?;
        c.execute(
            "UPDATE photos SET removed_at = ?2, removed_reason = 'erased' WHERE case_id = ?1 AND removed_at IS NULL",
            params![case, at],
        )?;
        // The case's own timeline says so (and HQ's case record, removed by the erasure below).
        super::cases::note(
            tx,
            case,
            actor,
            at,
            false,
            super::cases::Event { kind: "customer_erased", from: None, to: None, reason: None },
        )?;
        records.push(RecordRef { record_type: "case".into(), record_id: case.clone() });
        records.push(RecordRef { record_type: "intake".into(), record_id: case.clone() });
        for (table, kind) in [
            ("findings", "finding"),
            ("estimates", "estimate"),
            ("approvals", "approval"),
            ("appointments", "appointment"),
            ("work_orders", "work_order"),
            ("workshop_flags", "workshop_flag"),
            ("qc_reports", "qc_report"),
            ("follow_ups", "follow_up"),
            ("surveys", "survey"),
            ("follow_up_alerts", "follow_up_alert"),
        ] {
            for id in ids(tx, &format!("SELECT id FROM {table} WHERE case_id = ?1"), [case])? {
                records.push(RecordRef { record_type: kind.into(), record_id: id });
            }
        }
    }
    let e = Erasure {
        id: crate::domain::new_id(),
        customer_id: customer_id.to_string(),
        reason: reason.to_string(),
        case_ids,
        records,
        at: at.to_string(),
    };
    super::outbox::append(tx, &super::outbox::Record::Erasure { body: &e }, at)?;
    Ok(e)
}

pub fn set_legal_hold(tx: &Tx, case_id: &str, reason: Option<&str>) -> Result<(), StoreError> {
    let n = tx.conn().execute("UPDATE cases SET legal_hold = ?2 WHERE id = ?1", params![case_id, reason])?;
    if n == 0 {
        return Err(StoreError::NotFound("case"));
    }
    Ok(())
}

pub fn customer_on_hold(tx: &Tx, customer_id: &str) -> Result<bool, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT EXISTS(SELECT 1 FROM cases WHERE customer_id = ?1 AND legal_hold IS NOT NULL)", [customer_id], |r| r.get(0))?)
}

const FINISHED: &str = "('closed','cancelled')";

/// Photos of finished cases last changed before `cutoff`, not on hold, still kept.
pub fn photos_due(tx: &Tx, cutoff: &str) -> Result<Vec<Photo>, StoreError> {
    let ids = ids(
        tx,
        &format!(
            "SELECT p.id FROM photos p JOIN cases c ON c.id = p.case_id
             WHERE p.removed_at IS NULL AND c.status IN {FINISHED} AND c.updated_at < ?1 AND c.legal_hold IS NULL ORDER BY p.id"
        ),
        [cutoff],
    )?;
    ids.iter().filter_map(|id| super::photos::get(tx, id).transpose()).collect()
}

pub fn mark_photo_removed(tx: &Tx, photo_id: &str, reason: &str, at: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE photos SET removed_at = ?2, removed_reason = ?3 WHERE id = ?1 AND removed_at IS NULL",
        params![photo_id, at, reason],
    )?;
    Ok(())
}

/// Customers not yet erased whose every case is finished and untouched since `cutoff`, none on hold.
pub fn customers_due(tx: &Tx, cutoff: &str) -> Result<Vec<String>, StoreError> {
    ids(
        tx,
        &format!(
            "SELECT cu.id FROM customers cu WHERE cu.erased_at IS NULL
               AND EXISTS (SELECT 1 FROM cases c WHERE c.customer_id = cu.id)
               AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.customer_id = cu.id
                               AND (c.status NOT IN {FINISHED} OR c.updated_at >= ?1 OR c.legal_hold IS NOT NULL))
             ORDER BY cu.id"
        ),
        [cutoff],
    )
}

/// Blank survey answers older than `cutoff` (the score stays for the KPIs; the words go).
pub fn expire_survey_answers(tx: &Tx, cutoff: &str) -> Result<usize, StoreError> {
    Ok(tx.conn().execute(
        "UPDATE surveys SET comment = NULL WHERE answered_at < ?1 AND comment IS NOT NULL
           AND case_id NOT IN (SELECT id FROM cases WHERE legal_hold IS NOT NULL)",
        [cutoff],
    )?)
}

pub fn expire_audit(tx: &Tx, cutoff: &str) -> Result<usize, StoreError> {
    Ok(tx.conn().execute("DELETE FROM audit_log WHERE at < ?1", [cutoff])?)
}

/// A daily job's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    pub at: String,
    pub ok: bool,
    pub report: String,
}

pub fn record_run(tx: &Tx, job: &str, ok: bool, report: &str, at: &str) -> Result<(), StoreError> {
    tx.conn().execute("INSERT INTO maintenance_runs (job, at, ok, report) VALUES (?1, ?2, ?3, ?4)", params![job, at, ok, report])?;
    Ok(())
}

/// The latest run of `job`; with `ok_only`, the latest successful one.
pub fn last_run(tx: &Tx, job: &str, ok_only: bool) -> Result<Option<Run>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT at, ok, report FROM maintenance_runs WHERE job = ?1 AND (ok = 1 OR ?2 = 0) ORDER BY at DESC, id DESC LIMIT 1",
            params![job, ok_only],
            |r| Ok(Run { at: r.get(0)?, ok: r.get(1)?, report: r.get(2)? }),
        )
        .optional()?)
}

/// Customers erased but whose case keys may still exist (a crash between the commit and the key
/// destruction): the start-up finishes the job.
pub fn erased_case_ids(tx: &Tx) -> Result<Vec<String>, StoreError> {
    ids(tx, "SELECT c.id FROM cases c JOIN customers cu ON cu.id = c.customer_id WHERE cu.erased_at IS NOT NULL", [])
}
