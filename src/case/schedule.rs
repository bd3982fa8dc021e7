//! The schedule stage: the customer approves one estimate version, the advisor books a bay, and the
//! case is `scheduled` once both hold. Free slots are listed from the store's opening hours, its
//! calendar (weekly closing days, holidays) and the booked bays.
//!
//! Invariants:
//! - Only the latest estimate version can be approved, once; the approval keeps a hash of its
//!   priced lines. A newer version needs a new approval (the estimate stage moves the case back).
//! - Never more overlapping booked appointments than bays: the capacity check and the insert run
//!   in one write transaction on the single writer, so concurrent bookings cannot both pass.
//! - A case has at most one booked appointment (a unique index); rebooking moves it.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::estimate::{parse_local, LOCAL_FMT};
use super::{stage_move, CaseError};
use crate::catalog::SharedCatalog;
use crate::domain::validate;
use crate::domain::{new_id, now, Actor, CaseStatus};
use crate::estimate::{job_window, open_slots, Booking, Slot};
use crate::store::cases::Event;
use crate::store::schedule::{self as repo, Appointment, Approval};
use crate::store::{self, audit};

/// How the customer said yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Signed on the store's tablet.
    Tablet,
    InPerson,
    /// By phone, as recorded by the advisor.
    Phone,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Tablet => "tablet",
            Channel::InPerson => "in_person",
            Channel::Phone => "phone",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApproval {
    pub estimate_version: i64,
    pub approved_by: String,
    pub channel: Channel,
    /// A PNG of the customer's signature, base64.
    pub signature_png: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    #[serde(flatten)]
    pub approval: Approval,
    pub case_status: CaseStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlotList {
    pub bays: u32,
    pub hours: f64,
    pub slots: Vec<SlotView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlotView {
    pub start: String,
    pub end: String,
}

#[derive(Clone)]
pub struct ScheduleService {
    store: store::Store,
    catalog: SharedCatalog,
    store_id: String,
}

fn fmt(t: NaiveDateTime) -> String {
    t.format(LOCAL_FMT).to_string()
}

fn bookings(v: &[(String, String)]) -> Vec<Booking> {
    v.iter().filter_map(|(a, b)| Some(Booking { start: parse_local(a)?, end: parse_local(b)? })).collect()
}

/// A local day as the [start, end) bounds the appointment times are compared with.
pub(crate) fn day_bounds(day: chrono::NaiveDate) -> (String, String) {
    let at = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(fmt).unwrap_or_default();
    (at(day), day.succ_opt().map(at).unwrap_or_default())
}

/// Cancel the case's booked appointment, if any (a cancelled case frees its bay).
pub(crate) fn release_booking(tx: &store::Tx, case_id: &str, actor: &Actor) -> Result<Option<Appointment>, CaseError> {
    let Some(mut a) = repo::booked_of(tx, case_id)? else { return Ok(None) };
    a.status = "cancelled".into();
    a.version += 1;
    a.updated_at = now();
    repo::update_appointment(tx, &a)?;
    audit::record(tx, actor, "appointment.cancel", "appointment", Some(&a.id), "ok")?;
    Ok(Some(a))
}

impl ScheduleService {
    pub fn new(store: store::Store, catalog: SharedCatalog, store_id: String) -> ScheduleService {
        ScheduleService { store, catalog, store_id }
    }

    /// Record the customer's approval of the latest estimate version. The case moves to
    /// `scheduled` when it already has a booked appointment (a re-approval after a revision).
    pub async fn approve(&self, actor: &Actor, case_id: String, n: NewApproval) -> Result<ApprovalView, CaseError> {
        let approved_by = validate::text("approved_by", &n.approved_by, 100)?;
        if n.estimate_version < 1 {
            return Err(validate::invalid("estimate_version", "must be 1 or more").into());
        }
        let signature = super::signature_png(n.signature_png.as_deref())?;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status != CaseStatus::Estimated {
                    return Err(CaseError::state(
                        "not_estimated",
                        format!("case is {}; an estimate is approved while the case is estimated", case.status),
                    ));
                }
                let (estimate_id, latest) = store::estimates::latest_id(tx, &case_id)?
                    .ok_or_else(|| CaseError::state("no_estimate", "the case has no estimate to approve"))?;
                if latest != n.estimate_version {
                    return Err(CaseError::state(
                        "stale_estimate",
                        format!("estimate v{} is not the latest (v{latest}); show the customer the latest version", n.estimate_version),
                    ));
                }
                if repo::approval_of(tx, &estimate_id)?.is_some() {
                    return Err(CaseError::state("already_approved", format!("estimate v{latest} is already approved")));
                }
                let a = Approval {
                    id: new_id(),
                    case_id: case_id.clone(),
                    estimate_id: estimate_id.clone(),
                    estimate_version: latest,
                    approved_by,
                    channel: n.channel.as_str().into(),
                    has_signature: signature.is_some(),
                    lines_sha256: store::estimates::lines_sha256(tx, &estimate_id)?,
                    recorded_by: actor.username.clone(),
                    approved_at: now(),
                };
                repo::insert_approval(tx, &a, signature.as_deref(), actor.user_id)?;
                audit::record(tx, &actor, "estimate.approve", "case", Some(&case_id), "ok")?;
                // The timeline travels to HQ: the approver's name stays on the approval row only.
                let why = format!("estimate v{latest} approved by the customer ({}), recorded by {}", a.channel, a.recorded_by);
                if repo::booked_of(tx, &case_id)?.is_some() {
                    stage_move(tx, &mut case, CaseStatus::Scheduled, &actor, "scheduled", Some(&why))?;
                } else {
                    case = store::cases::note(tx, &case_id, &actor, &a.approved_at, false, Event::note("approved", &why))?;
                }
                Ok(ApprovalView { approval: a, case_status: case.status })
            })
            .await
    }

    /// Free slots for a job of `hours` over the next `days` days.
    pub async fn slots(&self, hours: f64, days: u32) -> Result<SlotList, CaseError> {
        if !(0.5..=200.0).contains(&hours) {
            return Err(validate::invalid("hours", "must be between 0.5 and 200").into());
        }
        if !(1..=60).contains(&days) {
            return Err(validate::invalid("days", "must be between 1 and 60").into());
        }
        let now = chrono::Local::now().naive_local();
        let from = fmt(now);
        let booked = self.store.read(move |tx| repo::bookings_after(tx, &from)).await?;
        let catalog = self.catalog.get();
        let rates = catalog.store(&self.store_id);
        let slots = open_slots(rates, hours, now, &bookings(&booked), days);
        Ok(SlotList {
            bays: rates.bays,
            hours,
            slots: slots.into_iter().map(|s| SlotView { start: fmt(s.start), end: fmt(s.end) }).collect(),
        })
    }

    /// Book (or move) the case's appointment at `start`. Needs the latest estimate approved; the
    /// job's length is that estimate's hours. The case moves to `scheduled`.
    pub async fn book(&self, actor: &Actor, case_id: String, start: String) -> Result<Appointment, CaseError> {
        let start_at = NaiveDateTime::parse_from_str(start.trim(), LOCAL_FMT)
            .or_else(|_| NaiveDateTime::parse_from_str(start.trim(), "%Y-%m-%dT%H:%M"))
            .map_err(|_| validate::invalid("start", "a local date and time, e.g. 2026-12-07T09:00:00"))?;
        let now_local = chrono::Local::now().naive_local();
        if start_at <= now_local {
            return Err(validate::invalid("start", "must be in the future").into());
        }
        if start_at > now_local + chrono::Duration::days(180) {
            return Err(validate::invalid("start", "at most 180 days ahead").into());
        }
        let catalog = self.catalog.get();
        let rates = catalog.store(&self.store_id).clone();
        if !rates.is_open(start_at.date()) {
            let why = rates
                .closed
                .iter()
                .find(|c| c.from <= start_at.date() && start_at.date() <= c.to)
                .map(|c| format!("the store is closed on {} ({})", start_at.date(), c.name))
                .unwrap_or_else(|| format!("the store is closed on {} (weekly closing day)", start_at.date()));
            return Err(CaseError::state("store_closed", why));
        }
        if start_at.time() < rates.open || start_at.time() >= rates.close {
            return Err(CaseError::state("store_closed", format!("the store takes cars from {} to {}", rates.open, rates.close)));
        }
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if !matches!(case.status, CaseStatus::Estimated | CaseStatus::Scheduled) {
                    return Err(CaseError::state(
                        "not_estimated",
                        format!("case is {}; a bay is booked once the estimate is approved", case.status),
                    ));
                }
                let stored =
                    store::estimates::latest(tx, &case_id)?.ok_or_else(|| CaseError::state("no_estimate", "the case has no estimate"))?;
                if repo::approval_of(tx, &stored.id)?.is_none() {
                    return Err(CaseError::state(
                        "not_approved",
                        format!("estimate v{} is not approved by the customer yet", stored.version),
                    ));
                }
                let hours = stored.plan.get("hours").and_then(|h| h.as_f64()).unwrap_or(1.0).max(0.5);
                let Slot { start, end } = job_window(&rates, start_at, hours);
                let (s, e) = (fmt(start), fmt(end));
                let busy = repo::overlapping(tx, &s, &e, &case_id)?;
                if busy.len() >= rates.bays as usize {
                    return Err(CaseError::state("slot_full", format!("all {} bays are booked at {s}; pick another slot", rates.bays)));
                }
                let bay = (1..=rates.bays).map(|b| b.to_string()).find(|b| !busy.iter().any(|a| &a.bay == b)).unwrap_or_else(|| "1".into());
                let at = now();
                let appt = match repo::booked_of(tx, &case_id)? {
                    Some(mut a) => {
                        let why = format!("appointment moved from {} to {s} (bay {bay})", a.starts_at);
                        (a.bay, a.starts_at, a.ends_at, a.version, a.updated_at) = (bay, s, e, a.version + 1, at.clone());
                        repo::update_appointment(tx, &a)?;
                        audit::record(tx, &actor, "appointment.move", "appointment", Some(&a.id), "ok")?;
                        store::cases::note(tx, &case_id, &actor, &at, false, Event::note("rescheduled", &why))?;
                        case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                        a
                    }
                    None => {
                        let a = Appointment {
                            id: new_id(),
                            case_id: case_id.clone(),
                            bay,
                            starts_at: s,
                            ends_at: e,
                            status: "booked".into(),
                            created_at: at.clone(),
                            updated_at: at.clone(),
                            version: 1,
                        };
                        repo::insert_appointment(tx, &a)?;
                        audit::record(tx, &actor, "appointment.book", "appointment", Some(&a.id), "ok")?;
                        a
                    }
                };
                if case.status == CaseStatus::Estimated {
                    let why = format!("booked {} (bay {})", appt.starts_at, appt.bay);
                    stage_move(tx, &mut case, CaseStatus::Scheduled, &actor, "scheduled", Some(&why))?;
                }
                Ok(appt)
            })
            .await
    }

    /// Cancel the case's booking; a scheduled case goes back to `estimated` (its approval stands).
    pub async fn cancel(&self, actor: &Actor, case_id: String) -> Result<Appointment, CaseError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if repo::booked_of(tx, &case_id)?.is_none() {
                    return Err(CaseError::NotFound("appointment"));
                }
                // Once the car is in the bay the booking is history, not something to cancel.
                if !matches!(case.status, CaseStatus::Estimated | CaseStatus::Scheduled | CaseStatus::OnHold | CaseStatus::Escalated) {
                    return Err(CaseError::state(
                        "booking_in_use",
                        format!("case is {}; its booking can no longer be cancelled", case.status),
                    ));
                }
                let a = release_booking(tx, &case_id, &actor)?.ok_or(CaseError::NotFound("appointment"))?;
                let why = format!("appointment {} cancelled", a.starts_at);
                // Back to waiting for a booking (the approval stands); a paused case will resume there.
                if case.status == CaseStatus::Scheduled || case.prior_status == Some(CaseStatus::Scheduled) {
                    let (expected, from) = (case.version, case.status);
                    if case.status == CaseStatus::Scheduled {
                        case.status = CaseStatus::Estimated;
                    } else {
                        case.prior_status = Some(CaseStatus::Estimated);
                    }
                    (case.version, case.updated_at) = (case.version + 1, now());
                    let ev = Event { kind: "unscheduled", from: Some(from), to: Some(case.status), reason: Some(&why) };
                    store::cases::update(tx, &case, expected, &actor, ev)?;
                } else {
                    store::cases::note(tx, &case_id, &actor, &a.updated_at, false, Event::note("unscheduled", &why))?;
                }
                Ok(a)
            })
            .await
    }

    /// The day's booked appointments, in time order.
    pub async fn on_day(&self, day: chrono::NaiveDate) -> Result<Vec<Appointment>, CaseError> {
        let (from, to) = day_bounds(day);
        self.store.read(move |tx| repo::booked_starting(tx, &from, &to).map_err(CaseError::from)).await
    }

    pub async fn appointment(&self, case_id: String) -> Result<Appointment, CaseError> {
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                repo::latest_of(tx, &case_id)?.ok_or(CaseError::NotFound("appointment"))
            })
            .await
    }
}
