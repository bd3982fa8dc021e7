//! Seed scenario 2 through the API, in steps the workshop tests share: a scheduled case with an
//! approved estimate (a door-lock repair with its part, and a scratch), the 15 baseline shots,
//! workshop uploads, waiting for analyses, part labels rendered as pictures.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::Api;

/// The 15 checkpoint ids of assets/workshop/workshop.toml, in order.
pub fn checkpoints() -> Vec<String> {
    servicebay::domain::workshop::WorkshopTables::builtin().checkpoints.into_iter().map(|c| c.id).collect()
}

/// A case brought to `scheduled`: the customer's words (a scratch on the right-front door), an
/// advisor's finding (the right-front door lock does not work: a labour line and the DL-ACT-RF
/// part), photos waived, the estimate approved, a bay booked. Returns the case id and the estimate.
pub async fn scheduled_case(api: &Api, advisor: &str) -> (String, Value) {
    scheduled_case_n(api, advisor, 0).await
}

/// The same for the n-th car of a test (VINs are unique: only the first has one).
pub async fn scheduled_case_n(api: &Api, advisor: &str, n: u32) -> (String, Value) {
    let (s, c) = api.post("/api/v1/customers", advisor, json!({ "name": "王女士", "phone": "13900001111" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let vin = (n == 0).then_some("LSVAB4BR7JN123456");
    let plate = if n == 0 { "京A12345".to_string() } else { format!("京B{:05}", n) };
    let (s, v) = api
        .post(
            "/api/v1/vehicles",
            advisor,
            json!({ "customer_id": c["id"], "plate": plate, "vin": vin, "make": "大众", "model": "帕萨特", "mileage_km": 45210 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, k) = api
        .post("/api/v1/cases", advisor, json!({ "customer_id": c["id"], "vehicle_id": v["id"], "summary": "右前门刮痕，门锁坏了" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let id = k["id"].as_str().unwrap().to_string();
    let (s, m) = api.post(&format!("/api/v1/cases/{id}/messages"), advisor, json!({ "text": "右前门有一道划痕，大概10公分" })).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let (s, f) = api
        .post(
            &format!("/api/v1/cases/{id}/findings"),
            advisor,
            json!({ "part": "door", "position": "right_front", "damage_type": "not_working" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let (s, w) = api.post(&format!("/api/v1/cases/{id}/photos/waive"), advisor, json!({ "reason": "车间基线会拍照" })).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let (s, e) = api.post(&format!("/api/v1/cases/{id}/estimate"), advisor, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let version = e["version"].as_i64().unwrap();
    let (s, a) = api
        .post(
            &format!("/api/v1/cases/{id}/approval"),
            advisor,
            json!({ "estimate_version": version, "approved_by": "王女士", "channel": "tablet" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let slot = e["plan"]["slots"][0]["start"].as_str().expect("a free slot").to_string();
    let (s, b) = api.post(&format!("/api/v1/cases/{id}/appointment"), advisor, json!({ "start": slot })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (id, e)
}

/// Upload a workshop photo; returns (status, body).
pub async fn shoot(api: &Api, token: &str, case: &str, phase: &str, checkpoint: Option<&str>, bytes: Vec<u8>) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name("p.jpg"))
        .text("phase", phase.to_string());
    if let Some(c) = checkpoint {
        form = form.text("checkpoint", c.to_string());
    }
    let r = api
        .client
        .post(format!("{}/api/v1/cases/{case}/workshop/photos", api.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Scan a part label picture; returns (status, body).
pub async fn scan(api: &Api, token: &str, case: &str, bytes: Vec<u8>, origin: Option<&str>) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name("label.png"));
    if let Some(o) = origin {
        form = form.text("origin", o.to_string());
    }
    let r = api.client.post(format!("{}/api/v1/cases/{case}/parts", api.base)).bearer_auth(token).multipart(form).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The case's workshop view once no shot of `phase` is still being analysed.
pub async fn settled_shots(api: &Api, token: &str, case: &str, phase: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (s, v) = api.get(&format!("/api/v1/cases/{case}/workshop"), token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let list = if phase == "before" { &v["baseline"]["checkpoints"] } else { &v["qc"]["after"] };
        if !list.as_array().unwrap().iter().any(|c| c["status"] == "pending") {
            return v;
        }
        assert!(Instant::now() < deadline, "workshop photos were not analysed in time: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A PNG of a part label (GS1 DataMatrix, EAN-13, …) for the parts scan.
pub fn label_png(symbology: servicebay::vision::codes::Symbology, text: &str, module_px: u32) -> Vec<u8> {
    let img = servicebay::vision::codes::encode(symbology, text, module_px).expect("encode label");
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img).write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

/// A JPEG of `src` with the given boxes filled grey (the "repaired" picture: the damage is gone).
pub fn painted_over(src: &[u8], boxes: &[[f32; 4]]) -> Vec<u8> {
    let mut img = image::load_from_memory(src).expect("decode").to_rgb8();
    for b in boxes {
        let (x0, y0) = (b[0].max(0.0) as u32, b[1].max(0.0) as u32);
        let (x1, y1) = ((b[2] as u32).min(img.width()), (b[3] as u32).min(img.height()));
        for y in y0..y1 {
            for x in x0..x1 {
                img.put_pixel(x, y, image::Rgb([128, 128, 128]));
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Jpeg).expect("jpeg");
    out.into_inner()
}

/// The ids of the case's work-order lines of a kind (`labour` or `part`).
pub fn lines(wo: &Value, kind: &str) -> Vec<Value> {
    wo["lines"].as_array().unwrap().iter().filter(|l| l["kind"] == kind).cloned().collect()
}

/// Scenario 2 from `scheduled` to `delivered`, without a detector (vision is off in the rig: the quality gate alone passes the
/// shots, and the blurred customer copy is refused): baseline, work order, clock, a scanned part,
/// after shots, comparison, the signed report. Returns the report and the work order id.
pub async fn deliver(api: &Api, m: &str, id: &str) -> (serde_json::Value, String) {
    let bus = std::fs::read(super::models_dir().join("bus.jpg")).expect("models/bus.jpg");
    for c in checkpoints() {
        let (s, p) = shoot(api, m, id, "before", Some(&c), bus.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
    }
    let v = settled_shots(api, m, id, "before").await;
    assert_eq!(v["baseline"]["complete"], true, "{v}");
    let (s, so) = api.post(&format!("/api/v1/cases/{id}/baseline/sign"), m, json!({ "signed_by": "张先生" })).await;
    assert_eq!(s, StatusCode::CREATED, "{so}");
    let (s, wo) = api.post(&format!("/api/v1/cases/{id}/work-order"), m, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    // The manager clocks the lines here (the clock is a technician's: add one).
    let (_, tech) = api.user(m, &format!("tech-{}", &id[id.len() - 8..]), "technician").await;
    for l in lines(&wo, "labour") {
        for action in ["start", "finish"] {
            let (s, v) = api
                .post(&format!("/api/v1/work-order-lines/{}/clock", l["id"].as_str().unwrap()), &tech, json!({ "action": action }))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    }
    let label = label_png(servicebay::vision::codes::Symbology::Ean13, "6901234000016", 3);
    let (s, p) = scan(api, &tech, id, label, None).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, v) = api.post(&format!("/api/v1/cases/{id}/work-order/finish"), &tech, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for c in checkpoints() {
        let (s, p) = shoot(api, m, id, "after", Some(&c), bus.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
    }
    settled_shots(api, m, id, "after").await;
    let (s, v) = api.post(&format!("/api/v1/cases/{id}/qc/compare"), m, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, r) = api.post(&format!("/api/v1/cases/{id}/qc/report"), m, json!({ "passed": true })).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    (r, wo["id"].as_str().unwrap().to_string())
}
