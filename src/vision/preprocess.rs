//! Pre-processing as pure functions: bounded decode with EXIF orientation, Ultralytics
//! letterbox (aspect-preserving resize, centred, grey 114 padding) and the RGB 0..1 CHW tensor.
//!
//! The resize is our own bilinear (OpenCV `INTER_LINEAR` geometry: half-pixel centres, no
//! anti-aliasing), written so `scripts/ort-reference.py` can reproduce it bit for bit in numpy:
//! parity tests then compare networks, not resamplers.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use rayon::prelude::*;

use crate::vision::VisionError;

/// Largest side we accept before decoding (checked from the header, not after allocation).
pub const MAX_SIDE: u32 = 12_000;
/// Grey used by Ultralytics for letterbox padding.
pub const PAD_VALUE: u8 = 114;

/// How an image was placed into the square network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Resize factor original -> input.
    pub scale: f32,
    pub pad_left: u32,
    pub pad_top: u32,
    pub src_w: u32,
    pub src_h: u32,
    /// Side of the square input.
    pub size: u32,
}

/// Decodes image bytes with dimension limits checked from the header, and applies the EXIF
/// orientation so boxes refer to the picture as a person sees it.
pub fn decode_image(bytes: &[u8], what: &str) -> Result<DynamicImage, VisionError> {
    let err = |reason: String| VisionError::Image { what: what.to_string(), reason };
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| err(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
    // A broken EXIF block is not worth rejecting a photo for: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(err("empty image".into()));
    }
    Ok(img)
}

/// Reads and decodes an image file (see [`decode_image`]).
pub fn open_image(path: &Path) -> Result<DynamicImage, VisionError> {
    let bytes = std::fs::read(path).map_err(|e| VisionError::io(path, e))?;
    decode_image(&bytes, &path.display().to_string())
}

/// Computes the letterbox geometry exactly like Ultralytics' `LetterBox` (scale-up allowed,
/// centred, `round(d -/+ 0.1)` split of odd padding).
pub fn letterbox_geometry(src_w: u32, src_h: u32, size: u32) -> (Letterbox, u32, u32) {
    let r = (size as f64 / src_h as f64).min(size as f64 / src_w as f64);
    let new_w = ((src_w as f64 * r).round() as u32).clamp(1, size);
    let new_h = ((src_h as f64 * r).round() as u32).clamp(1, size);
    let dw = (size - new_w) as f64 / 2.0;
    let dh = (size - new_h) as f64 / 2.0;
    // Python's round() is banker's rounding; with the +-0.1 offsets the values never sit on .5.
    let left = (dw - 0.1).round().max(0.0) as u32;
    let top = (dh - 0.1).round().max(0.0) as u32;
    (Letterbox { scale: r as f32, pad_left: left, pad_top: top, src_w, src_h, size }, new_w, new_h)
}

/// Bilinear resize with OpenCV INTER_LINEAR geometry, in f32, rounded to u8.
/// Source coordinates: `sx = (dx + 0.5) * (src_w / dst_w) - 0.5`, clamped at 0.
pub fn resize_bilinear(src: &RgbImage, dst_w: u32, dst_h: u32) -> RgbImage {
    let (sw, sh) = (src.width(), src.height());
    if sw == dst_w && sh == dst_h {
        return src.clone();
    }
    let taps = |dst: u32, srcn: u32| -> Vec<(usize, usize, f32)> {
        let scale = srcn as f32 / dst as f32;
        (0..dst)
            .map(|d| {
                let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(srcn as usize - 1);
                let i1 = (i0 + 1).min(srcn as usize - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let xt = taps(dst_w, sw);
    let yt = taps(dst_h, sh);
    let sraw = src.as_raw();
    let stride = sw as usize * 3;
    let mut out = vec![0u8; dst_w as usize * dst_h as usize * 3];
    // Rows are independent: split them over the (2-core) thread pool.
    out.par_chunks_mut(dst_w as usize * 3).zip(yt.par_iter()).for_each(|(orow, &(y0, y1, fy))| {
        let r0 = &sraw[y0 * stride..(y0 + 1) * stride];
        let r1 = &sraw[y1 * stride..(y1 + 1) * stride];
        for (dx, &(x0, x1, fx)) in xt.iter().enumerate() {
            for c in 0..3 {
                let p00 = r0[x0 * 3 + c] as f32;
                let p01 = r0[x1 * 3 + c] as f32;
                let p10 = r1[x0 * 3 + c] as f32;
                let p11 = r1[x1 * 3 + c] as f32;
                // Same operation order as the numpy reference (bit-identical in IEEE f32).
                let top = p00 * (1.0 - fx) + p01 * fx;
                let bot = p10 * (1.0 - fx) + p11 * fx;
                let v = top * (1.0 - fy) + bot * fy;
                // floor(v + 0.5) clamped to 0..=255: after the clamp, `as u8` truncation is the
                // floor (x86-64 without SSE4.1 has no floor instruction: floorf was a libm call
                // per value, 1.5 % of our samples in the bench).
                orow[dx * 3 + c] = (v + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    });
    // Length matches by construction.
    RgbImage::from_raw(dst_w, dst_h, out).unwrap_or_else(|| RgbImage::new(dst_w, dst_h))
}

/// Letterboxes an image into a `size` x `size` RGB picture with grey 114 borders.
pub fn letterbox_image(img: &DynamicImage, size: u32) -> (RgbImage, Letterbox) {
    let rgb = img.to_rgb8();
    let (lb, new_w, new_h) = letterbox_geometry(rgb.width(), rgb.height(), size);
    let resized = resize_bilinear(&rgb, new_w, new_h);
    let mut canvas = RgbImage::from_pixel(size, size, image::Rgb([PAD_VALUE; 3]));
    image::imageops::replace(&mut canvas, &resized, lb.pad_left as i64, lb.pad_top as i64);
    (canvas, lb)
}

/// RGB u8 HWC -> f32 0..1 CHW (the network input layout, batch dimension left to the caller).
pub fn to_chw(rgb: &RgbImage) -> Vec<f32> {
    let n = rgb.width() as usize * rgb.height() as usize;
    let mut out = vec![0f32; 3 * n];
    let (r, rest) = out.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, p) in rgb.as_raw().chunks_exact(3).enumerate() {
        r[i] = p[0] as f32 / 255.0;
        g[i] = p[1] as f32 / 255.0;
        b[i] = p[2] as f32 / 255.0;
    }
    out
}

/// The whole pre-processing: letterbox + CHW 0..1.
pub fn preprocess(img: &DynamicImage, size: u32) -> (Vec<f32>, Letterbox) {
    let (canvas, lb) = letterbox_image(img, size);
    (to_chw(&canvas), lb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_landscape_and_portrait() {
        let (lb, w, h) = letterbox_geometry(1280, 720, 640);
        assert_eq!((w, h), (640, 360));
        assert_eq!((lb.pad_left, lb.pad_top), (0, 140));
        assert_eq!(lb.scale, 0.5);
        // bus.jpg is 810x1080: 480x640, 80 px left.
        let (lb, w, h) = letterbox_geometry(810, 1080, 640);
        assert_eq!((w, h), (480, 640));
        assert_eq!((lb.pad_left, lb.pad_top), (80, 0));
        // Odd padding: 641 wide -> 1 px short; the extra pixel goes right/bottom.
        let (lb, w, h) = letterbox_geometry(100, 99, 640);
        assert_eq!((w, h), (640, 634));
        assert_eq!(lb.pad_top, 3);
    }

    #[test]
    fn letterbox_pads_grey_and_keeps_content() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 32, image::Rgb([255, 0, 10])));
        let (canvas, lb) = letterbox_image(&img, 64);
        assert_eq!((lb.pad_left, lb.pad_top), (0, 16));
        assert_eq!(canvas.get_pixel(0, 0).0, [114, 114, 114]);
        assert_eq!(canvas.get_pixel(10, 20).0, [255, 0, 10]);
        assert_eq!(canvas.get_pixel(63, 63).0, [114, 114, 114]);
    }

    #[test]
    fn bilinear_halves_a_ramp() {
        // 4 px ramp 0,100,200,255 -> 2 px: centres at 0.5 and 2.5 -> 50, 227.5 -> 228.
        let src = RgbImage::from_fn(4, 1, |x, _| {
            let v = [0u8, 100, 200, 255][x as usize];
            image::Rgb([v, v, v])
        });
        let out = resize_bilinear(&src, 2, 1);
        assert_eq!(out.get_pixel(0, 0).0[0], 50);
        assert_eq!(out.get_pixel(1, 0).0[0], 228);
    }

    #[test]
    fn chw_layout_and_range() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 255 } else { 0 }, 51, 0]));
        let t = to_chw(&img);
        assert_eq!(t, vec![1.0, 0.0, 0.2, 0.2, 0.0, 0.0]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        assert!(decode_image(b"not an image", "x").is_err());
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::new(8, 8)).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
        assert!(decode_image(&png[..png.len() / 2], "truncated").is_err());
        assert!(decode_image(&png, "ok").is_ok());
    }
}
