//! Photo intake: sniff the type from content (JPEG, PNG, WebP), read dimensions from the header and
//! refuse oversize pictures before any full decode, then decode once under strict limits to reject
//! corrupt or truncated files. Storing them is `files::PhotoFiles` (encrypted per case); blur lives
//! with the vision engine.

use std::io::Cursor;
use std::path::PathBuf;

use image::{ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is empty")]
    Empty,
    #[error("the photo is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("not a JPEG, PNG or WebP picture")]
    Unsupported,
    #[error("the picture is {width}x{height} ({mp:.1} megapixels); the limit is {limit_mp:.1} megapixels")]
    TooManyPixels { width: u32, height: u32, mp: f64, limit_mp: f64 },
    #[error("the picture is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error("photo storage error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The case's key is gone (its customer was erased) or the keyring failed.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error("the stored photo {0} does not decrypt: it was changed on disk or belongs to another key")]
    Tampered(String),
}

/// What the content says the file is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inspected {
    pub media_type: &'static str,
    pub width: u32,
    pub height: u32,
}

fn sniff(bytes: &[u8]) -> Option<(ImageFormat, &'static str)> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some((ImageFormat::Jpeg, "image/jpeg"))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some((ImageFormat::Png, "image/png"))
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some((ImageFormat::WebP, "image/webp"))
    } else {
        None
    }
}

/// Check a photo fully. CPU-bound (one decode): call it off the async runtime.
pub fn inspect(bytes: &[u8], max_bytes: u64, max_pixels: u64) -> Result<Inspected, MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::Empty);
    }
    if bytes.len() as u64 > max_bytes {
        return Err(MediaError::TooLarge { bytes: bytes.len() as u64, limit: max_bytes });
    }
    let (format, media_type) = sniff(bytes).ok_or(MediaError::Unsupported)?;
    if format == ImageFormat::Jpeg && !jpeg_complete(bytes) {
        // The JPEG decoder pads a truncated scan with grey instead of failing; we refuse it.
        return Err(MediaError::Corrupt("JPEG data ends before the end-of-image marker".into()));
    }
    let (width, height) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(|e| MediaError::Corrupt(e.to_string()))?;
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels || width == 0 || height == 0 {
        return Err(MediaError::TooManyPixels { width, height, mp: pixels as f64 / 1e6, limit_mp: max_pixels as f64 / 1e6 });
    }
    // Decode under limits: the header said w×h; never let the decoder allocate beyond that.
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(pixels * 4 + 16 * 1024 * 1024);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    reader.decode().map_err(|e| MediaError::Corrupt(e.to_string()))?;
    Ok(Inspected { media_type, width, height })
}

/// Whether a JPEG has an end-of-image marker after the start of its main image's first scan.
/// Segments before the scan are skipped by their lengths, so an EXIF thumbnail (inside APP1) with its
/// own markers cannot make a truncated main image look complete; entropy-coded data never contains
/// FF D9 (0xFF is byte-stuffed), so a later FF D9 is the real end.
fn jpeg_complete(b: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if marker == 0xDA {
            let scan = i + 2 + len;
            return scan <= b.len() && b[scan..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        if len < 2 {
            return false;
        }
        i += 2 + len;
    }
    false
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn accepts_a_real_png() {
        let i = inspect(&png(40, 30), 1 << 20, 50_000_000).unwrap();
        assert_eq!(i, Inspected { media_type: "image/png", width: 40, height: 30 });
    }

    #[test]
    fn refuses_by_content_not_name() {
        assert!(matches!(inspect(b"GIF89a....", 1 << 20, 1000), Err(MediaError::Unsupported)));
        assert!(matches!(inspect(b"", 1 << 20, 1000), Err(MediaError::Empty)));
    }

    #[test]
    fn refuses_too_many_pixels_from_the_header() {
        // A small JPEG whose frame header (SOF0) claims 10000x6000: refused before decoding.
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let mut bytes = out.into_inner();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG");
        bytes[sof + 5..sof + 7].copy_from_slice(&6_000u16.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&10_000u16.to_be_bytes());
        match inspect(&bytes, 1 << 20, 50_000_000) {
            Err(MediaError::TooManyPixels { width: 10_000, height: 6_000, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_truncated_files() {
        let bytes = png(64, 64);
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(inspect(cut, 1 << 20, 50_000_000), Err(MediaError::Corrupt(_))));
    }

    #[test]
    fn refuses_truncated_jpeg_that_the_decoder_would_pad() {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let full = out.into_inner();
        assert!(inspect(&full, 1 << 20, 50_000_000).is_ok());
        for cut in [full.len() - 2, full.len() / 2, 200] {
            assert!(matches!(inspect(&full[..cut], 1 << 20, 50_000_000), Err(MediaError::Corrupt(_))), "cut at {cut}");
        }
    }
}
