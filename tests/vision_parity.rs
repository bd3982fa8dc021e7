//! Parity of our candle YOLOv8 with ONNX Runtime on the real Ultralytics weights.
//!
//! Fixtures (ORT raw outputs and the exact network inputs) come from
//! `scripts/ort-reference.py fixtures`, run here through the venv at
//! `$SERVICEBAY_ORT_VENV` (default `$HOME/.cache/servicebay/venv-ort`); the script is
//! idempotent and regenerates them when missing or stale.
//!
//! Tolerances:
//! - fp32 weights (yolov8n.onnx, and fall-best_fp16.onnx, whose initializers are in fact fp32
//!   despite its name): boxes < 5e-3 in 640-px units, class scores < 1e-4 (the figures).
//! - fp16 weights (fall-best.pt: fp16 storages, un-fused BN that we fold in f32): the exporter
//!   made the ONNX from this same checkpoint by casting to fp32 and folding BN, so the only
//!   difference is the order of the folding arithmetic (an f32 rounding per weight, ~1e-7
//!   relative). That is well inside one fp16 ulp (~1e-3 relative) of the stored weights, so we
//!   allow boxes < 2e-2 px and scores < 5e-4: 4x/5x the fp32 bounds, far below anything that
//!   moves a box by a visible amount, and still tight enough to catch a wrong BN eps (1e-5 vs
//!   1e-3 moves boxes by whole pixels).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use servicebay::vision::engine::YoloDetector;
use servicebay::vision::import::load_yolo;
use servicebay::vision::postprocess::{decode, iou, nms, Candidate};
use servicebay::vision::preprocess::{open_image, preprocess};
use servicebay::vision::{import_model, DetectOptions, Detector};

const IMAGES: [&str; 4] = ["bus", "zidane", "synth-blocks", "synth-noise"];

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Ensures the ORT fixtures exist and match the models; returns their directory.
fn fixtures(models: &Path) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out =
            std::env::var_os("SERVICEBAY_ORT_FIXTURES").map(PathBuf::from).unwrap_or_else(|| home().join(".cache/servicebay/ort-fixtures"));
        let venv = std::env::var_os("SERVICEBAY_ORT_VENV").map(PathBuf::from).unwrap_or_else(|| home().join(".cache/servicebay/venv-ort"));
        let python = venv.join("bin/python");
        if !python.exists() {
            // Fixtures made earlier (e.g. restored from a CI cache) are still usable.
            assert!(
                out.join("manifest.json").exists(),
                "no ONNX Runtime venv at {0} and no fixtures in {1}: python3 -m venv {0} && {0}/bin/pip install onnxruntime numpy pillow",
                venv.display(),
                out.display()
            );
            eprintln!("!!!! no venv at {}: using existing fixtures in {} unverified !!!!", venv.display(), out.display());
            return out;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ort-reference.py");
        let status = Command::new(&python)
            .arg(&script)
            .arg("fixtures")
            .arg("--models")
            .arg(models)
            .arg("--out")
            .arg(&out)
            .status()
            .expect("run ort-reference.py");
        assert!(status.success(), "ort-reference.py fixtures failed");
        out
    })
    .clone()
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

struct Installed {
    _dir: tempfile::TempDir,
    coco: YoloDetector,
    fall_onnx: YoloDetector,
    fall_pt: YoloDetector,
}

fn installed(models: &Path) -> &'static Installed {
    static I: OnceLock<Installed> = OnceLock::new();
    I.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        import_model(&models.join("yolov8n.onnx"), dir.path(), Some("coco")).expect("import coco");
        import_model(&models.join("fall-best_fp16.onnx"), dir.path(), Some("fall-onnx")).expect("import fall onnx");
        import_model(&models.join("fall-best.pt"), dir.path(), Some("fall-pt")).expect("import fall pt");
        let o = DetectOptions::default();
        Installed {
            coco: load_yolo(dir.path(), "coco", o).expect("load"),
            fall_onnx: load_yolo(dir.path(), "fall-onnx", o).expect("load"),
            fall_pt: load_yolo(dir.path(), "fall-pt", o).expect("load"),
            _dir: dir,
        }
    })
}

/// (max abs diff on the 4 box rows, max abs diff on class rows).
fn raw_diff(a: &[f32], b: &[f32], rows: usize) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let n = a.len() / rows;
    let mut db = 0f32;
    let mut ds = 0f32;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs();
        if i / n < 4 {
            db = db.max(d);
        } else {
            ds = ds.max(d);
        }
    }
    (db, ds)
}

fn detections(raw: &[f32], nc: usize) -> Vec<Candidate> {
    let o = DetectOptions::default();
    nms(decode(raw, nc, o.conf), o.iou, o.max_det)
}

/// Same classes, and every box of `ours` has a same-class partner in `theirs` with IoU > 0.99.
fn assert_same_detections(ours: &[Candidate], theirs: &[Candidate], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {} vs {} detections\n{ours:?}\n{theirs:?}", ours.len(), theirs.len());
    for o in ours {
        let best = theirs.iter().filter(|t| t.class_id == o.class_id).map(|t| iou(&o.bbox, &t.bbox)).fold(0f32, f32::max);
        assert!(best > 0.99, "{what}: box {o:?} best IoU {best}");
    }
}

fn check_model(det: &YoloDetector, ort_name: &str, box_tol: f32, score_tol: f32) {
    let Some(models) = common::vision_models() else { return };
    let fx = fixtures(&models);
    let nc = det.card().classes.len();
    for img in IMAGES {
        let base = format!("{ort_name}__{img}");
        let input = read_f32(&fx.join(format!("{base}.input.bin")));
        let want = read_f32(&fx.join(format!("{base}.output.bin")));
        let got = det.forward_raw(&input).expect("forward");
        let (db, ds) = raw_diff(&got, &want, 4 + nc);
        eprintln!("PARITY {} vs ORT {base}: max |d| boxes {db:.6} px, scores {ds:.2e}", det.card().name);
        assert!(db < box_tol, "{base}: box diff {db} >= {box_tol}");
        assert!(ds < score_tol, "{base}: score diff {ds} >= {score_tol}");
        assert_same_detections(&detections(&got, nc), &detections(&want, nc), &base);
    }
}

#[test]
fn coco_fp32_matches_onnx_runtime() {
    let Some(models) = common::vision_models() else { return };
    check_model(&installed(&models).coco, "yolov8n", 5e-3, 1e-4);
}

#[test]
fn fall_onnx_import_matches_onnx_runtime() {
    let Some(models) = common::vision_models() else { return };
    check_model(&installed(&models).fall_onnx, "fall", 5e-3, 1e-4);
}

#[test]
fn fall_pt_fp16_checkpoint_matches_onnx_runtime() {
    let Some(models) = common::vision_models() else { return };
    check_model(&installed(&models).fall_pt, "fall", 2e-2, 5e-4);
}

#[test]
fn pt_and_onnx_imports_give_the_same_detections() {
    let Some(models) = common::vision_models() else { return };
    let inst = installed(&models);
    let fx = fixtures(&models);
    for img in IMAGES {
        let path = if img.starts_with("synth") { fx.join(format!("{img}.png")) } else { models.join(format!("{img}.jpg")) };
        let image = open_image(&path).expect("image");
        let a = inst.fall_pt.detect(&image).expect("pt");
        let b = inst.fall_onnx.detect(&image).expect("onnx");
        assert_eq!(a.len(), b.len(), "{img}: {a:?} vs {b:?}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.class_id, y.class_id, "{img}");
            assert!(iou(&x.bbox, &y.bbox) > 0.99, "{img}: {x:?} vs {y:?}");
            assert!((x.confidence - y.confidence).abs() < 1e-3, "{img}: {x:?} vs {y:?}");
        }
    }
}

/// Our whole pipeline (our decoder, our letterbox) against ORT on the reference's input.
/// PNGs decode identically everywhere, so the letterboxed input must be bit-identical; JPEG
/// decoders (zune-jpeg vs libjpeg-turbo) may differ by a level or two, so there only the
/// detections are compared.
#[test]
fn full_pipeline_matches_ort_detections() {
    let Some(models) = common::vision_models() else { return };
    let inst = installed(&models);
    let fx = fixtures(&models);
    for img in IMAGES {
        let png = img.starts_with("synth");
        let path = if png { fx.join(format!("{img}.png")) } else { models.join(format!("{img}.jpg")) };
        let image = open_image(&path).expect("image");
        let (ours_in, _lb) = preprocess(&image, 640);
        let ref_in = read_f32(&fx.join(format!("yolov8n__{img}.input.bin")));
        let d = ours_in.iter().zip(&ref_in).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("PREPROCESS {img}: max |d| vs reference input {d:.6} (x255 = {:.1} levels)", d * 255.0);
        if png {
            assert_eq!(d, 0.0, "{img}: letterbox differs from the reference");
        }
        let ours = detections(&inst.coco.forward_raw(&ours_in).expect("forward"), 80);
        let theirs = detections(&read_f32(&fx.join(format!("yolov8n__{img}.output.bin"))), 80);
        if png {
            assert_same_detections(&ours, &theirs, img);
        } else {
            // Decoder noise may shift a box slightly; classes and count must still agree, with
            // a IoU > 0.99 still holds (measured >= 0.995).
            assert_eq!(ours.len(), theirs.len(), "{img}: {ours:?}\n{theirs:?}");
            for o in &ours {
                let best = theirs.iter().filter(|t| t.class_id == o.class_id).map(|t| iou(&o.bbox, &t.bbox)).fold(0f32, f32::max);
                eprintln!("  {img} class {} best IoU {best:.4}", o.class_id);
                assert!(best > 0.99, "{img}: {o:?} best IoU {best}");
            }
        }
    }
}
