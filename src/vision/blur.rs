//! Privacy blur: hides faces, licence plates and the heads of people before a photo leaves the
//! store (shown outside, synced, exported). The unblurred original stays local.
//!
//! Method: every `pii:face` and `pii:plate` box (grown by 10 % each side) and the head region of
//! every `pii:person` box is **pixelated** (mosaic): each block of the region is replaced by its
//! mean colour, blocks at least 8 px and at least 1/6 of the region's shorter side, so a face
//! is at most ~6 blocks across. Averaging throws the detail away: unlike a Gaussian blur, which
//! can be partly undone by deconvolution, a coarse mosaic cannot be inverted.
//!
//! Head region of a person box (COCO has no face class): the full box width, from the top of
//! the box down to 25 % of its height, but at least 45 % of its width (upper-body crops, where
//! the head is a larger share of the box), capped at the box height; grown by 10 % sideways and
//! upwards.
//!
//! Limits (say so to the dealer): it only blurs what the detector found: a person missed by the
//! detector (small, far away, mostly hidden, below the confidence threshold) is not blurred, so
//! run the privacy pass at a lower threshold than findings (e.g. 0.15). People bending down,
//! lying or upside down have their heads outside the top band. Faces in reflections, posters and
//! screens are blurred only if detected as persons. Plates are blurred only with a model that
//! has a plate class (the COCO model has none): the dealer's own model should add one.

use image::{DynamicImage, RgbImage};

use crate::vision::{Detection, Role};

/// A pixel rectangle `x1, y1, x2, y2` (exclusive end), inside the image.
pub type Region = [u32; 4];

fn grow_clip(b: [f32; 4], left: f32, top: f32, right: f32, bottom: f32, w: u32, h: u32) -> Option<Region> {
    let bw = b[2] - b[0];
    let bh = b[3] - b[1];
    if !(bw > 0.0 && bh > 0.0) {
        return None;
    }
    let x1 = (b[0] - bw * left).floor().clamp(0.0, w as f32) as u32;
    let y1 = (b[1] - bh * top).floor().clamp(0.0, h as f32) as u32;
    let x2 = (b[2] + bw * right).ceil().clamp(0.0, w as f32) as u32;
    let y2 = (b[3] + bh * bottom).ceil().clamp(0.0, h as f32) as u32;
    (x2 > x1 && y2 > y1).then_some([x1, y1, x2, y2])
}

/// The head band of a person box (see the module doc), in the box's coordinates.
pub fn head_box(person: [f32; 4]) -> [f32; 4] {
    let w = person[2] - person[0];
    let h = person[3] - person[1];
    let head_h = (0.25 * h).max(0.45 * w).min(h);
    [person[0], person[1], person[2], person[1] + head_h]
}

/// Regions to blur for an image of `w` x `h` pixels.
pub fn privacy_regions(dets: &[Detection], w: u32, h: u32) -> Vec<Region> {
    dets.iter()
        .filter_map(|d| match d.role {
            Role::PiiFace | Role::PiiPlate => grow_clip(d.bbox, 0.1, 0.1, 0.1, 0.1, w, h),
            Role::PiiPerson => grow_clip(head_box(d.bbox), 0.1, 0.1, 0.1, 0.0, w, h),
            _ => None,
        })
        .collect()
}

/// Pixelates one region in place (block mean colour).
pub fn pixelate(img: &mut RgbImage, r: Region) {
    let (iw, ih) = img.dimensions();
    let [x1, y1, x2, y2] = [r[0].min(iw), r[1].min(ih), r[2].min(iw), r[3].min(ih)];
    if x2 <= x1 || y2 <= y1 {
        return;
    }
    let block = ((x2 - x1).min(y2 - y1) / 6).max(8);
    let mut by = y1;
    while by < y2 {
        let ey = (by + block).min(y2);
        let mut bx = x1;
        while bx < x2 {
            let ex = (bx + block).min(x2);
            let mut sum = [0u64; 3];
            for y in by..ey {
                for x in bx..ex {
                    let p = img.get_pixel(x, y).0;
                    for c in 0..3 {
                        sum[c] += p[c] as u64;
                    }
                }
            }
            let n = ((ey - by) * (ex - bx)) as u64;
            let mean = image::Rgb([(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8]);
            for y in by..ey {
                for x in bx..ex {
                    img.put_pixel(x, y, mean);
                }
            }
            bx = ex;
        }
        by = ey;
    }
}

/// A copy of the photo with every privacy region pixelated.
pub fn blur_pii(img: &DynamicImage, dets: &[Detection]) -> RgbImage {
    let mut out = img.to_rgb8();
    for r in privacy_regions(dets, out.width(), out.height()) {
        pixelate(&mut out, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(role: Role, bbox: [f32; 4]) -> Detection {
        Detection { class_id: 0, class_name: String::new(), role, confidence: 0.9, bbox }
    }

    #[test]
    fn head_band_of_standing_and_cropped_people() {
        // Standing: 100 x 400 → top 100 px.
        assert_eq!(head_box([10.0, 20.0, 110.0, 420.0]), [10.0, 20.0, 110.0, 120.0]);
        // Upper body 200 x 200 → 45 % of width = 90 px.
        assert_eq!(head_box([0.0, 0.0, 200.0, 200.0]), [0.0, 0.0, 200.0, 90.0]);
        // Very wide, short box: capped at the box height.
        assert_eq!(head_box([0.0, 0.0, 400.0, 50.0]), [0.0, 0.0, 400.0, 50.0]);
    }

    #[test]
    fn regions_by_role() {
        let dets = vec![
            det(Role::PiiPlate, [100.0, 100.0, 200.0, 150.0]),
            det(Role::PiiPerson, [10.0, 20.0, 110.0, 420.0]),
            det(Role::Vehicle, [0.0, 0.0, 500.0, 500.0]),
            det(Role::PiiFace, [-20.0, -20.0, 10.0, 10.0]),
        ];
        let r = privacy_regions(&dets, 640, 480);
        assert_eq!(r, vec![[90, 95, 210, 155], [0, 10, 120, 120], [0, 0, 13, 13]]);
    }

    #[test]
    fn pixelate_averages_blocks_and_keeps_the_rest() {
        let mut img = RgbImage::from_fn(32, 16, |x, _| if x % 2 == 0 { image::Rgb([0, 0, 0]) } else { image::Rgb([200, 100, 50]) });
        pixelate(&mut img, [0, 0, 16, 16]);
        assert_eq!(img.get_pixel(0, 0).0, [100, 50, 25]);
        assert_eq!(img.get_pixel(15, 15).0, [100, 50, 25]);
        assert_eq!(img.get_pixel(16, 0).0, [0, 0, 0], "outside the region untouched");
        assert_eq!(img.get_pixel(17, 0).0, [200, 100, 50]);
    }
}
