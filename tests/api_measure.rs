//! Damage measurement and the retraining export, with the real YOLOv8n weights through HTTPS.
//!
//! The registries carry no damage model with part classes, so this test gives the COCO model a
//! dealer-style card (the way a dealer plugs in a model): `bus` → `part:door`, `person` →
//! `damage:scratch`. In bus.jpg the people stand in front of the bus, so each "scratch" lies on the
//! "door" and gets a length from the door's typical size. The customer said 10 cm: far off, so the
//! case goes to a person. An advisor then measures against a marked reference, reviews every
//! finding, and `servicebay dataset export` writes the Ultralytics dataset.

mod common;

use common::{analysis, upload};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_lengths_disagreement_marked_reference_and_dataset_export() {
    let Some((srv, src, _models)) = common::remap_server().await else { return };
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, tech) = api.user(&manager, "li", "technician").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "赵" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "车门刮痕" })).await;
    let case = k["id"].as_str().unwrap().to_string();
    let (s, v) = api
        .post(&format!("/api/v1/cases/{case}/messages"), &advisor, json!({ "text": "右前门有一道划痕，大概10公分，后保险杠也有刮痕" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let p = upload(&api, &advisor, &case, std::fs::read(src.join("bus.jpg")).unwrap()).await;
    let pid = p["id"].as_str().unwrap().to_string();
    let a = analysis(&api, &advisor, &pid).await;
    assert_eq!(a["status"], "done", "{a}");

    // Photo findings lie on the door and carry a measured length. The first scratch on the door is
    // the one the customer named: one finding with two sources, the stated length kept beside it.
    let (_, fs) = api.get(&format!("/api/v1/cases/{case}/findings"), &advisor).await;
    let all = fs["items"].as_array().unwrap_or_else(|| fs.as_array().expect("findings list")).clone();
    let has = |f: &Value, s: &str| f["sources"].as_array().unwrap().contains(&json!(s));
    let vision: Vec<&Value> = all.iter().filter(|f| has(f, "vision")).collect();
    assert!(vision.len() >= 2, "{fs}");
    let on_door: Vec<&&Value> =
        vision.iter().filter(|f| f["part"] == "door" && f["measured_cm"].as_f64().is_some_and(|l| l > 10.0)).collect();
    assert!(!on_door.is_empty(), "people in front of the bus measured against the 'door': {fs}");
    let merged = all.iter().find(|f| has(f, "customer") && has(f, "vision")).expect("the customer's scratch seen on the photo");
    assert_eq!((merged["part"].clone(), merged["length_cm"].clone()), (json!("door"), json!(10.0)), "{merged}");
    assert_eq!(all.iter().filter(|f| f["part"] == "door" && has(f, "customer")).count(), 1, "one finding, not two: {fs}");
    let customer = all.iter().find(|f| f["sources"] == json!(["customer"])).expect("a finding only the customer reported");

    // Stated 10 cm vs tens of cm measured: more than 15 % apart → a person decides.
    let (_, got) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(got["needs_review"], true, "{got}");
    let timeline = got["timeline"].to_string();
    assert!(timeline.contains("more than 15 % apart"), "{timeline}");

    // An advisor marks a reference: 100 px = 10 cm → 0.1 cm/px over the finding's box diagonal.
    let f = on_door[0];
    let fid = f["id"].as_str().unwrap();
    let b: Vec<f64> = f["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let expected = (((b[2] - b[0]).powi(2) + (b[3] - b[1]).powi(2)).sqrt() * 0.1 * 2.0).round() / 2.0;
    let marked = json!({ "from": [10.0, 10.0], "to": [110.0, 10.0], "length_cm": 10.0 });
    let (s, m) = api.post(&format!("/api/v1/findings/{fid}/measure"), &advisor, marked.clone()).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert!((m["measurement"]["length_cm"].as_f64().unwrap() - expected).abs() < 0.51, "{m} vs {expected}");
    assert_eq!(
        (m["measurement"]["reference"].clone(), m["finding"]["measured_cm"].clone()),
        (json!("marked"), m["measurement"]["length_cm"].clone())
    );
    assert_eq!(m["stated_cm"], json!([10.0]));
    assert_eq!(m["needs_review"], true);
    // Bad references and the wrong role are refused; a customer finding has no box to measure.
    let (s, v) =
        api.post(&format!("/api/v1/findings/{fid}/measure"), &advisor, json!({ "from": [5, 5], "to": [5, 6], "length_cm": 10 })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("to")), "{v}");
    let (s, v) =
        api.post(&format!("/api/v1/findings/{fid}/measure"), &advisor, json!({ "from": [0, 0], "to": [9, 9], "length_cm": -1 })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("length_cm")), "{v}");
    assert_eq!(api.post(&format!("/api/v1/findings/{fid}/measure"), &tech, marked.clone()).await.0, StatusCode::FORBIDDEN);
    let cid = customer["id"].as_str().unwrap();
    assert_eq!(api.post(&format!("/api/v1/findings/{cid}/measure"), &advisor, marked.clone()).await.0, StatusCode::CONFLICT);

    // Review every photo finding: the first corrected to a dent, the rest split confirm / reject.
    let mut kept = 0;
    for (i, f) in vision.iter().enumerate() {
        let id = f["id"].as_str().unwrap();
        let body = match i {
            0 => json!({ "decision": "correct", "damage_type": "dent" }),
            i if i % 2 == 1 => json!({ "decision": "confirm" }),
            _ => json!({ "decision": "reject", "reason": "a person, not damage" }),
        };
        if body["decision"] != "reject" {
            kept += 1;
        }
        let (s, v) = api.post(&format!("/api/v1/findings/{id}/review"), &advisor, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // Exported by the CLI while the daemon runs (SQLite WAL: the export only reads).
    let data_dir = srv.data_dir().to_path_buf();

    let out = tempfile::tempdir().unwrap();
    let export = out.path().join("ds");
    let config = out.path().join("servicebay.toml");
    std::fs::write(&config, common::config_text(&data_dir, "127.0.0.1:0", "")).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_servicebay"))
        .args(["--config", config.to_str().unwrap(), "dataset", "export", "--out", export.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        String::from_utf8_lossy(&run.stdout).contains(&format!("exported 1 images with {kept} boxes")),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let yaml = std::fs::read_to_string(export.join("data.yaml")).unwrap();
    assert!(yaml.contains("0: scratch") && yaml.contains("1: dent"), "{yaml}");
    let img = image::open(export.join(format!("images/{pid}.jpg"))).unwrap();
    let orig = image::open(src.join("bus.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (orig.width(), orig.height()));
    let labels = std::fs::read_to_string(export.join(format!("labels/{pid}.txt"))).unwrap();
    let lines: Vec<&str> = labels.lines().collect();
    assert_eq!(lines.len(), kept, "{labels}");
    assert!(lines[0].starts_with("1 "), "the corrected finding is a dent: {labels}");
    for l in &lines {
        let v: Vec<f64> = l.split(' ').skip(1).map(|x| x.parse().unwrap()).collect();
        assert!(v.len() == 4 && v.iter().all(|x| (0.0..=1.0).contains(x)), "{l}");
    }
    // The export leaves the store: it is the privacy-blurred picture, not the original.
    assert_ne!(img.to_rgb8().as_raw(), orig.to_rgb8().as_raw());
    // A second export never writes over the first.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_servicebay"))
        .args(["--config", config.to_str().unwrap(), "dataset", "export", "--out", export.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(65), "{}", String::from_utf8_lossy(&again.stderr));
    srv.stop().await;
}
