//! Workshop timing tables, printed as markdown. Not a timed test: it only reports.
//!
//! Sections:
//! - part-label decoding (`vision::codes::decode`) on clean renders and on photograph-like copies
//!   (tilt 7°, blur σ 1.2) of an EAN-13, a QR sticker and a GS1 Data Matrix.
//!
//! Run: cargo bench --bench workshop
//! Env: BENCH_RUNS (timed runs per picture, default 20; one untimed warm-up run comes first).

use std::time::Instant;

use servicebay::vision::codes::{decode, encode, photograph, Symbology};

fn main() {
    decode_table();
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
