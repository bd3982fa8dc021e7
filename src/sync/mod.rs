//! Store-and-forward sync with HQ over MQTT, and HQ's side of it.
//!
//! Topic tree (a documented API; `tests/sync_*` assert it):
//! - `servicebay/v1/{store}/events`  store → HQ, QoS 1: gzip'd JSON batches of outbox rows.
//! - `servicebay/v1/{store}/ack`     HQ → store, QoS 1, retained: highest contiguous sequence stored.
//! - `servicebay/v1/{store}/status`  store → HQ, QoS 1, retained: online/offline (last will),
//!   acked sequence, outbox depth, applied bundle versions.
//! - `servicebay/v1/{store}/config`  HQ → one store, QoS 1, retained: signed bundle.
//! - `servicebay/v1/all/config`      HQ → every store, QoS 1, retained: signed bundle.
//! - `servicebay/v1/{store}/answers` HQ → store, QoS 1: survey answers taken at HQ (`wire::AnswerBatch`),
//!   resent from the store's acknowledged sequence until acknowledged.
//! - `servicebay/v1/{store}/answers/ack` store → HQ, QoS 1, retained: highest answer sequence applied.
//!
//! Delivery invariants:
//! 1. A change and its outbox row commit in one SQLite transaction (`store::outbox::append`).
//! 2. Outbox sequences only grow (AUTOINCREMENT: never reused, even after rows are deleted).
//! 3. A row leaves the outbox only when HQ's application ack covers it, never on PUBACK
//!    (rumqttc's publish only means "queued"); the acked sequence is persisted with the delete.
//! 4. HQ stores a batch and advances its contiguous sequence in one PostgreSQL transaction, keyed
//!    on (store, seq), so redelivery and resending are harmless; it acks only after COMMIT.
//! 5. Per-record order: HQ keeps, for each record, the row with the highest sequence, whatever
//!    order batches arrive in (two ingest workers, resends).
//! 6. Nothing is ever dropped for being old or many: past `outbox_alarm_rows` the store raises an
//!    alarm (metric, log, status) and keeps everything.

pub mod bundles;
pub mod hq;
pub mod layers;
pub mod link;
mod uplink;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::catalog::SharedCatalog;
use crate::store::{self, Store, StoreError};

pub mod topics {
    pub fn events(store: &str) -> String {
        format!("servicebay/v1/{store}/events")
    }
    pub fn ack(store: &str) -> String {
        format!("servicebay/v1/{store}/ack")
    }
    pub fn status(store: &str) -> String {
        format!("servicebay/v1/{store}/status")
    }
    pub fn config(store: &str) -> String {
        format!("servicebay/v1/{store}/config")
    }
    pub fn answers(store: &str) -> String {
        format!("servicebay/v1/{store}/answers")
    }
    pub fn answers_ack(store: &str) -> String {
        format!("servicebay/v1/{store}/answers/ack")
    }
    /// HQ's survey service hears every store's answer acks.
    pub const ALL_ANSWER_ACKS: &str = "servicebay/v1/+/answers/ack";
    /// HQ's ingest workers share the events of every store.
    pub const SHARED_EVENTS: &str = "$share/hq/servicebay/v1/+/events";
    /// The store id inside `servicebay/v1/{store}/{leaf}`.
    pub fn store_of<'a>(topic: &'a str, leaf: &str) -> Option<&'a str> {
        topic.strip_prefix("servicebay/v1/")?.strip_suffix(leaf)?.strip_suffix('/').filter(|s| !s.contains('/'))
    }
}

/// Validated `[sync]` settings; present only when sync is enabled.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub store_id: String,
    pub link: link::Link,
    pub hq_key: Option<ed25519_dalek::VerifyingKey>,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    /// Batches sent ahead of HQ's ack.
    pub window: usize,
    pub ack_timeout: Duration,
    pub alarm_rows: i64,
}

/// What the uplink task knows that SQLite does not.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkState {
    pub state: &'static str,
    pub connected: bool,
    pub last_connected_at: Option<String>,
    pub last_error: Option<String>,
    pub last_ack_at: Option<String>,
    /// Mirrors sync_state.acked_seq after each ack (cheap to poll, e.g. by the benchmark).
    pub acked_seq: i64,
    pub ack_conflict: Option<String>,
    pub reconnects: u64,
    pub batches_sent: u64,
    pub records_sent: u64,
    pub resends: u64,
    pub bundles_rejected: u64,
    pub alarm: bool,
}

/// `/api/v1/sync/status`: everything a manager needs to see whether HQ is getting the data.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    pub enabled: bool,
    pub store_id: String,
    pub broker: Option<String>,
    pub state: String,
    pub connected: bool,
    pub last_connected_at: Option<String>,
    pub last_error: Option<String>,
    pub last_ack_at: Option<String>,
    pub acked_seq: i64,
    pub head_seq: i64,
    pub outbox_depth: i64,
    pub oldest_unsent_at: Option<String>,
    pub oldest_unsent_age_secs: Option<f64>,
    pub outbox_alarm: bool,
    pub outbox_alarm_rows: i64,
    pub ack_conflict: Option<String>,
    pub reconnects: u64,
    pub batches_sent: u64,
    pub records_sent: u64,
    pub resends: u64,
    pub bundles: BTreeMap<String, store::sync::AppliedBundle>,
    pub bundles_rejected: u64,
    pub recent_rejections: Vec<store::sync::Rejection>,
}

/// Handle held by the API and the app: status, and a graceful stop.
pub struct Sync {
    store: Store,
    store_id: String,
    settings: Option<SyncSettings>,
    state: Arc<Mutex<LinkState>>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Sync {
    /// Start the uplink if sync is enabled; otherwise a handle that reports `disabled`.
    pub fn start(
        store: Store,
        store_id: String,
        settings: Option<SyncSettings>,
        catalog: SharedCatalog,
        bundles_dir: std::path::PathBuf,
        follow_up: Arc<crate::case::follow_up::FollowUpService>,
    ) -> Arc<Sync> {
        let state =
            Arc::new(Mutex::new(LinkState { state: if settings.is_some() { "starting" } else { "disabled" }, ..Default::default() }));
        let (shutdown, rx) = watch::channel(false);
        let task = settings.clone().map(|s| {
            let applier = bundles::BundleApplier {
                store: store.clone(),
                store_id: s.store_id.clone(),
                dir: bundles_dir,
                key: s.hq_key,
                catalog,
                state: state.clone(),
            };
            let up = uplink::Uplink { store: store.clone(), settings: s, state: state.clone(), bundles: applier, follow_up };
            tokio::spawn(up.run(rx))
        });
        let enabled = settings.is_some();
        let sync = Arc::new(Sync { store, store_id, settings, state, shutdown, task: Mutex::new(task) });
        if enabled {
            // The alarm must fire even when nobody looks at the status page.
            let weak = Arc::downgrade(&sync);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let Some(s) = weak.upgrade() else { return };
                    let _ = s.status().await;
                }
            });
        }
        sync
    }

    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    /// HQ's acknowledged sequence as of the last ack this process received (0 before the first).
    pub fn acked_seq(&self) -> i64 {
        self.state.lock().map(|s| s.acked_seq).unwrap_or(0)
    }

    /// Publish `offline`, disconnect, and wait (bounded) for the task to end.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    pub async fn status(&self) -> Result<SyncStatus, StoreError> {
        let (o, bundles, recent) = self
            .store
            .read(|tx| {
                Ok::<_, StoreError>((store::sync::outbox_state(tx)?, store::sync::applied_bundles(tx)?, store::sync::rejections(tx, 10)?))
            })
            .await?;
        let alarm_rows = self.settings.as_ref().map(|s| s.alarm_rows).unwrap_or(0);
        let alarm = self.settings.is_some() && o.depth > alarm_rows;
        let st = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        if alarm != st.alarm {
            if alarm {
                tracing::warn!(
                    depth = o.depth,
                    limit = alarm_rows,
                    "outbox alarm: HQ has not taken the store's data for a while (nothing is dropped)"
                );
            } else {
                tracing::info!(depth = o.depth, "outbox alarm cleared");
            }
            if let Ok(mut s) = self.state.lock() {
                s.alarm = alarm;
            }
        }
        let age = o.oldest_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| {
            let ms = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds();
            (ms.max(0) as f64) / 1000.0
        });
        Ok(SyncStatus {
            enabled: self.settings.is_some(),
            store_id: self.store_id.clone(),
            broker: self.settings.as_ref().map(|s| format!("{}:{}", s.link.host, s.link.port)),
            state: st.state.to_string(),
            connected: st.connected,
            last_connected_at: st.last_connected_at,
            last_error: st.last_error,
            last_ack_at: o.last_ack_at,
            acked_seq: o.acked_seq,
            head_seq: o.head_seq,
            outbox_depth: o.depth,
            oldest_unsent_at: o.oldest_at,
            oldest_unsent_age_secs: age,
            outbox_alarm: alarm,
            outbox_alarm_rows: alarm_rows,
            ack_conflict: st.ack_conflict,
            reconnects: st.reconnects,
            batches_sent: st.batches_sent,
            records_sent: st.records_sent,
            resends: st.resends,
            bundles,
            bundles_rejected: st.bundles_rejected,
            recent_rejections: recent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::topics;

    #[test]
    fn topic_tree() {
        assert_eq!(topics::events("s1"), "servicebay/v1/s1/events");
        assert_eq!(topics::store_of("servicebay/v1/s1/events", "events"), Some("s1"));
        assert_eq!(topics::store_of("servicebay/v1/a/b/events", "events"), None);
        assert_eq!(topics::store_of("servicebay/v1/s1/ack", "events"), None);
    }
}
