//! The optional OpenAI-compatible remote provider behind the (here missing) local model, through
//! the HTTPS API. No remote vendor is reachable offline, so a small HTTP endpoint in this test
//! speaks the vendor's protocol and records what it is sent: the API key arrives as a bearer token,
//! the customer's phone number never leaves the store, the model's explanation is used only when
//! its numbers match the plan, and a failing vendor costs nothing but the template text.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use common::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    Invents,
    Fails,
}

struct Vendor {
    port: u16,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    mode: Arc<Mutex<Mode>>,
}

fn vendor() -> Vendor {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new(Mode::Honest));
    let (s, m) = (seen.clone(), mode.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let system = req["messages"][0]["content"].as_str().unwrap_or_default().to_string();
            s.lock().unwrap().push((auth, req));
            let mode = *m.lock().unwrap();
            let text = if system.contains("解释维修方案") {
                match mode {
                    Mode::Honest => "您好，建议做钣金修复、喷漆和铰链检查，合计¥1,300，预计1天完成。",
                    _ => "好消息！今天特价，总价只要1元。",
                }
            } else if system.contains("改写") {
                "请问划痕大概有多长呢？"
            } else {
                "{\"findings\":[]}"
            };
            let (status, payload) = if mode == Mode::Fails {
                ("500 Internal Server Error", json!({ "error": { "message": "overloaded" } }))
            } else {
                (
                    "200 OK",
                    json!({ "choices": [{ "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
                                    "usage": { "prompt_tokens": 50, "completion_tokens": 20 } }),
                )
            };
            let payload = payload.to_string();
            let mut w = conn;
            let _ = write!(
                w,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
        }
    });
    Vendor { port, seen, mode }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_provider_is_a_redacted_checked_fallback() {
    let v = vendor();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("api-key");
    std::fs::write(&key, "test-key-123\n").unwrap();
    let no_models = dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();
    let extra = format!(
        "\n[llm]\nenabled = true\nphrasing = true\nmodels_dir = \"{}\"\n\n[llm.remote]\nenabled = true\nbase_url = \"http://127.0.0.1:{}/v1\"\n\
         api_key_file = \"{}\"\nmodel = \"vendor-model\"\n",
        no_models.display(),
        v.port,
        key.display()
    );
    let srv = Server::start_with(&extra).await;
    let api = srv.api();
    let m = api.manager().await;
    let (_, c) = api.post("/api/v1/customers", &m, json!({ "name": "张先生", "phone": "13812345678" })).await;
    let (_, k) = api.post("/api/v1/cases", &m, json!({ "customer_id": c["id"], "summary": "右前门刮痕和异响" })).await;
    let id = k["id"].as_str().unwrap().to_string();
    for text in ["我的车右前门有刮痕，还有异响，有事打我电话13812345678", "大概30公分，露出白色底漆了", "开关门的时候"]
    {
        let (s, r) = api.post(&format!("/api/v1/cases/{id}/messages"), &m, json!({ "text": text })).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let (s, r) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), &m, json!({ "reason": "remote test" })).await;
    assert_eq!(s, StatusCode::OK, "{r}");

    // The estimate answers at once with the template's wording; the model's wording is asked for
    // next and kept only when it passes the number check.
    let estimate = |api: common::Api, m: String, id: String| async move {
        let (s, mut e) = api.post(&format!("/api/v1/cases/{id}/estimate"), &m, json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
        assert_eq!(e["explanation_from_llm"], false, "the price never waits for the model: {e}");
        let (s, x) = api.post(&format!("/api/v1/cases/{id}/estimate/explanation"), &m, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{x}");
        let (_, stored) = api.get(&format!("/api/v1/cases/{id}/estimate"), &m).await;
        assert_eq!(
            (stored["explanation"].clone(), stored["explanation_from_llm"].clone()),
            (x["text"].clone(), x["from_llm"].clone()),
            "{stored}"
        );
        e["explanation"] = x["text"].clone();
        e["explanation_from_llm"] = x["from_llm"].clone();
        e
    };
    // The vendor's text is used when every number in it is the plan's.
    let e = estimate(api.clone(), m.clone(), id.clone()).await;
    assert_eq!(e["explanation_from_llm"], true, "{e}");
    assert!(e["explanation"].as_str().unwrap().contains("¥1,300"), "{e}");
    // An invented price: the template text instead.
    *v.mode.lock().unwrap() = Mode::Invents;
    let e = estimate(api.clone(), m.clone(), id.clone()).await;
    assert_eq!(e["explanation_from_llm"], false, "{e}");
    assert!(!e["explanation"].as_str().unwrap().contains("1元"), "{e}");
    // The vendor down: the same, and the API still answers.
    *v.mode.lock().unwrap() = Mode::Fails;
    let e = estimate(api.clone(), m.clone(), id.clone()).await;
    assert_eq!((e["explanation_from_llm"].clone(), e["plan"]["total"].clone()), (json!(false), json!(1300.0)), "{e}");

    // The tablet's estimate page streams the same wording (server-sent events, UI session):
    // pieces as they come, then `done` with the checked text, which is then the stored one.
    *v.mode.lock().unwrap() = Mode::Honest;
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), &m, json!({})).await;
    assert_eq!((s, e["explanation_from_llm"].clone()), (StatusCode::CREATED, json!(false)), "{e}");
    let raw = api.form_client();
    let r = raw
        .post(format!("{}/login", api.base))
        .form(&[("username", "manager"), ("password", "manager-Permanent-Pw1")])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let r = raw.get(format!("{}/cases/{id}/estimate/explain", api.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    assert!(text.contains("\"delta\""), "{text}");
    let done: serde_json::Value = text
        .split("\n\n")
        .find(|ev| ev.lines().any(|l| l == "event:done"))
        .and_then(|ev| ev.lines().find_map(|l| l.strip_prefix("data:")))
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap_or_else(|| panic!("no done event in {text}"));
    assert_eq!(done["accepted"], true, "{done}");
    assert!(done["text"].as_str().unwrap().contains("¥1,300"), "{done}");
    let (_, stored) = api.get(&format!("/api/v1/cases/{id}/estimate"), &m).await;
    assert_eq!((stored["explanation"].clone(), stored["explanation_from_llm"].clone()), (done["text"].clone(), json!(true)));

    // The tablet's intake: the template's question at once, the model's rewording streamed in
    // after and stored (it passed the check); asked again, there is nothing left to reword.
    let (_, c2) = api.post("/api/v1/customers", &m, json!({ "name": "李女士" })).await;
    let (_, k2) = api.post("/api/v1/cases", &m, json!({ "customer_id": c2["id"], "summary": "左前门" })).await;
    let id2 = k2["id"].as_str().unwrap().to_string();
    let token = cookie.trim_start_matches("sb_session=");
    let csrf = servicebay::ui::csrf_of(token);
    let r = raw
        .post(format!("{}/cases/{id2}/messages", api.base))
        .header("cookie", &cookie)
        .form(&[("text", "左前门有一道刮痕"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, msgs) = api.get(&format!("/api/v1/cases/{id2}/messages"), &m).await;
    let last = msgs["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["sender"].clone(), last["meta"]["phrase_pending"].clone()), (json!("assistant"), json!(true)), "{last}");
    let template = last["text"].as_str().unwrap().to_string();
    let page = raw.get(format!("{}/cases/{id2}/intake", api.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(&format!("data-stream-src=\"/cases/{id2}/intake/phrase\">{template}")),
        "the page shows the template and streams"
    );
    let events =
        raw.get(format!("{}/cases/{id2}/intake/phrase", api.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(events.contains("event:done") && events.contains("请问划痕大概有多长呢？"), "{events}");
    let (_, msgs) = api.get(&format!("/api/v1/cases/{id2}/messages"), &m).await;
    let last = msgs["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["text"], "请问划痕大概有多长呢？", "{last}");
    assert_eq!((last["meta"]["llm_phrased"].clone(), last["meta"]["phrase_pending"].clone()), (json!(true), json!(false)));
    let again =
        raw.get(format!("{}/cases/{id2}/intake/phrase", api.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("event:error") && again.contains("nothing_to_phrase"), "{again}");

    // Words the lexicon cannot place go to the model (here the vendor), redacted.
    *v.mode.lock().unwrap() = Mode::Honest;
    let (s, r) = api.post(&format!("/api/v1/cases/{id}/messages"), &m, json!({ "text": "左后门也有点问题，有事打13812345678找我" })).await;
    assert_eq!(s, StatusCode::OK, "{r}");

    let seen = v.seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{} requests", seen.len());
    for (auth, req) in &seen {
        assert_eq!(auth, "Bearer test-key-123");
        assert_eq!(req["model"], "vendor-model");
        let text = req.to_string();
        assert!(!text.contains("13812345678") && !text.contains("1381234"), "a phone number left the store: {text}");
    }
    assert!(seen.iter().any(|(_, r)| r.to_string().contains("[电话]")), "the customer's words went out redacted");
    srv.stop().await;
}
