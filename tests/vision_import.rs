//! Import of the real Ultralytics files (ONNX, .pt) and detection on the Ultralytics test
//! images. Needs the fetched models (`scripts/fetch-models.sh`); see `common::vision_models()`.

mod common;

use servicebay::vision::import::load_yolo;
use servicebay::vision::preprocess::open_image;
use servicebay::vision::{import_model, list_models, load_detector, DetectOptions, Detector, Role};

#[test]
fn coco_onnx_import_and_detect_bus() {
    let Some(src) = common::vision_models() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let card = import_model(&src.join("yolov8n.onnx"), out.path(), Some("coco")).expect("import");
    assert_eq!(card.scale, "n");
    assert_eq!(card.classes.len(), 80);
    assert_eq!(card.roles[2], Role::Vehicle);
    assert_eq!(card.roles[0], Role::PiiPerson);
    assert_eq!(card.roles[16], Role::Ignore);
    assert!(card.licence.contains("AGPL"));
    assert_eq!(card.source_sha256, "75cc3648650bdab6baac92fcff3627148405a9a15aca86ca7117b6d1ab478726");
    let listed = list_models(out.path()).expect("list");
    assert_eq!(listed.len(), 1);

    let det = load_detector(out.path(), "coco", DetectOptions::default()).expect("load");
    let img = open_image(&src.join("bus.jpg")).expect("bus.jpg");
    let dets = det.detect(&img).expect("detect");
    for d in &dets {
        eprintln!("{} {} {:.3} {:?}", d.class_name, d.role, d.confidence, d.bbox);
    }
    let buses: Vec<_> = dets.iter().filter(|d| d.class_name == "bus").collect();
    let people = dets.iter().filter(|d| d.class_name == "person").count();
    assert_eq!(buses.len(), 1, "one bus in bus.jpg");
    assert_eq!(buses[0].role, Role::Vehicle);
    assert!(people >= 3, "at least 3 people in bus.jpg, got {people}");
    // The bus spans most of the picture's width (810 px).
    assert!(buses[0].bbox[2] - buses[0].bbox[0] > 600.0);
}

#[test]
fn fall_pt_import_reads_unfused_fp16_checkpoint() {
    let Some(src) = common::vision_models() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let card = import_model(&src.join("fall-best.pt"), out.path(), Some("fall-pt")).expect("import .pt");
    assert_eq!(card.classes, vec!["Normal".to_string(), "Fall".to_string()]);
    assert_eq!(card.roles, vec![Role::Ignore, Role::Ignore]);
    assert_eq!(card.scale, "s");
    assert!((card.bn_eps - 1e-3).abs() < 1e-9);
    let det = load_yolo(out.path(), "fall-pt", DetectOptions::default()).expect("load");
    let img = open_image(&src.join("zidane.jpg")).expect("zidane.jpg");
    let dets = det.detect(&img).expect("detect");
    eprintln!("{dets:?}");
}

#[test]
fn missing_model_says_what_to_do() {
    let out = tempfile::tempdir().expect("tempdir");
    let err = load_detector(out.path(), "nope", DetectOptions::default()).err().expect("must fail");
    assert!(err.to_string().contains("scripts/fetch-models.sh"), "{err}");
    let err = import_model(&out.path().join("x.onnx"), out.path(), None).expect_err("must fail");
    assert!(err.to_string().contains("fetch-models"), "{err}");
}

#[test]
fn garbage_model_files_are_rejected_cleanly() {
    let out = tempfile::tempdir().expect("tempdir");
    for ext in ["onnx", "pt", "safetensors"] {
        let p = out.path().join(format!("junk.{ext}"));
        std::fs::write(&p, b"\x08\x07garbage garbage").expect("write");
        let err = import_model(&p, out.path(), None).expect_err("must fail");
        eprintln!("{ext}: {err}");
    }
}

/// Our own `NAME.safetensors` (with its metadata) imports again, with the same classes and the
/// same detections: the path a dealer uses to move an installed model to another store box.
#[test]
fn safetensors_round_trip() {
    let Some(src) = common::vision_models() else { return };
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let card = import_model(&src.join("yolov8n.onnx"), a.path(), Some("coco")).expect("import onnx");
    let again = import_model(&a.path().join("coco.safetensors"), b.path(), Some("coco2")).expect("import safetensors");
    assert_eq!(again.classes, card.classes);
    assert_eq!(again.roles, card.roles);
    assert!(again.licence.contains("AGPL"));
    let img = open_image(&src.join("bus.jpg")).expect("bus.jpg");
    let d1 = load_detector(a.path(), "coco", DetectOptions::default()).expect("load").detect(&img).expect("detect");
    let d2 = load_detector(b.path(), "coco2", DetectOptions::default()).expect("load").detect(&img).expect("detect");
    assert_eq!(d1, d2);
}

/// Weight files that do not make a YOLOv8 (a tensor missing, a tensor of the wrong shape) are
/// refused at import with an architecture error, never a panic or a model that fails later.
#[test]
fn broken_weights_are_refused_at_import() {
    let Some(src) = common::vision_models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    import_model(&src.join("yolov8n.onnx"), dir.path(), Some("coco")).expect("import");
    let dev = candle_core::Device::Cpu;
    let good = candle_core::safetensors::load(dir.path().join("coco.safetensors"), &dev).expect("load");

    let mut missing = good.clone();
    missing.remove("model.9.cv2.conv.weight");
    let p = dir.path().join("missing.safetensors");
    candle_core::safetensors::save(&missing, &p).expect("save");
    let err = import_model(&p, dir.path(), None).expect_err("must fail");
    assert!(err.to_string().contains("unsupported network"), "{err}");

    for (name, shape) in [("model.22.cv3.0.2.bias", vec![3usize]), ("model.12.cv1.conv.weight", vec![64, 100, 1, 1])] {
        let mut bad = good.clone();
        bad.insert(name.to_string(), candle_core::Tensor::zeros(shape, candle_core::DType::F32, &dev).expect("zeros"));
        let p = dir.path().join("bad.safetensors");
        candle_core::safetensors::save(&bad, &p).expect("save");
        let err = import_model(&p, dir.path(), None).expect_err("must fail");
        eprintln!("{name}: {err}");
        assert!(err.to_string().contains("unsupported network"), "{err}");
    }
}
