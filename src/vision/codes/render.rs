//! Rendering: [`encode`] (clean code pictures via rxing's writers, plus the hand-built GS1 Data
//! Matrix codewords) and [`photograph`] (deterministic photo-like copies), for tests, benches and stickers.

use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{GrayImage, Luma};
use imageproc::geometric_transformations::{rotate_about_center, Interpolation};
use rxing::common::BitMatrix;
use rxing::datamatrix::encoder::{error_correction, DefaultPlacement, SymbolInfoLookup, SymbolShapeHint};
use rxing::{BarcodeFormat, EncodeHints, MultiFormatWriter, Writer};

use super::gs1::GS;
use super::{CodeError, Symbology};

/// Height of a rendered 1D code in modules (EAN-13 nominal is ~69; shorter still reads when tilted
/// up to 15° because the reader's scan lines cross every bar).
const LINEAR_HEIGHT_MODULES: u32 = 60;

/// Largest render we produce: 64 Mpx, the same order as the biggest photo we accept.
const MAX_RENDER_PIXELS: u64 = 64 * 1024 * 1024;

/// Render a code as a clean picture (black on white, `module_px` pixels per module, quiet zone),
/// for tests, benches and printing stickers. Uses rxing's writers (EAN13Writer, QRCodeWriter,
/// DataMatrixWriter, Code128Writer via MultiFormatWriter).
///
/// GS1: a text starting with the symbology's AIM id (`]C1`, `]d2`, `]Q3`) or containing a GS
/// separator is encoded as GS1 (FNC1 in first position, GS → FNC1). EAN-13 takes 12 digits (the
/// check digit is computed) or 13 (the check digit must be right). QR uses error correction level
/// M and UTF-8 (with an ECI) for non-ASCII text.
pub fn encode(symbology: Symbology, text: &str, module_px: u32) -> Result<GrayImage, CodeError> {
    if !(1..=64).contains(&module_px) {
        return Err(CodeError::Encode(format!("module size {module_px} px is outside 1..=64")));
    }
    let aim = symbology.gs1_aim_id();
    let (payload, gs1) = match aim.and_then(|a| text.strip_prefix(a)) {
        Some(rest) => (rest, true),
        None => (text, aim.is_some() && text.contains(GS)),
    };
    if payload.is_empty() {
        return Err(CodeError::Encode("empty text".into()));
    }

    let mut hints = EncodeHints { Margin: Some("0".into()), ..EncodeHints::default() };
    let (format, quiet_modules, contents) = match symbology {
        Symbology::Ean13 => (BarcodeFormat::EAN_13, 11, payload.to_string()),
        Symbology::Code128 => {
            // rxing's Code 128 writer takes FNC1 as the escape char U+00F1, not as a hint.
            let fnc1 = '\u{f1}';
            let body = payload.replace(GS, &fnc1.to_string());
            (BarcodeFormat::CODE_128, 10, if gs1 { format!("{fnc1}{body}") } else { body })
        }
        Symbology::QrCode => {
            hints.ErrorCorrection = Some("M".into());
            hints.Gs1Format = Some(gs1);
            if !payload.is_ascii() {
                hints.CharacterSet = Some("UTF-8".into());
            }
            (BarcodeFormat::QR_CODE, 4, payload.to_string())
        }
        Symbology::DataMatrix => {
            if gs1 {
                return render(&gs1_data_matrix(payload)?, module_px, 4);
            }
            // Square: the shape every reader finds; rectangles are for narrow parts we do not print.
            hints.DataMatrixShape = Some(SymbolShapeHint::FORCE_SQUARE);
            // The compact (minimal) encoder is the one that writes an ECI for non-Latin-1 text.
            hints.DataMatrixCompact = Some(true);
            if !payload.is_ascii() {
                hints.CharacterSet = Some("UTF-8".into());
            }
            (BarcodeFormat::DATA_MATRIX, 4, payload.to_string())
        }
        Symbology::Other => return Err(CodeError::Encode("no writer for symbology 'other'".into())),
    };

    // Width/height 0: the writers return one pixel per module (1D: one row); we scale ourselves so
    // that every module is exactly `module_px` wide.
    let matrix = match catch_unwind(AssertUnwindSafe(|| MultiFormatWriter.encode_with_hints(&contents, &format, 0, 0, &hints))) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(CodeError::Encode(format!("{} '{}': {e}", symbology.as_str(), text.escape_debug()))),
        Err(_) => return Err(CodeError::Encode(format!("{} writer failed on '{}'", symbology.as_str(), text.escape_debug()))),
    };
    render(&matrix, module_px, quiet_modules)
}

/// A GS1 Data Matrix (FNC1 in first position, GS → FNC1) in ASCII encodation, square.
///
/// Built here rather than by `DataMatrixWriter` because rxing 0.8.6's minimal encoder writes every
/// FNC1 after the first as an ECI designator (its `isECI` lacks ZXing's `<= 999` bound), so the
/// separators vanish and the fields run together on decode. ASCII encodation packs digit pairs
/// into one codeword, which is what GS1 data mostly is; rxing still does the Reed-Solomon code and
/// the module placement.
fn gs1_data_matrix(payload: &str) -> Result<BitMatrix, CodeError> {
    let err = |e: rxing::Exceptions| CodeError::Encode(format!("data_matrix: {e}"));
    let bytes = payload.as_bytes();
    let mut codewords: Vec<u8> = vec![232];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match bytes.get(i + 1) {
            Some(&next) if b.is_ascii_digit() && next.is_ascii_digit() => {
                codewords.push(130 + (b - b'0') * 10 + (next - b'0'));
                i += 2;
                continue;
            }
            _ if b == 0x1d => codewords.push(232),
            _ if b.is_ascii() => codewords.push(b + 1),
            _ => return Err(CodeError::Encode("GS1 Data Matrix text must be ASCII (the GS1 character set)".into())),
        }
        i += 1;
    }

    let lookup = SymbolInfoLookup::new();
    let info = lookup
        .lookup_with_codewords_shape_size_fail(codewords.len() as u32, SymbolShapeHint::FORCE_SQUARE, &None, &None, true)
        .map_err(err)?
        .ok_or_else(|| CodeError::Encode(format!("{} codewords do not fit a Data Matrix", codewords.len())))?;

    // Padding as ISO/IEC 16022 5.2.3: one 129, then 253-state randomised pads.
    let capacity = info.getDataCapacity() as usize;
    if codewords.len() < capacity {
        codewords.push(129);
    }
    while codewords.len() < capacity {
        let pseudo_random = (149 * (codewords.len() + 1)) % 253 + 1;
        let pad = 129 + pseudo_random;
        codewords.push(if pad <= 254 { pad } else { pad - 254 } as u8);
    }

    let data: String = codewords.iter().map(|&c| char::from(c)).collect();
    let full = error_correction::encodeECC200(&data, info).map_err(err)?;
    let (data_w, data_h) = (info.getSymbolDataWidth().map_err(err)?, info.getSymbolDataHeight().map_err(err)?);
    let (sym_w, sym_h) = (info.getSymbolWidth().map_err(err)?, info.getSymbolHeight().map_err(err)?);
    let mut placement = DefaultPlacement::new(full, data_w as usize, data_h as usize);
    placement.place().map_err(err)?;

    // Data regions framed by their finder patterns: solid left and bottom edges, alternating top
    // and right edges (what DataMatrixWriter's private encodeLowLevel does).
    let region_w = data_w / ((sym_w - data_w) / 2);
    let region_h = data_h / ((sym_h - data_h) / 2);
    let mut matrix = BitMatrix::new(sym_w, sym_h).map_err(err)?;
    let mut my = 0;
    for y in 0..data_h {
        if y % region_h == 0 {
            for x in (0..sym_w).step_by(2) {
                matrix.set(x, my);
            }
            my += 1;
        }
        let mut mx = 0;
        for x in 0..data_w {
            if x % region_w == 0 {
                matrix.set(mx, my);
                mx += 1;
            }
            matrix.set_bool(mx, my, placement.getBit(x as usize, y as usize));
            mx += 1;
            if x % region_w == region_w - 1 {
                matrix.set_bool(mx, my, y % 2 == 0);
                mx += 1;
            }
        }
        my += 1;
        if y % region_h == region_h - 1 {
            for x in 0..sym_w {
                matrix.set(x, my);
            }
            my += 1;
        }
    }
    Ok(matrix)
}

fn render(matrix: &BitMatrix, module_px: u32, quiet_modules: u32) -> Result<GrayImage, CodeError> {
    let (mw, mh) = (matrix.getWidth(), matrix.getHeight());
    let linear = mh == 1;
    let rows = if linear { LINEAR_HEIGHT_MODULES } else { mh };
    let w = (u64::from(mw) + 2 * u64::from(quiet_modules)) * u64::from(module_px);
    let h = (u64::from(rows) + 2 * u64::from(quiet_modules)) * u64::from(module_px);
    if w * h > MAX_RENDER_PIXELS {
        return Err(CodeError::Encode(format!("render would be {w}×{h} px; use a smaller module size")));
    }
    let (w, h) = (w as u32, h as u32);
    let q = quiet_modules * module_px;
    Ok(GrayImage::from_fn(w, h, |x, y| {
        if x < q || y < q || x >= w - q || y >= h - q {
            return Luma([255]);
        }
        let mx = (x - q) / module_px;
        let my = if linear { 0 } else { (y - q) / module_px };
        Luma([if matrix.get(mx, my) { 0 } else { 255 }])
    }))
}

/// A "photograph-like" version of a clean render: placed on a larger mid-grey background with
/// uneven lighting, rotated by `tilt_deg` (bilinear), gaussian-blurred by `blur_sigma`, with mild
/// noise from a fixed seed (deterministic). For tests and benches. A `blur_sigma` ≤ 0 (or not
/// finite) means no blur; a non-finite tilt means none.
pub fn photograph(clean: &GrayImage, tilt_deg: f32, blur_sigma: f32) -> GrayImage {
    const BACKGROUND: u8 = 128;
    // Printed paper is not white and toner is not black in a photo.
    const PAPER: f32 = 232.0;
    const INK: f32 = 38.0;

    let tilt = if tilt_deg.is_finite() { tilt_deg.to_radians() } else { 0.0 };
    let (cw, ch) = (clean.width() as f32, clean.height() as f32);
    // Canvas: the rotated label's bounding box plus a border of a quarter of the label's size.
    let (s, c) = (tilt.sin().abs(), tilt.cos().abs());
    let border = cw.max(ch) * 0.25 + 16.0;
    let w = (cw * c + ch * s + 2.0 * border).ceil() as u32;
    let h = (cw * s + ch * c + 2.0 * border).ceil() as u32;

    let mut canvas = GrayImage::from_pixel(w, h, Luma([BACKGROUND]));
    let (ox, oy) = ((w - clean.width()) / 2, (h - clean.height()) / 2);
    for (x, y, p) in clean.enumerate_pixels() {
        let v = INK + (PAPER - INK) * f32::from(p.0[0]) / 255.0;
        canvas.put_pixel(ox + x, oy + y, Luma([v.round() as u8]));
    }

    let mut photo = if tilt != 0.0 { rotate_about_center(&canvas, tilt, Interpolation::Bilinear, Luma([BACKGROUND])) } else { canvas };

    // Light falls off from the top-left corner (a window, a hand lamp): 115 % to 70 %.
    let (fw, fh) = (w as f32, h as f32);
    for (x, y, p) in photo.enumerate_pixels_mut() {
        let t = 0.6 * x as f32 / fw + 0.4 * y as f32 / fh;
        let gain = 1.15 - 0.45 * t;
        p.0[0] = (f32::from(p.0[0]) * gain).clamp(0.0, 255.0).round() as u8;
    }

    if blur_sigma.is_finite() && blur_sigma > 0.0 {
        photo = imageproc::filter::gaussian_blur_f32(&photo, blur_sigma);
    }

    // Sensor noise ±6 grey levels from a 64-bit LCG (Knuth's MMIX constants), fixed seed.
    let mut state: u64 = 0x5EED_C0DE_0000_0001;
    for p in photo.pixels_mut() {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let noise = ((state >> 33) % 13) as i16 - 6;
        p.0[0] = (i16::from(p.0[0]) + noise).clamp(0, 255) as u8;
    }
    photo
}
