//! CLI helpers the main binary wires into clap: `servicebay detect`, `model import`,
//! `model list`. They return the text to print (so they are testable); the caller maps
//! [`VisionError`] to an exit code. `--annotate` drawing lives here too (boxes + labels with a
//! built-in 3x5 pixel font, so we need no font files or drawing crates).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::vision::preprocess::open_image;
use crate::vision::{import_model, list_models, load_detector, DetectOptions, Detection, Role, VisionError};

#[derive(Serialize)]
struct ImageResult<'a> {
    image: String,
    width: u32,
    height: u32,
    detections: &'a [Detection],
}

/// `servicebay detect --model NAME IMAGE... [--json] [--annotate OUT]`.
/// With one image `annotate` is the output file; with several it is a directory (created) that
/// receives `<stem>.annotated.png` per image.
pub fn cli_detect(models_dir: &Path, model: &str, images: &[PathBuf], json: bool, annotate: Option<&Path>) -> Result<String, VisionError> {
    cli_detect_with(models_dir, model, images, json, annotate, DetectOptions::default())
}

pub fn cli_detect_with(
    models_dir: &Path,
    model: &str,
    images: &[PathBuf],
    json: bool,
    annotate: Option<&Path>,
    opts: DetectOptions,
) -> Result<String, VisionError> {
    if images.is_empty() {
        return Err(VisionError::Invalid("no image given".into()));
    }
    let det = load_detector(models_dir, model, opts)?;
    let mut out = String::new();
    let mut results = Vec::new();
    let mut all = Vec::new();
    for path in images {
        let img = open_image(path)?;
        let dets = det.detect(&img)?;
        if let Some(target) = annotate {
            let file = if images.len() == 1 {
                target.to_path_buf()
            } else {
                std::fs::create_dir_all(target).map_err(|e| VisionError::io(target, e))?;
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
                target.join(format!("{stem}.annotated.png"))
            };
            let canvas = annotate_image(&img.to_rgb8(), &dets);
            canvas.save(&file).map_err(|e| VisionError::Image { what: file.display().to_string(), reason: e.to_string() })?;
        }
        if !json {
            let _ = writeln!(out, "{} ({}x{}): {} detection(s)", path.display(), img.width(), img.height(), dets.len());
            for d in &dets {
                let _ = writeln!(
                    out,
                    "  {:<14} {:<16} {:.3}  [{:.0}, {:.0}, {:.0}, {:.0}]",
                    d.class_name,
                    d.role.to_string(),
                    d.confidence,
                    d.bbox[0],
                    d.bbox[1],
                    d.bbox[2],
                    d.bbox[3]
                );
            }
        }
        all.push((path.display().to_string(), img.width(), img.height(), dets));
    }
    if json {
        for (image, width, height, dets) in &all {
            results.push(ImageResult { image: image.clone(), width: *width, height: *height, detections: dets });
        }
        out = serde_json::to_string_pretty(&results).map_err(|e| VisionError::Invalid(e.to_string()))?;
        out.push('\n');
    }
    Ok(out)
}

/// `servicebay model import FILE [--name NAME]`.
pub fn cli_import(src: &Path, models_dir: &Path, name: Option<&str>) -> Result<String, VisionError> {
    let card = import_model(src, models_dir, name)?;
    let mut out = format!(
        "imported {} as '{}': YOLOv8{}, {} classes, sha256 {}\n",
        src.display(),
        card.name,
        card.scale,
        card.classes.len(),
        card.source_sha256
    );
    let mapped: Vec<String> =
        card.classes.iter().zip(&card.roles).filter(|(_, r)| **r != Role::Ignore).map(|(c, r)| format!("{c}={r}")).collect();
    let _ =
        writeln!(out, "roles: {}", if mapped.is_empty() { "all ignore (edit the card to map classes)".into() } else { mapped.join(", ") });
    let _ = writeln!(out, "licence: {}", card.licence);
    let _ = writeln!(out, "card: {}", models_dir.join(format!("{}.toml", card.name)).display());
    Ok(out)
}

/// `servicebay model list`.
pub fn cli_list(models_dir: &Path) -> Result<String, VisionError> {
    let cards = list_models(models_dir)?;
    if cards.is_empty() {
        return Ok(format!(
            "no models installed in {}: run scripts/fetch-models.sh, then `servicebay model import FILE`\n",
            models_dir.display()
        ));
    }
    let mut out = format!("{:<20} {:<6} {:>7}  {:<30} source\n", "NAME", "SCALE", "CLASSES", "ROLES");
    for c in cards {
        let mut roles: Vec<String> = c.roles.iter().filter(|r| **r != Role::Ignore).map(|r| r.to_string()).collect();
        roles.sort();
        roles.dedup();
        let _ = writeln!(out, "{:<20} {:<6} {:>7}  {:<30} {}", c.name, c.scale, c.classes.len(), roles.join(","), c.source_file);
    }
    Ok(out)
}

fn role_colour(role: &Role) -> Rgb<u8> {
    match role {
        Role::Vehicle => Rgb([0, 170, 255]),
        Role::Damage(_) => Rgb([255, 40, 40]),
        Role::Part(_) => Rgb([255, 200, 0]),
        Role::PiiFace | Role::PiiPlate | Role::PiiPerson => Rgb([200, 0, 255]),
        Role::Ignore => Rgb([160, 160, 160]),
    }
}

/// 3x5 glyphs, rows top to bottom, 3 bits each (MSB = left).
fn glyph(c: char) -> u16 {
    match c.to_ascii_uppercase() {
        'A' => 0b010_101_111_101_101,
        'B' => 0b110_101_110_101_110,
        'C' => 0b011_100_100_100_011,
        'D' => 0b110_101_101_101_110,
        'E' => 0b111_100_110_100_111,
        'F' => 0b111_100_110_100_100,
        'G' => 0b011_100_101_101_011,
        'H' => 0b101_101_111_101_101,
        'I' => 0b111_010_010_010_111,
        'J' => 0b001_001_001_101_010,
        'K' => 0b101_101_110_101_101,
        'L' => 0b100_100_100_100_111,
        'M' => 0b101_111_111_101_101,
        'N' => 0b110_101_101_101_101,
        'O' => 0b010_101_101_101_010,
        'P' => 0b110_101_110_100_100,
        'Q' => 0b010_101_101_110_011,
        'R' => 0b110_101_110_101_101,
        'S' => 0b011_100_010_001_110,
        'T' => 0b111_010_010_010_010,
        'U' => 0b101_101_101_101_111,
        'V' => 0b101_101_101_101_010,
        'W' => 0b101_101_111_111_101,
        'X' => 0b101_101_010_101_101,
        'Y' => 0b101_101_010_010_010,
        'Z' => 0b111_001_010_100_111,
        '0' => 0b111_101_101_101_111,
        '1' => 0b010_110_010_010_111,
        '2' => 0b110_001_010_100_111,
        '3' => 0b110_001_010_001_110,
        '4' => 0b101_101_111_001_001,
        '5' => 0b111_100_110_001_110,
        '6' => 0b011_100_111_101_111,
        '7' => 0b111_001_010_010_010,
        '8' => 0b111_101_111_101_111,
        '9' => 0b111_101_111_001_110,
        '.' => 0b000_000_000_000_010,
        ':' => 0b000_010_000_010_000,
        '-' => 0b000_000_111_000_000,
        '_' => 0b000_000_000_000_111,
        '%' => 0b101_001_010_100_101,
        _ => 0,
    }
}

fn fill_rect(img: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y1.max(0)..y2.min(h) {
        for x in x1.max(0)..x2.min(w) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// Draws `text` with its top-left corner at (x, y), `scale` pixels per font dot.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let g = glyph(ch);
        let ox = x + i as i64 * 4 * scale;
        for row in 0..5 {
            for col in 0..3 {
                if g & (1 << (14 - (row * 3 + col))) != 0 {
                    fill_rect(img, ox + col * scale, y + row * scale, ox + (col + 1) * scale, y + (row + 1) * scale, c);
                }
            }
        }
    }
}

/// The photo with each detection's box and a `class role conf` label.
pub fn annotate_image(img: &RgbImage, dets: &[Detection]) -> RgbImage {
    let mut out = img.clone();
    let long = out.width().max(out.height()) as i64;
    let thick = (long / 400).max(2);
    let scale = (long / 300).max(2);
    for d in dets {
        let c = role_colour(&d.role);
        let [x1, y1, x2, y2] = d.bbox.map(|v| v.round() as i64);
        fill_rect(&mut out, x1, y1, x2, y1 + thick, c);
        fill_rect(&mut out, x1, y2 - thick, x2, y2, c);
        fill_rect(&mut out, x1, y1, x1 + thick, y2, c);
        fill_rect(&mut out, x2 - thick, y1, x2, y2, c);
        let label = format!("{} {} {:.0}%", d.class_name, d.role, d.confidence * 100.0);
        let lw = label.chars().count() as i64 * 4 * scale + scale;
        let lh = 7 * scale;
        let ly = if y1 - lh >= 0 { y1 - lh } else { y1 };
        fill_rect(&mut out, x1, ly, x1 + lw, ly + lh, c);
        draw_text(&mut out, x1 + scale, ly + scale, &label, scale, Rgb([255, 255, 255]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotate_draws_box_and_label() {
        let img = RgbImage::from_pixel(300, 200, Rgb([0, 0, 0]));
        let d =
            Detection { class_id: 2, class_name: "car".into(), role: Role::Vehicle, confidence: 0.91, bbox: [50.0, 60.0, 250.0, 180.0] };
        let out = annotate_image(&img, &[d]);
        assert_eq!(out.get_pixel(150, 60).0, [0, 170, 255], "top edge");
        assert_eq!(out.get_pixel(150, 120).0, [0, 0, 0], "inside untouched");
        // Label band above the box has white text pixels.
        let white = (0..300).flat_map(|x| (0..60).map(move |y| (x, y))).filter(|&(x, y)| out.get_pixel(x, y).0 == [255, 255, 255]).count();
        assert!(white > 20, "{white} text pixels");
    }
}
