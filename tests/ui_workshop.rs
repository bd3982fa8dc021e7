//! Seed scenario 2 on the tablet, in a real browser (Debian Chromium through chromedriver) against
//! the real stack over TLS with the real YOLOv8n: a case booked through the API; then by taps the
//! advisor shoots the 15-checkpoint baseline, notes existing damage and the customer signs; the
//! technician starts the job, clocks each labour line, scans a part label, shoots the after photos
//! over the see-through before photo (one checkpoint left out) and hands the car to QC; the manager
//! looks at the bay board, corrects a clock entry and settles an anomaly; the inspector compares,
//! confirms the "not shot" alert and signs a pass: the case is delivered and the report's PDF reads.
//! Roles: a technician cannot open the anomaly queue, an inspector cannot start a job.
//!
//! The error collector of `tests/ui_browser.rs` runs here too: no console error and no 5xx.
//! Screenshots go to `<target>/ui-screenshots/5x–7x-*.png`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::{clean, server_errors, Browser};
use common::Api;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SEED: [&str; 3] = ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"];

async fn ui_login(b: &Browser, user: &str) {
    b.go("/login").await;
    b.type_into("#username", user).await;
    b.type_into("#password", &format!("{user}-Permanent-Pw1")).await;
    b.click("#login-submit").await;
    b.find("a[href='/today'].active").await;
}

async fn logout(b: &Browser) {
    b.click("#logout").await;
    b.find("#login-form").await;
}

/// Submits `css` and waits for the next page to show its flash message: (ok, text).
async fn submit_and_wait(b: &Browser, css: &str) -> (bool, String) {
    b.js("window.__sbOld = true").await;
    // Centred, so the sticky top bar never covers what is tapped.
    b.find(css).await;
    b.js(&format!("document.querySelector({css:?}).scrollIntoView({{ block: 'center' }})")).await;
    b.click(css).await;
    b.wait_js(
        "!window.__sbOld && document.readyState === 'complete' && document.querySelector('#flash-ok, #flash-err')",
        Duration::from_secs(60),
    )
    .await;
    let ok = b.exists("#flash-ok").await;
    let text = b.text(if ok { "#flash-ok" } else { "#flash-err" }).await;
    (ok, text)
}

async fn submit_ok(b: &Browser, css: &str, step: &str) {
    let (ok, msg) = submit_and_wait(b, css).await;
    assert!(ok, "{step}: {msg}");
}

async fn nav(b: &Browser) -> Vec<String> {
    b.js("return [...document.querySelectorAll('.topbar nav a')].map(a => a.getAttribute('href'))")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn strings(b: &Browser, js: &str) -> Vec<String> {
    b.js(js).await.as_array().unwrap().iter().map(|v| v.as_str().unwrap_or("").to_string()).collect()
}

async fn status(b: &Browser) -> String {
    b.attr("#case-status", "data-status").await.unwrap_or_default()
}

/// The browser's session as a cookie header and its CSRF token (for the checks over plain HTTPS).
async fn session(b: &Browser) -> (String, String) {
    let c = b.client.get_named_cookie("sb_session").await.expect("session cookie");
    (format!("sb_session={}", c.value()), servicebay::ui::csrf_of(c.value()))
}

async fn screenshot_at(b: &Browser, css: &str, name: &str) {
    b.js(&format!("document.querySelector({css:?})?.scrollIntoView({{ block: 'start' }}); window.scrollBy(0, -64)")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.screenshot(name).await;
}

/// A case brought to `scheduled` through the API: customer and vehicle, the customer's words,
/// photos waived, the estimate approved, a bay booked.
async fn scheduled_case(api: &Api, advisor: &str) -> String {
    let (s, c) = api.post("/api/v1/customers", advisor, json!({ "name": "王女士", "phone": "13900001111" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let vehicle = json!({ "customer_id": c["id"], "plate": "京A12345", "vin": "LSVAB4BR7JN123456", "make": "大众", "model": "帕萨特", "mileage_km": 45210 });
    let (s, v) = api.post("/api/v1/vehicles", advisor, vehicle).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, k) = api.post("/api/v1/cases", advisor, json!({ "customer_id": c["id"], "vehicle_id": v["id"], "summary": SEED[0] })).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    for text in SEED {
        let (s, m) = api.post(&format!("/api/v1/cases/{id}/messages"), advisor, json!({ "text": text })).await;
        assert_eq!(s, StatusCode::OK, "{m}");
    }
    let (s, w) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), advisor, json!({ "reason": "车间基线会拍照" })).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), advisor, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let approval = json!({ "estimate_version": e["version"], "approved_by": "王女士", "channel": "tablet" });
    let (s, a) = api.post(&format!("/api/v1/cases/{id}/approval"), advisor, approval).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let slot = e["plan"]["slots"][0]["start"].as_str().expect("a free slot").to_string();
    let (s, b) = api.post(&format!("/api/v1/cases/{id}/appointment"), advisor, json!({ "start": slot })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    id
}

/// Chooses `file` in the input and submits its form; the page comes back with its flash message.
async fn upload(b: &Browser, input: &str, button: &str, file: &Path, step: &str) {
    b.find(input).await.send_keys(file.to_str().unwrap()).await.expect("choose file");
    submit_ok(b, button, step).await;
}

/// Waits until `n` cards of `phase` passed the quality gate (htmx polls the pending ones).
async fn wait_passed(b: &Browser, phase: &str, n: usize) {
    b.wait_js(
        &format!("document.querySelectorAll('.shot-card[data-phase={phase}][data-status=ok]').length === {n}"),
        Duration::from_secs(300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_two_through_the_tablet() {
    let started = Instant::now();
    let Some((srv, src, _models)) = common::yolo_server().await else {
        panic!("the detector weights are required (scripts/fetch-models.sh)")
    };
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    api.user(&manager, "li", "technician").await;
    api.user(&manager, "zhou", "qc_inspector").await;
    let case = scheduled_case(&api, &advisor).await;
    let workshop = format!("/cases/{case}/workshop");
    let bus = src.join("bus.jpg");
    let tmp = tempfile::tempdir().unwrap();

    let b = Browser::start(&srv.base, 1280, 800).await;
    let _ = std::fs::remove_file(b.shots.join("failure.png"));

    // --- The advisor at drop-off: the baseline, existing damage, the customer's signature.
    ui_login(&b, "wang").await;
    b.go(&format!("/cases/{case}")).await;
    b.click(&format!("a[href='{workshop}']")).await;
    b.find("#before-shots").await;
    let checkpoints =
        strings(&b, "return [...document.querySelectorAll('.shot-card[data-phase=before]')].map(e => e.dataset.checkpoint)").await;
    assert_eq!(checkpoints.len(), 15, "{checkpoints:?}");
    assert!(!b.exists("#sign-form").await, "no signature before the baseline is complete");
    b.screenshot("50-baseline").await;
    clean(&b, "baseline").await;
    for cp in &checkpoints {
        upload(&b, &format!("#file-before-{cp}"), &format!("#send-before-{cp}"), &bus, &format!("before {cp}")).await;
        assert!(b.exists(&format!("#cp-before-{cp}")).await);
    }
    wait_passed(&b, "before", 15).await;
    clean(&b, "baseline shots").await;
    b.go(&workshop).await;
    assert!(b.text("#baseline-progress").await.contains("15 / 15"));
    screenshot_at(&b, "#cp-before-rear_right", "51-baseline-shot").await;

    b.find("#mark-checkpoint option[value=front_right]").await.click().await.unwrap();
    b.find("#mark-part option[value=door]").await.click().await.unwrap();
    b.find("#mark-damage option[value=dent]").await.click().await.unwrap();
    b.type_into("#mark-note", "客户确认：右前门小凹陷，来店前已有").await;
    submit_ok(&b, "#mark-send", "mark").await;
    assert!(b.text("#mark-list").await.contains("凹陷"), "the mark is listed");

    b.find("#sign-form").await;
    b.draw_on("#signature", &[(-120.0, 20.0), (-60.0, -30.0), (0.0, 25.0), (60.0, -20.0), (120.0, 10.0)]).await;
    screenshot_at(&b, "#marks", "52-baseline-sign").await;
    submit_ok(&b, "#sign-baseline", "sign the baseline").await;
    assert!(b.text("#signed").await.contains("王女士"), "the signature is recorded");
    assert!(!b.exists("#start-job").await, "an advisor does not start the job");
    let (_, w) = api.get(&format!("/api/v1/cases/{case}/workshop"), &advisor).await;
    assert_eq!(w["baseline"]["signoff"]["has_signature"], true, "{}", w["baseline"]);
    assert_eq!(w["baseline"]["marks"].as_array().unwrap().len(), 1);
    clean(&b, "signed").await;
    logout(&b).await;

    // --- The technician: my bay, start, the clock, the parts scan, in-repair and after photos.
    ui_login(&b, "li").await;
    let links = nav(&b).await;
    assert!(links.contains(&"/bay".into()) && !links.contains(&"/manager/anomalies".into()) && !links.contains(&"/qc".into()), "{links:?}");
    b.click("a[href='/bay']").await;
    b.find(&format!("#waiting tr[data-case='{case}']")).await;
    b.screenshot("53-my-bay").await;
    // The anomaly queue is the manager's: the page answers 403 (the one console error on purpose).
    b.go("/manager/anomalies").await;
    b.find("#error-message").await;
    let errors = b.errors().await;
    assert!(errors.iter().all(|e| e.contains("403")), "{errors:?}");
    let (cookie, _) = session(&b).await;
    let r = api.client.get(format!("{}/manager/anomalies", api.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a technician cannot open the anomaly queue");

    b.go("/bay").await;
    b.click(&format!("#waiting tr[data-case='{case}'] a")).await;
    submit_ok(&b, "#start-job", "start the job").await;
    assert_eq!(status(&b).await, "in_repair");
    let labour = strings(&b, "return [...document.querySelectorAll('#lines tr[data-kind=labour]')].map(e => e.dataset.line)").await;
    assert!(!labour.is_empty(), "the work order has labour lines");
    for (i, l) in labour.iter().enumerate() {
        let row = format!("#lines tr[data-line='{l}']");
        submit_ok(&b, &format!("{row} button[data-action=start]"), "clock start").await;
        assert_eq!(b.attr(&row, "data-status").await.as_deref(), Some("active"));
        assert!(b.text(&format!("{row} .clocked-on")).await.contains("li"), "who is clocked on is shown");
        if i == 0 {
            screenshot_at(&b, "#bay", "54-clock-running").await;
        }
        submit_ok(&b, &format!("{row} button[data-action=finish]"), "clock finish").await;
        assert_eq!(b.attr(&row, "data-status").await.as_deref(), Some("done"));
    }
    clean(&b, "clock").await;

    // The part's label: the EAN-13 of DOOR-SHELL-RF's OEM box.
    let label = servicebay::vision::codes::encode(servicebay::vision::codes::Symbology::Ean13, "6901234000016", 3).expect("encode");
    let label_path = tmp.path().join("label.png");
    label.save(&label_path).unwrap();
    upload(&b, "#part-file", "#part-send", &label_path, "part scan").await;
    let shown = b.text("#scan-result").await;
    assert!(shown.contains("DOOR-SHELL-RF") && shown.contains("原厂"), "the scan shows the part: {shown}");
    assert!(b.text("#fitted").await.contains("DOOR-SHELL-RF"));
    screenshot_at(&b, "#parts", "55-part-scan").await;
    upload(&b, "#in-repair-file", "#in-repair-send", &bus, "in-repair photo").await;
    b.find("#in-repair .photo img").await;
    clean(&b, "scan").await;

    // After photos over the see-through before photo: 14 of 15, one left out on purpose.
    let (skipped, shoot) = checkpoints.split_last().unwrap();
    let first = &shoot[0];
    b.find(&format!("#file-after-{first}")).await.send_keys(bus.to_str().unwrap()).await.unwrap();
    b.wait_js(
        &format!("document.querySelector('#cp-after-{first} .ghost-stage[data-mode=preview] img.ghost')?.complete && getComputedStyle(document.querySelector('#cp-after-{first} .ghost')).opacity === '0.4'"),
        Duration::from_secs(10),
    )
    .await;
    screenshot_at(&b, &format!("#cp-after-{first}"), "56-after-overlay-preview").await;
    // The live camera (Chromium's fake device) with the before photo over it; cancelled here.
    b.click(&format!("#cp-after-{first} .shot-form button[type=button]")).await;
    b.wait_js(
        &format!("document.querySelector('#cp-after-{first} .ghost-stage[data-mode=live] video')?.videoWidth > 0"),
        Duration::from_secs(20),
    )
    .await;
    screenshot_at(&b, &format!("#cp-after-{first}"), "57-after-overlay-live").await;
    b.click(&format!("#cp-after-{first} .ghost-stage .controls .btn:not(.btn-primary)")).await;
    submit_ok(&b, &format!("#send-after-{first}"), "after shot").await;
    for cp in &shoot[1..] {
        upload(&b, &format!("#file-after-{cp}"), &format!("#send-after-{cp}"), &bus, &format!("after {cp}")).await;
    }
    wait_passed(&b, "after", 14).await;
    b.go(&workshop).await;
    assert_eq!(b.attr(&format!("#cp-after-{skipped}"), "data-status").await.as_deref(), Some("missing"));
    screenshot_at(&b, "#after", "58-after-shots").await;
    clean(&b, "after shots").await;
    submit_ok(&b, "#finish-job", "finish").await;
    assert_eq!(status(&b).await, "qc");
    b.find("#to-qc").await;
    clean(&b, "finished").await;
    logout(&b).await;

    // --- The manager while the car is at QC: the bay board, a clock correction, the anomalies.
    ui_login(&b, "manager").await;
    let links = nav(&b).await;
    assert!(links.contains(&"/manager/bay".into()) && links.contains(&"/manager/anomalies".into()), "{links:?}");
    b.screenshot("59-manager-nav").await;
    b.click("a[href='/manager/bay']").await;
    b.find(&format!("#col-at_qc .job[data-case='{case}']")).await;
    b.screenshot("60-bay-board").await;
    b.go(&workshop).await;
    let entry = b.attr("#clock-entries tr[data-entry]", "data-entry").await.unwrap();
    let row = format!("#clock-entries tr[data-entry='{entry}']");
    b.click(&format!("{row} summary")).await;
    let (from, to) = (chrono::Local::now() - chrono::Duration::hours(3), chrono::Local::now() - chrono::Duration::hours(2));
    let fmt = |d: chrono::DateTime<chrono::Local>| d.format("%Y-%m-%dT%H:%M:%S").to_string();
    b.js(&format!(
        "const r = document.querySelector(\"{row}\"); r.querySelector('[name=started_at]').value = '{}'; r.querySelector('[name=ended_at]').value = '{}';",
        fmt(from),
        fmt(to)
    ))
    .await;
    b.type_into(&format!("{row} input[name=reason]"), "忘记暂停，按维修记录更正").await;
    screenshot_at(&b, "#clock", "61-clock-correction").await;
    submit_ok(&b, &format!("{row} form button"), "clock correction").await;
    assert!(b.text(&format!("#clock-entries tr[data-entry='{entry}']")).await.contains("忘记暂停"), "the correction is shown");
    b.go("/manager/anomalies").await;
    b.find("#anomalies .flag").await;
    let kinds = strings(&b, "return [...document.querySelectorAll('#anomalies .flag')].map(e => e.dataset.kind)").await;
    b.screenshot("62-anomalies").await;
    let flag = b.attr("#anomalies .flag", "data-flag").await.unwrap();
    submit_ok(&b, &format!("#flag-{flag} button[data-decision=confirm]"), "settle an anomaly").await;
    b.go("/manager/anomalies?all=1").await;
    assert_eq!(b.attr(&format!("#flag-{flag}"), "data-status").await.as_deref(), Some("confirmed"), "kinds: {kinds:?}");
    clean(&b, "manager").await;
    logout(&b).await;

    // --- The inspector: the queue, compare, the slider, the alert, the signed report.
    ui_login(&b, "zhou").await;
    let links = nav(&b).await;
    assert!(links.contains(&"/qc".into()) && !links.contains(&"/bay".into()), "{links:?}");
    b.click("a[href='/qc']").await;
    b.find(&format!("#qc-queue tr[data-case='{case}']")).await;
    b.screenshot("63-qc-queue").await;
    // An inspector cannot start a job: no button, and the action answers 403.
    let (cookie, csrf) = session(&b).await;
    let r = api
        .form_client()
        .post(format!("{}/cases/{case}/work-order", api.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "an inspector cannot start a job");
    b.click(&format!("#qc-queue tr[data-case='{case}'] a.btn")).await;
    b.find("#not-compared").await;
    submit_ok(&b, "#compare", "compare").await;
    b.find(".ba input[type=range]").await;
    let pairs = b.js("return document.querySelectorAll('.pair[data-status=same] .ba').length").await;
    assert_eq!(pairs, json!(14), "14 pairs from the same viewpoint");
    assert_eq!(b.attr(&format!(".pair[data-checkpoint='{skipped}']"), "data-status").await.as_deref(), Some("missing"));
    b.js("const r = document.querySelector('.ba input[type=range]'); r.value = 25; r.dispatchEvent(new Event('input'));").await;
    let clip = b.js("return getComputedStyle(document.querySelector('.ba .ba-after')).clipPath").await;
    assert!(clip.as_str().unwrap_or("").contains("25%"), "the slider moves the clip: {clip}");
    screenshot_at(&b, "#pair-list", "64-qc-compare").await;
    clean(&b, "compare").await;

    // The "not shot" alert is confirmed; any other open alert is dismissed with a note.
    let alert = ".flag[data-kind=not_shot][data-status=open]".to_string();
    b.find(&alert).await;
    screenshot_at(&b, "#alerts", "65-qc-alerts").await;
    b.type_into(&format!("{alert} input[name=note]"), "该检查点未拍，已现场目检").await;
    submit_ok(&b, &format!("{alert} button[data-decision=confirm]"), "confirm the alert").await;
    assert!(b.exists(".flag[data-kind=not_shot][data-status=confirmed]").await);
    while b.exists(".flag[data-status=open] button[data-decision=dismiss]").await {
        submit_ok(&b, ".flag[data-status=open] button[data-decision=dismiss]", "dismiss an alert").await;
    }
    b.type_into("#qc-note", "外观修复良好；未拍的检查点已现场目检。").await;
    submit_ok(&b, "#sign-report", "sign the report").await;
    assert_eq!(b.text("#verdict").await, "通过");
    assert_eq!(status(&b).await, "delivered");
    assert_eq!(b.text("#case-status").await, "已交车");
    screenshot_at(&b, "#report", "66-qc-signed").await;
    clean(&b, "signed report").await;

    // The report's PDF over the same session: the store copy reads as the QC report.
    for (link, name) in [("#pdf-store", "store"), ("#pdf-customer", "customer")] {
        let href = b.attr(link, "href").await.expect("pdf link");
        let r = api.client.get(format!("{}{href}", api.base)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name} copy");
        assert_eq!(r.headers()["content-type"], "application/pdf");
        let pdf = tmp.path().join(format!("{name}.pdf"));
        std::fs::write(&pdf, r.bytes().await.unwrap()).unwrap();
        let out = std::process::Command::new("pdftotext").arg(&pdf).arg("-").output().expect("pdftotext");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("维修质检报告"), "{name} copy: {text}");
    }

    // The same screen in English, and on a phone.
    b.click("a[href^='/lang/en']").await;
    b.wait_js("document.documentElement.lang === 'en' && document.querySelector('#verdict')", Duration::from_secs(10)).await;
    assert_eq!(b.text("#verdict").await, "Passed");
    screenshot_at(&b, "#report", "67-qc-en").await;
    b.click("a[href^='/lang/zh']").await;
    b.wait_js("document.documentElement.lang === 'zh-CN'", Duration::from_secs(10)).await;
    b.viewport(390, 844).await;
    b.go(&format!("/cases/{case}/qc")).await;
    screenshot_at(&b, "#pair-list", "68-qc-phone").await;
    let overflow = b.js("return document.documentElement.scrollWidth > window.innerWidth + 1").await;
    assert_eq!(overflow, json!(false), "the QC page fits a phone");
    clean(&b, "phone").await;

    let (_, c) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(c["status"], "delivered");
    let moved: Vec<Value> = c["timeline"].as_array().unwrap().iter().filter_map(|t| t.get("to_status").cloned()).collect();
    for st in ["in_repair", "qc", "delivered"] {
        assert!(moved.contains(&json!(st)), "{st} missing from {moved:?}");
    }
    assert_eq!(server_errors(&api).await, 0, "the daemon answered 5xx during the flow");
    b.close().await;
    println!("scenario 2 on the tablet: {:.0} s", started.elapsed().as_secs_f64());
}
