//! The workshop's shared desk: the manager's bay board, and the flag queues that both workshop
//! stages feed (QC alerts for the inspector, labour and parts anomalies for the manager), with the
//! one way a person settles a flag.
//!
//! Invariants: a flag is settled once (confirm or dismiss); an alert handed to a person (转人工)
//! waits for a manager and flags the case; manager flags never block a repair.

use serde::{Deserialize, Serialize};

use super::work_order::{billed, scanned_part_nos, WorkshopService};
use super::CaseError;
use crate::domain::validate;
use crate::domain::workshop as rules;
use crate::domain::{now, Actor, CaseStatus, Role};
use crate::store::cases::Event;
use crate::store::workshop::{self as repo, Line};
use crate::store::{self, audit};

/// One job on the manager's bay board.
#[derive(Debug, Clone, Serialize)]
pub struct BoardJob {
    pub case_id: String,
    pub case_status: CaseStatus,
    pub bay: Option<String>,
    pub summary: String,
    pub lines_done: usize,
    pub lines_total: usize,
    pub technicians_on: Vec<String>,
    /// Billed parts not scanned yet: the job waits for them.
    pub parts_waiting: Vec<String>,
    pub open_flags: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Board {
    pub bays: u32,
    pub in_progress: Vec<BoardJob>,
    pub waiting_for_parts: Vec<BoardJob>,
    pub at_qc: Vec<BoardJob>,
    pub today: Vec<crate::store::schedule::Appointment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Confirm,
    Dismiss,
    /// 转人工: hand it to a person (the manager).
    Escalate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settlement {
    pub decision: Decision,
    pub note: Option<String>,
}

impl WorkshopService {
    /// The manager's bay board: jobs in progress, waiting for parts, at QC, and today's bookings.
    pub async fn board(&self, bays: u32) -> Result<Board, CaseError> {
        let (from, to) = super::schedule::day_bounds(chrono::Local::now().date_naive());
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                let mut b = Board {
                    bays,
                    in_progress: vec![],
                    waiting_for_parts: vec![],
                    at_qc: vec![],
                    today: store::schedule::booked_starting(tx, &from, &to)?,
                };
                for wo in repo::open_orders(tx)? {
                    let Some(case) = store::cases::get(tx, &wo.case_id)? else { continue };
                    let lines = repo::lines_of(tx, &wo.id)?;
                    let clock = repo::clock_of(tx, &wo.id)?;
                    let parts = repo::parts_of(tx, &wo.id)?;
                    let waiting: Vec<String> = rules::billed_not_scanned(&billed(&lines), &scanned_part_nos(&parts))
                        .into_iter()
                        .filter_map(|p| lines.iter().find(|l| l.id == p.subject).map(|l| l.code.clone()))
                        .collect();
                    let labour: Vec<&Line> = lines.iter().filter(|l| l.kind == "labour").collect();
                    let job = BoardJob {
                        case_id: case.id.clone(),
                        case_status: case.status,
                        bay: wo.bay.clone(),
                        summary: case.summary.chars().take(60).collect(),
                        lines_done: labour.iter().filter(|l| l.status == "done").count(),
                        lines_total: labour.len(),
                        technicians_on: clock.iter().filter(|e| e.ended_at.is_none()).map(|e| e.technician.clone()).collect(),
                        parts_waiting: waiting,
                        open_flags: repo::flags_of(tx, &case.id)?.iter().filter(|f| f.status == "open").count(),
                    };
                    if wo.status == "qc" || case.status == CaseStatus::Qc {
                        b.at_qc.push(job);
                    } else if !job.parts_waiting.is_empty() && job.technicians_on.is_empty() {
                        b.waiting_for_parts.push(job);
                    } else {
                        b.in_progress.push(job);
                    }
                }
                Ok(b)
            })
            .await
    }

    /// A queue of flags: `qc` (missed-issue alerts) or `manager` (labour and parts anomalies).
    pub async fn queue(&self, queue: String, open_only: bool) -> Result<Vec<repo::Flag>, CaseError> {
        if !matches!(queue.as_str(), "qc" | "manager") {
            return Err(validate::invalid("queue", "qc or manager").into());
        }
        Ok(self.store.read(move |tx| repo::queue(tx, &queue, open_only, 200)).await?)
    }

    /// Settle a flag: confirm, dismiss, or hand it to a person (转人工). Manager flags are settled by
    /// a manager; QC alerts by an inspector or a manager. An escalated alert waits for the manager.
    pub async fn settle(&self, actor: &Actor, flag_id: String, d: Settlement) -> Result<repo::Flag, CaseError> {
        let note = validate::opt_text("note", d.note.as_deref(), 500)?;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut f = repo::flag(tx, &flag_id)?.ok_or(CaseError::NotFound("flag"))?;
                let role = actor.role.unwrap_or(Role::HqAuditor);
                let may = role == Role::Manager || (f.queue == "qc" && role == Role::QcInspector && f.status == "open");
                if !may {
                    return Err(CaseError::state(
                        "not_yours",
                        if f.queue == "manager" { "a manager settles this flag" } else { "this alert was handed to a manager" },
                    ));
                }
                if matches!(f.status.as_str(), "confirmed" | "dismissed") {
                    return Err(CaseError::state("already_settled", format!("the flag is already {}", f.status)));
                }
                let at = now();
                f.status = match d.decision {
                    Decision::Confirm => "confirmed",
                    Decision::Dismiss => "dismissed",
                    Decision::Escalate => "escalated",
                }
                .into();
                (f.settled_by, f.settled_at, f.note) = (Some(actor.username.clone()), Some(at.clone()), note);
                repo::save_flag(tx, &mut f, &at)?;
                let why = format!("{} {}: {}", f.kind, f.status, f.note.as_deref().unwrap_or(&f.detail));
                store::cases::note(tx, &f.case_id, &actor, &at, d.decision == Decision::Escalate, Event::note("flag_settled", &why))?;
                audit::record(tx, &actor, "workshop.flag_settle", "workshop_flag", Some(&f.id), "ok")?;
                Ok(f)
            })
            .await
    }
}
