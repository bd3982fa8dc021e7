//! Workshop timing tables, printed as markdown. Not a timed test: it only reports.
//!
//! Sections:
//! - the QC turnaround: from the last after-repair shot uploaded to the QC report ready, for the 15
//!   checkpoints, through the real daemon (in-process, HTTPS, SQLCipher) with YOLOv8n under the
//!   dealer-style card of tests/api_workshop.rs; split into the analyses of the after shots, the
//!   comparison (15 viewpoint checks, per-part outcome, alerts) and the signed report (PDF);
//! - part-label decoding (`vision::codes::decode`) on clean renders and on photograph-like copies
//!   (tilt 7°, blur σ 1.2) of an EAN-13, a QR sticker and a GS1 Data Matrix.
//!
//! Run: SERVICEBAY_MODELS=/path/to/models cargo bench --bench workshop
//! Env: BENCH_RUNS (timed runs per picture, default 20; one untimed warm-up run comes first),
//! BENCH_QC_RUNS (QC turnarounds, each on a fresh case, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use serde_json::json;
use servicebay::vision::codes::{decode, encode, photograph, Symbology};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(qc_table());
    decode_table();
}

/// Seconds of each QC stage per run: (after-shot analyses, comparison, report).
async fn qc_table() {
    use common::workshop::{checkpoints, lines, painted_over, scheduled_case_n, settled_shots, shoot};
    let runs = std::env::var("BENCH_QC_RUNS").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0).unwrap_or(3);
    let Some((srv, src, _models)) = common::remap_server().await else {
        println!("QC turnaround: skipped (no models; run scripts/fetch-models.sh)");
        return;
    };
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "wang", "advisor").await;
    let (_, tech) = api.user(&manager, "li", "technician").await;
    let bus = std::fs::read(src.join("bus.jpg")).expect("bus.jpg");
    let mut rows: Vec<[f64; 3]> = Vec::new();
    for run in 0..runs {
        let (case, _) = scheduled_case_n(&api, &advisor, run as u32).await;
        for c in checkpoints() {
            assert_eq!(shoot(&api, &advisor, &case, "before", Some(&c), bus.clone()).await.0, reqwest::StatusCode::CREATED);
        }
        let v = settled_shots(&api, &advisor, &case, "before").await;
        let pid = v["baseline"]["checkpoints"][3]["photo_id"].as_str().expect("front shot").to_string();
        let (_, a) = api.get(&format!("/api/v1/photos/{pid}/analysis"), &advisor).await;
        let boxes: Vec<[f32; 4]> = a["detections"]
            .as_array()
            .map(|d| {
                d.iter().filter(|d| d["class_name"] == "person").filter_map(|d| serde_json::from_value(d["bbox"].clone()).ok()).collect()
            })
            .unwrap_or_default();
        api.post(&format!("/api/v1/cases/{case}/baseline/sign"), &advisor, json!({ "signed_by": "王女士" })).await;
        let (_, wo) = api.post(&format!("/api/v1/cases/{case}/work-order"), &tech, json!({})).await;
        for l in lines(&wo, "labour") {
            for action in ["start", "finish"] {
                api.post(&format!("/api/v1/work-order-lines/{}/clock", l["id"].as_str().unwrap_or("")), &tech, json!({ "action": action }))
                    .await;
            }
        }
        api.post(&format!("/api/v1/cases/{case}/work-order/finish"), &tech, json!({})).await;
        // Every after shot is a different picture (a repaired copy with a per-checkpoint mark), so
        // nothing is shared between the files the daemon stores and analyses.
        let cps = checkpoints();
        let mut afters = Vec::new();
        for (i, _) in cps.iter().enumerate() {
            let mut b = boxes.clone();
            b.push([10.0 + i as f32 * 4.0, 10.0, 14.0 + i as f32 * 4.0, 14.0]);
            afters.push(painted_over(&bus, &b));
        }
        for (c, bytes) in cps.iter().zip(afters) {
            assert_eq!(shoot(&api, &tech, &case, "after", Some(c), bytes).await.0, reqwest::StatusCode::CREATED);
        }
        let t0 = Instant::now();
        settled_shots(&api, &manager, &case, "after").await;
        let t1 = Instant::now();
        let (s, v) = api.post(&format!("/api/v1/cases/{case}/qc/compare"), &manager, json!({})).await;
        assert_eq!(s, reqwest::StatusCode::OK, "{v}");
        for a in v["alerts"].as_array().cloned().unwrap_or_default() {
            api.post(&format!("/api/v1/workshop/flags/{}", a["id"].as_str().unwrap_or("")), &manager, json!({ "decision": "confirm" }))
                .await;
        }
        let t2 = Instant::now();
        let (s, r) = api.post(&format!("/api/v1/cases/{case}/qc/report"), &manager, json!({ "passed": true })).await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{r}");
        let t3 = Instant::now();
        rows.push([(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()]);
    }
    srv.stop().await;
    let median = |i: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let total: Vec<f64> = {
        let mut t: Vec<f64> = rows.iter().map(|r| r.iter().sum()).collect();
        t.sort_by(f64::total_cmp);
        t
    };
    println!("\n## QC turnaround: last after-repair shot uploaded → QC report ready (15 checkpoints, {runs} runs)\n");
    println!("| stage | median s |");
    println!("|---|---:|");
    println!("| 15 after shots analysed (quality gate + YOLOv8n) | {:.2} |", median(0));
    println!("| comparison: 15 viewpoint checks, per-part outcome, alerts | {:.2} |", median(1));
    println!("| report: data, thumbnails, PDF, signed | {:.2} |", median(2));
    println!("| **total** (median; min {:.2}, max {:.2}) | **{:.2}** |", total[0], total[total.len() - 1], total[total.len() / 2]);
    println!("\nGoal ≤ 60 s on the 2-core box; rental inspection gates quote < 180 s for a comparison alone.\n");
}

fn bench_runs() -> usize {
    std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(20)
}

/// Median and minimum of `runs` timings of `f`, in ms, after one warm-up call.
fn time_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0])
}

fn decode_table() {
    let runs = bench_runs();
    let dm_gs1 = "0106901234567892".to_string() + "21SER123\u{1d}240DOOR-SHELL-LF";
    // (name, symbology, text, px per module, text decode reports)
    let codes = [
        ("EAN-13", Symbology::Ean13, "6901234567892".to_string(), 3, "6901234567892".to_string()),
        (
            "QR sticker",
            Symbology::QrCode,
            "PN:DOOR-SHELL-LF;SN:SB-0001;ORIGIN:OEM;名称:左前车门壳".to_string(),
            5,
            "PN:DOOR-SHELL-LF;SN:SB-0001;ORIGIN:OEM;名称:左前车门壳".to_string(),
        ),
        ("Data Matrix GS1", Symbology::DataMatrix, dm_gs1.clone(), 6, format!("]d2{dm_gs1}")),
    ];

    println!("## Part-label decoding ({runs} runs per picture)\n");
    println!("| code | picture | px | median ms | min ms | decoded |");
    println!("|---|---|---|---:|---:|---|");
    for (name, symbology, text, module_px, expected) in &codes {
        let clean = match encode(*symbology, text, *module_px) {
            Ok(img) => img,
            Err(e) => {
                println!("| {name} | - | - | - | - | {e} |");
                continue;
            }
        };
        let photo = photograph(&clean, 7.0, 1.2);
        for (picture, img) in [("clean", clean), ("photo 7° σ1.2", photo)] {
            let px = format!("{}×{}", img.width(), img.height());
            let img = image::DynamicImage::ImageLuma8(img);
            let mut found = Vec::new();
            let (median, min) = time_ms(runs, || found = decode(&img));
            let decoded = if found.iter().any(|c| c.symbology == *symbology && &c.text == expected) { "yes" } else { "NO" };
            println!("| {name} | {picture} | {px} | {median:.1} | {min:.1} | {decoded} |");
        }
    }
    println!();
}
