//! SMS/WeChat invitations through HQ: a configured HTTP webhook (the operator's SMS or WeChat
//! gateway) is called for each follow-up that is due and whose customer consented to the channel.
//!
//! Each round: claim, then send.
//! - Claim: for every pending `follow_up` record that is due (`due_at` ≤ the injected clock), has a
//!   phone number and consents to `sms` or `wechat`, and has no invitation pending or sent, insert
//!   one `hq_notifications` row. Unique per (store, follow-up, channel), so two hq-survey processes
//!   or two rounds never make two. One channel at a time, SMS first (every phone gets it); a
//!   channel that failed or was cancelled lets the next consented one try.
//! - Send: each pending row that is due, locked (`FOR UPDATE SKIP LOCKED`) for the time of the
//!   call. Consent is checked again against the newest record first (a revocation arrives as a
//!   new version of the follow-up without the channel); no consent, no phone, answered or no longer
//!   pending → `cancelled`, nothing sent. Then one POST of `{id, channel, phone, text, url}` with
//!   `Idempotency-Key: <id>`: 2xx → `sent`; anything else → retried after `interval · 2^(n-1)`
//!   (capped at 6 h) until `max_attempts`, then `failed`, kept with its last error.
//!   A crash between the gateway's 2xx and our COMMIT sends again with the same key; the gateway
//!   drops the duplicate.
//!
//! Logs and stored errors carry ids, channels and HTTP statuses: never the phone number, the
//! link's token or the text.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::survey_config::NotifyConfig;
use super::survey_page::{clean, Signer};
use super::survey_store::{token_hash, FollowUpBody, Pool};
use crate::clock::{self, Clock};
use crate::sync::hq::HqError;

/// The channels the notifier sends through, in the order it tries them.
pub const CHANNELS: [&str; 2] = ["sms", "wechat"];
/// Longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);
/// Rows handled per round (the rest waits for the next one).
const ROUND_MAX: usize = 500;

pub fn start(
    cfg: NotifyConfig,
    base_url: String,
    pool: Arc<Pool>,
    signer: Signer,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder().timeout(cfg.timeout).redirect(reqwest::redirect::Policy::none()).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the notifier cannot build its HTTP client; no invitations will be sent");
                return;
            }
        };
        let n = Notifier { cfg, base_url, pool, signer, clock, http };
        tracing::info!(webhook = %n.cfg.webhook_origin(), every_s = n.cfg.interval.as_secs(), "notifier started");
        loop {
            if let Err(e) = n.round().await {
                tracing::warn!(error = %e, "notifier round failed; retried next round");
            }
            tokio::select! {
                _ = super::relay::stopped(&mut stop) => return,
                _ = tokio::time::sleep(n.cfg.interval) => {}
            }
        }
    })
}

pub struct Notifier {
    cfg: NotifyConfig,
    base_url: String,
    pool: Arc<Pool>,
    signer: Signer,
    clock: Clock,
    http: reqwest::Client,
}

/// What one round did (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    pub cancelled: usize,
}

/// A phone number as a gateway takes it: digits, an optional leading +, spaces or dashes.
fn plausible_phone(p: &str) -> bool {
    let digits = p.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && p.len() <= 32
        && p.chars().enumerate().all(|(i, c)| c.is_ascii_digit() || c == ' ' || c == '-' || (c == '+' && i == 0))
}

/// The wait after the `attempts`-th failure.
pub fn backoff(interval: Duration, attempts: u32) -> Duration {
    interval.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

/// Why an invitation must not go out (now or ever), if it must not.
fn refusal(body: Option<&FollowUpBody>, channel: &str, answered: bool) -> Option<&'static str> {
    let Some(b) = body else { return Some("follow-up record gone or unreadable") };
    if answered {
        Some("answered at HQ")
    } else if b.status != "pending" {
        Some("follow-up no longer pending")
    } else if !b.consents_to(channel) {
        Some("consent withdrawn")
    } else if !b.phone().is_some_and(plausible_phone) {
        Some("no usable phone number")
    } else {
        None
    }
}

impl Notifier {
    /// Claim what is due, then send what is pending.
    pub async fn round(&self) -> Result<Round, HqError> {
        let now = self.clock.now();
        let mut r = Round { claimed: self.claim(now).await?, ..Round::default() };
        for _ in 0..ROUND_MAX {
            if !self.send_one(now, &mut r).await? {
                break;
            }
        }
        if r != Round::default() {
            tracing::info!(
                claimed = r.claimed,
                sent = r.sent,
                retried = r.retried,
                failed = r.failed,
                cancelled = r.cancelled,
                "notifier round"
            );
        }
        Ok(r)
    }

    async fn claim(&self, now: DateTime<Utc>) -> Result<usize, HqError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT r.store_id, r.record_id, r.body::text,
                        ARRAY(SELECT n.channel FROM hq_notifications n WHERE n.store_id = r.store_id AND n.follow_up_id = r.record_id)
                 FROM hq_records r
                 WHERE r.record_type = 'follow_up' AND r.body->>'status' = 'pending'
                   AND r.body->'channels' ?| ARRAY['sms', 'wechat']
                   AND NOT EXISTS (SELECT 1 FROM hq_notifications n WHERE n.store_id = r.store_id AND n.follow_up_id = r.record_id
                                   AND n.status IN ('pending', 'sent'))
                   AND NOT EXISTS (SELECT 1 FROM hq_survey_answers a WHERE a.store_id = r.store_id AND a.follow_up_id = r.record_id)
                 LIMIT 5000",
                &[],
            )
            .await?;
        let mut claimed = 0;
        for row in rows {
            let (store, follow_up, text, tried): (String, String, String, Vec<String>) = (row.get(0), row.get(1), row.get(2), row.get(3));
            let Some(body) = FollowUpBody::parse(&text) else { continue };
            // Parsed here, not cast in SQL: one store's malformed date must not stop every invitation.
            if clock::parse(&body.due_at).is_none_or(|due| due > now) {
                continue;
            }
            let Some(channel) = CHANNELS.iter().find(|ch| body.consents_to(ch) && !tried.iter().any(|t| t == *ch)) else { continue };
            if refusal(Some(&body), channel, false).is_some() {
                continue;
            }
            let link = self.signer.link_token(&store, &follow_up, channel);
            let n = c
                .execute(
                    "INSERT INTO hq_notifications (id, store_id, follow_up_id, channel, next_attempt_at, link_hash)
                     VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6) ON CONFLICT DO NOTHING",
                    &[&crate::domain::new_id(), &store, &follow_up, channel, &clock::stamp(now), &token_hash(&link)],
                )
                .await?;
            claimed += n as usize;
        }
        Ok(claimed)
    }

    /// Send (or cancel) the next due invitation; false when there is none.
    async fn send_one(&self, now: DateTime<Utc>, r: &mut Round) -> Result<bool, HqError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let stamp = clock::stamp(now);
        let Some(row) = tx
            .query_opt(
                "SELECT id, store_id, follow_up_id, channel, attempts FROM hq_notifications
                 WHERE status = 'pending' AND next_attempt_at <= $1::text::timestamptz
                 ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[&stamp],
            )
            .await?
        else {
            tx.commit().await?;
            return Ok(false);
        };
        let (id, store, follow_up, channel, attempts): (String, String, String, String, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // The newest version of the record: consent is what the store says now.
        let body = tx
            .query_opt(
                "SELECT body::text FROM hq_records WHERE store_id = $1 AND record_type = 'follow_up' AND record_id = $2",
                &[&store, &follow_up],
            )
            .await?
            .and_then(|row| FollowUpBody::parse(&row.get::<_, String>(0)));
        let answered = tx
            .query_opt("SELECT 1 FROM hq_survey_answers WHERE store_id = $1 AND follow_up_id = $2", &[&store, &follow_up])
            .await?
            .is_some();
        if let Some(why) = refusal(body.as_ref(), &channel, answered) {
            tx.execute("UPDATE hq_notifications SET status = 'cancelled', last_error = $2 WHERE id = $1", &[&id, &why]).await?;
            tx.commit().await?;
            tracing::info!(notification.id = %id, store = %store, follow_up.id = %follow_up, channel = %channel, reason = why, "invitation cancelled");
            r.cancelled += 1;
            return Ok(true);
        }
        let body = body.expect("refusal() checked it");
        let phone = body.phone().unwrap_or_default().to_string();
        let url = format!("{}/s/{}", self.base_url, self.signer.link_token(&store, &follow_up, &channel));
        let template = if body.lang.to_ascii_lowercase().starts_with("en") { &self.cfg.template_en } else { &self.cfg.template_zh };
        let text = template.replace("{store}", &clean(&body.store_name, 40)).replace("{url}", &url);
        let payload = serde_json::json!({ "id": id, "channel": channel, "phone": phone, "text": text, "url": url });
        let outcome = self.http.post(&self.cfg.webhook_url).header("Idempotency-Key", id.as_str()).json(&payload).send().await;
        let attempt = attempts + 1;
        let error = match outcome {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("HTTP {}", resp.status().as_u16())),
            Err(e) if e.is_timeout() => Some("timeout".to_string()),
            Err(e) if e.is_connect() => Some("cannot connect to the webhook".to_string()),
            Err(_) => Some("request failed".to_string()),
        };
        match error {
            None => {
                tx.execute(
                    "UPDATE hq_notifications SET status = 'sent', attempts = $2, sent_at = $3::text::timestamptz, last_error = NULL WHERE id = $1",
                    &[&id, &attempt, &stamp],
                )
                .await?;
                tracing::info!(notification.id = %id, store = %store, follow_up.id = %follow_up, channel = %channel, attempt, "invitation sent");
                r.sent += 1;
            }
            Some(e) if attempt as u32 >= self.cfg.max_attempts => {
                tx.execute(
                    "UPDATE hq_notifications SET status = 'failed', attempts = $2, last_error = $3 WHERE id = $1",
                    &[&id, &attempt, &e],
                )
                .await?;
                tracing::warn!(notification.id = %id, store = %store, follow_up.id = %follow_up, channel = %channel, attempt, error = %e,
                    "invitation failed for good (kept as failed)");
                r.failed += 1;
            }
            Some(e) => {
                let next = clock::stamp(now + chrono::Duration::from_std(backoff(self.cfg.interval, attempt as u32)).unwrap_or_default());
                tx.execute(
                    "UPDATE hq_notifications SET attempts = $2, last_error = $3, next_attempt_at = $4::text::timestamptz WHERE id = $1",
                    &[&id, &attempt, &e, &next],
                )
                .await?;
                tracing::info!(notification.id = %id, store = %store, follow_up.id = %follow_up, channel = %channel, attempt, error = %e, "invitation will be retried");
                r.retried += 1;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let i = Duration::from_secs(60);
        assert_eq!(backoff(i, 1), Duration::from_secs(60));
        assert_eq!(backoff(i, 2), Duration::from_secs(120));
        assert_eq!(backoff(i, 4), Duration::from_secs(480));
        assert_eq!(backoff(i, 40), BACKOFF_MAX);
    }

    #[test]
    fn phones_and_refusals() {
        for ok in ["13800000000", "+86 138-0000-0000", "021 5555 1234"] {
            assert!(plausible_phone(ok), "{ok}");
        }
        for bad in ["", "12", "138\u{0}0000000", "+86+138", "call me", &"1".repeat(40)] {
            assert!(!plausible_phone(bad), "{bad}");
        }
        let body = |channels: &str, status: &str, phone: &str| {
            FollowUpBody::parse(&format!(r#"{{"status":"{status}","channels":{channels},"contact":{phone}}}"#)).unwrap()
        };
        let ok = body(r#"["sms"]"#, "pending", r#"{"phone":"13800000000"}"#);
        assert_eq!(refusal(Some(&ok), "sms", false), None);
        assert_eq!(refusal(Some(&ok), "wechat", false), Some("consent withdrawn"));
        assert_eq!(refusal(Some(&ok), "sms", true), Some("answered at HQ"));
        assert_eq!(
            refusal(Some(&body(r#"["sms"]"#, "answered", r#"{"phone":"13800000000"}"#)), "sms", false),
            Some("follow-up no longer pending")
        );
        assert_eq!(refusal(Some(&body(r#"["sms"]"#, "pending", "null")), "sms", false), Some("no usable phone number"));
        assert_eq!(refusal(None, "sms", false), Some("follow-up record gone or unreadable"));
    }
}
