//! The answer downlink, HQ's end: every answer taken on the survey page goes to its store on
//! `servicebay/v1/{store}/answers` (QoS 1, not retained) until the store's retained
//! `…/answers/ack` covers its sequence.
//!
//! The rule is a diff, not a replay (habit 6): HQ sends everything after the store's acknowledged
//! sequence, and the store applies in order, skips what it has and stops at a gap. So HQ may send
//! too often but never too little. It sends:
//! - when an answer is stored (the page wakes the relay),
//! - when an ack arrives that is still behind what HQ holds (the store missed something),
//! - when the store's retained status turns `online` (it was away; MQTT kept nothing for it),
//! - on (re)connecting to the broker, for every store with a backlog,
//! - every `resend` while unacknowledged (except to stores known to be offline).
//!
//! Invariants: `acked_seq` only moves forward, and never past what HQ has handed out (an ack from
//! a store that claims more — HQ's database restored from an older backup — is clamped and logged);
//! PostgreSQL is the only memory (a restart loses nothing); a broker outage only delays.
//! Resends provoked by acks are rate-limited per store, so a store that acks without progress
//! cannot drive a send loop.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::{mpsc, watch};

use super::survey_store::Pool;
use crate::sync::hq::{HqConfig, HqError};
use crate::sync::link::{backoff, next_attempt, Link};
use crate::sync::topics;
use crate::sync::wire::{self, AnswerBatch, HqAnswer};

/// Answers per MQTT message, and the byte budget of one (well under `wire::MAX_ANSWER_BATCH`).
const BATCH_ANSWERS: usize = 50;
const BATCH_BYTES: usize = 512 * 1024;
/// Answers read per send; the rest goes after the next ack.
const SEND_WINDOW: i64 = 1000;
/// An ack or status that brings nothing new resends at most this often per store.
const MIN_RESEND_GAP: Duration = Duration::from_secs(2);

/// The page's way to say "an answer for this store is in PostgreSQL".
#[derive(Clone)]
pub struct RelayHandle {
    tx: mpsc::UnboundedSender<String>,
}

impl RelayHandle {
    pub fn wake(&self, store_id: &str) {
        // The relay gone (shutting down) loses nothing: the answer is in PostgreSQL.
        let _ = self.tx.send(store_id.to_string());
    }
}

/// Start the relay task; it runs until `stop` turns true.
pub fn start(cfg: &HqConfig, pool: Arc<Pool>, resend: Duration, stop: watch::Receiver<bool>) -> (RelayHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let relay = Relay { link: cfg.link.clone(), client_id: format!("servicebay-hq-survey-{}", cfg.worker_id), pool, resend };
    (RelayHandle { tx }, tokio::spawn(relay.run(rx, stop)))
}

struct Relay {
    link: Link,
    client_id: String,
    pool: Arc<Pool>,
    resend: Duration,
}

/// What one broker session knows beyond PostgreSQL.
#[derive(Default)]
struct Session {
    /// The store's last retained status: true online, false offline (absent: unknown).
    online: HashMap<String, bool>,
    last_sent: HashMap<String, Instant>,
    dirty: BTreeSet<String>,
}

impl Relay {
    async fn run(self, mut wakes: mpsc::UnboundedReceiver<String>, mut stop: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let why = tokio::select! {
                _ = stopped(&mut stop) => return,
                r = self.session(&mut wakes) => match r { Ok(()) => "session ended".to_string(), Err(e) => e.to_string() },
            };
            attempt = next_attempt(attempt, started.elapsed());
            let wait = backoff(attempt, self.link.backoff_max);
            tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "answer relay reconnecting");
            tokio::select! { _ = stopped(&mut stop) => return, _ = tokio::time::sleep(wait) => {} }
        }
    }

    async fn session(&self, wakes: &mut mpsc::UnboundedReceiver<String>) -> Result<(), HqError> {
        let mut opts = self.link.options(&self.client_id)?;
        // Nothing to keep at the broker: PostgreSQL has every answer, the acks are retained.
        opts.set_clean_start(true);
        opts.set_session_expiry_interval(None);
        opts.set_max_packet_size(Some(wire::MAX_ANSWER_BATCH as u32 + 4096));
        let (client, mut ev) = AsyncClient::new(opts, 64);
        client.subscribe(topics::ALL_ANSWER_ACKS, QoS::AtLeastOnce).await.map_err(mqtt)?;
        client.subscribe("servicebay/v1/+/status", QoS::AtLeastOnce).await.map_err(mqtt)?;
        // The event loop on its own task (publishing from the task that polls it can deadlock).
        let (tx, mut rx) = mpsc::channel::<Result<Option<Publish>, String>>(1024);
        let poller = tokio::spawn(async move {
            loop {
                let item = match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Some(p)),
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(None),
                    Ok(_) => continue,
                    Err(e) => Err(e.to_string()),
                };
                let down = item.is_err();
                if tx.send(item).await.is_err() || down {
                    return;
                }
            }
        });
        let r = self.serve(&client, &mut rx, wakes).await;
        poller.abort();
        let _ = client.disconnect().await;
        r
    }

    async fn serve(
        &self,
        client: &AsyncClient,
        rx: &mut mpsc::Receiver<Result<Option<Publish>, String>>,
        wakes: &mut mpsc::UnboundedReceiver<String>,
    ) -> Result<(), HqError> {
        let mut s = Session::default();
        let mut wakes_open = true;
        let mut tick = tokio::time::interval(self.resend);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Ok(Some(p))) => self.incoming(&p, &mut s).await?,
                    Some(Ok(None)) => {
                        tracing::info!(broker = %self.link.host, "answer relay connected");
                        s.dirty.extend(self.backlog(None).await?);
                    }
                    Some(Err(e)) => return Err(HqError::Mqtt(e)),
                    None => return Err(HqError::Mqtt("event loop ended".into())),
                },
                w = wakes.recv(), if wakes_open => match w {
                    Some(store) => { s.dirty.insert(store); }
                    // The page is gone (shutting down); acks and resends still run until stopped.
                    None => wakes_open = false,
                },
                _ = tick.tick() => {
                    for store in self.backlog(Some(self.resend)).await? {
                        if s.online.get(&store) != Some(&false) {
                            s.dirty.insert(store);
                        }
                    }
                }
            }
            // Coalesce: wakes that arrived meanwhile go out in the same send.
            while let Ok(store) = wakes.try_recv() {
                s.dirty.insert(store);
            }
            for store in std::mem::take(&mut s.dirty) {
                self.send_pending(client, &store).await?;
                s.last_sent.insert(store, Instant::now());
            }
        }
    }

    /// An ack or a status from a store.
    async fn incoming(&self, p: &Publish, s: &mut Session) -> Result<(), HqError> {
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let recent = |s: &Session, store: &str| s.last_sent.get(store).is_some_and(|t| t.elapsed() < MIN_RESEND_GAP);
        if let Some(store) = topics::store_of(&topic, "answers/ack") {
            let ack = match wire::decode_answer_ack(&p.payload) {
                Ok(a) if a.store_id == store => a,
                Ok(a) => {
                    tracing::warn!(store, claimed = %a.store_id, "an answer ack for another store's topic ignored");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(store, error = %e, "a malformed answer ack ignored");
                    return Ok(());
                }
            };
            if let Some((advanced, behind)) = self.record_ack(store, ack.applied_seq).await? {
                if behind && (advanced || !recent(s, store)) {
                    s.dirty.insert(store.to_string());
                }
            }
        } else if let Some(store) = topics::store_of(&topic, "status") {
            let Ok(st) = wire::decode_status(&p.payload) else {
                return Ok(());
            };
            if st.store_id != store {
                return Ok(());
            }
            let online = st.state == "online";
            let was = s.online.insert(store.to_string(), online);
            if online && was != Some(true) && !recent(s, store) {
                s.dirty.insert(store.to_string());
            }
        }
        Ok(())
    }

    /// Move the store's acknowledged sequence forward (never back, never past what HQ handed out).
    /// Returns (it advanced, HQ still holds answers after it); None when HQ never sent this store
    /// anything.
    async fn record_ack(&self, store: &str, applied: i64) -> Result<Option<(bool, bool)>, HqError> {
        let c = self.pool.get().await?;
        let Some(before) = c.query_opt("SELECT acked_seq, next_seq - 1 FROM hq_downlink_state WHERE store_id = $1", &[&store]).await?
        else {
            return Ok(None);
        };
        let (old, last): (i64, i64) = (before.get(0), before.get(1));
        if applied > last {
            tracing::warn!(store, applied, last, "the store acknowledges answers HQ never sent (HQ's database restored?); clamped");
        }
        let row = c
            .query_one(
                "UPDATE hq_downlink_state
                 SET acked_at = CASE WHEN LEAST($2, next_seq - 1) > acked_seq THEN now() ELSE acked_at END,
                     acked_seq = GREATEST(acked_seq, LEAST($2, next_seq - 1))
                 WHERE store_id = $1 RETURNING acked_seq, next_seq - 1",
                &[&store, &applied],
            )
            .await?;
        let (acked, last): (i64, i64) = (row.get(0), row.get(1));
        if acked > old {
            tracing::info!(store, acked, last, "answers acknowledged by the store");
        }
        Ok(Some((acked > old, acked < last)))
    }

    /// Stores with answers they have not acknowledged; with `idle`, only those not sent to for that long.
    async fn backlog(&self, idle: Option<Duration>) -> Result<Vec<String>, HqError> {
        let c = self.pool.get().await?;
        let secs = idle.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let rows = c
            .query(
                "SELECT store_id FROM hq_downlink_state WHERE acked_seq < next_seq - 1
                   AND (last_sent_at IS NULL OR last_sent_at <= now() - make_interval(secs => $1))",
                &[&secs],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Publish everything after the store's acknowledged sequence (up to a window), in order.
    async fn send_pending(&self, client: &AsyncClient, store: &str) -> Result<(), HqError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT d.seq, d.payload::text FROM hq_downlink d JOIN hq_downlink_state s USING (store_id)
                 WHERE d.store_id = $1 AND d.seq > s.acked_seq ORDER BY d.seq LIMIT $2",
                &[&store, &SEND_WINDOW],
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut answers = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.get(0);
            match serde_json::from_str::<HqAnswer>(&r.get::<_, String>(1)) {
                Ok(a) => answers.push(a),
                Err(e) => {
                    // Our own rows; one that does not read back would be a gap the store waits on.
                    tracing::error!(store, seq, error = %e, "a downlink row does not parse; sending stops before it");
                    break;
                }
            }
        }
        let (first, last) = (answers.first().map(|a| a.seq), answers.last().map(|a| a.seq));
        let mut sent = 0usize;
        for chunk in chunks(store, answers) {
            sent += chunk.answers.len();
            client.publish(topics::answers(store), QoS::AtLeastOnce, false, wire::encode_answers(&chunk)).await.map_err(mqtt)?;
        }
        c.execute("UPDATE hq_downlink_state SET last_sent_at = now(), sends = sends + 1 WHERE store_id = $1", &[&store]).await?;
        tracing::debug!(store, first, last, answers = sent, "answers sent to the store");
        Ok(())
    }
}

/// Consecutive answers cut into messages of at most `BATCH_ANSWERS` answers and about
/// `BATCH_BYTES` (a single answer is never split: it is far smaller than the wire's limit).
fn chunks(store: &str, answers: Vec<HqAnswer>) -> Vec<AnswerBatch> {
    let mut out: Vec<AnswerBatch> = Vec::new();
    let mut bytes = 0usize;
    for a in answers {
        let size = serde_json::to_vec(&a).map(|v| v.len()).unwrap_or(0);
        let full = out.last().is_none_or(|b| b.answers.len() >= BATCH_ANSWERS || bytes + size > BATCH_BYTES);
        if full {
            out.push(AnswerBatch { v: wire::WIRE_VERSION, store_id: store.to_string(), answers: Vec::new() });
            bytes = 0;
        }
        bytes += size;
        if let Some(b) = out.last_mut() {
            b.answers.push(a);
        }
    }
    out
}

fn mqtt(e: impl std::fmt::Display) -> HqError {
    HqError::Mqtt(e.to_string())
}

/// Resolves when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::follow_up::Answer;

    fn answer(seq: i64, comment_len: usize) -> HqAnswer {
        HqAnswer {
            seq,
            answer_id: format!("a{seq}"),
            follow_up_id: format!("f{seq}"),
            answer: Answer { csat: 5, nps: 9, fixed: vec![], comment: Some("字".repeat(comment_len)) },
            answered_at: "2026-12-03T02:00:00.000Z".into(),
        }
    }

    #[test]
    fn batches_are_consecutive_bounded_and_decode() {
        let all: Vec<HqAnswer> = (1..=120).map(|s| answer(s, 10)).collect();
        let b = chunks("s1", all);
        assert_eq!(b.iter().map(|x| x.answers.len()).collect::<Vec<_>>(), vec![50, 50, 20]);
        for x in &b {
            let back = wire::decode_answers(&wire::encode_answers(x)).unwrap();
            assert_eq!(&back, x);
        }
        assert_eq!(b[1].answers[0].seq, 51);
        // Big answers (60 KB each): the byte budget cuts first, and no message passes the wire's limit.
        let big: Vec<HqAnswer> = (1..=30).map(|s| answer(s, 20_000)).collect();
        let b = chunks("s1", big);
        assert!(b.len() >= 4 && b.iter().all(|x| x.answers.len() < BATCH_ANSWERS), "{}", b.len());
        assert!(b
            .iter()
            .all(|x| wire::encode_answers(x).len() <= BATCH_BYTES + 1024 && wire::decode_answers(&wire::encode_answers(x)).is_ok()));
        assert_eq!(b.iter().map(|x| x.answers.len()).sum::<usize>(), 30);
        assert!(chunks("s1", vec![]).is_empty());
    }
}
