//! The workflow spine through the real HTTPS API: the seed's scenario 1 moved only by stage work
//! (messages → photos with the real YOLOv8n → review → estimate → approval → appointment), the one
//! finding list deciding what is priced (a rejected scratch leaves the plan, a correction changes
//! it), bay capacity under concurrent bookings, the store calendar from an HQ rates bundle, stage
//! moves refused on `/transition`, and the privacy render failing closed.

mod common;

use common::{analysis, upload, Api, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SEED: [&str; 3] = ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"];

async fn case_with_words(api: &Api, advisor: &str) -> String {
    let (s, c) = api.post("/api/v1/customers", advisor, json!({ "name": "张先生" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, k) = api.post("/api/v1/cases", advisor, json!({ "customer_id": c["id"], "summary": SEED[0] })).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    for text in SEED {
        let (s, v) = api.post(&format!("/api/v1/cases/{id}/messages"), advisor, json!({ "text": text })).await;
        assert_eq!(s, StatusCode::OK, "{text}: {v}");
    }
    id
}

async fn status(api: &Api, token: &str, id: &str) -> String {
    let (_, c) = api.get(&format!("/api/v1/cases/{id}"), token).await;
    c["status"].as_str().unwrap().to_string()
}

fn labour_codes(e: &Value) -> Vec<String> {
    e["plan"]["labour"].as_array().unwrap().iter().map(|l| l["code"].as_str().unwrap().to_string()).collect()
}

fn finding<'a>(list: &'a Value, damage: &str) -> &'a Value {
    list["items"].as_array().unwrap().iter().find(|f| f["damage_type"] == damage).unwrap_or_else(|| panic!("no {damage} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_one_moves_only_through_its_stages() {
    let Some((srv, src, _models)) = common::yolo_server().await else {
        panic!("the detector weights are required (scripts/fetch-models.sh)")
    };
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;

    // Messages: the first one starts the intake stage; no photos yet, so not assessed.
    let id = case_with_words(&api, &advisor).await;
    assert_eq!(status(&api, &advisor, &id).await, "intake");
    // Status is never typed by hand for a stage's move.
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/transition"), &advisor, json!({ "to": "assessed" })).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("stage_owned")), "{e}");
    assert!(e["error"]["stage_endpoint"].as_str().unwrap().contains("/photos"), "{e}");
    // And no estimate before the case is assessed.
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("not_assessed")), "{e}");

    // Photos: three shots that pass the quality gate assess the case.
    let bus = std::fs::read(src.join("bus.jpg")).unwrap();
    for _ in 0..3 {
        let p = upload(&api, &advisor, &id, bus.clone()).await;
        let a = analysis(&api, &advisor, p["id"].as_str().unwrap()).await;
        assert_eq!(a["quality"]["ok"], true, "{a}");
    }
    assert_eq!(status(&api, &advisor, &id).await, "assessed");

    // Review: the advisor confirms the scratch.
    let (_, list) = api.get(&format!("/api/v1/cases/{id}/findings"), &advisor).await;
    let scratch = finding(&list, "scratch")["id"].as_str().unwrap().to_string();
    assert_eq!(finding(&list, "scratch")["sources"], json!(["customer"]));
    let (s, f) = api.post(&format!("/api/v1/findings/{scratch}/review"), &advisor, json!({ "decision": "confirm" })).await;
    assert_eq!(s, StatusCode::OK, "{f}");

    // Estimate: ¥1,300 from the finding list; the case is estimated, with a timeline event.
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert_eq!(e["plan"]["total"], 1300.0, "{e}");
    assert_eq!(e["case_status"], "estimated");
    let (_, c) = api.get(&format!("/api/v1/cases/{id}"), &advisor).await;
    assert!(c["timeline"].as_array().unwrap().iter().any(|t| t["kind"] == "estimated" && t["to_status"] == "estimated"), "{c}");

    // No booking before the customer approves.
    let (_, slots) = api.get("/api/v1/slots?hours=5.5", &advisor).await;
    let first = slots["slots"][0]["start"].as_str().expect("a free slot").to_string();
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/appointment"), &advisor, json!({ "start": first })).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("not_approved")), "{e}");

    // Approval of the latest version (a stale version is refused), then the booking.
    let (s, e) = api
        .post(
            &format!("/api/v1/cases/{id}/approval"),
            &advisor,
            json!({ "estimate_version": 2, "approved_by": "张先生", "channel": "tablet" }),
        )
        .await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("stale_estimate")), "{e}");
    let (s, ap) = api
        .post(
            &format!("/api/v1/cases/{id}/approval"),
            &advisor,
            json!({ "estimate_version": 1, "approved_by": "张先生", "channel": "in_person" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ap}");
    assert_eq!(ap["lines_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ap["case_status"], "estimated");
    let (_, got) = api.get(&format!("/api/v1/cases/{id}/estimate"), &advisor).await;
    assert_eq!(got["status"], "approved", "{got}");
    let (s, appt) = api.post(&format!("/api/v1/cases/{id}/appointment"), &advisor, json!({ "start": first })).await;
    assert_eq!(s, StatusCode::CREATED, "{appt}");
    assert_eq!((appt["status"].clone(), appt["starts_at"].clone()), (json!("booked"), json!(first)));
    assert_eq!(status(&api, &advisor, &id).await, "scheduled");
    assert_eq!(common::count_rows(srv.data_dir(), "appointments"), 1);
    assert_eq!(common::count_rows(srv.data_dir(), "approvals"), 1);

    // A new estimate version takes the case back to estimated and needs a new approval; the
    // approval finds the booking and schedules the case again.
    let (_, before) = api.get(&format!("/api/v1/cases/{id}/estimate"), &advisor).await;
    assert_eq!(before["status"], "approved");
    let (s, e2) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({ "parts_choice": "aftermarket" })).await;
    assert_eq!((s, e2["case_status"].clone(), e2["version"].clone()), (StatusCode::CREATED, json!("estimated"), json!(2)), "{e2}");
    let (_, got) = api.get(&format!("/api/v1/cases/{id}/estimate"), &advisor).await;
    assert_eq!((got["version"].clone(), got["status"].clone()), (json!(2), json!("offered")), "a new version needs its own yes");
    let (s, ap2) = api
        .post(
            &format!("/api/v1/cases/{id}/approval"),
            &advisor,
            json!({ "estimate_version": 2, "approved_by": "张先生", "channel": "phone" }),
        )
        .await;
    assert_eq!((s, ap2["case_status"].clone()), (StatusCode::CREATED, json!("scheduled")), "{ap2}");

    // Every stage wrote its event; the outbox carries typed records for HQ.
    let kinds: Vec<String> = {
        let (_, c) = api.get(&format!("/api/v1/cases/{id}"), &advisor).await;
        c["timeline"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap().to_string()).collect()
    };
    for k in ["intake_started", "assessed", "finding_reviewed", "estimated", "approved", "scheduled"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }

    // The car enters the bay only through the work-order stage, and only with a signed baseline.
    let (_, tech) = api.user(&manager, "li", "technician").await;
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/transition"), &tech, json!({ "to": "in_repair" })).await;
    assert_eq!((s, c["error"]["code"].clone()), (StatusCode::CONFLICT, json!("stage_owned")), "{c}");
    assert_eq!(c["error"]["stage_endpoint"], "POST /api/v1/cases/{id}/work-order", "{c}");
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/work-order"), &tech, json!({})).await;
    assert_eq!((s, c["error"]["code"].clone()), (StatusCode::CONFLICT, json!("precondition_failed")), "{c}");
    assert_eq!(c["error"]["missing"], json!(["baseline"]), "{c}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finding_list_decides_the_price() {
    let srv = Server::start().await; // lexicon only, vision off: photos are waived by the advisor
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let id = case_with_words(&api, &advisor).await;
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), &advisor, json!({ "reason": "" })).await;
    assert_eq!((s, e["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("reason")), "{e}");
    let (s, c) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), &advisor, json!({ "reason": "客户已提供维修厂照片" })).await;
    assert_eq!((s, c["status"].clone()), (StatusCode::OK, json!("assessed")), "{c}");

    let (_, e1) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!(e1["plan"]["total"], 1300.0, "{e1}");
    let seed_codes = labour_codes(&e1);
    assert_eq!(seed_codes.len(), 3, "{e1}");

    // Rejecting the scratch removes its panel repair and repaint.
    let (_, list) = api.get(&format!("/api/v1/cases/{id}/findings"), &advisor).await;
    let scratch = finding(&list, "scratch")["id"].as_str().unwrap().to_string();
    let (s, _) = api.post(&format!("/api/v1/findings/{scratch}/review"), &advisor, json!({ "decision": "reject" })).await;
    assert_eq!(s, StatusCode::OK);
    let (_, e2) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!(labour_codes(&e2), vec![seed_codes[2].clone()], "only the hinge check is left: {e2}");
    assert_eq!(e2["plan"]["total"], 100.0);

    // A further message never brings a rejected finding back.
    let (s, _) = api.post(&format!("/api/v1/cases/{id}/messages"), &advisor, json!({ "text": "右前门有刮痕" })).await;
    assert_eq!(s, StatusCode::OK);
    let (_, e3) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!(e3["plan"]["total"], 100.0, "{e3}");

    // Correcting it to a dent prices a dent: its paint is not known yet, so the worse case (panel
    // repair + repaint) with a range down to paintless dent repair.
    let (s, f) =
        api.post(&format!("/api/v1/findings/{scratch}/review"), &advisor, json!({ "decision": "correct", "damage_type": "dent" })).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let (_, e4) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert_eq!(e1["plan"]["range"], Value::Null, "{e1}");
    assert_eq!(labour_codes(&e4), seed_codes, "{e4}");
    let (lo, hi) = (e4["plan"]["range"][0].as_f64().unwrap(), e4["plan"]["range"][1].as_f64().unwrap());
    assert!(lo < hi && hi == 1300.0, "{e4}");
    assert_eq!(e4["plan"]["uncertain"], json!([0]), "{e4}");
    assert_eq!(e4["plan"]["finding_ids"][0], json!(scratch));

    // An advisor adds a finding by hand: it is priced too.
    let (s, f) = api
        .post(
            &format!("/api/v1/cases/{id}/findings"),
            &advisor,
            json!({ "part": "headlight", "position": "left_front", "damage_type": "crack" }),
        )
        .await;
    assert_eq!((s, f["sources"].clone()), (StatusCode::CREATED, json!(["advisor"])), "{f}");
    let (_, e5) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
    assert!(e5["plan"]["total"].as_f64().unwrap() > e4["plan"]["total"].as_f64().unwrap(), "{e5}");
    srv.stop().await;
}

/// An HQ rates bundle with two bays, open every day, closed tomorrow for a holiday.
fn two_bay_store(data: &std::path::Path) -> chrono::NaiveDate {
    let tomorrow = chrono::Local::now().date_naive() + chrono::Duration::days(1);
    let dir = data.join("bundles/labour_rates/current");
    std::fs::create_dir_all(&dir).unwrap();
    let rates = format!(
        "version = 9\n[[store]]\nid = \"default\"\ncurrency = \"CNY\"\n\
         rates = {{ body = 200, paint = 200, mechanical = 200, electrical = 220, glass = 180, diagnostic = 200 }}\n\
         bays = 2\nopen = \"08:30\"\nclose = \"17:30\"\nworkdays = [1, 2, 3, 4, 5, 6, 7]\nslot_starts = [\"09:00\", \"14:00\"]\n\
         [[holiday]]\nname = \"测试假日\"\nfrom = \"{tomorrow}\"\nto = \"{tomorrow}\"\n"
    );
    std::fs::write(dir.join("rates.toml"), rates).unwrap();
    tomorrow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_concurrent_booking_of_a_two_bay_slot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let holiday = two_bay_store(&dir.path().join("data"));
    let srv = Server::start_in(dir, "").await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;

    // The calendar: the holiday is never offered, and booking it names the reason.
    let (s, slots) = api.get("/api/v1/slots?hours=5.5&days=3", &advisor).await;
    assert_eq!(s, StatusCode::OK, "{slots}");
    assert_eq!(slots["bays"], 2);
    let starts: Vec<String> = slots["slots"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().to_string()).collect();
    assert!(!starts.iter().any(|s| s.starts_with(&holiday.to_string())), "{starts:?}");
    assert_eq!(starts.len(), 4, "two open days × two starts: {starts:?}");
    let (s, e) = api.get("/api/v1/slots?hours=0", &advisor).await;
    assert_eq!((s, e["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("hours")));

    let mut cases = Vec::new();
    for _ in 0..3 {
        let id = case_with_words(&api, &advisor).await;
        api.post(&format!("/api/v1/cases/{id}/photos/waive"), &advisor, json!({ "reason": "test" })).await;
        let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), &advisor, json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
        let (s, a) = api
            .post(
                &format!("/api/v1/cases/{id}/approval"),
                &advisor,
                json!({ "estimate_version": 1, "approved_by": "客户", "channel": "phone" }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        cases.push(id);
    }
    let (s, e) =
        api.post(&format!("/api/v1/cases/{}/appointment", cases[0]), &advisor, json!({ "start": format!("{holiday}T09:00:00") })).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("store_closed")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("测试假日"), "{e}");

    // Three bookings of one slot at once: exactly two get a bay.
    let slot = starts[0].clone();
    let tasks: Vec<_> = cases
        .iter()
        .map(|id| {
            let (api, advisor, id, slot) = (api.clone(), advisor.clone(), id.clone(), slot.clone());
            tokio::spawn(async move { api.post(&format!("/api/v1/cases/{id}/appointment"), &advisor, json!({ "start": slot })).await })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        codes.push((s, v["error"]["code"].as_str().unwrap_or("").to_string()));
    }
    codes.sort();
    assert_eq!(
        codes,
        vec![(StatusCode::CREATED, String::new()), (StatusCode::CREATED, String::new()), (StatusCode::CONFLICT, "slot_full".to_string())]
    );
    let (_, slots) = api.get("/api/v1/slots?hours=5.5&days=3", &advisor).await;
    assert!(!slots["slots"].as_array().unwrap().iter().any(|s| s["start"] == json!(slot)), "a full slot is not offered: {slots}");

    // Cancelling frees the bay: the third case books it now; the cancelled case is estimated again.
    let booked: Vec<&String> = {
        let mut v = Vec::new();
        for id in &cases {
            if status(&api, &advisor, id).await == "scheduled" {
                v.push(id);
            }
        }
        v
    };
    assert_eq!(booked.len(), 2);
    let (s, a) = api.call(reqwest::Method::DELETE, &format!("/api/v1/cases/{}/appointment", booked[0]), Some(&advisor), None).await;
    assert_eq!((s, a["status"].clone()), (StatusCode::OK, json!("cancelled")), "{a}");
    assert_eq!(status(&api, &advisor, booked[0]).await, "estimated");
    let third = cases.iter().find(|c| !booked.contains(c)).unwrap();
    let (s, a) = api.post(&format!("/api/v1/cases/{third}/appointment"), &advisor, json!({ "start": slot })).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blurred_render_refuses_without_a_privacy_detector() {
    let srv = Server::start().await; // vision off
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, auditor) = api.user(&manager, "hq", "hq_auditor").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "赵" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "右前门刮痕" })).await;
    let id = k["id"].as_str().unwrap().to_string();
    let src = common::models_dir().join("bus.jpg");
    let p = upload(&api, &advisor, &id, std::fs::read(src).unwrap()).await;
    let pid = p["id"].as_str().unwrap().to_string();
    let a = analysis(&api, &advisor, &pid).await;
    assert_eq!(a["privacy_capable"], false, "{a}");
    for token in [&auditor, &advisor] {
        let (s, e) = api.get(&format!("/api/v1/photos/{pid}/blurred"), token).await;
        assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("privacy_unavailable")), "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("faces or people"), "{e}");
    }

    // An analysis whose detections cannot be read is refused too, never served unblurred.
    let db = common::db(srv.data_dir());
    db.execute("UPDATE photo_analysis SET privacy_capable = 1, detections = '{not json' WHERE photo_id = ?1", [&pid]).unwrap();
    drop(db);
    let (s, e) = api.get(&format!("/api/v1/photos/{pid}/blurred"), &auditor).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("privacy_unavailable")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("cannot be read"), "{e}");
    srv.stop().await;
}

/// Bad input on every stage route: a 400 (or 409) that names the field or the reason, nothing
/// written, and the daemon goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_inputs_are_refused_with_a_reason_and_nothing_written() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, tech) = api.user(&manager, "li", "technician").await;
    let id = case_with_words(&api, &advisor).await;
    let post = |path: String, body: Value| {
        let (api, advisor) = (api.clone(), advisor.clone());
        async move { api.post(&path, &advisor, body).await }
    };
    let field = |(s, v): (StatusCode, Value)| (s, v["error"]["field"].as_str().unwrap_or("").to_string());
    let code = |(s, v): (StatusCode, Value)| (s, v["error"]["code"].as_str().unwrap_or("").to_string());
    let bad = StatusCode::BAD_REQUEST;

    // Findings by hand: closed vocabulary, bounded lengths and notes.
    let f = format!("/api/v1/cases/{id}/findings");
    assert_eq!(field(post(f.clone(), json!({ "part": "wing", "damage_type": "dent" })).await), (bad, "part".into()));
    assert_eq!(field(post(f.clone(), json!({ "part": "door", "damage_type": "melted" })).await), (bad, "damage_type".into()));
    assert_eq!(field(post(f.clone(), json!({ "part": "door", "position": "up", "damage_type": "dent" })).await), (bad, "position".into()));
    assert_eq!(field(post(f.clone(), json!({ "part": "door", "damage_type": "dent", "length_cm": -1 })).await), (bad, "length_cm".into()));
    assert_eq!(
        field(post(f.clone(), json!({ "part": "door", "damage_type": "dent", "note": "x".repeat(501) })).await),
        (bad, "note".into())
    );
    assert_eq!(api.post(&f, &tech, json!({ "part": "door", "damage_type": "dent" })).await.0, StatusCode::FORBIDDEN);
    assert_eq!(common::count_rows(srv.data_dir(), "findings"), 2, "only the customer's two findings");

    // Approval and booking before there is anything to approve or book.
    let approve = format!("/api/v1/cases/{id}/approval");
    let ok_approval = json!({ "estimate_version": 1, "approved_by": "张先生", "channel": "tablet" });
    assert_eq!(code(post(approve.clone(), ok_approval.clone()).await), (StatusCode::CONFLICT, "not_estimated".into()));
    let book = format!("/api/v1/cases/{id}/appointment");
    assert_eq!(code(post(book.clone(), json!({ "start": "2099-01-05T09:00:00" })).await).0, bad, "more than 180 days ahead");
    let tomorrow = (chrono::Local::now() + chrono::Duration::days(1)).format("%Y-%m-%dT10:00:00").to_string();
    assert_eq!(code(post(book.clone(), json!({ "start": tomorrow })).await).0, StatusCode::CONFLICT, "no estimate, or closed");
    let (s, _) = api.call(reqwest::Method::DELETE, &book, Some(&advisor), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing to cancel");

    // Now estimated: malformed approvals and bookings.
    post(format!("/api/v1/cases/{id}/photos/waive"), json!({ "reason": "test" })).await;
    assert_eq!(post(format!("/api/v1/cases/{id}/estimate"), json!({})).await.0, StatusCode::CREATED);
    let with = |k: &str, v: Value| {
        let mut b = ok_approval.clone();
        b[k] = v;
        b
    };
    assert_eq!(field(post(approve.clone(), with("channel", json!("fax"))).await), (bad, "channel".into()));
    assert_eq!(field(post(approve.clone(), with("approved_by", json!(""))).await), (bad, "approved_by".into()));
    assert_eq!(field(post(approve.clone(), with("estimate_version", json!(0))).await), (bad, "estimate_version".into()));
    assert_eq!(field(post(approve.clone(), with("signature_png", json!("not base64!"))).await), (bad, "signature_png".into()));
    assert_eq!(field(post(approve.clone(), with("signature_png", json!("aGVsbG8="))).await), (bad, "signature_png".into()), "not a PNG");
    assert_eq!(field(post(approve.clone(), with("signature_png", json!("A".repeat(200_004)))).await), (bad, "signature_png".into()));
    assert_eq!(common::count_rows(srv.data_dir(), "approvals"), 0);
    for start in ["tomorrow 9:00", "2026-13-40T09:00:00", "2020-01-01T09:00:00"] {
        assert_eq!(field(post(book.clone(), json!({ "start": start })).await), (bad, "start".into()), "{start}");
    }
    assert_eq!(code(post(book.clone(), json!({ "start": tomorrow })).await).0, StatusCode::CONFLICT, "not approved yet");
    assert_eq!(common::count_rows(srv.data_dir(), "appointments"), 0);
    for q in ["hours=abc", "hours=500", "hours=2&days=0", "hours=2&days=61", ""] {
        assert_eq!(api.get(&format!("/api/v1/slots?{q}"), &advisor).await.0, bad, "{q}");
    }

    // Still serving, and the case is where the stages left it.
    assert_eq!(status(&api, &advisor, &id).await, "estimated");
    srv.stop().await;
}
