//! The tablet UI in a real browser (Debian Chromium through chromedriver) against the real stack
//! over TLS, with the real YOLOv8n: seed scenario 1 by clicks and typing, from the first login to
//! a booked case; roles (a technician sees no staff administration and its URLs answer 403); and
//! the session, CSRF and escaping rules checked over plain HTTPS.
//!
//! Every flow runs with an error collector: any console error (script errors, CSP violations,
//! failed loads — Chromium logs each 4xx/5xx resource) or any 5xx the daemon counted fails the test.
//! Screenshots of the key screens go to `<target>/ui-screenshots/`; the Today page's paint time
//! and weight are measured there too (`timings.json`), never asserted.

mod common;

use std::time::Duration;

use common::browser::{clean, server_errors, Browser};
use common::Server;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use reqwest::StatusCode;
use serde_json::json;

const SEED: [&str; 3] = ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"];

/// The browser tests take turns: two Chromiums and the detector on a 2-core box only slow each other.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// No console error since the last check, or the step's name and the errors.

async fn ui_login(b: &Browser, user: &str, password: &str) {
    b.go("/login").await;
    b.type_into("#username", user).await;
    b.type_into("#password", password).await;
    b.click("#login-submit").await;
}

/// Logs in with a one-time password, is sent to the password page, sets a new one and logs in again.
async fn first_login(b: &Browser, user: &str, one_time: &str, shot: Option<&str>) -> String {
    ui_login(b, user, one_time).await;
    b.find("#forced").await;
    assert_eq!(b.path().await, "/password", "a one-time password leads to the password page first");
    // Nothing else opens before the change.
    b.go("/today").await;
    b.find("#password-form").await;
    if let Some(name) = shot {
        b.screenshot(name).await;
    }
    let new_pw = format!("{user}-Tablet-Pw-2026");
    b.type_into("#old_password", one_time).await;
    b.type_into("#new_password", &new_pw).await;
    b.type_into("#new_password_again", &new_pw).await;
    b.click("#password-submit").await;
    b.find("#flash-ok").await;
    ui_login(b, user, &new_pw).await;
    b.find("a[href='/today'].active").await;
    new_pw
}

/// Submits `css` and waits for the next page (a new document, marked so the old one's flash
/// message is never mistaken for the answer) to show its flash message (ok or error).
async fn submit_and_wait(b: &Browser, css: &str) -> (bool, String) {
    b.js("window.__sbOld = true").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_one_through_the_tablet() {
    let _turn = TURN.lock().await;
    let Some((srv, src, _models)) = common::yolo_server().await else {
        panic!("the detector weights are required (scripts/fetch-models.sh)")
    };
    let api = srv.api();
    let manager = api.manager().await;
    let (s, v) = api.post("/api/v1/users", &manager, json!({ "username": "wang", "display_name": "王顾问", "role": "advisor" })).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let one_time = v["one_time_password"].as_str().unwrap().to_string();

    let b = Browser::start(&srv.base, 1280, 800).await;
    let _ = std::fs::remove_file(b.shots.join("failure.png"));

    // Log in with the one-time password; it must be changed first.
    b.go("/today").await;
    assert!(b.path().await.starts_with("/login?next="), "no session → the login page");
    b.screenshot("01-login").await;
    first_login(&b, "wang", &one_time, Some("02-password")).await;
    clean(&b, "login").await;

    // New customer and case.
    b.click("#new-case").await;
    b.type_into("#name", "张先生").await;
    b.type_into("#phone", "13800138000").await;
    b.type_into("#plate", "粤B12345").await;
    b.type_into("#summary", "右前门刮痕、异响").await;
    b.screenshot("03-new-case").await;
    b.click("#create-case").await;
    b.find("#message-form").await;
    let path = b.path().await;
    let case_id = path.trim_start_matches("/cases/").split('/').next().unwrap().to_string();
    assert!(path.ends_with("/intake"), "{path}");
    clean(&b, "new case").await;

    // The three customer messages; the assistant answers each.
    for (i, text) in SEED.iter().enumerate() {
        b.type_into("#msg-text", text).await;
        b.click("#msg-send").await;
        b.wait_js(&format!("document.querySelectorAll('.msg-customer').length === {}", i + 1), Duration::from_secs(60)).await;
        assert_eq!(b.js("return document.querySelectorAll('.msg-assistant').length").await, json!(i + 1));
    }
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("intake"));
    b.screenshot("04-intake").await;
    clean(&b, "messages").await;

    // The camera first (Chromium's fake device: a test pattern, no car): the shot is uploaded,
    // analysed, and the quality gate says in words what to do, with a retake button.
    b.click("#to-photos").await;
    b.click(".camera-open").await;
    b.wait_js("document.querySelector('[data-camera-state=live] video')?.videoWidth > 0", Duration::from_secs(20)).await;
    b.screenshot("05a-camera").await;
    let (ok, msg) = submit_and_wait(&b, ".camera-live .controls .btn-primary").await;
    assert!(ok, "camera upload: {msg}");
    b.wait_js("document.querySelectorAll('#photos .photo[data-state=bad]').length === 1", Duration::from_secs(120)).await;
    let reasons = b.text("#photos .photo[data-state=bad] .reasons").await;
    assert!(reasons.contains("车辆") || reasons.contains("照片"), "reasons in words: {reasons}");
    assert!(b.exists("#photos .photo[data-state=bad] a.btn[href*='shot=']").await, "a retake button");
    b.screenshot("05b-retake").await;
    clean(&b, "camera").await;

    // Three photos through the file input; each is analysed (htmx polls its card) and passes.
    let photo = src.join("bus.jpg");
    for n in 1..=3 {
        let input = b.find("#photo-file").await;
        input.send_keys(photo.to_str().unwrap()).await.expect("choose file");
        let (ok, msg) = submit_and_wait(&b, "#photo-send").await;
        assert!(ok, "upload {n}: {msg}");
        b.wait_js(&format!("document.querySelectorAll('#photos .photo[data-state=ok]').length === {n}"), Duration::from_secs(120)).await;
    }
    b.go(&format!("/cases/{case_id}/photos")).await;
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("assessed"));
    assert!(b.text("#photo-progress").await.contains('3'));
    b.screenshot("05-photos").await;
    clean(&b, "photos").await;

    // Findings: reject the noise, confirm the scratch.
    b.click("#to-findings").await;
    b.find(".finding[data-damage=abnormal_noise]").await;
    b.screenshot("06-findings").await;
    let (ok, msg) = submit_and_wait(&b, ".finding[data-damage=abnormal_noise] button[data-action=reject]").await;
    assert!(ok, "reject: {msg}");
    assert_eq!(b.attr(".finding[data-damage=abnormal_noise]", "data-state").await.as_deref(), Some("rejected"));
    let (ok, msg) = submit_and_wait(&b, ".finding[data-damage=scratch] button[data-action=confirm]").await;
    assert!(ok, "confirm: {msg}");
    clean(&b, "findings").await;

    // The estimate: the page shows exactly what the service stored.
    let (ok, msg) = submit_and_wait(&b, "#make-estimate").await;
    assert!(ok, "estimate: {msg}");
    let shown = b.text("#total").await;
    let (_, stored) = api.get(&format!("/api/v1/cases/{case_id}/estimate"), &manager).await;
    let total = stored["total_fen"].as_i64().unwrap() as f64 / 100.0;
    let lines = stored["plan"]["labour"].as_array().unwrap();
    assert!(lines.iter().all(|l| !l["code"].as_str().unwrap().contains("NOISE")), "the rejected noise is not priced: {stored}");
    assert!(shown.replace(',', "").contains(&format!("{total:.0}")), "page shows '{shown}', stored ¥{total}");
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("estimated"));
    b.screenshot("07-estimate").await;
    clean(&b, "estimate").await;

    // The printable quotation.
    b.click("#print-quote").await;
    b.find("button[data-print]").await;
    assert!(b.text("main").await.replace(',', "").contains(&format!("{total:.0}")));
    b.screenshot("08-quote").await;
    b.js("history.back()").await;
    b.find("#approval-form").await;

    // Approval with a signature drawn on the pad; an empty pad is refused in the page.
    b.click("#approve").await;
    b.wait_js("document.querySelector('[data-signature-error]').textContent.length > 0", Duration::from_secs(5)).await;
    b.draw_on("#signature", &[(-120.0, 20.0), (-60.0, -30.0), (0.0, 25.0), (60.0, -20.0), (120.0, 10.0)]).await;
    b.screenshot("09-signature").await;
    let (ok, msg) = submit_and_wait(&b, "#approve").await;
    assert!(ok, "approve: {msg}");
    b.find("#approved").await;
    let (_, got) = api.get(&format!("/api/v1/cases/{case_id}/estimate"), &manager).await;
    assert_eq!(got["status"], "approved", "{got}");
    clean(&b, "approval").await;

    // Book the first free slot: the case is scheduled.
    let slot = b.attr("#slots .slot", "data-start").await.unwrap();
    let (ok, msg) = submit_and_wait(&b, "#slots .slot").await;
    assert!(ok, "book: {msg}");
    b.find("#booked").await;
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("scheduled"));
    let (_, appt) = api.get(&format!("/api/v1/cases/{case_id}/appointment"), &manager).await;
    assert_eq!((appt["status"].clone(), appt["starts_at"].clone()), (json!("booked"), json!(slot)), "{appt}");
    b.screenshot("10-scheduled").await;
    b.go(&format!("/cases/{case_id}")).await;
    b.find("#timeline li").await;
    b.screenshot("11-case").await;
    clean(&b, "booking").await;

    // Today: measured from a fresh page load (Navigation Timing + paint), not asserted.
    b.go("/today").await;
    b.find(".tiles").await;
    let m = b
        .wait_js(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; \
               const p = performance.getEntriesByType('paint'); \
               const fcp = p.find(e => e.name === 'first-contentful-paint') || p.find(e => e.name === 'first-paint'); \
               if (!n || n.loadEventEnd === 0 || !fcp) return null; \
               const r = performance.getEntriesByType('resource'); \
               return { first_paint_ms: fcp.startTime, dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd, \
                        html_bytes: n.decodedBodySize, page_bytes: n.decodedBodySize + r.reduce((a, e) => a + e.decodedBodySize, 0), \
                        transferred_bytes: n.transferSize + r.reduce((a, e) => a + e.transferSize, 0), resources: r.length }; })()",
            Duration::from_secs(10),
        )
        .await;
    let mut report = json!({ "today_tablet": m, "box": "see README (2-core CI box)" });
    b.screenshot("12-today").await;

    // The same screens on a phone (390×844).
    b.viewport(390, 844).await;
    b.go("/today").await;
    b.find(".tiles").await;
    b.screenshot("13-today-phone").await;
    b.go(&format!("/cases/{case_id}/estimate")).await;
    b.find("#total").await;
    b.screenshot("14-estimate-phone").await;
    let overflow = b.js("return document.documentElement.scrollWidth > window.innerWidth + 1").await;
    report["phone_horizontal_overflow"] = overflow;
    clean(&b, "phone").await;

    std::fs::write(b.shots.join("timings.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("UI measurements (Today, tablet): {report}");
    assert_eq!(server_errors(&api).await, 0, "the daemon answered 5xx during the flow");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_sees_no_staff_administration() {
    let _turn = TURN.lock().await;
    let srv = Server::start().await;
    let api = srv.api();
    let initial = std::fs::read_to_string(srv.data_dir().join(servicebay::app::INITIAL_PASSWORD_FILE)).unwrap();
    let b = Browser::start(&srv.base, 1280, 800).await;

    // The first-run page: the fingerprint the daemon printed, and the certificate to download.
    b.go("/welcome").await;
    let fp = servicebay::tls::fingerprint(&srv.data_dir().join("tls/cert.pem")).unwrap();
    assert_eq!(b.text("#fingerprint").await, fp);
    b.find("#download-cert").await;
    b.screenshot("19-welcome").await;
    clean(&b, "welcome").await;

    // The manager's first login, then a technician account made on the staff page.
    first_login(&b, "manager", initial.trim(), None).await;
    b.click("a[href='/manager/users']").await;
    b.type_into("#new-username", "liu").await;
    b.type_into("#display_name", "刘师傅").await;
    b.find("#role option[value=technician]").await.click().await.unwrap();
    b.click("#user-form button").await;
    let one_time = b.text("#one-time-password").await;
    assert!(one_time.len() >= 10, "{one_time}");
    b.screenshot("20-users").await;
    // Shown once: a reload does not show it again.
    b.go("/manager/users").await;
    assert!(!b.exists("#one-time").await);
    b.go("/manager/status").await;
    b.find("#status").await;
    b.screenshot("21-status").await;
    b.go("/manager/audit").await;
    b.find("#audit").await;
    clean(&b, "manager").await;
    b.click("#logout").await;
    b.find("#login-form").await;

    // The technician: no staff, audit or status links, and their URLs answer 403.
    first_login(&b, "liu", &one_time, None).await;
    let nav: Vec<String> = b
        .js("return [...document.querySelectorAll('.topbar nav a')].map(a => a.getAttribute('href'))")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(nav.contains(&"/today".to_string()), "{nav:?}");
    for hidden in ["/manager/users", "/manager/audit", "/manager/status", "/cases/new"] {
        assert!(!nav.contains(&hidden.to_string()), "a technician sees {hidden}: {nav:?}");
    }
    clean(&b, "technician today").await;
    b.screenshot("22-technician-today").await;
    let cookie = b.client.get_named_cookie("sb_session").await.expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let jar = format!("sb_session={}", cookie.value());
    for url in ["/manager/users", "/manager/audit", "/manager/status", "/cases/new"] {
        let r = api.client.get(format!("{}{url}", api.base)).header("cookie", &jar).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
        let body = r.text().await.unwrap();
        assert!(body.contains("id=\"error-message\""), "{url} answers a page: {body}");
    }
    b.go("/manager/users").await;
    b.find("#error-message").await;
    // The 403 page load is the one console error this test provokes on purpose.
    let errors = b.errors().await;
    assert!(errors.iter().all(|e| e.contains("403")), "{errors:?}");
    b.screenshot("23-technician-forbidden").await;
    assert_eq!(server_errors(&api).await, 0);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_and_escaping() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, _advisor) = api.user(&manager, "zhao", "advisor").await;
    let raw = api.form_client();

    // The first-run page offers the certificate (public) without a session: the very file served.
    let r = raw.get(format!("{}/servicebay.crt", api.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), std::fs::read(api.data_dir.join("tls/cert.pem")).unwrap());

    // No session: pages redirect to the login page; JSON routes are untouched by the UI.
    let r = raw.get(format!("{}/today", api.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=%2Ftoday");
    let r = raw.get(format!("{}/api/v1/cases", api.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A wrong password comes back to the form with the error code, never with the password.
    let r = raw.post(format!("{}/login", api.base)).form(&[("username", "zhao"), ("password", "nope")]).send().await.unwrap();
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("err=bad_credentials") && !to.contains("nope"), "{to}");
    // An open redirect is refused: `next` must be our own path.
    let (jar, csrf) = api.form_login("zhao", "zhao-Permanent-Pw1").await;
    let r = raw
        .post(format!("{}/login", api.base))
        .form(&[("username", "zhao"), ("password", "zhao-Permanent-Pw1"), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/today");

    // Pages carry the security headers and refer to no other host.
    let r = raw.get(format!("{}/today", api.base)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "a page names another host");
    assert!(html.contains(&format!("content=\"{csrf}\"")), "the page carries the session's CSRF token");

    // A POST without the token, with a wrong one, or from another origin changes nothing.
    let before = common::count_rows(srv.data_dir(), "cases");
    let form = [("name", "李四"), ("summary", "保险杠")];
    let r = raw.post(format!("{}/cases/new", api.base)).header("cookie", &jar).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = raw
        .post(format!("{}/cases/new", api.base))
        .header("cookie", &jar)
        .form(&[("name", "李四"), ("summary", "保险杠"), ("csrf", "0000")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = raw
        .post(format!("{}/cases/new", api.base))
        .header("cookie", &jar)
        .header("origin", "https://evil.example")
        .form(&[("name", "李四"), ("summary", "保险杠"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(common::count_rows(srv.data_dir(), "cases"), before, "nothing was written");

    // Control characters in a form are refused with a page, nothing written.
    let r = raw
        .post(format!("{}/cases/new", api.base))
        .header("cookie", &jar)
        .form(&[("name", "李\u{0}四"), ("summary", "保险杠"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(common::count_rows(srv.data_dir(), "cases"), before);

    // Hostile text is shown as text: the page escapes it.
    let r = raw
        .post(format!("{}/cases/new", api.base))
        .header("cookie", &jar)
        .form(&[("name", "<img src=x onerror=alert(1)>"), ("summary", "<script>alert(1)</script>"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    let case_page = r.headers()["location"].to_str().unwrap().replace("/intake", "");
    let html = raw.get(format!("{}{case_page}", api.base)).header("cookie", &jar).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("&#60;script&#62;alert(1)") && !html.contains("<script>alert(1)") && !html.contains("<img src=x"),
        "not escaped: {html}"
    );

    // Logging out ends the session: the cookie no longer opens a page.
    let r = raw.post(format!("{}/logout", api.base)).header("cookie", &jar).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = raw.get(format!("{}/today", api.base)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the old cookie is dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_findings_are_measured_handed_to_a_person_and_taken_from_the_queue() {
    let _turn = TURN.lock().await;
    let (srv, src, _models) = common::remap_server().await.expect("the detector weights are required (scripts/fetch-models.sh)");
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "赵女士" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "车门刮痕" })).await;
    let case = k["id"].as_str().unwrap().to_string();
    let p = common::upload(&api, &advisor, &case, std::fs::read(src.join("bus.jpg")).unwrap()).await;
    common::analysis(&api, &advisor, p["id"].as_str().unwrap()).await;

    let b = Browser::start(&srv.base, 1280, 800).await;
    ui_login(&b, "wang", "wang-Permanent-Pw1").await;
    b.find("a[href='/today'].active").await;

    // The photo's findings: sources and confidence shown, the unsure ones marked for review.
    b.go(&format!("/cases/{case}/findings")).await;
    b.find(".finding .chip").await;
    let confidences = b.js("return [...document.querySelectorAll('.finding .conf')].length").await;
    assert!(confidences.as_u64().unwrap() >= 2, "photo findings show their confidence");
    b.screenshot("30-photo-findings").await;

    // Measure one against a marked reference: two taps on the photo and the real length.
    let fid = b.attr(".finding a[href$='/measure']", "href").await.unwrap();
    let fid = fid.trim_end_matches("/measure").rsplit('/').next().unwrap().to_string();
    b.click(".finding a[href$='/measure']").await;
    b.wait_js("document.querySelector('.measure img')?.naturalWidth > 0", Duration::from_secs(20)).await;
    assert!(b.exists("[data-measure] button[disabled]").await, "no measurement before two points");
    let img = b.find(".measure img").await;
    for (x, y) in [(-100.0, 0.0), (100.0, 0.0)] {
        let m = MouseActions::new("finger".into())
            .then(PointerAction::MoveToElement { element: img.clone(), duration: None, x, y })
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
        b.client.perform_actions(m).await.expect("tap");
    }
    assert_eq!(b.attr("[data-measure]", "data-measure-points").await.as_deref(), Some("2"));
    b.type_into("#length_cm", "50").await;
    b.screenshot("31-measure").await;
    let (ok, msg) = submit_and_wait(&b, "[data-measure] button").await;
    assert!(ok, "measure: {msg}");
    let (_, fs) = api.get(&format!("/api/v1/cases/{case}/findings"), &advisor).await;
    let f = fs["items"].as_array().unwrap().iter().find(|f| f["id"] == json!(fid)).unwrap().clone();
    assert!(f["measured_cm"].as_f64().is_some_and(|l| l > 0.0), "the marked reference measured it: {f}");
    clean(&b, "measure").await;

    // 转人工 in one tap: the case is escalated and waits in the review queue, oldest first.
    b.go(&format!("/cases/{case}")).await;
    let (ok, msg) = submit_and_wait(&b, "#handoff").await;
    assert!(ok, "hand-off: {msg}");
    assert_eq!(b.attr("#case-status", "data-status").await.as_deref(), Some("escalated"));
    b.go("/review").await;
    let row = format!("#queue tr[data-case='{case}']");
    b.find(&row).await;
    b.screenshot("32-review-queue").await;
    // One tap takes it; it is then the advisor's, and on their Today.
    let (ok, msg) = submit_and_wait(&b, &format!("{row} button")).await;
    assert!(ok, "take: {msg}");
    let (_, got) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert!(got["assigned_to"].as_i64().is_some(), "{got}");
    b.go("/today").await;
    b.find(&format!("#mine tr[data-case='{case}']")).await;
    clean(&b, "review").await;
    assert_eq!(server_errors(&api).await, 0);
    b.close().await;
}

/// A customer asks for their data, then to be erased: the manager finds them by phone, sets and
/// releases a legal hold, downloads the export and erases them, all on the privacy screen; an
/// advisor has no such screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_answers_a_customers_data_request() {
    let _turn = TURN.lock().await;
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, c) = api.post("/api/v1/customers", &manager, json!({ "name": "钱先生 <b>x</b>", "phone": "13566667777" })).await;
    let cid = c["id"].as_str().unwrap().to_string();
    api.post("/api/v1/vehicles", &manager, json!({ "customer_id": cid, "plate": "浙A12345" })).await;
    let (_, k) = api.post("/api/v1/cases", &manager, json!({ "customer_id": cid, "summary": "后保险杠凹陷" })).await;
    let case = k["id"].as_str().unwrap().to_string();

    let b = Browser::start(&srv.base, 1280, 800).await;
    ui_login(&b, "manager", "manager-Permanent-Pw1").await;
    b.find("a[href='/today'].active").await;
    b.click("a[href='/manager/privacy']").await;
    b.type_into("#privacy-q", "13566667777").await;
    b.click("#privacy-search button").await;
    let card = format!("section[data-customer='{cid}']");
    b.find(&card).await;
    assert!(b.text(&format!("{card} h2")).await.contains("钱先生 <b>x</b>"), "names are shown as text, never markup");
    clean(&b, "privacy search").await;

    // A legal hold blocks the erasure; released, the erasure goes through.
    b.type_into(&format!("tr[data-case='{case}'] input[name=reason]"), "保险理赔争议").await;
    let (ok, msg) = submit_and_wait(&b, &format!("tr[data-case='{case}'] button")).await;
    assert!(ok, "hold: {msg}");
    b.screenshot("40-privacy-hold").await;
    b.js("window.confirm = () => true").await;
    b.type_into(&format!("#confirm-{cid}"), &cid).await;
    let (ok, msg) = submit_and_wait(&b, &format!("{card} .btn-danger")).await;
    assert!(!ok && msg.contains("法律保全"), "a held case stops the erasure: {msg}");
    let (ok, msg) = submit_and_wait(&b, &format!("tr[data-case='{case}'] button[name=release]")).await;
    assert!(ok, "release: {msg}");

    // The export is a zip the browser downloads (checked over the same session).
    let href = b.attr(&format!("#export-{cid}"), "href").await.expect("export link");
    let cookie = b.client.get_named_cookie("sb_session").await.expect("session cookie");
    let r = api.client.get(format!("{}{href}", api.base)).header("cookie", format!("sb_session={}", cookie.value())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK") && bytes.windows(11).any(|w| w == b"13566667777"), "the export holds their data");

    // A wrong confirmation erases nothing; the right one erases.
    b.js("window.confirm = () => true").await;
    b.type_into(&format!("#confirm-{cid}"), "not-the-id").await;
    let (ok, msg) = submit_and_wait(&b, &format!("{card} .btn-danger")).await;
    assert!(!ok && msg.contains("不一致"), "{msg}");
    b.js("window.confirm = () => true").await;
    b.type_into(&format!("#confirm-{cid}"), &cid).await;
    let (ok, msg) = submit_and_wait(&b, &format!("{card} .btn-danger")).await;
    assert!(ok && msg.contains("已删除"), "{msg}");
    b.type_into("#privacy-q", &cid).await;
    b.click("#privacy-search button").await;
    b.find(&format!("{card} .badge.st-cancelled")).await;
    assert!(!b.text(&card).await.contains("13566667777"), "the phone is gone");
    b.screenshot("41-privacy-erased").await;
    clean(&b, "privacy erased").await;
    let (_, v) = api.get(&format!("/api/v1/customers/{cid}"), &manager).await;
    assert_eq!(v["customer"]["name"], "[erased]");

    // The status page says what protects the data.
    b.go("/manager/status").await;
    assert!(b.text("#status").await.contains("密钥文件"), "the key's mode is shown");
    // An advisor has no privacy screen, and its URL answers 403.
    let (_, advisor) = api.user(&manager, "sun", "advisor").await;
    let _ = advisor;
    b.click("#logout").await;
    b.find("#login-form").await;
    ui_login(&b, "sun", "sun-Permanent-Pw1").await;
    b.find("a[href='/today'].active").await;
    assert!(!b.exists("a[href='/manager/privacy']").await);
    b.go("/manager/privacy").await;
    b.find("#error-message").await;
    assert_eq!(server_errors(&api).await, 0);
    b.close().await;
}
