//! The store's KPIs (门店指标) against a small data set computed by hand: rows written with SQL
//! into the running appliance's own database (real migrations, real SQLCipher), then every figure
//! read back through the API, the daily snapshot and its outbox record for HQ, the `/metrics`
//! gauges, the monthly PDF (read back with `pdftotext`), and the manager's dashboard in the real
//! browser (a customer-service user gets 403).
//!
//! The data set lives in November 2026, local days in +08:00; the daemon's clock is moved to
//! 2026-11-12 12:00 local, so "the last 30 days" and "now" are fixed whatever day the test runs.
//! All stamps below are UTC between 01:00 and 08:00, i.e. 09:00–16:00 the same local day.
//!
//! By hand, for the period [2026-11-02, 2026-11-10):
//! - cases: K1, K2, K3, K4 reported in the period → 4; minutes saved 4 × 12 = 48.
//! - response: K1 4 min, K2 10 min, K3 2 min to the assistant's first answer (K4 has none; a
//!   customer message does not count) → median of [2, 4, 10] = 4.
//! - escalation: K2 escalated by the advisor at 03:20; the advisor's own note at 03:25 and a
//!   system event do not count; the manager takes it at 03:50 → 30 min. The one hot alert has no
//!   response yet → time to a person: median of [30] = 30.
//! - AI accuracy (pending and advisor-only findings do not count):
//!   words: f1 confirmed, f2 confirmed (words + photo), f3 rejected → 2 / 3 = 66.67 %;
//!   photos: f2 confirmed, f4 corrected, f5 rejected → 1 / 3 = 33.33 %.
//! - answers: follow-up 1 was answered twice (CSAT 1 by phone on 11-04, then 5 by QR on 11-05:
//!   the later counts); then CSAT 5 (11-05), 2 (11-05), 4 (11-09) and NPS 10, 3, 8:
//!   CSAT mean 11 / 3 = 3.67; share 4+ 2 / 3 = 66.67 %; NPS (1 promoter − 1 detractor) / 3 = 0;
//!   first-time fix: yes, yes, no → 2 / 3 = 66.67 %; surveys 3.
//! - comebacks: K1 (car A, right-front door) delivered 11-03; K4 (car A, right-front door) opened
//!   11-07 → 1; K3 (car A, a mirror; its bumper finding was rejected) is not one; K2 (car B) has
//!   no later case → 1 comeback of 2 delivered (50 %).
//! - hot alerts: one, raised 11-05 01:00Z, due 24 h later, no response → at the end of the
//!   period (and now) open 1, overdue 1.
//! - labour: line 1 std 1.0 h, clocked 60 + 15 min = 1.25 h; line 2 std 0.5 h, clocked 0.75 h
//!   (both done); an unfinished line and a parts line do not count → 1.5 / 2.0 = 75 %.

mod common;

use std::time::Duration;

use chrono::TimeZone;
use common::browser::{clean, Browser};
use common::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A UTC stamp on local day 2026-11-(02 + `d`).
fn t(d: u32, h: u32, m: u32) -> String {
    format!("2026-11-{:02}T{h:02}:{m:02}:00.000Z", 2 + d)
}

/// The figures computed by hand (module comment).
fn expected_figures() -> Value {
    json!({
        "cases": 4,
        "response_minutes_median": 4.0,
        "escalation_minutes_median": 30.0,
        "ai_accuracy": {
            "words": { "confirmed": 2, "corrected": 0, "rejected": 1, "rate": 66.67 },
            "photos": { "confirmed": 1, "corrected": 1, "rejected": 1, "rate": 33.33 }
        },
        "csat_mean": 3.67,
        "csat_share_4plus": 66.67,
        "nps": 0.0,
        "first_time_fix": 66.67,
        "comebacks": 1,
        "hot_open": 1,
        "hot_overdue": 1,
        "labour_efficiency": 75.0,
        "minutes_saved": 48.0,
        "minutes_saved_per_case": 12.0,
        "surveys": 3
    })
}

struct Seeded {
    manager: String,
    store_id: String,
}

/// Move the daemon's clock to 2026-11-12 12:00 +08:00, create the users, write the data set.
async fn seed(srv: &Server) -> Seeded {
    let api = srv.api();
    let target = chrono::FixedOffset::east_opt(8 * 3600).unwrap().with_ymd_and_hms(2026, 11, 12, 12, 0, 0).unwrap();
    srv.clock.advance(target.with_timezone(&chrono::Utc) - chrono::Utc::now());
    let manager = api.manager().await;
    let (adv, _) = api.user(&manager, "kpi_adv", "advisor").await;
    let (tech, _) = api.user(&manager, "kpi_tech", "technician").await;
    let db = common::db(srv.data_dir());
    let store_id: String = db.query_row("SELECT id FROM stores", [], |r| r.get(0)).unwrap();
    let mgr: i64 = db.query_row("SELECT id FROM users WHERE username = 'manager'", [], |r| r.get(0)).unwrap();
    let sql = format!(
        r#"
        INSERT INTO customers (id, name, created_at, updated_at) VALUES ('cu1', '王先生', '{c}', '{c}');
        INSERT INTO vehicles (id, customer_id, vin, created_at, updated_at) VALUES ('carA', 'cu1', 'LSVKPI00000000001', '{c}', '{c}');
        INSERT INTO vehicles (id, customer_id, vin, created_at, updated_at) VALUES ('carB', 'cu1', 'LSVKPI00000000002', '{c}', '{c}');

        INSERT INTO cases (id, store_id, customer_id, vehicle_id, status, summary, created_at, updated_at)
        VALUES ('K1', '{s}', 'cu1', 'carA', 'follow_up', '右前门刮痕', '{k1}', '{k1}'),
               ('K2', '{s}', 'cu1', 'carB', 'follow_up', '机盖', '{k2}', '{k2}'),
               ('K3', '{s}', 'cu1', 'carA', 'follow_up', '后视镜', '{k3}', '{k3}'),
               ('K4', '{s}', 'cu1', 'carA', 'intake', '右前门又有异响', '{k4}', '{k4}'),
               ('K0', '{s}', 'cu1', 'carB', 'closed', '上个月的单', '2026-09-20T02:00:00.000Z', '2026-09-20T02:00:00.000Z');

        INSERT INTO messages (case_id, at, sender, text) VALUES
            ('K1', '{k1_cust}', 'customer', '右前门有刮痕'), ('K1', '{k1_ans}', 'assistant', '刮痕大概多长？'),
            ('K1', '{k1_later}', 'assistant', '请拍三张照片'),
            ('K2', '{k2_ans}', 'assistant', '什么时候响？'),
            ('K3', '{k3_ans}', 'assistant', '哪一侧？'),
            ('K4', '{k4_cust}', 'customer', '又响了'),
            ('K0', '2026-09-20T02:01:00.000Z', 'assistant', '上个月');

        INSERT INTO case_events (case_id, at, actor_id, actor, kind, from_status, to_status, reason) VALUES
            ('K2', '{k2}', {adv}, 'kpi_adv', 'created', NULL, 'reported', NULL),
            ('K2', '{esc}', {adv}, 'kpi_adv', 'escalated', 'intake', 'escalated', '客户要求人工'),
            ('K2', '{esc_sys}', NULL, 'follow-up-sla', 'note', NULL, NULL, 'system'),
            ('K2', '{esc_own}', {adv}, 'kpi_adv', 'finding_added', NULL, NULL, 'own note'),
            ('K2', '{esc_taken}', {mgr}, 'manager', 'assigned', NULL, NULL, 'assigned to manager'),
            ('K1', '{k1_deliv}', {mgr}, 'manager', 'qc_report', 'qc', 'delivered', NULL),
            ('K2', '{k2_deliv}', {mgr}, 'manager', 'qc_report', 'qc', 'delivered', NULL);

        INSERT INTO findings (id, case_id, source, sources, part, position, damage_type, review_status, created_at, updated_at) VALUES
            ('f1', 'K1', 'customer', '["customer"]', 'door', 'front_right', 'scratch', 'confirmed', '{k1}', '{k1}'),
            ('f3', 'K1', 'customer', '["customer"]', 'bumper', 'front', 'dent', 'rejected', '{k1}', '{k1}'),
            ('f2', 'K2', 'customer', '["customer","vision"]', 'hood', NULL, 'scratch', 'confirmed', '{k2}', '{k2}'),
            ('f4', 'K2', 'vision', '["vision"]', 'fender', 'front_left', 'dent', 'corrected', '{k2}', '{k2}'),
            ('f5', 'K3', 'vision', '["vision"]', 'bumper', 'front', 'scratch', 'rejected', '{k3}', '{k3}'),
            ('f6', 'K3', 'advisor', '["advisor"]', 'mirror', 'left', 'crack', 'confirmed', '{k3}', '{k3}'),
            ('f7', 'K4', 'customer', '["customer"]', 'door', 'front_right', 'noise', 'pending', '{k4}', '{k4}');

        INSERT INTO follow_ups (id, case_id, customer_id, delivered_at, due_at, token, token_hash, status, updated_at) VALUES
            ('fu1', 'K1', 'cu1', '{k1_deliv}', '{k1_deliv}', 'tok1', 'h1', 'answered', '{k1_deliv}'),
            ('fu2', 'K2', 'cu1', '{k2_deliv}', '{k2_deliv}', 'tok2', 'h2', 'answered', '{k2_deliv}'),
            ('fu3', 'K3', 'cu1', '{k2_deliv}', '{k2_deliv}', 'tok3', 'h3', 'answered', '{k2_deliv}');

        INSERT INTO surveys (id, source_id, follow_up_id, case_id, channel, csat, nps, fixed, hot, answered_at, recorded_at, recorded_by) VALUES
            ('s0', 's0', 'fu1', 'K1', 'phone', 1, 0, '[{{"finding_id":"f1","label":"右前门","answer":"no"}}]', 1, '{s0}', '{s0}', 'kpi_cs'),
            ('s1', 's1', 'fu1', 'K1', 'qr', 5, 10, '[{{"finding_id":"f1","label":"右前门","answer":"yes"}}]', 0, '{s1}', '{s1}', 'hq'),
            ('s2', 's2', 'fu2', 'K2', 'phone', 4, 8, '[{{"finding_id":"f2","label":"机盖","answer":"yes"}}]', 0, '{s2}', '{s2}', 'kpi_cs'),
            ('s3', 's3', 'fu3', 'K3', 'phone', 2, 3, '[{{"finding_id":"f6","label":"后视镜","answer":"no"}}]', 1, '{s3}', '{s3}', 'kpi_cs');

        INSERT INTO follow_up_alerts (id, case_id, survey_id, kind, reasons, category, summary, raised_at, due_at, escalate_at) VALUES
            ('a3', 'K3', 's3', 'hot', '["low_csat","detractor","not_fixed"]', 'quality', '后视镜还是松', '{s3}', '{a3_due}', '{a3_esc}');

        INSERT INTO estimates (id, case_id, version, total_fen, duration_days, created_at) VALUES ('e1', 'K1', 1, 130000, 1.0, '{k1}');
        INSERT INTO work_orders (id, case_id, estimate_id, status, opened_by, opened_at) VALUES ('w1', 'K1', 'e1', 'done', 'kpi_tech', '{k1}');
        INSERT INTO work_order_lines (id, work_order_id, seq, kind, code, name_zh, name_en, standard_hours, status) VALUES
            ('l1', 'w1', 1, 'labour', 'PANEL', '钣金', 'Panel repair', 1.0, 'done'),
            ('l2', 'w1', 2, 'labour', 'HINGE', '铰链检查', 'Hinge check', 0.5, 'done'),
            ('l3', 'w1', 3, 'labour', 'PAINT', '喷漆', 'Repaint', 3.0, 'active'),
            ('l4', 'w1', 4, 'part', 'P-1', '铰链', 'Hinge', NULL, 'done');
        INSERT INTO clock_entries (id, line_id, technician_id, technician, started_at, ended_at) VALUES
            ('c1', 'l1', {tech}, 'kpi_tech', '{l1a}', '{l1b}'),
            ('c2', 'l1', {tech}, 'kpi_tech', '{l1c}', '{l1d}'),
            ('c3', 'l2', {tech}, 'kpi_tech', '{l2a}', '{l2b}'),
            ('c4', 'l3', {tech}, 'kpi_tech', '{l3a}', '{l3b}');
        "#,
        c = t(0, 1, 0),
        s = store_id,
        k1 = t(0, 2, 0),
        k1_cust = t(0, 2, 1),
        k1_ans = t(0, 2, 4),
        k1_later = t(0, 2, 9),
        k2 = t(1, 3, 0),
        k2_ans = t(1, 3, 10),
        k3 = t(2, 4, 0),
        k3_ans = t(2, 4, 2),
        k4 = t(5, 5, 0),
        k4_cust = t(5, 5, 1),
        esc = t(1, 3, 20),
        esc_sys = t(1, 3, 22),
        esc_own = t(1, 3, 25),
        esc_taken = t(1, 3, 50),
        k1_deliv = t(1, 8, 0),
        k2_deliv = t(2, 8, 0),
        s0 = t(2, 6, 0),
        s1 = t(3, 6, 0),
        s2 = t(7, 6, 0),
        s3 = t(3, 1, 0),
        a3_due = t(4, 1, 0),
        a3_esc = t(6, 1, 0),
        l1a = t(1, 1, 0),
        l1b = t(1, 2, 0),
        l1c = t(1, 3, 0),
        l1d = t(1, 3, 15),
        l2a = t(1, 4, 0),
        l2b = t(1, 4, 45),
        l3a = t(1, 5, 0),
        l3b = t(1, 6, 0),
    );
    db.execute_batch(&sql).expect("seed the data set");
    Seeded { manager, store_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_snapshot_metrics_and_pdf_match_the_hand_computed_set() {
    let srv = Server::start().await;
    let api = srv.api();
    let Seeded { manager, store_id } = seed(&srv).await;

    // The figures of the period, as computed by hand.
    let (s, v) = api.get("/api/v1/kpi?from=2026-11-02&to=2026-11-10", &manager).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["figures"], expected_figures(), "{:#}", v["figures"]);
    assert_eq!((v["from"].as_str(), v["to"].as_str(), v["period_days"].as_i64()), (Some("2026-11-02"), Some("2026-11-10"), Some(8)));
    // Judged at the end of the period (it is over): local midnight of 11-10.
    assert_eq!(v["as_of"], "2026-11-09T16:00:00.000Z");
    let d = &v["detail"];
    assert_eq!((d["responses"].as_i64(), d["escalations"].as_i64(), d["hot_alert_responses"].as_i64()), (Some(3), Some(1), Some(0)));
    assert_eq!((d["delivered"].as_i64(), d["comeback_rate"].as_f64(), d["fixed_asked"].as_i64()), (Some(2), Some(50.0), Some(3)));
    assert_eq!((d["standard_hours"].as_f64(), d["clocked_hours"].as_f64(), d["labour_lines"].as_i64()), (Some(1.5), Some(2.0), Some(2)));
    // Goals: response 4 < 15 met; CSAT 3.67 < 4.25 missed; an overdue alert misses "none overdue".
    assert_eq!(v["goals"]["response_minutes_median"], json!({ "op": "below", "value": 15.0, "text": "< 15", "met": true }));
    assert_eq!(v["goals"]["csat_mean"]["met"], false);
    assert_eq!(v["goals"]["hot_overdue"]["met"], false);
    assert_eq!(v["goals"]["ai_words"]["text"], "≥ 90 %");
    // Weekly scores for the charts: 11-02 (Mon) … 11-08 holds s1 (5/10), s3 (2/3); 11-09 holds s2.
    assert_eq!(v["weeks"][0], json!({ "start": "2026-11-02", "surveys": 2, "csat_mean": 3.5, "nps": 0.0 }));
    assert_eq!(v["weeks"][1], json!({ "start": "2026-11-09", "surveys": 1, "csat_mean": 4.0, "nps": 0.0 }));
    // A period before any of it: counts are 0, figures without data are null (not 0).
    let (s, e) = api.get("/api/v1/kpi?from=2026-10-01&to=2026-10-02", &manager).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        (e["figures"]["cases"].as_i64(), e["figures"]["csat_mean"].clone(), e["figures"]["comebacks"].clone()),
        (Some(0), Value::Null, Value::Null)
    );
    // Without dates: the last 30 days ending with the (moved) clock's today, 2026-11-12.
    let (s, last30) = api.get("/api/v1/kpi", &manager).await;
    assert_eq!(s, StatusCode::OK, "{last30}");
    assert_eq!((last30["from"].as_str(), last30["to"].as_str()), (Some("2026-10-14"), Some("2026-11-13")));
    assert_eq!(last30["figures"], expected_figures(), "the same data, judged now (the alert is still overdue)");

    // Bad input: 400 with the field; other roles: 403.
    for (q, field) in [
        ("from=2026-02-30", "from"),
        ("from=2026-11-02&to=2026-11-02", "to"),
        ("from=2026-11-10&to=2026-11-02", "to"),
        ("to=20261102", "to"),
        ("from=2020-01-01&to=2026-01-01", "to"),
        ("from=2026-11-02%00", "from"),
        ("bogus=1", "bogus"),
    ] {
        let (s, e) = api.get(&format!("/api/v1/kpi?{q}"), &manager).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert_eq!(e["error"]["code"], "invalid_query", "{q}: {e}");
        assert_eq!(e["error"]["field"], field, "{q}: {e}");
    }
    let (_, cs) = api.user(&manager, "kpi_cs", "customer_service").await;
    for path in ["/api/v1/kpi", "/api/v1/kpi/report.pdf"] {
        let (s, _) = api.get(path, &cs).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _) = api.post("/api/v1/kpi/snapshots", &cs, json!({ "day": "2026-11-09" })).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The snapshot of 11-09 covers 10-11 … 11-09: the same figures. Stored and in the outbox in
    // one go; a recomputed day gets the next version.
    let (s, snap) = api.post("/api/v1/kpi/snapshots", &manager, json!({ "day": "2026-11-09" })).await;
    assert_eq!(s, StatusCode::OK, "{snap}");
    let mut body = expected_figures();
    body["day"] = json!("2026-11-09");
    body["store_id"] = json!(store_id);
    body["period_days"] = json!(30);
    assert_eq!(snap["body"], body, "{:#}", snap["body"]);
    let v1 = snap["version"].as_i64().unwrap();
    let (s, again) = api.post("/api/v1/kpi/snapshots", &manager, json!({ "day": "2026-11-09" })).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["version"].as_i64(), Some(v1 + 1));
    let db = common::db(srv.data_dir());
    let rows: Vec<(i64, i64, String)> = db
        .prepare(
            "SELECT version, schema_version, body FROM outbox WHERE record_type = 'kpi_snapshot' AND record_id = '2026-11-09' ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let versions: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert!(versions.ends_with(&[v1, v1 + 1]), "{versions:?}");
    for (_, schema, b) in &rows[rows.len() - 2..] {
        assert_eq!(*schema, 1);
        // HQ's contract exactly: the version travels in the record, not in the body.
        assert_eq!(serde_json::from_str::<Value>(b).unwrap(), body);
    }
    let stored: String = db.query_row("SELECT body FROM kpi_snapshots WHERE day = '2026-11-09'", [], |r| r.get(0)).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap()["version"].as_i64(), Some(v1 + 1));
    let audited: i64 = db
        .query_row("SELECT COUNT(*) FROM audit_log WHERE action = 'kpi.snapshot' AND target_id = '2026-11-09'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(audited, 2);
    for (day, why) in [
        ("2026-11-13", "a future day"),
        ("2025-01-01", "over 400 days back"),
        ("2026-13-01", "no such month"),
        ("11/09/2026", "not YYYY-MM-DD"),
    ] {
        let (s, e) = api.post("/api/v1/kpi/snapshots", &manager, json!({ "day": day })).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("day")), "{why}: {e}");
    }
    let (s, e) = api.post("/api/v1/kpi/snapshots", &manager, json!({ "day": "2026-11-09", "x": 1 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    // /metrics: the last 30 days as gauges (loopback needs no token).
    let text = srv.client.get(format!("{}/metrics", srv.base)).send().await.unwrap().text().await.unwrap();
    for line in [
        "servicebay_kpi_cases 4",
        "servicebay_kpi_csat_mean 3.67",
        "servicebay_kpi_csat_share_4plus_percent 66.67",
        "servicebay_kpi_nps 0",
        "servicebay_kpi_first_time_fix_percent 66.67",
        "servicebay_kpi_response_minutes_median 4",
        "servicebay_kpi_escalation_minutes_median 30",
        "servicebay_kpi_comebacks 1",
        "servicebay_kpi_hot_alerts_open 1",
        "servicebay_kpi_hot_alerts_overdue 1",
        "servicebay_kpi_labour_efficiency_percent 75",
        "servicebay_kpi_minutes_saved 48",
        "servicebay_kpi_minutes_saved_per_case 12",
        "servicebay_kpi_ai_accuracy_percent{source=\"words\"} 66.67",
        "servicebay_kpi_ai_accuracy_percent{source=\"photos\"} 33.33",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics lacks `{line}`:\n{}",
            text.lines().filter(|l| l.contains("kpi")).collect::<Vec<_>>().join("\n")
        );
    }

    // The monthly PDF: November's figures, readable text (pdftotext finds the CSAT figure).
    let r = api.client.get(format!("{}/api/v1/kpi/report.pdf?month=2026-11", api.base)).bearer_auth(&manager).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
    // Kept beside the UI screenshots for a look.
    std::fs::write(common::browser::screenshot_dir().join("kpi-report-2026-11.pdf"), &pdf).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kpi.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let out = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().expect("pdftotext (poppler-utils)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let words = String::from_utf8_lossy(&out.stdout);
    for needle in ["门店指标月报", "Store KPI report", "2026-11", "客户满意度均值", "3.67", "66.7 %", "75.0 %", "未达标"] {
        assert!(words.contains(needle), "the PDF text lacks {needle:?}:\n{words}");
    }
    for (q, field) in [("month=2026-13", "month"), ("month=2026-1", "month"), ("month=x%01", "month")] {
        let (s, e) = api.get(&format!("/api/v1/kpi/report.pdf?{q}"), &manager).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{q}: {e}");
    }
    srv.stop().await;
}

/// The daily task snapshots each finished local day once the store exists: move the clock a day
/// past the store's first day and the snapshot of that day appears in the table and the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_task_snapshots_a_finished_day() {
    let srv = Server::start().await;
    let today = servicebay::domain::kpi::local_day(chrono::Utc::now(), &chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    srv.clock.advance(chrono::Duration::days(1));
    let day = today.format("%Y-%m-%d").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = common::db(srv.data_dir())
            .query_row("SELECT COUNT(*) FROM outbox WHERE record_type = 'kpi_snapshot' AND record_id = ?1", [&day], |r| r.get(0))
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot of {day} after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body: String = common::db(srv.data_dir()).query_row("SELECT body FROM kpi_snapshots WHERE day = ?1", [&day], |r| r.get(0)).unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((body["day"].as_str(), body["period_days"].as_i64(), body["cases"].as_i64()), (Some(day.as_str()), Some(30), Some(0)));
    assert!(body["csat_mean"].is_null(), "no answers: null, not 0");
    // Days before the store existed get none.
    let older: i64 =
        common::db(srv.data_dir()).query_row("SELECT COUNT(*) FROM kpi_snapshots WHERE day < ?1", [&day], |r| r.get(0)).unwrap();
    assert_eq!(older, 0);
    srv.stop().await;
}

/// The dashboard in the real browser: a manager sees the figures with their goals and the SVG
/// charts; a customer-service user gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_figures_and_charts_to_managers_only() {
    let srv = Server::start().await;
    let api = srv.api();
    let Seeded { manager, .. } = seed(&srv).await;
    let (s, v) = api.post("/api/v1/kpi/snapshots", &manager, json!({ "day": "2026-11-09" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let _ = api.user(&manager, "kpi_cs", "customer_service").await;

    let b = Browser::start(&srv.base, 1280, 900).await;
    b.go("/login").await;
    b.type_into("#username", "manager").await;
    b.type_into("#password", "manager-Permanent-Pw1").await;
    b.click("#login-submit").await;
    b.find("#logout").await;
    let nav = b.js("return [...document.querySelectorAll('.topbar nav a')].map(a => a.getAttribute('href'))").await;
    assert!(nav.as_array().unwrap().iter().any(|h| h == "/manager/kpi"), "the manager's navigation lists 门店指标: {nav}");
    b.go("/manager/kpi?month=2026-11").await;
    b.find("#kpi-figures").await;
    assert_eq!(b.text("#kpi-csat-mean .kpi-value").await, "3.67");
    assert_eq!(b.text("#kpi-response-minutes-median .kpi-value").await, "4.0");
    assert_eq!(b.text("#kpi-ai-words .kpi-value").await, "66.7 %");
    assert_eq!(b.text("#kpi-hot-overdue .kpi-value").await, "1");
    assert_eq!(b.text("#kpi-labour-efficiency .kpi-value").await, "75.0 %");
    assert!(b.text("#kpi-response-minutes-median .kpi-goal").await.contains("< 15"));
    // Red and green against the goals.
    let class = |id: &'static str| b.attr(id, "class");
    assert!(class("#kpi-response-minutes-median").await.unwrap().contains("kpi-ok"));
    assert!(class("#kpi-csat-mean").await.unwrap().contains("kpi-bad"));
    assert!(class("#kpi-cases").await.unwrap().contains("kpi-none"));
    assert!(b.text("#kpi-saved-note").await.contains("12"));
    // Server-rendered SVG: CSAT bars for the six weeks touching November (two with answers),
    // NPS bars, and the response trend with the one snapshot's point.
    let n = b.js("return [document.querySelectorAll('svg#kpi-chart-csat rect.bar').length, document.querySelectorAll('svg#kpi-chart-nps .bar-group').length, document.querySelectorAll('svg#kpi-chart-response circle.point').length]").await;
    assert_eq!(n, json!([2, 6, 1]), "bars and points");
    assert_eq!(b.attr("#kpi-pdf", "href").await.as_deref(), Some("/manager/kpi/report.pdf?month=2026-11"));
    clean(&b, "kpi dashboard").await;
    b.screenshot("kpi-dashboard").await;
    b.js("document.querySelector('#kpi-chart-csat').scrollIntoView(); return true").await;
    b.screenshot("kpi-dashboard-charts").await;
    // The month picker goes to another month (no data: dashes, no console errors).
    b.js("document.querySelector('#kpi-month').value = '2026-10'; document.querySelector('#kpi-month-form').submit(); return true").await;
    b.wait_js("location.search.includes('month=2026-10') && document.querySelector('#kpi-figures') !== null", Duration::from_secs(20))
        .await;
    assert_eq!(b.text("#kpi-csat-mean .kpi-value").await, "—");
    clean(&b, "kpi october").await;
    // The PDF link answers a PDF with the session cookie.
    let cookie = b.client.get_named_cookie("sb_session").await.expect("session cookie");
    let jar = format!("sb_session={}", cookie.value());
    let r = api.client.get(format!("{}/manager/kpi/report.pdf?month=2026-11", api.base)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF"));
    let r = api.client.get(format!("{}/manager/kpi?month=2026-99", api.base)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a bad month is a page that says so");
    assert!(r.text().await.unwrap().contains("id=\"error-message\""));

    // Customer service: no link, and the page answers 403.
    b.click("#logout").await;
    b.find("#login-form").await;
    b.type_into("#username", "kpi_cs").await;
    b.type_into("#password", "kpi_cs-Permanent-Pw1").await;
    b.click("#login-submit").await;
    b.find("#logout").await;
    let nav = b.js("return [...document.querySelectorAll('.topbar nav a')].map(a => a.getAttribute('href'))").await;
    assert!(!nav.as_array().unwrap().iter().any(|h| h == "/manager/kpi"), "{nav}");
    let cookie = b.client.get_named_cookie("sb_session").await.expect("session cookie");
    let jar = format!("sb_session={}", cookie.value());
    for url in ["/manager/kpi", "/manager/kpi/report.pdf"] {
        let r = api.client.get(format!("{}{url}", api.base)).header("cookie", &jar).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
    }
    b.go("/manager/kpi").await;
    b.find("#error-message").await;
    let errors = b.errors().await;
    assert!(errors.iter().all(|e| e.contains("403")), "{errors:?}");
    b.close().await;
    srv.stop().await;
}
