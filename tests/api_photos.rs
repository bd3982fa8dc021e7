//! Photo analysis in the case flow with the real YOLOv8n weights, through the HTTPS API: upload →
//! the worker (off the async runtime) stores quality, shot guess and detections; with no damage
//! model the case goes to an advisor ("needs advisor assessment"), never a made-up finding; the
//! annotated and the privacy-blurred renders; a dark photo gets reasons an advisor can act on.

mod common;

use common::{analysis, upload};

use std::io::Cursor;

use reqwest::StatusCode;
use serde_json::json;

async fn image_of(api: &common::Api, token: &str, path: &str) -> image::RgbImage {
    let r = api.client.get(format!("{}{}", api.base, path)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgb8()
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage, r: [u32; 4]) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in r[1]..r[3] {
        for x in r[0]..r[2] {
            let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
            sum += (0..3).map(|i| (p[i] as i64 - q[i] as i64).unsigned_abs()).sum::<u64>();
            n += 3;
        }
    }
    sum as f64 / n.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_analyse_flag_and_render() {
    let Some((srv, src, _models)) = common::yolo_server().await else { return };
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, auditor) = api.user(&manager, "hq", "hq_auditor").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "赵" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "右前门刮痕" })).await;
    let case = k["id"].as_str().unwrap().to_string();

    let bus = std::fs::read(src.join("bus.jpg")).unwrap();
    let p = upload(&api, &advisor, &case, bus.clone()).await;
    assert_eq!(p["analysis"], "pending");
    let pid = p["id"].as_str().unwrap().to_string();
    let a = analysis(&api, &advisor, &pid).await;
    assert_eq!(a["status"], "done", "{a}");
    assert_eq!(a["model"], "yolov8n");
    let dets = a["detections"].as_array().unwrap();
    let roles: Vec<&str> = dets.iter().map(|d| d["role"].as_str().unwrap()).collect();
    assert!(roles.contains(&"vehicle"), "the bus is a vehicle: {roles:?}");
    assert!(roles.iter().filter(|r| **r == "pii:person").count() >= 3, "{roles:?}");
    assert_eq!(a["quality"]["ok"], true, "{a}");
    assert!(a["shot"].is_string());

    // No damage model: no finding is invented; the case waits for an advisor.
    assert_eq!(common::count_rows(srv.data_dir(), "findings"), 0);
    let (_, cv) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(cv["needs_review"], true, "{cv}");
    assert!(cv["timeline"].as_array().unwrap().iter().any(|e| e["kind"] == "needs_assessment"), "{cv}");

    // Renders: annotated for staff; blurred (heads pixelated) even for HQ auditors, who may not
    // download the original.
    let original = image::load_from_memory(&bus).unwrap().to_rgb8();
    let annotated = image_of(&api, &advisor, &format!("/api/v1/photos/{pid}/annotated")).await;
    assert_eq!(annotated.dimensions(), original.dimensions());
    assert_eq!(api.get(&format!("/api/v1/photos/{pid}"), &auditor).await.0, StatusCode::FORBIDDEN);
    let blurred = image_of(&api, &auditor, &format!("/api/v1/photos/{pid}/blurred")).await;
    assert_eq!(blurred.dimensions(), original.dimensions());
    let person = dets.iter().find(|d| d["role"] == "pii:person").unwrap();
    let b: Vec<u32> = person["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap().max(0.0) as u32).collect();
    let head = [b[0], b[1], b[2].min(original.width()), (b[1] + (b[3] - b[1]) / 6).min(original.height())];
    let changed_head = mean_abs_diff(&original, &blurred, head);
    let changed_all = mean_abs_diff(&original, &blurred, [0, 0, original.width(), original.height()]);
    eprintln!("mean |Δ| head {changed_head:.1}, whole photo {changed_all:.1}");
    assert!(changed_head > 2.0 * changed_all && changed_head > 8.0, "head {changed_head:.1} vs whole {changed_all:.1}");

    // Unknown photos: 404 on every photo route, never a render of something else.
    for route in ["analysis", "annotated", "blurred"] {
        let (s, v) = api.get(&format!("/api/v1/photos/no-such-photo/{route}"), &advisor).await;
        assert_eq!((s, v["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("not_found")), "{route}: {v}");
    }

    // A dark, empty photo: reasons an advisor can act on.
    let dark = image::RgbImage::from_pixel(800, 600, image::Rgb([12, 12, 14]));
    let mut buf = Cursor::new(Vec::new());
    dark.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    let p2 = upload(&api, &advisor, &case, buf.into_inner()).await;
    let a2 = analysis(&api, &advisor, p2["id"].as_str().unwrap()).await;
    assert_eq!(a2["quality"]["ok"], false);
    let reasons: Vec<&str> = a2["quality"]["issues"].as_array().unwrap().iter().map(|i| i["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"too_dark") && reasons.contains(&"no_vehicle"), "{a2}");
    assert!(!a2["quality"]["messages"][0].as_str().unwrap().is_empty());
    srv.stop().await;
}
