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

use image::{imageops, DynamicImage, GrayImage, Luma};
use imageproc::geometric_transformations::{rotate_about_center, Interpolation};
use rxing::common::{BitMatrix, HybridBinarizer};
use rxing::datamatrix::encoder::{error_correction, DefaultPlacement, SymbolInfoLookup, SymbolShapeHint};
use rxing::multi::{GenericMultipleBarcodeReader, MultipleBarcodeReader};
use rxing::{
    BarcodeFormat, BinaryBitmap, DecodeHints, EncodeHints, Luma8LuminanceSource, MultiFormatWriter, MultiUseMultiFormatReader, RXingResult,
    RXingResultMetadataType, RXingResultMetadataValue, Writer,
};

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

// ---------------------------------------------------------------------------------------------
// Label text
// ---------------------------------------------------------------------------------------------

/// Longest text we interpret: a version-40 QR holds 2,953 bytes, 7,089 digits. Anything longer
/// is not a label.
const MAX_LABEL_TEXT: usize = 8 * 1024;

/// Longest value we accept from a dealer sticker field.
const MAX_STICKER_VALUE: usize = 64;

const GS: char = '\u{1d}';

/// What a label's text says, read as GS1 element strings when it is one (with FNC1/GS `\u{1d}`
/// separators, a leading "]d2"/"]Q3"/"]C1" symbology id, or the human-readable "(01)…(21)…" form):
/// AI 01 GTIN, 21 serial, 240 additional product id (our part number), 10 batch/lot; plus the
/// plain "key:value;" form dealers print on their own stickers: `PN:DOOR-SHELL-LF;SN:A1234;ORIGIN:OEM`
/// (keys PN, SN, ORIGIN with ORIGIN one of OEM / EQUIV / REFURB, case-insensitive; other keys are
/// ignored). An EAN-13 is a GTIN alone. Anything else: `part_no = Some(text)` when it looks like
/// a part number ([A-Z0-9-]{4,40}), else all None.
///
/// Text without a symbology id is taken as GS1 only when it cannot be a plain part number: it
/// contains a GS separator or starts with a fixed-length AI (00, 01, 02), and parses whole.
pub fn parse_label(code: &DecodedCode) -> LabelData {
    let text = code.text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    if text.is_empty() || text.len() > MAX_LABEL_TEXT {
        return LabelData::default();
    }
    if code.symbology == Symbology::Ean13 {
        return LabelData { gtin: gtin14(text), ..LabelData::default() };
    }
    if let Some(data) = parse_gs1(text) {
        return data;
    }
    if let Some(data) = parse_sticker(text) {
        return data;
    }
    if looks_like_part_no(text) {
        return LabelData { part_no: Some(text.to_string()), ..LabelData::default() };
    }
    LabelData::default()
}

fn looks_like_part_no(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// The GTIN as 14 digits when `s` is a GTIN-8/12/13/14 with a valid GS1 mod-10 check digit.
fn gtin14(s: &str) -> Option<String> {
    if !matches!(s.len(), 8 | 12 | 13 | 14) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
    let (body, check) = digits.split_at(digits.len() - 1);
    // Weights 3,1,3,1… counted from the digit next to the check digit.
    let sum: u32 = body.iter().rev().enumerate().map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d }).sum();
    if (10 - sum % 10) % 10 != check[0] {
        return None;
    }
    Some(format!("{s:0>14}"))
}

/// How the data after an application identifier ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AiData {
    /// Predefined length (GS1 General Specifications 7.8.5): no separator follows, digits only.
    Fixed(usize),
    /// Up to this many characters, ended by GS or the end of the text.
    Variable(usize),
}

/// Length of the AI at the start of `s` and how its data ends, from the AI's first two digits.
/// `None` for prefixes GS1 has not assigned: after one of those nothing can be split reliably.
fn ai_at(s: &str) -> Option<(usize, AiData)> {
    let b = s.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_digit() || !b[1].is_ascii_digit() {
        return None;
    }
    let two = (b[0] - b'0') * 10 + (b[1] - b'0');
    let (ai_len, data) = match two {
        0 => (2, AiData::Fixed(18)),
        1..=3 => (2, AiData::Fixed(14)),
        4 => (2, AiData::Fixed(16)),
        11..=17 => (2, AiData::Fixed(6)),
        20 => (2, AiData::Fixed(2)),
        10 | 21 | 22 => (2, AiData::Variable(20)),
        30 | 37 => (2, AiData::Variable(8)),
        90..=99 => (2, AiData::Variable(90)),
        23..=25 | 40 | 42 => (3, AiData::Variable(30)),
        41 => (3, AiData::Fixed(13)),
        31..=36 => (4, AiData::Fixed(6)),
        39 | 43 | 70..=72 | 80..=82 => (4, AiData::Variable(90)),
        _ => return None,
    };
    (b.len() >= ai_len && b[..ai_len].iter().all(u8::is_ascii_digit)).then_some((ai_len, data))
}

/// Splits GS1 element strings (FNC1 form) into (AI, value) pairs. The bool is true when the whole
/// text was consumed; parsing stops at the first element it cannot split.
fn split_elements(mut s: &str) -> (Vec<(&str, &str)>, bool) {
    let mut out = Vec::new();
    while !s.is_empty() {
        let Some((ai_len, data)) = ai_at(s) else { return (out, false) };
        let (ai, rest) = s.split_at(ai_len);
        let (value, rest) = match data {
            AiData::Fixed(n) => {
                // All fixed-length AIs hold digits only, so a byte split is a char split.
                if rest.len() < n || !rest.as_bytes()[..n].iter().all(u8::is_ascii_digit) {
                    return (out, false);
                }
                let (v, r) = rest.split_at(n);
                // A separator after a fixed field is tolerated (some printers add one).
                (v, r.strip_prefix(GS).unwrap_or(r))
            }
            AiData::Variable(max) => {
                let (v, r) = match rest.find(GS) {
                    Some(i) => (&rest[..i], &rest[i + GS.len_utf8()..]),
                    None => (rest, ""),
                };
                if v.is_empty() || v.chars().count() > max {
                    return (out, false);
                }
                (v, r)
            }
        };
        out.push((ai, value));
        s = rest;
    }
    (out, true)
}

/// Splits the human-readable form `(01)06901234567892(21)SER123`. `None` when `s` is not in it.
fn split_human_readable(s: &str) -> Option<Vec<(&str, &str)>> {
    // An AI marker is `(` + 2..4 digits + `)`; values may themselves contain parentheses.
    fn marker_at(s: &str, i: usize) -> Option<(usize, usize)> {
        let b = s.as_bytes();
        if b.get(i) != Some(&b'(') {
            return None;
        }
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        ((2..=4).contains(&digits) && b.get(i + 1 + digits) == Some(&b')')).then_some((i + 1, i + 1 + digits))
    }
    let (mut ai_start, mut ai_end) = marker_at(s, 0)?;
    let mut out = Vec::new();
    loop {
        let value_start = ai_end + 1;
        let next = s[value_start..].char_indices().find_map(|(off, _)| marker_at(s, value_start + off).map(|m| (value_start + off, m)));
        let value_end = next.map_or(s.len(), |(at, _)| at);
        out.push((&s[ai_start..ai_end], s[value_start..value_end].trim()));
        match next {
            Some((_, (a, e))) => (ai_start, ai_end) = (a, e),
            None => return Some(out),
        }
    }
}

fn parse_gs1(text: &str) -> Option<LabelData> {
    let mut explicit = false;
    let mut body = text;
    for aim in ["]C1", "]d2", "]Q3", "]e0", "]J1"] {
        if let Some(rest) = body.strip_prefix(aim) {
            body = rest;
            explicit = true;
            break;
        }
    }
    // Some readers report FNC1 in first position as a leading GS.
    if let Some(rest) = body.strip_prefix(GS) {
        body = rest;
        explicit = true;
    }

    let elements = if let Some(elements) = split_human_readable(body) {
        elements
    } else {
        let (elements, complete) = split_elements(body);
        let fixed_first = elements.first().is_some_and(|(ai, _)| matches!(*ai, "00" | "01" | "02"));
        if !explicit && !(complete && (body.contains(GS) || fixed_first)) {
            return None;
        }
        elements
    };

    let mut data = LabelData::default();
    for (ai, value) in elements {
        match ai {
            "01" => data.gtin = gtin14(value),
            "21" => data.serial = gs1_text(value, 20),
            "240" => data.part_no = gs1_text(value, 30),
            "10" => data.lot = gs1_text(value, 20),
            _ => {}
        }
    }
    Some(data)
}

/// A GS1 alphanumeric field value, or `None` when it is empty, too long or holds control chars.
fn gs1_text(value: &str, max: usize) -> Option<String> {
    let ok = !value.is_empty() && value.chars().count() <= max && !value.chars().any(char::is_control);
    ok.then(|| value.to_string())
}

/// The dealers' `PN:…;SN:…;ORIGIN:…` sticker. `None` when no known key is present.
fn parse_sticker(text: &str) -> Option<LabelData> {
    let mut data = LabelData::default();
    let mut known = false;
    for field in text.split(';') {
        // Stickers printed from Chinese-language forms use the full-width colon.
        let Some((key, value)) = field.split_once(':').or_else(|| field.split_once('：')) else { continue };
        let key = key.trim();
        let value = value.trim();
        let valid = !value.is_empty() && value.chars().count() <= MAX_STICKER_VALUE && !value.chars().any(char::is_control);
        if key.eq_ignore_ascii_case("PN") {
            known = true;
            data.part_no = valid.then(|| value.to_string());
        } else if key.eq_ignore_ascii_case("SN") {
            known = true;
            data.serial = valid.then(|| value.to_string());
        } else if key.eq_ignore_ascii_case("ORIGIN") {
            known = true;
            data.origin = match value.to_ascii_uppercase().as_str() {
                "OEM" => Some(LabelOrigin::Oem),
                "EQUIV" | "EQUIVALENT" => Some(LabelOrigin::Equivalent),
                "REFURB" | "REFURBISHED" => Some(LabelOrigin::Refurbished),
                _ => None,
            };
        }
    }
    known.then_some(data)
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    const EAN: &str = "6901234567892";
    const QR_GS1_HR: &str = "(01)06901234567892(21)SER123(240)DOOR-SHELL-LF";
    const STICKER_ZH: &str = "PN:DOOR-SHELL-LF;SN:SB-0001;ORIGIN:OEM;名称:左前车门壳";

    fn dm_gs1() -> String {
        format!("0106901234567892{}{GS}240DOOR-SHELL-LF", "21SER123")
    }

    /// (symbology, text given to encode, text decode must give, module px).
    fn cases() -> Vec<(Symbology, String, String, u32)> {
        vec![
            (Symbology::Ean13, EAN.into(), EAN.into(), 3),
            (Symbology::QrCode, QR_GS1_HR.into(), QR_GS1_HR.into(), 5),
            (Symbology::QrCode, format!("]Q3{}", dm_gs1()), format!("]Q3{}", dm_gs1()), 5),
            (Symbology::QrCode, STICKER_ZH.into(), STICKER_ZH.into(), 5),
            // GS in the text makes it GS1; decode reports it with its AIM id.
            (Symbology::DataMatrix, dm_gs1(), format!("]d2{}", dm_gs1()), 6),
            (Symbology::DataMatrix, STICKER_ZH.into(), STICKER_ZH.into(), 6),
            (Symbology::Code128, "DOOR-SHELL-LF".into(), "DOOR-SHELL-LF".into(), 4),
            (Symbology::Code128, format!("]C10106901234567892{GS}10B42"), format!("]C10106901234567892{GS}10B42"), 4),
        ]
    }

    fn decode_gray(img: &GrayImage) -> Vec<DecodedCode> {
        decode(&DynamicImage::ImageLuma8(img.clone()))
    }

    #[test]
    fn ean13_check_digit_of_the_test_code_is_valid() {
        assert_eq!(gtin14(EAN).as_deref(), Some("06901234567892"));
    }

    #[test]
    fn clean_renders_round_trip() {
        for (sym, input, expected, px) in cases() {
            let img = encode(sym, &input, px).expect("encode");
            let found = decode_gray(&img);
            assert_eq!(found, vec![DecodedCode { symbology: sym, text: expected.clone() }], "{sym:?} {input:?}");
        }
    }

    /// Measured limits (rxing 0.8.6, these renders, `photograph` with its lighting and noise):
    /// - blur: a code reads while `blur_sigma` ≤ ~0.4 module (QR/Data Matrix at 4 px per module
    ///   read at σ 1.5, fail at σ 2.0; at 6 px they read to σ 2.5–3.0; at 3 px only σ 0.8). Two
    ///   pixels per module read only unblurred-ish (σ 0.8, and not every tilt). Hence 5–6 px here.
    /// - tilt: 2D codes read at any angle tried (0–45°). 1D codes read while one scan row crosses
    ///   every bar, i.e. width × tan(tilt) < bar height: EAN-13 (117×60 modules) to 25°, fails at
    ///   35°; Code 128 of 13 chars (~200×60 modules) to 15°, fails at 25°.
    /// - no case produced a wrong text; failures are always "nothing found".
    #[test]
    fn photographs_decode_up_to_15_degrees_and_sigma_1_5() {
        let mut failures = Vec::new();
        for (sym, input, expected, px) in cases() {
            let clean = encode(sym, &input, px).expect("encode");
            for tilt in [0.0, 7.0, 15.0] {
                for sigma in [0.8, 1.5] {
                    let found = decode_gray(&photograph(&clean, tilt, sigma));
                    if !found.iter().any(|c| c.symbology == sym && c.text == expected) {
                        failures.push(format!("{sym:?} {input:?} tilt {tilt} sigma {sigma}: {found:?}"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn decoded_gs1_text_parses() {
        let img = photograph(&encode(Symbology::DataMatrix, &dm_gs1(), 6).expect("encode"), 7.0, 1.2);
        let found = decode_gray(&img);
        let data = parse_label(&found[0]);
        assert_eq!(data.gtin.as_deref(), Some("06901234567892"));
        assert_eq!(data.serial.as_deref(), Some("SER123"));
        assert_eq!(data.part_no.as_deref(), Some("DOOR-SHELL-LF"));
    }

    #[test]
    fn vertical_linear_codes_are_read() {
        for (sym, text) in [(Symbology::Ean13, EAN), (Symbology::Code128, "DOOR-SHELL-LF")] {
            let img = imageops::rotate90(&photograph(&encode(sym, text, 4).expect("encode"), 5.0, 1.0));
            assert_eq!(decode_gray(&img), vec![code(sym, text)]);
        }
    }

    #[test]
    fn two_codes_in_one_picture_are_both_found() {
        let qr = encode(Symbology::QrCode, STICKER_ZH, 5).expect("encode");
        let dm = encode(Symbology::DataMatrix, &dm_gs1(), 6).expect("encode");
        let mut frame = GrayImage::from_pixel(900, 500, Luma([255]));
        imageops::overlay(&mut frame, &qr, 40, 60);
        imageops::overlay(&mut frame, &dm, 560, 120);
        let found = decode_gray(&photograph(&frame, 3.0, 1.0));
        assert!(found.contains(&code(Symbology::QrCode, STICKER_ZH)), "{found:?}");
        assert!(found.contains(&code(Symbology::DataMatrix, &format!("]d2{}", dm_gs1()))), "{found:?}");
    }

    #[test]
    fn utf8_read_as_latin1_is_repaired() {
        let mangled: String = "名称".bytes().map(char::from).collect();
        assert_eq!(repair_utf8(mangled), "名称");
        assert_eq!(repair_utf8("café".into()), "café", "a lone Latin-1 é is not UTF-8");
        assert_eq!(repair_utf8("plain".into()), "plain");
    }

    #[test]
    fn encode_refuses_what_it_cannot_write() {
        assert!(encode(Symbology::Other, "x", 3).is_err());
        assert!(encode(Symbology::Ean13, "690123456789X", 3).is_err());
        assert!(encode(Symbology::Ean13, "6901234567890", 3).is_err(), "bad check digit");
        assert!(encode(Symbology::QrCode, "", 3).is_err());
        assert!(encode(Symbology::QrCode, "x", 0).is_err());
        assert!(encode(Symbology::QrCode, &"x".repeat(10_000), 3).is_err(), "too long for a QR");
    }

    #[test]
    fn no_code_gives_nothing() {
        // A smooth gradient with a few blobs: nothing a reader should see as a code.
        let img = GrayImage::from_fn(640, 480, |x, y| {
            let blob = ((x as i32 - 200).pow(2) + (y as i32 - 240).pow(2) < 80 * 80) as u8 * 60;
            Luma([(60 + x / 5 + y / 8) as u8 + blob])
        });
        assert!(decode_gray(&img).is_empty());
        assert!(decode_gray(&photograph(&GrayImage::from_pixel(300, 200, Luma([255])), 7.0, 1.5)).is_empty());
    }

    #[test]
    fn tiny_and_flat_pictures_give_nothing() {
        assert!(decode_gray(&GrayImage::new(1, 1)).is_empty());
        assert!(decode_gray(&GrayImage::new(1, 500)).is_empty());
        assert!(decode_gray(&GrayImage::new(40, 40)).is_empty());
        assert!(decode(&DynamicImage::new_rgb8(0, 0)).is_empty());
    }

    #[test]
    fn big_photos_are_read() {
        // A 2400 px wide frame: bigger than the working size, read in the first (full-size) pass.
        let clean = encode(Symbology::QrCode, STICKER_ZH, 12).expect("encode");
        let mut frame = GrayImage::from_pixel(2400, 1800, Luma([140]));
        imageops::overlay(&mut frame, &photograph(&clean, 7.0, 1.5), 300, 200);
        let found = decode_gray(&frame);
        assert_eq!(found.first().map(|c| c.text.as_str()), Some(STICKER_ZH));
    }

    fn code(symbology: Symbology, text: &str) -> DecodedCode {
        DecodedCode { symbology, text: text.to_string() }
    }

    #[test]
    fn parse_gs1_human_readable() {
        let data = parse_label(&code(Symbology::QrCode, "(01)06901234567892(21)SER123(240)DOOR-SHELL-LF(10)LOT 7"));
        assert_eq!(
            data,
            LabelData {
                gtin: Some("06901234567892".into()),
                part_no: Some("DOOR-SHELL-LF".into()),
                serial: Some("SER123".into()),
                lot: Some("LOT 7".into()),
                origin: None,
            }
        );
    }

    #[test]
    fn parse_gs1_fnc1_forms() {
        let expected = LabelData {
            gtin: Some("06901234567892".into()),
            part_no: Some("DOOR-SHELL-LF".into()),
            serial: Some("SER123".into()),
            lot: Some("B42".into()),
            origin: None,
        };
        let body = format!("010690123456789221SER123{GS}10B42{GS}240DOOR-SHELL-LF");
        for text in [format!("]d2{body}"), format!("]Q3{body}"), format!("]C1{body}"), format!("{GS}{body}"), body.clone()] {
            assert_eq!(parse_label(&code(Symbology::DataMatrix, &text)), expected, "{text:?}");
        }
        // Fixed-length AI 11 (production date) between our fields needs no separator.
        let data = parse_label(&code(Symbology::DataMatrix, "]d20106901234567892112501311042"));
        assert_eq!((data.gtin.as_deref(), data.lot.as_deref()), (Some("06901234567892"), Some("42")));
        // Explicitly GS1 with only a part number: not mistaken for a plain part number "240…".
        let data = parse_label(&code(Symbology::DataMatrix, "]d2240DOOR-SHELL-LF"));
        assert_eq!(data, LabelData { part_no: Some("DOOR-SHELL-LF".into()), ..LabelData::default() });
    }

    #[test]
    fn parse_sticker_form() {
        let data = parse_label(&code(Symbology::QrCode, STICKER_ZH));
        assert_eq!(
            data,
            LabelData {
                part_no: Some("DOOR-SHELL-LF".into()),
                serial: Some("SB-0001".into()),
                origin: Some(LabelOrigin::Oem),
                ..LabelData::default()
            }
        );
        let data = parse_label(&code(Symbology::QrCode, "pn: X-1 ; origin：refurb"));
        assert_eq!((data.part_no.as_deref(), data.origin), (Some("X-1"), Some(LabelOrigin::Refurbished)));
        assert_eq!(parse_label(&code(Symbology::QrCode, "SN:A1;ORIGIN:Equiv")).origin, Some(LabelOrigin::Equivalent));
        assert_eq!(parse_label(&code(Symbology::QrCode, "PN:A;ORIGIN:used")).origin, None);
    }

    #[test]
    fn parse_ean13_is_a_gtin_alone() {
        assert_eq!(parse_label(&code(Symbology::Ean13, EAN)), LabelData { gtin: Some("06901234567892".into()), ..LabelData::default() });
    }

    #[test]
    fn bad_check_digits_give_no_gtin() {
        assert_eq!(parse_label(&code(Symbology::Ean13, "6901234567891")), LabelData::default());
        let data = parse_label(&code(Symbology::DataMatrix, "]d2010690123456789121SER123"));
        assert_eq!((data.gtin, data.serial.as_deref()), (None, Some("SER123")));
    }

    #[test]
    fn plain_part_numbers_and_garbage() {
        assert_eq!(parse_label(&code(Symbology::Code128, "DOOR-SHELL-LF")).part_no.as_deref(), Some("DOOR-SHELL-LF"));
        // Starts like AI 10 but has no GS1 marker: a part number, not a lot.
        assert_eq!(parse_label(&code(Symbology::Code128, "10ABC-7")).part_no.as_deref(), Some("10ABC-7"));
        for garbage in ["hello world!", "ab", "", "   ", "door-shell", "https://example.com/x?y=1", "\u{1d}\u{1d}", "(", "(01"] {
            assert_eq!(parse_label(&code(Symbology::QrCode, garbage)), LabelData::default(), "{garbage:?}");
        }
    }

    #[test]
    fn very_long_text_does_not_panic() {
        for text in [
            "A".repeat(10_000),
            "9".repeat(10_000),
            format!("]d2{}", "21X\u{1d}".repeat(2_500)),
            format!("(01){}", "(".repeat(10_000)),
            format!("PN:{};SN:1", "é".repeat(5_000)),
            "名".repeat(3_000),
        ] {
            for sym in [Symbology::Ean13, Symbology::QrCode, Symbology::Other] {
                let _ = parse_label(&code(sym, &text));
            }
        }
        let data = parse_label(&code(Symbology::QrCode, &format!("PN:{}", "X".repeat(100))));
        assert_eq!(data.part_no, None, "over-long sticker values are dropped");
    }

    #[test]
    fn symbology_names() {
        let names: Vec<_> = [Symbology::Ean13, Symbology::QrCode, Symbology::DataMatrix, Symbology::Code128, Symbology::Other]
            .map(Symbology::as_str)
            .into();
        assert_eq!(names, ["ean13", "qr_code", "data_matrix", "code128", "other"]);
    }

    #[test]
    fn photograph_is_deterministic() {
        let clean = encode(Symbology::QrCode, "X", 4).expect("encode");
        assert_eq!(photograph(&clean, 7.0, 1.2), photograph(&clean, 7.0, 1.2));
        let _ = photograph(&GrayImage::new(1, 1), f32::NAN, f32::NAN);
        let _ = photograph(&GrayImage::new(0, 0), 15.0, 0.0);
    }
}
