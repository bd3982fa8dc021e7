//! The priced repair plan on a case: findings from intake + the catalogue + the bays' bookings →
//! a deterministic plan (line items, total, range, duration, free slots), stored as a new estimate
//! version with its items, an outbox row and an audit row. The LLM only words the customer-facing
//! explanation, and any number it invents sends the template text instead (`estimate::explain`).

use std::sync::Arc;

use serde::Serialize;

use super::CaseError;
use crate::catalog::SharedCatalog;
use crate::domain::{new_id, now, Actor};
use crate::estimate::{self, Booking, PartsChoice, PlanRequest, RepairPlan};
use crate::intake::policy::IntakeState;
use crate::llm::prompts::{Lang, Templates};
use crate::llm::TextGen;
use crate::store::estimates::{self as repo, Item, NewEstimate, StoredEstimate};
use crate::store::{self, audit, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct EstimateView {
    pub id: String,
    pub version: i64,
    pub plan: RepairPlan,
    pub explanation: String,
    pub explanation_from_llm: bool,
}

#[derive(Clone)]
pub struct EstimateService {
    store: store::Store,
    engine: Arc<dyn TextGen>,
    catalog: SharedCatalog,
    templates: Arc<Templates>,
    store_id: String,
}

fn fen(cny: f64) -> i64 {
    (cny * 100.0).round() as i64
}

fn parse_local(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.naive_local())
}

impl EstimateService {
    /// `catalog` is shared with the HQ bundle applier, which replaces it when HQ sends new prices.
    pub fn new(store: store::Store, engine: Arc<dyn TextGen>, catalog: SharedCatalog, store_id: String) -> EstimateService {
        EstimateService { store, engine, catalog, templates: Arc::new(Templates::builtin()), store_id }
    }

    pub async fn create(&self, actor: &Actor, case_id: String, parts_choice: PartsChoice) -> Result<EstimateView, CaseError> {
        let id = case_id.clone();
        let today = now();
        let (state, bookings) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                let state = store::intake::state(tx, &id)?.and_then(|(s, _)| serde_json::from_str::<IntakeState>(&s).ok());
                Ok((state, repo::bookings_after(tx, &today)?))
            })
            .await?;
        let state = state.filter(|s| !s.findings.is_empty()).ok_or_else(|| {
            CaseError::Store(StoreError::Conflict(
                "no findings on this case yet: run the intake conversation (or add findings) first".into(),
            ))
        })?;
        let booked: Vec<Booking> =
            bookings.iter().filter_map(|(a, b)| Some(Booking { start: parse_local(a)?, end: parse_local(b)? })).collect();
        let (engine, catalog, templates, store_id) =
            (self.engine.clone(), self.catalog.get(), self.templates.clone(), self.store_id.clone());
        let lang = state.lang.unwrap_or(Lang::Zh);
        // Planning is cheap; the explanation may call the LLM: both off the async runtime.
        let (plan, explanation) = tokio::task::spawn_blocking(move || -> Result<_, estimate::EstimateError> {
            let req = PlanRequest {
                findings: &state.findings,
                store_id: &store_id,
                parts_choice,
                now: chrono::Local::now().naive_local(),
                booked: &booked,
            };
            let plan = estimate::plan(&catalog, &req)?;
            let explanation = estimate::explain(&plan, engine.as_ref(), &templates, lang)?;
            Ok((plan, explanation))
        })
        .await
        .map_err(|_| CaseError::Store(StoreError::Panicked))?
        .map_err(|e| match e {
            estimate::EstimateError::NoFindings => CaseError::Store(StoreError::Conflict("no findings to price".into())),
            e => CaseError::Store(StoreError::Conflict(format!("cannot price the plan: {e}"))),
        })?;

        let plan_json = serde_json::to_string(&plan).map_err(|e| StoreError::Conflict(format!("cannot encode the plan: {e}")))?;
        let estimate_id = new_id();
        let actor = actor.clone();
        let (p, text, from_llm, eid) = (plan.clone(), explanation.text.clone(), explanation.from_llm, estimate_id.clone());
        let version = self
            .store
            .write(move |tx| -> Result<i64, CaseError> {
                if store::cases::get(tx, &case_id)?.is_none() {
                    return Err(CaseError::NotFound("case"));
                }
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
                Ok(v)
            })
            .await?;
        Ok(EstimateView { id: estimate_id, version, plan, explanation: explanation.text, explanation_from_llm: explanation.from_llm })
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
