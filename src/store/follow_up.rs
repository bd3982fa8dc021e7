//! Follow-up rows: the 回访 task of each delivered case, the customer's consents, survey answers,
//! the alerts answers raise, and the downlink high-water mark.
//!
//! Invariants: one task per case (unique index); an answer exists once per source id (an answer
//! taken at HQ arrives exactly once however often HQ resends it); one alert per answer; consents
//! are never deleted, only revoked (the row is the proof of what the customer agreed to). Every
//! change of a task or an alert bumps its version and appends it to the outbox in the caller's
//! transaction.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::outbox::{self, Record};
use super::{StoreError, Tx};
use crate::domain::follow_up::FixedAnswer;

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: String,
    pub case_id: String,
    pub customer_id: String,
    pub delivered_at: String,
    pub due_at: String,
    /// The QR token: stays in the store (HQ gets its hash).
    #[serde(skip)]
    pub token: String,
    pub token_hash: String,
    /// `pending`, `answered`, `unreachable`, `declined`.
    pub status: String,
    pub attempts: i64,
    pub last_attempt_at: Option<String>,
    pub last_attempt_note: Option<String>,
    pub closed_at: Option<String>,
    pub version: i64,
    pub updated_at: String,
}

const TASK_COLS: &str = "id, case_id, customer_id, delivered_at, due_at, token, token_hash, status, attempts, \
     last_attempt_at, last_attempt_note, closed_at, version, updated_at";

fn task_row(r: &Row) -> rusqlite::Result<Task> {
    Ok(Task {
        id: r.get(0)?,
        case_id: r.get(1)?,
        customer_id: r.get(2)?,
        delivered_at: r.get(3)?,
        due_at: r.get(4)?,
        token: r.get(5)?,
        token_hash: r.get(6)?,
        status: r.get(7)?,
        attempts: r.get(8)?,
        last_attempt_at: r.get(9)?,
        last_attempt_note: r.get(10)?,
        closed_at: r.get(11)?,
        version: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

pub fn insert_task(tx: &Tx, t: &Task) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO follow_ups ({TASK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            t.id,
            t.case_id,
            t.customer_id,
            t.delivered_at,
            t.due_at,
            t.token,
            t.token_hash,
            t.status,
            t.attempts,
            t.last_attempt_at,
            t.last_attempt_note,
            t.closed_at,
            t.version,
            t.updated_at
        ],
    )?;
    Ok(())
}

/// Save a changed task (optimistic: the version read must still be the stored one), bumping its
/// version.
pub fn update_task(tx: &Tx, t: &mut Task, at: &str) -> Result<(), StoreError> {
    let n = tx.conn().execute(
        "UPDATE follow_ups SET status = ?2, attempts = ?3, last_attempt_at = ?4, last_attempt_note = ?5, closed_at = ?6,
                version = version + 1, updated_at = ?7
          WHERE id = ?1 AND version = ?8",
        params![t.id, t.status, t.attempts, t.last_attempt_at, t.last_attempt_note, t.closed_at, at, t.version],
    )?;
    if n != 1 {
        return Err(StoreError::Conflict(format!("follow-up {} changed meanwhile", t.id)));
    }
    t.version += 1;
    t.updated_at = at.to_string();
    Ok(())
}

pub fn task(tx: &Tx, id: &str) -> Result<Option<Task>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {TASK_COLS} FROM follow_ups WHERE id = ?1"), [id], task_row).optional()?)
}

pub fn task_of_case(tx: &Tx, case_id: &str) -> Result<Option<Task>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {TASK_COLS} FROM follow_ups WHERE case_id = ?1"), [case_id], task_row).optional()?)
}

pub fn task_by_token(tx: &Tx, token: &str) -> Result<Option<Task>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {TASK_COLS} FROM follow_ups WHERE token = ?1"), [token], task_row).optional()?)
}

/// Tasks for the customer-service queue: open ones (all), and those closed since `closed_since`.
pub fn tasks(tx: &Tx, closed_since: &str, limit: u32) -> Result<Vec<Task>, StoreError> {
    let mut st = tx
        .conn()
        .prepare(&format!("SELECT {TASK_COLS} FROM follow_ups WHERE status = 'pending' OR closed_at >= ?1 ORDER BY due_at LIMIT ?2"))?;
    let rows = st.query_map(params![closed_since, limit], task_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

// ---- consent ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Consent {
    pub id: String,
    pub customer_id: String,
    pub case_id: Option<String>,
    /// `sms`, `wechat`, `hq_relay`, `call`.
    pub channel: String,
    /// False only for `call`: the customer opted out of follow-up calls.
    pub granted: bool,
    pub text_version: String,
    pub recorded_at: String,
    pub recorded_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

const CONSENT_COLS: &str = "id, customer_id, case_id, channel, granted, text_version, recorded_at, recorded_by, revoked_at, revoked_by";

fn consent_row(r: &Row) -> rusqlite::Result<Consent> {
    Ok(Consent {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        case_id: r.get(2)?,
        channel: r.get(3)?,
        granted: r.get::<_, i64>(4)? == 1,
        text_version: r.get(5)?,
        recorded_at: r.get(6)?,
        recorded_by: r.get(7)?,
        revoked_at: r.get(8)?,
        revoked_by: r.get(9)?,
    })
}

pub fn insert_consent(tx: &Tx, c: &Consent) -> Result<(), StoreError> {
    tx.conn().execute(
        &format!("INSERT INTO consents ({CONSENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            c.id,
            c.customer_id,
            c.case_id,
            c.channel,
            c.granted as i64,
            c.text_version,
            c.recorded_at,
            c.recorded_by,
            c.revoked_at,
            c.revoked_by
        ],
    )?;
    Ok(())
}

/// Every consent row of a customer, newest first (revoked ones included: it is the history).
pub fn consents_of(tx: &Tx, customer_id: &str) -> Result<Vec<Consent>, StoreError> {
    let mut st =
        tx.conn().prepare(&format!("SELECT {CONSENT_COLS} FROM consents WHERE customer_id = ?1 ORDER BY recorded_at DESC, id DESC"))?;
    let rows = st.query_map([customer_id], consent_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Revoke every live row of one channel; returns how many.
pub fn revoke(tx: &Tx, customer_id: &str, channel: &str, by: &str, at: &str) -> Result<usize, StoreError> {
    Ok(tx.conn().execute(
        "UPDATE consents SET revoked_at = ?4, revoked_by = ?3 WHERE customer_id = ?1 AND channel = ?2 AND revoked_at IS NULL",
        params![customer_id, channel, by, at],
    )?)
}

// ---- answers ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixedRow {
    pub finding_id: String,
    pub label: String,
    pub answer: crate::domain::follow_up::Fixed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Survey {
    pub id: String,
    pub source_id: String,
    pub follow_up_id: String,
    pub case_id: String,
    /// `phone` or `qr`.
    pub channel: String,
    pub csat: u8,
    pub nps: u8,
    pub fixed: Vec<FixedRow>,
    /// The customer's words: stay in the store (HQ gets the summary).
    pub comment: Option<String>,
    pub category: Option<String>,
    pub summary: Option<String>,
    pub summary_from_llm: bool,
    pub hot: bool,
    pub review_invited: bool,
    pub answered_at: String,
    pub recorded_at: String,
    pub recorded_by: String,
}

impl Survey {
    pub fn fixed_answers(&self) -> Vec<FixedAnswer> {
        self.fixed.iter().map(|f| FixedAnswer { finding_id: f.finding_id.clone(), answer: f.answer }).collect()
    }
}

const SURVEY_COLS: &str = "id, source_id, follow_up_id, case_id, channel, csat, nps, fixed, comment, category, summary, \
     summary_from_llm, hot, review_invited, answered_at, recorded_at, recorded_by";

fn survey_row(r: &Row) -> rusqlite::Result<Survey> {
    let fixed: String = r.get(7)?;
    Ok(Survey {
        id: r.get(0)?,
        source_id: r.get(1)?,
        follow_up_id: r.get(2)?,
        case_id: r.get(3)?,
        channel: r.get(4)?,
        csat: r.get(5)?,
        nps: r.get(6)?,
        fixed: serde_json::from_str(&fixed).unwrap_or_default(),
        comment: r.get(8)?,
        category: r.get(9)?,
        summary: r.get(10)?,
        summary_from_llm: r.get::<_, i64>(11)? == 1,
        hot: r.get::<_, i64>(12)? == 1,
        review_invited: r.get::<_, i64>(13)? == 1,
        answered_at: r.get(14)?,
        recorded_at: r.get(15)?,
        recorded_by: r.get(16)?,
    })
}

pub fn insert_survey(tx: &Tx, s: &Survey) -> Result<(), StoreError> {
    let fixed = serde_json::to_string(&s.fixed).map_err(|e| StoreError::Encode(e.to_string()))?;
    tx.conn().execute(
        &format!("INSERT INTO surveys ({SURVEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
        params![
            s.id,
            s.source_id,
            s.follow_up_id,
            s.case_id,
            s.channel,
            s.csat,
            s.nps,
            fixed,
            s.comment,
            s.category,
            s.summary,
            s.summary_from_llm as i64,
            s.hot as i64,
            s.review_invited as i64,
            s.answered_at,
            s.recorded_at,
            s.recorded_by
        ],
    )?;
    let doc = SurveyDoc::from(s);
    outbox::append(tx, &Record::Survey { body: &doc }, &s.recorded_at)?;
    Ok(())
}

pub fn survey_by_source(tx: &Tx, source_id: &str) -> Result<Option<Survey>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {SURVEY_COLS} FROM surveys WHERE source_id = ?1"), [source_id], survey_row).optional()?)
}

pub fn surveys_of_case(tx: &Tx, case_id: &str) -> Result<Vec<Survey>, StoreError> {
    let mut st = tx.conn().prepare(&format!("SELECT {SURVEY_COLS} FROM surveys WHERE case_id = ?1 ORDER BY answered_at"))?;
    let rows = st.query_map([case_id], survey_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// What HQ receives of an answer: the scores, the answers per finding, the category and the
/// one-line summary; never the customer's own words.
#[derive(Debug, Clone, Serialize)]
pub struct SurveyDoc {
    pub id: String,
    pub source_id: String,
    pub follow_up_id: String,
    pub case_id: String,
    pub channel: String,
    pub csat: u8,
    pub nps: u8,
    pub fixed: Vec<FixedAnswer>,
    pub category: Option<String>,
    pub summary: Option<String>,
    pub hot: bool,
    pub review_invited: bool,
    pub answered_at: String,
}

impl From<&Survey> for SurveyDoc {
    fn from(s: &Survey) -> SurveyDoc {
        SurveyDoc {
            id: s.id.clone(),
            source_id: s.source_id.clone(),
            follow_up_id: s.follow_up_id.clone(),
            case_id: s.case_id.clone(),
            channel: s.channel.clone(),
            csat: s.csat,
            nps: s.nps,
            fixed: s.fixed_answers(),
            category: s.category.clone(),
            summary: s.summary.clone(),
            hot: s.hot,
            review_invited: s.review_invited,
            answered_at: s.answered_at.clone(),
        }
    }
}

// ---- alerts -----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: String,
    pub case_id: String,
    pub survey_id: String,
    /// `hot` (a person, with the SLA) or `suggestion` (CSAT 4, recorded).
    pub kind: String,
    pub reasons: Vec<crate::domain::follow_up::HotReason>,
    pub category: String,
    pub summary: String,
    /// Findings the intake extractor read in the customer's words (a proposed new case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed: Option<serde_json::Value>,
    pub raised_at: String,
    pub due_at: Option<String>,
    pub escalate_at: Option<String>,
    pub escalated_at: Option<String>,
    pub first_response_at: Option<String>,
    pub first_response_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub new_case_id: Option<String>,
    pub version: i64,
}

const ALERT_COLS: &str = "id, case_id, survey_id, kind, reasons, category, summary, proposed, raised_at, due_at, escalate_at, \
     escalated_at, first_response_at, first_response_by, resolved_at, resolved_by, resolution, new_case_id, version";

fn alert_row(r: &Row) -> rusqlite::Result<Alert> {
    let reasons: String = r.get(4)?;
    let proposed: Option<String> = r.get(7)?;
    Ok(Alert {
        id: r.get(0)?,
        case_id: r.get(1)?,
        survey_id: r.get(2)?,
        kind: r.get(3)?,
        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
        category: r.get(5)?,
        summary: r.get(6)?,
        proposed: proposed.and_then(|p| serde_json::from_str(&p).ok()),
        raised_at: r.get(8)?,
        due_at: r.get(9)?,
        escalate_at: r.get(10)?,
        escalated_at: r.get(11)?,
        first_response_at: r.get(12)?,
        first_response_by: r.get(13)?,
        resolved_at: r.get(14)?,
        resolved_by: r.get(15)?,
        resolution: r.get(16)?,
        new_case_id: r.get(17)?,
        version: r.get(18)?,
    })
}

/// Insert or update an alert (bumping its version) and append it to the outbox.
pub fn save_alert(tx: &Tx, a: &mut Alert, at: &str) -> Result<(), StoreError> {
    let reasons = serde_json::to_string(&a.reasons).map_err(|e| StoreError::Encode(e.to_string()))?;
    let proposed = a.proposed.as_ref().map(|p| p.to_string());
    let exists: bool = tx.conn().query_row("SELECT COUNT(*) FROM follow_up_alerts WHERE id = ?1", [&a.id], |r| r.get::<_, i64>(0))? > 0;
    if exists {
        let n = tx.conn().execute(
            "UPDATE follow_up_alerts SET escalated_at = ?2, first_response_at = ?3, first_response_by = ?4, resolved_at = ?5,
                    resolved_by = ?6, resolution = ?7, new_case_id = ?8, version = version + 1
              WHERE id = ?1 AND version = ?9",
            params![
                a.id,
                a.escalated_at,
                a.first_response_at,
                a.first_response_by,
                a.resolved_at,
                a.resolved_by,
                a.resolution,
                a.new_case_id,
                a.version
            ],
        )?;
        if n != 1 {
            return Err(StoreError::Conflict(format!("alert {} changed meanwhile", a.id)));
        }
        a.version += 1;
    } else {
        tx.conn().execute(
            &format!(
                "INSERT INTO follow_up_alerts ({ALERT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ),
            params![
                a.id,
                a.case_id,
                a.survey_id,
                a.kind,
                reasons,
                a.category,
                a.summary,
                proposed,
                a.raised_at,
                a.due_at,
                a.escalate_at,
                a.escalated_at,
                a.first_response_at,
                a.first_response_by,
                a.resolved_at,
                a.resolved_by,
                a.resolution,
                a.new_case_id,
                a.version
            ],
        )?;
    }
    outbox::append(tx, &Record::FollowUpAlert { body: a }, at)?;
    Ok(())
}

pub fn alert(tx: &Tx, id: &str) -> Result<Option<Alert>, StoreError> {
    Ok(tx.conn().query_row(&format!("SELECT {ALERT_COLS} FROM follow_up_alerts WHERE id = ?1"), [id], alert_row).optional()?)
}

pub fn alerts_of_case(tx: &Tx, case_id: &str) -> Result<Vec<Alert>, StoreError> {
    let mut st = tx.conn().prepare(&format!("SELECT {ALERT_COLS} FROM follow_up_alerts WHERE case_id = ?1 ORDER BY raised_at"))?;
    let rows = st.query_map([case_id], alert_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Alerts for the queue: every open one (hot first, by due time), then those resolved since
/// `resolved_since`.
pub fn alerts(tx: &Tx, resolved_since: &str, limit: u32) -> Result<Vec<Alert>, StoreError> {
    let mut st = tx.conn().prepare(&format!(
        "SELECT {ALERT_COLS} FROM follow_up_alerts WHERE resolved_at IS NULL OR resolved_at >= ?1
          ORDER BY resolved_at IS NOT NULL, kind = 'suggestion', COALESCE(due_at, raised_at) LIMIT ?2"
    ))?;
    let rows = st.query_map(params![resolved_since, limit], alert_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Open hot alerts past their escalation time and not escalated yet.
pub fn due_for_escalation(tx: &Tx, now: &str) -> Result<Vec<Alert>, StoreError> {
    let mut st = tx.conn().prepare(&format!(
        "SELECT {ALERT_COLS} FROM follow_up_alerts
          WHERE kind = 'hot' AND resolved_at IS NULL AND escalated_at IS NULL AND escalate_at <= ?1 ORDER BY escalate_at"
    ))?;
    let rows = st.query_map([now], alert_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn open_hot_alerts(tx: &Tx, case_id: &str) -> Result<u32, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COUNT(*) FROM follow_up_alerts WHERE case_id = ?1 AND kind = 'hot' AND resolved_at IS NULL",
        [case_id],
        |r| r.get(0),
    )?)
}

// ---- downlink ---------------------------------------------------------------------------------

pub fn applied_seq(tx: &Tx, channel: &str) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row("SELECT applied_seq FROM downlink_state WHERE channel = ?1", [channel], |r| r.get(0)).optional()?.unwrap_or(0))
}

pub fn set_applied_seq(tx: &Tx, channel: &str, seq: i64, at: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO downlink_state (channel, applied_seq, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (channel) DO UPDATE SET applied_seq = excluded.applied_seq, at = excluded.at",
        params![channel, seq, at],
    )?;
    Ok(())
}

// ---- what HQ receives of a task ---------------------------------------------------------------

/// One "was it fixed?" question: an original finding in the customer's language.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Question {
    pub finding_id: String,
    pub label_zh: String,
    pub label_en: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contact {
    pub phone: String,
}

/// The `follow_up` outbox record: what HQ's survey page and notifier need. The phone number
/// travels only while the customer consents to an SMS or WeChat invitation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FollowUpDoc {
    pub id: String,
    pub case_id: String,
    pub store_name: String,
    pub delivered_at: String,
    pub due_at: String,
    pub token_hash: String,
    pub status: String,
    pub lang: String,
    pub questions: Vec<Question>,
    /// Digital channels with live consent (`sms`, `wechat`, `hq_relay`).
    pub channels: Vec<String>,
    pub contact: Option<Contact>,
    pub version: i64,
}

/// Append the task as HQ should now see it (call after every change of the task or of the
/// customer's consent).
pub fn publish_task(tx: &Tx, t: &Task, store_name: &str, questions: Vec<Question>, at: &str) -> Result<FollowUpDoc, StoreError> {
    let customer = super::people::customer(tx, &t.customer_id)?;
    let live: Vec<Consent> = consents_of(tx, &t.customer_id)?.into_iter().filter(|c| c.granted && c.revoked_at.is_none()).collect();
    let mut channels: Vec<String> =
        live.iter().map(|c| c.channel.clone()).filter(|c| c != "call").collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    channels.retain(|c| c != "call");
    let digital = channels.iter().any(|c| c == "sms" || c == "wechat");
    let contact = if digital {
        customer.as_ref().and_then(|c| c.phone.clone()).filter(|p| !p.trim().is_empty()).map(|phone| Contact { phone })
    } else {
        None
    };
    let doc = FollowUpDoc {
        id: t.id.clone(),
        case_id: t.case_id.clone(),
        store_name: store_name.to_string(),
        delivered_at: t.delivered_at.clone(),
        due_at: t.due_at.clone(),
        token_hash: t.token_hash.clone(),
        status: t.status.clone(),
        lang: customer.map(|c| c.preferred_language).unwrap_or_else(|| "zh-CN".into()),
        questions,
        channels,
        contact,
        version: t.version,
    };
    outbox::append(tx, &Record::FollowUp { body: &doc }, at)?;
    Ok(doc)
}
