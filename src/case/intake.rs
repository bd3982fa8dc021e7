//! Guided intake on a case: the customer's words in, the assistant's next question out.
//!
//! The dialogue policy (`intake::policy`) is pure and may call the LLM; it runs off the async
//! runtime. Then one transaction stores the customer message, the reply, the new conversation
//! state, the customer's findings (merged into the case's one finding list), an outbox row for HQ
//! and an audit row. The first message moves a reported case to `intake`; a turn after which the
//! preconditions hold moves it on to `assessed`. A turn that ran without the model where the
//! lexicon was unsure flags the case for a person. An unreadable stored state is an error, never
//! silently a new conversation.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::CaseError;
use crate::domain::validate;
use crate::domain::{new_id, CaseStatus, Finding};
use crate::domain::{now, Actor};
use crate::intake::policy::{self, IntakeContext, IntakeState, MissingFact, NextAction, Policy};
use crate::intake::{ExtractedFinding, IntakeError, MAX_TEXT_CHARS};
use crate::llm::prompts::Templates;
use crate::llm::TextGen;
use crate::store::cases::Event;
use crate::store::findings::{self as findings_repo, FindingRecord};
use crate::store::intake::{self as repo, Message};
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

    /// A customer message and the assistant's next question, worded by the model within its
    /// short budget when phrasing is on (the JSON API's turn).
    pub async fn message(&self, actor: &Actor, case_id: String, text: String) -> Result<TurnView, CaseError> {
        self.turn(actor, case_id, text, self.llm_phrasing).await
    }

    /// The same turn answered at once with the template's question; when phrasing is on, the
    /// question is marked for `phrase_last` to reword while the tablet shows it (the tablet's turn).
    pub async fn message_now(&self, actor: &Actor, case_id: String, text: String) -> Result<TurnView, CaseError> {
        self.turn(actor, case_id, text, false).await
    }

    /// Whether the model may reword the assistant's questions.
    pub fn can_phrase(&self) -> bool {
        self.llm_phrasing && self.engine.is_available()
    }

    /// The model's rewording of the case's latest question, streamed to `on_token`. The stored
    /// question is replaced only if the rewording passes `valid_phrase` and nobody answered
    /// meanwhile; an audit row records it (the conversation's wording is not an HQ record).
    pub async fn phrase_last(
        &self,
        actor: &Actor,
        case_id: String,
        mut on_token: Box<dyn FnMut(&str) -> bool + Send>,
    ) -> Result<(String, bool), CaseError> {
        let id = case_id.clone();
        let (last, lang) = self
            .store
            .read(move |tx| -> Result<_, CaseError> {
                store::cases::get(tx, &id)?.ok_or(CaseError::NotFound("case"))?;
                let lang = match repo::state(tx, &id)? {
                    Some((s, _)) => serde_json::from_str::<IntakeState>(&s).ok().and_then(|st| st.lang),
                    None => None,
                };
                Ok((repo::last_message(tx, &id)?, lang.unwrap_or(crate::domain::Lang::Zh)))
            })
            .await?;
        let Some(last) = last.filter(|m| m.sender == "assistant" && phrase_pending(m)) else {
            return Err(CaseError::state("nothing_to_phrase", "the latest message is not a question waiting for the model's wording"));
        };
        let (engine, templates, question) = (self.engine.clone(), self.templates.clone(), last.text.clone());
        let (text, used) = tokio::task::spawn_blocking(move || {
            policy::phrase_streaming(engine.as_ref(), &templates, &question, lang, std::time::Duration::from_secs(30), Some(&mut *on_token))
        })
        .await
        .map_err(|_| CaseError::Intake(IntakeError::Encode("the intake worker stopped".into())))?;
        let mut meta = last.meta.clone().unwrap_or_else(|| json!({}));
        meta["phrase_pending"] = json!(false);
        meta["llm_phrased"] = json!(used);
        let (actor, template, new_text, mid) = (actor.clone(), last.text.clone(), text.clone(), last.id);
        let stored = self
            .store
            .write(move |tx| -> Result<bool, CaseError> {
                let words = if used { new_text.as_str() } else { template.as_str() };
                let done = repo::reword(tx, mid, &template, words, &meta)?;
                if done && used {
                    audit::record(tx, &actor, "case.message.phrase", "case", Some(&case_id), "ok")?;
                }
                Ok(done)
            })
            .await?;
        Ok((text, used && stored))
    }

    async fn turn(&self, actor: &Actor, case_id: String, text: String, phrasing: bool) -> Result<TurnView, CaseError> {
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
            .map(|(s, v)| {
                serde_json::from_str::<IntakeState>(&s)
                    .map(|st| (st, v))
                    .map_err(|e| StoreError::Corrupt(format!("the intake conversation of case {case_id}: {e}")))
            })
            .transpose()?
            .unwrap_or_default();

        let (engine, templates, pol) = (self.engine.clone(), self.templates.clone(), self.policy.clone());
        // A question the model may still reword for the tablet (its `phrase_last`).
        let pending = !phrasing && self.can_phrase();
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
                let pending = pending && v.action == NextAction::AskFacts;
                let meta = json!({ "action": v.action, "missing": v.missing, "degraded": v.degraded, "llm_phrased": out.llm_phrased,
                                   "phrase_pending": pending, "templates_version": v.templates_version });
                repo::add_message(tx, &case_id, &at, "assistant", &v.reply, Some(&meta))?;
                merge_customer_findings(tx, &case_id, &out.state.findings, &at)?;
                repo::outbox(tx, &case_id, new_version, &at, &json!({ "case_id": case_id, "findings": v.findings, "action": v.action }))?;
                if v.degraded && !case.needs_review {
                    let expected = case.version;
                    case.needs_review = true;
                    case.version += 1;
                    case.updated_at = at.clone();
                    let reason = "intake ran without the local LLM where the words were unclear; a person should check the findings";
                    store::cases::update(tx, &case, expected, &actor, Event::note("flagged", reason))?;
                }
                audit::record(tx, &actor, "case.message", "case", Some(&case_id), "ok")?;
                // The conversation is the intake stage's work: the first message starts it.
                let mut case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                if case.status == CaseStatus::Reported {
                    super::stage_move(
                        tx,
                        &mut case,
                        CaseStatus::Intake,
                        &actor,
                        "intake_started",
                        Some("the customer's first words were taken"),
                    )?;
                }
                super::assess_if_ready(tx, &case_id, &actor, "findings taken; photos passed the quality gate or were waived")?;
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

/// An assistant question whose wording the model has not been asked for yet.
pub fn phrase_pending(m: &Message) -> bool {
    m.meta.as_ref().and_then(|x| x["phrase_pending"].as_bool()).unwrap_or(false)
}

/// Merge what the customer's words now say into the case's one finding list:
/// - the same problem already listed from the customer is updated in place (unless a person
///   reviewed it: their word stands);
/// - the same problem seen on a photo or added by an advisor gains the customer as a source;
/// - anything new is added; a pending customer finding the words no longer say is withdrawn (or,
///   when a photo or advisor also reports it, only loses the customer as a source).
fn merge_customer_findings(tx: &store::Tx, case_id: &str, said: &[Finding], at: &str) -> Result<(), StoreError> {
    let existing = findings_repo::of_case(tx, case_id)?;
    let mut kept = vec![false; existing.len()];
    for f in said {
        let (part, pos, dmg) = (f.part.id(), f.position.map(|p| p.id()), f.damage_type.id());
        let exact = |e: &FindingRecord| e.part == part && e.position.as_deref() == pos && e.damage_type == dmg;
        if let Some(i) = (0..existing.len()).find(|&i| !kept[i] && existing[i].has_source("customer") && exact(&existing[i])) {
            kept[i] = true;
            let e = &existing[i];
            if e.review_status != "pending" {
                continue;
            }
            let mut u = e.clone();
            u.length_cm = f.length_cm;
            u.primer_visible = f.primer_visible;
            u.occurs_when = f.occurs_when.clone();
            u.facts = f.facts.clone();
            if u != *e {
                u.updated_at = at.to_string();
                findings_repo::save(tx, &u)?;
            }
            continue;
        }
        let other = (0..existing.len()).find(|&i| {
            !kept[i]
                && !existing[i].has_source("customer")
                && existing[i].review_status != "rejected"
                && findings_repo::same_problem(&existing[i], part, pos, dmg)
        });
        if let Some(i) = other {
            kept[i] = true;
            let mut u = existing[i].clone();
            u.sources.push("customer".into());
            u.position = u.position.or(pos.map(String::from));
            u.length_cm = u.length_cm.or(f.length_cm);
            u.primer_visible = u.primer_visible.or(f.primer_visible);
            u.occurs_when = u.occurs_when.or(f.occurs_when.clone());
            u.facts.extend(f.facts.clone());
            u.updated_at = at.to_string();
            findings_repo::save(tx, &u)?;
            continue;
        }
        findings_repo::insert(
            tx,
            &FindingRecord {
                id: new_id(),
                case_id: case_id.to_string(),
                source: "customer".into(),
                sources: vec!["customer".into()],
                part: part.into(),
                position: pos.map(String::from),
                damage_type: dmg.into(),
                length_cm: f.length_cm,
                measured_cm: None,
                primer_visible: f.primer_visible,
                occurs_when: f.occurs_when.clone(),
                facts: f.facts.clone(),
                confidence: None,
                review_status: "pending".into(),
                photo_id: None,
                bbox: None,
                note: None,
                updated_at: at.to_string(),
            },
        )?;
    }
    for (i, e) in existing.iter().enumerate() {
        if kept[i] || !e.has_source("customer") || e.review_status != "pending" {
            continue;
        }
        if e.sources.len() == 1 {
            findings_repo::withdraw(tx, e, at)?;
        } else {
            let mut u = e.clone();
            u.sources.retain(|s| s != "customer");
            u.updated_at = at.to_string();
            findings_repo::save(tx, &u)?;
        }
    }
    Ok(())
}
