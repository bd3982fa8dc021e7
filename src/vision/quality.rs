//! Photo quality gate and shot guess, as pure functions of the decoded photo and (optionally)
//! the detector's output. Every rejection carries a reason the service advisor can act on.
//!
//! Measures (on a copy scaled so its longer side is 640 px, so the thresholds do not depend on
//! the camera's resolution):
//! - brightness: mean luma (BT.601) 0..255;
//! - sharpness: variance of the 4-neighbour Laplacian of the luma (low = blurred or out of
//!   focus). The threshold is calibrated on the Ultralytics test photos (bus.jpg: ~1,900; the
//!   same photo with a 2.5 px Gaussian blur: ~30);
//! - size of the original, and the largest `vehicle` box as a share of the frame.
//!
//! Shot guess from the largest vehicle box: a box cut by three or more frame edges, or filling
//! most of the frame, is a close-up; a wide box (width/height >= 1.8, a car seen side-on is
//! ~2.2-2.8) is a side shot; otherwise front (front and rear cannot be told apart by a box).

use image::{DynamicImage, GrayImage};
use serde::Serialize;

use crate::vision::{Detection, Role};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityConfig {
    /// Shorter side of the original below this is too small (a detector needs detail).
    pub min_short_side: u32,
    pub too_dark_below: f32,
    pub too_bright_above: f32,
    /// Laplacian variance below this is blurred.
    pub min_sharpness: f64,
    /// A vehicle box covering less than this share of the frame is too far away.
    pub min_vehicle_share: f32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self { min_short_side: 480, too_dark_below: 45.0, too_bright_above: 215.0, min_sharpness: 100.0, min_vehicle_share: 0.08 }
    }
}

/// Why a photo is not good enough. `Display` gives the advisor-facing sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum QualityIssue {
    TooSmall { width: u32, height: u32, min_short_side: u32 },
    TooDark { brightness: f32 },
    TooBright { brightness: f32 },
    Blurred { sharpness: f64 },
    NoVehicle,
    VehicleTooSmall { share: f32 },
}

impl std::fmt::Display for QualityIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QualityIssue::TooSmall { width, height, min_short_side } => write!(
                f,
                "photo is too small ({width}x{height}): use the camera's full resolution (at least {min_short_side} px on the short side)"
            ),
            QualityIssue::TooDark { brightness } => {
                write!(f, "photo is too dark (brightness {brightness:.0}/255): switch on the bay lights or use the flash, then retake")
            }
            QualityIssue::TooBright { brightness } => write!(
                f,
                "photo is over-exposed (brightness {brightness:.0}/255): avoid direct sun or flash glare on the paint, then retake"
            ),
            QualityIssue::Blurred { sharpness } => {
                write!(f, "photo is blurred (sharpness {sharpness:.0}): hold the camera still, tap to focus on the damage, then retake")
            }
            QualityIssue::NoVehicle => {
                write!(f, "no vehicle found in the photo: frame the whole vehicle or the damaged panel with some of the car around it")
            }
            QualityIssue::VehicleTooSmall { share } => {
                write!(f, "vehicle fills only {:.0}% of the photo: step closer so the vehicle fills most of the frame", share * 100.0)
            }
        }
    }
}

/// Which requested shot this photo most likely is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shot {
    Front,
    Side,
    CloseUp,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    pub ok: bool,
    pub issues: Vec<QualityIssue>,
    pub brightness: f32,
    pub sharpness: f64,
    /// Share of the frame covered by the largest vehicle box (None without detections).
    pub vehicle_share: Option<f32>,
    pub shot: Shot,
}

impl QualityReport {
    /// Advisor-facing reasons, one per issue.
    pub fn reasons(&self) -> Vec<String> {
        self.issues.iter().map(|i| i.to_string()).collect()
    }
}

/// Luma copy with the longer side at most 640 px.
fn analysis_gray(img: &DynamicImage) -> GrayImage {
    let (w, h) = (img.width(), img.height());
    let long = w.max(h);
    let small = if long > 640 {
        let s = 640.0 / long as f32;
        img.resize_exact(
            ((w as f32 * s).round() as u32).max(1),
            ((h as f32 * s).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        img.clone()
    };
    small.to_luma8()
}

pub fn mean_brightness(gray: &GrayImage) -> f32 {
    let n = gray.as_raw().len().max(1);
    gray.as_raw().iter().map(|&v| v as u64).sum::<u64>() as f32 / n as f32
}

/// Variance of the 4-neighbour Laplacian over the interior pixels (0 for images < 3x3).
pub fn laplacian_variance(gray: &GrayImage) -> f64 {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let p = gray.as_raw();
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = p[y * w + x] as f64;
            let l = p[(y - 1) * w + x] as f64 + p[(y + 1) * w + x] as f64 + p[y * w + x - 1] as f64 + p[y * w + x + 1] as f64 - 4.0 * c;
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sq / n - mean * mean
}

/// Shot guess from a vehicle box in an image of `w` x `h` (see the module doc).
pub fn guess_shot(b: [f32; 4], w: u32, h: u32) -> Shot {
    let (wf, hf) = (w as f32, h as f32);
    let bw = (b[2] - b[0]).max(0.0);
    let bh = (b[3] - b[1]).max(0.0);
    if bw <= 0.0 || bh <= 0.0 {
        return Shot::Unknown;
    }
    let margin = 0.01 * wf.max(hf);
    let cut = [b[0] <= margin, b[1] <= margin, b[2] >= wf - margin, b[3] >= hf - margin].iter().filter(|c| **c).count();
    let share = bw * bh / (wf * hf);
    if cut >= 3 || share > 0.85 {
        Shot::CloseUp
    } else if bw / bh >= 1.8 {
        Shot::Side
    } else {
        Shot::Front
    }
}

/// Runs the gate. `detections`: the detector's output on this photo, or None when no detector
/// is available (then the vehicle checks are skipped, not failed).
pub fn assess(img: &DynamicImage, detections: Option<&[Detection]>, cfg: &QualityConfig) -> QualityReport {
    let mut issues = Vec::new();
    let (w, h) = (img.width(), img.height());
    if w.min(h) < cfg.min_short_side {
        issues.push(QualityIssue::TooSmall { width: w, height: h, min_short_side: cfg.min_short_side });
    }
    let gray = analysis_gray(img);
    let brightness = mean_brightness(&gray);
    if brightness < cfg.too_dark_below {
        issues.push(QualityIssue::TooDark { brightness });
    } else if brightness > cfg.too_bright_above {
        issues.push(QualityIssue::TooBright { brightness });
    }
    let sharpness = laplacian_variance(&gray);
    if sharpness < cfg.min_sharpness {
        issues.push(QualityIssue::Blurred { sharpness });
    }
    let mut vehicle_share = None;
    let mut shot = Shot::Unknown;
    if let Some(dets) = detections {
        let area = |d: &Detection| (d.bbox[2] - d.bbox[0]).max(0.0) * (d.bbox[3] - d.bbox[1]).max(0.0);
        let best = dets.iter().filter(|d| d.role == Role::Vehicle).max_by(|a, b| area(a).total_cmp(&area(b)));
        match best {
            None => issues.push(QualityIssue::NoVehicle),
            Some(v) => {
                let share = area(v) / (w as f32 * h as f32);
                vehicle_share = Some(share);
                shot = guess_shot(v.bbox, w, h);
                if share < cfg.min_vehicle_share {
                    issues.push(QualityIssue::VehicleTooSmall { share });
                }
            }
        }
    }
    QualityReport { ok: issues.is_empty(), issues, brightness, sharpness, vehicle_share, shot }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb, RgbImage};

    fn vehicle(bbox: [f32; 4]) -> Detection {
        Detection { class_id: 2, class_name: "car".into(), role: Role::Vehicle, confidence: 0.9, bbox }
    }

    /// A sharp, mid-grey checkerboard (high Laplacian variance, brightness ~128).
    fn checker(w: u32, h: u32, lo: u8, hi: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| if (x / 4 + y / 4) % 2 == 0 { Rgb([lo; 3]) } else { Rgb([hi; 3]) }))
    }

    #[test]
    fn laplacian_of_flat_and_edges() {
        assert_eq!(laplacian_variance(&GrayImage::from_pixel(10, 10, Luma([77]))), 0.0);
        let stripes = GrayImage::from_fn(10, 10, |x, _| Luma([if x % 2 == 0 { 0 } else { 100 }]));
        // Interior Laplacian alternates +200 / -200 → variance 40,000.
        assert!((laplacian_variance(&stripes) - 40_000.0).abs() < 1e-6);
    }

    #[test]
    fn reasons_for_bad_photos() {
        let cfg = QualityConfig::default();
        let dark = assess(&checker(800, 600, 0, 40), None, &cfg);
        assert!(matches!(dark.issues[..], [QualityIssue::TooDark { .. }]), "{:?}", dark.issues);
        assert!(dark.reasons()[0].contains("too dark"));
        let bright = assess(&checker(800, 600, 220, 255), None, &cfg);
        assert!(matches!(bright.issues[..], [QualityIssue::TooBright { .. }]), "{:?}", bright.issues);
        let flat = assess(&DynamicImage::ImageRgb8(RgbImage::from_pixel(800, 600, Rgb([128; 3]))), None, &cfg);
        assert!(matches!(flat.issues[..], [QualityIssue::Blurred { .. }]), "{:?}", flat.issues);
        let small = assess(&checker(320, 240, 60, 200), None, &cfg);
        assert!(matches!(small.issues[..], [QualityIssue::TooSmall { .. }]));
        let good = assess(&checker(800, 600, 60, 200), None, &cfg);
        assert!(good.ok, "{:?}", good.issues);
    }

    #[test]
    fn vehicle_checks_and_shot() {
        let cfg = QualityConfig::default();
        let img = checker(1000, 500, 60, 200);
        let none = assess(&img, Some(&[]), &cfg);
        assert_eq!(none.issues, vec![QualityIssue::NoVehicle]);
        let far = assess(&img, Some(&[vehicle([400.0, 200.0, 500.0, 250.0])]), &cfg);
        assert!(matches!(far.issues[..], [QualityIssue::VehicleTooSmall { .. }]));
        let side = assess(&img, Some(&[vehicle([100.0, 150.0, 900.0, 450.0])]), &cfg);
        assert!(side.ok);
        assert_eq!(side.shot, Shot::Side);
        assert_eq!(guess_shot([300.0, 100.0, 700.0, 420.0], 1000, 500), Shot::Front);
        assert_eq!(guess_shot([0.0, 0.0, 1000.0, 400.0], 1000, 500), Shot::CloseUp);
        assert_eq!(guess_shot([0.0, 0.0, 0.0, 0.0], 1000, 500), Shot::Unknown);
    }
}
