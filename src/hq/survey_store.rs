//! PostgreSQL for `hq-survey`: a small connection pool, the signing secret, the follow-up task
//! behind a page token, an answer stored with its downlink row, and the answers' retention.
//!
//! Invariants:
//! - One answer per follow-up at HQ: `hq_survey_answers` is unique on (store, follow-up) and the
//!   insert is `ON CONFLICT DO NOTHING`, so a double submit (two tabs, a reload, a replay) stores
//!   nothing the second time and says so.
//! - The answer and its downlink row commit together, and the downlink sequence is taken from
//!   `hq_downlink_state` under that store's row lock: per store, sequences are 1, 2, 3, … without
//!   gaps, in commit order, whatever the number of hq-survey processes.
//! - Retention blanks an old answer's comment in both places it is kept (`hq_survey_answers` and
//!   the downlink payload), in one transaction, as the erasure trigger of schema v4 does; scores,
//!   `fixed` answers and the row itself stay for the KPIs. Answer rows hold no contact data (the
//!   phone number is only in the store's `follow_up` record, which the store's own erasure removes).
//! - Everything read from `hq_records` is the stores' data, untrusted: a body that does not parse
//!   is "no such survey", never a panic.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::Client;

use crate::domain::follow_up::{self as rules, Answer};
use crate::sync::hq::{connect_pg, HqError};
use crate::sync::wire::HqAnswer;

// ---- pool ------------------------------------------------------------------------------------

/// At most `max` connections, opened on demand, reused, and dropped when the server closed them.
/// (A transaction needs a connection of its own; tokio-postgres pipelines everything else.)
pub struct Pool {
    conn: String,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

/// A pooled connection; back to the pool on drop (unless closed).
pub struct Conn<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    pub fn new(conn: &str, max: usize) -> Pool {
        Pool { conn: conn.to_string(), idle: Mutex::new(Vec::new()), permits: Semaphore::new(max.max(1)) }
    }

    /// Hand over an open connection (the one that ran the migrations).
    pub fn put(&self, c: Client) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }

    pub async fn get(&self) -> Result<Conn<'_>, HqError> {
        let permit = self.permits.acquire().await.map_err(|_| HqError::Invalid("the connection pool is closed".into()))?;
        let reuse = loop {
            let c = self.idle.lock().ok().and_then(|mut i| i.pop());
            match c {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match reuse {
            Some(c) => c,
            None => connect_pg(&self.conn).await?,
        };
        Ok(Conn { client: Some(client), pool: self, _permit: permit })
    }
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                self.pool.put(c);
            }
        }
    }
}

// ---- the secret ------------------------------------------------------------------------------

/// The signing secret: from `secret_file` (hex, or ≥ 32 raw bytes), else the one kept in
/// PostgreSQL, made by the first hq-survey that starts.
pub async fn secret(pg: &Client, file: Option<&Path>) -> Result<Vec<u8>, HqError> {
    if let Some(f) = file {
        let raw = std::fs::read(f).map_err(|source| HqError::Read { path: f.into(), source })?;
        let text = String::from_utf8_lossy(&raw);
        let bytes = match hex::decode(text.trim()) {
            Ok(b) => b,
            Err(_) => raw.clone(),
        };
        if bytes.len() < 32 {
            return Err(HqError::Config {
                path: "survey.secret_file".into(),
                message: format!("{} holds fewer than 32 bytes; use e.g. `openssl rand -hex 32`", f.display()),
            });
        }
        return Ok(bytes);
    }
    let fresh: [u8; 32] = rand::random();
    pg.execute("INSERT INTO hq_survey_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", &[&fresh.as_slice()]).await?;
    Ok(pg.query_one("SELECT secret FROM hq_survey_secret WHERE id = 1", &[]).await?.get(0))
}

// ---- the follow-up behind a token ------------------------------------------------------------

/// The `follow_up` record as the store sends it (contract v1); unknown fields are ignored so a
/// newer store does not break the page.
#[derive(Debug, Clone, Deserialize)]
pub struct FollowUpBody {
    #[serde(default)]
    pub case_id: String,
    #[serde(default)]
    pub store_name: String,
    #[serde(default)]
    pub due_at: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub questions: Vec<Question>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub contact: Option<Contact>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    pub finding_id: String,
    #[serde(default)]
    pub label_zh: String,
    #[serde(default)]
    pub label_en: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub phone: Option<String>,
}

impl FollowUpBody {
    pub fn parse(text: &str) -> Option<FollowUpBody> {
        serde_json::from_str(text).ok()
    }

    /// The phone number, when there is one to send to.
    pub fn phone(&self) -> Option<&str> {
        self.contact.as_ref()?.phone.as_deref().map(str::trim).filter(|p| !p.is_empty())
    }

    pub fn consents_to(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c == channel)
    }
}

/// Which link the customer opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The store's QR code (the token whose hash is in the follow-up record).
    Qr,
    /// An invitation HQ sent (`sms` or `wechat`).
    Sms,
    Wechat,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Qr => "qr",
            Via::Sms => "sms",
            Via::Wechat => "wechat",
        }
    }
}

/// A follow-up a page token leads to.
#[derive(Debug, Clone)]
pub struct Task {
    pub store_id: String,
    pub follow_up_id: String,
    pub body: FollowUpBody,
    pub via: Via,
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The follow-up whose QR token, or whose invitation link, hashes to `hash`.
pub async fn task_by_token_hash(pg: &Client, hash: &str) -> Result<Option<Task>, HqError> {
    let row = pg
        .query_opt(
            "SELECT store_id, record_id, body::text FROM hq_records
             WHERE record_type = 'follow_up' AND body->>'token_hash' = $1 ORDER BY seq DESC LIMIT 1",
            &[&hash],
        )
        .await?;
    let (row, via) = match row {
        Some(r) => (r, Via::Qr),
        None => {
            let r = pg
                .query_opt(
                    "SELECT r.store_id, r.record_id, r.body::text, n.channel FROM hq_notifications n
                     JOIN hq_records r ON r.store_id = n.store_id AND r.record_type = 'follow_up' AND r.record_id = n.follow_up_id
                     WHERE n.link_hash = $1",
                    &[&hash],
                )
                .await?;
            match r {
                Some(r) => {
                    let via = if r.get::<_, String>(3) == "wechat" { Via::Wechat } else { Via::Sms };
                    (r, via)
                }
                None => return Ok(None),
            }
        }
    };
    let (store_id, follow_up_id, text): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    match FollowUpBody::parse(&text) {
        Some(body) => Ok(Some(Task { store_id, follow_up_id, body, via })),
        None => {
            tracing::warn!(store = %store_id, follow_up.id = %follow_up_id, "a follow_up record that does not parse; its page answers 404");
            Ok(None)
        }
    }
}

/// Whether HQ already holds an answer to this follow-up.
pub async fn answered(pg: &Client, store_id: &str, follow_up_id: &str) -> Result<bool, HqError> {
    Ok(pg
        .query_opt("SELECT 1 FROM hq_survey_answers WHERE store_id = $1 AND follow_up_id = $2", &[&store_id, &follow_up_id])
        .await?
        .is_some())
}

/// What storing an answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored, with its downlink sequence for the store.
    New { answer_id: String, seq: i64 },
    /// This follow-up was answered before: nothing stored.
    AlreadyAnswered,
}

/// Store an answer (already checked with `check_answer`) and its downlink row, in one transaction.
pub async fn store_answer(pool: &Pool, task: &Task, answer: &Answer, lang: &str, now: DateTime<Utc>) -> Result<Stored, HqError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let store = task.store_id.as_str();
    tx.execute("INSERT INTO hq_downlink_state (store_id) VALUES ($1) ON CONFLICT (store_id) DO NOTHING", &[&store]).await?;
    let seq: i64 = tx.query_one("SELECT next_seq FROM hq_downlink_state WHERE store_id = $1 FOR UPDATE", &[&store]).await?.get(0);
    let answer_id = crate::domain::new_id();
    let answered_at = crate::clock::stamp(now);
    let fixed = serde_json::to_string(&answer.fixed).map_err(|e| HqError::Invalid(e.to_string()))?;
    let hot = rules::route(answer).hot;
    let (csat, nps) = (answer.csat as i16, answer.nps as i16);
    let inserted = tx
        .execute(
            "INSERT INTO hq_survey_answers (id, store_id, follow_up_id, case_id, via, lang, csat, nps, fixed, comment, hot, answered_at, downlink_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11, $12::text::timestamptz, $13)
             ON CONFLICT (store_id, follow_up_id) DO NOTHING",
            &[
                &answer_id,
                &store,
                &task.follow_up_id,
                &task.body.case_id,
                &task.via.as_str(),
                &lang,
                &csat,
                &nps,
                &fixed,
                &answer.comment,
                &hot,
                &answered_at,
                &seq,
            ],
        )
        .await?;
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(Stored::AlreadyAnswered);
    }
    let payload =
        HqAnswer { seq, answer_id: answer_id.clone(), follow_up_id: task.follow_up_id.clone(), answer: answer.clone(), answered_at };
    let payload = serde_json::to_string(&payload).map_err(|e| HqError::Invalid(e.to_string()))?;
    tx.execute(
        "INSERT INTO hq_downlink (store_id, seq, answer_id, payload) VALUES ($1, $2, $3, $4::text::jsonb)",
        &[&store, &seq, &answer_id, &payload],
    )
    .await?;
    tx.execute("UPDATE hq_downlink_state SET next_seq = next_seq + 1 WHERE store_id = $1", &[&store]).await?;
    tx.commit().await?;
    Ok(Stored::New { answer_id, seq })
}

/// Blank the comment of every answer given before `cutoff` (retention): in the answer row and in
/// its downlink payload, which the relay may still send. Returns how many answers lost their
/// comment; an answer blanked before is not counted again.
pub async fn blank_old_comments(pool: &Pool, cutoff: DateTime<Utc>) -> Result<u64, HqError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let cutoff = crate::clock::stamp(cutoff);
    tx.execute(
        "UPDATE hq_downlink d SET payload = jsonb_set(d.payload, '{answer,comment}', 'null'::jsonb)
         FROM hq_survey_answers a
         WHERE a.id = d.answer_id AND a.answered_at < $1::text::timestamptz
           AND d.payload -> 'answer' ->> 'comment' IS NOT NULL",
        &[&cutoff],
    )
    .await?;
    let n = tx
        .execute(
            "UPDATE hq_survey_answers SET comment = NULL WHERE answered_at < $1::text::timestamptz AND comment IS NOT NULL",
            &[&cutoff],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_leniently_and_hostile_ones_are_none() {
        let b = FollowUpBody::parse(
            r#"{"id":"f1","case_id":"c1","store_name":"一店","delivered_at":"x","due_at":"2026-12-03T02:00:00Z","token_hash":"ab",
                "status":"pending","lang":"en","questions":[{"finding_id":"q1","label_zh":"右前门异响","label_en":"noise"}],
                "channels":["sms","hq_relay"],"contact":{"phone":" 13800000000 "},"version":3,"new_field":true}"#,
        )
        .unwrap();
        assert_eq!(b.phone(), Some("13800000000"));
        assert!(b.consents_to("sms") && !b.consents_to("wechat"));
        let none = FollowUpBody::parse(r#"{"status":"pending","contact":null}"#).unwrap();
        assert_eq!(none.phone(), None);
        assert!(FollowUpBody::parse("\"a string\"").is_none());
        assert!(FollowUpBody::parse(r#"{"questions":"not a list"}"#).is_none());
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
