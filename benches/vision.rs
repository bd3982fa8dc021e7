//! Speed table: ONNX Runtime (scripts/ort-reference.py `serve`, 2 intra-op threads) against
//! our candle pipeline (2 rayon threads) on the same model and images, in one run. Runs are
//! interleaved (ours, ORT, ours, ORT, ...) so both engines see the same machine load: the dev
//! box is shared and its load average moves a lot. Prints median and minimum milliseconds of
//! preprocess (decode + letterbox + tensor), forward and NMS, and the ratio ours/ORT.
//!
//! Each engine is timed only after a pause (BENCH_SETTLE_MS, default 200): ORT's intra-op
//! workers spin for a while after each run, and when our forward started at once one of the two
//! cores was still theirs (ours 84.8 ms against 71.9 ms with ORT's spinning turned off). The
//! reference process runs with one OpenBLAS thread: numpy's pool is not ORT's, and it spun too.
//!
//! Run: SERVICEBAY_MODELS=/path/to/models cargo bench --bench vision
//! Env: BENCH_RUNS (per image, default 10), BENCH_MODEL (default yolov8n.onnx), BENCH_THREADS.
//! BENCH_PROFILE=1 prints, instead, the forward pass per Ultralytics block (`model.i`): ours from
//! the `block` spans of `YoloV8::forward`, ORT's from its own profiler (`ort-reference.py
//! profile`), medians over the same images and run count.
//! Not a timed test: it only reports.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use servicebay::vision::import::load_yolo;
use servicebay::vision::postprocess::{decode, nms};
use servicebay::vision::preprocess::{open_image, preprocess};
use servicebay::vision::{import_model, DetectOptions};

#[derive(Default)]
struct Series {
    pre: Vec<f64>,
    fwd: Vec<f64>,
    nms: Vec<f64>,
    /// Process CPU time (all threads) per whole run: less sensitive than wall time to the
    /// other jobs sharing the machine, though idle-spinning pool threads count too.
    cpu: Vec<f64>,
}

/// CPU time of this process, all threads, in ms.
fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: plain syscall writing into a valid timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

impl Series {
    fn stats(&self) -> [(f64, f64); 5] {
        let st = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                (v[v.len() / 2], v[0])
            }
        };
        let tot: Vec<f64> = (0..self.fwd.len()).map(|i| self.pre[i] + self.fwd[i] + self.nms[i]).collect();
        [st(&self.pre), st(&self.fwd), st(&self.nms), st(&tot), st(&self.cpu)]
    }
}

/// Per-block forward times from the `block` spans (see `YoloV8::forward`).
mod profile {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    /// (block index, ms) in the order the spans closed.
    pub type Sink = Arc<Mutex<Vec<(usize, f64)>>>;

    pub struct BlockTimes(pub Sink);
    struct Block(usize);
    struct Entered(Instant);
    struct Index(Option<usize>);

    impl Visit for Index {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "i" {
                self.0 = Some(value as usize);
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.name() == "i" {
                self.0 = usize::try_from(value).ok();
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for BlockTimes {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() != "block" {
                return;
            }
            let mut v = Index(None);
            attrs.record(&mut v);
            if let (Some(i), Some(span)) = (v.0, ctx.span(id)) {
                span.extensions_mut().insert(Block(i));
            }
        }
        fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id) {
                if span.extensions().get::<Block>().is_some() {
                    span.extensions_mut().insert(Entered(Instant::now()));
                }
            }
        }
        fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let ext = span.extensions();
            if let (Some(Block(i)), Some(Entered(t))) = (ext.get::<Block>(), ext.get::<Entered>()) {
                if let Ok(mut v) = self.0.lock() {
                    v.push((*i, t.elapsed().as_secs_f64() * 1e3));
                }
            }
        }
    }

    /// Median per block over runs, each run a list of (block, ms).
    pub fn medians(runs: &[Vec<(usize, f64)>]) -> BTreeMap<usize, f64> {
        let mut per: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for r in runs {
            let mut sum: BTreeMap<usize, f64> = BTreeMap::new();
            for (i, ms) in r {
                *sum.entry(*i).or_default() += ms;
            }
            for (i, ms) in sum {
                per.entry(i).or_default().push(ms);
            }
        }
        per.into_iter()
            .map(|(i, mut v)| {
                v.sort_by(f64::total_cmp);
                (i, v[v.len() / 2])
            })
            .collect()
    }
}

/// What each Ultralytics block of YOLOv8 is (for the profile table).
fn block_name(i: usize) -> &'static str {
    match i {
        0 | 1 | 3 | 5 | 7 | 16 | 19 => "Conv 3x3 s2",
        2 | 4 | 6 | 8 | 12 | 15 | 18 | 21 => "C2f",
        9 => "SPPF",
        10 | 13 => "Upsample",
        11 | 14 | 17 | 20 => "Concat",
        22 => "Detect head",
        _ => "",
    }
}

/// BENCH_PROFILE=1: per-block table, ours against ORT's profiler.
fn run_profile(
    det: &servicebay::vision::engine::YoloDetector,
    images: &[PathBuf],
    runs: usize,
    threads: &str,
    model: &str,
    models: &std::path::Path,
    venv: &std::path::Path,
) {
    use tracing_subscriber::layer::SubscriberExt;
    let sink = profile::Sink::default();
    let subscriber = tracing_subscriber::registry().with(profile::BlockTimes(sink.clone()));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("profile: a tracing subscriber is already set");
        return;
    }
    let inputs: Vec<Vec<f32>> = images.iter().filter_map(|p| open_image(p).ok()).map(|img| preprocess(&img, 640).0).collect();
    let mut per_run = Vec::new();
    let mut totals = Vec::new();
    for run in 0..=runs {
        for x in &inputs {
            let t = Instant::now();
            if det.forward_raw(x).is_err() {
                return;
            }
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let spans = std::mem::take(&mut *sink.lock().expect("profile sink"));
            if run > 0 {
                per_run.push(spans);
                totals.push(ms);
            }
        }
    }
    totals.sort_by(f64::total_cmp);
    let ours = profile::medians(&per_run);
    let out = Command::new(venv.join("bin/python"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ort-reference.py"))
        // numpy's OpenBLAS pool (unused by ORT) spun idle threads on our cores.
        .env("OPENBLAS_NUM_THREADS", "1")
        .args(["profile", "--threads", threads, "--model", model, "--runs", &runs.to_string(), "--models"])
        .arg(models)
        .arg("--images")
        .args(images)
        .output();
    let ort: Option<serde_json::Value> = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let ort_ms = |i: usize| ort.as_ref().and_then(|v| v["blocks_ms"][format!("model.{i}")].as_f64());
    println!(
        "\n{model} forward per block, {threads} threads, medians over {} runs (ours: block spans; ORT: its profiler's node kernel times)",
        per_run.len()
    );
    println!("| block | what        | ours ms | ORT ms | ratio |");
    println!("|------:|-------------|--------:|-------:|------:|");
    let (mut sum_ours, mut sum_ort) = (0.0, 0.0);
    for i in 0..=22 {
        let a = ours.get(&i).copied();
        let b = ort_ms(i);
        sum_ours += a.unwrap_or(0.0);
        sum_ort += b.unwrap_or(0.0);
        let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into());
        let r = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "".into(),
        };
        println!("| {i:>5} | {:<11} | {:>7} | {:>6} | {:>5} |", block_name(i), f(a), f(b), r);
    }
    if let Some(v) = &ort {
        let other = v["blocks_ms"]["other"].as_f64().unwrap_or(0.0);
        sum_ort += other;
        println!("| other | ORT outside blocks |  | {other:.2} |  |");
        println!("| sum   |             | {sum_ours:>7.2} | {sum_ort:>6.2} | {:.2}x |", sum_ours / sum_ort);
        println!(
            "whole forward: ours {:.2} ms (wall), ORT model_run {:.2} ms",
            totals[totals.len() / 2],
            v["model_run_ms"].as_f64().unwrap_or(f64::NAN)
        );
        println!("ORT by op type (ms): {}", v["ops_ms"]);
    } else {
        println!("(no ONNX Runtime profile: create the venv at {})", venv.display());
    }
}

/// Default pause before each engine's timed section, longer than ORT's worker spin.
const SETTLE_MS: u64 = 200;

fn main() {
    // Two threads for both engines (the store box and the dev machine have 2 cores).
    let threads = std::env::var("BENCH_THREADS").unwrap_or_else(|_| "2".into());
    std::env::set_var("RAYON_NUM_THREADS", &threads);
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let model = std::env::var("BENCH_MODEL").unwrap_or_else(|_| "yolov8n.onnx".into());
    let models = std::env::var_os("SERVICEBAY_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    if !models.join(&model).exists() {
        eprintln!("no {model} in {}: run scripts/fetch-models.sh", models.display());
        return;
    }
    let images: Vec<PathBuf> = ["bus.jpg", "zidane.jpg"].iter().map(|i| models.join(i)).collect();
    let tmp = std::env::temp_dir().join(format!("servicebay-bench-{}", std::process::id()));
    if let Err(e) = import_model(&models.join(&model), &tmp, Some("bench")) {
        eprintln!("import failed: {e}");
        return;
    }
    let det = match load_yolo(&tmp, "bench", DetectOptions::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("load failed: {e}");
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    let o = DetectOptions::default();
    let nc = det.card_classes();

    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let venv = std::env::var_os("SERVICEBAY_ORT_VENV").map(PathBuf::from).unwrap_or_else(|| home.join(".cache/servicebay/venv-ort"));
    let mut ort = Command::new(venv.join("bin/python"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ort-reference.py"))
        // numpy's OpenBLAS pool (unused by ORT) spun idle threads on our cores.
        .env("OPENBLAS_NUM_THREADS", "1")
        .args(["serve", "--threads", &threads, "--model", &model, "--models"])
        .arg(&models)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok();
    let mut ort_io = ort.as_mut().and_then(|c| Some((c.stdin.take()?, BufReader::new(c.stdout.take()?))));
    let mut line = String::new();
    if let Some((_, out)) = ort_io.as_mut() {
        if out.read_line(&mut line).map(|n| n == 0).unwrap_or(true) {
            ort_io = None;
        }
    }

    if std::env::var_os("BENCH_PROFILE").is_some() {
        run_profile(&det, &images, runs, &threads, &model, &models, &venv);
        return;
    }

    let (mut ours, mut theirs) = (Series::default(), Series::default());
    let settle = Duration::from_millis(std::env::var("BENCH_SETTLE_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(SETTLE_MS));
    for path in &images {
        for run in 0..=runs {
            // The other engine's idle workers must be asleep before this one is timed.
            std::thread::sleep(settle);
            let c0 = process_cpu_ms();
            let t0 = Instant::now();
            let Ok(img) = open_image(path) else { return };
            let (chw, _lb) = preprocess(&img, 640);
            let t1 = Instant::now();
            let Ok(raw) = det.forward_raw(&chw) else { return };
            let t2 = Instant::now();
            std::hint::black_box(nms(decode(&raw, nc, o.conf), o.iou, o.max_det));
            let t3 = Instant::now();
            let c3 = process_cpu_ms();
            if run > 0 {
                ours.cpu.push(c3 - c0);
                ours.pre.push((t1 - t0).as_secs_f64() * 1e3);
                ours.fwd.push((t2 - t1).as_secs_f64() * 1e3);
                ours.nms.push((t3 - t2).as_secs_f64() * 1e3);
            }
            if let Some((inp, out)) = ort_io.as_mut() {
                std::thread::sleep(settle);
                line.clear();
                let ok = writeln!(inp, "{}", path.display()).and_then(|_| inp.flush()).is_ok() && out.read_line(&mut line).is_ok();
                let v: Option<serde_json::Value> = if ok { serde_json::from_str(&line).ok() } else { None };
                match v {
                    Some(v) if run > 0 => {
                        theirs.pre.push(v["preprocess_ms"].as_f64().unwrap_or(f64::NAN));
                        theirs.fwd.push(v["forward_ms"].as_f64().unwrap_or(f64::NAN));
                        theirs.nms.push(v["nms_ms"].as_f64().unwrap_or(f64::NAN));
                        theirs.cpu.push(v["cpu_ms"].as_f64().unwrap_or(f64::NAN));
                    }
                    Some(_) => {}
                    None => ort_io = None,
                }
            }
        }
    }
    if let Some((inp, _)) = ort_io.take() {
        drop(inp); // EOF ends the server
    }
    if let Some(mut c) = ort {
        let _ = c.wait();
    }

    let a = ours.stats();
    let have_ort = !theirs.fwd.is_empty();
    let b = theirs.stats();
    println!(
        "\n{model} 640x640, {threads} threads, {} interleaved runs over {} images (bus.jpg 810x1080, zidane.jpg 1280x720)",
        runs * images.len(),
        images.len()
    );
    println!("| stage      | ours median | ORT median | ratio | ours min | ORT min | ratio |");
    println!("|------------|-------------|------------|-------|----------|---------|-------|");
    for (i, name) in ["preprocess", "forward", "NMS", "total", "CPU-ms"].iter().enumerate() {
        if have_ort {
            println!(
                "| {:<10} | {:>11.1} | {:>10.1} | {:>4.2}x | {:>8.1} | {:>7.1} | {:>4.2}x |",
                name,
                a[i].0,
                b[i].0,
                a[i].0 / b[i].0,
                a[i].1,
                b[i].1,
                a[i].1 / b[i].1
            );
        } else {
            println!("| {:<10} | {:>11.1} | {:>10} | {:>5} | {:>8.1} | {:>7} | {:>5} |", name, a[i].0, "n/a", "", a[i].1, "n/a", "");
        }
    }
    println!("(CPU-ms: process CPU time per image, all threads; the other rows are wall-clock ms)");
    if !have_ort {
        println!("(no ONNX Runtime: create the venv at {} with onnxruntime numpy pillow)", venv.display());
    }
}
