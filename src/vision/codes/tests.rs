//! Tests of the codes module: render/decode round trips, photo-like reads, label parsing.

use image::Luma;

use super::gs1::{gtin14, GS};
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
    let names: Vec<_> =
        [Symbology::Ean13, Symbology::QrCode, Symbology::DataMatrix, Symbology::Code128, Symbology::Other].map(Symbology::as_str).into();
    assert_eq!(names, ["ean13", "qr_code", "data_matrix", "code128", "other"]);
}

#[test]
fn photograph_is_deterministic() {
    let clean = encode(Symbology::QrCode, "X", 4).expect("encode");
    assert_eq!(photograph(&clean, 7.0, 1.2), photograph(&clean, 7.0, 1.2));
    let _ = photograph(&GrayImage::new(1, 1), f32::NAN, f32::NAN);
    let _ = photograph(&GrayImage::new(0, 0), 15.0, 0.0);
}
