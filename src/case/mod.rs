//! The case workflow service: customers and vehicles at intake, case creation, the lifecycle
//! (manual moves, escalate to a person, hand back), assignment, the finding list, and reads. The
//! stages are files here in flow order: intake → photos → estimate → schedule → work_order → qc
//! → follow_up; each does its work and moves the case through `stage_move`.
//!
//! Every write commits together with its timeline event, outbox row and audit row (one transaction
//! on the store's writer). Reads of a customer's personal data write an audit row first.

pub mod bay;
pub mod dataset;
pub mod estimate;
pub mod follow_up;
pub mod intake;
pub mod photos;
pub mod qc;
pub mod schedule;
pub mod work_order;

use serde::{Deserialize, Serialize};

use crate::domain::case::{self as rules, Case};
use crate::domain::validate::{self, Invalid};
use crate::domain::{new_id, now, Actor, CaseStatus, Customer, Photo, TimelineEntry, TransitionError, Vehicle};
use crate::store::cases::{CaseFilter, Event};
use crate::store::{self, audit, people, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Intake(#[from] crate::intake::IntakeError),
    /// The work cannot be done in the case's current state (no findings to price, a paused case…).
    #[error("{message}")]
    State { code: &'static str, message: String },
    /// A safeguard cannot run, so the protected thing is refused (never passed through).
    #[error("{0}")]
    Unavailable(String),
}

impl CaseError {
    pub fn state(code: &'static str, message: impl Into<String>) -> CaseError {
        CaseError::State { code, message: message.into() }
    }
}

static POLICY: std::sync::LazyLock<crate::intake::policy::Policy> = std::sync::LazyLock::new(crate::intake::policy::Policy::builtin);

/// A stored finding in the domain's words (for pricing and the photo rule).
pub(crate) fn to_domain(f: &store::findings::FindingRecord) -> Result<crate::domain::Finding, StoreError> {
    use crate::domain::vocab::{DamageType, Part, Position};
    let bad = |what: &str, v: &str| StoreError::Corrupt(format!("finding {}: unknown {what} `{v}`", f.id));
    let part = Part::from_id(&f.part).ok_or_else(|| bad("part", &f.part))?;
    let damage = DamageType::from_id(&f.damage_type).ok_or_else(|| bad("damage type", &f.damage_type))?;
    let position = match &f.position {
        Some(p) => Some(Position::from_id(p).ok_or_else(|| bad("position", p))?),
        None => None,
    };
    let mut out = crate::domain::Finding::new(part, position, damage);
    out.length_cm = priced_length(f.length_cm, f.measured_cm);
    out.primer_visible = f.primer_visible;
    out.occurs_when = f.occurs_when.clone();
    out.facts = f.facts.clone();
    Ok(out)
}

/// The length a plan uses: a photo's measurement where it agrees with what the customer said
/// (within 15 %), the customer's (or a person's) where they disagree (a person was flagged), and
/// the measurement alone where nobody said a length.
pub(crate) fn priced_length(stated: Option<f64>, measured: Option<f64>) -> Option<f64> {
    match (stated, measured) {
        (Some(s), Some(m)) if crate::vision::measure::disagreement(s, m).is_none() => Some(m),
        (Some(s), _) => Some(s),
        (None, m) => m,
    }
}

/// What the stage guards need to know about a case, read in the caller's transaction.
pub(crate) fn facts(tx: &store::Tx, case_id: &str) -> Result<rules::Facts, StoreError> {
    let findings: Vec<_> = store::findings::of_case(tx, case_id)?.into_iter().filter(|f| f.review_status != "rejected").collect();
    let mut photos_needed = 0;
    for f in &findings {
        if POLICY.needs_photos(&to_domain(f)?) {
            photos_needed = rules::REQUESTED_PHOTOS;
        }
    }
    let latest = store::estimates::latest_id(tx, case_id)?;
    let approved = match &latest {
        Some((id, _)) => store::schedule::approval_of(tx, id)?.is_some(),
        None => false,
    };
    let wo = store::workshop::work_order_of(tx, case_id)?;
    Ok(rules::Facts {
        findings: findings.len() as u32,
        photos_needed,
        photos_passed: store::photos::passed_quality(tx, case_id)?,
        photos_waived: store::photos::waiver(tx, case_id)?.is_some(),
        estimate: latest.is_some(),
        approved,
        appointment: store::schedule::booked_of(tx, case_id)?.is_some(),
        baseline_signed: store::workshop::signoff_of(tx, case_id)?.is_some(),
        work_order: wo.is_some(),
        labour_open: match &wo {
            Some(w) => store::workshop::lines_of(tx, &w.id)?.iter().filter(|l| l.kind == "labour" && l.status != "done").count() as u32,
            None => 0,
        },
        qc_passed: store::workshop::latest_report(tx, case_id)?.is_some_and(|r| r.passed),
        alerts_open: store::workshop::open_alerts(tx, case_id)?,
        follow_up_done: store::follow_up::task_of_case(tx, case_id)?.is_some_and(|t| t.status != "pending"),
        hot_alerts_open: store::follow_up::open_hot_alerts(tx, case_id)?,
    })
}

/// Move a case as the result of a stage's work (guarded by the domain's preconditions), with its
/// timeline event, outbox record and audit row, in the caller's transaction.
pub(crate) fn stage_move(
    tx: &store::Tx,
    case: &mut Case,
    to: CaseStatus,
    actor: &Actor,
    kind: &str,
    reason: Option<&str>,
) -> Result<(), CaseError> {
    let f = facts(tx, &case.id)?;
    let t = rules::stage_transition(case.status, case.prior_status, to, &f)?;
    let expected = case.version;
    case.status = t.to;
    case.prior_status = t.prior;
    case.version += 1;
    case.updated_at = now();
    store::cases::update(tx, case, expected, actor, Event { kind, from: Some(t.from), to: Some(t.to), reason })?;
    audit::record(tx, actor, &format!("case.{kind}"), "case", Some(&case.id), "ok")?;
    Ok(())
}

/// Move an intake case to `assessed` when its preconditions now hold (called by the stages whose
/// work can complete them: a message, a photo analysis, a waiver, a review). Quietly does nothing
/// otherwise; returns whether it moved.
pub(crate) fn assess_if_ready(tx: &store::Tx, case_id: &str, actor: &Actor, why: &str) -> Result<bool, CaseError> {
    let Some(mut case) = store::cases::get(tx, case_id)? else { return Ok(false) };
    if case.status != CaseStatus::Intake {
        return Ok(false);
    }
    // The guard decides (facts read once): unmet preconditions just mean "not yet".
    match stage_move(tx, &mut case, CaseStatus::Assessed, actor, "assessed", Some(why)) {
        Ok(()) => Ok(true),
        Err(CaseError::Transition(TransitionError::Precondition { .. })) => Ok(false),
        Err(e) => Err(e),
    }
}

const MAX_SIGNATURE_B64: usize = 200_000;

/// A signature drawn on the tablet (`signature_png`: base64 of a PNG, at most 200,000 characters),
/// checked: the customer's approval and the baseline signature take the same.
pub(crate) fn signature_png(s: Option<&str>) -> Result<Option<Vec<u8>>, CaseError> {
    use base64::Engine;
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.len() > MAX_SIGNATURE_B64 => {
            Err(validate::invalid("signature_png", format!("at most {MAX_SIGNATURE_B64} characters of base64")).into())
        }
        Some(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| validate::invalid("signature_png", "must be base64 of a PNG image"))?;
            if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
                return Err(validate::invalid("signature_png", "must be a PNG image").into());
            }
            Ok(Some(bytes))
        }
    }
}

/// A person's decision on a finding (from the customer's words or a photo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Confirm,
    Correct,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: Decision,
    pub part: Option<String>,
    pub position: Option<String>,
    pub damage_type: Option<String>,
    pub length_cm: Option<f64>,
    pub reason: Option<String>,
}

/// A segment an advisor marks on a finding's photo (pixels of the original) and its real length:
/// the reference for measuring the finding when no part of known size is in the picture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkedReference {
    pub from: [f32; 2],
    pub to: [f32; 2],
    pub length_cm: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MeasureResult {
    pub finding: store::findings::FindingRecord,
    pub measurement: crate::vision::measure::Measurement,
    /// What the customer said for the same part, if anything.
    pub stated_cm: Vec<f64>,
    /// Stated and measured differ by more than 15 %: the case went to a person.
    pub needs_review: bool,
}

/// A finding an advisor adds by hand (seen on the car, or said in a way the assistant missed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFinding {
    pub part: String,
    pub position: Option<String>,
    pub damage_type: String,
    pub length_cm: Option<f64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub preferred_language: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVehicle {
    pub customer_id: String,
    pub vin: Option<String>,
    pub plate: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub year: Option<i32>,
    pub mileage_km: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub customer_id: String,
    pub vehicle_id: Option<String>,
    /// The customer's own words, e.g. "我的车右前门有刮痕，还有异响".
    pub summary: String,
}

/// A case with everything a tablet shows on its page.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    #[serde(flatten)]
    pub case: Case,
    pub allowed_next: Vec<CaseStatus>,
    pub vehicle: Option<Vehicle>,
    pub timeline: Vec<TimelineEntry>,
    pub photos: Vec<Photo>,
}

/// An audit row for a read of personal data, written before the data is returned.
pub(crate) async fn audit_read(
    store: &store::Store,
    actor: &Actor,
    action: &'static str,
    target: &'static str,
    id: Option<String>,
    ok: bool,
) -> Result<(), CaseError> {
    let actor = actor.clone();
    store
        .write(move |tx| {
            audit::record(tx, &actor, action, target, id.as_deref(), if ok { "ok" } else { "not_found" })?;
            Ok(())
        })
        .await
}

#[derive(Clone)]
pub struct CaseService {
    store: store::Store,
    store_id: String,
}

impl CaseService {
    pub fn new(store: store::Store, store_id: String) -> CaseService {
        CaseService { store, store_id }
    }

    pub async fn create_customer(&self, actor: &Actor, input: NewCustomer) -> Result<Customer, CaseError> {
        let t = now();
        let c = Customer {
            id: new_id(),
            name: validate::text("name", &input.name, 100)?,
            phone: validate::phone(input.phone.as_deref())?,
            email: validate::opt_text("email", input.email.as_deref(), 200)?,
            preferred_language: validate::language(input.preferred_language.as_deref())?,
            created_at: t.clone(),
            updated_at: t,
        };
        if c.email.as_deref().is_some_and(|e| !e.contains('@')) {
            return Err(validate::invalid("email", "must be an e-mail address").into());
        }
        let actor = actor.clone();
        self.store
            .write(move |tx| {
                people::insert_customer(tx, &c)?;
                audit::record(tx, &actor, "customer.create", "customer", Some(&c.id), "ok")?;
                Ok(c)
            })
            .await
    }

    pub async fn get_customer(&self, actor: &Actor, id: String) -> Result<(Customer, Vec<Vehicle>), CaseError> {
        let found = {
            let id = id.clone();
            self.store
                .read(move |tx| -> Result<_, CaseError> {
                    let c = people::customer(tx, &id)?.ok_or(CaseError::NotFound("customer"))?;
                    let v = people::vehicles_of(tx, &id)?;
                    Ok((c, v))
                })
                .await
        };
        self.audit_read(actor, "customer.read", "customer", Some(id), found.is_ok()).await?;
        found
    }

    pub async fn list_customers(
        &self,
        actor: &Actor,
        q: Option<String>,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<Customer>, CaseError> {
        let list = self.store.read(move |tx| people::list_customers(tx, q.as_deref(), before.as_deref(), limit)).await?;
        self.audit_read(actor, "customer.list", "customer", None, true).await?;
        Ok(list)
    }

    pub async fn create_vehicle(&self, actor: &Actor, input: NewVehicle) -> Result<Vehicle, CaseError> {
        let t = now();
        let v = Vehicle {
            id: new_id(),
            customer_id: input.customer_id,
            vin: validate::vin(input.vin.as_deref())?,
            plate: validate::opt_text("plate", input.plate.as_deref(), 16)?,
            make: validate::opt_text("make", input.make.as_deref(), 50)?,
            model: validate::opt_text("model", input.model.as_deref(), 50)?,
            year: validate::year(input.year)?,
            mileage_km: validate::mileage(input.mileage_km)?,
            created_at: t.clone(),
            updated_at: t,
        };
        let actor = actor.clone();
        self.store
            .write(move |tx| {
                if !people::customer_exists(tx, &v.customer_id)? {
                    return Err(validate::invalid("customer_id", "no such customer").into());
                }
                people::insert_vehicle(tx, &v)?;
                audit::record(tx, &actor, "vehicle.create", "vehicle", Some(&v.id), "ok")?;
                Ok(v)
            })
            .await
    }

    pub async fn get_vehicle(&self, id: String) -> Result<Vehicle, CaseError> {
        self.store.read(move |tx| people::vehicle(tx, &id)?.ok_or(CaseError::NotFound("vehicle"))).await
    }

    pub async fn create_case(&self, actor: &Actor, input: NewCase) -> Result<Case, CaseError> {
        let t = now();
        let case = Case {
            id: new_id(),
            store_id: self.store_id.clone(),
            customer_id: input.customer_id,
            vehicle_id: input.vehicle_id,
            status: CaseStatus::Reported,
            prior_status: None,
            summary: validate::text("summary", &input.summary, 2000)?,
            assigned_to: None,
            needs_review: false,
            created_at: t.clone(),
            updated_at: t,
            version: 1,
        };
        let actor = actor.clone();
        self.store
            .write(move |tx| {
                if !people::customer_exists(tx, &case.customer_id)? {
                    return Err(validate::invalid("customer_id", "no such customer").into());
                }
                if let Some(vid) = &case.vehicle_id {
                    match people::vehicle(tx, vid)? {
                        Some(v) if v.customer_id == case.customer_id => {}
                        Some(_) => return Err(validate::invalid("vehicle_id", "vehicle belongs to another customer").into()),
                        None => return Err(validate::invalid("vehicle_id", "no such vehicle").into()),
                    }
                }
                let ev = Event { kind: "created", from: None, to: Some(CaseStatus::Reported), reason: None };
                store::cases::insert(tx, &case, &actor, ev)?;
                audit::record(tx, &actor, "case.create", "case", Some(&case.id), "ok")?;
                Ok(case)
            })
            .await
    }

    pub async fn get_case(&self, id: String) -> Result<CaseView, CaseError> {
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                let vehicle = match &case.vehicle_id {
                    Some(v) => people::vehicle(tx, v)?,
                    None => None,
                };
                Ok(CaseView {
                    allowed_next: rules::allowed_next(case.status, case.prior_status),
                    timeline: store::cases::timeline(tx, &id)?,
                    photos: store::photos::of_case(tx, &id)?,
                    vehicle,
                    case,
                })
            })
            .await
    }

    /// Cases per status (the Today board).
    pub async fn status_counts(&self) -> Result<Vec<(String, i64)>, CaseError> {
        self.store.read(|tx| store::cases::count_by_status(tx).map_err(CaseError::from)).await
    }

    /// Open cases waiting for a person.
    pub async fn waiting_for_a_person(&self) -> Result<i64, CaseError> {
        self.store.read(|tx| store::cases::count_needs_review(tx).map_err(CaseError::from)).await
    }

    pub async fn list_cases(&self, filter: CaseFilter) -> Result<Vec<Case>, CaseError> {
        Ok(self.store.read(move |tx| store::cases::list(tx, &filter)).await?)
    }

    /// Move a case by hand (pauses, cancellation, step-backs): illegal moves come back with the
    /// allowed ones, and moves a stage owns with the stage's endpoint.
    pub async fn transition(&self, actor: &Actor, id: String, to: CaseStatus, reason: Option<String>) -> Result<Case, CaseError> {
        self.change(actor, id, "transition", reason, move |role, c| rules::manual_transition(role, c.status, c.prior_status, to)).await
    }

    /// Hand the case to a person, from any open state, in one call.
    pub async fn escalate(&self, actor: &Actor, id: String, reason: String) -> Result<Case, CaseError> {
        let reason = validate::text("reason", &reason, 1000)?;
        self.change(actor, id, "escalated", Some(reason), |role, c| {
            rules::transition(role, c.status, c.prior_status, CaseStatus::Escalated)
        })
        .await
    }

    /// A person hands a paused (escalated / on hold) case back to where it was.
    pub async fn hand_back(&self, actor: &Actor, id: String, reason: Option<String>) -> Result<Case, CaseError> {
        self.change(actor, id, "handed_back", reason, |role, c| rules::hand_back(role, c.status, c.prior_status)).await
    }

    pub async fn assign(&self, actor: &Actor, id: String, user_id: i64) -> Result<Case, CaseError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| {
                let user = store::users::by_id(tx, user_id)?;
                if !user.as_ref().is_some_and(|u| !u.disabled) {
                    return Err(validate::invalid("user_id", "no such active user").into());
                }
                let mut case = store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                let expected = case.version;
                case.assigned_to = Some(user_id);
                case.version += 1;
                case.updated_at = now();
                let reason = user.map(|u| format!("assigned to {}", u.username));
                let ev = Event { kind: "assigned", from: None, to: None, reason: reason.as_deref() };
                store::cases::update(tx, &case, expected, &actor, ev)?;
                audit::record(tx, &actor, "case.assign", "case", Some(&case.id), "ok")?;
                Ok(case)
            })
            .await
    }

    /// Load, decide with the pure rules, persist with event + outbox + audit, all in one transaction.
    async fn change<F>(&self, actor: &Actor, id: String, kind: &'static str, reason: Option<String>, decide: F) -> Result<Case, CaseError>
    where
        F: FnOnce(crate::domain::Role, &Case) -> Result<crate::domain::Transition, TransitionError> + Send + 'static,
    {
        let reason = validate::opt_text("reason", reason.as_deref(), 1000)?;
        let actor = actor.clone();
        // Unauthenticated actors never reach here; a missing role is treated as least privilege.
        let role = actor.role.unwrap_or(crate::domain::Role::HqAuditor);
        self.store
            .write(move |tx| {
                let mut case = store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                let t = decide(role, &case)?;
                let expected = case.version;
                case.status = t.to;
                case.prior_status = t.prior;
                // An escalated case is by definition waiting for a person.
                case.needs_review = t.to == CaseStatus::Escalated || (case.needs_review && t.to.is_pause());
                case.version += 1;
                case.updated_at = now();
                let ev = Event { kind, from: Some(t.from), to: Some(t.to), reason: reason.as_deref() };
                store::cases::update(tx, &case, expected, &actor, ev)?;
                audit::record(tx, &actor, &format!("case.{kind}"), "case", Some(&case.id), "ok")?;
                // A cancelled case frees its bay.
                if t.to == CaseStatus::Cancelled {
                    schedule::release_booking(tx, &case.id, &actor)?;
                }
                Ok(case)
            })
            .await
    }

    async fn audit_read(
        &self,
        actor: &Actor,
        action: &'static str,
        target: &'static str,
        id: Option<String>,
        ok: bool,
    ) -> Result<(), CaseError> {
        audit_read(&self.store, actor, action, target, id, ok).await
    }

    /// Attach a stored photo to its case; a workshop photo also records which shot it is (checked
    /// against the case's status in the same transaction).
    pub async fn attach_photo(
        &self,
        actor: &Actor,
        photo: Photo,
        shot: Option<(std::sync::Arc<crate::domain::workshop::WorkshopTables>, work_order::ShotTarget)>,
    ) -> Result<Photo, CaseError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| {
                if store::cases::get(tx, &photo.case_id)?.is_none() {
                    return Err(CaseError::NotFound("case"));
                }
                store::photos::insert(tx, &photo)?;
                if let Some((tables, target)) = &shot {
                    work_order::attach_shot(tx, tables, &photo, target)?;
                }
                audit::record(tx, &actor, "photo.upload", "photo", Some(&photo.id), "ok")?;
                Ok(photo)
            })
            .await
    }

    pub async fn findings(&self, case_id: String) -> Result<Vec<store::findings::FindingRecord>, CaseError> {
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                Ok(store::findings::of_case(tx, &case_id)?)
            })
            .await
    }

    /// An advisor adds a finding: it joins the one list (an existing finding of the same problem
    /// gains the advisor as a source instead of a second row) and counts as confirmed.
    pub async fn add_finding(&self, actor: &Actor, case_id: String, n: NewFinding) -> Result<store::findings::FindingRecord, CaseError> {
        use crate::domain::vocab::{DamageType, Part, Position};
        let part = Part::from_id(&n.part).ok_or_else(|| validate::invalid("part", "not a part of the vocabulary"))?;
        let position = match n.position.as_deref() {
            Some(p) => Some(Position::from_id(p).ok_or_else(|| validate::invalid("position", "not a position of the vocabulary"))?),
            None => None,
        };
        let damage =
            DamageType::from_id(&n.damage_type).ok_or_else(|| validate::invalid("damage_type", "not a damage type of the vocabulary"))?;
        if let Some(l) = n.length_cm {
            if !(0.0..=1000.0).contains(&l) {
                return Err(validate::invalid("length_cm", "must be between 0 and 1000").into());
            }
        }
        let note = validate::opt_text("note", n.note.as_deref(), 500)?;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status.is_terminal() {
                    return Err(CaseError::state("case_closed", format!("case is {}; it takes no more findings", case.status)));
                }
                let at = now();
                let (p, pos, d) = (part.id(), position.map(|x| x.id()), damage.id());
                let existing = store::findings::of_case(tx, &case_id)?
                    .into_iter()
                    .find(|f| f.review_status != "rejected" && store::findings::same_problem(f, p, pos, d));
                let f = match existing {
                    Some(mut f) => {
                        if !f.has_source("advisor") {
                            f.sources.push("advisor".into());
                        }
                        f.position = f.position.or(pos.map(String::from));
                        f.length_cm = n.length_cm.or(f.length_cm);
                        f.note = note.or(f.note);
                        f.review_status = "confirmed".into();
                        f.updated_at = at.clone();
                        store::findings::save(tx, &f)?;
                        f
                    }
                    None => {
                        let f = store::findings::FindingRecord {
                            id: new_id(),
                            case_id: case_id.clone(),
                            source: "advisor".into(),
                            sources: vec!["advisor".into()],
                            part: p.into(),
                            position: pos.map(String::from),
                            damage_type: d.into(),
                            length_cm: n.length_cm,
                            measured_cm: None,
                            primer_visible: None,
                            occurs_when: None,
                            facts: Default::default(),
                            confidence: None,
                            review_status: "confirmed".into(),
                            photo_id: None,
                            bbox: None,
                            note,
                            updated_at: at.clone(),
                        };
                        store::findings::insert(tx, &f)?;
                        f
                    }
                };
                let what = format!("advisor added {}/{}", f.part, f.damage_type);
                store::cases::note(tx, &case_id, &actor, &at, false, Event::note("finding_added", &what))?;
                audit::record(tx, &actor, "finding.add", "finding", Some(&f.id), "ok")?;
                assess_if_ready(tx, &case_id, &actor, "an advisor added a finding; photos passed or waived")?;
                Ok(f)
            })
            .await
    }

    /// Confirm, correct or reject a finding: the person's word replaces the machine's, is kept for
    /// retraining, and goes on the case's timeline.
    pub async fn review_finding(&self, actor: &Actor, id: String, r: Review) -> Result<store::findings::FindingRecord, CaseError> {
        use crate::domain::vocab::{DamageType, Part, Position};
        let part = r
            .part
            .as_deref()
            .map(|p| Part::from_id(p).map(|_| p.to_string()).ok_or_else(|| validate::invalid("part", "not a part of the vocabulary")))
            .transpose()?;
        let position = r
            .position
            .as_deref()
            .map(|p| {
                Position::from_id(p).map(|_| p.to_string()).ok_or_else(|| validate::invalid("position", "not a position of the vocabulary"))
            })
            .transpose()?;
        let damage = r
            .damage_type
            .as_deref()
            .map(|d| {
                DamageType::from_id(d)
                    .map(|_| d.to_string())
                    .ok_or_else(|| validate::invalid("damage_type", "not a damage type of the vocabulary"))
            })
            .transpose()?;
        if let Some(l) = r.length_cm {
            if !(0.0..=1000.0).contains(&l) {
                return Err(validate::invalid("length_cm", "must be between 0 and 1000").into());
            }
        }
        let corrections = part.is_some() || position.is_some() || damage.is_some() || r.length_cm.is_some();
        if (r.decision == Decision::Correct) != corrections {
            let msg = if corrections {
                "corrections are only taken with decision \"correct\""
            } else {
                "say what is correct: part, position, damage_type or length_cm"
            };
            return Err(validate::invalid("decision", msg).into());
        }
        let reason = validate::opt_text("reason", r.reason.as_deref(), 500)?;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut f = store::findings::get(tx, &id)?.ok_or(CaseError::NotFound("finding"))?;
                f.part = part.unwrap_or(f.part);
                f.position = position.or(f.position);
                f.damage_type = damage.unwrap_or(f.damage_type);
                f.length_cm = r.length_cm.or(f.length_cm);
                f.review_status = match r.decision {
                    Decision::Confirm => "confirmed",
                    Decision::Correct => "corrected",
                    Decision::Reject => "rejected",
                }
                .into();
                f.updated_at = now();
                store::findings::save(tx, &f)?;
                let what = format!(
                    "{} {} {}/{}{}",
                    f.review_status,
                    f.source,
                    f.part,
                    f.damage_type,
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
                let ev = Event::note("finding_reviewed", &what);
                store::cases::note(tx, &f.case_id, &actor, &f.updated_at, false, ev)?;
                audit::record(tx, &actor, "finding.review", "finding", Some(&f.id), "ok")?;
                Ok(f)
            })
            .await
    }

    /// Measure a photo finding against a reference the advisor marked; compare with the customer's
    /// words and hand the case to a person when they differ by more than 15 %.
    pub async fn measure_finding(&self, actor: &Actor, id: String, r: MarkedReference) -> Result<MeasureResult, CaseError> {
        use crate::vision::measure::{self, Reference};
        let finite = r.from.iter().chain(r.to.iter()).all(|v| v.is_finite() && *v >= 0.0 && *v <= 100_000.0);
        if !finite {
            return Err(validate::invalid("from", "pixel coordinates between 0 and 100000").into());
        }
        if !(0.1..=1000.0).contains(&r.length_cm) {
            return Err(validate::invalid("length_cm", "must be between 0.1 and 1000").into());
        }
        let reference = Reference::Marked { from: r.from, to: r.to, length_cm: r.length_cm };
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut f = store::findings::get(tx, &id)?.ok_or(CaseError::NotFound("finding"))?;
                let bbox: [f32; 4] = f
                    .bbox
                    .as_ref()
                    .and_then(|b| serde_json::from_value(b.clone()).ok())
                    .ok_or_else(|| CaseError::state("no_box", "only a finding seen on a photo has a box to measure"))?;
                let m = measure::measure(&bbox, &reference)
                    .ok_or_else(|| CaseError::from(validate::invalid("to", "the marked segment is too short (at least 2 pixels)")))?;
                f.measured_cm = Some(m.length_cm);
                f.updated_at = now();
                store::findings::save(tx, &f)?;
                let (stated, disagree) = photos::stated_vs_measured(tx, &f.case_id, &f.part, m.length_cm)?;
                let what = match disagree {
                    Some(s) => format!(
                        "{}/{} measured {} cm against a marked reference; the customer said {s} cm (more than 15 % apart): a person decides",
                        f.part, f.damage_type, m.length_cm
                    ),
                    None => format!("{}/{} measured {} cm against a marked reference", f.part, f.damage_type, m.length_cm),
                };
                let ev = Event::note("finding_measured", &what);
                store::cases::note(tx, &f.case_id, &actor, &f.updated_at, disagree.is_some(), ev)?;
                audit::record(tx, &actor, "finding.measure", "finding", Some(&f.id), "ok")?;
                Ok(MeasureResult { finding: f, measurement: m, stated_cm: stated, needs_review: disagree.is_some() })
            })
            .await
    }

    pub async fn case_exists(&self, id: String) -> Result<bool, CaseError> {
        Ok(self.store.read(move |tx| store::cases::get(tx, &id).map(|c| c.is_some())).await?)
    }

    pub async fn photo(&self, actor: &Actor, id: String) -> Result<Photo, CaseError> {
        let found = {
            let id = id.clone();
            self.store.read(move |tx| store::photos::get(tx, &id)?.ok_or(CaseError::NotFound("photo"))).await
        };
        self.audit_read(actor, "photo.read", "photo", Some(id), found.is_ok()).await?;
        found
    }
}
