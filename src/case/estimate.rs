//! The estimate stage: the case's one finding list + the catalogue + the bays' bookings → a
//! deterministic plan (line items, total, range, duration, free slots), stored as a new estimate
//! version with its items, a timeline event, an outbox record and an audit row, and the case moves
//! to `estimated` (a new version on an approved or scheduled case needs a new approval). The LLM
//! only words the customer-facing explanation, and any number it invents sends the template text
//! instead (`estimate::explain`).
//!
//! What is priced: confirmed and corrected findings (as corrected), pending findings from the
//! customer's words or an advisor, and pending photo findings at or above the review threshold.
//! Rejected findings never are; photo findings below the threshold are listed as awaiting review.

use std::sync::Arc;

use serde::Serialize;

use super::CaseError;
use crate::catalog::SharedCatalog;
use crate::domain::vocab::Lang;
use crate::domain::CaseStatus;
use crate::domain::{new_id, now, Actor};
use crate::estimate::{self, Booking, PartsChoice, PlanRequest, RepairPlan};
use crate::intake::policy::IntakeState;
use crate::llm::prompts::Templates;
use crate::llm::TextGen;
use crate::store::cases::Event;
use crate::store::estimates::{self as repo, Item, NewEstimate, StoredEstimate};
use crate::store::findings::FindingRecord;
use crate::store::{self, audit, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct EstimateView {
    pub id: String,
    pub version: i64,
    pub plan: PricedPlan,
    pub explanation: String,
    pub explanation_from_llm: bool,
    pub case_status: crate::domain::CaseStatus,
}

/// The plan with the finding ids its `finding` indexes refer to, and the photo findings left out
/// until a person confirms them.
#[derive(Debug, Clone, Serialize)]
pub struct PricedPlan {
    #[serde(flatten)]
    pub plan: RepairPlan,
    pub finding_ids: Vec<String>,
    pub awaiting_review: Vec<AwaitingReview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AwaitingReview {
    pub finding_id: String,
    pub part: String,
    pub damage_type: String,
    pub confidence: Option<f64>,
}

/// Whether a finding is priced now (`Some(true)`), waits for a person (`Some(false)`), or is out.
fn priced(f: &FindingRecord, review_threshold: f64) -> Option<bool> {
    match f.review_status.as_str() {
        "rejected" => None,
        "confirmed" | "corrected" => Some(true),
        _ if f.has_source("customer") || f.has_source("advisor") => Some(true),
        _ => Some(f.confidence.unwrap_or(0.0) >= review_threshold),
    }
}

#[derive(Clone)]
pub struct EstimateService {
    store: store::Store,
    engine: Arc<dyn TextGen>,
    catalog: SharedCatalog,
    templates: Arc<Templates>,
    store_id: String,
    review_threshold: f64,
}

fn fen(cny: f64) -> i64 {
    (cny * 100.0).round() as i64
}

/// Appointment times are stored as local wall-clock times ("2026-12-07T09:00:00").
pub(crate) fn parse_local(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, LOCAL_FMT)
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.naive_local()))
}

pub(crate) const LOCAL_FMT: &str = "%Y-%m-%dT%H:%M:%S";

/// The statuses an estimate may be made in: after assessment, or a new version later.
const ESTIMABLE: [CaseStatus; 3] = [CaseStatus::Assessed, CaseStatus::Estimated, CaseStatus::Scheduled];

impl EstimateService {
    /// `catalog` is shared with the HQ bundle applier, which replaces it when HQ sends new prices.
    pub fn new(
        store: store::Store,
        engine: Arc<dyn TextGen>,
        catalog: SharedCatalog,
        store_id: String,
        review_threshold: f32,
    ) -> EstimateService {
        EstimateService {
            store,
            engine,
            catalog,
            templates: Arc::new(Templates::builtin()),
            store_id,
            review_threshold: f64::from(review_threshold),
        }
    }

    pub async fn create(&self, actor: &Actor, case_id: String, parts_choice: PartsChoice) -> Result<EstimateView, CaseError> {
        let id = case_id.clone();
        let today = chrono::Local::now().naive_local().format(LOCAL_FMT).to_string();
        let threshold = self.review_threshold;
        let (lang, chosen, awaiting, bookings) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                if !ESTIMABLE.contains(&case.status) {
                    return Err(CaseError::state(
                        "not_assessed",
                        format!(
                            "case is {}; an estimate is made once the case is assessed (findings in, photos passed or waived)",
                            case.status
                        ),
                    ));
                }
                let lang = match store::intake::state(tx, &id)? {
                    Some((s, _)) => {
                        serde_json::from_str::<IntakeState>(&s)
                            .map_err(|e| StoreError::Corrupt(format!("the intake conversation of case {id}: {e}")))?
                            .lang
                    }
                    None => None,
                };
                let (mut chosen, mut awaiting) = (Vec::new(), Vec::new());
                for f in store::findings::of_case(tx, &id)? {
                    match priced(&f, threshold) {
                        Some(true) => chosen.push((f.id.clone(), super::to_domain(&f)?)),
                        Some(false) => awaiting.push(AwaitingReview {
                            finding_id: f.id.clone(),
                            part: f.part.clone(),
                            damage_type: f.damage_type.clone(),
                            confidence: f.confidence,
                        }),
                        None => {}
                    }
                }
                Ok((lang, chosen, awaiting, store::schedule::bookings_after(tx, &today)?))
            })
            .await?;
        if chosen.is_empty() {
            return Err(CaseError::state(
                "no_findings",
                "no findings to price: take the customer's words, confirm photo findings, or add a finding first",
            ));
        }
        let (finding_ids, findings): (Vec<String>, Vec<crate::domain::Finding>) = chosen.into_iter().unzip();
        let booked: Vec<Booking> =
            bookings.iter().filter_map(|(a, b)| Some(Booking { start: parse_local(a)?, end: parse_local(b)? })).collect();
        let (catalog, templates, store_id) = (self.catalog.get(), self.templates.clone(), self.store_id.clone());
        let lang = lang.unwrap_or(Lang::Zh);
        // Planning is cheap, but not for the async runtime's threads.
        let (plan, explanation) = tokio::task::spawn_blocking(move || -> Result<_, estimate::EstimateError> {
            let req = PlanRequest {
                findings: &findings,
                store_id: &store_id,
                parts_choice,
                now: chrono::Local::now().naive_local(),
                booked: &booked,
            };
            let plan = estimate::plan(&catalog, &req)?;
            // The template's wording now; the model's follows through `phrase` (it takes seconds on
            // a CPU box, and the advisor should not wait for it to see the price).
            let explanation = estimate::explain(&plan, &crate::llm::NoneTextGen, &templates, lang)?;
            Ok((plan, explanation))
        })
        .await
        .map_err(|_| CaseError::Store(StoreError::Panicked))?
        .map_err(|e| match e {
            estimate::EstimateError::NoFindings => CaseError::state("no_findings", "no findings to price"),
            e => CaseError::Unavailable(format!("cannot word the plan: {e}")),
        })?;
        let plan = PricedPlan { plan, finding_ids, awaiting_review: awaiting };
        let plan_json = serde_json::to_string(&plan).map_err(|e| StoreError::Encode(format!("the plan: {e}")))?;
        let estimate_id = new_id();
        let actor = actor.clone();
        let (p, text, from_llm, eid) = (plan.clone(), explanation.text.clone(), explanation.from_llm, estimate_id.clone());
        let (version, case_status) = self
            .store
            .write(move |tx| -> Result<(i64, CaseStatus), CaseError> {
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                let p = &p.plan;
                let mut items: Vec<Item> = p
                    .labour
                    .iter()
                    .map(|l| Item {
                        kind: "labour",
                        code: &l.code,
                        name_zh: &l.name_zh,
                        name_en: &l.name_en,
                        hours: Some(l.hours),
                        rate_fen: Some(fen(l.rate)),
                        qty: None,
                        unit_price_fen: None,
                        amount_fen: fen(l.amount),
                        part_origin: None,
                    })
                    .collect();
                items.extend(p.parts.iter().map(|x| Item {
                    kind: "part",
                    code: &x.part_no,
                    name_zh: &x.name_zh,
                    name_en: &x.name_en,
                    hours: None,
                    rate_fen: None,
                    qty: Some(x.qty as f64),
                    unit_price_fen: Some(fen(if x.qty > 0 { x.amount / x.qty as f64 } else { 0.0 })),
                    amount_fen: fen(x.amount),
                    part_origin: Some(match x.chosen {
                        PartsChoice::Oem => "oem",
                        PartsChoice::Aftermarket => "aftermarket",
                    }),
                }));
                let at = now();
                let e = NewEstimate {
                    id: &eid,
                    case_id: &case_id,
                    total_fen: fen(p.total),
                    min_fen: p.range.map(|r| fen(r.0)),
                    max_fen: p.range.map(|r| fen(r.1)),
                    duration_days: p.days as f64,
                    created_by: actor.user_id,
                    at: &at,
                    plan_json: &plan_json,
                    explanation: &text,
                    explanation_from_llm: from_llm,
                };
                let v = repo::insert(tx, &e, &items)?;
                audit::record(tx, &actor, "estimate.create", "case", Some(&case_id), "ok")?;
                let why = format!("estimate v{v}: ¥{:.2}, {} day(s)", p.total, p.days);
                if case.status == CaseStatus::Estimated {
                    // A revision: the case stays estimated, and the new version needs its own approval.
                    store::cases::note(tx, &case_id, &actor, &at, false, Event::note("estimate_revised", &why))?;
                    case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                } else if ESTIMABLE.contains(&case.status) {
                    super::stage_move(tx, &mut case, CaseStatus::Estimated, &actor, "estimated", Some(&why))?;
                } else {
                    return Err(CaseError::state("not_assessed", format!("case is {}; it cannot be estimated now", case.status)));
                }
                Ok((v, case.status))
            })
            .await?;
        Ok(EstimateView {
            id: estimate_id,
            version,
            plan,
            explanation: explanation.text,
            explanation_from_llm: explanation.from_llm,
            case_status,
        })
    }

    /// The threshold below which a photo finding waits for a person.
    pub fn review_threshold(&self) -> f64 {
        self.review_threshold
    }

    /// Whether a model is there to word estimates.
    pub fn can_phrase(&self) -> bool {
        self.engine.is_available()
    }

    /// The model's wording of the case's latest estimate, handed to `on_token` as it arrives. The
    /// text is stored (with a timeline event and an audit row) only if it passes the number check;
    /// otherwise the template's wording stays. HQ's estimate record carries the plan, not the
    /// wording, so no outbox record is written.
    pub async fn phrase(
        &self,
        actor: &Actor,
        case_id: String,
        mut on_token: Box<dyn FnMut(&str) -> bool + Send>,
    ) -> Result<estimate::Explanation, CaseError> {
        let id = case_id.clone();
        let (stored, lang) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                let e = repo::latest(tx, &id)?.ok_or(CaseError::NotFound("estimate"))?;
                let lang = match store::intake::state(tx, &id)? {
                    Some((s, _)) => serde_json::from_str::<IntakeState>(&s).ok().and_then(|st| st.lang),
                    None => None,
                };
                Ok((e, lang.unwrap_or(Lang::Zh)))
            })
            .await?;
        let plan: RepairPlan = serde_json::from_value(stored.plan.clone())
            .map_err(|e| StoreError::Corrupt(format!("the plan of estimate {}: {e}", stored.id)))?;
        let (engine, templates) = (self.engine.clone(), self.templates.clone());
        let x = tokio::task::spawn_blocking(move || {
            estimate::explain_streaming(&plan, engine.as_ref(), &templates, lang, Some(&mut *on_token))
        })
        .await
        .map_err(|_| CaseError::Store(StoreError::Panicked))?
        .map_err(|e| CaseError::Unavailable(format!("cannot word the plan: {e}")))?;
        if !x.from_llm {
            if let Some(why) = &x.rejected {
                tracing::info!(case.id = %case_id, why = %why, "the model's wording was not used");
            }
            return Ok(x);
        }
        let (text, eid, actor) = (x.text.clone(), stored.id.clone(), actor.clone());
        self.store
            .write(move |tx| -> Result<(), CaseError> {
                // Only the version it was made for: a newer estimate keeps its own wording.
                if repo::set_explanation(tx, &eid, &text)? {
                    store::cases::note(
                        tx,
                        &case_id,
                        &actor,
                        &now(),
                        false,
                        Event::note("estimate_worded", "the assistant worded the estimate"),
                    )?;
                    audit::record(tx, &actor, "estimate.word", "case", Some(&case_id), "ok")?;
                }
                Ok(())
            })
            .await?;
        Ok(x)
    }

    pub async fn latest(&self, case_id: String) -> Result<StoredEstimate, CaseError> {
        self.store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                repo::latest(tx, &case_id)?.ok_or(CaseError::NotFound("estimate"))
            })
            .await
    }
}
