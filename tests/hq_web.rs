//! `servicebay hq-web`, HQ analysts' pages, against a private PostgreSQL database seeded with
//! what `hq-ingest` would hold (KPI snapshots of three stores, follow-up alerts including hostile
//! texts), served in-process over real TLS and driven in Debian's Chromium: the login (a wrong
//! password, the one-time password from `servicebay hq-analyst add`, the forced change), the store
//! comparison (the seeded numbers, the SVG bars, sorting), the hot alerts across stores (only open
//! hot ones, oldest due first, overdue and escalated marked, hostile text shown as text), a
//! store's KPI history, logout. Then the session and CSRF rules over plain HTTPS, and the CLI.
//!
//! Screenshots go to `<target>/ui-screenshots/hqweb-*.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{clean, Browser};
use common::hq::{PgDb, PrivatePg};
use reqwest::StatusCode;
use serde_json::{json, Value};
use servicebay::sync::hq::HqConfig;

struct Web {
    base: String,
    /// Trusts exactly the server's certificate; never follows redirects (the tests read them).
    client: reqwest::Client,
    config: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), servicebay::hq::web::WebError>>>,
    _dir: tempfile::TempDir,
}

impl Web {
    async fn start(postgres: &str) -> Web {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
        // Made here so the client can trust it before the server runs; hq-web finds and keeps it.
        servicebay::tls::ensure_cert(&cert, &key, &[]).expect("certificate");
        let config = dir.path().join("hq.toml");
        std::fs::write(
            &config,
            format!(
                "[hq]\npostgres = \"{pg}\"\n\n[hq.mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\nusername = \"hq\"\npassword_file = \"/nonexistent\"\n\n\
                 [web]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\nsession_ttl_minutes = 60\n\n\
                 [log]\nlevel = \"info\"\n",
                pg = postgres,
                c = cert.display(),
                k = key.display()
            ),
        )
        .expect("write hq.toml");
        let cfg = HqConfig::from_file(&config).expect("valid hq.toml");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(servicebay::hq::web::run(cfg, listener, async move {
            let _ = rx.await;
        }));
        let pem = std::fs::read(&cert).expect("cert");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .tls_built_in_root_certs(false)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let web = Web { base, client, config, stop: Some(tx), task: Some(task), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = web.client.get(format!("{}/healthz", web.base)).send().await {
                if r.status() == StatusCode::OK {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "hq-web did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        web
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, jar: &str) -> reqwest::Response {
        self.client.get(self.url(path)).header("cookie", jar).send().await.expect("GET")
    }

    /// `servicebay --config hq.toml ARGS…`: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out =
            Command::new(env!("CARGO_BIN_EXE_servicebay")).arg("--config").arg(&self.config).args(args).output().expect("run servicebay");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `hq-analyst add NAME`: the one-time password it printed.
    fn add_analyst(&self, name: &str) -> String {
        let (code, out, err) = self.cli(&["hq-analyst", "add", name, "--display-name", "王分析"]);
        assert_eq!(code, 0, "hq-analyst add: {out}{err}");
        assert!(!err.contains("one-time password"), "the password goes to stdout only: {err}");
        let pw = out.lines().find_map(|l| l.strip_prefix("one-time password: ")).expect("a one-time password line").trim().to_string();
        assert_eq!(pw.chars().count(), 16, "{out}");
        pw
    }

    /// Logs in through the form: (cookie header, CSRF token), or the redirect's location on failure.
    async fn login(&self, user: &str, password: &str) -> Result<(String, String), String> {
        let r = self
            .client
            .post(self.url("/login"))
            .form(&[("username", user), ("password", password), ("next", "/stores")])
            .send()
            .await
            .expect("POST /login");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let Some(set) = r.headers().get("set-cookie") else { return Err(location) };
        let set = set.to_str().unwrap().to_string();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        let token = set.split(';').next().unwrap().trim_start_matches("sbhq_session=").to_string();
        assert_eq!(token.len(), 64, "{set}");
        Ok((format!("sbhq_session={token}"), servicebay::ui::csrf_of(&token)))
    }

    /// A first login with the one-time password and the forced change: the new session.
    async fn activate(&self, user: &str, one_time: &str, new: &str) -> (String, String) {
        let (jar, csrf) = self.login(user, one_time).await.expect("the one-time password logs in");
        let form = [("old_password", one_time), ("new_password", new), ("new_password_again", new), ("csrf", csrf.as_str())];
        let r = self.client.post(self.url("/password")).header("cookie", &jar).form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?ok=password_changed"));
        self.login(user, new).await.expect("the new password logs in")
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("hq-web ran and stopped cleanly");
        }
    }
}

// ---- seed data: what hq-ingest would hold -----------------------------------------------------

async fn record(pg: &tokio_postgres::Client, store: &str, kind: &str, id: &str, body: &Value) {
    pg.execute(
        "INSERT INTO hq_records (store_id, record_type, record_id, version, seq, at, body)
         VALUES ($1, $2, $3, 1, 1, $4, CAST($5::text AS jsonb))",
        &[&store, &kind, &id, &chrono::Utc::now().to_rfc3339(), &body.to_string()],
    )
    .await
    .expect("insert record");
}

#[allow(clippy::too_many_arguments)]
fn snapshot(
    day: &str,
    store: &str,
    csat: f64,
    share: f64,
    nps: f64,
    ftf: Value,
    resp: Value,
    words: f64,
    photos: Value,
    saved: f64,
) -> Value {
    json!({
        "day": day, "store_id": store, "period_days": 30, "cases": 40,
        "response_minutes_median": resp, "escalation_minutes_median": 9.0,
        "ai_accuracy": {"words": {"confirmed": 28, "corrected": 2, "rejected": 0, "rate": words},
                        "photos": {"confirmed": 22, "corrected": 3, "rejected": 0, "rate": photos}},
        "csat_mean": csat, "csat_share_4plus": share, "nps": nps, "first_time_fix": ftf, "comebacks": 1,
        "hot_open": 1, "hot_overdue": 0, "labour_efficiency": 95.0, "minutes_saved": saved,
        "minutes_saved_per_case": 8.0, "surveys": 12
    })
}

fn at(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn alert(id: &str, kind: &str, due_h: i64, extra: Value) -> Value {
    let mut v = json!({
        "id": id, "case_id": format!("case-{id}"), "survey_id": format!("sv-{id}"), "kind": kind,
        "reasons": ["low_csat"], "category": "quality", "summary": format!("摘要 {id}"),
        "raised_at": at(due_h - 24), "due_at": at(due_h), "escalate_at": at(due_h + 48), "escalated_at": null,
        "first_response_at": null, "resolved_at": null, "resolution": null, "version": 1
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

const HOSTILE: &str = "<script>alert(1)</script>";

async fn seed(conn: &str) {
    let (mut pg, c) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(c);
    servicebay::sync::hq::migrate(&mut pg).await.expect("schema");
    for (store, ago, link) in
        [("s-beijing", 30.0, "online"), ("s-shanghai", 600.0, "<i>online</i>\u{1}"), ("s-guangzhou", 7200.0, "offline")]
    {
        pg.execute(
            "INSERT INTO hq_stores (store_id, acked_seq, head_seq, last_seen, link_state)
             VALUES ($1, 10, 12, now() - make_interval(secs => $2), $3)",
            &[&store, &ago, &link],
        )
        .await
        .expect("store");
    }
    // Beijing has a history; its newest day is the one compared. Shanghai misses the response goal.
    let kpi = "kpi_snapshot";
    let bj = "s-beijing";
    record(&pg, bj, kpi, "2026-02-26", &snapshot("2026-02-26", bj, 4.0, 75.0, 10.0, json!(80.0), json!(20.0), 80.0, json!(70.0), 100.0))
        .await;
    record(&pg, bj, kpi, "2026-02-27", &snapshot("2026-02-27", bj, 4.3, 82.0, 30.0, json!(85.0), json!(16.0), 88.0, json!(80.0), 200.0))
        .await;
    record(&pg, bj, kpi, "2026-02-28", &snapshot("2026-02-28", bj, 4.62, 90.5, 45.0, json!(92.0), json!(12.5), 93.3, json!(88.0), 320.0))
        .await;
    let sh = "s-shanghai";
    record(&pg, sh, kpi, "2026-02-28", &snapshot("2026-02-28", sh, 3.8, 70.0, -12.0, json!(80.0), json!(18.2), 85.0, json!(null), 150.0))
        .await;
    let gz = "s-guangzhou";
    record(&pg, gz, kpi, "2026-02-27", &snapshot("2026-02-27", gz, 4.1, 80.0, 20.0, json!(null), json!(null), 90.0, json!(91.5), 240.0))
        .await;

    let fa = "follow_up_alert";
    // Open hot alerts, in due order: overdue (-2 h), answered in time (-1 h), hostile (+5 h), long (+10 h).
    record(
        &pg,
        sh,
        fa,
        "a-overdue",
        &alert("a-overdue", "hot", -2, json!({"summary": "客户说异响仍在", "reasons": ["not_fixed", "low_csat"]})),
    )
    .await;
    record(&pg, bj, fa, "a-answered", &alert("a-answered", "hot", -1, json!({"first_response_at": at(-3), "category": "time"}))).await;
    record(
        &pg,
        bj,
        fa,
        "a-hostile",
        &alert("a-hostile", "hot", 5, json!({"summary": HOSTILE, "escalated_at": at(-1), "category": "<b>x</b>"})),
    )
    .await;
    let long = format!("LONG-\u{7}{}", "长".repeat(4994));
    record(&pg, gz, fa, "a-long", &alert("a-long", "hot", 10, json!({"summary": long, "category": "price"}))).await;
    // Not listed: resolved, a suggestion, and a body that is not an alert at all.
    record(&pg, bj, fa, "a-resolved", &alert("a-resolved", "hot", -30, json!({"resolved_at": at(-20), "resolution": "已上门复查"}))).await;
    record(&pg, sh, fa, "a-suggestion", &alert("a-suggestion", "suggestion", 3, json!({}))).await;
    record(&pg, sh, fa, "a-garbage", &json!("not an object")).await;
}

async fn rows(b: &Browser) -> Vec<String> {
    let v = b.js("return [...document.querySelectorAll('#stores tbody tr')].map(r => r.dataset.store)").await;
    serde_json::from_value(v).expect("store ids")
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.text(css).await.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_compare_stores_and_see_hot_alerts_in_the_browser() {
    let db = PgDb::create().await;
    seed(&db.conn).await;
    let web = Web::start(&db.conn).await;
    let one_time = web.add_analyst("ana");
    let b = Browser::start(&web.base, 1280, 800).await;

    // No session: every page leads to the login page, which shows the certificate's fingerprint.
    b.go("/stores").await;
    b.find("#login-form").await;
    assert_eq!(b.path().await, "/login?next=%2Fstores");
    let fp = servicebay::tls::fingerprint(&web._dir.path().join("tls/cert.pem")).unwrap();
    assert_eq!(text_of(&b, "#fingerprint").await, fp);
    assert_eq!(b.js("return document.documentElement.lang").await, json!("zh-CN"));
    b.screenshot("hqweb-01-login").await;

    // A wrong password: back to the form with the error, no session.
    b.type_into("#username", "ana").await;
    b.type_into("#password", "not-the-password").await;
    b.click("#login-submit").await;
    b.find("#flash-err").await;
    assert!(b.path().await.contains("err=bad_credentials"), "{}", b.path().await);
    b.go("/alerts").await;
    b.find("#login-form").await;

    // The one-time password works once: the password must be changed before any page shows data.
    b.type_into("#username", "ana").await;
    b.type_into("#password", &one_time).await;
    b.click("#login-submit").await;
    b.find("#forced").await;
    assert_eq!(b.path().await, "/password");
    assert!(!b.exists("nav a[href='/stores']").await, "no navigation before the change");
    b.go("/stores").await;
    b.find("#password-form").await;
    let new_pw = "Analyst-Permanent-42";
    b.type_into("#old_password", &one_time).await;
    b.type_into("#new_password", new_pw).await;
    b.type_into("#new_password_again", new_pw).await;
    b.click("#password-submit").await;
    b.find("#flash-ok").await;
    assert!(b.path().await.starts_with("/login?ok=password_changed"), "{}", b.path().await);
    b.type_into("#password", new_pw).await;
    b.click("#login-submit").await;

    // 门店对比: the newest snapshot of each store, as seeded.
    b.find("#stores").await;
    assert_eq!(b.path().await, "/stores");
    assert_eq!(rows(&b).await, ["s-beijing", "s-guangzhou", "s-shanghai"], "by store id by default");
    let cell = |s: &str, c: &str| format!("#stores tr[data-store='{s}'] .{c}");
    for (store, csat, share, nps, ftf, resp, words, photos, open, overdue, saved) in [
        ("s-beijing", "4.62", "≥4 90.5%", "45", "92.0%", "12.5", "93.3%", "88.0%", "2", "0", "320"),
        ("s-shanghai", "3.80", "≥4 70.0%", "-12", "80.0%", "18.2", "85.0%", "—", "1", "1", "150"),
        ("s-guangzhou", "4.10", "≥4 80.0%", "20", "—", "—", "90.0%", "91.5%", "1", "0", "240"),
    ] {
        assert_eq!(text_of(&b, &cell(store, "csat")).await, csat, "{store} CSAT");
        assert_eq!(text_of(&b, &cell(store, "csat-share")).await, share, "{store} share ≥ 4");
        assert_eq!(text_of(&b, &cell(store, "nps")).await, nps, "{store} NPS");
        assert_eq!(text_of(&b, &cell(store, "ftf")).await, ftf, "{store} first-time fix");
        assert_eq!(text_of(&b, &cell(store, "response")).await, resp, "{store} response");
        assert_eq!(text_of(&b, &cell(store, "ai-words")).await, words, "{store} AI words");
        assert_eq!(text_of(&b, &cell(store, "ai-photos")).await, photos, "{store} AI photos");
        assert_eq!(text_of(&b, &cell(store, "hot-open")).await, open, "{store} hot open");
        assert_eq!(text_of(&b, &cell(store, "hot-overdue")).await, overdue, "{store} hot overdue");
        assert_eq!(text_of(&b, &cell(store, "saved")).await, saved, "{store} minutes saved");
    }
    // Only Shanghai's 18.2 minutes misses the < 15 min goal: marked red.
    let over = b.js("return [...document.querySelectorAll('#stores .over-goal')].map(e => e.closest('tr').dataset.store)").await;
    assert_eq!(over, json!(["s-shanghai"]));
    // The last-seen column; a hostile link state is shown as text.
    assert_eq!(text_of(&b, &cell("s-beijing", "seen")).await, "刚刚");
    assert_eq!(text_of(&b, &cell("s-shanghai", "seen")).await, "10 分钟前");
    assert_eq!(text_of(&b, &cell("s-guangzhou", "seen")).await, "2 小时前");
    let sh_row = text_of(&b, "#stores tr[data-store='s-shanghai']").await;
    assert!(sh_row.contains("<i>online</i>"), "{sh_row}");
    // One bar per store in each chart, labelled with its store; NPS below zero hangs down in red.
    for chart in ["chart-csat", "chart-nps"] {
        let n = b.js(&format!("return document.querySelectorAll('#{chart} rect.bar').length")).await;
        assert_eq!(n, json!(3), "{chart}");
        let labels = b.js(&format!("return [...document.querySelectorAll('#{chart} .bar-label')].map(t => t.textContent)")).await;
        assert_eq!(labels, json!(["s-beijing", "s-guangzhou", "s-shanghai"]), "{chart}");
    }
    let values = b.js("return [...document.querySelectorAll('#chart-csat .bar-value')].map(t => t.textContent)").await;
    assert_eq!(values, json!(["4.62", "4.10", "3.80"]));
    let heights = b.js("return [...document.querySelectorAll('#chart-csat rect.bar')].map(r => r.height.baseVal.value)").await;
    let h: Vec<f64> = serde_json::from_value(heights).unwrap();
    assert!(h[0] > h[1] && h[1] > h[2], "bar heights follow CSAT: {h:?}");
    let red = b.js("return [...document.querySelectorAll('#chart-nps rect.bar')].map(r => r.getAttribute('fill'))").await;
    assert_eq!(red, json!(["#1f7a3a", "#1f7a3a", "#c2281f"]));
    clean(&b, "comparison").await;
    b.screenshot("hqweb-02-stores").await;

    // Sortable by a query parameter: the column links.
    b.click("#sort-csat").await;
    b.wait_js("location.search.includes('sort=csat')", Duration::from_secs(10)).await;
    assert_eq!(rows(&b).await, ["s-beijing", "s-guangzhou", "s-shanghai"], "CSAT, highest first");
    b.go("/stores?sort=nps&dir=asc").await;
    assert_eq!(rows(&b).await, ["s-shanghai", "s-guangzhou", "s-beijing"]);
    b.go("/stores?sort=response&dir=asc").await;
    assert_eq!(rows(&b).await, ["s-beijing", "s-shanghai", "s-guangzhou"], "a store without a figure goes last");
    b.go("/stores?sort=response&dir=desc").await;
    assert_eq!(rows(&b).await, ["s-shanghai", "s-beijing", "s-guangzhou"], "last in either direction");
    b.go("/stores?sort=hot").await;
    assert_eq!(rows(&b).await, ["s-beijing", "s-shanghai", "s-guangzhou"]);

    // 热点告警: only open hot alerts, oldest due first, the overdue one and the escalated one marked.
    b.click("nav a[href='/alerts']").await;
    b.find("#alerts").await;
    let ids = b.js("return [...document.querySelectorAll('#alerts tbody tr')].map(r => r.dataset.alertId)").await;
    assert_eq!(ids, json!(["a-overdue", "a-answered", "a-hostile", "a-long"]));
    let overdue = b.js("return [...document.querySelectorAll('#alerts tr.overdue')].map(r => r.dataset.alertId)").await;
    assert_eq!(overdue, json!(["a-overdue"]));
    assert!(b.exists("#alerts tr[data-alert-id='a-overdue'] .badge-overdue").await);
    let escalated = b.js("return [...document.querySelectorAll('#alerts tr.escalated')].map(r => r.dataset.alertId)").await;
    assert_eq!(escalated, json!(["a-hostile"]));
    assert_eq!(text_of(&b, "#count-open").await, "4");
    assert_eq!(text_of(&b, "#count-overdue").await, "1");
    let row = text_of(&b, "#alerts tr[data-alert-id='a-overdue']").await;
    for want in ["s-shanghai", "质量", "客户说异响仍在", "问题未修好", "满意度低", "已超时"] {
        assert!(row.contains(want), "'{want}' missing from {row}");
    }
    // The hostile summary is text, not markup; an unknown category reads as 其他.
    let s = b.js("return document.querySelector(\"tr[data-alert-id='a-hostile'] .summary\").textContent").await;
    assert_eq!(s, json!(HOSTILE));
    assert_eq!(b.js("return document.querySelectorAll('main script, main b').length").await, json!(0));
    assert!(text_of(&b, "#alerts tr[data-alert-id='a-hostile']").await.contains("其他"));
    // 5,000 characters are cut to 200 and an ellipsis; the control character is gone.
    let long = b.js("return document.querySelector(\"tr[data-alert-id='a-long'] .summary\").textContent").await;
    let long = long.as_str().unwrap().to_string();
    assert_eq!(long.chars().count(), 201, "{long}");
    assert!(long.starts_with("LONG- 长长") && long.ends_with('…'), "{long}");
    let width = b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1").await;
    assert_eq!(width, json!(true), "a long summary does not widen the page");
    clean(&b, "alerts").await;
    b.screenshot("hqweb-03-alerts").await;

    // A store's page: its KPI history as small line charts, and its alerts (resolved ones too).
    b.click("#alerts tr[data-alert-id='a-hostile'] a").await;
    b.find("#kpi-charts").await;
    assert_eq!(b.path().await, "/stores/s-beijing");
    assert_eq!(text_of(&b, "#latest-day").await, "2026-02-28");
    let charts = b.js("return document.querySelectorAll('#kpi-charts .kpi svg').length").await;
    assert_eq!(charts, json!(14));
    let dots = b.js("return document.querySelectorAll(\"[data-kpi='csat_mean'] circle\").length").await;
    assert_eq!(dots, json!(3), "one point per day");
    assert_eq!(text_of(&b, "[data-kpi='csat_mean'] .latest").await, "4.62");
    assert_eq!(text_of(&b, "[data-kpi='response_minutes_median'] .latest").await, "12.5");
    assert!(b.exists("[data-kpi='response_minutes_median'] line.goal").await, "the 15-minute goal line");
    let ids = b.js("return [...document.querySelectorAll('#alerts tbody tr')].map(r => r.dataset.alertId)").await;
    assert_eq!(ids, json!(["a-answered", "a-hostile", "a-resolved"]), "open first (due order), then resolved");
    clean(&b, "store page").await;
    b.screenshot("hqweb-04-store").await;

    // A tablet in portrait: the comparison still fits its width (the table scrolls inside its frame).
    b.viewport(800, 1280).await;
    b.go("/stores").await;
    b.find("#chart-nps").await;
    assert_eq!(b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1").await, json!(true));
    b.screenshot("hqweb-05-stores-tablet").await;

    // English is one tap away.
    b.click("a[href^='/lang/en']").await;
    b.find("#stores").await;
    assert_eq!(text_of(&b, "h1").await, "Store comparison");
    b.click("a[href^='/lang/zh']").await;
    b.find("#stores").await;

    // Logout ends the session.
    b.click("#logout").await;
    b.find("#flash-ok").await;
    assert_eq!(b.path().await, "/login?ok=logged_out");
    b.go("/alerts").await;
    b.find("#login-form").await;
    clean(&b, "logout").await;
    b.close().await;
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_hostile_requests_and_the_cli() {
    let db = PgDb::create().await;
    seed(&db.conn).await;
    let web = Web::start(&db.conn).await;
    let pg = db.client().await;

    // `hq-analyst add` prints a one-time password that logs in, but only to the password page.
    let one_time = web.add_analyst("bo");
    let (code, _, err) = web.cli(&["hq-analyst", "add", "bo"]);
    assert_eq!(code, 65, "a second 'bo' is refused: {err}");
    let (code, _, err) = web.cli(&["hq-analyst", "add", "bad name<"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("username"), "{err}");
    let (jar, csrf) = web.login("bo", &one_time).await.expect("the printed password logs in");
    let r = web.get("/stores", &jar).await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/password"));
    // The password change needs the CSRF token.
    let change = [("old_password", one_time.as_str()), ("new_password", "Bo-Permanent-Pw-1"), ("new_password_again", "Bo-Permanent-Pw-1")];
    let r = web.client.post(web.url("/password")).header("cookie", &jar).form(&change).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let mut with_csrf = change.to_vec();
    with_csrf.push(("csrf", csrf.as_str()));
    let r = web.client.post(web.url("/password")).header("cookie", &jar).form(&with_csrf).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?ok=password_changed"));
    assert!(web.login("bo", &one_time).await.is_err(), "the one-time password is spent");
    assert_eq!(web.get("/stores", &jar).await.status(), StatusCode::SEE_OTHER, "the change ended the old session");
    let (jar, csrf) = web.login("bo", "Bo-Permanent-Pw-1").await.expect("login");

    // Pages carry the security headers, the session's CSRF token, and nothing from another host.
    let r = web.get("/stores", &jar).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("content=\"{csrf}\"")));
    assert!(!html.contains("https://") && !html.contains("src=\"http"), "a page names another host");
    let r = web.get("/alerts", &jar).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;") && !html.contains(HOSTILE), "not escaped");

    // A POST without the token, with a wrong one, or from another origin is refused and the
    // session lives on.
    for (form, origin) in
        [(vec![("next", "/")], None), (vec![("csrf", "0000")], None), (vec![("csrf", csrf.as_str())], Some("https://evil.example"))]
    {
        let mut q = web.client.post(web.url("/logout")).header("cookie", &jar).form(&form);
        if let Some(o) = origin {
            q = q.header("origin", o);
        }
        let r = q.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?} {origin:?}");
        assert!(r.text().await.unwrap().contains("id=\"error-message\""), "a friendly page");
    }
    let r = web.client.post(web.url("/logout")).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a POST without a body is refused too");
    assert_eq!(web.get("/stores", &jar).await.status(), StatusCode::OK, "still logged in");

    // This is not the store: its API and its pages are not here, with or without HQ's session.
    for path in ["/api/v1/cases", "/api/v1/auth/login", "/today/x", "/manager/users", "/metrics"] {
        let r = web.get(path, &jar).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = web.client.get(web.url("/api/v1/cases")).bearer_auth("a-store-token").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A store's cookie means nothing here.
    let r = web.get("/stores", "sb_session=0123456789abcdef").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Hostile requests get a page, never a 500.
    for (path, want) in [
        ("/stores/%3Cscript%3E", StatusCode::NOT_FOUND),
        ("/stores/no-such-store", StatusCode::NOT_FOUND),
        (&format!("/stores/{}", "x".repeat(5000)), StatusCode::NOT_FOUND),
        ("/stores?sort=%00", StatusCode::BAD_REQUEST),
        ("/stores?sort=%3Cscript%3E&dir=sideways", StatusCode::OK),
        ("/login?u=%3Cscript%3Ealert(1)%3C/script%3E&err=%3Cx%3E", StatusCode::OK),
    ] {
        let r = web.get(path, &jar).await;
        assert_eq!(r.status(), want, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("<script>alert"), "{path} echoes markup");
    }
    let r = web.client.post(web.url("/login")).form(&[("username", "bo\u{0}"), ("password", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a NUL in a form is refused before PostgreSQL sees it");
    let r = web.client.post(web.url("/login")).body(vec![b'a'; 64 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "read to the end, then refused with a page");
    // Past the drain cap the connection may close before the answer is read: a 413 or a closed
    // connection, never a 5xx, and the server serves on. `Connection: close` keeps that socket
    // out of the client's pool: reused, the next GET failed once with a broken pipe.
    let big = web.client.post(web.url("/logout")).header("cookie", &jar).header("connection", "close");
    match big.body(vec![b'a'; 3 * 1024 * 1024]).send().await {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_eq!(web.get("/stores", &jar).await.status(), StatusCode::OK, "still serving, still logged in");
    let r = web.client.post(web.url("/login")).form(&[("username", "x".repeat(10_000).as_str()), ("password", "x")]).send().await.unwrap();
    assert!(r.headers()["location"].to_str().unwrap().contains("err=bad_credentials"));

    // Login throttling, as at the store: after 5 failures even the right password waits.
    for _ in 0..5 {
        let to = web.login("bo", "wrong-password").await.unwrap_err();
        assert!(to.contains("err=bad_credentials"), "{to}");
    }
    let to = web.login("bo", "Bo-Permanent-Pw-1").await.unwrap_err();
    assert!(to.contains("err=throttled"), "{to}");

    // The audit trail: logins (failed and ok), the password change, the CLI's add; no secrets.
    let rows = pg.query("SELECT analyst, action, outcome FROM hq_analyst_audit ORDER BY id", &[]).await.unwrap();
    let log: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    for want in [("bo", "analyst.add", "ok"), ("bo", "auth.login", "ok"), ("bo", "auth.password", "ok"), ("bo", "auth.login", "failed")] {
        assert!(log.iter().any(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()) == want), "{want:?} not in {log:?}");
    }
    let all: String = pg
        .query("SELECT string_agg(t::text, ' ') FROM hq_analyst_audit t", &[])
        .await
        .unwrap()
        .first()
        .and_then(|r| r.get::<_, Option<String>>(0))
        .unwrap_or_default();
    assert!(!all.contains(&one_time) && !all.contains("Bo-Permanent-Pw-1") && !all.contains(&jar[13..]), "{all}");
    let hashes: i64 =
        pg.query_one("SELECT COUNT(*) FROM hq_analyst_sessions WHERE token_hash = $1", &[&sha(&jar[13..])]).await.unwrap().get(0);
    assert_eq!(hashes, 1, "the session is stored as the SHA-256 of its token");

    // `hq-analyst list` and `disable`: a disabled analyst's session ends at once.
    let (code, out, _) = web.cli(&["hq-analyst", "list"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("bo") && l.contains("active") && l.contains("王分析")), "{out}");
    let (code, out, err) = web.cli(&["hq-analyst", "disable", "bo"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(web.get("/stores", &jar).await.status(), StatusCode::SEE_OTHER, "disabled: the session is gone");
    let (code, _, _) = web.cli(&["hq-analyst", "disable", "nobody"]);
    assert_eq!(code, 65);
    let (code, out, _) = web.cli(&["hq-analyst", "list"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("bo") && l.contains("disabled")), "{out}");

    // check-config reports the [web] section.
    let (code, out, err) = web.cli(&["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("web        https://127.0.0.1:0") && out.contains("sessions 60 min"), "{out}");
    web.stop().await;
}

/// PostgreSQL stopping under hq-web: every page, and the login, answer a friendly 503 at once
/// (never a 500, never a hang), and the pages come back by themselves when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_a_friendly_page_and_comes_back() {
    let pg = tokio::task::spawn_blocking(PrivatePg::start_new).await.expect("initdb");
    let conn = pg.conn("postgres");
    seed(&conn).await;
    let web = Web::start(&conn).await;
    let one_time = web.add_analyst("cy");
    let (jar, _) = web.activate("cy", &one_time, "Cy-Permanent-Pw-1").await;
    assert_eq!(web.get("/stores", &jar).await.status(), StatusCode::OK);

    // pg_ctl waits: off the async workers, which keep serving hq-web meanwhile.
    tokio::task::block_in_place(|| pg.stop("fast"));
    for path in ["/stores", "/alerts", "/stores/s-beijing", "/password"] {
        let t0 = Instant::now();
        let r = web.get(path, &jar).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("id=\"error-message\"") && body.contains("总部数据库暂时无法访问"), "{path}: {body}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{path} took {:?}", t0.elapsed());
    }
    let to = web.login("cy", "Cy-Permanent-Pw-1").await.unwrap_err();
    assert!(to.contains("err=db"), "{to}");

    tokio::task::block_in_place(|| pg.start());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = web.get("/stores", &jar).await.status();
        if s == StatusCode::OK {
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "hq-web did not reconnect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let html = web.get("/alerts", &jar).await.text().await.unwrap();
    assert!(html.contains("a-overdue"), "the data is back");
    web.stop().await;
}

fn sha(token: &str) -> String {
    servicebay::auth::token_hash(token)
}

/// The example config documents `[web]` and passes validation.
#[test]
fn the_example_config_has_a_web_section() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/hq.example.toml")).unwrap();
    let c = HqConfig::from_toml(&text, "hq.example.toml").expect("valid");
    assert_eq!(c.web.listen.port(), 8446);
    assert_eq!(c.web.session_ttl, Duration::from_secs(480 * 60));
    let e = HqConfig::from_toml(&text.replace("session_ttl_minutes = 480", "session_ttl_minutes = 480\nport = 1"), "x").unwrap_err();
    assert!(e.to_string().contains("port"), "{e}");
}
