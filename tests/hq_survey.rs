//! HQ's survey service (`hq-survey`) against real parts: a private PostgreSQL database, a private
//! Mosquitto over TLS, the service's own TLS, headless Chromium for the customer's page, and a
//! local HTTP endpoint standing in for the SMS/WeChat gateway. Follow-up records are seeded in
//! `hq_records` exactly as `hq-ingest` stores them and the store's end of the downlink is an MQTT
//! client here; the last tests run the real path instead: a store daemon delivers a case, its
//! follow-up reaches PostgreSQL through `hq-ingest`, the customer answers in the browser, and the
//! hot alert appears on the store, also after the store's link was down.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::browser::{clean, Browser};
use common::hq::Rig;
use common::survey::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use servicebay::clock::Clock;
// ---- 1. the page in the browser, PostgreSQL, MQTT ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_answers_in_the_browser_and_the_answer_goes_down_to_the_store() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    let clock = Clock::system();
    let hq = Survey::start(&rig, "survey", &clock, "resend_secs = 1").await;
    let pg = rig.db.client().await;
    let sniff_cfg = rig.client_config("sniffer");
    let (batches, subscribed) = answer_batches(&sniff_cfg, "s1");
    wait_until("the store's end subscribed", Duration::from_secs(20), || subscribed.load(Ordering::SeqCst) > 0).await;

    let fu = FollowUp::new("s1", "browser");
    fu.put(&pg).await;

    // A phone-sized window, as a customer scanning the QR code has.
    let b = Browser::start(&hq.base, 390, 844).await;
    b.go(&fu.path()).await;
    assert_eq!(b.text("#survey-store").await, STORE_NAME);
    assert!(b.text("#q-fixed-0 legend").await.contains("右前门开关门异响"), "the question names the original complaint");
    assert!(b.text("#survey-privacy").await.contains("个人信息保护法"));
    assert_eq!(b.js("return document.documentElement.lang").await, json!("zh-CN"));
    // Everything fits the phone's width: nothing scrolls sideways.
    assert_eq!(b.js("return document.documentElement.scrollWidth <= window.innerWidth").await, json!(true));
    b.screenshot("hq-survey-phone").await;
    b.click("label[for='csat-2']").await;
    b.click("label[for='q0-no']").await;
    b.click("label[for='q1-yes']").await;
    b.click("label[for='nps-3']").await;
    b.type_into("#comment", "门还是响，\n希望尽快处理").await;
    b.click("#survey-submit").await;
    b.wait_js("document.getElementById('survey-thanks')", Duration::from_secs(20)).await;
    // The review invitation is there for this unhappy customer too (no review gating).
    assert!(b.exists("#survey-review").await, "every respondent is invited to review");
    b.screenshot("hq-survey-thanks").await;
    clean(&b, "answer the survey").await;

    // PostgreSQL: one answer, hot, and its downlink row with sequence 1.
    let row = pg
        .query_one(
            "SELECT a.csat, a.nps, a.hot, a.via, a.comment, a.fixed::text, d.seq, d.payload->>'follow_up_id'
             FROM hq_survey_answers a JOIN hq_downlink d ON d.answer_id = a.id WHERE a.store_id = 's1'",
            &[],
        )
        .await
        .expect("the answer and its downlink row");
    let (csat, nps, hot, via, comment): (i16, i16, bool, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!((csat, nps, hot, via.as_str()), (2, 3, true, "qr"));
    assert_eq!(comment.as_deref(), Some("门还是响，\n希望尽快处理"));
    let fixed: Value = serde_json::from_str(&row.get::<_, String>(5)).unwrap();
    assert_eq!(fixed, json!([{ "finding_id": "f-door", "answer": "no" }, { "finding_id": "f-scratch", "answer": "yes" }]));
    assert_eq!((row.get::<_, i64>(6), row.get::<_, String>(7)), (1, fu.id.clone()));

    // MQTT: the store's topic carries it at once…
    wait_until("the answer on the store's topic", Duration::from_secs(20), || !batches.lock().unwrap().is_empty()).await;
    {
        let got = batches.lock().unwrap();
        let a = &got[0].answers[0];
        assert_eq!((got[0].store_id.as_str(), a.seq, a.follow_up_id.as_str()), ("s1", 1, fu.id.as_str()));
        assert_eq!((a.answer.csat, a.answer.nps, a.answer.comment.as_deref()), (2, 3, Some("门还是响，\n希望尽快处理")));
    }
    // …and again while the store has not acknowledged it (resend_secs = 1).
    wait_until("a resend of the unacknowledged answer", Duration::from_secs(15), || batches.lock().unwrap().len() >= 3).await;
    assert!(seqs(&batches).iter().all(|s| s == &vec![1]), "{:?}", seqs(&batches));

    // The store acknowledges: HQ records it, and the resends stop.
    ack(&sniff_cfg, "s1", 1).await;
    wait_pg(&pg, "acked_seq recorded", "SELECT acked_seq FROM hq_downlink_state WHERE store_id = 's1'", &[], 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = batches.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(batches.lock().unwrap().len(), settled, "nothing is resent once acknowledged");

    // Opening the link again: already answered, still invited to review; nothing new stored.
    b.go(&fu.path()).await;
    b.find("#survey-answered").await;
    assert!(b.exists("#survey-review").await);
    assert_eq!(answers_of(&pg, "s1").await, 1);

    // A second answer for the same store gets sequence 2, and only it is sent (after the ack).
    let fu2 = FollowUp { lang: "en", ..FollowUp::new("s1", "second") };
    fu2.put(&pg).await;
    b.go(&fu2.path()).await;
    assert_eq!(b.js("return document.documentElement.lang").await, json!("en"), "the follow-up's language");
    assert!(b.text("#q-fixed-0 legend").await.contains("noise when the front right door opens"));
    for l in ["csat-5", "q0-yes", "q1-partly", "nps-10"] {
        b.click(&format!("label[for='{l}']")).await;
    }
    b.click("#survey-submit").await;
    b.wait_js("document.getElementById('survey-thanks')", Duration::from_secs(20)).await;
    assert!(b.exists("#survey-review").await, "the happy customer sees the same invitation");
    clean(&b, "second answer").await;
    wait_until("sequence 2 on the store's topic", Duration::from_secs(20), || seqs(&batches).iter().any(|s| s == &vec![2])).await;
    assert!(seqs(&batches)[settled..].iter().all(|s| s == &vec![2]), "only what follows the ack: {:?}", seqs(&batches));

    // Acks only move forward, and never past what HQ handed out.
    ack(&sniff_cfg, "s1", 0).await;
    ack(&sniff_cfg, "s1", 99).await;
    wait_pg(&pg, "a store claiming more is clamped", "SELECT acked_seq FROM hq_downlink_state WHERE store_id = 's1'", &[], 2).await;
    ack(&sniff_cfg, "s1", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(acked(&pg, "s1").await, 2, "an old ack does not move it back");

    b.close().await;
    hq.stop().await;
}

// ---- the downlink's triggers, and answers that wait for the broker -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_wait_for_the_store_and_are_resent_on_its_signals() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    let clock = Clock::system();
    // No periodic resend within the test: every send seen here has a cause.
    let hq = Survey::start(&rig, "survey", &clock, "resend_secs = 3600").await;
    let pg = rig.db.client().await;
    let cfg = rig.client_config("store-s2");
    let (batches, subscribed) = answer_batches(&cfg, "s2");
    wait_until("the store's end subscribed", Duration::from_secs(20), || subscribed.load(Ordering::SeqCst) > 0).await;
    status(&cfg, "s2", "offline").await;

    let fu = FollowUp::new("s2", "signals");
    fu.put(&pg).await;
    let csrf = hq.csrf(&fu.token).await;
    let (s, body, loc) = hq.post(&fu.path(), answer_form(&csrf, 4, 8, "")).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert!(loc.unwrap_or_default().starts_with(&format!("{}?", fu.path())));
    // Stored, so sent once (an offline store's persistent session may still take it).
    wait_until("the stored answer sent", Duration::from_secs(20), || seqs(&batches).len() == 1).await;

    // An ack that is behind and brings no progress: sent again (rate-limited to one per 2 s).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    ack(&cfg, "s2", 0).await;
    wait_until("a resend after an ack that is behind", Duration::from_secs(20), || seqs(&batches).len() == 2).await;

    // The store comes back online: everything after its ack goes again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    status(&cfg, "s2", "online").await;
    wait_until("a resend when the store comes back", Duration::from_secs(20), || seqs(&batches).len() == 3).await;
    assert!(seqs(&batches).iter().all(|s| s == &vec![1]));

    // The broker goes away: the page still takes answers; they wait in PostgreSQL.
    rig.broker.kill9();
    let fu2 = FollowUp::new("s2", "broker-down");
    fu2.put(&pg).await;
    let csrf = hq.csrf(&fu2.token).await;
    let (s, body, _) = hq.post(&fu2.path(), answer_form(&csrf, 5, 9, "很好")).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the page works while the broker is down: {body}");
    assert_eq!(downlink_of(&pg, "s2").await, 2);
    // The broker is back: the relay reconnects and sends the backlog (sequences 1 and 2: the store
    // acked nothing yet) without anyone touching the page again. (The store's end here may
    // resubscribe after that send; the store saying it is online again makes HQ send once more.)
    let before = seqs(&batches).len();
    rig.broker.start();
    wait_until("the store's end back", Duration::from_secs(40), || subscribed.load(Ordering::SeqCst) > 1).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    if !seqs(&batches)[before..].iter().any(|s| s == &vec![1, 2]) {
        status(&cfg, "s2", "offline").await;
        status(&cfg, "s2", "online").await;
    }
    wait_until("the backlog sent after the broker returns", Duration::from_secs(40), || {
        seqs(&batches)[before..].iter().any(|s| s == &vec![1, 2])
    })
    .await;
    ack(&cfg, "s2", 2).await;
    wait_pg(&pg, "both acknowledged", "SELECT acked_seq FROM hq_downlink_state WHERE store_id = 's2'", &[], 2).await;
    hq.stop().await;
}

// ---- hostile input ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_gets_clear_pages_and_stores_nothing() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    let clock = Clock::system();
    let hq = Survey::start(&rig, "survey", &clock, "").await;
    let pg = rig.db.client().await;
    let fu = FollowUp::new("s3", "hostile");
    fu.put(&pg).await;
    let path = fu.path();
    let csrf = hq.csrf(&fu.token).await;
    let mut statuses = Vec::new();

    // Unknown or malformed tokens: a friendly 404 page, not an error dump.
    for p in [
        "/s/short",
        "/s/0123456789abcdef0123456789abcdef0123",
        "/s/..%2F..%2Fetc%2Fpasswd%2F%2F%2F%2F",
        "/s/%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00",
        "/admin",
        "/s/",
    ] {
        let (s, html) = hq.get(p).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}: {html}");
        assert!(html.contains("id=\"survey-not-found\"") && html.contains("找不到这份问卷"), "{p}: {html}");
    }
    let r = hq.client.get(format!("{}{path}", hq.base)).send().await.unwrap();
    let csp = r.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("form-action 'self'"), "{csp}");

    // (what was sent, status, page id or error code it must show)
    let other = FollowUp::new("s3", "other");
    other.put(&pg).await;
    let other_csrf = hq.csrf(&other.token).await;
    let cases: Vec<(String, String, StatusCode, &str)> = vec![
        ("no CSRF token".into(), answer_form("", 4, 8, "").replace("csrf=&", ""), StatusCode::FORBIDDEN, "survey-refused"),
        ("another survey's CSRF token".into(), answer_form(&other_csrf, 4, 8, ""), StatusCode::FORBIDDEN, "survey-refused"),
        ("NUL in the comment".into(), answer_form(&csrf, 4, 8, "好\u{0}坏"), StatusCode::BAD_REQUEST, "控制字符"),
        ("ESC in the comment".into(), answer_form(&csrf, 4, 8, "\u{1b}[31m红"), StatusCode::BAD_REQUEST, "控制字符"),
        ("2,001 characters".into(), answer_form(&csrf, 4, 8, &"长".repeat(2001)), StatusCode::BAD_REQUEST, "最多 2000 字"),
        ("100k comment".into(), answer_form(&csrf, 4, 8, &"x".repeat(100_000)), StatusCode::PAYLOAD_TOO_LARGE, "survey-too-large"),
        ("CSAT 0".into(), answer_form(&csrf, 0, 8, ""), StatusCode::BAD_REQUEST, "1 到 5 分"),
        ("CSAT 6".into(), answer_form(&csrf, 6, 8, ""), StatusCode::BAD_REQUEST, "1 到 5 分"),
        ("CSAT 300".into(), answer_form(&csrf, 4, 8, "").replace("csat=4", "csat=300"), StatusCode::BAD_REQUEST, "1 到 5 分"),
        ("CSAT text".into(), answer_form(&csrf, 4, 8, "").replace("csat=4", "csat=%E4%BA%94"), StatusCode::BAD_REQUEST, "1 到 5 分"),
        ("NPS 11".into(), answer_form(&csrf, 4, 11, ""), StatusCode::BAD_REQUEST, "0 到 10 分"),
        ("no NPS".into(), answer_form(&csrf, 4, 8, "").replace("&nps=8", ""), StatusCode::BAD_REQUEST, "推荐我们的可能性"),
        (
            "a missing fixed answer".into(),
            answer_form(&csrf, 4, 8, "").replace("&fixed%3Af-scratch=yes", ""),
            StatusCode::BAD_REQUEST,
            "逐项回答",
        ),
        ("a finding never asked".into(), answer_form(&csrf, 4, 8, "") + "&fixed%3Af-engine=no", StatusCode::BAD_REQUEST, "逐项回答"),
        (
            "a bad fixed value".into(),
            answer_form(&csrf, 4, 8, "").replace("f-door=no", "f-door=maybe"),
            StatusCode::BAD_REQUEST,
            "是、部分或否",
        ),
        ("CSAT twice".into(), answer_form(&csrf, 4, 8, "") + "&csat=1", StatusCode::BAD_REQUEST, "两个答案"),
        ("not a form".into(), "\u{0}\u{1}\u{2}%%%===&&&".into(), StatusCode::FORBIDDEN, "survey-refused"),
    ];
    for (what, body, want, shows) in &cases {
        let (s, html, _) = hq.post(&path, body.clone()).await;
        statuses.push(s);
        assert_eq!(s, *want, "{what}: {html}");
        assert!(html.contains(shows), "{what}: page should show '{shows}':\n{html}");
        assert_eq!(answers_of(&pg, "s3").await, 0, "{what}: nothing stored");
    }
    // A refused form comes back filled in, with the error next to it.
    let (_, html, _) = hq.post(&path, answer_form(&csrf, 4, 11, "保留我写的字")).await;
    assert!(html.contains("id=\"survey-error\"") && html.contains("保留我写的字") && html.contains("value=\"4\" checked"), "{html}");

    // A foreign Origin is refused even with a valid token.
    let r = hq
        .client
        .post(format!("{}{path}", hq.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example.com")
        .body(answer_form(&csrf, 4, 8, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Wrong methods: a page too.
    let r = hq.client.put(format!("{}{path}", hq.base)).body("x").send().await.unwrap();
    assert!(r.status() == StatusCode::METHOD_NOT_ALLOWED || r.status() == StatusCode::NOT_FOUND, "{}", r.status());
    assert_eq!(answers_of(&pg, "s3").await, 0);

    // A double submit, sequential and concurrent: exactly one answer, one downlink row.
    let (s, _, _) = hq.post(&path, answer_form(&csrf, 3, 6, "第一次")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, html, _) = hq.post(&path, answer_form(&csrf, 1, 0, "第二次")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("id=\"survey-answered\""), "{html}");
    let other_body = answer_form(&other_csrf, 5, 10, "");
    let other_path = other.path();
    let racers: Vec<_> = (0..6).map(|_| hq.post(&other_path, other_body.clone())).collect();
    let results = futures_util::future::join_all(racers).await;
    let won = results.iter().filter(|(s, _, _)| *s == StatusCode::SEE_OTHER).count();
    let lost = results.iter().filter(|(s, _, _)| *s == StatusCode::CONFLICT).count();
    assert_eq!((won, lost), (1, 5), "{:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
    assert_eq!(answers_of(&pg, "s3").await, 2);
    assert_eq!(downlink_of(&pg, "s3").await, 2);
    let seqs: Vec<i64> =
        pg.query("SELECT seq FROM hq_downlink WHERE store_id = 's3' ORDER BY seq", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, vec![1, 2], "sequences without gaps");
    let first: String = pg.query_one("SELECT comment FROM hq_survey_answers WHERE follow_up_id = $1", &[&fu.id]).await.unwrap().get(0);
    assert_eq!(first, "第一次", "the first answer stands");

    // A follow-up the customer declined is closed; one answered by phone at the store is done.
    let declined = FollowUp { status: "declined", ..FollowUp::new("s3", "declined") };
    declined.put(&pg).await;
    let (s, html) = hq.get(&declined.path()).await;
    assert_eq!(s, StatusCode::GONE, "{html}");
    assert!(html.contains("id=\"survey-closed\""));
    let by_phone = FollowUp { status: "answered", ..FollowUp::new("s3", "phone") };
    by_phone.put(&pg).await;
    let (s, html) = hq.get(&by_phone.path()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("id=\"survey-answered\""));
    // A follow-up record that is not what the contract says: 404, not a crash.
    pg.execute(
        "INSERT INTO hq_records (store_id, record_type, record_id, version, seq, at, body) VALUES ('s3', 'follow_up', 'broken', 1, 999999, 'x', $1::text::jsonb)",
        &[&json!({ "token_hash": servicebay::hq::survey_store::token_hash("broken-token-0123456789"), "questions": "nope" }).to_string()],
    )
    .await
    .unwrap();
    let (s, _) = hq.get("/s/broken-token-0123456789").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(statuses.iter().all(|s| !s.is_server_error()), "never a 5xx: {statuses:?}");

    // The store erases the customer (hq-ingest deletes the follow_up record): the words taken
    // here go too, the scores stay, and the link no longer leads anywhere.
    pg.execute("DELETE FROM hq_records WHERE store_id = 's3' AND record_type = 'follow_up' AND record_id = $1", &[&fu.id]).await.unwrap();
    let r = pg
        .query_one(
            "SELECT a.comment, a.csat, d.payload->'answer'->'comment' = 'null'::jsonb FROM hq_survey_answers a JOIN hq_downlink d ON d.answer_id = a.id
             WHERE a.follow_up_id = $1",
            &[&fu.id],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, Option<String>>(0), r.get::<_, i16>(1), r.get::<_, bool>(2)), (None, 3, true));
    assert_eq!(hq.get(&path).await.0, StatusCode::NOT_FOUND);
    hq.stop().await;
}

// ---- 2. the webhook ----------------------------------------------------------------------------------
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invitations_go_only_with_consent_only_when_due_and_once_despite_failures() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    let (port, calls) = gateway();
    let clock = Clock::system();
    // Two hq-survey processes on one database: still one invitation per follow-up.
    let hq = Survey::start(&rig, "survey-a", &clock, &notify_section(port, 3)).await;
    let hq2 = Survey::start(&rig, "survey-b", &clock, &notify_section(port, 3)).await;
    let pg = rig.db.client().await;
    let later = servicebay::clock::stamp(clock.now() + chrono::Duration::hours(48));

    // Consented to SMS, due in 48 h.
    let due_later =
        FollowUp { channels: vec!["sms", "hq_relay"], phone: Some("13800000001"), due_at: later.clone(), ..FollowUp::new("s4", "later") };
    // Consented to both, already due: one invitation (SMS first), in English.
    let both = FollowUp { channels: vec!["sms", "wechat"], phone: Some("13800000002"), lang: "en", ..FollowUp::new("s4", "both") };
    // No consent: never. (The store sends no phone number without consent; this one is hostile.)
    let none = FollowUp { channels: vec!["hq_relay"], phone: Some("13800000003"), ..FollowUp::new("s4", "none") };
    // Consented, then revoked before it was due: never.
    let revoked =
        FollowUp { channels: vec!["wechat"], phone: Some("13800000004"), due_at: later.clone(), ..FollowUp::new("s4", "revoked") };
    // The gateway always fails for this one: tried max_attempts times, then kept as failed.
    let failing = FollowUp { channels: vec!["sms"], phone: Some("13900000009"), ..FollowUp::new("s4", "failing") };
    // Consented and due, but already answered: not invited.
    let answered = FollowUp { channels: vec!["sms"], phone: Some("13800000005"), status: "answered", ..FollowUp::new("s4", "answered") };
    for f in [&due_later, &both, &none, &revoked, &failing, &answered] {
        f.put(&pg).await;
    }
    let sent_to = |phone: &str| calls.lock().unwrap().iter().filter(|(_, v, s)| v["phone"] == phone && *s == 200).count();
    let calls_to = |phone: &str| calls.lock().unwrap().iter().filter(|(_, v, _)| v["phone"] == phone).count();

    // What is due goes out, through two failures, exactly once.
    wait_until("the due invitation delivered", Duration::from_secs(30), || sent_to("13800000002") == 1).await;
    wait_until("the failing one given up", Duration::from_secs(30), || calls_to("13900000009") == 3).await;
    wait_pg(
        &pg,
        "failed is kept",
        "SELECT COUNT(*) FROM hq_notifications WHERE status = 'failed' AND attempts = 3 AND last_error = 'HTTP 500'",
        &[],
        1,
    )
    .await;
    assert_eq!(sent_to("13800000001"), 0, "not before it is due");

    // The customer withdraws WeChat consent before it is due: a new version without the channel.
    let revoked_v2 = FollowUp { channels: vec![], phone: None, version: 2, ..revoked.clone() };
    revoked_v2.put(&pg).await;
    // Consent withdrawn after an invitation was claimed but before it went out: checked at send.
    let late = FollowUp { channels: vec!["sms"], phone: Some("13800000006"), due_at: later.clone(), ..FollowUp::new("s4", "late") };
    late.put(&pg).await;
    pg.execute(
        "INSERT INTO hq_notifications (id, store_id, follow_up_id, channel, next_attempt_at, link_hash) VALUES ('n-late', 's4', $1, 'sms', now(), 'h-late')",
        &[&late.id],
    )
    .await
    .unwrap();
    FollowUp { channels: vec![], phone: None, version: 2, ..late.clone() }.put(&pg).await;

    // Two days pass.
    clock.advance(chrono::Duration::hours(49));
    wait_until("the later invitation delivered", Duration::from_secs(30), || sent_to("13800000001") == 1).await;
    wait_pg(
        &pg,
        "the late one cancelled",
        "SELECT COUNT(*) FROM hq_notifications WHERE id = 'n-late' AND status = 'cancelled' AND last_error = 'consent withdrawn'",
        &[],
        1,
    )
    .await;
    // A few more rounds of both processes change nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (phone, want) in
        [("13800000001", 1), ("13800000002", 1), ("13800000003", 0), ("13800000004", 0), ("13800000005", 0), ("13800000006", 0)]
    {
        assert_eq!(sent_to(phone), want, "deliveries to {phone}");
    }
    assert_eq!(
        calls_to("13800000003") + calls_to("13800000004") + calls_to("13800000005") + calls_to("13800000006"),
        0,
        "no call at all without consent"
    );

    // Each delivery: its retries share one Idempotency-Key, text and link; SMS was chosen.
    let all = calls.lock().unwrap().clone();
    let mut by_key: BTreeMap<String, Vec<(Value, u16)>> = BTreeMap::new();
    for (k, v, s) in &all {
        by_key.entry(k.clone()).or_default().push((v.clone(), *s));
    }
    let delivered: Vec<&Vec<(Value, u16)>> = by_key.values().filter(|v| v.iter().any(|(_, s)| *s == 200)).collect();
    assert_eq!(delivered.len(), 2);
    for d in &delivered {
        assert_eq!(d.iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![503, 503, 200]);
        // The same message each time (two processes sent these, each naming its own address
        // in the link here; in production they share one base_url): same id, phone, token, text.
        let same = |v: &Value| {
            let url = v["url"].as_str().unwrap_or_default();
            let token = url.rsplit('/').next().unwrap_or_default().to_string();
            (v["id"].clone(), v["channel"].clone(), v["phone"].clone(), token, v["text"].as_str().unwrap_or_default().replace(url, "<url>"))
        };
        assert!(d.windows(2).all(|w| same(&w[0].0) == same(&w[1].0)), "retries send the same message: {d:?}");
        assert_eq!(d[0].0["channel"], "sms");
    }
    let msg = &delivered.iter().find(|d| d[0].0["phone"] == "13800000002").unwrap()[0].0;
    let url = msg["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/s/", hq.base)) || url.starts_with(&format!("{}/s/", hq2.base)), "{url}");
    assert_eq!(msg["text"].as_str().unwrap(), format!("{STORE_NAME}: please rate our service: {url}"));
    let zh = &delivered.iter().find(|d| d[0].0["phone"] == "13800000001").unwrap()[0].0;
    assert!(zh["text"].as_str().unwrap().starts_with(&format!("【{STORE_NAME}】请评价本次服务：https://")));
    assert_eq!(count(&pg, "SELECT COUNT(*) FROM hq_notifications WHERE status = 'sent' AND attempts = 3", &[]).await, 2);
    assert_eq!(
        count(&pg, "SELECT COUNT(*) FROM hq_notifications WHERE follow_up_id = $1", &[&both.id]).await,
        1,
        "SMS only, not WeChat too"
    );

    // The link works: the customer answers through it, recorded as via SMS.
    let path = format!("/s/{}", url.rsplit('/').next().unwrap());
    let (s, html) = hq.get(&path).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("lang=\"en\""));
    let csrf = field(&html, "csrf").unwrap();
    let (s, _, _) = hq.post(&path, answer_form(&csrf, 5, 10, "")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let via: String = pg.query_one("SELECT via FROM hq_survey_answers WHERE follow_up_id = $1", &[&both.id]).await.unwrap().get(0);
    assert_eq!(via, "sms");
    hq2.stop().await;
    hq.stop().await;
}

// ---- retention ---------------------------------------------------------------------------------

/// Each answer of `store` by follow-up: (comment in the row, comment in its downlink payload,
/// csat, nps, fixed answers).
async fn kept(pg: &tokio_postgres::Client, store: &str) -> BTreeMap<String, (Option<String>, Option<String>, i16, i16, String)> {
    pg.query(
        "SELECT a.follow_up_id, a.comment, d.payload -> 'answer' ->> 'comment', a.csat, a.nps, a.fixed::text
         FROM hq_survey_answers a JOIN hq_downlink d ON d.answer_id = a.id WHERE a.store_id = $1",
        &[&store],
    )
    .await
    .expect("answers")
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
    .collect()
}

async fn answer(hq: &Survey, fu: &FollowUp, csat: u8, nps: u8, comment: &str) {
    let csrf = hq.csrf(&fu.token).await;
    let (s, html, _) = hq.post(&fu.path(), answer_form(&csrf, csat, nps, comment)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answers_comment_is_blanked_after_the_retention_period_and_its_scores_stay() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    let clock = Clock::system();
    let days = "comment_retention_days = 30";
    let pg = rig.db.client().await;
    let hq = Survey::start(&rig, "survey", &clock, days).await;
    let old = FollowUp::new("s7", "old");
    old.put(&pg).await;
    answer(&hq, &old, 2, 3, "门还是响，请打 13800000000").await;
    hq.stop().await;

    // 29 days on, a restart (retention runs at start) keeps the comment, in both places.
    clock.advance(chrono::Duration::days(29));
    let hq = Survey::start(&rig, "survey", &clock, days).await;
    let k = kept(&pg, "s7").await;
    let want_old = Some("门还是响，请打 13800000000".to_string());
    assert_eq!((&k[&old.id].0, &k[&old.id].1), (&want_old, &want_old), "not yet 30 days");
    let fresh = FollowUp::new("s7", "fresh");
    fresh.put(&pg).await;
    answer(&hq, &fresh, 5, 10, "很满意").await;
    hq.stop().await;

    // 31 days after the first answer: its comment is gone from the row and from the payload the
    // relay would send; its scores and fixed answers stay for the KPIs. The newer one is untouched.
    clock.advance(chrono::Duration::days(2));
    let hq = Survey::start(&rig, "survey", &clock, days).await;
    let k = kept(&pg, "s7").await;
    assert_eq!(k.len(), 2, "no answer is deleted");
    let (comment, payload, csat, nps, fixed) = &k[&old.id];
    assert_eq!((comment, payload, *csat, *nps), (&None, &None, 2, 3));
    assert!(fixed.contains("f-door") && fixed.contains("\"no\""), "{fixed}");
    let raw = count(&pg, "SELECT COUNT(*) FROM hq_downlink WHERE store_id = 's7' AND payload::text LIKE '%13800000000%'", &[]).await;
    assert_eq!(raw, 0, "the phone number in the comment is nowhere in the downlink");
    let want_fresh = Some("很满意".to_string());
    assert_eq!((&k[&fresh.id].0, &k[&fresh.id].1), (&want_fresh, &want_fresh));
    hq.stop().await;
}

// ---- the command: configuration, exit codes, and logs without secrets -------------------------------

fn servicebay(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_servicebay")).args(args).output().expect("run servicebay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_starts_refuses_bad_config_and_logs_no_tokens_phones_or_comments() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    let (gw_port, calls) = gateway();

    // check-config explains the sections; a config without [survey] is refused with EX_CONFIG.
    let out = servicebay(&["--config", "assets/hq.example.toml", "check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("survey     https://survey.hq.example.com/s/<token>") && text.contains("notify     webhook"),
        "{text}"
    );
    let plain = rig.hq.config("plain", &rig.broker, &rig.pki, &rig.db.conn);
    let out = servicebay(&["--config", plain.to_str().unwrap(), "hq-survey"]);
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[survey]"));
    let bad = rig.root.join("bad.toml");
    std::fs::write(&bad, survey_toml(&rig, "bad", 1, "resend_secs = 0")).unwrap();
    let out = servicebay(&["--config", bad.to_str().unwrap(), "hq-survey"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("survey.resend_secs"));

    // The real command, at debug level.
    let port = common::free_port();
    let cfg_path = rig.root.join("survey-cmd.toml");
    let text =
        survey_toml(&rig, "cmd", port, &notify_section(gw_port, 5)).replace("level = \"info,servicebay=debug\"", "level = \"debug\"");
    std::fs::write(&cfg_path, &text).unwrap();
    let log_path = rig.root.join("survey-cmd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_servicebay"))
        .args(["--config", cfg_path.to_str().unwrap(), "hq-survey"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn hq-survey");
    let base = format!("https://localhost:{port}");
    let cert = rig.root.join("survey-tls/cert.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = loop {
        if cert.exists() {
            let c = client(&cert);
            if c.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                break c;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "hq-survey exited: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
        assert!(Instant::now() < deadline, "hq-survey did not start: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pg = rig.db.client().await;
    let fu = FollowUp { channels: vec!["sms"], phone: Some("13812345678"), ..FollowUp::new("s5", "logs") };
    fu.put(&pg).await;
    let html = c.get(format!("{base}{}", fu.path())).send().await.unwrap().text().await.unwrap();
    let csrf = field(&html, "csrf").expect("csrf");
    let comment = "秘密评论XYZ-不应出现在日志";
    let r = c
        .post(format!("{base}{}", fu.path()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &base)
        .body(answer_form(&csrf, 2, 3, comment))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A second one, so the notifier has something to send (a follow-up answered is not invited).
    let fu2 = FollowUp { channels: vec!["sms"], phone: Some("13812345678"), ..FollowUp::new("s5", "logs2") };
    fu2.put(&pg).await;
    wait_until("the invitation delivered", Duration::from_secs(30), || calls.lock().unwrap().iter().any(|(_, _, s)| *s == 200)).await;
    let link = calls.lock().unwrap()[0].1["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let _ = c.get(format!("{base}/s/{link}")).send().await.unwrap();
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "hq-survey did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "a clean stop");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("survey answered at HQ") && log.contains("invitation sent") && log.contains("/s/:token"), "{log}");
    for secret in [fu.token.as_str(), fu2.token.as_str(), link.as_str(), "13812345678", "秘密评论", &csrf] {
        assert!(!log.contains(secret), "the log holds '{secret}':\n{log}");
    }
}

// ---- 3. end to end: a real store, hq-ingest, the page, the downlink, the store's alert -------------

/// A store daemon syncing to the rig's broker whose QR codes point at the survey service on
/// `survey_port`; started, with its manager's token.
async fn store(rig: &Rig, id: &str, survey_port: u16) -> (common::Daemon, common::Api, String) {
    let mut d = common::hq::store_daemon(&rig.root.join(id), id, &rig.broker, &rig.pki, None);
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str(&format!("\n[follow_up]\nsurvey_url = \"https://localhost:{survey_port}\"\n"));
    std::fs::write(&d.config, text).unwrap();
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let token = api.manager().await;
    (d, api, token)
}

/// A case delivered at the store (seed scenario 2's path); returns it with the QR link the
/// delivery sheet prints, once its follow-up record is in HQ's PostgreSQL.
async fn delivered(api: &common::Api, m: &str, store_id: &str, pg: &tokio_postgres::Client) -> (String, String) {
    let (case, _) = common::workshop::scheduled_case(api, m).await;
    common::workshop::deliver(api, m, &case).await;
    let (s, v) = api.get(&format!("/api/v1/cases/{case}/follow-up"), m).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let link = v["survey_link"].as_str().expect("the QR link").to_string();
    wait_pg(
        pg,
        "the follow-up at HQ (through hq-ingest)",
        "SELECT COUNT(*) FROM hq_records WHERE store_id = $1 AND record_type = 'follow_up' AND body->>'case_id' = $2",
        &[&store_id, &case],
        1,
    )
    .await;
    (case, link)
}

/// The customer opens the printed link on a phone and answers: CSAT `csat`, the first complaint
/// not fixed, the others fixed, NPS `nps`.
async fn answer_in_browser(b: &Browser, link: &str, csat: u8, nps: u8, comment: &str) {
    b.client.goto(link).await.expect("open the QR link");
    let questions = b.js("return document.querySelectorAll('fieldset[id^=q-fixed-]').length").await.as_u64().unwrap();
    assert!(questions >= 1, "the store's findings are asked about");
    b.click(&format!("label[for='csat-{csat}']")).await;
    for q in 0..questions {
        b.click(&format!("label[for='q{q}-{}']", if q == 0 { "no" } else { "yes" })).await;
    }
    b.click(&format!("label[for='nps-{nps}']")).await;
    b.type_into("#comment", comment).await;
    b.click("#survey-submit").await;
    b.wait_js("document.getElementById('survey-thanks')", Duration::from_secs(20)).await;
    assert!(b.exists("#survey-review").await);
}

/// The store's alerts for a case, as its API lists them to customer service.
async fn alerts_for(api: &common::Api, m: &str, case: &str) -> Vec<Value> {
    let (s, v) = api.get("/api/v1/follow-up/alerts", m).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().iter().filter(|a| a["case_id"] == case).cloned().collect()
}

async fn wait_alert(api: &common::Api, m: &str, case: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(a) = alerts_for(api, m, case).await.into_iter().next() {
            return a;
        }
        assert!(Instant::now() < deadline, "no alert for {case} at the store within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn store_count(data: &std::path::Path, sql: &str, case: &str) -> i64 {
    common::db(data).query_row(sql, [case], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_qr_answer_reaches_the_store_as_a_hot_alert_also_after_its_link_was_down() {
    let mut rig = Rig::new().await;
    rig.broker.start();
    rig.worker("w1");
    let clock = Clock::system();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hq = Survey::start_on(&rig, "survey", &clock, "resend_secs = 2", listener).await;
    let pg = rig.db.client().await;
    let b = Browser::start(&hq.base, 390, 844).await;

    // Store A: delivered → follow_up record → PostgreSQL (hq-ingest) → the browser answers CSAT 2
    // on hq-survey → PostgreSQL → MQTT → the store → the hot alert on the store's API.
    let (store_a, api_a, m_a) = store(&rig, "e2e-a", port).await;
    let (case_a, link_a) = delivered(&api_a, &m_a, "e2e-a", &pg).await;
    assert!(link_a.starts_with(&format!("{}/s/", hq.base)), "{link_a}");
    answer_in_browser(&b, &link_a, 2, 3, "开关门还是有异响").await;
    clean(&b, "answer store A's survey").await;
    assert_eq!(answers_of(&pg, "e2e-a").await, 1);
    let alert = wait_alert(&api_a, &m_a, &case_a, Duration::from_secs(60)).await;
    assert_eq!((alert["kind"].as_str(), alert["open"].as_bool()), (Some("hot"), Some(true)), "{alert}");
    let reasons = alert["reasons"].to_string();
    assert!(reasons.contains("low_csat") && reasons.contains("not_fixed"), "{alert}");
    wait_pg(&pg, "store A's ack", "SELECT acked_seq FROM hq_downlink_state WHERE store_id = 'e2e-a'", &[], 1).await;
    let data_a = store_a.data_dir();
    assert_eq!(store_count(&data_a, "SELECT COUNT(*) FROM surveys WHERE case_id = ?1 AND channel = 'qr'", &case_a), 1);

    // Store B: delivered and synced; then its link to HQ goes down (the broker) while the
    // customer answers. The page still takes the answer; it waits in PostgreSQL.
    let (store_b, api_b, m_b) = store(&rig, "e2e-b", port).await;
    let (case_b, link_b) = delivered(&api_b, &m_b, "e2e-b", &pg).await;
    rig.broker.kill9();
    answer_in_browser(&b, &link_b, 1, 0, "").await;
    clean(&b, "answer store B's survey with the link down").await;
    assert_eq!((answers_of(&pg, "e2e-b").await, downlink_of(&pg, "e2e-b").await, acked(&pg, "e2e-b").await), (1, 1, 0));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(alerts_for(&api_b, &m_b, &case_b).await.is_empty(), "nothing can reach the store while its link is down");

    // The link returns: the answer arrives, once, however often HQ sent it.
    rig.broker.start();
    let alert = wait_alert(&api_b, &m_b, &case_b, Duration::from_secs(90)).await;
    assert_eq!(alert["kind"].as_str(), Some("hot"), "{alert}");
    wait_pg(&pg, "store B's ack", "SELECT acked_seq FROM hq_downlink_state WHERE store_id = 'e2e-b'", &[], 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let data_b = store_b.data_dir();
    assert_eq!(store_count(&data_b, "SELECT COUNT(*) FROM surveys WHERE case_id = ?1", &case_b), 1, "exactly one answer at the store");
    assert_eq!(store_count(&data_b, "SELECT COUNT(*) FROM follow_up_alerts WHERE case_id = ?1", &case_b), 1, "exactly one alert");
    assert_eq!(alerts_for(&api_b, &m_b, &case_b).await.len(), 1);
    let sends: i64 = count(&pg, "SELECT sends FROM hq_downlink_state WHERE store_id = 'e2e-b'", &[]).await;
    eprintln!("store B: the answer was sent {sends} time(s) and applied once");
    // Store A was untouched by B's traffic: still one answer, one alert.
    assert_eq!(store_count(&data_a, "SELECT COUNT(*) FROM surveys WHERE case_id = ?1", &case_a), 1);
    assert_eq!(alerts_for(&api_a, &m_a, &case_a).await.len(), 1);
    b.close().await;
    hq.stop().await;
}
