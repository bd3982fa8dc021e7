//! Tests of the QC report renderer: labels, the font, wrapping and full renders checked with
//! poppler-utils.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use super::labels::BUILTIN_LABELS;
use super::layout::{BODY, CONTENT_W};
use super::*;

const FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

fn font() -> &'static ReportFont {
    static FONT_ONCE: OnceLock<ReportFont> = OnceLock::new();
    FONT_ONCE.get_or_init(|| match ReportFont::load(Path::new(FONT)) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    })
}

/// The repository root, found from this file's path (the module may be compiled from
/// another crate through `#[path]`).
fn repo_root() -> PathBuf {
    let src = Path::new(file!());
    let abs = if src.is_absolute() { src.to_owned() } else { Path::new(env!("CARGO_MANIFEST_DIR")).join(src) };
    abs.ancestors().nth(3).map(Path::to_owned).expect("src/pdf/tests.rs has a repository root")
}

/// Where a person can look at the output: $CARGO_TARGET_DIR or ./target.
fn target_dir() -> PathBuf {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).expect("create target dir");
    dir
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("servicebay-pdf-{}-{name}", std::process::id()))
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd} ({e}); install poppler-utils"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Small JPEG thumbnails cut from the test photos, in landscape and portrait.
fn thumbs() -> Vec<Vec<u8>> {
    let models = repo_root().join("models");
    let bus = image::open(models.join("bus.jpg")).expect("models/bus.jpg");
    let zidane = image::open(models.join("zidane.jpg")).expect("models/zidane.jpg");
    let cuts = [
        (&bus, 0, 200, 800, 600),
        (&bus, 100, 500, 400, 300),
        (&bus, 450, 300, 300, 400),
        (&zidane, 0, 0, 1280, 720),
        (&zidane, 600, 100, 480, 360),
        (&zidane, 100, 200, 300, 400),
    ];
    cuts.iter()
        .map(|&(img, x, y, w, h)| {
            let small = img.crop_imm(x, y, w, h).thumbnail(240, 240).to_rgb8();
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 75).encode_image(&small).expect("encode jpeg");
            out
        })
        .collect()
}

fn sample_doc() -> QcReportDoc {
    let t = thumbs();
    let names = [
        "左前门 Front left door",
        "左前翼子板 Front left fender",
        "前保险杠 Front bumper",
        "发动机舱盖 Bonnet",
        "右前门 Front right door",
        "右后门 Rear right door",
        "后保险杠 Rear bumper",
        "行李箱盖 Boot lid",
        "左后视镜 Left mirror",
        "右后视镜 Right mirror",
        "前挡风玻璃 Windscreen",
        "左前轮毂 Front left wheel",
        "右前大灯 Right headlamp",
        "车顶 Roof",
        "左侧裙边 Left sill",
    ];
    let checkpoints = names
        .iter()
        .enumerate()
        .map(|(i, name)| CheckpointRow {
            name: (*name).to_owned(),
            before_jpeg: Some(t[i % t.len()].clone()),
            after_jpeg: if i == 6 { None } else { Some(t[(i + 3) % t.len()].clone()) },
            note: if i == 6 { "未拍摄 not shot".to_owned() } else { format!("视角一致 0.{}", 55 + i) },
        })
        .collect();
    QcReportDoc {
        store_name: "北京朝阳大众特约维修站".into(),
        report_no: "QC-20261206-0001".into(),
        case_id: "C-2026-004211".into(),
        vehicle: "京A·12345 / LSVAB4BR7JN123456 / 大众 帕萨特 / 45,210 km".into(),
        customer_copy: true,
        opened_at: "2026-12-04 09:12".into(),
        inspected_at: "2026-12-06 16:40".into(),
        passed: true,
        checkpoints,
        findings: vec![
            FindingRow { part: "左前门".into(), damage: "凹陷 Dent 12 cm，漆面划伤".into(), outcome: "已修复".into() },
            FindingRow { part: "前保险杠".into(), damage: "裂纹 Crack".into(), outcome: "已修复".into() },
            FindingRow { part: "右后视镜".into(), damage: "划痕 Scratch".into(), outcome: "仍存在".into() },
            FindingRow { part: "左侧裙边".into(), damage: "石击 Stone chip".into(), outcome: "新增".into() },
        ],
        parts: vec![
            PartRow {
                part_no: "3G0-831-051-A".into(),
                name: "左前门壳 Front left door shell".into(),
                origin: "原厂".into(),
                code: "VW-OE-88231".into(),
                serial: "SN2026120400017".into(),
            },
            PartRow {
                part_no: "3G0-807-221".into(),
                name: "前保险杠皮 Bumper cover".into(),
                origin: "同质".into(),
                code: "EQ-55012".into(),
                serial: "—".into(),
            },
        ],
        labour: vec![
            LabourRow { operation: "左前门钣金 Panel beating".into(), standard_h: 3.0, clocked_h: 3.4, flag: "".into() },
            LabourRow { operation: "左前门喷漆 Paint".into(), standard_h: 4.5, clocked_h: 6.2, flag: "超时 over".into() },
            LabourRow { operation: "前保险杠更换 Replace bumper".into(), standard_h: 1.2, clocked_h: 1.1, flag: "".into() },
        ],
        alerts: vec![AlertRow {
            kind: "超工时 Over time".into(),
            detail: "喷漆实际工时超标准 38%，已由车间主管确认。".into(),
            settlement: "按标准工时结算 Billed at standard".into(),
        }],
        inspector: "王建国".into(),
        inspector_note: Some("左前门色差在标准范围内；右后视镜划痕为进厂前旧伤，已告知客户。".into()),
        certificate: Certificate {
            certificate_no: "京修竣字 2026-0098123".into(),
            repair_class: "小修".into(),
            completed_at: "2026-12-06".into(),
            mileage_km: Some(45210),
            quality_inspector: "王建国".into(),
            store_licence: "京交运管许可 110105000321".into(),
        },
        warranty: vec![
            WarrantyRow { repair_class: "小修".into(), terms: "10 天或 2,000 公里".into() },
            WarrantyRow { repair_class: "二级维护".into(), terms: "30 天或 5,000 公里".into() },
            WarrantyRow { repair_class: "总成修理".into(), terms: "100 天或 20,000 公里".into() },
        ],
        survey: None,
    }
}

fn page_count(pdf: &Path) -> usize {
    let info = tool("pdfinfo", &[pdf.to_str().expect("utf-8 path")]);
    info.lines().find_map(|l| l.strip_prefix("Pages:").map(|v| v.trim().parse().expect("page count"))).expect("pdfinfo prints Pages")
}

#[test]
fn builtin_labels_are_complete() {
    let labels = Labels::builtin().expect("builtin labels");
    assert_eq!(labels.title.both(), "维修质检报告 Repair QC report");
    assert_eq!(labels.page_of(2, 5), "第 2 页 / 共 5 页 Page 2 of 5");
    assert!(Labels::KEYS.len() > 40);
}

#[test]
fn labels_errors_name_file_and_key() {
    let without = |section: &str| -> String {
        let mut out = Vec::new();
        let mut skipping = false;
        for line in BUILTIN_LABELS.lines() {
            if line.starts_with('[') {
                skipping = line.trim() == section;
            }
            if !skipping {
                out.push(line);
            }
        }
        out.join("\n")
    };
    let err = Labels::from_toml(&without("[labels.verdict_fail]")).expect_err("missing key");
    assert!(err.to_string().contains("missing key `labels.verdict_fail`"), "{err}");

    let no_en = BUILTIN_LABELS.replacen("en = \"Repair QC report\"", "", 1);
    let err = Labels::from_toml(&no_en).expect_err("missing en");
    assert!(err.to_string().contains("`labels.title.en`"), "{err}");

    let empty = BUILTIN_LABELS.replacen("zh = \"合格\"", "zh = \"  \"", 1);
    let err = Labels::from_toml(&empty).expect_err("empty");
    assert!(err.to_string().contains("`labels.verdict_pass.zh` is empty"), "{err}");

    let typo = format!("{BUILTIN_LABELS}\n[labels.titel]\nzh = \"x\"\nen = \"x\"\n");
    let err = Labels::from_toml(&typo).expect_err("unknown key");
    assert!(err.to_string().contains("unknown key `labels.titel`"), "{err}");

    let bad_template = BUILTIN_LABELS.replacen("en = \"Page {n} of {m}\"", "en = \"Page {n}\"", 1);
    assert!(Labels::from_toml(&bad_template).is_err());

    let path = scratch("labels.toml");
    std::fs::write(&path, without("[labels.col_serial]")).expect("write labels");
    let err = Labels::load(&path).expect_err("missing key in file");
    let msg = err.to_string();
    let _ = std::fs::remove_file(&path);
    assert!(msg.contains(&path.display().to_string()) && msg.contains("labels.col_serial"), "{msg}");

    let err = Labels::load(Path::new("/nonexistent/qc_report.toml")).expect_err("no file");
    assert!(err.to_string().contains("/nonexistent/qc_report.toml"), "{err}");
}

#[test]
fn missing_or_bad_font_fails_closed_naming_the_path() {
    let err = ReportFont::load(Path::new("/nonexistent/NotoSansCJK-Regular.ttc")).expect_err("missing font");
    match &err {
        PdfError::Font { path, .. } => assert_eq!(path, "/nonexistent/NotoSansCJK-Regular.ttc"),
        other => panic!("expected PdfError::Font, got {other:?}"),
    }
    assert!(err.to_string().contains("install fonts-noto-cjk"), "{err}");

    // Not a font at all.
    let junk = scratch("junk.ttc");
    std::fs::write(&junk, b"ttcf\0\0\0\x02\xff\xff\xff\xff junk").expect("write junk");
    let err = ReportFont::load(&junk).expect_err("junk font");
    let _ = std::fs::remove_file(&junk);
    assert!(matches!(err, PdfError::Font { .. }), "{err:?}");
}

#[test]
fn font_selects_the_sc_face_by_family_name() {
    let started = Instant::now();
    let fresh = ReportFont::load(Path::new(FONT)).expect("font loads");
    println!("font load (read, select, test render): {:?}", started.elapsed());
    assert_eq!(fresh.family(), "Noto Sans CJK SC");
    let f = font();
    assert_eq!(f.family(), "Noto Sans CJK SC");
    // Debian's file orders JP, KR, SC, TC, HK: SC is index 2 there. We select by name; this
    // only documents what the name resolved to.
    println!("report font: {} (index {}) from {}", f.family(), f.index(), f.path().display());
    assert_ne!(f.metrics.glyph('维'), 0);
}

#[test]
fn wrapping_measures_with_font_advances() {
    let f = font();
    let cjk = "维修质检报告".repeat(20);
    let lines = f.wrap(&cjk, 10.0, 100.0);
    assert!(lines.len() > 5);
    for l in &lines {
        assert!(f.width(l, 10.0) <= 100.0 + 0.01, "{l}");
    }
    assert_eq!(lines.concat(), cjk, "CJK wraps at any character, nothing lost");

    let latin = f.wrap("Repair quality check report for the customer", 10.0, 80.0);
    assert!(latin.iter().all(|l| !l.starts_with(' ') && !l.ends_with(' ')));
    assert!(latin.iter().all(|l| f.width(l, 10.0) <= 80.0 + 0.01));
    assert!(latin.contains(&"Repair quality".to_owned()) || latin[0].split(' ').all(|w| !w.is_empty()));

    // A token longer than the line breaks anywhere.
    let token = "LSVAB4BR7JN123456".repeat(6);
    assert!(f.wrap(&token, 10.0, 60.0).iter().all(|l| f.width(l, 10.0) <= 60.0 + 0.01));

    // Closing punctuation never starts a line.
    for width in [40.0, 45.0, 50.0, 55.0, 60.0] {
        for l in f.wrap("左前门，已修复。右后视镜：仍存在！", 10.0, width) {
            assert!(!l.starts_with(['，', '。', '：', '！']), "{l}");
        }
    }
    assert_eq!(f.wrap("", 10.0, 50.0), Vec::<String>::new());
}

#[test]
fn full_report_renders_with_embedded_subset_font() {
    let f = font();
    let labels = Labels::builtin().expect("labels");
    let doc = sample_doc();

    let started = Instant::now();
    let pdf = render(&doc, f, &labels).expect("render");
    let elapsed = started.elapsed();
    println!("render time, 15 checkpoints: {elapsed:?}; PDF size: {} bytes", pdf.len());

    // Same input, same bytes: the PDF can be identified by its hash.
    let again = render(&doc, f, &labels).expect("render again");
    assert!(pdf == again, "rendering is deterministic");

    let path = target_dir().join("qc-report.pdf");
    std::fs::write(&path, &pdf).expect("write pdf");
    let p = path.to_str().expect("utf-8 path");

    let text = tool("pdftotext", &["-layout", p, "-"]);
    for needle in [
        "维修质检报告",
        "Repair QC report",
        "合格",
        "客户联",
        "3G0-831-051-A",
        "仍存在",
        "京修竣字 2026-0098123",
        "未拍摄",
        "左前翼子板",
        "45,210 km",
        "10 天或 2,000 公里",
        "第 1 页 / 共",
        "QC-20261206-0001",
    ] {
        assert!(text.contains(needle), "pdftotext lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains("不合格"), "a passed report says 合格 only");
    let pages = page_count(&path);
    assert!(pages >= 2, "15 checkpoints take more than one page");
    assert!(text.contains(&format!("第 {pages} 页 / 共 {pages} 页")), "last page footer");

    let fonts = tool("pdffonts", &[p]);
    let rows: Vec<&str> = fonts.lines().skip(2).filter(|l| !l.trim().is_empty()).collect();
    assert!(!rows.is_empty(), "{fonts}");
    for row in rows {
        let name = row.split_whitespace().next().unwrap_or("");
        assert!(name.contains("NotoSansCJK"), "only the report font is used: {fonts}");
        assert!(name.len() > 7 && name.as_bytes()[6] == b'+', "font is a subset (ABCDEF+ prefix): {fonts}");
        let cols: Vec<&str> = row.split_whitespace().collect();
        // columns: name type... encoding emb sub uni object ID
        let n = cols.len();
        assert!(n >= 6 && cols[n - 5] == "yes" && cols[n - 4] == "yes", "emb and sub are yes: {fonts}");
    }

    let prefix = scratch("page1");
    let prefix_s = prefix.to_str().expect("utf-8 path");
    tool("pdftoppm", &["-r", "60", "-f", "1", "-l", "1", "-png", "-singlefile", p, prefix_s]);
    let png = PathBuf::from(format!("{prefix_s}.png"));
    let bytes = std::fs::read(&png).expect("page image");
    let _ = std::fs::remove_file(&png);
    assert!(bytes.starts_with(b"\x89PNG"));
    let out = target_dir().join("qc-report-page1.png");
    std::fs::write(&out, &bytes).expect("write page image");
    println!("page 1 image: {}; PDF: {}", out.display(), path.display());
}

#[test]
fn store_copy_failed_report_and_bad_photos() {
    let f = font();
    let labels = Labels::builtin().expect("labels");
    let mut doc = sample_doc();
    doc.customer_copy = false;
    doc.passed = false;
    doc.checkpoints.truncate(3);
    doc.checkpoints[0].before_jpeg = Some(b"\xff\xd8 not really a jpeg".to_vec());
    // A full-size photo is embedded downscaled, not as is.
    let bus = std::fs::read(repo_root().join("models/bus.jpg")).expect("bus.jpg");
    doc.checkpoints[1].after_jpeg = Some(bus.clone());
    doc.findings.clear();
    doc.parts.clear();
    doc.labour.clear();
    doc.alerts.clear();
    doc.warranty.clear();
    doc.inspector_note = None;
    doc.certificate.mileage_km = None;
    let pdf = render(&doc, f, &labels).expect("render");
    assert!(pdf.len() < 400_000 + bus.len() / 2, "large photo was downscaled: {} bytes", pdf.len());
    let path = scratch("store-copy.pdf");
    std::fs::write(&path, &pdf).expect("write pdf");
    let text = tool("pdftotext", &["-layout", path.to_str().expect("utf-8 path"), "-"]);
    let _ = std::fs::remove_file(&path);
    for needle in ["不合格", "FAIL", "存档联", "照片无法读取", "无 None", "未记录"] {
        assert!(text.contains(needle), "pdftotext lacks {needle:?}:\n{text}");
    }
}

#[test]
fn hostile_text_renders_and_wraps() {
    let f = font();
    let labels = Labels::builtin().expect("labels");
    let piece = "质检备注：漆面 OK ✅🚗 Ελληνικά кириллица العربية हिन्दी 😀👍🏽 tab\there ";
    let mut note = String::new();
    while note.chars().count() < 10_000 {
        note.push_str(piece);
        note.push_str(&"X".repeat(97));
    }
    let note: String = note.chars().take(10_000).collect();
    let mut doc = sample_doc();
    doc.checkpoints.truncate(2);
    doc.inspector_note = Some(note.clone());
    doc.checkpoints[0].note = note.clone();
    doc.checkpoints[1].name = note.clone();
    doc.findings[0].damage = note.clone();
    doc.vehicle = note.chars().take(600).collect();
    doc.warranty[0].terms = note.clone();

    for line in f.wrap(&note, BODY, CONTENT_W) {
        assert!(f.width(&line, BODY) <= CONTENT_W + 0.01);
    }
    let started = Instant::now();
    let pdf = render(&doc, f, &labels).expect("hostile text renders");
    println!("hostile render: {:?}, {} bytes", started.elapsed(), pdf.len());
    let path = target_dir().join("qc-report-hostile.pdf");
    std::fs::write(&path, &pdf).expect("write pdf");
    let pages = page_count(&path);
    assert!(pages > 3, "10,000 characters in several places span pages ({pages})");
    let text = tool("pdftotext", &[path.to_str().expect("utf-8 path"), "-"]);
    assert!(text.contains("кириллица") && text.contains("Ελληνικά"), "mixed scripts are text");
}

#[test]
fn report_font_and_labels_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ReportFont>();
    shareable::<Labels>();
}
