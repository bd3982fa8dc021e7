//! HQ's survey service in tests: an in-process `hq-survey` (library entry point, injected clock),
//! follow-up records seeded in `hq_records` exactly as `hq-ingest` stores them, the store's end of
//! the answer downlink played by an MQTT client, and a local SMS/WeChat gateway.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::{json, Value};
use servicebay::clock::Clock;
use servicebay::sync::hq::{publish_once, HqConfig};
use servicebay::sync::wire::{self, AnswerAck, AnswerBatch};

use super::hq::Rig;

pub const STORE_NAME: &str = "星海汽车服务（浦东店）";

// ---- the service under test --------------------------------------------------------------------

/// One in-process `hq-survey` (its library entry point, with an injected clock).
pub struct Survey {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), servicebay::hq::survey::SurveyError>>>,
}

/// The HQ config text for a survey service on `port` (`extra` may add keys to `[survey]` and more
/// sections after it).
pub fn survey_toml(rig: &Rig, name: &str, port: u16, extra: &str) -> String {
    let base = std::fs::read_to_string(rig.hq.config(name, &rig.broker, &rig.pki, &rig.db.conn)).expect("hq config");
    let dir = rig.root.join("survey-tls");
    format!(
        "{base}\n[survey]\nbase_url = \"https://localhost:{port}\"\nlisten = \"127.0.0.1:{port}\"\n\
         tls_cert = \"{c}\"\ntls_key = \"{k}\"\n{extra}\n",
        c = dir.join("cert.pem").display(),
        k = dir.join("key.pem").display(),
    )
}

impl Survey {
    pub async fn start(rig: &Rig, name: &str, clock: &Clock, extra: &str) -> Survey {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Survey::start_on(rig, name, clock, extra, listener).await
    }

    /// On a listener bound beforehand (a store's config names the address first).
    pub async fn start_on(rig: &Rig, name: &str, clock: &Clock, extra: &str, listener: tokio::net::TcpListener) -> Survey {
        let port = listener.local_addr().expect("addr").port();
        let cfg = HqConfig::from_toml(&survey_toml(rig, name, port, extra), "test").expect("survey config");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(servicebay::hq::survey::run(cfg, clock.clone(), listener, async move {
            let _ = rx.await;
        }));
        let base = format!("https://localhost:{port}");
        let cert = rig.root.join("survey-tls/cert.pem");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if cert.exists() {
                let c = client(&cert);
                if c.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                    return Survey { base, client: c, stop: Some(tx), task: Some(task) };
                }
            }
            assert!(!task.is_finished(), "hq-survey stopped during start-up");
            assert!(Instant::now() < deadline, "hq-survey did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(60), t).await.expect("hq-survey stops").expect("join");
            assert!(r.is_ok(), "hq-survey ended with {r:?}");
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.expect("GET");
        (r.status(), r.text().await.unwrap_or_default())
    }

    /// POST a urlencoded body as the page's own form would (same Origin).
    pub async fn post(&self, path: &str, body: String) -> (StatusCode, String, Option<String>) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &self.base)
            .body(body)
            .send()
            .await
            .expect("POST");
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        (r.status(), r.text().await.unwrap_or_default(), loc)
    }

    /// The CSRF token of the survey page of `token`.
    pub async fn csrf(&self, token: &str) -> String {
        let (s, html) = self.get(&format!("/s/{token}")).await;
        assert_eq!(s, StatusCode::OK, "{html}");
        field(&html, "csrf").unwrap_or_else(|| panic!("no csrf field in {html}"))
    }
}

/// A client that trusts exactly the survey service's certificate and shows each redirect.
pub fn client(cert: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(cert).expect("cert");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The value of the hidden input `name` in a page.
pub fn field(html: &str, name: &str) -> Option<String> {
    let pat = format!("name=\"{name}\" value=\"");
    let i = html.find(&pat)? + pat.len();
    Some(html[i..].split('"').next()?.to_string())
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- seeding follow-ups as hq-ingest stores them -------------------------------------------------

pub static SEQ: AtomicI64 = AtomicI64::new(1);

#[derive(Clone)]
pub struct FollowUp {
    pub store: &'static str,
    pub id: String,
    pub token: String,
    pub status: &'static str,
    pub lang: &'static str,
    pub due_at: String,
    pub channels: Vec<&'static str>,
    pub phone: Option<&'static str>,
    pub version: i64,
}

impl FollowUp {
    pub fn new(store: &'static str, name: &str) -> FollowUp {
        let token = hex::encode(rand::random::<[u8; 18]>());
        FollowUp {
            store,
            id: format!("fu-{name}-{}", &token[..6]),
            token,
            status: "pending",
            lang: "zh-CN",
            due_at: "2020-01-01T00:00:00.000Z".into(),
            channels: vec![],
            phone: None,
            version: 1,
        }
    }

    pub fn body(&self) -> Value {
        json!({
            "id": self.id, "case_id": format!("case-{}", self.id), "store_name": STORE_NAME,
            "delivered_at": "2025-12-30T02:00:00.000Z", "due_at": self.due_at,
            "token_hash": servicebay::hq::survey_store::token_hash(&self.token),
            "status": self.status, "lang": self.lang,
            "questions": [
                { "finding_id": "f-door", "label_zh": "右前门开关门异响", "label_en": "noise when the front right door opens" },
                { "finding_id": "f-scratch", "label_zh": "右前门刮痕", "label_en": "scratch on the front right door" }
            ],
            "channels": self.channels,
            "contact": self.phone.map(|p| json!({ "phone": p })),
            "version": self.version
        })
    }

    /// Upsert this version as `hq-ingest` would (a newer sequence wins).
    pub async fn put(&self, pg: &tokio_postgres::Client) {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        pg.execute(
            "INSERT INTO hq_records (store_id, record_type, record_id, version, seq, at, body)
             VALUES ($1, 'follow_up', $2, $3, $4, '2025-12-30T02:00:00.000Z', $5::text::jsonb)
             ON CONFLICT (store_id, record_type, record_id) DO UPDATE
                SET version = excluded.version, seq = excluded.seq, body = excluded.body WHERE hq_records.seq < excluded.seq",
            &[&self.store, &self.id, &self.version, &seq, &self.body().to_string()],
        )
        .await
        .expect("seed follow_up");
    }

    pub fn path(&self) -> String {
        format!("/s/{}", self.token)
    }
}

/// A complete, valid answer form.
pub fn answer_form(csrf: &str, csat: u8, nps: u8, comment: &str) -> String {
    format!("csrf={csrf}&csat={csat}&nps={nps}&fixed%3Af-door=no&fixed%3Af-scratch=yes&comment={}", enc(comment))
}

pub async fn count(pg: &tokio_postgres::Client, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
    pg.query_one(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

pub async fn answers_of(pg: &tokio_postgres::Client, store: &str) -> i64 {
    count(pg, "SELECT COUNT(*) FROM hq_survey_answers WHERE store_id = $1", &[&store]).await
}

pub async fn downlink_of(pg: &tokio_postgres::Client, store: &str) -> i64 {
    count(pg, "SELECT COUNT(*) FROM hq_downlink WHERE store_id = $1", &[&store]).await
}

pub async fn acked(pg: &tokio_postgres::Client, store: &str) -> i64 {
    count(pg, "SELECT COALESCE((SELECT acked_seq FROM hq_downlink_state WHERE store_id = $1), -1)", &[&store]).await
}

// ---- the store's end of the downlink, played by an MQTT client ------------------------------------

/// Every answer batch published for `store` (re-subscribing after a broker restart), and how
/// many times it has (re)subscribed.
pub fn answer_batches(cfg: &HqConfig, store: &str) -> (Arc<Mutex<Vec<AnswerBatch>>>, Arc<AtomicI64>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscribed = Arc::new(AtomicI64::new(0));
    let sub = subscribed.clone();
    let mut o = cfg.link.options(&format!("store-end-{store}")).expect("options");
    o.set_clean_start(true);
    let (client, mut ev) = AsyncClient::new(o, 16);
    let (s, topic) = (seen.clone(), servicebay::sync::topics::answers(store));
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(topic.clone(), QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    sub.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let b = wire::decode_answers(&p.payload).expect("HQ's answer batches decode");
                    s.lock().unwrap().push(b);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    (seen, subscribed)
}

pub async fn wait_until<F: Fn() -> bool>(what: &str, within: Duration, f: F) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_pg(pg: &tokio_postgres::Client, what: &str, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)], want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count(pg, sql, params).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {n}, want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn ack(cfg: &HqConfig, store: &str, applied_seq: i64) {
    let a = AnswerAck { v: wire::WIRE_VERSION, store_id: store.into(), applied_seq };
    publish_once(cfg, &servicebay::sync::topics::answers_ack(store), wire::encode_answer_ack(&a), true).await.expect("publish ack");
}

pub async fn status(cfg: &HqConfig, store: &str, state: &str) {
    let s = json!({ "v": 1, "store_id": store, "state": state, "at": "2026-01-01T00:00:00Z" });
    publish_once(cfg, &servicebay::sync::topics::status(store), s.to_string().into_bytes(), true).await.expect("publish status");
}

pub fn seqs(b: &Arc<Mutex<Vec<AnswerBatch>>>) -> Vec<Vec<i64>> {
    b.lock().unwrap().iter().map(|x| x.answers.iter().map(|a| a.seq).collect()).collect()
}

// ---- the SMS/WeChat gateway -------------------------------------------------------------------------

/// What the gateway received: (Idempotency-Key, JSON body, status it answered).
pub type Calls = Arc<Mutex<Vec<(String, Value, u16)>>>;

/// A local SMS/WeChat gateway: answers 503 to the first two calls of each invitation (by its
/// Idempotency-Key) and 200 after; always 500 for the phone number 13900000009.
pub fn gateway() -> (u16, Calls) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut key, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("idempotency-key:") {
                    key = line["idempotency-key:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut calls = c.lock().unwrap();
            let before = calls.iter().filter(|(k, _, _)| *k == key).count();
            let status = if v["phone"] == "13900000009" {
                500
            } else if before < 2 {
                503
            } else {
                200
            };
            calls.push((key, v, status));
            drop(calls);
            let reason = match status {
                200 => "OK",
                500 => "Internal Server Error",
                _ => "Service Unavailable",
            };
            let mut w = conn;
            let _ = write!(w, "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
        }
    });
    (port, calls)
}

pub fn notify_section(port: u16, max_attempts: u32) -> String {
    format!(
        "\n[notify]\nwebhook_url = \"http://127.0.0.1:{port}/send\"\ntemplate_zh = \"【{{store}}】请评价本次服务：{{url}}\"\n\
         template_en = \"{{store}}: please rate our service: {{url}}\"\ninterval_secs = 1\nmax_attempts = {max_attempts}\ntimeout_secs = 5\n"
    )
}
