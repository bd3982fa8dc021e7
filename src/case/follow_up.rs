//! Stage 7, follow-up (回访): the task opened at delivery and due 48 h later, the customer's
//! consent, the phone call (a case summary and a script the local model words from the case,
//! checked like the estimate's explanation), answers from the call or from HQ's survey page, and
//! the alerts they raise for a person.
//!
//! Invariants:
//! - The case moves `delivered → follow_up` only when the follow-up ends (an answer, or the
//!   customer could not be reached or declined), and `follow_up → closed` only when no hot alert
//!   is open; both moves go through `stage_move`, in the transaction that did the work.
//! - An answer is stored once per source id: HQ's resends and a double tap change nothing.
//! - A hot answer always creates an alert with its SLA; every respondent is invited to review.
//! - Nothing here contacts a customer through a channel without live consent (HQ reads the
//!   consented channels from the `follow_up` record this stage publishes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{stage_move, CaseError};
use crate::clock::{self, Clock};
use crate::domain::case::Case;
use crate::domain::follow_up::{self as rules, Answer, Category, Policy};
use crate::domain::validate;
use crate::domain::vocab::{DamageType, Part, Position};
use crate::domain::{new_id, Actor, CaseStatus};
use crate::llm::{ChatMessage, GenParams, TextGen};
use crate::store::follow_up::{self as repo, Alert, Consent, FixedRow, Question, Survey, Task};
use crate::store::{self, audit, cases::Event, Store, StoreError, Tx};

mod alerts;
mod script;

pub use script::{ConsentText, Script, ScriptTexts, Texts};

/// The downlink channel name in `downlink_state`.
pub const ANSWERS_CHANNEL: &str = "answers";
/// Digital channels a customer can consent to, and the call (which they can opt out of).
pub const CHANNELS: [&str; 4] = ["sms", "wechat", "hq_relay", "call"];

/// What the stage needs besides the store: the policy, the words, where HQ's survey page is.
#[derive(Clone)]
pub struct Setup {
    pub policy: Policy,
    pub texts: Arc<Texts>,
    /// HQ's survey page; the QR code is `{survey_url}/s/{token}` (none: no QR, phone only).
    pub survey_url: Option<String>,
    pub store_name: String,
}

impl Setup {
    /// The built-in policy and words, no survey page (tools and benchmarks).
    pub fn builtin(store_name: &str) -> Setup {
        Setup {
            policy: Policy::default(),
            texts: Arc::new(Texts::builtin().unwrap_or_else(|e| panic!("built-in follow-up texts: {e}"))),
            survey_url: None,
            store_name: store_name.to_string(),
        }
    }
}

// ---- the task, opened at delivery --------------------------------------------------------------

fn question(f: &store::findings::FindingRecord) -> Question {
    let pos = f.position.as_deref().and_then(Position::from_id);
    let part = Part::from_id(&f.part);
    let dmg = DamageType::from_id(&f.damage_type);
    let label_zh = format!(
        "{}{}{}{}",
        pos.map(|p| p.name_zh()).unwrap_or(""),
        part.map(|p| p.name_zh()).unwrap_or(&f.part),
        f.occurs_when.as_deref().unwrap_or(""),
        dmg.map(|d| d.name_zh()).unwrap_or(&f.damage_type)
    );
    let label_en = [f.position.as_deref().unwrap_or(""), &f.part, &f.damage_type]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('_', " "))
        .collect::<Vec<_>>()
        .join(" ");
    Question { finding_id: f.id.clone(), label_zh, label_en }
}

/// The "was it fixed?" questions: the case's findings nobody rejected.
pub(crate) fn questions(tx: &Tx, case_id: &str) -> Result<Vec<Question>, StoreError> {
    Ok(store::findings::of_case(tx, case_id)?.iter().filter(|f| f.review_status != "rejected").map(question).collect())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A survey token: 144 random bits, printed in the QR (HQ only ever sees its hash).
pub(crate) fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// HQ's survey page for `token` as a QR code for the printed report (none without a survey URL).
pub(crate) fn survey_qr(setup: &Setup, token: &str) -> Option<crate::pdf::SurveyQr> {
    let url = format!("{}/s/{}", setup.survey_url.as_deref()?.trim_end_matches('/'), token);
    let img = crate::vision::codes::encode(crate::vision::codes::Symbology::QrCode, &url, 6).ok()?;
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(img).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).ok()?;
    Some(crate::pdf::SurveyQr { url, png })
}

/// Open the follow-up of a case just delivered (called by the QC stage in its transaction, with
/// the token its report printed).
pub(crate) fn open_task(
    tx: &Tx,
    case: &Case,
    setup: &Setup,
    delivered: chrono::DateTime<chrono::Utc>,
    token: String,
) -> Result<Task, StoreError> {
    if let Some(t) = repo::task_of_case(tx, &case.id)? {
        return Ok(t);
    }
    let at = clock::stamp(delivered);
    let t = Task {
        id: new_id(),
        case_id: case.id.clone(),
        customer_id: case.customer_id.clone(),
        delivered_at: at.clone(),
        due_at: clock::stamp(setup.policy.due_at(delivered)),
        token_hash: token_hash(&token),
        token,
        status: "pending".into(),
        attempts: 0,
        last_attempt_at: None,
        last_attempt_note: None,
        closed_at: None,
        version: 1,
        updated_at: at.clone(),
    };
    repo::insert_task(tx, &t)?;
    repo::publish_task(tx, &t, &setup.store_name, questions(tx, &case.id)?, &at)?;
    Ok(t)
}

// ---- views -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Not due yet.
    Upcoming,
    Due,
    /// Due for longer than the alert SLA.
    Overdue,
    Done,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueItem {
    pub task: Task,
    pub state: QueueState,
    pub case_summary: String,
    pub case_status: CaseStatus,
    pub customer_name: String,
    /// The customer opted out of follow-up calls.
    pub call_opt_out: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub task: Task,
    pub state: QueueState,
    pub case_id: String,
    pub case_status: CaseStatus,
    pub complaint: String,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub repairs: Vec<String>,
    pub questions: Vec<Question>,
    pub script: Script,
    pub consents: Vec<Consent>,
    pub call_opt_out: bool,
    pub surveys: Vec<Survey>,
    pub alerts: Vec<AlertView>,
    /// HQ's survey page for this task (the QR), when configured.
    pub survey_link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    /// Open, hot, and past its first-response time with nobody having answered.
    pub overdue: bool,
    pub open: bool,
}

/// A phone answer as customer service records it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneAnswer {
    #[serde(flatten)]
    pub answer: Answer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No answer this time; try again.
    NoAnswer,
    /// Give up: the customer cannot be reached.
    Unreachable,
    /// The customer does not want to answer.
    Declined,
    /// The customer wants no follow-up calls at all (recorded as consent, then declined).
    OptOut,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub outcome: Outcome,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// Channels the customer agrees to: `sms`, `wechat`, `hq_relay`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The customer wants no follow-up calls.
    #[serde(default)]
    pub call_opt_out: bool,
    /// The consent text version the customer saw (see `GET /follow-up/consent-text`).
    pub text_version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertAction {
    #[serde(default)]
    pub note: Option<String>,
    /// On resolve: open a new case from the problems read in the customer's words.
    #[serde(default)]
    pub open_case: bool,
}

// ---- the service -------------------------------------------------------------------------------

pub struct FollowUpService {
    store: Store,
    engine: Arc<dyn TextGen>,
    clock: Clock,
    setup: Arc<Setup>,
    store_id: String,
    /// Worded scripts per task version (the model takes seconds; the page is opened many times).
    scripts: Mutex<HashMap<(String, i64), Script>>,
}

impl FollowUpService {
    pub fn new(store: Store, engine: Arc<dyn TextGen>, clock: Clock, setup: Setup, store_id: String) -> FollowUpService {
        FollowUpService { store, engine, clock, setup: Arc::new(setup), store_id, scripts: Mutex::new(HashMap::new()) }
    }

    pub fn setup(&self) -> Arc<Setup> {
        self.setup.clone()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    fn state_of(&self, t: &Task, now: chrono::DateTime<chrono::Utc>) -> QueueState {
        if t.status != "pending" {
            return QueueState::Done;
        }
        match clock::parse(&t.due_at) {
            Some(due) if now < due => QueueState::Upcoming,
            Some(due) if now > due + self.setup.policy.alert_sla => QueueState::Overdue,
            _ => QueueState::Due,
        }
    }

    fn alert_view(&self, a: Alert, now: &str) -> AlertView {
        let open = a.resolved_at.is_none();
        let overdue = open && a.kind == "hot" && a.first_response_at.is_none() && a.due_at.as_deref().is_some_and(|d| d < now);
        AlertView { alert: a, overdue, open }
    }

    /// The customer-service queue: every open task (due and overdue first), and those done in the
    /// last 7 days. Reading it lists customers' names: audited.
    pub async fn queue(&self, actor: &Actor) -> Result<Vec<QueueItem>, CaseError> {
        let now = self.clock.now();
        let since = clock::stamp(now - chrono::Duration::days(7));
        let actor = actor.clone();
        let tasks = self
            .store
            .write(move |tx| -> Result<_, CaseError> {
                let mut out = Vec::new();
                for t in repo::tasks(tx, &since, 500)? {
                    let case = store::cases::get(tx, &t.case_id)?.ok_or(CaseError::NotFound("case"))?;
                    let customer = store::people::customer(tx, &t.customer_id)?;
                    let opt_out = call_opt_out(&repo::consents_of(tx, &t.customer_id)?);
                    out.push((t, case, customer.map(|c| c.name).unwrap_or_default(), opt_out));
                }
                audit::record(tx, &actor, "follow_up.queue", "follow_up", None, "ok")?;
                Ok(out)
            })
            .await?;
        let mut items: Vec<QueueItem> = tasks
            .into_iter()
            .map(|(t, case, name, opt_out)| QueueItem {
                state: self.state_of(&t, now),
                case_summary: case.summary,
                case_status: case.status,
                customer_name: name,
                call_opt_out: opt_out,
                task: t,
            })
            .collect();
        let rank = |s: QueueState| match s {
            QueueState::Overdue => 0,
            QueueState::Due => 1,
            QueueState::Upcoming => 2,
            QueueState::Done => 3,
        };
        items.sort_by(|a, b| rank(a.state).cmp(&rank(b.state)).then_with(|| a.task.due_at.cmp(&b.task.due_at)));
        Ok(items)
    }

    /// Everything the call needs. Reads the customer's phone: audited.
    pub async fn call_view(&self, actor: &Actor, case_id: String) -> Result<CallView, CaseError> {
        let actor = actor.clone();
        let cid = case_id.clone();
        let (task, case, customer, repairs, questions, consents, surveys, alerts) = self
            .store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &cid)?.ok_or(CaseError::NotFound("case"))?;
                let task = repo::task_of_case(tx, &cid)?
                    .ok_or_else(|| CaseError::state("no_follow_up", "this case has no follow-up yet: it starts at delivery"))?;
                let customer = store::people::customer(tx, &case.customer_id)?.ok_or(CaseError::NotFound("customer"))?;
                let repairs = match store::workshop::work_order_of(tx, &cid)? {
                    Some(wo) => store::workshop::lines_of(tx, &wo.id)?
                        .into_iter()
                        .filter(|l| l.kind == "labour")
                        .map(|l| l.name_zh)
                        .collect::<Vec<_>>(),
                    None => Vec::new(),
                };
                let q = questions(tx, &cid)?;
                let consents = repo::consents_of(tx, &case.customer_id)?;
                let surveys = repo::surveys_of_case(tx, &cid)?;
                let alerts = repo::alerts_of_case(tx, &cid)?;
                audit::record(tx, &actor, "follow_up.call_view", "customer", Some(&case.customer_id), "ok")?;
                Ok((task, case, customer, repairs, q, consents, surveys, alerts))
            })
            .await?;
        let lang = if customer.preferred_language.starts_with("en") { "en" } else { "zh-CN" };
        let script = script::build(self, &task, &case, &customer.name, &repairs, &questions, lang).await;
        let now = self.clock.now();
        let stamp = clock::stamp(now);
        Ok(CallView {
            state: self.state_of(&task, now),
            case_id,
            case_status: case.status,
            complaint: case.summary,
            customer_name: customer.name,
            customer_phone: customer.phone,
            repairs,
            questions,
            script,
            call_opt_out: call_opt_out(&consents),
            consents,
            surveys,
            alerts: alerts.into_iter().map(|a| self.alert_view(a, &stamp)).collect(),
            survey_link: self.survey_link(&task),
            task,
        })
    }

    /// HQ's survey page for a task, for the QR code on the delivery sheet.
    pub fn survey_link(&self, t: &Task) -> Option<String> {
        self.setup.survey_url.as_ref().map(|u| format!("{}/s/{}", u.trim_end_matches('/'), t.token))
    }

    /// The task of a case (for the delivery sheet).
    pub async fn task_of_case(&self, case_id: String) -> Result<Option<Task>, CaseError> {
        Ok(self.store.read(move |tx| repo::task_of_case(tx, &case_id)).await?)
    }

    // ---- consent -------------------------------------------------------------------------------

    /// Record what the customer agreed to at delivery (the text version they saw). Replaces the
    /// customer's earlier choices for the channels named; republishes the task for HQ.
    pub async fn record_consent(&self, actor: &Actor, case_id: String, c: ConsentInput) -> Result<Vec<Consent>, CaseError> {
        let texts = self.setup.texts.clone();
        if !texts.consent.iter().any(|t| t.version == c.text_version) {
            return Err(validate::invalid("text_version", "unknown consent text version").into());
        }
        let mut channels = c.channels.clone();
        channels.sort();
        channels.dedup();
        for ch in &channels {
            if !matches!(ch.as_str(), "sms" | "wechat" | "hq_relay") {
                return Err(validate::invalid("channels", format!("unknown channel `{ch}` (sms, wechat, hq_relay)")).into());
            }
        }
        let (actor, at, setup) = (actor.clone(), self.clock.stamp(), self.setup.clone());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                for ch in ["sms", "wechat", "hq_relay", "call"] {
                    repo::revoke(tx, &case.customer_id, ch, &actor.username, &at)?;
                }
                let mut rows: Vec<(&str, bool)> = channels.iter().map(|c| (c.as_str(), true)).collect();
                if c.call_opt_out {
                    rows.push(("call", false));
                }
                for (ch, granted) in rows {
                    repo::insert_consent(
                        tx,
                        &Consent {
                            id: new_id(),
                            customer_id: case.customer_id.clone(),
                            case_id: Some(case.id.clone()),
                            channel: ch.into(),
                            granted,
                            text_version: c.text_version.clone(),
                            recorded_at: at.clone(),
                            recorded_by: actor.username.clone(),
                            revoked_at: None,
                            revoked_by: None,
                        },
                    )?;
                }
                let why = format!(
                    "consent {}: {}{}",
                    c.text_version,
                    if channels.is_empty() { "no digital channel".to_string() } else { channels.join(", ") },
                    if c.call_opt_out { "; no calls" } else { "" }
                );
                store::cases::note(tx, &case.id, &actor, &at, false, Event::note("consent", &why))?;
                audit::record(tx, &actor, "follow_up.consent", "customer", Some(&case.customer_id), "ok")?;
                republish(tx, &case.customer_id, &setup, &at)?;
                Ok(repo::consents_of(tx, &case.customer_id)?)
            })
            .await
    }

    /// The customer withdraws one channel (or every one with `channel = "all"`).
    pub async fn revoke_consent(&self, actor: &Actor, customer_id: String, channel: String) -> Result<Vec<Consent>, CaseError> {
        if channel != "all" && !CHANNELS.contains(&channel.as_str()) {
            return Err(validate::invalid("channel", "sms, wechat, hq_relay, call or all").into());
        }
        let (actor, at, setup) = (actor.clone(), self.clock.stamp(), self.setup.clone());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                if !store::people::customer_exists(tx, &customer_id)? {
                    return Err(CaseError::NotFound("customer"));
                }
                let chans: Vec<&str> = if channel == "all" { CHANNELS.to_vec() } else { vec![channel.as_str()] };
                let mut n = 0;
                for ch in chans {
                    n += repo::revoke(tx, &customer_id, ch, &actor.username, &at)?;
                }
                audit::record(tx, &actor, "follow_up.consent_revoke", "customer", Some(&customer_id), &format!("{channel}: {n}"))?;
                republish(tx, &customer_id, &setup, &at)?;
                Ok(repo::consents_of(tx, &customer_id)?)
            })
            .await
    }

    // ---- answers -------------------------------------------------------------------------------

    /// Customer service records the answers of the call.
    pub async fn record_phone(&self, actor: &Actor, case_id: String, a: PhoneAnswer) -> Result<Survey, CaseError> {
        let task = self
            .store
            .read({
                let cid = case_id.clone();
                move |tx| repo::task_of_case(tx, &cid)
            })
            .await?
            .ok_or_else(|| CaseError::state("no_follow_up", "this case has no follow-up yet: it starts at delivery"))?;
        // One phone answer per follow-up (a double tap must not count twice); answers the customer
        // gives on HQ's page later are still taken (`receive`).
        if task.status != "pending" {
            return Err(CaseError::state("follow_up_closed", format!("the follow-up is already {}", task.status)));
        }
        let at = self.clock.stamp();
        self.answer(actor, task, a.answer, "phone", new_id(), at).await
    }

    /// Apply answers taken on HQ's survey page (the downlink), in sequence order; returns the
    /// highest sequence applied. Already-applied sequences are skipped; a gap stops the batch
    /// (HQ resends from the acknowledged sequence).
    pub async fn receive(&self, answers: Vec<crate::sync::wire::HqAnswer>) -> Result<i64, CaseError> {
        let mut applied = self.store.read(|tx| repo::applied_seq(tx, ANSWERS_CHANNEL)).await?;
        for a in answers {
            if a.seq <= applied {
                continue;
            }
            if a.seq != applied + 1 {
                break;
            }
            let fid = a.follow_up_id.clone();
            let task = self.store.read(move |tx| repo::task(tx, &fid)).await?;
            let actor = Actor::system("hq-survey");
            let result = match task {
                Some(t) => self.answer(&actor, t, a.answer.clone(), "qr", a.answer_id.clone(), a.answered_at.clone()).await.map(|_| ()),
                None => Err(CaseError::NotFound("follow-up")),
            };
            let seq = a.seq;
            match result {
                // Applied, or already there: either way this sequence is done.
                Ok(()) | Err(CaseError::State { code: "already_recorded", .. }) => {}
                // Content the store cannot take (a task erased meanwhile, an invalid answer):
                // it would block every later answer; it is logged with its reason and skipped.
                Err(e @ (CaseError::NotFound(_) | CaseError::Invalid(_))) => {
                    tracing::warn!(seq, error = %e, "an answer from HQ cannot be applied: skipped");
                }
                Err(e) => return Err(e),
            }
            let at = self.clock.stamp();
            self.store.write(move |tx| repo::set_applied_seq(tx, ANSWERS_CHANNEL, seq, &at)).await?;
            applied = seq;
        }
        Ok(applied)
    }

    pub async fn applied_seq(&self) -> Result<i64, CaseError> {
        Ok(self.store.read(|tx| repo::applied_seq(tx, ANSWERS_CHANNEL)).await?)
    }

    async fn answer(
        &self,
        actor: &Actor,
        task: Task,
        a: Answer,
        channel: &str,
        source_id: String,
        answered_at: String,
    ) -> Result<Survey, CaseError> {
        let comment = validate::opt_text("comment", a.comment.as_deref(), 2000)?;
        if let Some(c) = &comment {
            validate::plain_text("comment", c)?;
        }
        let cid = task.case_id.clone();
        let (asked, labels) = self
            .store
            .read(move |tx| {
                let q = questions(tx, &cid)?;
                Ok::<_, StoreError>((q.iter().map(|x| x.finding_id.clone()).collect::<Vec<_>>(), q))
            })
            .await?;
        rules::check_answer(&a, &asked).map_err(|(f, m)| validate::invalid(f, m))?;
        let routing = rules::route(&a);
        // The words are read outside the writer (the model takes seconds).
        let (category, summary, from_llm) = if routing.hot || routing.suggestion { self.summarise(&a).await } else { (None, None, false) };
        let proposed = match (&comment, routing.hot) {
            (Some(c), true) => self.new_problems(c, &task.case_id).await,
            _ => None,
        };
        let survey = Survey {
            id: new_id(),
            source_id,
            follow_up_id: task.id.clone(),
            case_id: task.case_id.clone(),
            channel: channel.into(),
            csat: a.csat,
            nps: a.nps,
            fixed: a
                .fixed
                .iter()
                .map(|f| FixedRow {
                    finding_id: f.finding_id.clone(),
                    label: labels.iter().find(|q| q.finding_id == f.finding_id).map(|q| q.label_zh.clone()).unwrap_or_default(),
                    answer: f.answer,
                })
                .collect(),
            comment,
            category: category.map(|c| c.as_str().to_string()),
            summary: summary.clone(),
            summary_from_llm: from_llm,
            hot: routing.hot,
            review_invited: routing.review_invited,
            answered_at,
            recorded_at: self.clock.stamp(),
            recorded_by: actor.username.clone(),
        };
        let (actor, setup, now) = (actor.clone(), self.setup.clone(), self.clock.now());
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                if repo::survey_by_source(tx, &survey.source_id)?.is_some() {
                    return Err(CaseError::state("already_recorded", "this answer is already recorded"));
                }
                let at = clock::stamp(now);
                let mut t = repo::task(tx, &survey.follow_up_id)?.ok_or(CaseError::NotFound("follow-up"))?;
                if survey.channel == "phone" && t.status != "pending" {
                    return Err(CaseError::state("follow_up_closed", format!("the follow-up is already {}", t.status)));
                }
                let mut case = store::cases::get(tx, &survey.case_id)?.ok_or(CaseError::NotFound("case"))?;
                repo::insert_survey(tx, &survey)?;
                if routing.hot || routing.suggestion {
                    let (due, esc) = setup.policy.alert_deadlines(now);
                    let mut alert = Alert {
                        id: new_id(),
                        case_id: survey.case_id.clone(),
                        survey_id: survey.id.clone(),
                        kind: if routing.hot { "hot" } else { "suggestion" }.into(),
                        reasons: routing.reasons.clone(),
                        category: survey.category.clone().unwrap_or_else(|| "other".into()),
                        summary: survey.summary.clone().unwrap_or_default(),
                        proposed,
                        raised_at: at.clone(),
                        due_at: routing.hot.then(|| clock::stamp(due)),
                        escalate_at: routing.hot.then(|| clock::stamp(esc)),
                        escalated_at: None,
                        first_response_at: None,
                        first_response_by: None,
                        resolved_at: None,
                        resolved_by: None,
                        resolution: None,
                        new_case_id: None,
                        version: 1,
                    };
                    repo::save_alert(tx, &mut alert, &at)?;
                }
                if t.status == "pending" {
                    t.status = "answered".into();
                    t.closed_at = Some(at.clone());
                    repo::update_task(tx, &mut t, &at)?;
                    repo::publish_task(tx, &t, &setup.store_name, questions(tx, &t.case_id)?, &at)?;
                }
                let why = format!(
                    "{} answer: CSAT {}, NPS {}{}",
                    survey.channel,
                    survey.csat,
                    survey.nps,
                    if survey.hot { " — hot alert to customer service" } else { "" }
                );
                audit::record(tx, &actor, "follow_up.answer", "survey", Some(&survey.id), "ok")?;
                if case.status == CaseStatus::Delivered {
                    stage_move(tx, &mut case, CaseStatus::FollowUp, &actor, "followed_up", Some(&why))?;
                    close_if_settled(tx, &mut case, &actor, "follow-up done")?;
                } else {
                    store::cases::note(tx, &case.id, &actor, &at, survey.hot, Event::note("survey_answer", &why))?;
                }
                Ok(survey)
            })
            .await
    }

    /// The model's one-line summary in a fixed category (grammar-constrained); the template's
    /// when there is no model or its output does not parse.
    async fn summarise(&self, a: &Answer) -> (Option<Category>, Option<String>, bool) {
        let (cat, line) = rules::template_summary(a);
        let Some(comment) = a.comment.clone().filter(|c| !c.trim().is_empty()) else {
            return (Some(cat), Some(line), false);
        };
        if !self.engine.is_available() {
            return (Some(cat), Some(line), false);
        }
        let engine = self.engine.clone();
        let prompt = format!(
            "客户回访的留言（满意度{}/5，推荐意愿{}/10）：\n{}\n\n用一行概括客户的不满，并归类为 quality（维修质量）、price（价格）、time（时间）、staff（服务态度）或 other。格式：类别: 概括",
            a.csat, a.nps, comment
        );
        let r = tokio::task::spawn_blocking(move || {
            let params = GenParams {
                max_tokens: 60,
                grammar: Some(rules::summary_grammar()),
                timeout: Duration::from_secs(30),
                ..GenParams::default()
            };
            engine.generate(&[ChatMessage::system("你是汽车售后客服主管，只输出要求的格式。"), ChatMessage::user(prompt)], &params, None)
        })
        .await;
        match r {
            Ok(Ok(c)) => match rules::parse_summary(&c.text) {
                Some((c, l)) => (Some(c), Some(l), true),
                None => (Some(cat), Some(line), false),
            },
            _ => (Some(cat), Some(line), false),
        }
    }

    /// Problems the intake extractor reads in the customer's words that the case did not have:
    /// proposed as a new case on the alert.
    async fn new_problems(&self, comment: &str, case_id: &str) -> Option<serde_json::Value> {
        let (engine, text, cid) = (self.engine.clone(), comment.to_string(), case_id.to_string());
        let known = self.store.read(move |tx| store::findings::of_case(tx, &cid)).await.ok()?;
        let ex = tokio::task::spawn_blocking(move || crate::intake::extract(&text, engine.as_ref())).await.ok()?.ok()?;
        let new: Vec<_> = ex
            .findings
            .iter()
            .filter(|f| {
                !known.iter().any(|k| store::findings::same_problem(k, f.part.id(), f.position.map(|p| p.id()), f.damage_type.id()))
            })
            .map(|f| {
                serde_json::json!({
                    "part": f.part.id(),
                    "position": f.position.map(|p| p.id()),
                    "damage_type": f.damage_type.id(),
                    "label_zh": format!("{}{}{}", f.position.map(|p| p.name_zh()).unwrap_or(""), f.part.name_zh(), f.damage_type.name_zh()),
                })
            })
            .collect();
        (!new.is_empty()).then(|| serde_json::Value::Array(new))
    }

    /// A call attempt that did not produce answers.
    pub async fn attempt(&self, actor: &Actor, case_id: String, a: Attempt) -> Result<Task, CaseError> {
        let note = validate::opt_text("note", a.note.as_deref(), 500)?;
        let (actor, setup, at) = (actor.clone(), self.setup.clone(), self.clock.stamp());
        let text_version = self.setup.texts.current_consent().version.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let mut t = repo::task_of_case(tx, &case_id)?
                    .ok_or_else(|| CaseError::state("no_follow_up", "this case has no follow-up yet: it starts at delivery"))?;
                if t.status != "pending" {
                    return Err(CaseError::state("follow_up_closed", format!("the follow-up is already {}", t.status)));
                }
                t.attempts += 1;
                t.last_attempt_at = Some(at.clone());
                t.last_attempt_note = note.clone();
                let ends = match a.outcome {
                    Outcome::NoAnswer => None,
                    Outcome::Unreachable => Some("unreachable"),
                    Outcome::Declined | Outcome::OptOut => Some("declined"),
                };
                if a.outcome == Outcome::OptOut {
                    repo::revoke(tx, &t.customer_id, "call", &actor.username, &at)?;
                    repo::insert_consent(
                        tx,
                        &Consent {
                            id: new_id(),
                            customer_id: t.customer_id.clone(),
                            case_id: Some(t.case_id.clone()),
                            channel: "call".into(),
                            granted: false,
                            text_version,
                            recorded_at: at.clone(),
                            recorded_by: actor.username.clone(),
                            revoked_at: None,
                            revoked_by: None,
                        },
                    )?;
                }
                if let Some(s) = ends {
                    t.status = s.into();
                    t.closed_at = Some(at.clone());
                }
                repo::update_task(tx, &mut t, &at)?;
                repo::publish_task(tx, &t, &setup.store_name, questions(tx, &t.case_id)?, &at)?;
                audit::record(tx, &actor, "follow_up.attempt", "follow_up", Some(&t.id), &format!("{:?}", a.outcome))?;
                let why = format!(
                    "follow-up call attempt {}: {:?}{}",
                    t.attempts,
                    a.outcome,
                    note.map(|n| format!(" — {n}")).unwrap_or_default()
                );
                let mut case = store::cases::get(tx, &t.case_id)?.ok_or(CaseError::NotFound("case"))?;
                if ends.is_some() && case.status == CaseStatus::Delivered {
                    stage_move(tx, &mut case, CaseStatus::FollowUp, &actor, "followed_up", Some(&why))?;
                    close_if_settled(tx, &mut case, &actor, "follow-up ended without answers")?;
                } else {
                    store::cases::note(tx, &t.case_id, &actor, &at, false, Event::note("follow_up_attempt", &why))?;
                }
                Ok(t)
            })
            .await
    }
}

/// Close a case in `follow_up` once no hot alert is open (quietly nothing otherwise).
fn close_if_settled(tx: &Tx, case: &mut Case, actor: &Actor, why: &str) -> Result<(), CaseError> {
    if case.status == CaseStatus::FollowUp && repo::open_hot_alerts(tx, &case.id)? == 0 {
        stage_move(tx, case, CaseStatus::Closed, actor, "closed", Some(why))?;
    }
    Ok(())
}

/// The customer has opted out of calls (a live `call` row with granted = 0).
fn call_opt_out(consents: &[Consent]) -> bool {
    consents.iter().any(|c| c.channel == "call" && !c.granted && c.revoked_at.is_none())
}

/// After a consent change, HQ must see the customer's open tasks with the new channels.
fn republish(tx: &Tx, customer_id: &str, setup: &Setup, at: &str) -> Result<(), StoreError> {
    let tasks: Vec<String> = {
        let mut st = tx.conn().prepare("SELECT case_id FROM follow_ups WHERE customer_id = ?1")?;
        let v = st.query_map([customer_id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        v
    };
    for cid in tasks {
        if let Some(mut t) = repo::task_of_case(tx, &cid)? {
            repo::update_task(tx, &mut t, at)?;
            repo::publish_task(tx, &t, &setup.store_name, questions(tx, &cid)?, at)?;
        }
    }
    Ok(())
}

// ---- added by the tablet's delivery page (src/ui/pages/follow_up.rs) ---------------------------

impl FollowUpService {
    /// The consents of a case's customer (newest first, revoked ones included: the history) with
    /// the customer's id, for the delivery page's list and its revoke buttons. Reads what a
    /// customer agreed to: audited.
    pub async fn consents_of_case(&self, actor: &Actor, case_id: String) -> Result<(String, Vec<Consent>), CaseError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<_, CaseError> {
                let case = store::cases::get(tx, &case_id)?.ok_or(CaseError::NotFound("case"))?;
                let list = repo::consents_of(tx, &case.customer_id)?;
                audit::record(tx, &actor, "follow_up.consents", "customer", Some(&case.customer_id), "ok")?;
                Ok((case.customer_id, list))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
