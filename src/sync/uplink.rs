//! The store's side of the link: one task that sends the outbox to HQ and applies what HQ sends
//! down. It owns the MQTT connection; the rest of the appliance only sees `SyncHandle::status`.
//!
//! Per connection: fresh rumqttc client (persistent broker session, last will = retained
//! `offline` status) → subscribe to acks and config → publish `online` status → send batches after
//! the last acked sequence, at most `window` batches ahead of HQ's ack → on ack, delete acked rows.
//! No ack progress for `ack_timeout` while batches are out: go back to the acked sequence and send
//! again (HQ ignores duplicates); three times in a row: drop the connection and reconnect.
//! Any error: drop the client, wait `backoff` (exponential, jitter), start over from SQLite.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::{mpsc, watch};

use super::bundles::BundleApplier;
use super::wire::{self, Batch, Status};
use super::{topics, LinkState, SyncSettings};
use crate::store::{self, Store};

/// How often the task looks for new outbox rows (commit → send latency is at most this).
const POLL: Duration = Duration::from_millis(25);
/// How often the retained status is refreshed while connected.
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// A publish that cannot even be queued within this time means the event loop is stuck.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

enum FromLoop {
    Connected,
    Message { topic: String, payload: bytes::Bytes },
    Down(String),
}

pub(super) struct Uplink {
    pub store: Store,
    pub settings: SyncSettings,
    pub state: Arc<Mutex<LinkState>>,
    pub bundles: BundleApplier,
    /// Applies survey answers HQ sends down.
    pub follow_up: Arc<crate::case::follow_up::FollowUpService>,
}

enum End {
    Shutdown,
    Reconnect(String),
}

impl Uplink {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.set(|s| {
                s.state = "connecting";
            });
            let connected_at = Instant::now();
            match self.session(&mut shutdown).await {
                End::Shutdown => {
                    self.set(|s| {
                        s.state = "stopped";
                        s.connected = false;
                    });
                    return;
                }
                End::Reconnect(why) => {
                    // A session that lasted a while was a success: start the backoff again.
                    attempt = super::link::next_attempt(attempt, connected_at.elapsed());
                    let wait = super::link::backoff(attempt, self.settings.link.backoff_max);
                    tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "HQ link down");
                    self.set(|s| {
                        s.state = "backoff";
                        s.connected = false;
                        s.last_error = Some(why.clone());
                        s.reconnects += 1;
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut LinkState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    async fn status_payload(&self, state: &str) -> Vec<u8> {
        let o = self.store.read(store::sync::outbox_state).await.unwrap_or_default();
        let bundles = self.store.read(store::sync::applied_bundles).await.unwrap_or_default();
        let s = Status {
            v: wire::WIRE_VERSION,
            store_id: self.settings.store_id.clone(),
            state: state.into(),
            at: crate::domain::now(),
            acked_seq: o.acked_seq,
            outbox_depth: o.depth,
            bundles: bundles.into_iter().map(|(k, b)| (k, b.version)).collect(),
        };
        serde_json::to_vec(&s).unwrap_or_default()
    }

    async fn session(&self, shutdown: &mut watch::Receiver<bool>) -> End {
        let id = &self.settings.store_id;
        let mut opts = match self.settings.link.options(&format!("servicebay-store-{id}")) {
            Ok(o) => o,
            Err(e) => return End::Reconnect(e.to_string()),
        };
        // A persistent session keeps our subscriptions (and HQ's acks) across short outages.
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(7 * 24 * 3600));
        opts.set_max_packet_size(Some(wire::MAX_BUNDLE_COMPRESSED as u32 + 4096));
        let offline = serde_json::to_vec(&Status {
            v: wire::WIRE_VERSION,
            store_id: id.clone(),
            state: "offline".into(),
            at: String::new(),
            acked_seq: 0,
            outbox_depth: 0,
            bundles: Default::default(),
        })
        .unwrap_or_default();
        opts.set_last_will(LastWill::new(topics::status(id), offline, QoS::AtLeastOnce, true, None));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, mut rx) = mpsc::channel::<FromLoop>(256);
        let poller = tokio::spawn(async move {
            loop {
                let msg = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => FromLoop::Connected,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        FromLoop::Message { topic: String::from_utf8_lossy(&p.topic).into_owned(), payload: p.payload }
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => FromLoop::Down(format!("broker disconnected us: {:?}", d.reason_code)),
                    Ok(_) => continue,
                    Err(e) => FromLoop::Down(e.to_string()),
                };
                let down = matches!(msg, FromLoop::Down(_));
                if tx.send(msg).await.is_err() || down {
                    return;
                }
            }
        });
        let end = self.connected(&client, &mut rx, shutdown).await;
        if matches!(end, End::Shutdown) {
            // Say goodbye properly so HQ sees `offline` at once (the will covers crashes).
            let payload = self.status_payload("offline").await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = client.publish(topics::status(id), QoS::AtLeastOnce, true, payload).await;
                let _ = client.disconnect().await;
                // Let the event loop flush the two packets.
                while let Some(m) = rx.recv().await {
                    if matches!(m, FromLoop::Down(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        poller.abort();
        end
    }

    async fn connected(&self, client: &AsyncClient, rx: &mut mpsc::Receiver<FromLoop>, shutdown: &mut watch::Receiver<bool>) -> End {
        let id = self.settings.store_id.clone();
        // Wait for CONNACK.
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(FromLoop::Connected)) => {}
            Ok(Some(FromLoop::Down(e))) => return End::Reconnect(e),
            Ok(_) => return End::Reconnect("event loop ended before connecting".into()),
            Err(_) => return End::Reconnect("no CONNACK within 20 s".into()),
        }
        let subs = [topics::ack(&id), topics::config(&id), topics::config("all"), topics::answers(&id)];
        for t in subs {
            if let Err(e) = client.subscribe(t, QoS::AtLeastOnce).await {
                return End::Reconnect(format!("subscribe: {e}"));
            }
        }
        let online = self.status_payload("online").await;
        if let Err(e) = client.publish(topics::status(&id), QoS::AtLeastOnce, true, online).await {
            return End::Reconnect(format!("status: {e}"));
        }
        // Tell HQ's survey service where the answer downlink stands (it resends from there).
        if let Ok(applied) = self.follow_up.applied_seq().await {
            let ack = wire::AnswerAck { v: wire::WIRE_VERSION, store_id: id.clone(), applied_seq: applied };
            let _ = client.publish(topics::answers_ack(&id), QoS::AtLeastOnce, true, wire::encode_answer_ack(&ack)).await;
        }
        tracing::info!(broker = %self.settings.link.host, "HQ link up");
        self.set(|s| {
            s.state = "online";
            s.connected = true;
            s.last_connected_at = Some(crate::domain::now());
            s.last_error = None;
        });

        // Sync is a diff: start from what HQ acknowledged, as recorded in SQLite.
        let mut acked = match self.store.read(store::sync::outbox_state).await {
            Ok(o) => o.acked_seq,
            Err(e) => return End::Reconnect(format!("outbox: {e}")),
        };
        let mut cursor = acked;
        let mut in_flight: VecDeque<i64> = VecDeque::new();
        let mut last_progress = Instant::now();
        let mut stalls = 0u32;
        let mut last_status = Instant::now();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return End::Shutdown,
                msg = rx.recv() => match msg {
                    None => return End::Reconnect("event loop ended".into()),
                    Some(FromLoop::Down(e)) => return End::Reconnect(e),
                    Some(FromLoop::Connected) => {
                        // rumqttc reconnected underneath us: treat it as a new session.
                        return End::Reconnect("connection was reset".into());
                    }
                    Some(FromLoop::Message { topic, payload }) => {
                        if topic == topics::ack(&id) {
                            match self.on_ack(&payload).await {
                                Ok(Some(a)) if a > acked => {
                                    acked = a;
                                    cursor = cursor.max(acked);
                                    while in_flight.front().is_some_and(|s| *s <= acked) {
                                        in_flight.pop_front();
                                    }
                                    last_progress = Instant::now();
                                    stalls = 0;
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "ignored a message on the ack topic"),
                            }
                        } else if topic == topics::answers(&id) {
                            self.on_answers(client, &payload).await;
                        } else {
                            self.bundles.handle(&topic, payload).await;
                            let status = self.status_payload("online").await;
                            let _ = client.try_publish(topics::status(&id), QoS::AtLeastOnce, true, status);
                        }
                    }
                },
                _ = tick.tick() => {
                    // Fill the window.
                    while in_flight.len() < self.settings.window {
                        let (after, n, bytes) = (cursor, self.settings.batch_max_records, self.settings.batch_max_bytes);
                        let batch = self.store.read(move |tx| {
                            let records = store::sync::batch_after(tx, after, n, bytes)?;
                            let head = store::sync::head_seq(tx)?;
                            Ok::<_, store::StoreError>((records, head))
                        }).await;
                        let (records, head) = match batch {
                            Ok(b) => b,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot read the outbox");
                                break;
                            }
                        };
                        let Some(last) = records.last().map(|r| r.seq) else { break };
                        let count = records.len();
                        let b = Batch {
                            v: wire::WIRE_VERSION,
                            store_id: id.clone(),
                            after_seq: cursor,
                            last_seq: last,
                            head_seq: head,
                            sent_at: crate::domain::now(),
                            records: records.into_iter().map(wire::Record::from).collect(),
                        };
                        let payload = wire::encode_batch(&b);
                        let sent = tokio::time::timeout(QUEUE_TIMEOUT, client.publish(topics::events(&id), QoS::AtLeastOnce, false, payload)).await;
                        match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return End::Reconnect(format!("publish: {e}")),
                            Err(_) => return End::Reconnect("the MQTT client stopped taking messages".into()),
                        }
                        if in_flight.is_empty() {
                            last_progress = Instant::now();
                        }
                        in_flight.push_back(last);
                        cursor = last;
                        self.set(|s| {
                            s.batches_sent += 1;
                            s.records_sent += count as u64;
                        });
                    }
                    if !in_flight.is_empty() && last_progress.elapsed() > self.settings.ack_timeout {
                        stalls += 1;
                        if stalls >= 3 {
                            return End::Reconnect("HQ has not acknowledged for three ack timeouts".into());
                        }
                        tracing::warn!(acked, cursor, "no ack from HQ in time: sending again from the last acked sequence");
                        cursor = acked;
                        in_flight.clear();
                        last_progress = Instant::now();
                        self.set(|s| s.resends += 1);
                    }
                    if last_status.elapsed() > STATUS_EVERY {
                        last_status = Instant::now();
                        let status = self.status_payload("online").await;
                        let _ = client.try_publish(topics::status(&id), QoS::AtLeastOnce, true, status);
                    }
                }
            }
        }
    }

    /// Apply survey answers from HQ, then acknowledge (retained) the highest sequence applied. A
    /// batch that does not decode is logged and acknowledged at the current position (HQ resends
    /// what is missing); a store-side failure (disk, database) acknowledges nothing new, so HQ
    /// sends again later.
    async fn on_answers(&self, client: &AsyncClient, payload: &[u8]) {
        let id = &self.settings.store_id;
        let applied = match wire::decode_answers(payload) {
            Ok(b) if &b.store_id == id => match self.follow_up.receive(b.answers).await {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::error!(error = %e, "cannot apply survey answers from HQ; they will come again");
                    None
                }
            },
            Ok(b) => {
                tracing::warn!(other = %b.store_id, "ignored survey answers addressed to another store");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignored a malformed survey answer batch");
                None
            }
        };
        let applied = match applied {
            Some(a) => a,
            None => match self.follow_up.applied_seq().await {
                Ok(a) => a,
                Err(_) => return,
            },
        };
        let ack = wire::AnswerAck { v: wire::WIRE_VERSION, store_id: id.clone(), applied_seq: applied };
        let _ = client.try_publish(topics::answers_ack(id), QoS::AtLeastOnce, true, wire::encode_answer_ack(&ack));
    }

    /// Apply an ack; returns the effective acked sequence.
    async fn on_ack(&self, payload: &[u8]) -> Result<Option<i64>, String> {
        let a = wire::decode_ack(payload).map_err(|e| e.to_string())?;
        if a.store_id != self.settings.store_id {
            return Err(format!("ack for another store ({})", a.store_id));
        }
        let at = crate::domain::now();
        let acked_seq = a.acked_seq;
        let r = self
            .store
            .write(move |tx| {
                // HQ cannot have stored what this store never produced: a store whose database was
                // reset would otherwise delete unsent rows. Refuse and raise it.
                let max_ever: i64 =
                    tx.conn().query_row("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)", [], |r| r.get(0))?;
                if acked_seq > max_ever {
                    return Ok::<_, store::StoreError>(Err(max_ever));
                }
                Ok(Ok(store::sync::ack(tx, acked_seq, &at)?))
            })
            .await
            .map_err(|e| e.to_string())?;
        match r {
            Ok(effective) => {
                self.set(|s| {
                    s.last_ack_at = Some(crate::domain::now());
                    s.acked_seq = effective;
                    s.ack_conflict = None;
                });
                Ok(Some(effective))
            }
            Err(max_ever) => {
                let why = format!(
                    "HQ acknowledges sequence {acked_seq} but this store has only produced up to {max_ever}: \
                     was the store database reset? Rows are kept; ask HQ to reset this store's sync position."
                );
                tracing::error!("{why}");
                self.set(|s| s.ack_conflict = Some(why.clone()));
                Err(why)
            }
        }
    }
}
