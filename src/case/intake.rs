//! Guided intake on a case: the customer's words in, the assistant's next question out.
//!
//! The dialogue policy (`intake::policy`) is pure and may call the LLM; it runs off the async
//! runtime. Then one transaction stores the customer message, the reply, the new conversation
//! state, the customer findings (mirrored into `findings`), an outbox row for HQ and an audit row.
//! A turn that ran without the model where the lexicon was unsure flags the case for a person.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::CaseError;
use crate::domain::validate;
use crate::domain::{now, Actor};
use crate::intake::policy::{self, IntakeContext, IntakeState, MissingFact, NextAction, Policy};
use crate::intake::{ExtractedFinding, IntakeError, MAX_TEXT_CHARS};
use crate::llm::prompts::Templates;
use crate::llm::TextGen;
use crate::store::cases::Event;
use crate::store::intake::{self as repo, FindingRow, Message};
use crate::store::{self, audit, StoreError};

/// What a tablet shows after a customer message.
#[derive(Debug, Clone, Serialize)]
pub struct TurnView {
    pub reply: String,
    pub findings: Vec<ExtractedFinding>,
    pub missing: Vec<MissingFact>,
    pub action: NextAction,
    /// The local LLM was unavailable where the lexicon was unsure: a person should check.
    pub degraded: bool,
    pub templates_version: u32,
}

#[derive(Clone)]
pub struct IntakeService {
    store: store::Store,
    engine: Arc<dyn TextGen>,
    templates: Arc<Templates>,
    policy: Arc<Policy>,
    llm_phrasing: bool,
}

impl IntakeService {
    pub fn new(store: store::Store, engine: Arc<dyn TextGen>, llm_phrasing: bool) -> IntakeService {
        IntakeService { store, engine, templates: Arc::new(Templates::builtin()), policy: Arc::new(Policy::builtin()), llm_phrasing }
    }

    pub fn engine_name(&self) -> String {
        self.engine.name().to_string()
    }

    /// The language model's health (worker state, restarts) for operators.
    pub fn engine_status(&self) -> crate::llm::EngineStatus {
        self.engine.status()
    }

    pub async fn message(&self, actor: &Actor, case_id: String, text: String) -> Result<TurnView, CaseError> {
        let text = validate::text("text", &text, MAX_TEXT_CHARS)?;
        let id = case_id.clone();
        let (state, version) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status.is_terminal() {
                    return Err(StoreError::Conflict(format!("case is {}; it takes no more messages", case.status)).into());
                }
                Ok(repo::state(tx, &id)?)
            })
            .await?
            .map(|(s, v)| (serde_json::from_str::<IntakeState>(&s).unwrap_or_default(), v))
            .unwrap_or_default();

        let (engine, templates, pol, phrasing) = (self.engine.clone(), self.templates.clone(), self.policy.clone(), self.llm_phrasing);
        let said = text.clone();
        let out = tokio::task::spawn_blocking(move || {
            let ctx = IntakeContext { engine: engine.as_ref(), templates: &templates, policy: &pol, llm_phrasing: phrasing };
            policy::turn(&ctx, &state, &said)
        })
        .await
        .map_err(|_| CaseError::Intake(IntakeError::Encode("the intake worker stopped".into())))??;

        let view = TurnView {
            reply: out.reply.clone(),
            findings: out.state.findings.iter().map(ExtractedFinding::from).collect(),
            missing: out.missing.clone(),
            action: out.action,
            degraded: out.degraded,
            templates_version: out.templates_version,
        };
        let state_json = serde_json::to_string(&out.state).map_err(|e| CaseError::Intake(IntakeError::Encode(e.to_string())))?;
        let actor = actor.clone();
        let v = view.clone();
        self.store
            .write(move |tx| -> Result<(), CaseError> {
                let at = now();
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                let new_version = repo::save_state(tx, &case_id, &state_json, version, &at)?;
                repo::add_message(tx, &case_id, &at, "customer", &text, Some(&json!({ "entered_by": actor.username })))?;
                let meta = json!({ "action": v.action, "missing": v.missing, "degraded": v.degraded, "llm_phrased": out.llm_phrased, "templates_version": v.templates_version });
                repo::add_message(tx, &case_id, &at, "assistant", &v.reply, Some(&meta))?;
                let rows: Vec<FindingRow> = out
                    .state
                    .findings
                    .iter()
                    .map(|f| FindingRow {
                        part: f.part.id(),
                        position: f.position.map(|p| p.id()),
                        damage_type: f.damage_type.id(),
                        length_cm: f.length_cm,
                        primer_visible: f.primer_visible,
                        occurs_when: f.occurs_when.as_deref(),
                    })
                    .collect();
                repo::replace_customer_findings(tx, &case_id, &rows, &at)?;
                repo::outbox(tx, &case_id, new_version, &at, &json!({ "case_id": case_id, "findings": v.findings, "action": v.action }))?;
                if v.degraded && !case.needs_review {
                    let expected = case.version;
                    case.needs_review = true;
                    case.version += 1;
                    case.updated_at = at.clone();
                    let reason = "intake ran without the local LLM where the words were unclear; a person should check the findings";
                    store::cases::update(tx, &case, expected, &actor, Event { kind: "flagged", from: None, to: None, reason: Some(reason) })?;
                }
                audit::record(tx, &actor, "case.message", "case", Some(&case_id), "ok")?;
                Ok(())
            })
            .await?;
        Ok(view)
    }

    /// The conversation of a case (customer words are personal data: the read is audited).
    pub async fn messages(&self, actor: &Actor, case_id: String) -> Result<Vec<Message>, CaseError> {
        let id = case_id.clone();
        let found = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                Ok(repo::messages(tx, &id)?)
            })
            .await;
        super::audit_read(&self.store, actor, "case.messages.read", "case", Some(case_id), found.is_ok()).await?;
        found
    }
}
