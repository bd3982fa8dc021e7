//! Label text: [`parse_label`] over GS1 element strings (FNC1 and human-readable forms), the
//! dealers' `PN:…;SN:…;ORIGIN:…` sticker form, and GTIN check digits.

use super::{DecodedCode, LabelData, LabelOrigin, Symbology};

/// Longest text we interpret: a version-40 QR holds 2,953 bytes, 7,089 digits. Anything longer
/// is not a label.
const MAX_LABEL_TEXT: usize = 8 * 1024;

/// Longest value we accept from a dealer sticker field.
const MAX_STICKER_VALUE: usize = 64;

pub(super) const GS: char = '\u{1d}';

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
pub(super) fn gtin14(s: &str) -> Option<String> {
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
