//! Part-label codes: reading the barcodes and 2D codes a technician photographs on a part, and
//! saying what their text means.
//!
//! This module owns three things, all offline and pure (no I/O, no global state):
//! - [`decode`]: every EAN-13, QR Code, Data Matrix and Code 128 symbol (Code 39 as
//!   [`Symbology::Other`]) in a picture, read with `rxing` from our own luma buffer;
//! - [`parse_label`]: the fields of a label's text — GS1 element strings (GTIN, serial, our part
//!   number in AI 240, batch/lot) or the dealers' own `PN:…;SN:…;ORIGIN:…` stickers;
//! - [`encode`] and [`photograph`]: clean renders and deterministic "photo-like" copies of them, for
//!   tests, benches and printing stickers.
//!
//! Invariants:
//! - `decode` never panics on any picture (a 1×1 image, a flat one, a huge one): rxing is a port
//!   of ZXing with a history of index panics on odd input, so every rxing call is fenced with
//!   `catch_unwind` and a panic counts as "nothing found" (logged at warn).
//! - A GS1 symbol's text starts with its AIM symbology identifier (`]C1` GS1-128, `]d2` GS1
//!   Data Matrix, `]Q3` GS1 QR) and carries FNC1 separators as GS (`\u{1d}`), the way a scanner in
//!   AIM-id mode reports it; that marker is what tells [`parse_label`] the text is GS1, so
//!   `encode(s, decode(..).text)` gives the same symbol back. Other symbols' text is their payload.
//! - A GTIN in [`LabelData`] has a valid GS1 mod-10 check digit and is always 14 digits (an
//!   EAN-13 gets a leading 0), so the GTIN of a box's EAN-13 equals the AI 01 of the part's GS1
//!   Data Matrix.
//!
//! Heavy compute: a decode of a phone photo takes tens to hundreds of milliseconds; callers run it
//! on threads they own (conventions, habit 4).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{imageops, DynamicImage, GrayImage};
use rxing::common::HybridBinarizer;
use rxing::multi::{GenericMultipleBarcodeReader, MultipleBarcodeReader};
use rxing::{
    BarcodeFormat, BinaryBitmap, DecodeHints, Luma8LuminanceSource, MultiUseMultiFormatReader, RXingResult, RXingResultMetadataType,
    RXingResultMetadataValue,
};

mod gs1;
mod render;
#[cfg(test)]
mod tests;

pub use gs1::parse_label;
pub use render::{encode, photograph};

/// The kinds of code we tell apart. Anything else rxing reads (Code 39 on older AIAG labels) is
/// `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symbology {
    Ean13,
    QrCode,
    DataMatrix,
    Code128,
    Other,
}

impl Symbology {
    pub fn as_str(self) -> &'static str {
        match self {
            Symbology::Ean13 => "ean13",
            Symbology::QrCode => "qr_code",
            Symbology::DataMatrix => "data_matrix",
            Symbology::Code128 => "code128",
            Symbology::Other => "other",
        }
    }

    fn from_format(format: BarcodeFormat) -> Self {
        match format {
            BarcodeFormat::EAN_13 => Symbology::Ean13,
            BarcodeFormat::QR_CODE => Symbology::QrCode,
            BarcodeFormat::DATA_MATRIX => Symbology::DataMatrix,
            BarcodeFormat::CODE_128 => Symbology::Code128,
            _ => Symbology::Other,
        }
    }

    /// The AIM identifier a GS1 symbol of this kind starts with (ISO/IEC 15424).
    fn gs1_aim_id(self) -> Option<&'static str> {
        match self {
            Symbology::Code128 => Some("]C1"),
            Symbology::DataMatrix => Some("]d2"),
            Symbology::QrCode => Some("]Q3"),
            Symbology::Ean13 | Symbology::Other => None,
        }
    }
}

/// One symbol found in a picture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecodedCode {
    pub symbology: Symbology,
    pub text: String,
}

/// Where a part comes from, as the dealer's sticker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelOrigin {
    Oem,
    Equivalent,
    Refurbished,
}

/// What a label says. Every field is optional: labels carry what their printer chose.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LabelData {
    /// GTIN-14 with a valid check digit (an EAN-13 gets a leading 0).
    pub gtin: Option<String>,
    pub part_no: Option<String>,
    pub serial: Option<String>,
    pub lot: Option<String>,
    pub origin: Option<LabelOrigin>,
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("cannot encode: {0}")]
    Encode(String),
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Long side of the working copy of a big photo. Decoding time grows with the pixel count, and a
/// 25-module QR a tenth as wide as a 4000 px frame still has ~6 px per module at this size.
const WORK_LONG_SIDE: u32 = 1600;

/// Below this no symbol fits (the smallest, a 10×10 Data Matrix, needs 12 px with its quiet
/// zone); rxing's binarizers also misbehave on slivers.
const MIN_SIDE: u32 = 12;

/// Formats we look for. Fewer formats = faster, and the ones left out with weak checks (Codabar,
/// ITF) are the likeliest to misread texture; Code 39 stays because older AIAG part labels use it.
fn all_formats() -> HashSet<BarcodeFormat> {
    HashSet::from([
        BarcodeFormat::EAN_13,
        BarcodeFormat::QR_CODE,
        BarcodeFormat::DATA_MATRIX,
        BarcodeFormat::CODE_128,
        BarcodeFormat::CODE_39,
    ])
}

fn linear_formats() -> HashSet<BarcodeFormat> {
    HashSet::from([BarcodeFormat::EAN_13, BarcodeFormat::CODE_128, BarcodeFormat::CODE_39])
}

/// All codes found in the picture (deduplicated by (symbology, text), in the order rxing found
/// them), trying: the picture as is, then downscaled to ~1600 px long side if bigger, then rotated
/// 90° (1D codes), then a contrast-stretched copy. Stops at the first pass that finds something.
/// Empty vec when none.
pub fn decode(img: &DynamicImage) -> Vec<DecodedCode> {
    let luma = img.to_luma8();
    if luma.width() < MIN_SIDE || luma.height() < MIN_SIDE {
        return Vec::new();
    }
    let all = all_formats();

    let found = scan(&luma, &all);
    if !found.is_empty() {
        return found;
    }

    // The later passes work on the downscaled copy: they are fallbacks, and at full size each
    // would cost as much as the first pass again.
    let small = downscaled(&luma);
    if let Some(small) = &small {
        let found = scan(small, &all);
        if !found.is_empty() {
            return found;
        }
    }
    let work = small.as_ref().unwrap_or(&luma);

    // With TryHarder, rxing's 1D readers already retry the source turned 90° (checked in
    // 0.8.6's MultiFormatOneDReader), so this pass seldom adds a read; it stays because it only
    // costs the 1D readers, and only on pictures where everything else found nothing.
    let found = scan(&imageops::rotate90(work), &linear_formats());
    if !found.is_empty() {
        return found;
    }

    match contrast_stretched(work) {
        Some(stretched) => scan(&stretched, &all),
        None => Vec::new(),
    }
}

/// One rxing pass over a grey picture, every symbol it finds.
fn scan(luma: &GrayImage, formats: &HashSet<BarcodeFormat>) -> Vec<DecodedCode> {
    let hints = DecodeHints {
        TryHarder: Some(true),
        PossibleFormats: Some(formats.clone()),
        // Makes the Code 128 reader keep FNC1 as `]C1` + GS instead of dropping it, so a GS1-128
        // label's variable-length fields stay separable.
        AssumeGs1: Some(true),
        ..DecodeHints::default()
    };
    let (w, h) = luma.dimensions();
    let source = Luma8LuminanceSource::new(luma.as_raw().clone(), w, h);
    let mut bitmap = BinaryBitmap::new(HybridBinarizer::new(source));
    let mut reader = GenericMultipleBarcodeReader::new(MultiUseMultiFormatReader::default());

    let results = match catch_unwind(AssertUnwindSafe(|| reader.decode_multiple_with_hints(&mut bitmap, &hints))) {
        Ok(Ok(results)) => results,
        // NotFound is the normal "no code here" answer.
        Ok(Err(_)) => return Vec::new(),
        Err(_) => {
            tracing::warn!(width = w, height = h, "barcode decoder panicked; treating the picture as having no code");
            return Vec::new();
        }
    };

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for result in &results {
        let code = to_decoded(result);
        if seen.insert((code.symbology.as_str(), code.text.clone())) {
            out.push(code);
        }
    }
    out
}

fn to_decoded(result: &RXingResult) -> DecodedCode {
    let symbology = Symbology::from_format(*result.getBarcodeFormat());
    let mut text = result.getText().to_string();
    // Data Matrix and QR report GS1 (FNC1 in first position) only in the metadata; Code 128
    // already puts `]C1` in the text. Put the marker in the text for all three (module invariant).
    if let (Some(aim), Some(RXingResultMetadataValue::SymbologyIdentifier(id))) =
        (symbology.gs1_aim_id(), result.getRXingResultMetadata().get(&RXingResultMetadataType::SYMBOLOGY_IDENTIFIER))
    {
        if id == aim && !text.starts_with(aim) {
            text.insert_str(0, aim);
        }
    }
    DecodedCode { symbology, text: repair_utf8(text) }
}

/// UTF-8 text that reached us as Latin-1, one char per byte. rxing 0.8.6's Data Matrix decoder
/// returned our Chinese stickers that way although they carry a UTF-8 ECI (measured), and label
/// printers also write UTF-8 with no ECI at all. Bytes ≥ 0x80 that happen to form valid multi-byte UTF-8 are
/// practically never meant as Latin-1 (it would take pairs like "Ã©"), so such text is re-read.
fn repair_utf8(text: String) -> String {
    if text.is_ascii() || text.chars().any(|c| u32::from(c) > 0xff) {
        return text;
    }
    let bytes: Vec<u8> = text.chars().map(|c| c as u8).collect();
    String::from_utf8(bytes).unwrap_or(text)
}

fn downscaled(luma: &GrayImage) -> Option<GrayImage> {
    let (w, h) = luma.dimensions();
    let long = w.max(h);
    if long <= WORK_LONG_SIDE {
        return None;
    }
    let scale = WORK_LONG_SIDE as f64 / long as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    // Triangle (bilinear with support) averages the pixels it drops, unlike Nearest, so thin bars
    // do not alias away.
    Some(imageops::resize(luma, nw, nh, imageops::FilterType::Triangle))
}

/// Maps the 1st..99th percentile of grey levels onto 0..255, for labels shot in dim light or
/// through a plastic bag. `None` when the picture is flat (nothing to stretch, no code either).
fn contrast_stretched(luma: &GrayImage) -> Option<GrayImage> {
    let mut hist = [0u64; 256];
    for p in luma.pixels() {
        hist[p.0[0] as usize] += 1;
    }
    let total: u64 = hist.iter().sum();
    let percentile = |q: f64| -> u8 {
        let target = (total as f64 * q) as u64;
        let mut acc = 0u64;
        for (level, count) in hist.iter().enumerate() {
            acc += count;
            if acc > target {
                return level as u8;
            }
        }
        255
    };
    let (lo, hi) = (percentile(0.01), percentile(0.99));
    if hi <= lo.saturating_add(8) {
        return None;
    }
    let span = (hi - lo) as f32;
    let mut lut = [0u8; 256];
    for (level, out) in lut.iter_mut().enumerate() {
        *out = (((level as f32 - lo as f32) / span) * 255.0).clamp(0.0, 255.0).round() as u8;
    }
    let mut out = luma.clone();
    for p in out.pixels_mut() {
        p.0[0] = lut[p.0[0] as usize];
    }
    Some(out)
}
