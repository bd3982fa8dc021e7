//! The outbox: every change HQ needs is appended here in the same transaction as the change itself
//! (store-and-forward; the sync task sends rows and removes them only after HQ's application ack).
//!
//! Invariants:
//! - `append` is the one writer of outbox rows, and it takes a typed `Record`: the set of kinds HQ
//!   receives is this enum, and each kind's body has its own schema version (bump it when the
//!   body's shape changes; HQ keeps both readable). README "HQ data contract" lists them.
//! - A record's `version` grows with every change of that record, so HQ keeps the newest whatever
//!   order batches land in.

use rusqlite::params;
use serde::Serialize;

use super::{StoreError, Tx};
use crate::domain::case::Case;
use crate::domain::CaseStatus;

/// One change for HQ.
pub enum Record<'a> {
    /// A case's new state and the timeline event that made it.
    Case { case: &'a Case, event: CaseEvent<'a> },
    /// The intake conversation's outcome after a turn (findings so far, next action).
    Intake { case_id: &'a str, version: i64, body: &'a serde_json::Value },
    /// A finding as it now stands (sources, review, measurement).
    Finding { id: &'a str, version: i64, body: &'a super::findings::FindingRecord },
    /// A priced estimate version (the whole plan).
    Estimate { id: &'a str, version: i64, plan_json: &'a str },
    /// A customer's approval of one estimate version (never the signature image, nor the name).
    Approval { body: &'a super::schedule::Approval },
    /// A booked, moved or cancelled appointment.
    Appointment { body: &'a super::schedule::Appointment },
    /// A customer's data was erased here (request or retention): HQ removes every record named.
    Erasure { body: &'a super::privacy::Erasure },
    /// A work order with its lines, clock entries and parts fitted, as it now stands.
    WorkOrder { body: &'a super::workshop::WorkOrderDoc },
    /// A missed-issue alert or a labour/parts anomaly, raised or settled.
    WorkshopFlag { body: &'a super::workshop::Flag },
    /// A signed QC report: its data and the PDF's hash (the PDF itself stays in the store).
    QcReport { body: &'a super::workshop::QcReport },
    /// A follow-up task as HQ's survey page and notifier need it (consented channels, token hash).
    FollowUp { body: &'a super::follow_up::FollowUpDoc },
    /// A survey answer: scores, fixed-or-not per finding, category and summary (no free text).
    Survey { body: &'a super::follow_up::SurveyDoc },
    /// A hot alert or suggestion an answer raised, as it now stands (SLA, escalation, resolution).
    FollowUpAlert { body: &'a super::follow_up::Alert },
    /// The store's KPIs of one local day.
    KpiSnapshot { day: &'a str, version: i64, body: &'a serde_json::Value },
}

/// The timeline event carried with a case record.
#[derive(Serialize)]
pub struct CaseEvent<'a> {
    pub kind: &'a str,
    pub actor: &'a str,
    pub from: Option<CaseStatus>,
    pub to: Option<CaseStatus>,
    pub reason: Option<&'a str>,
}

/// Every record kind with its body's schema version: the data contract HQ ingests.
pub const KINDS: &[(&str, i64)] = &[
    ("case", 1),
    ("intake", 1),
    ("finding", 2),
    ("estimate", 1),
    ("approval", 1),
    ("appointment", 1),
    ("erasure", 1),
    ("work_order", 1),
    ("workshop_flag", 1),
    ("qc_report", 1),
    ("follow_up", 1),
    ("survey", 1),
    ("follow_up_alert", 1),
    ("kpi_snapshot", 1),
];

impl Record<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Case { .. } => "case",
            Record::Intake { .. } => "intake",
            Record::Finding { .. } => "finding",
            Record::Estimate { .. } => "estimate",
            Record::Approval { .. } => "approval",
            Record::Appointment { .. } => "appointment",
            Record::Erasure { .. } => "erasure",
            Record::WorkOrder { .. } => "work_order",
            Record::WorkshopFlag { .. } => "workshop_flag",
            Record::QcReport { .. } => "qc_report",
            Record::FollowUp { .. } => "follow_up",
            Record::Survey { .. } => "survey",
            Record::FollowUpAlert { .. } => "follow_up_alert",
            Record::KpiSnapshot { .. } => "kpi_snapshot",
        }
    }

    pub fn schema_version(&self) -> i64 {
        let kind = self.kind();
        KINDS.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v).unwrap_or(1)
    }

    fn id_version(&self) -> (&str, i64) {
        match self {
            Record::Case { case, .. } => (&case.id, case.version),
            Record::Intake { case_id, version, .. } => (case_id, *version),
            Record::Finding { id, version, .. } => (id, *version),
            Record::Estimate { id, version, .. } => (id, *version),
            Record::Approval { body } => (&body.id, 1),
            Record::Appointment { body } => (&body.id, body.version),
            Record::Erasure { body } => (&body.id, 1),
            Record::WorkOrder { body } => (&body.order.id, body.order.version),
            Record::WorkshopFlag { body } => (&body.id, body.version),
            Record::QcReport { body } => (&body.id, 1),
            Record::FollowUp { body } => (&body.id, body.version),
            Record::Survey { body } => (&body.id, 1),
            Record::FollowUpAlert { body } => (&body.id, body.version),
            Record::KpiSnapshot { day, version, .. } => (day, *version),
        }
    }

    fn body(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct CaseBody<'b> {
            case: &'b Case,
            event: &'b CaseEvent<'b>,
        }
        match self {
            Record::Case { case, event } => serde_json::to_string(&CaseBody { case, event }),
            Record::Intake { body, .. } => serde_json::to_string(body),
            Record::Finding { body, .. } => serde_json::to_string(body),
            Record::Estimate { plan_json, .. } => Ok((*plan_json).to_string()),
            // Who approved is the customer's name: personal data stays in the store.
            Record::Approval { body } => {
                let mut v = serde_json::to_value(body)?;
                if let Some(o) = v.as_object_mut() {
                    o.remove("approved_by");
                }
                serde_json::to_string(&v)
            }
            Record::Appointment { body } => serde_json::to_string(body),
            Record::Erasure { body } => serde_json::to_string(body),
            Record::WorkOrder { body } => serde_json::to_string(body),
            Record::WorkshopFlag { body } => serde_json::to_string(body),
            Record::QcReport { body } => serde_json::to_string(body),
            Record::FollowUp { body } => serde_json::to_string(body),
            Record::Survey { body } => serde_json::to_string(body),
            Record::FollowUpAlert { body } => serde_json::to_string(body),
            Record::KpiSnapshot { body, .. } => serde_json::to_string(body),
        }
    }
}

/// Append one record; call it inside the transaction that made the change.
pub fn append(tx: &Tx, record: &Record, at: &str) -> Result<(), StoreError> {
    let body = record.body().map_err(|e| StoreError::Encode(format!("outbox {} body: {e}", record.kind())))?;
    let (id, version) = record.id_version();
    tx.conn().execute(
        "INSERT INTO outbox (event_id, record_type, record_id, version, schema_version, at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![crate::domain::new_id(), record.kind(), id, version, record.schema_version(), at, body],
    )?;
    Ok(())
}

pub fn depth(tx: &Tx) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?)
}
