//! Prometheus text metrics: request counts by method and status, a latency histogram, TLS handshake
//! failures, and gauges read from the store at scrape time (cases by status, outbox depth, write queue).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::store::Store;

const BUCKETS_MS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    sum_us: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub connections_refused: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, method: &str, status: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), status)).or_default() += 1;
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub async fn render(
        &self,
        store: &Store,
        sync: &crate::sync::Sync,
        llm: &crate::llm::EngineStatus,
        protection: Option<&crate::protection::Status>,
    ) -> String {
        let mut out = String::new();
        if let Some(p) = protection {
            let _ = writeln!(out, "# HELP servicebay_backup_age_seconds Seconds since the last successful backup (-1: none yet).");
            let _ = writeln!(out, "# TYPE servicebay_backup_age_seconds gauge");
            let _ = writeln!(out, "servicebay_backup_age_seconds {}", p.backup_age_secs.unwrap_or(-1));
            let _ = writeln!(out, "# HELP servicebay_backup_configured Whether scheduled backups are configured ([backup] dir).");
            let _ = writeln!(out, "# TYPE servicebay_backup_configured gauge");
            let _ = writeln!(out, "servicebay_backup_configured {}", p.backup_dir.is_some() as u8);
            let _ = writeln!(out, "# TYPE servicebay_retention_last_run_ok gauge");
            let _ = writeln!(out, "servicebay_retention_last_run_ok {}", p.last_retention.as_ref().map(|r| r.ok as i8).unwrap_or(-1));
        }
        let _ = writeln!(out, "# HELP servicebay_http_requests_total HTTP requests by method and status.");
        let _ = writeln!(out, "# TYPE servicebay_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((method, status), n) in m.iter() {
                let _ = writeln!(out, "servicebay_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP servicebay_http_request_duration_seconds Request latency.");
        let _ = writeln!(out, "# TYPE servicebay_http_request_duration_seconds histogram");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "servicebay_http_request_duration_seconds_bucket{{le=\"{}\"}} {n}", b / 1000.0);
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "servicebay_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "servicebay_http_request_duration_seconds_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "servicebay_http_request_duration_seconds_count {count}");
        let _ = writeln!(out, "# TYPE servicebay_tls_handshake_failures_total counter");
        let _ = writeln!(out, "servicebay_tls_handshake_failures_total {}", self.tls_handshake_failures.load(Ordering::Relaxed));
        let _ = writeln!(out, "# TYPE servicebay_connections_refused_total counter");
        let _ = writeln!(out, "servicebay_connections_refused_total {}", self.connections_refused.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP servicebay_llm_up Whether the language model answers (0: restarting, down or none; intake runs degraded)."
        );
        let _ = writeln!(out, "# TYPE servicebay_llm_up gauge");
        let _ = writeln!(out, "servicebay_llm_up {}", (llm.state == crate::llm::EngineState::Ready) as u8);
        let _ = writeln!(out, "# TYPE servicebay_llm_worker_restarts_total counter");
        let _ = writeln!(out, "servicebay_llm_worker_restarts_total {}", llm.restarts);
        let _ = writeln!(out, "# TYPE servicebay_store_write_queue gauge");
        let _ = writeln!(out, "servicebay_store_write_queue {}", store.write_queue_depth());
        let stats = store
            .read(|tx| -> Result<_, crate::store::StoreError> {
                Ok((crate::store::cases::count_by_status(tx)?, crate::store::outbox::depth(tx)?))
            })
            .await;
        if let Ok((by_status, outbox)) = stats {
            let _ = writeln!(out, "# TYPE servicebay_cases gauge");
            for (s, n) in by_status {
                let _ = writeln!(out, "servicebay_cases{{status=\"{s}\"}} {n}");
            }
            let _ = writeln!(out, "# TYPE servicebay_outbox_depth gauge");
            let _ = writeln!(out, "servicebay_outbox_depth {outbox}");
        }
        if let Ok(s) = sync.status().await {
            let ts = |t: &Option<String>| {
                t.as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis() as f64 / 1000.0)
                    .unwrap_or(0.0)
            };
            let _ = writeln!(out, "# TYPE servicebay_sync_enabled gauge");
            let _ = writeln!(out, "servicebay_sync_enabled {}", s.enabled as u8);
            let _ = writeln!(out, "# TYPE servicebay_sync_connected gauge");
            let _ = writeln!(out, "servicebay_sync_connected {}", s.connected as u8);
            let _ = writeln!(out, "# TYPE servicebay_outbox_oldest_unsent_age_seconds gauge");
            let _ = writeln!(out, "servicebay_outbox_oldest_unsent_age_seconds {}", s.oldest_unsent_age_secs.unwrap_or(0.0));
            let _ = writeln!(out, "# TYPE servicebay_outbox_alarm gauge");
            let _ = writeln!(out, "servicebay_outbox_alarm {}", s.outbox_alarm as u8);
            let _ = writeln!(out, "# TYPE servicebay_sync_acked_seq gauge");
            let _ = writeln!(out, "servicebay_sync_acked_seq {}", s.acked_seq);
            let _ = writeln!(out, "# TYPE servicebay_sync_last_ack_timestamp_seconds gauge");
            let _ = writeln!(out, "servicebay_sync_last_ack_timestamp_seconds {}", ts(&s.last_ack_at));
            let _ = writeln!(out, "# TYPE servicebay_sync_reconnects_total counter");
            let _ = writeln!(out, "servicebay_sync_reconnects_total {}", s.reconnects);
            let _ = writeln!(out, "# TYPE servicebay_sync_records_sent_total counter");
            let _ = writeln!(out, "servicebay_sync_records_sent_total {}", s.records_sent);
            let _ = writeln!(out, "# TYPE servicebay_bundles_rejected_total counter");
            let _ = writeln!(out, "servicebay_bundles_rejected_total {}", s.bundles_rejected);
            let _ = writeln!(out, "# TYPE servicebay_bundle_version gauge");
            for (kind, b) in &s.bundles {
                let _ = writeln!(out, "servicebay_bundle_version{{kind=\"{kind}\"}} {}", b.version);
            }
        }
        out
    }
}
