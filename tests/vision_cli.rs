//! The CLI helpers, the quality gate and the privacy blur on the real COCO model and the
//! Ultralytics test photos.

mod common;

use std::path::PathBuf;

use image::DynamicImage;
use servicebay::vision::blur::{blur_pii, privacy_regions};
use servicebay::vision::cli::{cli_detect, cli_import, cli_list};
use servicebay::vision::preprocess::open_image;
use servicebay::vision::quality::{assess, QualityConfig, QualityIssue, Shot};
use servicebay::vision::{load_detector, DetectOptions, Role};

#[test]
fn import_list_detect_annotate() {
    let Some(src) = common::vision_models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(cli_list(dir.path()).expect("list").contains("no models installed"));
    let msg = cli_import(&src.join("yolov8n.onnx"), dir.path(), Some("coco")).expect("import");
    assert!(msg.contains("car=vehicle") && msg.contains("person=pii:person"), "{msg}");
    let list = cli_list(dir.path()).expect("list");
    assert!(list.contains("coco") && list.contains("80"), "{list}");

    let images = vec![src.join("bus.jpg"), src.join("zidane.jpg")];
    let text = cli_detect(dir.path(), "coco", &images, false, None).expect("detect");
    eprintln!("{text}");
    assert!(text.contains("bus") && text.contains("vehicle") && text.contains("tie"), "{text}");

    let json = cli_detect(dir.path(), "coco", &images[..1], true, None).expect("detect json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert_eq!(v[0]["width"], 810);
    assert!(v[0]["detections"].as_array().is_some_and(|d| d.iter().any(|d| d["role"] == "vehicle")));

    let out = dir.path().join("ann");
    cli_detect(dir.path(), "coco", &images, false, Some(&out)).expect("annotate");
    let ann = image::open(out.join("bus.annotated.png")).expect("annotated png");
    assert_eq!((ann.width(), ann.height()), (810, 1080));
    if let Some(keep) = std::env::var_os("SERVICEBAY_KEEP_ANNOTATED") {
        let _ = std::fs::copy(out.join("bus.annotated.png"), PathBuf::from(keep));
    }
}

#[test]
fn quality_and_blur_on_real_photos() {
    let Some(src) = common::vision_models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    cli_import(&src.join("yolov8n.onnx"), dir.path(), Some("coco")).expect("import");
    // Privacy pass at a lower threshold than findings (see blur.rs).
    let det = load_detector(dir.path(), "coco", DetectOptions { conf: 0.15, ..Default::default() }).expect("load");
    let bus = open_image(&src.join("bus.jpg")).expect("bus");
    let dets = det.detect(&bus).expect("detect");
    let cfg = QualityConfig::default();
    let q = assess(&bus, Some(&dets), &cfg);
    eprintln!("bus.jpg: {q:?}");
    assert!(q.ok, "{:?}", q.reasons());
    assert_eq!(q.shot, Shot::Front, "bus seen from the front-side, box ~1:0.7");

    // The same photo blurred: the gate says so.
    let blurred = DynamicImage::ImageRgb8(image::imageops::blur(&bus.to_rgb8(), 2.5));
    let qb = assess(&blurred, Some(&dets), &cfg);
    eprintln!("bus.jpg blurred: sharpness {}", qb.sharpness);
    assert!(qb.issues.iter().any(|i| matches!(i, QualityIssue::Blurred { .. })), "{:?}", qb.reasons());

    // zidane.jpg has people and no vehicle.
    let zidane = open_image(&src.join("zidane.jpg")).expect("zidane");
    let zd = det.detect(&zidane).expect("detect");
    let qz = assess(&zidane, Some(&zd), &cfg);
    assert!(qz.issues.contains(&QualityIssue::NoVehicle), "{:?}", qz.reasons());

    // Every person gets a head region, and the pixels there change.
    let people = dets.iter().filter(|d| d.role == Role::PiiPerson).count();
    let regions = privacy_regions(&dets, bus.width(), bus.height());
    assert_eq!(regions.len(), people);
    let out = blur_pii(&bus, &dets);
    let orig = bus.to_rgb8();
    let r = regions[0];
    let changed =
        (r[1]..r[3]).flat_map(|y| (r[0]..r[2]).map(move |x| (x, y))).filter(|&(x, y)| out.get_pixel(x, y) != orig.get_pixel(x, y)).count();
    assert!(changed as f32 > 0.5 * ((r[2] - r[0]) * (r[3] - r[1])) as f32, "head region pixelated");
    if let Some(keep) = std::env::var_os("SERVICEBAY_KEEP_BLURRED") {
        let _ = out.save(PathBuf::from(keep));
    }
}
