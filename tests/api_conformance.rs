//! The OpenAPI document against the daemon's real behaviour: Schemathesis (pinned in
//! `scripts/conformance-venv.sh`, a venv outside the clone) generates valid and invalid requests from
//! the served `/api/v1/openapi.json` for about a minute and checks every answer: no 5xx, only
//! documented status codes, bodies that match the documented schemas, invalid data refused, and
//! authentication enforced wherever the document asks for it. The daemon is the real binary over
//! real TLS (Schemathesis verifies the appliance's own certificate), with a manager's bearer token
//! and a seeded customer, vehicle and case so that path ids sometimes hit real records.
//!
//! What is open by design is declared in the document itself, not excluded here: `GET /healthz`,
//! `GET /api/v1/openapi.json` and `POST /api/v1/auth/login` have `security: []`, and `GET /metrics`
//! has optional security (open to loopback clients, a manager's token from anywhere else).
//!
//! Environment: `SERVICEBAY_CONFORMANCE_VENV` (default `$SERVICEBAY_CACHE/venv-conformance`),
//! `SB_CONFORMANCE_SECS` (Schemathesis' time budget, default 60).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use reqwest::StatusCode;
use serde_json::json;

/// Operations left out of the run, each with its reason.
const EXCLUDED: &[(&str, &str)] = &[
    // Ends the very session the run uses; logout is covered by tests/api_roles.rs.
    ("POST /api/v1/auth/logout", "would end the run's own session"),
];

const CHECKS: &str = "not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection,ignored_auth";

fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("SERVICEBAY_CONFORMANCE_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("SERVICEBAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/servicebay"));
    cache.join("venv-conformance")
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 255) as u8, 90, (y % 255) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_daemon() {
    let st = venv().join("bin/st");
    assert!(
        st.exists(),
        "Schemathesis is not installed at {}: run scripts/conformance-venv.sh (scripts/test.sh does) \
         or set SERVICEBAY_CONFORMANCE_VENV",
        st.display()
    );
    let secs: u64 = std::env::var("SB_CONFORMANCE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);

    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(tmp.path());
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let manager = api.manager().await;

    // Records for path ids and body references to hit now and then (besides the ids Schemathesis makes up).
    let (s, c) = api.post("/api/v1/customers", &manager, json!({ "name": "周女士", "phone": "+86 138-0013-8000" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, v) = api
        .post("/api/v1/vehicles", &manager, json!({ "customer_id": c["id"], "vin": "LSVAA4182E2123456", "make": "VW", "year": 2019 }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, k) = api
        .post("/api/v1/cases", &manager, json!({ "customer_id": c["id"], "vehicle_id": v["id"], "summary": "右前门有刮痕，还有异响" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let (s, u) = api.post("/api/v1/users", &manager, json!({ "username": "adv1", "role": "advisor" })).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");

    // Findings from the customer's words (the lexicon; no model in this test) and a photo.
    let kid = k["id"].as_str().unwrap();
    let (s, t) = api.post(&format!("/api/v1/cases/{kid}/messages"), &manager, json!({ "text": "我的车右前门有刮痕，还有异响" })).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, f) = api.get(&format!("/api/v1/cases/{kid}/findings"), &manager).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let photo = common::upload(&api, &manager, kid, jpeg(320, 240)).await;
    let mut records: Vec<String> = vec![c["id"].clone(), v["id"].clone(), k["id"].clone(), photo["id"].clone()]
        .into_iter()
        .chain(f["items"].as_array().unwrap().iter().map(|x| x["id"].clone()))
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert!(records.len() >= 5, "seeded records: {records:?}");
    records.dedup();
    let (customer, vehicle, advisor) = (c["id"].as_str().unwrap(), v["id"].as_str().unwrap(), u["user"]["id"].as_i64().unwrap());
    let ids = records.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(", ");
    let config = tmp.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "# Real records for string path ids, half of the time.\n\
             [dictionaries.records]\nvalues = [{ids}]\n\n\
             [dictionaries.customers]\nvalues = [\"{customer}\"]\n\n\
             [dictionaries.vehicles]\nvalues = [\"{vehicle}\"]\n\n\
             [dictionaries.users]\nvalues = [{advisor}]\n\n\
             [parameters]\n\"path.id\" = {{ dictionary = \"records\", probability = 0.5 }}\n\
             \"body.customer_id\" = {{ dictionary = \"customers\", probability = 0.5 }}\n\
             \"body.vehicle_id\" = {{ dictionary = \"vehicles\", probability = 0.5 }}\n\
             \"body.user_id\" = {{ dictionary = \"users\", probability = 0.5 }}\n\n\
             # A body over the 64 KiB cap is refused with 413 before it is read.\n\
             [checks.negative_data_rejection]\nexpected-statuses = [400, 401, 403, 404, 409, 413, 415, 429]\n"
        ),
    )
    .unwrap();

    let base = d.base();
    let cert = d.data_dir().join("tls/cert.pem");
    let mut cmd = Command::new(&st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", &base])
        .arg("--tls-verify")
        .arg(&cert)
        .args(["-H", &format!("Authorization: Bearer {manager}")])
        .args(["--checks", CHECKS])
        .args(["--max-time", &secs.to_string()])
        // One worker: two threads in one Python process have crashed Hypothesis (an AST race in CPython 3.11).
        .args(["--workers", "1", "--request-timeout", "20"]);
    for (name, _why) in EXCLUDED {
        cmd.args(["--exclude-name", name]);
    }
    cmd.current_dir(tmp.path()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", st.display()));
    let pid = child.id();
    // A hard limit well past the time budget: a hung run fails the test instead of hanging CI.
    let hard = Duration::from_secs(secs * 3 + 120);
    let out = tokio::time::timeout(hard, tokio::task::spawn_blocking(move || child.wait_with_output())).await;
    let out = match out {
        Ok(r) => r.unwrap().expect("schemathesis output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("schemathesis ran longer than {hard:?}; killed");
        }
    };
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Shown with --nocapture, and by the harness when the test fails.
    eprintln!("{text}\nschemathesis finished in {:.0?} with {}", started.elapsed(), out.status);
    assert!(out.status.success(), "schemathesis found problems ({}); its report is above", out.status);

    // The daemon survived it.
    assert_eq!(api.call(reqwest::Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    d.stop();
}
