//! Seed scenario 2 (维修质检) through the API with the real YOLOv8n under a dealer-style card (as
//! tests/api_measure.rs: `bus` → `part:door`, `person` → `damage:scratch`, so the people in front
//! of the bus are "scratches on the door"). How the before/after pairs are made, since no public
//! set of repair pairs exists:
//! - before: bus.jpg at every checkpoint (the door has "scratches");
//! - after: bus.jpg with the "scratch" boxes the detector found painted grey (repaired), except the
//!   front view (the original again: still detected), the rear view (zidane.jpg: another viewpoint,
//!   so a reshoot) and the tyres (not shot at all).
//!
//! Part labels are codes rendered by `vision::codes::encode` for the catalogue's DL-ACT-RF GTINs.

mod common;

use common::workshop::{checkpoints, label_png, lines, painted_over, scan, scheduled_case, settled_shots, shoot};
use reqwest::StatusCode;
use serde_json::{json, Value};
use servicebay::vision::codes::Symbology;

fn flags_of(v: &Value, kind: &str) -> Vec<Value> {
    v["items"].as_array().unwrap().iter().filter(|f| f["kind"] == kind).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_two_baseline_work_order_clock_parts_after_photos_alerts_report() {
    let Some((srv, src, _models)) = common::remap_server().await else { return };
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, tech) = api.user(&manager, "li", "technician").await;
    let (_, qc) = api.user(&manager, "zhao", "qc_inspector").await;
    let (case, estimate) = scheduled_case(&api, &advisor).await;
    let parts: Vec<&str> = estimate["plan"]["parts"].as_array().unwrap().iter().map(|p| p["part_no"].as_str().unwrap()).collect();
    assert!(parts.contains(&"DL-ACT-RF"), "the door lock needs its actuator: {estimate}");
    // Said after the estimate was approved: no work-order line will repair it (a missed issue).
    let (s, late) = api
        .post(
            &format!("/api/v1/cases/{case}/findings"),
            &advisor,
            json!({ "part": "hood", "damage_type": "dent", "note": "客户取车前补充" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{late}");

    // ---- Baseline: 15 checkpoints, the quality gate and the detector on each, the customer signs.
    let bus = std::fs::read(src.join("bus.jpg")).unwrap();
    let cps = checkpoints();
    assert_eq!(cps.len(), 15);
    let (s, e) = shoot(&api, &advisor, &case, "before", Some("roof_rack"), bus.clone()).await;
    assert_eq!((s, e["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("checkpoint")), "{e}");
    let (s, e) = shoot(&api, &advisor, &case, "after", Some("front"), bus.clone()).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("wrong_phase")), "{e}");
    // A dark, blurred shot is refused with the reason to reshoot, then retaken.
    let dark = {
        let img = image::load_from_memory(&bus).unwrap().brighten(-200).blur(6.0);
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    };
    let (s, p) = shoot(&api, &advisor, &case, "before", Some("vin_plate"), dark).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let v = settled_shots(&api, &advisor, &case, "before").await;
    let vin = &v["baseline"]["checkpoints"][0];
    assert_eq!((vin["checkpoint"].clone(), vin["status"].clone()), (json!("vin_plate"), json!("reshoot")), "{vin}");
    assert!(vin["reasons"].to_string().contains("too dark"), "{vin}");
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/baseline/sign"), &advisor, json!({ "signed_by": "王女士" })).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("baseline_incomplete")), "{e}");
    for c in &cps {
        let (s, p) = shoot(&api, &advisor, &case, "before", Some(c), bus.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
    }
    let v = settled_shots(&api, &advisor, &case, "before").await;
    let base = &v["baseline"];
    assert_eq!(base["complete"], true, "{base}");
    let front = base["checkpoints"].as_array().unwrap().iter().find(|c| c["checkpoint"] == "front").unwrap().clone();
    assert!(front["damage"].as_array().unwrap().contains(&json!({ "part": "door", "damage": "scratch" })), "{front}");
    let (s, m) = api
        .post(
            &format!("/api/v1/cases/{case}/baseline/marks"),
            &advisor,
            json!({ "checkpoint": "rear", "part": "bumper", "damage_type": "scratch" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    // The car does not enter the bay before the customer signed the baseline.
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/work-order"), &tech, json!({})).await;
    assert_eq!((s, e["error"]["missing"].clone()), (StatusCode::CONFLICT, json!(["baseline"])), "{e}");
    let (s, so) = api.post(&format!("/api/v1/cases/{case}/baseline/sign"), &advisor, json!({ "signed_by": "王女士" })).await;
    assert_eq!(s, StatusCode::CREATED, "{so}");
    assert_eq!(so["shots_sha256"].as_str().unwrap().len(), 64, "{so}");

    // ---- Work order from the approved estimate; a QC inspector cannot start it.
    let (s, _) = api.post(&format!("/api/v1/cases/{case}/work-order"), &qc, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, wo) = api.post(&format!("/api/v1/cases/{case}/work-order"), &tech, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let labour = lines(&wo, "labour");
    let part_lines = lines(&wo, "part");
    assert_eq!(labour.len(), estimate["plan"]["labour"].as_array().unwrap().len());
    assert!(labour.iter().all(|l| l["standard_hours"].as_f64().unwrap() > 0.0 && l["finding_id"].is_string()), "{wo}");
    assert_eq!(part_lines.iter().find(|l| l["code"] == "DL-ACT-RF").unwrap()["billed_origin"], "oem", "{wo}");
    let (_, c) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(c["status"], "in_repair");
    let (s, e) = api.call(reqwest::Method::DELETE, &format!("/api/v1/cases/{case}/appointment"), Some(&advisor), None).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("booking_in_use")), "{e}");

    // ---- The labour clock: one job at a time; a near-zero clock is "too short", a corrected
    // (padded) one "over standard".
    let clock = |line: &Value, action: &str| {
        let (api, tech, id) = (&api, &tech, line["id"].as_str().unwrap().to_string());
        let action = action.to_string();
        async move { api.post(&format!("/api/v1/work-order-lines/{id}/clock"), tech, json!({ "action": action })).await }
    };
    let (s, _) = clock(&labour[0], "start").await;
    assert_eq!(s, StatusCode::OK);
    if labour.len() > 1 {
        let (s, e) = clock(&labour[1], "start").await;
        assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("clock_running")), "{e}");
    }
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/work-order/finish"), &tech, json!({})).await;
    assert_eq!((s, e["error"]["missing"].clone()), (StatusCode::CONFLICT, json!(["labour"])), "{e}");
    for (i, l) in labour.iter().enumerate() {
        if i > 0 {
            let (s, v) = clock(l, "start").await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let (s, v) = clock(l, "pause").await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let (s, v) = clock(l, "start").await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let (s, v) = clock(l, "finish").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, e) = clock(l, "start").await;
        assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("line_done")), "{e}");
    }
    let (_, q) = api.get("/api/v1/workshop/flags?queue=manager", &manager).await;
    assert_eq!(flags_of(&q, "labour_short").len(), labour.len(), "seconds against hours: {q}");
    let (_, w) = api.get(&format!("/api/v1/cases/{case}/workshop"), &manager).await;
    let entry = w["work_order"]["clock"][0].clone();
    let std_h = labour[0]["standard_hours"].as_f64().unwrap();
    let end = chrono::Utc::now() - chrono::Duration::minutes(1);
    let start = end - chrono::Duration::minutes((std_h * 60.0 * 2.0) as i64);
    let (s, e) = api
        .post(
            &format!("/api/v1/clock-entries/{}/correct", entry["id"].as_str().unwrap()),
            &tech,
            json!({ "started_at": start.to_rfc3339(), "ended_at": end.to_rfc3339(), "reason": "忘记暂停" }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, e) = api
        .post(
            &format!("/api/v1/clock-entries/{}/correct", entry["id"].as_str().unwrap()),
            &manager,
            json!({ "started_at": start.to_rfc3339(), "ended_at": end.to_rfc3339(), "reason": "补录开始时间" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, q) = api.get("/api/v1/workshop/flags?queue=manager", &manager).await;
    let padded = flags_of(&q, "labour_padding");
    assert_eq!(padded.len(), 1, "{q}");
    assert_eq!(padded[0]["subject"], labour[0]["id"]);
    assert!(padded[0]["detail"].as_str().unwrap().contains("2.00×"), "{}", padded[0]);

    // ---- Parts: a GS1 DataMatrix (GTIN of the OEM actuator, serial, part number) matches the
    // billed line; the same label again is a copied serial; an equivalent part's EAN on a line
    // billed as OEM is a mismatch; a photo without a code is refused.
    let dm = label_png(Symbology::DataMatrix, "]d2010690123400004721SN-0001\u{1d}240DL-ACT-RF", 6);
    let (s, p) = scan(&api, &tech, &case, dm.clone(), None).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(
        (p["part"]["part_no"].clone(), p["part"]["origin"].clone(), p["part"]["serial"].clone()),
        (json!("DL-ACT-RF"), json!("oem"), json!("SN-0001")),
        "{p}"
    );
    assert!(p["matched_line"].is_string() && p["flags"].as_array().unwrap().is_empty(), "{p}");
    let (s, p) = scan(&api, &tech, &case, dm, None).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["flags"][0]["kind"], "duplicate_serial", "{p}");
    let ean = label_png(Symbology::Ean13, "6907654000049", 3);
    let (s, p) = scan(&api, &tech, &case, ean, None).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!((p["part"]["origin"].clone(), p["flags"][0]["kind"].clone()), (json!("equivalent"), json!("origin_mismatch")), "{p}");
    let (s, e) = scan(&api, &tech, &case, std::fs::read(src.join("zidane.jpg")).unwrap(), None).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("no_code")), "{e}");

    let (s, done) = api.post(&format!("/api/v1/cases/{case}/work-order/finish"), &tech, json!({})).await;
    assert_eq!((s, done["status"].clone()), (StatusCode::OK, json!("qc")), "{done}");

    // ---- After photos: repaired (painted) everywhere but the front (still there), the rear
    // (another scene: reshoot) and the tyres (not shot).
    let boxes: Vec<[f32; 4]> = {
        let pid = front["photo_id"].as_str().unwrap();
        let (_, a) = api.get(&format!("/api/v1/photos/{pid}/analysis"), &advisor).await;
        a["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["class_name"] == "person")
            .map(|d| serde_json::from_value(d["bbox"].clone()).unwrap())
            .collect()
    };
    assert!(!boxes.is_empty());
    let repaired = painted_over(&bus, &boxes);
    for c in &cps {
        let bytes = match c.as_str() {
            "tyres" => continue,
            "front" => bus.clone(),
            "rear" => std::fs::read(src.join("zidane.jpg")).unwrap(),
            _ => repaired.clone(),
        };
        let (s, p) = shoot(&api, &tech, &case, "after", Some(c), bytes).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
    }
    settled_shots(&api, &qc, &case, "after").await;

    // ---- QC: compare, settle the alerts (confirm, dismiss, hand to a person), sign.
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/qc/report"), &qc, json!({ "passed": true })).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("not_compared")), "{e}");
    let (s, view) = api.post(&format!("/api/v1/cases/{case}/qc/compare"), &qc, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    let pairs = view["comparison"]["pairs"].as_array().unwrap();
    let status_of = |cp: &str| pairs.iter().find(|p| p["checkpoint"] == cp).unwrap()["status"].as_str().unwrap().to_string();
    assert_eq!(
        (status_of("left"), status_of("front"), status_of("rear"), status_of("tyres")),
        ("same".into(), "same".into(), "reshoot".into(), "missing".into()),
        "{view}"
    );
    assert!(view["comparison"]["persisting"].as_array().unwrap().contains(&json!({ "part": "door", "damage": "scratch" })), "{view}");
    let alerts = view["alerts"].as_array().unwrap().clone();
    let kind = |k: &str| alerts.iter().filter(|a| a["kind"] == k).cloned().collect::<Vec<_>>();
    assert_eq!(kind("unaddressed").len(), 1, "the hood dent said after the estimate: {alerts:?}");
    assert_eq!(kind("unaddressed")[0]["subject"], late["id"]);
    assert_eq!(kind("still_detected").len(), 1, "{alerts:?}");
    let not_shot: Vec<String> = kind("not_shot").iter().map(|a| a["subject"].as_str().unwrap().to_string()).collect();
    assert_eq!(not_shot.len(), 2, "{alerts:?}");
    assert!(not_shot.contains(&"tyres".to_string()) && not_shot.contains(&"rear".to_string()));
    assert!(kind("not_shot").iter().any(|a| a["detail"].as_str().unwrap().contains("reshoot")), "{alerts:?}");
    let (s, e) = api.post(&format!("/api/v1/cases/{case}/qc/report"), &qc, json!({ "passed": true })).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("alerts_open")), "{e}");
    let settle = |flag: &Value, token: &str, decision: &str| {
        let (api, id, token, decision) = (&api, flag["id"].as_str().unwrap().to_string(), token.to_string(), decision.to_string());
        async move { api.post(&format!("/api/v1/workshop/flags/{id}"), &token, json!({ "decision": decision, "note": "已核实" })).await }
    };
    for a in kind("not_shot") {
        let (s, v) = settle(&a, &qc, "confirm").await;
        assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("confirmed")), "{v}");
    }
    let (s, v) = settle(&kind("still_detected")[0], &qc, "dismiss").await;
    assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("dismissed")), "{v}");
    let unaddressed = kind("unaddressed")[0].clone();
    let (s, v) = settle(&unaddressed, &qc, "escalate").await;
    assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("escalated")), "{v}");
    let (s, e) = settle(&unaddressed, &qc, "confirm").await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("not_yours")), "{e}");
    let (_, c) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(c["needs_review"], true, "handed to a person: {c}");
    let (s, v) = settle(&unaddressed, &manager, "confirm").await;
    assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("confirmed")), "{v}");
    let (s, e) = settle(&unaddressed, &manager, "dismiss").await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("already_settled")), "{e}");

    let (s, r) = api.post(&format!("/api/v1/cases/{case}/qc/report"), &qc, json!({ "passed": true, "note": "修复合格" })).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["pdf_sha256"].as_str().unwrap().len(), 64);
    assert!(r["body"].get("vehicle").is_none(), "no plate or VIN in the data that goes to HQ: {r}");
    let (_, c) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    assert_eq!(c["status"], "delivered", "{c}");

    // ---- The PDF: store copy with the real content; the customer's copy needs a privacy-capable
    // detector (this card has no face/person class), so it is refused, never served unblurred.
    let r2 = api.client.get(format!("{}/api/v1/cases/{case}/qc/report.pdf", api.base)).bearer_auth(&qc).send().await.unwrap();
    assert_eq!(r2.status(), StatusCode::OK);
    assert_eq!(r2.headers()["content-type"], "application/pdf");
    let pdf = r2.bytes().await.unwrap().to_vec();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qc.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let text = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().expect("pdftotext (poppler-utils)");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    for want in ["维修质检报告", "合格", "DL-ACT-RF", "京A12345", "SN-0001", "已确认", "未拍摄"] {
        assert!(text.contains(want), "{want} missing from the report:\n{text}");
    }
    // Kept beside the UI screenshots for a person to look at (README's page image comes from here).
    let keep = std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join("qc-report.pdf");
    let _ = std::fs::write(&keep, &pdf);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&pdf)), r["pdf_sha256"].as_str().unwrap());
    let (s, e) = api.get(&format!("/api/v1/cases/{case}/qc/report.pdf?copy=customer"), &advisor).await;
    assert_eq!((s, e["error"]["code"].clone()), (StatusCode::CONFLICT, json!("privacy_unavailable")), "{e}");
    let (s, _) = api.get(&format!("/api/v1/cases/{case}/qc/report.pdf"), &tech).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // ---- Everything went on the timeline, the audit log and the outbox for HQ.
    let (_, c) = api.get(&format!("/api/v1/cases/{case}"), &advisor).await;
    let kinds: Vec<String> = c["timeline"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap().to_string()).collect();
    for k in [
        "baseline_marked",
        "baseline_signed",
        "in_repair",
        "clock",
        "clock_corrected",
        "part_scanned",
        "flag_raised",
        "qc",
        "qc_compared",
        "flag_settled",
        "delivered",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let db = common::db(&dir_of(&api));
    for (kind, min) in [("work_order", 5), ("workshop_flag", 8), ("qc_report", 1)] {
        let n: i64 = db.query_row("SELECT COUNT(*) FROM outbox WHERE record_type = ?1", [kind], |r| r.get(0)).unwrap();
        assert!(n >= min, "{kind}: {n} outbox rows");
    }
    let audited: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'work_order.%' OR action LIKE 'qc.%' OR action LIKE 'baseline.%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audited >= 10, "{audited}");
    // Workshop photos never became intake findings.
    let vision: i64 =
        db.query_row("SELECT COUNT(*) FROM findings WHERE case_id = ?1 AND source = 'vision'", [&case], |r| r.get(0)).unwrap();
    assert_eq!(vision, 0);
    drop(db);
    srv.stop().await;
}

fn dir_of(api: &common::Api) -> std::path::PathBuf {
    api.data_dir.clone()
}
