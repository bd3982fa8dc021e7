//! HQ → store: signed bundles applied atomically and reported; hostile messages on every topic
//! refused without harm; the topic tree is exactly the documented one. Real daemon, real private
//! Mosquitto over TLS, real `hq-ingest`, `hq-keygen` and `hq-publish` commands, real PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hq::{assert_exact, produce, wait_synced, Rig};
use reqwest::StatusCode;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::{json, Value};
use servicebay::sync::hq::{publish_once, HqConfig};
use servicebay::sync::wire::{self, BundleKind};

fn servicebay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_servicebay")).args(args).output().expect("run servicebay")
}

/// Every (topic, retained) seen under servicebay/v1/#.
fn sniff(cfg: &HqConfig) -> Arc<Mutex<BTreeSet<String>>> {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let mut o = cfg.link.options("sniffer").expect("options");
    o.set_max_packet_size(Some(300 * 1024 * 1024));
    let (client, mut ev) = AsyncClient::new(o, 16);
    let s = seen.clone();
    tokio::spawn(async move {
        let _ = client.subscribe("servicebay/v1/#", QoS::AtLeastOnce).await;
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    s.lock().unwrap().insert(String::from_utf8_lossy(&p.topic).into_owned());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    seen
}

async fn status(api: &common::Api, token: &str) -> Value {
    let (s, v) = api.get("/api/v1/sync/status", token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn wait_for(api: &common::Api, token: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = status(api, token).await;
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seed's conversation, then an estimate: its total.
async fn seed_total(api: &common::Api, token: &str) -> f64 {
    let (_, c) = api.post("/api/v1/customers", token, json!({ "name": "张先生" })).await;
    let (_, k) = api.post("/api/v1/cases", token, json!({ "customer_id": c["id"], "summary": "右前门刮痕和异响" })).await;
    let id = k["id"].as_str().expect("case id").to_string();
    for text in ["我的车右前门有刮痕，还有异响", "大概30公分，露出白色底漆了", "开关门的时候"] {
        let (s, v) = api.post(&format!("/api/v1/cases/{id}/messages"), token, json!({ "text": text })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), token, json!({ "reason": "sync test" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), token, json!({ "parts_choice": "oem" })).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    e["plan"]["total"].as_f64().expect("total")
}

fn rates_with(rate: u32) -> String {
    servicebay::catalog::Catalog::builtin_text("rates.toml").expect("rates").replace(
        "rates = { body = 200, paint = 200, mechanical = 200,",
        &format!("rates = {{ body = {rate}, paint = {rate}, mechanical = {rate},"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_apply_and_bad_ones_are_refused() {
    let mut r = Rig::new().await;
    r.broker.start();
    let hq_cfg_path = r.worker("w1");
    let hq_cfg = HqConfig::from_file(&hq_cfg_path).expect("hq config");
    let topics_seen = sniff(&r.client_config("sniffer"));
    let root = r.root.clone();
    let root = root.as_path();

    // HQ's signing key, made by the real command.
    let keys = root.join("keys");
    let out = servicebay(&["hq-keygen", "--out", keys.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(keys.join("hq-signing.pub")).expect("pub").trim().to_string();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&public));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(keys.join("hq-signing.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!servicebay(&["hq-keygen", "--out", keys.to_str().unwrap()]).status.success(), "never overwrites a key");

    let store = "store-bundles";
    let (mut d, api, m) = r.store(store, Some(&public)).await;
    wait_for(&api, &m, "connects", |v| v["connected"] == true).await;
    assert_eq!(seed_total(&api, &m).await, 1300.0, "the starter catalogue");

    // A new labour rate for every store, published by the real command.
    let rates = root.join("rates.toml");
    std::fs::write(&rates, rates_with(300)).expect("write rates");
    let publish = |version: &str, target: &str, kind: &str, files: &[&Path]| {
        let mut args = vec!["--config", hq_cfg_path.to_str().unwrap(), "hq-publish", "--key"];
        let key = keys.join("hq-signing.key");
        let key = key.to_str().unwrap().to_string();
        args.push(&key);
        let mut owned: Vec<String> =
            vec!["--kind".into(), kind.into(), "--version".into(), version.into(), "--target".into(), target.into()];
        owned.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(owned);
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        servicebay(&refs)
    };
    let out = publish("1", "all", "labour_rates", &[rates.as_path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = wait_for(&api, &m, "labour_rates v1 applied", |v| v["bundles"]["labour_rates"]["version"] == 1).await;
    assert_eq!(st["bundles"]["labour_rates"]["target"], "all");
    let hq_total = seed_total(&api, &m).await;
    assert!(hq_total > 1300.0, "prices now come from HQ's higher rates: {hq_total}");

    // Same version, different content: refused, the applied one stays.
    std::fs::write(&rates, rates_with(100)).expect("write rates");
    assert!(publish("1", "all", "labour_rates", &[rates.as_path()]).status.success());
    let st = wait_for(&api, &m, "stale version refused", |v| v["bundles_rejected"].as_u64() >= Some(1)).await;
    assert!(st["recent_rejections"][0]["reason"].as_str().unwrap().contains("not newer"), "{st}");
    // A catalogue that does not validate (a store without rates): refused.
    let broken = root.join("broken").join("rates.toml");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, "version = 9\n").unwrap();
    assert!(publish("2", "store-bundles", "labour_rates", &[broken.as_path()]).status.success());
    let st = wait_for(&api, &m, "invalid catalogue refused", |v| v["bundles_rejected"].as_u64() >= Some(2)).await;
    assert!(st["recent_rejections"][0]["reason"].as_str().unwrap().contains("catalogue"), "{st}");
    // A bundle for another store never reaches this one.
    std::fs::write(&rates, rates_with(999)).expect("write rates");
    assert!(publish("3", "store-other", "labour_rates", &[rates.as_path()]).status.success());
    // Wrong files for the kind are refused by hq-publish itself.
    assert!(!publish("4", "all", "price_list", &[rates.as_path()]).status.success());

    // Signed by another key / targeted elsewhere / corrupt / an ack from nowhere: refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let files: BTreeMap<String, Vec<u8>> = [("rates.toml".to_string(), rates_with(1).into_bytes())].into();
    let forged = wire::seal_bundle(&other, BundleKind::LabourRates, 50, "all", &files).unwrap();
    let hq_key = wire::parse_signing_key(&std::fs::read_to_string(keys.join("hq-signing.key")).unwrap()).unwrap();
    let misrouted = wire::seal_bundle(&hq_key, BundleKind::LabourRates, 51, "store-other", &files).unwrap();
    let mut flipped = wire::seal_bundle(&hq_key, BundleKind::LabourRates, 52, "all", &files).unwrap();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let bomb = wire::gzip(&vec![b'{'; 300 * 1024 * 1024]);
    for (topic, payload) in [
        ("servicebay/v1/all/config", forged),
        ("servicebay/v1/all/config", misrouted),
        ("servicebay/v1/store-bundles/config", flipped),
        ("servicebay/v1/store-bundles/config", b"{\"v\":1}".to_vec()),
        ("servicebay/v1/store-bundles/config", bomb),
    ] {
        publish_once(&hq_cfg, topic, payload, false).await.expect("publish");
    }
    let st = wait_for(&api, &m, "forgeries refused", |v| v["bundles_rejected"].as_u64() >= Some(7)).await;
    let reasons: Vec<String> =
        st["recent_rejections"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap().to_string()).collect();
    assert!(reasons.iter().any(|r| r.contains("signature")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("targets 'store-other'")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("too large")), "{reasons:?}");
    assert_eq!(st["bundles"]["labour_rates"]["version"], 1, "{st}");
    assert_eq!(seed_total(&api, &m).await, hq_total, "nothing forged was applied");

    // A detector model, imported at HQ without Python and sent down (tens of MB through MQTT).
    if let Some(models) = common::vision_models() {
        let hq_models = root.join("hq-models");
        let out = servicebay(&[
            "--models",
            hq_models.to_str().unwrap(),
            "model",
            "import",
            models.join("yolov8n.onnx").to_str().unwrap(),
            "--name",
            "damage-v2",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = publish(
            "1",
            "store-bundles",
            "detector_model",
            &[hq_models.join("damage-v2.safetensors").as_path(), hq_models.join("damage-v2.toml").as_path()],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        wait_for(&api, &m, "detector applied", |v| v["bundles"]["detector_model"]["version"] == 1).await;
        assert!(d.data_dir().join("bundles/detector_model/current/damage-v2.safetensors").exists());
    }

    // Bundles survive a restart: the applied rates are still in force.
    d.stop();
    d.start();
    d.wait_ready().await;
    let st = status(&api, &m).await;
    assert_eq!(st["bundles"]["labour_rates"]["version"], 1, "{st}");
    assert_eq!(seed_total(&api, &m).await, hq_total);

    // The store's data still reaches HQ, exactly.
    let pg = r.db.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(60)).await;
    assert_exact(&pg, store, &d.data_dir()).await;
    let bundles: String = pg.query_one("SELECT bundles::text FROM hq_stores WHERE store_id = $1", &[&store]).await.unwrap().get(0);
    let bundles: Value = serde_json::from_str(&bundles).unwrap();
    assert_eq!(bundles["labour_rates"], 1, "HQ sees the applied version in the store's status");

    // The topic tree is the documented one, and nothing else.
    let seen = topics_seen.lock().unwrap().clone();
    let want: BTreeSet<String> = [
        "servicebay/v1/store-bundles/events",
        "servicebay/v1/store-bundles/ack",
        "servicebay/v1/store-bundles/status",
        // The store says where the survey-answer downlink stands at every connect.
        "servicebay/v1/store-bundles/answers/ack",
        "servicebay/v1/store-bundles/config",
        "servicebay/v1/store-other/config",
        "servicebay/v1/all/config",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_on_every_topic_harm_nothing() {
    let mut r = Rig::new().await;
    r.broker.start();
    r.worker("w1");
    let attacker = r.client_config("attacker");
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let public = wire::encode_key(key.verifying_key().as_bytes());

    let store = "store-hostile";
    let (d, api, m) = r.store(store, Some(&public)).await;
    wait_for(&api, &m, "connects", |v| v["connected"] == true).await;

    // The store committed rows HQ has not seen yet; a forged ack for far beyond them must not
    // delete them.
    assert_eq!(produce(&api, &m, 50, 8).await, 150);
    let good = |seq: i64, after: i64| wire::Batch {
        v: 1,
        store_id: store.into(),
        after_seq: after,
        last_seq: seq,
        head_seq: seq,
        sent_at: String::new(),
        records: vec![wire::Record {
            seq,
            event_id: format!("forged-{seq}"),
            record_type: "case".into(),
            record_id: "forged".into(),
            version: 1,
            schema_version: 1,
            at: String::new(),
            body: "{}".into(),
        }],
    };
    let mut other_store = good(1, 0);
    other_store.store_id = "store-victim".into();
    let oversized: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let events = format!("servicebay/v1/{store}/events");
    let ack = format!("servicebay/v1/{store}/ack");
    let cases = [
        (events.clone(), b"garbage".to_vec()),
        (events.clone(), wire::gzip(b"{\"v\":1,\"store_id\":")),
        (events.clone(), wire::gzip(&vec![b' '; 40 * 1024 * 1024])),
        (events.clone(), oversized),
        (events.clone(), wire::encode_batch(&other_store)),
        (events.clone(), wire::encode_batch(&good(5, 9))), // reversed range
        ("servicebay/v1/store-victim/events".to_string(), wire::encode_batch(&good(1, 0))),
        (ack.clone(), b"\xff\xfe not json".to_vec()),
        (ack.clone(), br#"{"v":1,"store_id":"store-other","acked_seq":100}"#.to_vec()),
        (ack.clone(), br#"{"v":1,"store_id":"store-hostile","acked_seq":1000000}"#.to_vec()),
        (format!("servicebay/v1/{store}/status"), b"not a status".to_vec()),
        (format!("servicebay/v1/{store}/config"), b"\x1f\x8b not really gzip".to_vec()),
        ("servicebay/v1/all/config".to_string(), wire::gzip(br#"{"v":1,"manifest":"{}","signature":"AAAA","files":{}}"#)),
        // Survey answers: not JSON, for another store, a gap, an unknown task, a huge batch.
        (format!("servicebay/v1/{store}/answers"), b"\x00\x01 not json".to_vec()),
        (format!("servicebay/v1/{store}/answers"), br#"{"v":1,"store_id":"store-other","answers":[]}"#.to_vec()),
        (
            format!("servicebay/v1/{store}/answers"),
            br#"{"v":1,"store_id":"store-hostile","answers":[{"seq":7,"answer_id":"a7","follow_up_id":"nope","answer":{"csat":1,"nps":0},"answered_at":"x"}]}"#.to_vec(),
        ),
        (
            format!("servicebay/v1/{store}/answers"),
            br#"{"v":1,"store_id":"store-hostile","answers":[{"seq":1,"answer_id":"a1","follow_up_id":"nope","answer":{"csat":9,"nps":0},"answered_at":"x"}]}"#.to_vec(),
        ),
        (format!("servicebay/v1/{store}/answers"), vec![b'['; 2 * 1024 * 1024]),
    ];
    for (topic, payload) in cases {
        publish_once(&attacker, &topic, payload, false).await.expect("publish");
    }
    // The forged far-ahead ack is refused and shown to the manager; rows stay.
    let st = wait_for(&api, &m, "ack conflict and refused bundles reported", |v| {
        v["ack_conflict"].is_string() && v["bundles_rejected"].as_u64() >= Some(2)
    })
    .await;
    assert!(st["ack_conflict"].as_str().unwrap().contains("database reset"), "{st}");
    assert!(st["bundles_rejected"].as_u64() >= Some(2), "{st}");
    assert!(st["bundles"].as_object().unwrap().is_empty(), "nothing applied: {st}");

    // Both sides keep working: more work, then HQ holds exactly the store's records.
    assert_eq!(produce(&api, &m, 50, 8).await, 150);
    let pg = r.db.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(60)).await;
    assert_exact(&pg, store, &d.data_dir()).await;
    assert_eq!(r.hq.exited("w1"), None, "ingest is alive:\n{}", r.hq.log("w1"));
    // The bad answers were skipped, never stored; the one for an unknown task moved the downlink on
    // (it would block every later answer), the gap did not.
    let db = common::db(&d.data_dir());
    assert_eq!(db.query_row("SELECT COUNT(*) FROM surveys", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    let applied: i64 =
        db.query_row("SELECT COALESCE((SELECT applied_seq FROM downlink_state WHERE channel = 'answers'), 0)", [], |r| r.get(0)).unwrap();
    assert_eq!(applied, 1);
    let victims: i64 = pg.query_one("SELECT COUNT(*) FROM hq_events WHERE store_id <> $1", &[&store]).await.unwrap().get(0);
    assert_eq!(victims, 0, "no batch was stored for a store that did not send it");
    let log = r.hq.log("w1");
    assert!(log.contains("refused a malformed batch") && log.contains("refused a batch for another store"), "{log}");
    let (s, _) = api.get("/healthz", &m).await;
    assert_eq!(s, StatusCode::OK);
}

/// The parts and damages the intake reads from one message in a new case.
async fn read_parts(api: &common::Api, token: &str, text: &str) -> Vec<(String, String)> {
    let (_, c) = api.post("/api/v1/customers", token, json!({ "name": "李女士" })).await;
    let (_, k) = api.post("/api/v1/cases", token, json!({ "customer_id": c["id"], "summary": "lexicon" })).await;
    let id = k["id"].as_str().expect("case id").to_string();
    let (s, v) = api.post(&format!("/api/v1/cases/{id}/messages"), token, json!({ "text": text })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (f["part"].as_str().unwrap_or("").to_string(), f["damage_type"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// A `lexicon` bundle from HQ: a new slang word is read at once (no restart) and after a restart;
/// one that drops the development sets below their floors is refused with its scores, and the
/// lexicon applied before stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lexicon_bundles_are_scored_before_they_apply() {
    let mut r = Rig::new().await;
    r.broker.start();
    let hq_cfg_path = r.worker("w1");
    let root = r.root.clone();
    let keys = root.join("keys");
    let out = servicebay(&["hq-keygen", "--out", keys.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(keys.join("hq-signing.pub")).expect("pub").trim().to_string();
    let (mut d, api, m) = r.store("store-lexicon", Some(&public)).await;
    wait_for(&api, &m, "connects", |v| v["connected"] == true).await;
    let publish = |version: &str, file: &Path| {
        let key = keys.join("hq-signing.key");
        let args = ["--config", hq_cfg_path.to_str().unwrap(), "hq-publish", "--key", key.to_str().unwrap(), "--kind", "lexicon"];
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--version", version, "--target", "all", file.to_str().unwrap()]);
        servicebay(&all)
    };
    let said = "大包围刮花了";
    let bumper = ("bumper".to_string(), "scratch".to_string());
    assert!(!read_parts(&api, &m, said).await.contains(&bumper), "not a word of the built-in lexicon");

    // A new slang word for the bumper: scored, applied, read without a restart.
    let dir = root.join("lexicon");
    std::fs::create_dir_all(&dir).unwrap();
    let parts = servicebay::intake::lexicon::Lexicon::builtin_text("parts.toml").unwrap();
    let parts = parts.replacen("parts = [\n", "parts = [\n    { word = \"大包围\", part = \"bumper\" },\n", 1);
    std::fs::write(dir.join("parts.toml"), parts).unwrap();
    let out = publish("1", &dir.join("parts.toml"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(&api, &m, "lexicon v1 applied", |v| v["bundles"]["lexicon"]["version"] == 1).await;
    assert_eq!(read_parts(&api, &m, said).await, vec![bumper.clone()]);

    // The damage words emptied: it parses, but scores far below the floors; refused, v1 stays.
    let damages = servicebay::intake::lexicon::Lexicon::builtin_text("damages.toml").unwrap();
    let damages = damages[..damages.find("damages = [").unwrap()].to_string() + "damages = []\n";
    std::fs::write(dir.join("damages.toml"), damages).unwrap();
    assert!(publish("2", &dir.join("damages.toml")).status.success());
    let st = wait_for(&api, &m, "worse lexicon refused", |v| v["bundles_rejected"].as_u64() >= Some(1)).await;
    let reason = st["recent_rejections"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("finding F1") && reason.contains("< floor 0.93"), "{st}");
    assert_eq!(st["bundles"]["lexicon"]["version"], 1, "{st}");
    assert_eq!(read_parts(&api, &m, said).await, vec![bumper.clone()], "the applied lexicon stays");

    // After a restart the applied lexicon is loaded again.
    d.stop();
    d.start();
    d.wait_ready().await;
    assert_eq!(read_parts(&api, &m, said).await, vec![bumper]);
}
