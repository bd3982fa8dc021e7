//! `servicebay dataset export`: the photo findings people confirmed or corrected, as an
//! Ultralytics YOLO dataset (images/, labels/ with one `class cx cy w h` line per box, data.yaml),
//! for the dealer's next damage model. Images are the privacy-blurred renders (faces, plates and
//! heads pixelated): an export leaves the store. Rejected findings are left out of the labels, so
//! their photos still teach the model what is not damage. Classes are the damage vocabulary, in
//! its fixed order, so datasets exported at different times share class ids.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::domain::vocab::DamageType;
use crate::files::PhotoFiles;
use crate::store::{self, Store, StoreError};
use crate::vision::Detection;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("photo {photo}: {reason}")]
    Photo { photo: String, reason: String },
    #[error("{0} is not empty: export into a new directory")]
    NotEmpty(PathBuf),
}

#[derive(Debug, Default, PartialEq)]
pub struct ExportReport {
    pub images: usize,
    pub boxes: usize,
    pub rejected: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

/// One label line: class and the box centre/size normalised to the image.
pub fn label_line(class: usize, bbox: [f32; 4], w: u32, h: u32) -> String {
    let (w, h) = (w.max(1) as f32, h.max(1) as f32);
    let clamp = |v: f32| v.clamp(0.0, 1.0);
    let (x1, y1, x2, y2) = (clamp(bbox[0] / w), clamp(bbox[1] / h), clamp(bbox[2] / w), clamp(bbox[3] / h));
    format!("{class} {:.6} {:.6} {:.6} {:.6}", (x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1)
}

pub fn data_yaml() -> String {
    let mut s = String::from("# ServiceBay export: photo findings confirmed or corrected by people; images privacy-blurred.\n");
    s.push_str("path: .\ntrain: images\nval: images\nnames:\n");
    for (i, d) in DamageType::ALL.iter().enumerate() {
        let _ = writeln!(s, "  {i}: {}", d.id());
    }
    s
}

pub async fn export(store: &Store, files: &PhotoFiles, out: &Path) -> Result<ExportReport, DatasetError> {
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(DatasetError::NotEmpty(out.to_path_buf()));
    }
    let (images, labels) = (out.join("images"), out.join("labels"));
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    std::fs::create_dir_all(&labels).map_err(io(&labels))?;
    let findings = store.read(store::findings::reviewed_photo_findings).await?;
    let mut report = ExportReport::default();
    let mut i = 0;
    while i < findings.len() {
        let photo_id = findings[i].photo_id.clone().unwrap_or_default();
        let group: Vec<_> = findings[i..].iter().take_while(|f| f.photo_id.as_deref() == Some(&photo_id)).cloned().collect();
        i += group.len();
        let pid = photo_id.clone();
        let (photo, analysis) =
            store.read(move |tx| Ok::<_, StoreError>((store::photos::get(tx, &pid)?, store::photos::analysis(tx, &pid)?))).await?;
        let Some(photo) = photo else { continue };
        let dets: Vec<Detection> = analysis.and_then(|a| a.detections).and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default();
        let img =
            files.open_image(&photo.case_id, &photo.sha256).map_err(|reason| DatasetError::Photo { photo: photo.id.clone(), reason })?;
        let (w, h) = (img.width(), img.height());
        let blurred = crate::vision::blur::blur_pii(&img, &dets);
        let img_path = images.join(format!("{}.jpg", photo.id));
        blurred
            .save_with_format(&img_path, image::ImageFormat::Jpeg)
            .map_err(|e| DatasetError::Photo { photo: photo.id.clone(), reason: e.to_string() })?;
        let mut text = String::new();
        for f in &group {
            if f.review_status == "rejected" {
                report.rejected += 1;
                continue;
            }
            let class = DamageType::ALL.iter().position(|d| d.id() == f.damage_type);
            let bbox: Option<[f32; 4]> = f.bbox.as_ref().and_then(|b| serde_json::from_value(b.clone()).ok());
            if let (Some(class), Some(bbox)) = (class, bbox) {
                text.push_str(&label_line(class, bbox, w, h));
                text.push('\n');
                report.boxes += 1;
            }
        }
        let label_path = labels.join(format!("{}.txt", photo.id));
        std::fs::write(&label_path, text).map_err(io(&label_path))?;
        report.images += 1;
    }
    let yaml = out.join("data.yaml");
    std::fs::write(&yaml, data_yaml()).map_err(io(&yaml))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_normalised_centre_and_size() {
        assert_eq!(label_line(3, [100.0, 50.0, 300.0, 150.0], 400, 200), "3 0.500000 0.500000 0.500000 0.500000");
        // Boxes past the edge are clamped into the image.
        assert_eq!(label_line(0, [-10.0, 0.0, 50.0, 250.0], 100, 200), "0 0.250000 0.500000 0.500000 1.000000");
    }

    #[test]
    fn data_yaml_lists_the_damage_vocabulary_in_order() {
        let y = data_yaml();
        assert!(y.contains("  0: scratch\n"), "{y}");
        assert_eq!(y.matches("\n  ").count(), DamageType::ALL.len());
    }
}
