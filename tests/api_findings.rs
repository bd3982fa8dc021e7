//! Human in charge of every AI finding: the findings extracted from the conversation are listed,
//! and an advisor confirms, corrects or rejects each in one call. Corrections must use the
//! vocabulary, every review lands on the case's timeline and in the audit log, and a later
//! customer message never overwrites or duplicates what a person decided.

mod common;

use common::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_correct_reject() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, tech) = api.user(&manager, "li", "technician").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "钱" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "x" })).await;
    let case = k["id"].as_str().unwrap().to_string();
    let say = |t: &'static str| {
        let (api, advisor, case) = (api.clone(), advisor.clone(), case.clone());
        async move { api.post(&format!("/api/v1/cases/{case}/messages"), &advisor, json!({ "text": t })).await }
    };
    assert_eq!(say("右前门有刮痕，左后轮有异响").await.0, StatusCode::OK);
    let (s, list) = api.get(&format!("/api/v1/cases/{case}/findings"), &tech).await;
    assert_eq!(s, StatusCode::OK);
    let items: Vec<Value> = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{list}");
    assert!(items.iter().all(|f| f["source"] == "customer" && f["review_status"] == "pending"));
    let (scratch, noise) = (items[0]["id"].as_str().unwrap().to_string(), items[1]["id"].as_str().unwrap().to_string());

    // Bad reviews name the field; nothing changes.
    for (body, field) in [
        (json!({ "decision": "maybe" }), "decision"),
        (json!({ "decision": "correct" }), "decision"),
        (json!({ "decision": "confirm", "damage_type": "dent" }), "decision"),
        (json!({ "decision": "correct", "damage_type": "smashed" }), "damage_type"),
        (json!({ "decision": "correct", "part": "wing" }), "part"),
        (json!({ "decision": "correct", "length_cm": -3 }), "length_cm"),
    ] {
        let (s, v) = api.post(&format!("/api/v1/findings/{scratch}/review"), &advisor, body.clone()).await;
        assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!(field)), "{body}: {v}");
    }
    assert_eq!(api.post("/api/v1/findings/nope/review", &advisor, json!({ "decision": "confirm" })).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.post(&format!("/api/v1/findings/{scratch}/review"), &tech, json!({ "decision": "confirm" })).await.0,
        StatusCode::FORBIDDEN
    );

    // The advisor looked at the car: it is a dent, 12 cm; the noise was a misunderstanding.
    let (s, f) = api
        .post(
            &format!("/api/v1/findings/{scratch}/review"),
            &advisor,
            json!({ "decision": "correct", "damage_type": "dent", "length_cm": 12, "reason": "看了车，是凹陷" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(
        (f["review_status"].clone(), f["damage_type"].clone(), f["length_cm"].clone()),
        (json!("corrected"), json!("dent"), json!(12.0))
    );
    let (s, f) = api.post(&format!("/api/v1/findings/{noise}/review"), &advisor, json!({ "decision": "reject" })).await;
    assert_eq!((s, f["review_status"].clone()), (StatusCode::OK, json!("rejected")));

    // The timeline says who decided what.
    let (_, cv) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    let reviews: Vec<&Value> = cv["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "finding_reviewed").collect();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0]["actor"], "wang");
    assert!(reviews[0]["reason"].as_str().unwrap().contains("corrected customer door/dent: 看了车，是凹陷"), "{}", reviews[0]);

    // The customer repeats the complaint: the rejected noise does not come back as pending, and
    // nothing the advisor decided is overwritten.
    assert_eq!(say("左后轮还是有异响").await.0, StatusCode::OK);
    let (_, list) = api.get(&format!("/api/v1/cases/{case}/findings"), &advisor).await;
    let statuses: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["damage_type"].as_str().unwrap().to_string(), f["review_status"].as_str().unwrap().to_string()))
        .collect();
    assert!(statuses.contains(&("dent".into(), "corrected".into())), "{statuses:?}");
    assert!(statuses.contains(&("abnormal_noise".into(), "rejected".into())), "{statuses:?}");
    assert!(!statuses.contains(&("abnormal_noise".into(), "pending".into())), "{statuses:?}");
    srv.stop().await;
}
