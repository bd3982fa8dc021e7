//! Seed scenario 3 through the API: the follow-up opened at delivery and due 48 h later (the
//! daemon's clock is moved, never slept on), consent at delivery and what HQ then receives, the
//! phone call's script and answers, the hot alert with its SLA and escalation, resolution closing
//! the case, the happy and the CSAT-4 paths, and the refusals (wrong role, wrong state, bad input).

mod common;

use chrono::Duration;
use common::workshop::{deliver, scheduled_case_n};
use common::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};

const EXTRA: &str = "\n[follow_up]\nsurvey_url = \"https://survey.example\"\n";

fn outbox(data: &std::path::Path, kind: &str) -> Vec<Value> {
    let db = common::db(data);
    let mut st = db.prepare("SELECT body FROM outbox WHERE record_type = ?1 ORDER BY seq").unwrap();
    st.query_map([kind], |r| r.get::<_, String>(0)).unwrap().map(|b| serde_json::from_str(&b.unwrap()).unwrap()).collect()
}

fn status(data: &std::path::Path, case: &str) -> String {
    common::db(data).query_row("SELECT status FROM cases WHERE id = ?1", [case], |r| r.get(0)).unwrap()
}

/// The daemon's clock moved to 10:00 +08:00 tomorrow, inside the default opening hours
/// (08:30-18:00): "due 48 h later" then stays inside them whatever time of day the test runs
/// (a delivery after closing would be due at the next opening, not 48 h later).
fn to_opening_hours(server: &Server) {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let tomorrow = chrono::Utc::now().with_timezone(&tz).date_naive() + Duration::days(1);
    let target = tomorrow.and_hms_opt(10, 0, 0).unwrap().and_local_timezone(tz).single().unwrap();
    server.clock.advance(target.with_timezone(&chrono::Utc) - chrono::Utc::now());
}

fn task_of<'a>(queue: &'a Value, case: &str) -> &'a Value {
    queue.as_array().unwrap().iter().find(|i| i["task"]["case_id"] == case).unwrap_or_else(|| panic!("case {case} not in {queue}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_up_by_phone_hot_alert_sla_and_closing() {
    let server = Server::start_with(EXTRA).await;
    to_opening_hours(&server);
    let api = server.api();
    let data = server.data_dir().to_path_buf();
    let m = api.manager().await;
    let (_, cs) = api.user(&m, "cs1", "customer_service").await;
    let (_, tech) = api.user(&m, "tech1", "technician").await;

    let (case, _) = scheduled_case_n(&api, &m, 0).await;
    // Before delivery there is nothing to follow up.
    let (s, e) = api.get(&format!("/api/v1/cases/{case}/follow-up"), &cs).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("no_follow_up")), "{e}");
    deliver(&api, &m, &case).await;
    assert_eq!(status(&data, &case), "delivered");

    // Opened at delivery, due 48 h later inside opening hours.
    let (s, q) = api.get("/api/v1/follow-ups", &cs).await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let item = task_of(&q, &case);
    assert_eq!(item["state"], "upcoming", "{item}");
    let delivered = servicebay::clock::parse(item["task"]["delivered_at"].as_str().unwrap()).unwrap();
    let due = servicebay::domain::follow_up::Policy::default().due_at(delivered);
    assert_eq!(servicebay::clock::parse(item["task"]["due_at"].as_str().unwrap()), Some(due));
    assert!(item["task"].get("token").is_none(), "the QR token is not listed");
    let first = outbox(&data, "follow_up");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["channels"], json!([]), "no consent yet: no channel");
    assert_eq!(first[0]["contact"], Value::Null, "no consent: the phone stays in the store");
    assert_eq!(first[0]["questions"].as_array().unwrap().len(), 2, "{}", first[0]);
    assert_eq!(first[0]["token_hash"].as_str().unwrap().len(), 64);

    // Consent at delivery (the text version shown); HQ then gets the channel and the phone.
    let (s, t) = api.get("/api/v1/follow-up/consent-text", &cs).await;
    assert_eq!(s, StatusCode::OK);
    let version = t["current"]["version"].as_str().unwrap().to_string();
    let (s, c) = api.post(&format!("/api/v1/cases/{case}/consent"), &m, json!({ "channels": ["sms"], "text_version": version })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let last = outbox(&data, "follow_up").pop().unwrap();
    assert_eq!((last["channels"].clone(), last["contact"]["phone"].clone()), (json!(["sms"]), json!("13900001111")), "{last}");
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/consent"), &m, json!({ "channels": ["fax"], "text_version": version })).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("channels")), "{e}");
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/consent"), &m, json!({ "channels": [], "text_version": "v0" })).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("text_version")), "{e}");

    // 49 h later it is due; past due + 24 h it is overdue.
    server.clock.advance(Duration::hours(49));
    let (_, q) = api.get("/api/v1/follow-ups", &cs).await;
    assert_eq!(task_of(&q, &case)["state"], "due");
    server.clock.advance(Duration::hours(30));
    let (_, q) = api.get("/api/v1/follow-ups", &cs).await;
    assert_eq!(task_of(&q, &case)["state"], "overdue");

    // The call view: the script (template: no model here), the questions, the QR link.
    let (s, v) = api.get(&format!("/api/v1/cases/{case}/follow-up"), &cs).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["script"]["from_llm"], false);
    assert!(v["script"]["intro"].as_str().unwrap().contains("右前门刮痕"), "the complaint is in the script: {}", v["script"]);
    assert_eq!(v["script"]["questions"].as_array().unwrap().len(), 2 + 3, "CSAT, 2 × fixed, NPS, comment");
    assert!(v["survey_link"].as_str().unwrap().starts_with("https://survey.example/s/"));
    assert_eq!(v["customer_phone"], "13900001111");
    let questions: Vec<String> = v["questions"].as_array().unwrap().iter().map(|q| q["finding_id"].as_str().unwrap().to_string()).collect();

    // Refusals: a technician; out-of-range scores; a question left out; control characters.
    let good = |csat: u8, nps: u8, last: &str, comment: &str| {
        json!({ "csat": csat, "nps": nps, "comment": comment,
                "fixed": [{ "finding_id": questions[0], "answer": "yes" }, { "finding_id": questions[1], "answer": last }] })
    };
    let (s, _) = api.post(&format!("/api/v1/cases/{case}/follow-up/answer"), &tech, good(5, 10, "yes", "")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/follow-up/answer"), &cs, good(6, 10, "yes", "")).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("csat")), "{e}");
    let (s, e) = api
        .post(
            &format!("/api/v1/cases/{case}/follow-up/answer"),
            &cs,
            json!({ "csat": 5, "nps": 10, "fixed": [{ "finding_id": questions[0], "answer": "yes" }] }),
        )
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("fixed")), "{e}");
    let (s, _) = api.post(&format!("/api/v1/cases/{case}/follow-up/answer"), &cs, good(5, 10, "yes", "好\u{1b}[2J")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.post(&format!("/api/v1/cases/{case}/follow-up/answer"), &cs, good(5, 10, "yes", &"长".repeat(2001))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(common::count_rows(&data, "surveys"), 0, "nothing stored by refused answers");

    // CSAT 2, one "not fixed", NPS 3: a hot alert with its SLA; the case waits in follow_up.
    let (s, a) =
        api.post(&format!("/api/v1/cases/{case}/follow-up/answer"), &cs, good(2, 3, "no", "门锁还是时好时坏，而且左后门也有异响")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!((a["hot"].clone(), a["review_invited"].clone(), a["category"].clone()), (json!(true), json!(true), json!("quality")), "{a}");
    assert!(a["summary"].as_str().unwrap().contains("门锁"), "{a}");
    assert_eq!(status(&data, &case), "follow_up");
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/follow-up/answer"), &cs, good(5, 10, "yes", "")).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("follow_up_closed")), "a double tap counts once: {e}");
    let (s, alerts) = api.get("/api/v1/follow-up/alerts", &cs).await;
    assert_eq!(s, StatusCode::OK, "{alerts}");
    let alert = alerts.as_array().unwrap().iter().find(|x| x["case_id"] == case).expect("the hot alert").clone();
    assert_eq!((alert["kind"].as_str(), alert["open"].as_bool(), alert["overdue"].as_bool()), (Some("hot"), Some(true), Some(false)));
    assert_eq!(alert["reasons"], json!(["low_csat", "detractor", "not_fixed"]));
    let raised = servicebay::clock::parse(alert["raised_at"].as_str().unwrap()).unwrap();
    assert_eq!(servicebay::clock::parse(alert["due_at"].as_str().unwrap()), Some(raised + Duration::hours(24)));
    assert_eq!(servicebay::clock::parse(alert["escalate_at"].as_str().unwrap()), Some(raised + Duration::hours(72)));
    // The new problem in the customer's words is proposed as a new case.
    assert!(alert["proposed"].to_string().contains("rear"), "{alert}");
    let sent = outbox(&data, "survey").pop().unwrap();
    assert!(sent.get("comment").is_none(), "the customer's words stay in the store: {sent}");

    // Nobody answered for 25 h: overdue; past 72 h: escalated to the manager, the case flagged.
    server.clock.advance(Duration::hours(25));
    let (_, alerts) = api.get("/api/v1/follow-up/alerts", &cs).await;
    let a1 = alerts.as_array().unwrap().iter().find(|x| x["id"] == alert["id"]).unwrap();
    assert_eq!((a1["overdue"].as_bool(), a1["escalated_at"].is_null()), (Some(true), true));
    server.clock.advance(Duration::hours(48));
    let (_, alerts) = api.get("/api/v1/follow-up/alerts", &cs).await;
    let a2 = alerts.as_array().unwrap().iter().find(|x| x["id"] == alert["id"]).unwrap();
    assert!(a2["escalated_at"].is_string(), "{a2}");
    let flagged: i64 = common::db(&data).query_row("SELECT needs_review FROM cases WHERE id = ?1", [&case], |r| r.get(0)).unwrap();
    assert_eq!(flagged, 1, "an escalated alert flags the case for a person");

    // A person responds, then resolves (a note is required) and opens the comeback case.
    let id = alert["id"].as_str().unwrap();
    let (s, r) = api.post(&format!("/api/v1/follow-up/alerts/{id}/respond"), &cs, json!({ "note": "已致电客户，约明天回店" })).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["first_response_by"], "cs1");
    let (s, e) = api.post(&format!("/api/v1/follow-up/alerts/{id}/resolve"), &cs, json!({})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("note")), "{e}");
    let (s, r) = api.post(&format!("/api/v1/follow-up/alerts/{id}/resolve"), &cs, json!({ "note": "返修门锁", "open_case": true })).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let new_case = r["new_case_id"].as_str().expect("a new case").to_string();
    assert_eq!(status(&data, &new_case), "reported");
    assert_eq!(status(&data, &case), "closed", "no hot alert left: the case closes");
    let (s, e) = api.post(&format!("/api/v1/follow-up/alerts/{id}/resolve"), &cs, json!({ "note": "again" })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("alert_resolved")));
    // Every change went to HQ: alert versions raised → escalated → responded → resolved.
    let versions: Vec<i64> =
        outbox(&data, "follow_up_alert").iter().filter(|a| a["id"] == alert["id"]).map(|a| a["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    // The manual move is refused: the follow-up stage owns it.
    let (s, e) = api.post(&format!("/api/v1/cases/{new_case}/transition"), &m, json!({ "to": "closed" })).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn satisfied_and_csat_four_close_at_once_and_unreachable_ends_the_task() {
    let server = Server::start_with(EXTRA).await;
    to_opening_hours(&server);
    let api = server.api();
    let data = server.data_dir().to_path_buf();
    let m = api.manager().await;
    let (_, cs) = api.user(&m, "cs2", "customer_service").await;
    let mut cases = Vec::new();
    for n in 1..=3 {
        let (case, _) = scheduled_case_n(&api, &m, n).await;
        deliver(&api, &m, &case).await;
        cases.push(case);
    }
    server.clock.advance(Duration::hours(50));
    let all_yes = |case: &str| {
        let v = common::db(&data);
        let mut st = v.prepare("SELECT id FROM findings WHERE case_id = ?1 AND review_status <> 'rejected'").unwrap();
        let ids: Vec<String> = st.query_map([case], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        ids.into_iter().map(|id| json!({ "finding_id": id, "answer": "yes" })).collect::<Vec<_>>()
    };
    // 5 / 10: closed at once, no alert, the review invitation still shown.
    let (s, a) = api
        .post(&format!("/api/v1/cases/{}/follow-up/answer", cases[0]), &cs, json!({ "csat": 5, "nps": 10, "fixed": all_yes(&cases[0]) }))
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!((a["hot"].clone(), a["review_invited"].clone()), (json!(false), json!(true)));
    assert_eq!(status(&data, &cases[0]), "closed");
    // 4 / 8 with a comment: a suggestion (no SLA); the case closes too.
    let (s, a) = api
        .post(
            &format!("/api/v1/cases/{}/follow-up/answer", cases[1]),
            &cs,
            json!({ "csat": 4, "nps": 8, "fixed": all_yes(&cases[1]), "comment": "等待时间有点长" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(status(&data, &cases[1]), "closed");
    let (_, alerts) = api.get("/api/v1/follow-up/alerts", &cs).await;
    let sug = alerts.as_array().unwrap().iter().find(|x| x["case_id"] == cases[1]).expect("suggestion");
    assert_eq!((sug["kind"].as_str(), sug["due_at"].is_null()), (Some("suggestion"), true), "{sug}");
    // No answer twice, then unreachable: the task ends and the case closes without answers.
    for outcome in ["no_answer", "no_answer"] {
        let (s, t) = api.post(&format!("/api/v1/cases/{}/follow-up/attempt", cases[2]), &cs, json!({ "outcome": outcome })).await;
        assert_eq!(s, StatusCode::OK, "{t}");
    }
    assert_eq!(status(&data, &cases[2]), "delivered");
    let (s, t) = api
        .post(&format!("/api/v1/cases/{}/follow-up/attempt", cases[2]), &cs, json!({ "outcome": "opt_out", "note": "客户不希望再接电话" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!((t["status"].as_str(), t["attempts"].as_i64()), (Some("declined"), Some(3)));
    assert_eq!(status(&data, &cases[2]), "closed");
    let (_, q) = api.get("/api/v1/follow-ups", &cs).await;
    assert_eq!(task_of(&q, &cases[2])["call_opt_out"], true);
    let (s, e) = api.post(&format!("/api/v1/cases/{}/follow-up/attempt", cases[2]), &cs, json!({ "outcome": "no_answer" })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("follow_up_closed")));
    server.stop().await;
}
