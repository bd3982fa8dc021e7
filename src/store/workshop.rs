//! The workshop's rows: work orders and their lines, the labour clock, parts fitted, the
//! before/after shots, the advisor's baseline marks and the customer's baseline signature, the
//! flags people settle, and the QC reports.
//!
//! Invariants: at most one work order per case and one running clock entry per technician (unique
//! indexes, so a race cannot break them); a flag exists once per (case, kind, subject); every change
//! of a work order (its lines, clock or parts) bumps its version and appends the whole order to
//! the outbox, so HQ keeps the newest.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::outbox::{self, Record};
use super::{StoreError, Tx};
use crate::domain::workshop::Proposal;

#[derive(Debug, Clone, Serialize)]
pub struct WorkOrder {
    pub id: String,
    pub case_id: String,
    pub estimate_id: String,
    /// `open` (in the bay), `qc` (handed to QC), `done` (QC passed).
    pub status: String,
    pub bay: Option<String>,
    pub technicians: Vec<i64>,
    pub opened_by: String,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub id: String,
    pub work_order_id: String,
    pub seq: i64,
    /// `labour` or `part`.
    pub kind: String,
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub labour_class: Option<String>,
    pub standard_hours: Option<f64>,
    pub qty: i64,
    pub billed_origin: Option<String>,
    pub finding_id: Option<String>,
    pub part: Option<String>,
    pub damage: Option<String>,
    /// `todo`, `active`, `paused`, `done`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClockEntry {
    pub id: String,
    pub line_id: String,
    pub technician_id: i64,
    pub technician: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub corrected_by: Option<String>,
    pub correction_reason: Option<String>,
}

impl ClockEntry {
    /// Hours of this entry, up to `now` while it runs.
    pub fn hours(&self, now: &str) -> f64 {
        let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
        match (parse(&self.started_at), parse(self.ended_at.as_deref().unwrap_or(now))) {
            (Some(a), Some(b)) => ((b - a).num_milliseconds().max(0) as f64) / 3_600_000.0,
            _ => 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartFitted {
    pub id: String,
    pub work_order_id: String,
    pub line_id: Option<String>,
    pub photo_id: Option<String>,
    pub symbology: String,
    pub code_text: String,
    pub part_no: Option<String>,
    pub gtin: Option<String>,
    pub serial: Option<String>,
    pub origin: String,
    pub scanned_by: String,
    pub scanned_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shot {
    pub photo_id: String,
    pub case_id: String,
    /// `before`, `after`, `in_repair`, `part_label`.
    pub phase: String,
    pub checkpoint: Option<String>,
    pub taken_by: String,
    pub taken_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub id: String,
    pub case_id: String,
    pub checkpoint: String,
    pub part: String,
    pub damage: String,
    pub note: Option<String>,
    pub marked_by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signoff {
    pub case_id: String,
    pub signed_by: String,
    pub has_signature: bool,
    pub shots_sha256: String,
    pub recorded_by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    pub id: String,
    pub case_id: String,
    pub queue: String,
    pub kind: String,
    pub subject: String,
    pub detail: String,
    /// `open`, `confirmed`, `dismissed`, `escalated` (handed to a person).
    pub status: String,
    pub raised_at: String,
    pub settled_by: Option<String>,
    pub settled_at: Option<String>,
    pub note: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QcReport {
    pub id: String,
    pub case_id: String,
    pub version: i64,
    pub passed: bool,
    pub body: serde_json::Value,
    pub pdf_sha256: String,
    pub inspector: String,
    pub inspector_id: Option<i64>,
    pub signed_at: String,
}

/// A work order with everything HQ and the screens show of it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkOrderDoc {
    #[serde(flatten)]
    pub order: WorkOrder,
    pub lines: Vec<Line>,
    pub clock: Vec<ClockEntry>,
    pub parts: Vec<PartFitted>,
}

fn json_ids(s: String) -> Vec<i64> {
    serde_json::from_str(&s).unwrap_or_default()
}

const WO_COLS: &str = "id, case_id, estimate_id, status, bay, technicians, opened_by, opened_at, closed_at, version";

fn row_wo(r: &Row) -> rusqlite::Result<WorkOrder> {
    Ok(WorkOrder {
        id: r.get(0)?,
        case_id: r.get(1)?,
        estimate_id: r.get(2)?,
        status: r.get(3)?,
        bay: r.get(4)?,
        technicians: json_ids(r.get(5)?),
        opened_by: r.get(6)?,
        opened_at: r.get(7)?,
        closed_at: r.get(8)?,
        version: r.get(9)?,
    })
}

pub fn insert_work_order(tx: &Tx, w: &WorkOrder) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO work_orders ({WO_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            w.id,
            w.case_id,
            w.estimate_id,
            w.status,
            w.bay,
            serde_json::to_string(&w.technicians).unwrap_or_else(|_| "[]".into()),
            w.opened_by,
            w.opened_at,
            w.closed_at,
            w.version
        ],
    )?;
    Ok(())
}

/// Save the order's own fields with version + 1, then send the whole order to HQ.
pub fn touch_work_order(tx: &Tx, w: &mut WorkOrder, at: &str) -> Result<WorkOrderDoc, StoreError> {
    w.version += 1;
    tx.conn().execute(
        "UPDATE work_orders SET status = ?2, bay = ?3, technicians = ?4, closed_at = ?5, version = ?6 WHERE id = ?1",
        params![w.id, w.status, w.bay, serde_json::to_string(&w.technicians).unwrap_or_else(|_| "[]".into()), w.closed_at, w.version],
    )?;
    publish(tx, w, at)
}

/// Append the work order as it now stands to the outbox.
pub fn publish(tx: &Tx, w: &WorkOrder, at: &str) -> Result<WorkOrderDoc, StoreError> {
    let doc = WorkOrderDoc { order: w.clone(), lines: lines_of(tx, &w.id)?, clock: clock_of(tx, &w.id)?, parts: parts_of(tx, &w.id)? };
    outbox::append(tx, &Record::WorkOrder { body: &doc }, at)?;
    Ok(doc)
}

pub fn work_order_of(tx: &Tx, case_id: &str) -> Result<Option<WorkOrder>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {WO_COLS} FROM work_orders WHERE case_id = ?1"), [case_id], row_wo).optional()?)
}

pub fn order(tx: &Tx, id: &str) -> Result<Option<WorkOrder>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {WO_COLS} FROM work_orders WHERE id = ?1"), [id], row_wo).optional()?)
}

pub fn doc_of(tx: &Tx, case_id: &str) -> Result<Option<WorkOrderDoc>, StoreError> {
    let Some(order) = work_order_of(tx, case_id)? else { return Ok(None) };
    Ok(Some(WorkOrderDoc { lines: lines_of(tx, &order.id)?, clock: clock_of(tx, &order.id)?, parts: parts_of(tx, &order.id)?, order }))
}

/// Open work orders (in the bay or waiting for QC), oldest first: the bay board.
pub fn open_orders(tx: &Tx) -> Result<Vec<WorkOrder>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {WO_COLS} FROM work_orders WHERE status <> 'done' ORDER BY opened_at"))?;
    let v = st.query_map([], row_wo)?.collect::<Result<_, _>>()?;
    Ok(v)
}

const LINE_COLS: &str =
    "id, work_order_id, seq, kind, code, name_zh, name_en, labour_class, standard_hours, qty, billed_origin, finding_id, part, damage, status";

fn row_line(r: &Row) -> rusqlite::Result<Line> {
    Ok(Line {
        id: r.get(0)?,
        work_order_id: r.get(1)?,
        seq: r.get(2)?,
        kind: r.get(3)?,
        code: r.get(4)?,
        name_zh: r.get(5)?,
        name_en: r.get(6)?,
        labour_class: r.get(7)?,
        standard_hours: r.get(8)?,
        qty: r.get(9)?,
        billed_origin: r.get(10)?,
        finding_id: r.get(11)?,
        part: r.get(12)?,
        damage: r.get(13)?,
        status: r.get(14)?,
    })
}

pub fn insert_line(tx: &Tx, l: &Line) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO work_order_lines ({LINE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            l.id,
            l.work_order_id,
            l.seq,
            l.kind,
            l.code,
            l.name_zh,
            l.name_en,
            l.labour_class,
            l.standard_hours,
            l.qty,
            l.billed_origin,
            l.finding_id,
            l.part,
            l.damage,
            l.status
        ],
    )?;
    Ok(())
}

pub fn lines_of(tx: &Tx, work_order_id: &str) -> Result<Vec<Line>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {LINE_COLS} FROM work_order_lines WHERE work_order_id = ?1 ORDER BY seq"))?;
    let v = st.query_map([work_order_id], row_line)?.collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn line(tx: &Tx, id: &str) -> Result<Option<Line>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {LINE_COLS} FROM work_order_lines WHERE id = ?1"), [id], row_line).optional()?)
}

pub fn set_line_status(tx: &Tx, id: &str, status: &str) -> Result<(), StoreError> {
    tx.conn().execute("UPDATE work_order_lines SET status = ?2 WHERE id = ?1", params![id, status])?;
    Ok(())
}

/// Reopen every line of an order for rework.
pub fn reopen_lines(tx: &Tx, work_order_id: &str) -> Result<(), StoreError> {
    tx.conn().execute("UPDATE work_order_lines SET status = 'paused' WHERE work_order_id = ?1 AND kind = 'labour'", [work_order_id])?;
    Ok(())
}

const CLOCK_COLS: &str = "id, line_id, technician_id, technician, started_at, ended_at, corrected_by, correction_reason";

fn row_clock(r: &Row) -> rusqlite::Result<ClockEntry> {
    Ok(ClockEntry {
        id: r.get(0)?,
        line_id: r.get(1)?,
        technician_id: r.get(2)?,
        technician: r.get(3)?,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
        corrected_by: r.get(6)?,
        correction_reason: r.get(7)?,
    })
}

pub fn insert_clock(tx: &Tx, e: &ClockEntry) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO clock_entries ({CLOCK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![e.id, e.line_id, e.technician_id, e.technician, e.started_at, e.ended_at, e.corrected_by, e.correction_reason],
    )?;
    Ok(())
}

pub fn save_clock(tx: &Tx, e: &ClockEntry) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE clock_entries SET started_at = ?2, ended_at = ?3, corrected_by = ?4, correction_reason = ?5 WHERE id = ?1",
        params![e.id, e.started_at, e.ended_at, e.corrected_by, e.correction_reason],
    )?;
    Ok(())
}

pub fn clock_entry(tx: &Tx, id: &str) -> Result<Option<ClockEntry>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {CLOCK_COLS} FROM clock_entries WHERE id = ?1"), [id], row_clock).optional()?)
}

/// The technician's running entry, if any (at most one: a unique index).
pub fn running_of(tx: &Tx, technician_id: i64) -> Result<Option<ClockEntry>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {CLOCK_COLS} FROM clock_entries WHERE technician_id = ?1 AND ended_at IS NULL"),
            [technician_id],
            row_clock,
        )
        .optional()?)
}

pub fn clock_of(tx: &Tx, work_order_id: &str) -> Result<Vec<ClockEntry>, StoreError> {
    let cols = CLOCK_COLS.split(", ").map(|c| format!("e.{c}")).collect::<Vec<_>>().join(", ");
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {cols} FROM clock_entries e JOIN work_order_lines l ON l.id = e.line_id WHERE l.work_order_id = ?1 ORDER BY e.started_at, e.id"
    ))?;
    let v = st.query_map([work_order_id], row_clock)?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// Clocked hours of finished lines with this operation code on other work orders (the store's own
/// history for the labour outlier flag).
pub fn history_hours(tx: &Tx, code: &str, except_order: &str) -> Result<Vec<f64>, StoreError> {
    let mut st = tx.conn().prepare_cached(
        "SELECT SUM((julianday(e.ended_at) - julianday(e.started_at)) * 24.0) FROM clock_entries e
         JOIN work_order_lines l ON l.id = e.line_id
         WHERE l.code = ?1 AND l.status = 'done' AND l.work_order_id <> ?2 AND e.ended_at IS NOT NULL GROUP BY l.id",
    )?;
    let v = st.query_map(params![code, except_order], |r| r.get::<_, Option<f64>>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(v.into_iter().flatten().collect())
}

const PART_COLS: &str = "id, work_order_id, line_id, photo_id, symbology, code_text, part_no, gtin, serial, origin, scanned_by, scanned_at";

pub fn insert_part(tx: &Tx, p: &PartFitted) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO parts_fitted ({PART_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            p.id,
            p.work_order_id,
            p.line_id,
            p.photo_id,
            p.symbology,
            p.code_text,
            p.part_no,
            p.gtin,
            p.serial,
            p.origin,
            p.scanned_by,
            p.scanned_at
        ],
    )?;
    Ok(())
}

pub fn parts_of(tx: &Tx, work_order_id: &str) -> Result<Vec<PartFitted>, StoreError> {
    let mut st =
        tx.conn().prepare_cached(&format!("SELECT {PART_COLS} FROM parts_fitted WHERE work_order_id = ?1 ORDER BY scanned_at, id"))?;
    let v = st
        .query_map([work_order_id], |r| {
            Ok(PartFitted {
                id: r.get(0)?,
                work_order_id: r.get(1)?,
                line_id: r.get(2)?,
                photo_id: r.get(3)?,
                symbology: r.get(4)?,
                code_text: r.get(5)?,
                part_no: r.get(6)?,
                gtin: r.get(7)?,
                serial: r.get(8)?,
                origin: r.get(9)?,
                scanned_by: r.get(10)?,
                scanned_at: r.get(11)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Whether a part with this serial was already fitted in this store.
pub fn serial_seen(tx: &Tx, serial: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM parts_fitted WHERE serial = ?1)", [serial], |r| r.get(0))?)
}

pub fn insert_shot(tx: &Tx, s: &Shot) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO workshop_shots (photo_id, case_id, phase, checkpoint, taken_by, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![s.photo_id, s.case_id, s.phase, s.checkpoint, s.taken_by, s.taken_at],
    )?;
    Ok(())
}

/// The case's workshop shots in the order they were taken (a retake comes after the shot it replaces).
pub fn shots_of(tx: &Tx, case_id: &str) -> Result<Vec<Shot>, StoreError> {
    let mut st = tx.conn().prepare_cached(
        "SELECT s.photo_id, s.case_id, s.phase, s.checkpoint, s.taken_by, s.taken_at FROM workshop_shots s
         JOIN photos p ON p.id = s.photo_id WHERE s.case_id = ?1 AND p.removed_at IS NULL ORDER BY s.taken_at, s.photo_id",
    )?;
    let v = st
        .query_map([case_id], |r| {
            Ok(Shot {
                photo_id: r.get(0)?,
                case_id: r.get(1)?,
                phase: r.get(2)?,
                checkpoint: r.get(3)?,
                taken_by: r.get(4)?,
                taken_at: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Whether a photo is a workshop shot (its detections never become intake findings).
pub fn is_shot(tx: &Tx, photo_id: &str) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM workshop_shots WHERE photo_id = ?1)", [photo_id], |r| r.get(0))?)
}

pub fn insert_mark(tx: &Tx, m: &Mark) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO baseline_marks (id, case_id, checkpoint, part, damage, note, marked_by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![m.id, m.case_id, m.checkpoint, m.part, m.damage, m.note, m.marked_by, m.at],
    )?;
    Ok(())
}

pub fn marks_of(tx: &Tx, case_id: &str) -> Result<Vec<Mark>, StoreError> {
    let mut st = tx.conn().prepare_cached(
        "SELECT id, case_id, checkpoint, part, damage, note, marked_by, at FROM baseline_marks WHERE case_id = ?1 ORDER BY at, id",
    )?;
    let v = st
        .query_map([case_id], |r| {
            Ok(Mark {
                id: r.get(0)?,
                case_id: r.get(1)?,
                checkpoint: r.get(2)?,
                part: r.get(3)?,
                damage: r.get(4)?,
                note: r.get(5)?,
                marked_by: r.get(6)?,
                at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

pub fn insert_signoff(tx: &Tx, s: &Signoff, signature: Option<&[u8]>) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO baseline_signoffs (case_id, signed_by, signature_png, shots_sha256, recorded_by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(case_id) DO UPDATE SET signed_by = excluded.signed_by, signature_png = excluded.signature_png,
           shots_sha256 = excluded.shots_sha256, recorded_by = excluded.recorded_by, at = excluded.at",
        params![s.case_id, s.signed_by, signature, s.shots_sha256, s.recorded_by, s.at],
    )?;
    Ok(())
}

pub fn signoff_of(tx: &Tx, case_id: &str) -> Result<Option<Signoff>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT case_id, signed_by, signature_png IS NOT NULL, shots_sha256, recorded_by, at FROM baseline_signoffs WHERE case_id = ?1",
            [case_id],
            |r| {
                Ok(Signoff {
                    case_id: r.get(0)?,
                    signed_by: r.get(1)?,
                    has_signature: r.get(2)?,
                    shots_sha256: r.get(3)?,
                    recorded_by: r.get(4)?,
                    at: r.get(5)?,
                })
            },
        )
        .optional()?)
}

const FLAG_COLS: &str = "id, case_id, queue, kind, subject, detail, status, raised_at, settled_by, settled_at, note, version";

fn row_flag(r: &Row) -> rusqlite::Result<Flag> {
    Ok(Flag {
        id: r.get(0)?,
        case_id: r.get(1)?,
        queue: r.get(2)?,
        kind: r.get(3)?,
        subject: r.get(4)?,
        detail: r.get(5)?,
        status: r.get(6)?,
        raised_at: r.get(7)?,
        settled_by: r.get(8)?,
        settled_at: r.get(9)?,
        note: r.get(10)?,
        version: r.get(11)?,
    })
}

/// Raise a proposed flag; `None` when the same (case, kind, subject) was raised before.
pub fn raise(tx: &Tx, case_id: &str, p: &Proposal, at: &str) -> Result<Option<Flag>, StoreError> {
    let f = Flag {
        id: crate::domain::new_id(),
        case_id: case_id.into(),
        queue: p.kind.queue().into(),
        kind: p.kind.as_str().into(),
        subject: p.subject.clone(),
        detail: p.detail.clone(),
        status: "open".into(),
        raised_at: at.into(),
        settled_by: None,
        settled_at: None,
        note: None,
        version: 1,
    };
    let n = tx.conn().execute(
        &format!("INSERT OR IGNORE INTO workshop_flags ({FLAG_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            f.id,
            f.case_id,
            f.queue,
            f.kind,
            f.subject,
            f.detail,
            f.status,
            f.raised_at,
            f.settled_by,
            f.settled_at,
            f.note,
            f.version
        ],
    )?;
    if n == 0 {
        return Ok(None);
    }
    outbox::append(tx, &Record::WorkshopFlag { body: &f }, at)?;
    Ok(Some(f))
}

pub fn flag(tx: &Tx, id: &str) -> Result<Option<Flag>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {FLAG_COLS} FROM workshop_flags WHERE id = ?1"), [id], row_flag).optional()?)
}

/// Save a settled flag (version + 1) and send it to HQ.
pub fn save_flag(tx: &Tx, f: &mut Flag, at: &str) -> Result<(), StoreError> {
    f.version += 1;
    tx.conn().execute(
        "UPDATE workshop_flags SET queue = ?2, status = ?3, settled_by = ?4, settled_at = ?5, note = ?6, version = ?7 WHERE id = ?1",
        params![f.id, f.queue, f.status, f.settled_by, f.settled_at, f.note, f.version],
    )?;
    outbox::append(tx, &Record::WorkshopFlag { body: f }, at)
}

pub fn flags_of(tx: &Tx, case_id: &str) -> Result<Vec<Flag>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {FLAG_COLS} FROM workshop_flags WHERE case_id = ?1 ORDER BY raised_at, id"))?;
    let v = st.query_map([case_id], row_flag)?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// A queue's flags: open and handed-to-a-person ones first, then the latest settled (at most `limit`).
pub fn queue(tx: &Tx, queue: &str, open_only: bool, limit: u32) -> Result<Vec<Flag>, StoreError> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {FLAG_COLS} FROM workshop_flags WHERE queue = ?1 AND (?2 = 0 OR status IN ('open','escalated'))
         ORDER BY status NOT IN ('open','escalated'), raised_at DESC LIMIT ?3"
    ))?;
    let v = st.query_map(params![queue, open_only, limit], row_flag)?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// QC alerts of the case still open (an escalated one waits for the person it went to).
pub fn open_alerts(tx: &Tx, case_id: &str) -> Result<u32, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COUNT(*) FROM workshop_flags WHERE case_id = ?1 AND queue = 'qc' AND status IN ('open','escalated')",
        [case_id],
        |r| r.get(0),
    )?)
}

pub fn insert_report(tx: &Tx, r: &QcReport, pdf: &[u8]) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO qc_reports (id, case_id, version, passed, body, pdf, pdf_sha256, inspector, inspector_id, signed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![r.id, r.case_id, r.version, r.passed, r.body.to_string(), pdf, r.pdf_sha256, r.inspector, r.inspector_id, r.signed_at],
    )?;
    outbox::append(tx, &Record::QcReport { body: r }, &r.signed_at)
}

pub fn next_report_version(tx: &Tx, case_id: &str) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM qc_reports WHERE case_id = ?1", [case_id], |r| r.get(0))?)
}

pub fn latest_report(tx: &Tx, case_id: &str) -> Result<Option<QcReport>, StoreError> {
    let r = tx
        .conn()
        .query_row(
            "SELECT id, case_id, version, passed, body, pdf_sha256, inspector, inspector_id, signed_at FROM qc_reports
             WHERE case_id = ?1 ORDER BY version DESC LIMIT 1",
            [case_id],
            |r| {
                Ok((
                    QcReport {
                        id: r.get(0)?,
                        case_id: r.get(1)?,
                        version: r.get(2)?,
                        passed: r.get(3)?,
                        body: serde_json::Value::Null,
                        pdf_sha256: r.get(5)?,
                        inspector: r.get(6)?,
                        inspector_id: r.get(7)?,
                        signed_at: r.get(8)?,
                    },
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    match r {
        None => Ok(None),
        Some((mut rep, body)) => {
            rep.body = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("QC report {}: {e}", rep.id)))?;
            Ok(Some(rep))
        }
    }
}

/// The store copy's PDF of a report.
pub fn report_pdf(tx: &Tx, report_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(tx.conn().query_row("SELECT pdf FROM qc_reports WHERE id = ?1", [report_id], |r| r.get(0)).optional()?.flatten())
}

pub fn save_comparison(tx: &Tx, case_id: &str, body: &serde_json::Value, at: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO qc_comparisons (case_id, body, at) VALUES (?1, ?2, ?3)
         ON CONFLICT(case_id) DO UPDATE SET body = excluded.body, at = excluded.at",
        params![case_id, body.to_string(), at],
    )?;
    Ok(())
}

pub fn comparison(tx: &Tx, case_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let s: Option<String> =
        tx.conn().query_row("SELECT body FROM qc_comparisons WHERE case_id = ?1", [case_id], |r| r.get(0)).optional()?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("QC comparison of {case_id}: {e}")))).transpose()
}
