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

/// The store's KPIs over the last 30 local days as gauges (`servicebay_kpi_*`), from the KPI
/// service's once-a-minute figures. A figure without data is left out (no sample), never 0.
pub fn kpi_gauges(out: &mut String, r: &crate::kpi::Report) {
    use crate::domain::kpi::value_of;
    let (f, d) = (&r.figures, &r.detail);
    let gauges: [(&str, &str, Option<f64>); 14] = [
        ("cases", "Cases reported in the last 30 days.", value_of(f, d, "cases")),
        ("response_minutes_median", "Median minutes from a report to the assistant's first answer (goal < 15).", f.response_minutes_median),
        ("escalation_minutes_median", "Median minutes from an escalation or a hot alert to the first person.", f.escalation_minutes_median),
        ("csat_mean", "Mean satisfaction score (1-5), latest answer per follow-up.", f.csat_mean),
        ("csat_share_4plus_percent", "Share of satisfaction scores 4 or 5, %.", f.csat_share_4plus),
        ("nps", "Net Promoter Score (-100..100).", f.nps),
        ("first_time_fix_percent", "Answers where every original complaint was fixed, %.", f.first_time_fix),
        ("comebacks", "Delivered cases followed by a new case on the same part.", f.comebacks.map(f64::from)),
        ("hot_alerts_open", "Hot follow-up alerts open now.", Some(f.hot_open as f64)),
        ("hot_alerts_overdue", "Hot follow-up alerts past their SLA now.", Some(f.hot_overdue as f64)),
        ("labour_efficiency_percent", "Standard hours / clocked hours of finished labour lines, %.", f.labour_efficiency),
        ("minutes_saved", "Advisor minutes saved (estimate: cases x minutes_saved_per_case).", Some(f.minutes_saved)),
        ("minutes_saved_per_case", "The configured estimate of advisor minutes saved per case.", Some(f.minutes_saved_per_case)),
        ("surveys", "Survey answers counted (latest per follow-up).", Some(f.surveys as f64)),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP servicebay_kpi_{name} {help}");
        let _ = writeln!(out, "# TYPE servicebay_kpi_{name} gauge");
        if let Some(v) = v.filter(|v| v.is_finite()) {
            let _ = writeln!(out, "servicebay_kpi_{name} {v}");
        }
    }
    let _ = writeln!(out, "# HELP servicebay_kpi_ai_accuracy_percent Findings confirmed against corrected or rejected, by source, %.");
    let _ = writeln!(out, "# TYPE servicebay_kpi_ai_accuracy_percent gauge");
    for (source, a) in [("words", &f.ai_accuracy.words), ("photos", &f.ai_accuracy.photos)] {
        if let Some(v) = a.rate {
            let _ = writeln!(out, "servicebay_kpi_ai_accuracy_percent{{source=\"{source}\"}} {v}");
        }
    }
}
