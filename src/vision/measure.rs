//! Damage size in centimetres from a photo, when there is a reference of known size: the part the
//! damage lies on (typical panel sizes, `assets/vision/panel_sizes.toml`) or a segment an advisor
//! marks on the photo with its real length. Pure functions on boxes; no weights needed.
//!
//! Method: cm per pixel from the reference (mean of the width and height ratios for a part box;
//! length over pixel distance for a marked segment), times the damage box's diagonal (a scratch
//! runs corner to corner of its box; for a horizontal one the diagonal is about its width).
//! Limits: assumes the photo is square-on; an oblique shot foreshortens. So a measurement that
//! disagrees with the customer's words by more than `DISAGREEMENT` goes to a person.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative difference between the customer's stated length and the measured one above which a
/// person decides (the 15 %).
pub const DISAGREEMENT: f64 = 0.15;

/// A damage box must lie at least this much inside a part box to be "on" that part.
const ON_PART: f32 = 0.5;

const PANEL_SIZES_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/vision/panel_sizes.toml"));

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSize {
    pub width_cm: f64,
    pub height_cm: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSizes {
    pub version: u32,
    pub part: BTreeMap<String, PanelSize>,
}

impl PanelSizes {
    /// The compiled-in table (a unit test validates it).
    pub fn builtin() -> PanelSizes {
        Self::parse(PANEL_SIZES_TOML).unwrap_or_else(|e| panic!("builtin panel sizes invalid: {e}"))
    }

    pub fn parse(text: &str) -> Result<PanelSizes, String> {
        let t: PanelSizes = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, s) in &t.part {
            if crate::domain::vocab::Part::from_id(name).is_none() {
                return Err(format!("`{name}` is not a part of the vocabulary"));
            }
            if !(1.0..=1000.0).contains(&s.width_cm) || !(1.0..=1000.0).contains(&s.height_cm) {
                return Err(format!("`{name}`: sizes must be between 1 and 1000 cm"));
            }
        }
        Ok(t)
    }

    pub fn get(&self, part: &str) -> Option<PanelSize> {
        self.part.get(part).copied()
    }
}

/// What gives the photo its scale.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// A detected part box and that part's typical size.
    Part { name: String, bbox: [f32; 4], size: PanelSize },
    /// A segment an advisor marked on the photo (pixels) and its real length.
    Marked { from: [f32; 2], to: [f32; 2], length_cm: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub length_cm: f64,
    pub cm_per_px: f64,
    /// "part:<name>" or "marked".
    pub reference: String,
}

fn wh(b: &[f32; 4]) -> (f64, f64) {
    (((b[2] - b[0]) as f64).max(0.0), ((b[3] - b[1]) as f64).max(0.0))
}

/// Centimetres per pixel, or None for a degenerate reference.
pub fn cm_per_px(r: &Reference) -> Option<f64> {
    let v = match r {
        Reference::Part { bbox, size, .. } => {
            let (w, h) = wh(bbox);
            if w < 2.0 || h < 2.0 {
                return None;
            }
            (size.width_cm / w + size.height_cm / h) / 2.0
        }
        Reference::Marked { from, to, length_cm } => {
            let d = (((to[0] - from[0]) as f64).powi(2) + ((to[1] - from[1]) as f64).powi(2)).sqrt();
            if d < 2.0 || *length_cm <= 0.0 {
                return None;
            }
            length_cm / d
        }
    };
    v.is_finite().then_some(v)
}

/// The damage's length: its box diagonal at the reference's scale, rounded to 0.5 cm.
pub fn measure(damage: &[f32; 4], r: &Reference) -> Option<Measurement> {
    let k = cm_per_px(r)?;
    let (w, h) = wh(damage);
    let length_cm = ((w * w + h * h).sqrt() * k * 2.0).round() / 2.0;
    let reference = match r {
        Reference::Part { name, .. } => format!("part:{name}"),
        Reference::Marked { .. } => "marked".to_string(),
    };
    Some(Measurement { length_cm, cm_per_px: k, reference })
}

/// The part box (index into `parts`) the damage lies on: the one holding the largest share of the
/// damage box, if at least half of it.
pub fn part_under(damage: &[f32; 4], parts: &[[f32; 4]]) -> Option<usize> {
    let (w, h) = wh(damage);
    let area = w * h;
    if area <= 0.0 {
        return None;
    }
    let share = |p: &[f32; 4]| {
        let iw = (damage[2].min(p[2]) - damage[0].max(p[0])).max(0.0) as f64;
        let ih = (damage[3].min(p[3]) - damage[1].max(p[1])).max(0.0) as f64;
        iw * ih / area
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i, share(p)))
        .filter(|(_, s)| *s >= ON_PART as f64)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The relative difference when it is above `DISAGREEMENT`: the customer's words and the photo
/// disagree, and a person decides which is right.
pub fn disagreement(stated_cm: f64, measured_cm: f64) -> Option<f64> {
    if measured_cm <= 0.0 || stated_cm <= 0.0 {
        return None;
    }
    let rel = (stated_cm - measured_cm).abs() / measured_cm;
    (rel > DISAGREEMENT).then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_valid_and_refuses_unknown_parts() {
        let t = PanelSizes::builtin();
        assert_eq!(t.get("door"), Some(PanelSize { width_cm: 110.0, height_cm: 75.0 }));
        assert!(PanelSizes::parse("version = 1\n[part]\nspoiler = { width_cm = 1, height_cm = 1 }\n").is_err());
        assert!(PanelSizes::parse("version = 1\n[part]\ndoor = { width_cm = 0, height_cm = 1 }\n").is_err());
    }

    #[test]
    fn a_scratch_on_a_door_in_centimetres() {
        // A door 550 × 375 px → 0.2 cm/px; a horizontal scratch 150 px long, 2 px high → 30 cm.
        let door = Reference::Part {
            name: "door".into(),
            bbox: [100.0, 100.0, 650.0, 475.0],
            size: PanelSize { width_cm: 110.0, height_cm: 75.0 },
        };
        let m = measure(&[200.0, 300.0, 350.0, 302.0], &door).unwrap();
        assert!((m.cm_per_px - 0.2).abs() < 1e-9);
        assert_eq!((m.length_cm, m.reference.as_str()), (30.0, "part:door"));
    }

    #[test]
    fn a_marked_reference() {
        // 200 px marked as 10 cm (a coin row, a ruler): a 3-4-5 box of 300 × 400 px → 25 cm.
        let r = Reference::Marked { from: [0.0, 0.0], to: [200.0, 0.0], length_cm: 10.0 };
        assert_eq!(measure(&[0.0, 0.0, 300.0, 400.0], &r).unwrap().length_cm, 25.0);
        assert_eq!(cm_per_px(&Reference::Marked { from: [5.0, 5.0], to: [5.0, 6.0], length_cm: 10.0 }), None);
        let flat = Reference::Part { name: "door".into(), bbox: [0.0, 0.0, 100.0, 1.0], size: PanelSize { width_cm: 1.0, height_cm: 1.0 } };
        assert_eq!(measure(&[0.0, 0.0, 1.0, 1.0], &flat), None);
    }

    #[test]
    fn damage_belongs_to_the_part_holding_most_of_it() {
        let parts = [[0.0, 0.0, 100.0, 100.0], [90.0, 0.0, 300.0, 100.0]];
        assert_eq!(part_under(&[80.0, 10.0, 120.0, 20.0], &parts), Some(1)); // 75 % on the second
        assert_eq!(part_under(&[10.0, 10.0, 20.0, 20.0], &parts), Some(0));
        assert_eq!(part_under(&[400.0, 10.0, 420.0, 20.0], &parts), None);
        assert_eq!(part_under(&[10.0, 10.0, 10.0, 20.0], &parts), None);
    }

    #[test]
    fn fifteen_percent_rule() {
        assert_eq!(disagreement(30.0, 30.0), None);
        assert_eq!(disagreement(34.0, 30.0), None); // 13 %
        assert!(disagreement(35.0, 30.0).is_some()); // 17 %
        assert!(disagreement(20.0, 30.0).is_some());
        assert_eq!(disagreement(0.0, 30.0), None);
    }
}
