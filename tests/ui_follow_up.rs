//! Seed scenario 3 on the tablet, in a real browser (Debian Chromium through chromedriver) against
//! the real stack over TLS: a case brought to `delivered` through the API (scenario 2's steps);
//! then customer service, by taps, records the customer's consent at delivery (SMS and WeChat,
//! then WeChat withdrawn) and checks the printed delivery sheet's survey QR code; watches the task
//! go upcoming → due → overdue as the daemon's clock moves; makes the call (a no-answer attempt
//! first), is refused a 3,000-character comment and a control character with clear messages, and
//! records CSAT 2, one problem "未解决", NPS 3 and a comment: a hot alert with its summary and the
//! review invitation. On 回访告警 the alert counts down its SLA, is escalated to the manager after
//! 72 h, is taken and resolved with a note (a new case opened from it): the case is `closed`.
//! Roles: a technician gets 403 on every follow-up screen.
//!
//! The error collector of `tests/ui_browser.rs` runs at each step: no console error and no 5xx.
//! Screenshots go to `<target>/ui-screenshots/8x-*.png` (1024×768, then 768×1024).

mod common;

use std::time::{Duration, Instant};

use common::browser::{clean, login, server_errors, Browser};
use reqwest::StatusCode;
use serde_json::json;

/// HQ's survey page (the QR code) and a store open around the clock, so that the due time is
/// exactly 48 h after delivery whatever the hour the test runs.
const EXTRA: &str = "\n[follow_up]\nsurvey_url = \"https://survey.example\"\nopens = \"00:00\"\ncloses = \"23:59\"\n";

/// Submits `css` and waits for the next page to show its flash message: (ok, text).
async fn submit_and_wait(b: &Browser, css: &str) -> (bool, String) {
    b.js("window.__sbOld = true").await;
    b.find(css).await;
    b.js(&format!("document.querySelector({css:?}).scrollIntoView({{ block: 'center' }})")).await;
    b.click(css).await;
    b.wait_js(
        "!window.__sbOld && document.readyState === 'complete' && document.querySelector('#flash-ok, #flash-err, #error-message')",
        Duration::from_secs(60),
    )
    .await;
    let ok = b.exists("#flash-ok").await;
    let text = b
        .text(if ok {
            "#flash-ok"
        } else if b.exists("#flash-err").await {
            "#flash-err"
        } else {
            "#error-message"
        })
        .await;
    (ok, text)
}

async fn submit_ok(b: &Browser, css: &str, step: &str) -> String {
    let (ok, msg) = submit_and_wait(b, css).await;
    assert!(ok, "{step}: {msg}");
    msg
}

async fn strings(b: &Browser, js: &str) -> Vec<String> {
    b.js(js).await.as_array().unwrap().iter().map(|v| v.as_str().unwrap_or("").to_string()).collect()
}

async fn screenshot_at(b: &Browser, css: &str, name: &str) {
    b.js(&format!("document.querySelector({css:?})?.scrollIntoView({{ block: 'start' }}); window.scrollBy(0, -64)")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.screenshot(name).await;
}

async fn fits(b: &Browser, what: &str) {
    let overflow = b.js("return document.documentElement.scrollWidth > window.innerWidth + 1").await;
    assert_eq!(overflow, json!(false), "{what} is wider than the screen");
}

/// The queue group (upcoming, due, overdue, done) that lists the case.
async fn queue_state(b: &Browser, case: &str) -> String {
    b.go("/follow-ups").await;
    b.attr(&format!("#task-{case}"), "data-state").await.unwrap_or_default()
}

/// Clicks `css` centred on the screen, so the sticky top bar never covers it.
async fn tap(b: &Browser, css: &str) {
    b.find(css).await;
    b.js(&format!("document.querySelector({css:?}).scrollIntoView({{ block: 'center' }})")).await;
    b.click(css).await;
}

/// Fills the answer form: CSAT, one "fixed" answer per question (`no` for the first), NPS.
async fn fill_answer(b: &Browser, csat: u8, nps: u8) -> Vec<String> {
    let findings = strings(b, "return [...document.querySelectorAll('.fixed-q')].map(e => e.dataset.finding)").await;
    assert!(!findings.is_empty(), "the call asks whether the case's problems are fixed");
    tap(b, &format!("#csat-{csat}")).await;
    for (i, f) in findings.iter().enumerate() {
        tap(b, &format!("#fixed-{f}-{}", if i == 0 { "no" } else { "yes" })).await;
    }
    tap(b, &format!("#nps-{nps}")).await;
    findings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_three_through_the_tablet() {
    let started = Instant::now();
    let srv = common::Server::start_with(EXTRA).await;
    let api = srv.api();
    let manager = api.manager().await;
    let (case, _) = common::workshop::scheduled_case(&api, &manager).await;
    common::workshop::deliver(&api, &manager, &case).await;
    let (_, cs) = api.user(&manager, "cs1", "customer_service").await;
    api.user(&manager, "li", "technician").await;
    let (s, v) = api.get(&format!("/api/v1/cases/{case}"), &cs).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("delivered")), "{v}");
    let (_, text) = api.get("/api/v1/follow-up/consent-text", &cs).await;
    let version = text["current"]["version"].as_str().expect("a consent text").to_string();

    let b = Browser::start(&srv.base, 1024, 768).await;
    let _ = std::fs::remove_file(b.shots.join("failure.png"));

    // --- Customer service: the follow-up screens lead the navigation; the task is upcoming.
    login(&b, "cs1").await;
    let nav = strings(&b, "return [...document.querySelectorAll('.topbar nav a')].map(a => a.getAttribute('href'))").await;
    assert_eq!(nav.get(..2), Some(&["/follow-ups".to_string(), "/follow-up/alerts".to_string()][..]), "{nav:?}");
    b.click("a[href='/follow-ups']").await;
    b.find(&format!("#group-upcoming #task-{case}")).await;
    let row = b.text(&format!("#task-{case}")).await;
    assert!(row.contains("王女士") && row.contains("右前门刮痕"), "the row names the customer and the complaint: {row}");
    b.screenshot("80-queue-upcoming").await;
    fits(&b, "the queue").await;
    clean(&b, "queue").await;

    // --- Delivery: the consent as shown (SMS and WeChat), the sheet with the QR code.
    b.go(&format!("/cases/{case}")).await;
    b.click(&format!("a[href='/cases/{case}/delivery']")).await;
    b.find("#consent-form").await;
    assert_eq!(b.text("#consent-version").await, version, "the current consent text is shown with its version");
    assert_eq!(b.attr("#text-version", "value").await.as_deref(), Some(version.as_str()), "the version shown is submitted");
    let consent = b.text("#consent-text").await;
    assert!(consent.contains("短信 SMS") && consent.contains("微信 WeChat") && !consent.contains("{channels}"), "{consent}");
    assert!(b.exists("#no-consents").await, "no consent yet");
    tap(&b, "#ch-sms").await;
    tap(&b, "#ch-wechat").await;
    screenshot_at(&b, "#consent", "81-consent").await;
    submit_ok(&b, "#consent-save", "record consent").await;
    for ch in ["sms", "wechat"] {
        assert_eq!(b.attr(&format!("#consent-list tr[data-channel={ch}]"), "data-live").await.as_deref(), Some("true"), "{ch}");
    }
    // The customer changes their mind about WeChat.
    submit_ok(&b, "#revoke-wechat", "withdraw wechat").await;
    assert_eq!(b.attr("#consent-list tr[data-channel=wechat]", "data-live").await.as_deref(), Some("false"));
    assert_eq!(b.attr("#consent-list tr[data-channel=sms]", "data-live").await.as_deref(), Some("true"));
    assert!(b.text("#consent-list tr[data-channel=wechat] .revoked").await.contains("cs1"), "who withdrew it is shown");
    let sheet = b.text("#sheet-consent").await;
    assert!(sheet.contains("短信 SMS") && !sheet.contains("微信 WeChat"), "the sheet prints what the customer agreed to: {sheet}");
    // The survey QR code: a PNG whose content is the link printed below it.
    let url = b.text("#survey-url").await;
    assert!(url.starts_with("https://survey.example/s/") && url.len() > 40, "{url}");
    let src = b.attr("#qr", "src").await.expect("the QR image");
    let png = {
        use base64::Engine;
        let b64 = src.strip_prefix("data:image/png;base64,").expect("a PNG data URI");
        base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")
    };
    let img = image::load_from_memory(&png).expect("the QR code is a PNG");
    let codes = servicebay::vision::codes::decode(&img);
    assert!(codes.iter().any(|c| c.text == url), "the QR code reads as the printed link: {codes:?}");
    let ok = b.js("const i = document.querySelector('#qr'); return i.complete && i.naturalWidth > 0").await;
    assert_eq!(ok, json!(true), "the browser shows the QR code");
    screenshot_at(&b, "#sheet", "82-delivery-sheet").await;
    fits(&b, "the delivery page").await;
    clean(&b, "delivery").await;
    let (_, view) = api.get(&format!("/api/v1/cases/{case}/follow-up"), &cs).await;
    let live: Vec<&str> = view["consents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["revoked_at"].is_null() && c["granted"] == true)
        .filter_map(|c| c["channel"].as_str())
        .collect();
    assert_eq!(live, vec!["sms"], "the store keeps exactly the live consent: {view}");

    // --- The clock moves: due after 48 h, overdue once the SLA has passed as well.
    assert_eq!(queue_state(&b, &case).await, "upcoming");
    srv.clock.advance(chrono::Duration::hours(49));
    assert_eq!(queue_state(&b, &case).await, "due");
    b.find(&format!("#group-due #task-{case}")).await;
    srv.clock.advance(chrono::Duration::hours(24));
    assert_eq!(queue_state(&b, &case).await, "overdue");
    screenshot_at(&b, "#group-overdue", "83-queue-overdue").await;
    clean(&b, "overdue").await;

    // --- The call: the case, the script, the questions.
    tap(&b, &format!("#task-{case} a.btn")).await;
    b.find("#answer-form").await;
    assert_eq!(b.attr("#call-head", "data-state").await.as_deref(), Some("overdue"));
    assert_eq!(b.attr("#script", "data-from-llm").await.as_deref(), Some("false"), "no model in this rig: the template");
    assert_eq!(b.text("#script-source").await, "标准模板");
    let intro = b.text("#intro").await;
    assert!(intro.contains("右前门刮痕") && intro.contains("王女士"), "the intro names the customer and the complaint: {intro}");
    assert!(b.text("#closing").await.contains("评价"), "the script closes with the review invitation");
    let legends = strings(&b, "return [...document.querySelectorAll('.fixed-q legend')].map(e => e.textContent)").await;
    assert!(!legends.is_empty() && legends.iter().all(|l| l.contains("解决了吗？")), "{legends:?}");
    let script_q = b.js("return document.querySelectorAll('#script-questions li').length").await;
    assert_eq!(script_q, json!(legends.len() + 3), "CSAT, one per problem, NPS, anything else");
    assert!(b.text("#phone").await.contains("13900001111"), "the number to call");
    screenshot_at(&b, "#script", "84-call-script").await;
    fits(&b, "the call page").await;

    // Nobody answers the first time.
    b.type_into("#attempt-note", "无人接听，下午再打").await;
    let msg = submit_ok(&b, "#attempt-no_answer", "no answer").await;
    assert!(msg.contains("已记录"), "{msg}");
    assert!(b.text("#attempt-count").await.starts_with('1'), "one attempt");
    clean(&b, "attempt").await;

    // Hostile input: 3,000 characters (past the form's own limit), then a control character.
    fill_answer(&b, 2, 3).await;
    b.js("const t = document.querySelector('#comment'); t.removeAttribute('maxlength'); t.value = '门'.repeat(3000);").await;
    let (ok, msg) = submit_and_wait(&b, "#save-answer").await;
    assert!(!ok && msg.contains("2000"), "a 3,000-character comment is refused, saying the limit: {msg}");
    assert!(b.exists("#answer-form").await && b.exists("#no-answers").await, "nothing was recorded");
    clean(&b, "long comment").await;
    fill_answer(&b, 2, 3).await;
    b.js("document.querySelector('#comment').value = '门还是响\\u0007';").await;
    let (ok, msg) = submit_and_wait(&b, "#save-answer").await;
    assert!(!ok && msg.contains("输入有误") && msg.contains("客户的原话"), "a control character is refused, naming the field: {msg}");
    let errors = b.errors().await;
    assert!(errors.iter().all(|e| e.contains("400")), "only the refused form's 400: {errors:?}");
    b.screenshot("85-call-refused").await;

    // The answer: CSAT 2, the first problem not fixed, NPS 3, the customer's words.
    b.go(&format!("/cases/{case}/follow-up")).await;
    assert!(b.exists("#no-answers").await, "still nothing recorded");
    let findings = fill_answer(&b, 2, 3).await;
    b.type_into("#comment", "右前门关门还是有异响，而且等了很久才交车").await;
    screenshot_at(&b, "#answer", "86-call-answer").await;
    let msg = submit_ok(&b, "#save-answer", "save the answer").await;
    assert!(msg.contains("告警"), "a hot answer says it raised an alert: {msg}");
    assert!(!b.exists("#answer-form").await, "the follow-up is done");
    assert_eq!(b.text(".survey[data-hot=true] .csat").await, "2");
    assert_eq!(b.text(".survey[data-hot=true] .nps").await, "3");
    assert!(b.text(".survey .fixed-list li[data-answer=no]").await.contains("未解决"));
    assert_eq!(b.js("return document.querySelectorAll('.survey .fixed-list li').length").await, json!(findings.len()));
    assert!(b.text("#review-invite").await.contains("评价"), "every respondent is invited to review");
    let alert = b.attr("#case-alerts .alert-card[data-kind=hot]", "data-alert").await.expect("a hot alert");
    let summary = b.text(&format!("#alert-{alert} .alert-summary")).await;
    assert!(!summary.trim().is_empty(), "the alert has a summary");
    assert!(!b.text(&format!("#alert-{alert} .alert-cat")).await.trim().is_empty(), "and a category");
    assert!(b.text(&format!("#alert-{alert}")).await.contains("问题未解决"), "its reasons are listed");
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("follow_up"));
    screenshot_at(&b, "#recorded", "87-call-recorded").await;
    clean(&b, "answered").await;

    // --- 回访告警: the SLA, escalation after 72 h, respond, resolve.
    tap(&b, "#to-alerts").await;
    b.find(&format!("#hot-alerts #alert-{alert}")).await;
    assert!(b.text(&format!("#sla-{alert}")).await.contains("内需首次响应"), "the SLA counts down");
    assert_eq!(b.attr(&format!("#alert-{alert}"), "data-escalated").await.as_deref(), Some("false"));
    screenshot_at(&b, "#hot-alerts", "88-alerts").await;
    fits(&b, "the alert queue").await;
    // The countdown is live: the server's clock moved to a few seconds before the SLA ends, and the
    // open page turns the badge to overdue by itself, without a reload.
    let sla = format!("#sla-{alert}");
    let due_in: i64 = b.attr(&sla, "data-due-in").await.and_then(|s| s.parse().ok()).expect("the seconds left on the badge");
    assert!(due_in > 23 * 3600 && due_in <= 24 * 3600, "a 24-hour SLA: {due_in} s");
    srv.clock.advance(chrono::Duration::seconds(due_in - 8));
    b.go("/follow-up/alerts").await;
    let before = b.text(&sla).await;
    assert!(before.contains("0 小时 0 分 内需首次响应"), "seconds left: {before}");
    b.wait_js(&format!("document.querySelector('{sla}').textContent.includes('已超时')"), Duration::from_secs(30)).await;
    assert!(b.exists(&format!("{sla}.sla-over")).await, "and looks overdue");
    srv.clock.advance(chrono::Duration::hours(73));
    b.go("/follow-up/alerts").await;
    assert_eq!(b.attr(&format!("#alert-{alert}"), "data-escalated").await.as_deref(), Some("true"), "escalated to the manager");
    assert!(b.text(&format!("#escalated-{alert}")).await.contains("店长"));
    assert!(b.text(&format!("#sla-{alert}")).await.contains("已超时"), "the SLA shows overdue");
    assert_eq!(b.attr(&format!("#alert-{alert}"), "data-overdue").await.as_deref(), Some("true"));
    screenshot_at(&b, "#hot-alerts", "89-alerts-escalated").await;
    clean(&b, "escalated").await;

    let msg = submit_ok(&b, &format!("#alert-{alert} button[data-action=respond]"), "respond").await;
    assert!(msg.contains("接手"), "{msg}");
    assert!(b.text(&format!("#alert-{alert} .responded")).await.contains("cs1"));
    assert!(!b.exists(&format!("#sla-{alert}")).await, "the first response stops the SLA clock");
    // A resolution needs a note: the server says so even when the page's check is bypassed.
    b.js(&format!("document.querySelector('#note-{alert}').removeAttribute('required')")).await;
    let (ok, msg) = submit_and_wait(&b, &format!("#alert-{alert} button[data-action=resolve]")).await;
    assert!(!ok && msg.contains("处理结果"), "{msg}");
    b.type_into(&format!("#note-{alert}"), "已致电道歉，约客户周三返厂复查右前门异响").await;
    tap(&b, &format!("#open-case-{alert}")).await;
    let msg = submit_ok(&b, &format!("#alert-{alert} button[data-action=resolve]"), "resolve").await;
    assert!(msg.contains("新建工单"), "{msg}");
    b.find(&format!("#resolved-alerts #alert-{alert}")).await;
    assert!(b.text(&format!("#alert-{alert} .resolution")).await.contains("返厂复查"));
    let new_case = b.attr(&format!("#new-case-{alert}"), "href").await.expect("a link to the new case");
    assert!(b.exists("#no-hot").await, "no open alert left");
    screenshot_at(&b, "#resolved-alerts", "90-alert-resolved").await;
    clean(&b, "resolved").await;
    let (_, c) = api.get(&format!("/api/v1/cases/{case}"), &cs).await;
    assert_eq!(c["status"], "closed", "the case closes once its hot alert is resolved");
    b.go(&new_case).await;
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("reported"), "the new case starts at reported");
    assert_eq!(queue_state(&b, &case).await, "done");

    // --- The same screens in English, then on a portrait tablet.
    b.go("/follow-up/alerts").await;
    b.click("a[href^='/lang/en']").await;
    b.wait_js("document.documentElement.lang === 'en' && document.querySelector('.page-title')", Duration::from_secs(10)).await;
    assert_eq!(b.text(".page-title").await, "Follow-up alerts");
    b.screenshot("91-alerts-en").await;
    b.click("a[href^='/lang/zh']").await;
    b.wait_js("document.documentElement.lang === 'zh-CN'", Duration::from_secs(10)).await;
    b.viewport(768, 1024).await;
    for (path, name) in [
        ("/follow-ups".to_string(), "92-queue-portrait"),
        (format!("/cases/{case}/follow-up"), "93-call-portrait"),
        (format!("/cases/{case}/delivery"), "94-delivery-portrait"),
        ("/follow-up/alerts".to_string(), "95-alerts-portrait"),
    ] {
        b.go(&path).await;
        b.find(".page-title").await;
        fits(&b, &path).await;
        b.screenshot(name).await;
    }
    clean(&b, "portrait").await;
    b.click("#logout").await;
    b.find("#login-form").await;

    // --- Roles: a technician has no follow-up screen; the URLs and the actions answer 403.
    login(&b, "li").await;
    let nav = strings(&b, "return [...document.querySelectorAll('.topbar nav a')].map(a => a.getAttribute('href'))").await;
    assert!(!nav.iter().any(|h| h.starts_with("/follow-up")), "{nav:?}");
    b.go("/follow-ups").await;
    b.find("#error-message").await;
    let errors = b.errors().await;
    assert!(errors.iter().all(|e| e.contains("403")), "{errors:?}");
    let c = b.client.get_named_cookie("sb_session").await.expect("session cookie");
    let (cookie, csrf) = (format!("sb_session={}", c.value()), servicebay::ui::csrf_of(c.value()));
    for url in
        ["/follow-ups".to_string(), "/follow-up/alerts".to_string(), format!("/cases/{case}/follow-up"), format!("/cases/{case}/delivery")]
    {
        let r = api.client.get(format!("{}{url}", api.base)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
        assert!(r.text().await.unwrap().contains("id=\"error-message\""), "{url} answers a page");
    }
    for url in [format!("/cases/{case}/follow-up/answer"), format!("/follow-up/alerts/{alert}/resolve"), format!("/cases/{case}/consent")] {
        let r = api
            .form_client()
            .post(format!("{}{url}", api.base))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("note", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {url}");
    }

    assert_eq!(server_errors(&api).await, 0, "the daemon answered 5xx during the flow");
    b.close().await;
    println!("scenario 3 on the tablet: {:.0} s", started.elapsed().as_secs_f64());
}
