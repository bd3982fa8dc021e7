//! The seed's scenario 1 through the real HTTPS API of the real daemon binary: customer, vehicle and
//! case; the stages move it to `estimated` and `scheduled`; escalate to a person and hand back; list and filter;
//! restart the daemon; everything is still there.

mod common;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn statuses(timeline: &Value) -> Vec<(String, String)> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["to_status"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_one_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(tmp.path());
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let initial = std::fs::read_to_string(d.data_dir().join("initial-manager-password")).unwrap();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang.advisor", "advisor").await;
    let (tech_id, tech) = api.user(&manager, "li.tech", "technician").await;

    // Customer and vehicle at the front desk.
    let (s, cust) = api
        .post("/api/v1/customers", &advisor, json!({ "name": "张先生", "phone": "+86 138 0013 8000", "preferred_language": "zh-CN" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cust}");
    let cid = cust["id"].as_str().unwrap().to_string();
    let (s, veh) = api
        .post(
            "/api/v1/vehicles",
            &advisor,
            json!({ "customer_id": cid, "vin": "LSVAA4182E2123456", "plate": "沪A12345", "make": "Volkswagen", "model": "Passat", "year": 2021, "mileage_km": 36000 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{veh}");
    let vid = veh["id"].as_str().unwrap().to_string();

    // The customer's report opens the case.
    let (s, case) = api
        .post("/api/v1/cases", &advisor, json!({ "customer_id": cid, "vehicle_id": vid, "summary": "我的车右前门有刮痕，还有异响" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    assert_eq!(case["status"], "reported");
    let id = case["id"].as_str().unwrap().to_string();
    // A second, unrelated case for the filters.
    let (s, other) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": cid, "summary": "保养 routine service" })).await;
    assert_eq!(s, StatusCode::CREATED);

    // A technician may not skip ahead: the 409 names where the case is and where it may go.
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/transition"), &advisor, json!({ "to": "scheduled" })).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "illegal_transition");
    assert_eq!(e["error"]["current"], "reported");
    assert_eq!(e["error"]["allowed"], json!(["intake", "on_hold", "escalated", "cancelled"]));

    // The stages move the case: the customer's words, photos waived (vision is off here), the estimate.
    for text in ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"] {
        let (s, v) = api.post(&format!("/api/v1/cases/{id}/messages"), &advisor, json!({ "text": text })).await;
        assert_eq!(s, StatusCode::OK, "{text}: {v}");
    }
    let (s, c) = api
        .post(&format!("/api/v1/cases/{id}/photos/waive"), &advisor, json!({ "reason": "photos: right front door, deep scratch 32 cm" }))
        .await;
    assert_eq!((s, c["status"].clone()), (StatusCode::OK, json!("assessed")), "{c}");
    let (s, est) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!((s, est["plan"]["total"].clone()), (StatusCode::CREATED, json!(1300.0)), "{est}");

    // Hand to a person in one call, then hand back to where it was.
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/escalate"), &tech, json!({ "reason": "customer asks for a person" })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "escalated");
    assert_eq!(c["prior_status"], "estimated");
    assert_eq!(c["needs_review"], true);
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/hand-back"), &tech, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "technicians cannot hand back: {e}");
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/hand-back"), &advisor, json!({ "reason": "explained the estimate" })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "estimated");
    assert_eq!(c["prior_status"], Value::Null);

    let (s, c) = api
        .post(
            &format!("/api/v1/cases/{id}/approval"),
            &advisor,
            json!({ "estimate_version": 1, "approved_by": "张先生", "channel": "in_person" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let slot = est["plan"]["slots"][0]["start"].as_str().unwrap().to_string();
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/appointment"), &advisor, json!({ "start": slot })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/assign"), &advisor, json!({ "user_id": tech_id })).await;
    assert_eq!(s, StatusCode::OK, "{c}");

    // List and filter.
    let (s, l) = api.get("/api/v1/cases?status=scheduled", &advisor).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = l["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![id.as_str()]);
    let (_, l) = api.get(&format!("/api/v1/cases?assigned_to={tech_id}"), &tech).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let (_, l) = api.get(&format!("/api/v1/cases?customer_id={cid}&limit=1"), &advisor).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    assert_eq!(l["items"][0]["id"], other["id"], "newest first");
    let next = l["next_before"].as_str().expect("a second page").to_string();
    let (_, l2) = api.get(&format!("/api/v1/cases?customer_id={cid}&limit=1&before={next}"), &advisor).await;
    assert_eq!(l2["items"][0]["id"], json!(id), "keyset pagination reaches the older case");

    let (_, before) = api.get(&format!("/api/v1/cases/{id}"), &advisor).await;

    // Restart the daemon (clean stop), then everything is still there.
    d.stop();
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let (s, after) = api.get(&format!("/api/v1/cases/{id}"), &advisor).await;
    assert_eq!(s, StatusCode::OK, "sessions survive a restart: {after}");
    assert_eq!(after, before);
    assert_eq!(after["status"], "scheduled");
    assert_eq!(after["assigned_to"], tech_id);
    assert_eq!(after["vehicle"]["vin"], "LSVAA4182E2123456");
    assert_eq!(
        statuses(&after["timeline"]),
        [
            ("created", "reported"),
            ("intake_started", "intake"),
            ("photos_waived", ""),
            ("assessed", "assessed"),
            ("estimated", "estimated"),
            ("escalated", "escalated"),
            ("handed_back", "estimated"),
            ("approved", ""),
            ("scheduled", "scheduled"),
            ("assigned", ""),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(after["timeline"][5]["actor"], "li.tech");
    assert_eq!(after["timeline"][5]["reason"], "customer asks for a person");
    assert!(after["allowed_next"].as_array().unwrap().contains(&json!("in_repair")));

    // The banner never carried the one-time password (stdout may be a log).
    let log = std::fs::read_to_string(&d.stdout_log).unwrap();
    assert!(log.contains("TLS certificate SHA-256 fingerprint"), "{log}");
    assert!(log.contains("one-time password is in"), "{log}");
    assert!(!log.contains(initial.trim()), "one-time password leaked into stdout/log");
    assert!(!log.contains("manager-Permanent-Pw1"));

    // Every change also went to the outbox for HQ: one case record per timeline event (both cases),
    // and the stages' own records.
    let db = common::db(&d.data_dir());
    let count = |kind: &str| -> i64 { db.query_row("SELECT COUNT(*) FROM outbox WHERE record_type = ?1", [kind], |r| r.get(0)).unwrap() };
    assert_eq!(count("case"), 1 + after["timeline"].as_array().unwrap().len() as i64);
    assert_eq!((count("intake"), count("estimate"), count("approval"), count("appointment")), (3, 1, 1, 1));
    assert!(count("finding") >= 2);
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_request_ids_but_no_secrets_or_phone_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(tmp.path());
    d.log_level = "debug".into();
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let initial = std::fs::read_to_string(d.data_dir().join("initial-manager-password")).unwrap();
    let manager = api.manager().await;
    let (s, c) = api.post("/api/v1/customers", &manager, json!({ "name": "钱女士", "phone": "13812345678" })).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api.get("/api/v1/customers?q=13812345678", &manager).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.login("manager", "a-wrong-password-guess").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    d.stop();
    let log = std::fs::read_to_string(&d.stdout_log).unwrap();
    assert!(log.contains("served") && log.contains("id="), "access log with request ids expected:\n{log}");
    assert!(log.contains(c["id"].as_str().unwrap()) || log.contains("/api/v1/customers"), "paths are logged");
    for secret in [initial.trim(), "manager-Permanent-Pw1", "a-wrong-password-guess", manager.as_str(), "13812345678", "钱女士"] {
        assert!(!log.contains(secret), "log leaks {secret:?}");
    }
}
