//! The HQ data contract end to end: a store daemon runs the seed's scenarios 1 and 2 through their
//! stages (every outbox record kind: case, intake, finding, estimate, approval, appointment, and
//! the workshop's work order, flags and QC report, the follow-up with its survey and hot alert, and a
//! KPI snapshot), syncs over a
//! private Mosquitto to `servicebay hq-ingest`, and PostgreSQL holds every kind with its schema
//! version, exactly once, with the latest states — and no customer name or phone number. Then the
//! customer asks to be erased: HQ removes every record of theirs and logs that it did.

mod common;

use std::time::Duration;

use common::hq::{assert_exact, wait_synced, Rig};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_reaches_postgresql() {
    let mut r = Rig::new().await;
    r.broker.start();
    r.worker("w1");
    let store = "store-contract";
    let (d, api, m) = r.store(store, None).await;

    let (s, c) = api.post("/api/v1/customers", &m, json!({ "name": "张先生", "phone": "13812345678" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (_, k) = api.post("/api/v1/cases", &m, json!({ "customer_id": c["id"], "summary": "右前门刮痕和异响" })).await;
    let id = k["id"].as_str().unwrap().to_string();
    for text in ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"] {
        let (s, v) = api.post(&format!("/api/v1/cases/{id}/messages"), &m, json!({ "text": text })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), &m, json!({ "reason": "contract test" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), &m, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let (s, a) = api
        .post(&format!("/api/v1/cases/{id}/approval"), &m, json!({ "estimate_version": 1, "approved_by": "张先生", "channel": "tablet" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let slot = e["plan"]["slots"][0]["start"].as_str().unwrap().to_string();
    let (s, b) = api.post(&format!("/api/v1/cases/{id}/appointment"), &m, json!({ "start": slot })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (qc_report, wo_id) = common::workshop::deliver(&api, &m, &id).await;
    // The follow-up call: an unhappy answer is a survey and a hot alert; the manager snapshots
    // today's KPIs.
    let (_, cs) = api.user(&m, "cs-contract", "customer_service").await;
    let (s, f) = api.get(&format!("/api/v1/cases/{id}/follow-up"), &cs).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let fixed: Vec<_> =
        f["questions"].as_array().unwrap().iter().map(|q| json!({ "finding_id": q["finding_id"], "answer": "no" })).collect();
    let (s, v) = api
        .post(&format!("/api/v1/cases/{id}/follow-up/answer"), &cs, json!({ "csat": 2, "nps": 3, "fixed": fixed, "comment": "异响还在" }))
        .await;
    assert_eq!((s, v["hot"].clone()), (StatusCode::OK, json!(true)), "{v}");
    let (s, v) = api.post("/api/v1/kpi/snapshots", &m, json!({ "day": chrono::Utc::now().format("%Y-%m-%d").to_string() })).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let pg = r.db.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(60)).await;
    assert_exact(&pg, store, &d.data_dir()).await;

    // Every kind of the contract arrived with its schema version.
    let got: Vec<(String, i32)> = pg
        .query("SELECT DISTINCT record_type, schema_version FROM hq_events WHERE store_id = $1 ORDER BY 1", &[&store])
        .await
        .expect("kinds")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Every kind but the erasure, which comes last (below).
    let mut want: Vec<(String, i32)> =
        servicebay::store::outbox::KINDS.iter().filter(|(k, _)| *k != "erasure").map(|(k, v)| (k.to_string(), *v as i32)).collect();
    want.sort();
    assert_eq!(got, want);

    // Latest states: the case is in follow-up, the approval certifies the lines, the booking is there.
    let body = |kind: &'static str| {
        let pg = &pg;
        async move {
            let row = pg
                .query_one("SELECT body::text FROM hq_records WHERE store_id = $1 AND record_type = $2 LIMIT 1", &[&store, &kind])
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            serde_json::from_str::<serde_json::Value>(&row.get::<_, String>(0)).expect("json")
        }
    };
    // Answered with a hot alert open: the case waits in follow_up until a person settles it.
    assert_eq!(body("case").await["case"]["status"], "follow_up");
    // The work order (with its clock and parts) and the signed QC report, latest versions.
    let wo = body("work_order").await;
    assert_eq!((wo["id"].clone(), wo["status"].clone()), (json!(wo_id), json!("done")), "{wo}");
    assert!(!wo["clock"].as_array().unwrap().is_empty() && wo["parts"][0]["part_no"] == "DOOR-SHELL-RF", "{wo}");
    let rep = body("qc_report").await;
    assert_eq!((rep["passed"].clone(), rep["pdf_sha256"].clone()), (json!(true), qc_report["pdf_sha256"].clone()), "{rep}");
    assert!(rep["body"]["checkpoints"].as_array().unwrap().len() == 15 && rep["body"].get("vehicle").is_none(), "{rep}");
    assert_eq!(body("workshop_flag").await["queue"], "manager");
    assert_eq!(body("approval").await["lines_sha256"], a["lines_sha256"]);
    assert_eq!(body("appointment").await["starts_at"], json!(slot));
    assert_eq!(body("estimate").await["total"], 1300.0);
    let n: i64 = pg
        .query_one("SELECT COUNT(*) FROM hq_records WHERE store_id = $1 AND record_type = 'finding'", &[&store])
        .await
        .expect("findings")
        .get(0);
    assert_eq!(n, 2);

    // Personal data stays in the store.
    let leaks: i64 = pg
        .query_one(
            "SELECT COUNT(*) FROM hq_events WHERE store_id = $1 AND (body::text LIKE '%张先生%' OR body::text LIKE '%13812345678%')",
            &[&store],
        )
        .await
        .expect("leaks")
        .get(0);
    assert_eq!(leaks, 0);

    // The customer asks to be erased (PIPL Art. 47): the store tells HQ, HQ deletes and logs it.
    let held: i64 = pg
        .query_one("SELECT COUNT(*) FROM hq_records WHERE store_id = $1 AND record_type NOT IN ('erasure', 'kpi_snapshot')", &[&store])
        .await
        .expect("records")
        .get(0);
    assert!(held >= 6, "HQ holds the case's records before the erasure: {held}");
    let cid = c["id"].as_str().unwrap().to_string();
    let (s, e) = api.post(&format!("/api/v1/privacy/customers/{cid}/erase"), &m, json!({ "confirm": cid })).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(60)).await;
    let left: i64 = pg
        .query_one("SELECT COUNT(*) FROM hq_records WHERE store_id = $1 AND record_type NOT IN ('erasure', 'kpi_snapshot')", &[&store])
        .await
        .expect("records")
        .get(0);
    assert_eq!(left, 0, "every record of the erased customer's case is gone at HQ");
    let events: i64 = pg
        .query_one("SELECT COUNT(*) FROM hq_events WHERE store_id = $1 AND record_type NOT IN ('erasure', 'kpi_snapshot')", &[&store])
        .await
        .expect("events")
        .get(0);
    assert_eq!(events, 0, "and so are their events");
    let log = pg
        .query_one("SELECT customer_id, reason, cases, records_removed FROM hq_erasures WHERE store_id = $1", &[&store])
        .await
        .expect("HQ logged the erasure");
    assert_eq!((log.get::<_, String>(0), log.get::<_, String>(1), log.get::<_, i32>(2)), (cid.clone(), "request".to_string(), 1));
    assert_eq!(log.get::<_, i64>(3), held, "HQ removed exactly what it held");
    let kinds: i64 = pg
        .query_one("SELECT COUNT(*) FROM hq_events WHERE store_id = $1 AND record_type = 'erasure' AND schema_version = 1", &[&store])
        .await
        .expect("erasure event")
        .get(0);
    assert_eq!(kinds, 1);
    drop(d);
}
