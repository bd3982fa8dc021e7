//! The case and its status machine.
//!
//! Invariants (checked by the tests at the bottom and by the property test in tests/):
//! - The one transition table below is the only source of legal moves; the API's 409 lists exactly
//!   `allowed_next(current)`.
//! - `escalated` (handed to a person) and `on_hold` are pauses: entering one remembers the working
//!   status in `prior_status`; handing back / resuming returns there and clears it. Pausing from a
//!   pause keeps the original working status, so a case can never lose where it was.
//! - `closed` and `cancelled` are terminal: no move leaves them.
//! - Which role may *cause* a move is decided here too (`may_move`), next to the table it guards.
//! - Stages own the forward moves of the front desk (`stage_of`): reported → intake (the first
//!   customer message), intake → assessed (photos passed or waived), → estimated (an estimate),
//!   → scheduled (approval + appointment). Those happen only through `stage_transition`, after
//!   its preconditions (`requires`) hold; `manual_transition` (the `/transition` route) refuses
//!   them and names the stage's endpoint. So do the workshop's: scheduled → in_repair (a work order
//!   from the approved estimate, baseline signed), → qc (every labour line finished), qc →
//!   delivered or back to in_repair (the QC report). Pauses, cancellation, step-backs and the
//!   follow-up moves stay manual.

use serde::{Deserialize, Serialize};

use super::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Reported,
    Intake,
    Assessed,
    Estimated,
    Scheduled,
    InRepair,
    Qc,
    Delivered,
    FollowUp,
    Closed,
    OnHold,
    Escalated,
    Cancelled,
}

use CaseStatus::*;

impl CaseStatus {
    pub const ALL: [CaseStatus; 13] =
        [Reported, Intake, Assessed, Estimated, Scheduled, InRepair, Qc, Delivered, FollowUp, Closed, OnHold, Escalated, Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Reported => "reported",
            Intake => "intake",
            Assessed => "assessed",
            Estimated => "estimated",
            Scheduled => "scheduled",
            InRepair => "in_repair",
            Qc => "qc",
            Delivered => "delivered",
            FollowUp => "follow_up",
            Closed => "closed",
            OnHold => "on_hold",
            Escalated => "escalated",
            Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Closed | Cancelled)
    }

    pub fn is_pause(self) -> bool {
        matches!(self, OnHold | Escalated)
    }

    /// Forward moves of the working flow, plus the explicit step-backs staff need (re-assess,
    /// re-estimate, rework after a failed QC). Pauses and cancellation are added by `allowed_next`.
    fn flow_next(self) -> &'static [CaseStatus] {
        match self {
            Reported => &[Intake],
            Intake => &[Assessed],
            Assessed => &[Estimated, Intake],
            Estimated => &[Scheduled, Assessed],
            Scheduled => &[InRepair, Estimated],
            InRepair => &[Qc],
            Qc => &[Delivered, InRepair],
            Delivered => &[FollowUp],
            FollowUp => &[Closed],
            Closed | Cancelled | OnHold | Escalated => &[],
        }
    }

    /// Cancellation is allowed until work has started on the car.
    fn cancellable(self) -> bool {
        matches!(self, Reported | Intake | Assessed | Estimated | Scheduled | OnHold | Escalated)
    }
}

impl std::fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The statuses reachable from `current`. `prior` is the remembered working status of a paused case.
pub fn allowed_next(current: CaseStatus, prior: Option<CaseStatus>) -> Vec<CaseStatus> {
    let mut next: Vec<CaseStatus> = current.flow_next().to_vec();
    if current.is_pause() {
        if let Some(p) = prior {
            next.push(p);
        }
    }
    if !current.is_terminal() {
        if current != OnHold {
            next.push(OnHold);
        }
        if current != Escalated {
            next.push(Escalated);
        }
    }
    if current.cancellable() {
        next.push(Cancelled);
    }
    next.dedup();
    next
}

/// Which roles may cause a move into `to`. Escalation is open to every staff role that works cases:
/// "hand to a person" must never be blocked by permissions.
pub fn may_move(role: Role, from: CaseStatus, to: CaseStatus) -> bool {
    use Role::*;
    if role == HqAuditor {
        return false;
    }
    if role == Manager || to == Escalated {
        return true;
    }
    match to {
        Intake | Assessed | Estimated | Scheduled | OnHold | Cancelled => role == Advisor,
        // Technicians start and finish the repair; QC sends failed work back to the bay.
        InRepair => role == Technician || (from == Qc && role == QcInspector),
        Qc => role == Technician,
        Delivered => matches!(role, QcInspector | Advisor),
        FollowUp | Closed => matches!(role, CustomerService | Advisor),
        // Only reached for pauses; resuming is decided in `transition`.
        _ => role == Advisor,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("case is {current}; it cannot move to {requested}")]
    Illegal { current: CaseStatus, requested: CaseStatus, allowed: Vec<CaseStatus> },
    #[error("role {role} may not move a case from {from} to {to}")]
    Forbidden { role: Role, from: CaseStatus, to: CaseStatus },
    #[error("case is not paused; there is nothing to hand back")]
    NotPaused { current: CaseStatus },
    #[error("a case enters {to} only through its stage: {endpoint}")]
    StageOwned { current: CaseStatus, to: CaseStatus, endpoint: &'static str },
    #[error("the case cannot enter {to} yet: {} missing", missing.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "))]
    Precondition { current: CaseStatus, to: CaseStatus, missing: Vec<Missing> },
}

/// What a case has, as far as the stage guards are concerned (read inside the stage's transaction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Findings that are not rejected.
    pub findings: u32,
    /// Photos the intake asked for (0 when the findings need none).
    pub photos_needed: u32,
    /// Photos whose analysis passed the quality gate.
    pub photos_passed: u32,
    /// An advisor waived the photos, with a reason.
    pub photos_waived: bool,
    /// An estimate version exists.
    pub estimate: bool,
    /// The customer approved the latest estimate version.
    pub approved: bool,
    /// A booked appointment.
    pub appointment: bool,
    /// The customer signed the before-repair baseline (every checkpoint shot and passed).
    pub baseline_signed: bool,
    /// The case has a work order.
    pub work_order: bool,
    /// Work-order labour lines not finished yet.
    pub labour_open: u32,
    /// The latest QC report passed.
    pub qc_passed: bool,
    /// QC alerts nobody has settled yet.
    pub alerts_open: u32,
    /// The follow-up ended: answered, or the customer could not be reached or declined.
    pub follow_up_done: bool,
    /// Hot follow-up alerts nobody has resolved yet.
    pub hot_alerts_open: u32,
}

/// A precondition that does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    Findings,
    Photos,
    Estimate,
    Approval,
    Appointment,
    Baseline,
    WorkOrder,
    Labour,
    QcReport,
    Alerts,
    FollowUp,
    HotAlerts,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Findings => "findings",
            Missing::Photos => "photos",
            Missing::Estimate => "estimate",
            Missing::Approval => "approval",
            Missing::Appointment => "appointment",
            Missing::Baseline => "baseline",
            Missing::WorkOrder => "work_order",
            Missing::Labour => "labour",
            Missing::QcReport => "qc_report",
            Missing::Alerts => "alerts",
            Missing::FollowUp => "follow_up",
            Missing::HotAlerts => "hot_alerts",
        }
    }
}

/// Photos the intake asks for when a finding must be seen (front, side, close-up).
pub const REQUESTED_PHOTOS: u32 = 3;

/// The stage endpoint that owns the move `from → to`, if a stage owns it. Resuming a paused case
/// is not a stage move (hand back returns to where the case was).
pub fn stage_of(from: CaseStatus, to: CaseStatus) -> Option<&'static str> {
    if from.is_pause() {
        return None;
    }
    match (from, to) {
        (Reported, Intake) => Some("POST /api/v1/cases/{id}/messages"),
        (Intake, Assessed) => Some("POST /api/v1/cases/{id}/photos (or /photos/waive)"),
        (Assessed | Scheduled, Estimated) => Some("POST /api/v1/cases/{id}/estimate"),
        (Estimated, Scheduled) => Some("POST /api/v1/cases/{id}/approval and /appointment"),
        (Scheduled, InRepair) => Some("POST /api/v1/cases/{id}/work-order"),
        (InRepair, Qc) => Some("POST /api/v1/cases/{id}/work-order/finish"),
        (Qc, Delivered | InRepair) => Some("POST /api/v1/cases/{id}/qc/report"),
        (Delivered, FollowUp) => Some("POST /api/v1/cases/{id}/follow-up/answer (or /follow-up/attempt)"),
        (FollowUp, Closed) => Some("POST /api/v1/follow-up/alerts/{id}/resolve (closes when no hot alert is open)"),
        _ => None,
    }
}

/// What must hold before a case enters `to` through its stage.
pub fn requires(to: CaseStatus, f: &Facts) -> Vec<Missing> {
    let mut m = Vec::new();
    match to {
        Assessed => {
            if f.findings == 0 {
                m.push(Missing::Findings);
            }
            if f.photos_passed < f.photos_needed && !f.photos_waived {
                m.push(Missing::Photos);
            }
        }
        Estimated => {
            if f.findings == 0 {
                m.push(Missing::Findings);
            }
            if !f.estimate {
                m.push(Missing::Estimate);
            }
        }
        Scheduled => {
            if !f.approved {
                m.push(Missing::Approval);
            }
            if !f.appointment {
                m.push(Missing::Appointment);
            }
        }
        // The car enters the bay with its approved job and a baseline the customer signed; a
        // rework (from QC) has all of these already.
        InRepair => {
            if !f.approved {
                m.push(Missing::Approval);
            }
            if !f.baseline_signed {
                m.push(Missing::Baseline);
            }
        }
        Qc => {
            if !f.work_order {
                m.push(Missing::WorkOrder);
            }
            if f.labour_open > 0 {
                m.push(Missing::Labour);
            }
        }
        Delivered => {
            if !f.qc_passed {
                m.push(Missing::QcReport);
            }
            if f.alerts_open > 0 {
                m.push(Missing::Alerts);
            }
        }
        FollowUp => {
            if !f.follow_up_done {
                m.push(Missing::FollowUp);
            }
        }
        Closed => {
            if f.hot_alerts_open > 0 {
                m.push(Missing::HotAlerts);
            }
        }
        _ => {}
    }
    m
}

/// A move by a stage: legal in the table and its preconditions hold. Who may do the stage's work
/// is the stage endpoint's rule (the route table), so no role is checked here.
pub fn stage_transition(
    current: CaseStatus,
    prior: Option<CaseStatus>,
    to: CaseStatus,
    facts: &Facts,
) -> Result<Transition, TransitionError> {
    let allowed = allowed_next(current, prior);
    if !allowed.contains(&to) || stage_of(current, to).is_none() {
        return Err(TransitionError::Illegal { current, requested: to, allowed });
    }
    let missing = requires(to, facts);
    if !missing.is_empty() {
        return Err(TransitionError::Precondition { current, to, missing });
    }
    Ok(Transition { from: current, to, prior: None })
}

/// A move asked for by hand (`/transition`): everything the table allows except the moves a stage
/// owns, which are refused with the stage's endpoint.
pub fn manual_transition(
    role: Role,
    current: CaseStatus,
    prior: Option<CaseStatus>,
    to: CaseStatus,
) -> Result<Transition, TransitionError> {
    if let Some(endpoint) = stage_of(current, to) {
        if allowed_next(current, prior).contains(&to) {
            return Err(TransitionError::StageOwned { current, to, endpoint });
        }
    }
    transition(role, current, prior, to)
}

/// The outcome of a legal move: the new status and the working status to remember (if paused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CaseStatus,
    pub to: CaseStatus,
    pub prior: Option<CaseStatus>,
}

/// Check a move and compute the case's new (status, prior). Pure.
pub fn transition(role: Role, current: CaseStatus, prior: Option<CaseStatus>, to: CaseStatus) -> Result<Transition, TransitionError> {
    let allowed = allowed_next(current, prior);
    if !allowed.contains(&to) {
        return Err(TransitionError::Illegal { current, requested: to, allowed });
    }
    // Resuming a paused case (hand back) is a person's decision, whatever the working status was.
    let resume = current.is_pause() && Some(to) == prior;
    let permitted = if resume { matches!(role, Role::Advisor | Role::Manager) } else { may_move(role, current, to) };
    if !permitted {
        return Err(TransitionError::Forbidden { role, from: current, to });
    }
    let new_prior = if to.is_pause() {
        // Keep the original working status when pausing from a pause.
        if current.is_pause() {
            prior
        } else {
            Some(current)
        }
    } else {
        None
    };
    Ok(Transition { from: current, to, prior: new_prior })
}

/// Hand a paused case back to where it was.
pub fn hand_back(role: Role, current: CaseStatus, prior: Option<CaseStatus>) -> Result<Transition, TransitionError> {
    match (current.is_pause(), prior) {
        (true, Some(p)) => transition(role, current, prior, p),
        _ => Err(TransitionError::NotPaused { current }),
    }
}

/// A case as the workflow sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Case {
    pub id: String,
    pub store_id: String,
    pub customer_id: String,
    pub vehicle_id: Option<String>,
    pub status: CaseStatus,
    pub prior_status: Option<CaseStatus>,
    pub summary: String,
    pub assigned_to: Option<i64>,
    pub needs_review: bool,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn seed_flow_is_legal_for_the_roles_that_do_it() {
        let steps = [
            (Advisor, Intake),
            (Advisor, Assessed),
            (Advisor, Estimated),
            (Advisor, Scheduled),
            (Technician, InRepair),
            (Technician, Qc),
            (QcInspector, Delivered),
            (CustomerService, FollowUp),
            (CustomerService, Closed),
        ];
        let (mut s, mut p) = (Reported, None);
        for (role, to) in steps {
            let t = transition(role, s, p, to).unwrap();
            (s, p) = (t.to, t.prior);
        }
        assert_eq!(s, Closed);
        assert!(allowed_next(Closed, None).is_empty());
    }

    #[test]
    fn illegal_move_names_current_and_allowed() {
        let err = transition(Advisor, Reported, None, Delivered).unwrap_err();
        match err {
            TransitionError::Illegal { current, allowed, .. } => {
                assert_eq!(current, Reported);
                assert_eq!(allowed, vec![Intake, OnHold, Escalated, Cancelled]);
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn escalate_from_every_open_state_and_hand_back() {
        for s in CaseStatus::ALL.into_iter().filter(|s| !s.is_terminal() && *s != Escalated) {
            let prior = if s == OnHold { Some(Estimated) } else { None };
            let t = transition(Technician, s, prior, Escalated).unwrap();
            let expect = if s == OnHold { Estimated } else { s };
            assert_eq!(t.prior, Some(expect), "from {s}");
            let back = hand_back(Advisor, t.to, t.prior).unwrap();
            assert_eq!(back.to, expect);
            assert_eq!(back.prior, None);
        }
        assert!(transition(Advisor, Closed, None, Escalated).is_err());
    }

    #[test]
    fn roles_are_least_privilege() {
        assert!(matches!(transition(Technician, Reported, None, Intake), Err(TransitionError::Forbidden { .. })));
        assert!(matches!(transition(HqAuditor, Reported, None, Escalated), Err(TransitionError::Forbidden { .. })));
        assert!(transition(QcInspector, Qc, None, InRepair).is_ok());
        assert!(transition(QcInspector, Scheduled, None, InRepair).is_err());
        assert!(matches!(hand_back(Technician, Escalated, Some(Qc)), Err(TransitionError::Forbidden { .. })));
        assert!(matches!(hand_back(Advisor, Intake, None), Err(TransitionError::NotPaused { .. })));
    }

    #[test]
    fn no_cancel_once_work_started() {
        assert!(!allowed_next(InRepair, None).contains(&Cancelled));
        assert!(allowed_next(Scheduled, None).contains(&Cancelled));
    }
}
