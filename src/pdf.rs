//! The repair QC report (维修质检报告) as a PDF, rendered on the box without a browser.
//!
//! Owns: the report's input types ([`QcReportDoc`] and its rows), the fixed labels
//! ([`Labels`], data in `assets/report/qc_report.toml`), the report font ([`ReportFont`]) and
//! [`render`], which lays the report out on A4 pages and writes it with `krilla`.
//!
//! Invariants:
//! - **Fail closed on the font.** A report is never written without the CJK font: a missing,
//!   unreadable or unsuitable font file is a [`PdfError::Font`] naming the path, at load time
//!   (a test render runs there) and again if embedding fails while writing.
//! - **Text is text.** Every string is drawn as glyphs of the embedded, subset font with a
//!   ToUnicode map, so the PDF can be searched and copied; nothing is drawn as outlines.
//! - **Widths are measured with the font's own advances** (`cmap` + `hmtx`, read here because
//!   krilla keeps its metrics private). CJK breaks at any character, Latin at spaces, and a
//!   token wider than a line breaks anywhere, so no text runs past its box.
//! - **Every label the renderer prints is checked at load.** [`Labels`] is generated from one
//!   key list, so the renderer can only name keys the loader has verified are present.
//! - **Layout is two passes:** the sections are laid out into a display list of pages first,
//!   then drawn, so the footer knows the page count ("第 n 页 / 共 m 页"). Tables repeat their
//!   header after a page break and split a row that is taller than a page.
//! - The output is deterministic for the same input (no clock, no random ids), so a hash of
//!   the PDF identifies the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use krilla::color::rgb;
use krilla::error::KrillaError;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use krilla::{Data, Document};

// ------------------------------------------------------------------------------------------
// Input
// ------------------------------------------------------------------------------------------

/// Everything printed on one QC report. All text is already localised by the caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QcReportDoc {
    pub store_name: String,
    /// e.g. "QC-20261206-0001"
    pub report_no: String,
    pub case_id: String,
    /// "京A·12345 / LSVAB4BR7JN123456 / 大众 帕萨特 / 45,210 km" (plate already masked for the
    /// customer copy)
    pub vehicle: String,
    /// The customer's copy: photos given are already blurred.
    pub customer_copy: bool,
    pub opened_at: String,
    pub inspected_at: String,
    pub passed: bool,
    pub checkpoints: Vec<CheckpointRow>,
    pub findings: Vec<FindingRow>,
    pub parts: Vec<PartRow>,
    pub labour: Vec<LabourRow>,
    pub alerts: Vec<AlertRow>,
    pub inspector: String,
    pub inspector_note: Option<String>,
    pub certificate: Certificate,
    pub warranty: Vec<WarrantyRow>,
}

/// One checkpoint: a before and an after photo (JPEG bytes) of the same view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRow {
    pub name: String,
    #[serde(skip)]
    pub before_jpeg: Option<Vec<u8>>,
    #[serde(skip)]
    pub after_jpeg: Option<Vec<u8>>,
    /// e.g. "视角一致 0.62" or "未拍摄 not shot"
    pub note: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingRow {
    pub part: String,
    pub damage: String,
    /// 已修复 / 仍存在 / 新增
    pub outcome: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PartRow {
    pub part_no: String,
    pub name: String,
    /// 原厂/同质/修复
    pub origin: String,
    pub code: String,
    pub serial: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabourRow {
    pub operation: String,
    pub standard_h: f64,
    pub clocked_h: f64,
    pub flag: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    pub kind: String,
    pub detail: String,
    pub settlement: String,
}

/// The fields of the 机动车维修竣工出厂合格证.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Certificate {
    pub certificate_no: String,
    /// e.g. 二级维护 / 小修 / 总成修理
    pub repair_class: String,
    pub completed_at: String,
    pub mileage_km: Option<i64>,
    pub quality_inspector: String,
    pub store_licence: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WarrantyRow {
    pub repair_class: String,
    /// e.g. "20 天或 2,000 公里"
    pub terms: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the report font {path} cannot be used: {reason}; install fonts-noto-cjk or set [report] font")]
    Font { path: String, reason: String },
    #[error("report labels {0}")]
    Labels(String),
    #[error("cannot render the report: {0}")]
    Render(String),
}

// ------------------------------------------------------------------------------------------
// Labels
// ------------------------------------------------------------------------------------------

/// One fixed label in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub zh: String,
    pub en: String,
}

impl Label {
    /// zh-CN first, English second: "维修质检报告 Repair QC report".
    pub fn both(&self) -> String {
        format!("{} {}", self.zh, self.en)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    labels: BTreeMap<String, RawLabel>,
}

// Both texts optional here so that a missing one is reported by our loader, which names the
// file and the full key, rather than by serde.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    zh: Option<String>,
    en: Option<String>,
}

const MAX_LABEL_CHARS: usize = 80;

fn take_label(entries: &mut BTreeMap<String, RawLabel>, key: &str, source: &str) -> Result<Label, PdfError> {
    let raw = entries.remove(key).ok_or_else(|| PdfError::Labels(format!("{source}: missing key `labels.{key}`")))?;
    let text = |value: Option<String>, lang: &str| match value {
        // A label sits in a table header or a heading bar; one the length of a paragraph would
        // push the layout off the page.
        Some(v) if v.trim().chars().count() > MAX_LABEL_CHARS => {
            Err(PdfError::Labels(format!("{source}: key `labels.{key}.{lang}` is longer than {MAX_LABEL_CHARS} characters")))
        }
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Some(_) => Err(PdfError::Labels(format!("{source}: key `labels.{key}.{lang}` is empty"))),
        None => Err(PdfError::Labels(format!("{source}: missing key `labels.{key}.{lang}`"))),
    };
    Ok(Label { zh: text(raw.zh, "zh")?, en: text(raw.en, "en")? })
}

// One list of keys generates the struct, the loader and `Labels::KEYS`, so the renderer cannot
// print a label that the loader has not checked.
macro_rules! report_labels {
    ($($key:ident),* $(,)?) => {
        /// Every fixed label of the report, checked present and non-empty at load.
        #[derive(Debug, Clone)]
        pub struct Labels {
            $(pub $key: Label,)*
        }

        impl Labels {
            /// The keys (`[labels.<key>]`) a labels file must define, each with `zh` and `en`.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

            fn from_entries(mut entries: BTreeMap<String, RawLabel>, source: &str) -> Result<Labels, PdfError> {
                let labels = Labels { $($key: take_label(&mut entries, stringify!($key), source)?,)* };
                // A key we do not know is most likely a typo of one we do; refuse it rather than
                // print the builtin text the operator meant to change.
                if let Some(unknown) = entries.keys().next() {
                    return Err(PdfError::Labels(format!("{source}: unknown key `labels.{unknown}`")));
                }
                Ok(labels)
            }
        }
    };
}

report_labels!(
    title,
    store,
    report_no,
    case_id,
    vehicle,
    opened_at,
    inspected_at,
    copy_customer,
    copy_store,
    verdict_pass,
    verdict_fail,
    section_checkpoints,
    before,
    after,
    not_shot,
    photo_unreadable,
    section_findings,
    col_part,
    col_damage,
    col_outcome,
    section_parts,
    col_part_no,
    col_part_name,
    col_origin,
    col_code,
    col_serial,
    section_labour,
    col_operation,
    col_standard_h,
    col_clocked_h,
    col_flag,
    total,
    section_alerts,
    col_alert_kind,
    col_alert_detail,
    col_settlement,
    section_signoff,
    inspector,
    inspector_note,
    signature,
    date,
    section_certificate,
    certificate_no,
    repair_class,
    completed_at,
    mileage,
    quality_inspector,
    store_licence,
    warranty,
    col_warranty_terms,
    none,
    not_recorded,
    continued,
    page_of,
);

const BUILTIN_LABELS: &str = include_str!("../assets/report/qc_report.toml");

impl Labels {
    /// The labels compiled into the binary (`assets/report/qc_report.toml`).
    pub fn builtin() -> Result<Labels, PdfError> {
        Labels::parse(BUILTIN_LABELS, "assets/report/qc_report.toml (builtin)")
    }

    /// Loads and checks a labels file.
    pub fn load(path: &Path) -> Result<Labels, PdfError> {
        let text = std::fs::read_to_string(path).map_err(|e| PdfError::Labels(format!("{}: cannot be read: {e}", path.display())))?;
        Labels::parse(&text, &path.display().to_string())
    }

    /// Checks labels given as TOML text.
    pub fn from_toml(text: &str) -> Result<Labels, PdfError> {
        Labels::parse(text, "(inline TOML)")
    }

    fn parse(text: &str, source: &str) -> Result<Labels, PdfError> {
        let raw: RawLabels = toml::from_str(text).map_err(|e| PdfError::Labels(format!("{source}: {e}")))?;
        let labels = Labels::from_entries(raw.labels, source)?;
        for (lang, template) in [("zh", &labels.page_of.zh), ("en", &labels.page_of.en)] {
            if !template.contains("{n}") || !template.contains("{m}") {
                return Err(PdfError::Labels(format!("{source}: key `labels.page_of.{lang}` must contain {{n}} and {{m}}")));
            }
        }
        Ok(labels)
    }

    fn page_of(&self, n: usize, m: usize) -> String {
        let fill = |t: &str| t.replace("{n}", &n.to_string()).replace("{m}", &m.to_string());
        format!("{} {}", fill(&self.page_of.zh), fill(&self.page_of.en))
    }
}

// ------------------------------------------------------------------------------------------
// Font
// ------------------------------------------------------------------------------------------

/// The face we want from a collection such as Debian's `NotoSansCJK-Regular.ttc`.
const REPORT_FAMILY: &str = "Noto Sans CJK SC";

/// Characters a face must map to be usable for this report at all.
const REQUIRED_CHARS: &str = "维修质检报告合格不第页共0123456789ABCXYZabcxyz.,:/";

/// The report font: the font data, the chosen face of a collection and the metrics we measure
/// text with. Cheap to share (`Arc` inside); load it once at start-up.
#[derive(Clone)]
pub struct ReportFont {
    path: PathBuf,
    family: String,
    index: u32,
    font: Font,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ReportFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportFont").field("path", &self.path).field("family", &self.family).field("index", &self.index).finish()
    }
}

impl ReportFont {
    /// Reads a font file and picks the "Noto Sans CJK SC" face by its family name (a file with
    /// a single face is taken if it covers the report's characters). Fails closed: any problem
    /// is a [`PdfError::Font`] naming `path`.
    pub fn load(path: &Path) -> Result<ReportFont, PdfError> {
        let fail = |reason: String| PdfError::Font { path: path.display().to_string(), reason };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot be read ({e})")))?;
        let data: Arc<Vec<u8>> = Arc::new(bytes);

        let faces = sfnt::face_offsets(&data).map_err(|e| fail(format!("not an OpenType font or collection ({e})")))?;
        let mut seen = Vec::new();
        let mut chosen = None;
        for (index, &offset) in faces.iter().enumerate() {
            let names = sfnt::family_names(&data, offset).unwrap_or_default();
            if names.iter().any(|n| n.eq_ignore_ascii_case(REPORT_FAMILY)) {
                chosen = Some((index, REPORT_FAMILY.to_owned()));
                break;
            }
            seen.push(names.first().cloned().unwrap_or_else(|| format!("face {index} without a name")));
        }
        // An operator may point [report] font at another single-face Chinese font; take it if it
        // covers the report (checked below). A collection without the SC face is refused: its
        // other faces draw Chinese with Japanese or Korean glyph shapes.
        if chosen.is_none() && faces.len() == 1 {
            chosen = Some((0, seen.first().cloned().unwrap_or_default()));
        }
        let Some((index, family)) = chosen else {
            return Err(fail(format!("it has no face named \"{REPORT_FAMILY}\" (faces: {})", seen.join(", "))));
        };
        let face_offset = faces[index];
        let index = u32::try_from(index).map_err(|_| fail("too many faces".into()))?;

        let metrics = Metrics::read(&data, face_offset).map_err(|e| fail(format!("face {index} ({family}): {e}")))?;
        if let Some(c) = REQUIRED_CHARS.chars().find(|&c| metrics.glyph(c) == 0) {
            return Err(fail(format!("face {index} ({family}) has no glyph for {c:?}")));
        }
        let font = Font::new(Data::from(data), index).ok_or_else(|| fail(format!("krilla cannot read face {index} ({family})")))?;
        let report_font = ReportFont { path: path.to_owned(), family, index, font, metrics: Arc::new(metrics) };
        report_font.smoke_test()?;
        Ok(report_font)
    }

    /// The family name of the chosen face, e.g. "Noto Sans CJK SC".
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The face's index in its collection (0 for a plain font file).
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // krilla shapes with rustybuzz and unwraps its parse of the face, and only subsets and
    // embeds the font when a document is finished. Doing both once here turns a font that
    // skrifa accepts but the shaper or subsetter does not into a start-up error, not a panic or
    // a failed report later.
    fn smoke_test(&self) -> Result<(), PdfError> {
        let fail = |reason: String| PdfError::Font { path: self.path.display().to_string(), reason };
        let font = self.font.clone();
        // AssertUnwindSafe: the closure owns a clone of the font handle and a throwaway
        // document; after a panic both are dropped and the font is refused, nothing is reused.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut document = Document::new();
            let settings = PageSettings::from_wh(100.0, 100.0).ok_or("bad test page size")?;
            let mut page = document.start_page_with(settings);
            let mut surface = page.surface();
            surface.draw_text(Point::from_xy(5.0, 50.0), font, 10.0, "合格 PASS", false, TextDirection::LeftToRight);
            surface.finish();
            page.finish();
            document.finish().map(|pdf| pdf.len()).map_err(|e| krilla_error_text(&e))
        }));
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(fail(format!("a test render failed: {e}"))),
            Err(_) => Err(fail("a test render panicked while shaping or embedding".into())),
        }
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        self.metrics.width(text, size)
    }
}

/// What we measure text with: the face's cmap as ranges, its advances, and its vertical
/// metrics, all in font units.
struct Metrics {
    units_per_em: f32,
    ascent: f32,
    descent: f32,
    /// Sorted, non-overlapping: (first code point, last code point, glyph of the first).
    cmap: Vec<(u32, u32, u32)>,
    advances: Vec<u16>,
}

impl Metrics {
    fn read(data: &[u8], face_offset: usize) -> Result<Metrics, String> {
        let tables = sfnt::tables(data, face_offset)?;
        let table = |tag: &[u8; 4]| tables.get(tag).copied().ok_or_else(|| format!("no {} table", String::from_utf8_lossy(tag)));

        let head = table(b"head")?;
        let units_per_em = sfnt::u16_at(data, head + 18)?;
        if !(16..=16384).contains(&units_per_em) {
            return Err(format!("unitsPerEm {units_per_em} is out of range"));
        }
        let num_glyphs = usize::from(sfnt::u16_at(data, table(b"maxp")? + 4)?);
        let hhea = table(b"hhea")?;
        let mut ascent = f32::from(sfnt::i16_at(data, hhea + 4)?);
        let mut descent = -f32::from(sfnt::i16_at(data, hhea + 6)?);
        // The typographic metrics of OS/2 are the ones the CJK fonts design lines with (hhea
        // includes extra line gap); use them when present.
        if let Some(&os2) = tables.get(b"OS/2") {
            if let (Ok(a), Ok(d)) = (sfnt::i16_at(data, os2 + 68), sfnt::i16_at(data, os2 + 70)) {
                if a > 0 && d <= 0 {
                    ascent = f32::from(a);
                    descent = -f32::from(d);
                }
            }
        }
        let n_metrics = usize::from(sfnt::u16_at(data, hhea + 34)?);
        if n_metrics == 0 || n_metrics > num_glyphs {
            return Err(format!("numberOfHMetrics {n_metrics} does not fit {num_glyphs} glyphs"));
        }
        let hmtx = table(b"hmtx")?;
        let mut advances = Vec::with_capacity(num_glyphs);
        for i in 0..n_metrics {
            advances.push(sfnt::u16_at(data, hmtx + 4 * i)?);
        }
        let last = advances[n_metrics - 1];
        advances.resize(num_glyphs, last);

        let cmap = sfnt::unicode_cmap(data, table(b"cmap")?, num_glyphs)?;
        Ok(Metrics { units_per_em: f32::from(units_per_em), ascent, descent, cmap, advances })
    }

    fn glyph(&self, c: char) -> u32 {
        let cp = u32::from(c);
        let i = self.cmap.partition_point(|&(start, _, _)| start <= cp);
        match i.checked_sub(1).map(|i| self.cmap[i]) {
            Some((start, end, gid)) if cp <= end => gid + (cp - start),
            _ => 0,
        }
    }

    fn advance(&self, c: char) -> f32 {
        let gid = self.glyph(c) as usize;
        f32::from(self.advances.get(gid).or(self.advances.first()).copied().unwrap_or(0))
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        let units: f32 = text.chars().map(|c| self.advance(c)).sum();
        units * size / self.units_per_em
    }
}

/// The small, bounds-checked part of the OpenType format we need: the collection header, the
/// table directory, family names, the Unicode cmap. Every read is checked; a malformed file is
/// an error string, never a panic.
mod sfnt {
    use std::collections::HashMap;

    pub(super) fn u16_at(d: &[u8], at: usize) -> Result<u16, String> {
        d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| format!("truncated at byte {at}"))
    }

    pub(super) fn i16_at(d: &[u8], at: usize) -> Result<i16, String> {
        u16_at(d, at).map(|v| v as i16)
    }

    pub(super) fn u32_at(d: &[u8], at: usize) -> Result<u32, String> {
        d.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| format!("truncated at byte {at}"))
    }

    fn usize_at(d: &[u8], at: usize) -> Result<usize, String> {
        u32_at(d, at).map(|v| v as usize)
    }

    /// The offsets of the faces' table directories: several in a `ttcf` collection, else one.
    pub(super) fn face_offsets(d: &[u8]) -> Result<Vec<usize>, String> {
        if d.get(0..4) == Some(b"ttcf") {
            let n = usize_at(d, 8)?;
            if n == 0 || n > 1024 {
                return Err(format!("the collection claims {n} faces"));
            }
            (0..n).map(|i| usize_at(d, 12 + 4 * i)).collect()
        } else {
            match d.get(0..4) {
                Some([0, 1, 0, 0]) | Some(b"OTTO") | Some(b"true") => Ok(vec![0]),
                _ => Err("unknown file signature".into()),
            }
        }
    }

    /// Table tag → absolute offset of the table.
    pub(super) fn tables(d: &[u8], face: usize) -> Result<HashMap<[u8; 4], usize>, String> {
        let n = usize::from(u16_at(d, face + 4)?);
        let mut out = HashMap::with_capacity(n);
        for i in 0..n {
            let rec = face + 12 + 16 * i;
            let tag: [u8; 4] = d.get(rec..rec + 4).and_then(|t| t.try_into().ok()).ok_or("truncated table directory")?;
            let offset = usize_at(d, rec + 8)?;
            let len = usize_at(d, rec + 12)?;
            if offset.checked_add(len).is_none_or(|end| end > d.len()) {
                return Err(format!("table {} lies outside the file", String::from_utf8_lossy(&tag)));
            }
            out.insert(tag, offset);
        }
        Ok(out)
    }

    /// The face's family names (typographic family, name id 16, first; then name id 1).
    pub(super) fn family_names(d: &[u8], face: usize) -> Result<Vec<String>, String> {
        let name = *tables(d, face)?.get(b"name").ok_or("no name table")?;
        let count = usize::from(u16_at(d, name + 2)?);
        let strings = name + usize::from(u16_at(d, name + 4)?);
        let mut found: Vec<(u16, String)> = Vec::new();
        for i in 0..count {
            let rec = name + 6 + 12 * i;
            let (platform, encoding) = (u16_at(d, rec)?, u16_at(d, rec + 2)?);
            let name_id = u16_at(d, rec + 6)?;
            if name_id != 1 && name_id != 16 {
                continue;
            }
            let (len, off) = (usize::from(u16_at(d, rec + 8)?), usize::from(u16_at(d, rec + 10)?));
            let Some(raw) = d.get(strings + off..strings + off + len) else { continue };
            let text = match (platform, encoding) {
                (0, _) | (3, 1) | (3, 10) => {
                    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                    String::from_utf16_lossy(&units)
                }
                // Mac Roman; family names are ASCII in practice.
                (1, 0) => raw.iter().map(|&b| char::from(b)).collect(),
                _ => continue,
            };
            if !found.iter().any(|(_, t)| *t == text) {
                found.push((name_id, text));
            }
        }
        found.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(found.into_iter().map(|(_, t)| t).collect())
    }

    /// The Unicode mapping as sorted ranges (first, last, glyph of first), from a format 12
    /// subtable if there is one, else format 4.
    pub(super) fn unicode_cmap(d: &[u8], cmap: usize, num_glyphs: usize) -> Result<Vec<(u32, u32, u32)>, String> {
        let n = usize::from(u16_at(d, cmap + 2)?);
        let mut format4 = None;
        let mut format12 = None;
        for i in 0..n {
            let rec = cmap + 4 + 8 * i;
            let (platform, encoding) = (u16_at(d, rec)?, u16_at(d, rec + 2)?);
            let sub = cmap + usize_at(d, rec + 4)?;
            let unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10));
            match (unicode, u16_at(d, sub)) {
                (true, Ok(12)) => format12 = format12.or(Some(sub)),
                (true, Ok(4)) => format4 = format4.or(Some(sub)),
                _ => {}
            }
        }
        let mut ranges = if let Some(sub) = format12 {
            let groups = usize_at(d, sub + 12)?;
            let mut out = Vec::with_capacity(groups.min(100_000));
            for g in 0..groups {
                let at = sub + 16 + 12 * g;
                let (start, end, gid) = (u32_at(d, at)?, u32_at(d, at + 4)?, u32_at(d, at + 8)?);
                if start <= end && end <= 0x10FFFF {
                    out.push((start, end, gid));
                }
            }
            out
        } else if let Some(sub) = format4 {
            format4_ranges(d, sub)?
        } else {
            return Err("no Unicode cmap (format 4 or 12)".into());
        };
        // Drop ranges pointing past the glyph count and overlaps, so lookups can trust them.
        ranges.retain(|&(start, end, gid)| (gid as usize).saturating_add((end - start) as usize) < num_glyphs);
        ranges.sort_unstable();
        let mut clean: Vec<(u32, u32, u32)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            if clean.last().is_none_or(|last| r.0 > last.1) {
                clean.push(r);
            }
        }
        Ok(clean)
    }

    fn format4_ranges(d: &[u8], sub: usize) -> Result<Vec<(u32, u32, u32)>, String> {
        let seg_x2 = usize::from(u16_at(d, sub + 6)?);
        let ends = sub + 14;
        let starts = ends + seg_x2 + 2;
        let deltas = starts + seg_x2;
        let range_offsets = deltas + seg_x2;
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for s in 0..seg_x2 / 2 {
            let end = u32::from(u16_at(d, ends + 2 * s)?);
            let start = u32::from(u16_at(d, starts + 2 * s)?);
            let delta = u32::from(u16_at(d, deltas + 2 * s)?);
            let ro_at = range_offsets + 2 * s;
            let ro = usize::from(u16_at(d, ro_at)?);
            for c in start..=end.min(0xFFFE) {
                let gid = if ro == 0 {
                    (c + delta) & 0xFFFF
                } else {
                    let g = u32::from(u16_at(d, ro_at + ro + 2 * (c - start) as usize).unwrap_or(0));
                    if g == 0 {
                        0
                    } else {
                        (g + delta) & 0xFFFF
                    }
                };
                if gid != 0 {
                    pairs.push((c, gid));
                }
            }
        }
        let mut out: Vec<(u32, u32, u32)> = Vec::new();
        for (c, gid) in pairs {
            match out.last_mut() {
                Some(last) if last.1 + 1 == c && last.2 + (c - last.0) == gid => last.1 = c,
                _ => out.push((c, c, gid)),
            }
        }
        Ok(out)
    }
}

fn krilla_error_text(e: &KrillaError) -> String {
    match e {
        KrillaError::Font(_, reason) => format!("font: {reason}"),
        KrillaError::Image(_, _, reason) => format!("image: {reason}"),
        other => format!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// Text wrapping
// ------------------------------------------------------------------------------------------

/// Wide characters (CJK, kana, hangul, fullwidth forms, emoji): a line may break before or
/// after any of them.
fn is_wide(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x11FF | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F000..=0x1FAFF | 0x20000..=0x3FFFD)
}

/// Punctuation that must not start a line (simple 禁则).
fn no_break_before(c: char) -> bool {
    "，。、；：！？）》」』】〕〉”’…·,.;:!?)]}%".contains(c)
}

/// Punctuation that must not end a line.
fn no_break_after(c: char) -> bool {
    "（《「『【〔〈“‘([{".contains(c)
}

fn can_break_between(prev: char, c: char) -> bool {
    if c.is_whitespace() || no_break_before(c) || no_break_after(prev) {
        return false;
    }
    prev.is_whitespace() || is_wide(prev) || is_wide(c) || prev == '/' || prev == '-'
}

/// Replaces control characters (tabs, stray CRs, etc.) with spaces: they have no glyph, and a
/// line must measure what it draws.
fn clean_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

impl ReportFont {
    /// Greedy line breaking within `max_w` points. Hard breaks at '\n'; an empty text gives no
    /// lines.
    fn wrap(&self, text: &str, size: f32, max_w: f32) -> Vec<String> {
        let mut out = Vec::new();
        for para in text.split('\n') {
            let chars: Vec<char> = clean_line(para).trim_end().chars().collect();
            let widths: Vec<f32> = chars.iter().map(|&c| self.metrics.advance(c) * size / self.metrics.units_per_em).collect();
            let mut start = 0;
            while start < chars.len() && chars[start] == ' ' {
                start += 1;
            }
            if start == chars.len() {
                out.push(String::new());
                continue;
            }
            let mut width = 0.0;
            let mut last_break = None;
            let mut i = start;
            while i < chars.len() {
                if i > start && can_break_between(chars[i - 1], chars[i]) {
                    last_break = Some(i);
                }
                if width + widths[i] > max_w && i > start {
                    let end = match last_break {
                        Some(b) if b > start => b,
                        _ => i,
                    };
                    out.push(chars[start..end].iter().collect::<String>().trim_end().to_owned());
                    start = end;
                    while start < chars.len() && chars[start] == ' ' {
                        start += 1;
                    }
                    width = 0.0;
                    last_break = None;
                    i = start;
                    continue;
                }
                width += widths[i];
                i += 1;
            }
            if start < chars.len() {
                out.push(chars[start..].iter().collect());
            }
        }
        // Leading/trailing blank paragraphs add nothing to a report cell.
        while out.last().is_some_and(|l| l.is_empty()) {
            out.pop();
        }
        out
    }

    /// Like [`ReportFont::wrap`] but at most `max_lines`, the last one ending in "…" when text
    /// was cut. For cells whose size is fixed by the layout (checkpoint names and notes).
    fn wrap_max(&self, text: &str, size: f32, max_w: f32, max_lines: usize) -> Vec<String> {
        let mut lines = self.wrap(text, size, max_w);
        if lines.len() > max_lines {
            lines.truncate(max_lines);
            if let Some(last) = lines.last_mut() {
                let mut cut: Vec<char> = last.chars().collect();
                while !cut.is_empty() && self.width(&format!("{}…", cut.iter().collect::<String>()), size) > max_w {
                    cut.pop();
                }
                *last = format!("{}…", cut.iter().collect::<String>().trim_end());
            }
        }
        lines
    }

    fn line_height(&self, size: f32) -> f32 {
        size * LINE_FACTOR
    }

    /// Distance from the top of a line box to the baseline: the glyph box (ascent + descent)
    /// centred in the line height.
    fn baseline(&self, size: f32) -> f32 {
        let m = &self.metrics;
        let (asc, desc) = (m.ascent / m.units_per_em, m.descent / m.units_per_em);
        (LINE_FACTOR - asc - desc) / 2.0 * size + asc * size
    }
}

// ------------------------------------------------------------------------------------------
// Page geometry and style
// ------------------------------------------------------------------------------------------

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 40.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
const FIRST_TOP: f32 = 36.0;
/// Pages after the first carry a running header above this line.
const NEXT_TOP: f32 = 58.0;
const BODY_BOTTOM: f32 = PAGE_H - 50.0;
const LINE_FACTOR: f32 = 1.4;

const BODY: f32 = 9.0;
const SMALL: f32 = 7.5;
const PAD: f32 = 3.5;

/// Thumbnails are embedded at most this many pixels on the long side: enough for print at the
/// size they are drawn, and it keeps a report with 30 full-size photos to a few MB.
const THUMB_MAX_PX: u32 = 640;
/// The largest photo we agree to decode for downscaling (per side).
const PHOTO_MAX_SIDE: u32 = 12_000;

#[derive(Clone, Copy, PartialEq)]
struct Rgb(u8, u8, u8);

const INK: Rgb = Rgb(0x1a, 0x1a, 0x1a);
const MUTED: Rgb = Rgb(0x66, 0x66, 0x66);
const RULE: Rgb = Rgb(0xb0, 0xb0, 0xb0);
const SHADE: Rgb = Rgb(0xee, 0xf1, 0xf5);
const BAR: Rgb = Rgb(0xdd, 0xe5, 0xef);
const MISSING: Rgb = Rgb(0xd9, 0xd9, 0xd9);
const PASS: Rgb = Rgb(0x1b, 0x7f, 0x3b);
const FAIL: Rgb = Rgb(0xc6, 0x28, 0x28);
const WHITE: Rgb = Rgb(0xff, 0xff, 0xff);

impl Rgb {
    fn krilla(self) -> rgb::Color {
        rgb::Color::new(self.0, self.1, self.2)
    }
}

/// How a piece of text is set.
#[derive(Clone, Copy)]
struct Ts {
    size: f32,
    color: Rgb,
    bold: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
    Center,
}

// ------------------------------------------------------------------------------------------
// Display list
// ------------------------------------------------------------------------------------------

/// One drawing operation; coordinates in points from the page's top-left corner.
enum Op {
    /// `y` is the baseline.
    Text {
        x: f32,
        y: f32,
        size: f32,
        color: Rgb,
        bold: bool,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Rgb>,
        stroke: Option<(Rgb, f32)>,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        color: Rgb,
        width: f32,
    },
    Image {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        image: Image,
    },
}

/// A photo ready to place: decoded headers (and downscaled if it was large), or why not.
enum Photo {
    Missing,
    Unreadable,
    Ready { image: Image, w: u32, h: u32 },
}

fn prepare_photo(jpeg: Option<&[u8]>) -> Photo {
    let Some(bytes) = jpeg else { return Photo::Missing };
    let Ok(image) = Image::from_jpeg(Data::from(bytes.to_vec()), true) else { return Photo::Unreadable };
    let (w, h) = image.size();
    if w == 0 || h == 0 {
        return Photo::Unreadable;
    }
    if w.max(h) <= THUMB_MAX_PX {
        // krilla embeds JPEG data as is (DCTDecode): no decode, no quality loss.
        return Photo::Ready { image, w, h };
    }
    match downscale(bytes) {
        Some((bytes, w, h)) => match Image::from_jpeg(Data::from(bytes), true) {
            Ok(image) => Photo::Ready { image, w, h },
            Err(_) => Photo::Unreadable,
        },
        None => Photo::Unreadable,
    }
}

/// Decodes a large JPEG (dimensions checked from the header first, as the image crate's memory
/// limits are best-effort) and re-encodes it at thumbnail size.
fn downscale(bytes: &[u8]) -> Option<(Vec<u8>, u32, u32)> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(PHOTO_MAX_SIDE);
    limits.max_image_height = Some(PHOTO_MAX_SIDE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    reader.limits(limits);
    let decoded = reader.decode().ok()?;
    let small = decoded.thumbnail(THUMB_MAX_PX, THUMB_MAX_PX).to_rgb8();
    let (w, h) = small.dimensions();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82).encode_image(&small).ok()?;
    Some((out, w, h))
}

/// Lays content out top to bottom, starting new pages as needed.
struct Composer<'a> {
    font: &'a ReportFont,
    labels: &'a Labels,
    pages: Vec<Vec<Op>>,
    y: f32,
    /// Where content starts on the current page; used to never break a page that is still
    /// empty (which would loop on content taller than a page).
    top: f32,
    running_header: String,
}

impl<'a> Composer<'a> {
    fn new(font: &'a ReportFont, labels: &'a Labels, running_header: String) -> Self {
        Composer { font, labels, pages: vec![Vec::new()], y: FIRST_TOP, top: FIRST_TOP, running_header }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        let header = self.running_header.clone();
        let baseline = 30.0 + self.font.baseline(SMALL);
        self.text(MARGIN_X, baseline, SMALL, MUTED, false, &header);
        self.ops().push(Op::Line { x1: MARGIN_X, y1: 46.0, x2: PAGE_W - MARGIN_X, y2: 46.0, color: RULE, width: 0.5 });
        self.y = NEXT_TOP;
        self.top = NEXT_TOP;
    }

    fn room(&self) -> f32 {
        BODY_BOTTOM - self.y
    }

    fn at_top(&self) -> bool {
        self.y <= self.top + 0.01
    }

    /// Starts a new page unless `h` points fit (or the page is still empty).
    fn ensure(&mut self, h: f32) -> bool {
        if h > self.room() && !self.at_top() {
            self.new_page();
            true
        } else {
            false
        }
    }

    fn text(&mut self, x: f32, baseline: f32, size: f32, color: Rgb, bold: bool, text: &str) {
        if !text.is_empty() {
            self.ops().push(Op::Text { x, y: baseline, size, color, bold, text: clean_line(text) });
        }
    }

    /// Draws one line of text in a box of width `w` starting at `x`, top of line at `top`.
    fn line_in(&mut self, x: f32, w: f32, top: f32, style: Ts, align: Align, text: &str) {
        let Ts { size, color, bold } = style;
        let tw = self.font.width(text, size);
        let x = match align {
            Align::Left => x,
            Align::Right => x + (w - tw).max(0.0),
            Align::Center => x + ((w - tw) / 2.0).max(0.0),
        };
        let baseline = top + self.font.baseline(size);
        self.text(x, baseline, size, color, bold, text);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Option<Rgb>, stroke: Option<(Rgb, f32)>) {
        self.ops().push(Op::Rect { x, y, w, h, fill, stroke });
    }

    fn gap(&mut self, h: f32) {
        self.y += h;
    }

    /// A section heading on a shaded bar, kept with at least `keep` points of what follows.
    fn heading(&mut self, label: &Label, keep: f32) {
        let h = 20.0;
        // The gap is dropped when the heading moves to a fresh page (new_page resets y).
        self.gap(8.0);
        self.ensure(h + keep);
        let y = self.y;
        self.rect(MARGIN_X, y, CONTENT_W, h, Some(BAR), None);
        let zh_size = 11.0;
        let top = y + (h - self.font.line_height(zh_size)) / 2.0;
        self.line_in(MARGIN_X + 6.0, CONTENT_W, top, Ts { size: zh_size, color: INK, bold: true }, Align::Left, &label.zh);
        let zh_w = self.font.width(&label.zh, zh_size);
        // English sits on the same baseline, smaller.
        let baseline = top + self.font.baseline(zh_size);
        self.text(MARGIN_X + 6.0 + zh_w + 8.0, baseline, BODY, MUTED, false, &label.en);
        self.y = y + h + 6.0;
    }

    /// Wrapped text across the full content width; breaks across pages line by line.
    fn paragraph(&mut self, text: &str, size: f32, color: Rgb) {
        let lh = self.font.line_height(size);
        for line in self.font.wrap(text, size, CONTENT_W) {
            self.ensure(lh);
            let top = self.y;
            self.line_in(MARGIN_X, CONTENT_W, top, Ts { size, color, bold: false }, Align::Left, &line);
            self.y += lh;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------

struct Col<'l> {
    /// Header label, or None for a key/value grid without a header row.
    head: Option<&'l Label>,
    /// Relative width; the widths are scaled to the content width.
    weight: f32,
    align: Align,
    /// Shaded cells (the label column of a key/value grid).
    shaded: bool,
}

fn col(head: &Label, weight: f32) -> Col<'_> {
    Col { head: Some(head), weight, align: Align::Left, shaded: false }
}

/// Cells of one row, each already wrapped into lines.
struct RowLines {
    cells: Vec<Vec<String>>,
    bold: bool,
}

impl Composer<'_> {
    fn col_widths(cols: &[Col]) -> Vec<f32> {
        let total: f32 = cols.iter().map(|c| c.weight.max(0.0)).sum::<f32>().max(f32::EPSILON);
        cols.iter().map(|c| c.weight.max(0.0) / total * CONTENT_W).collect()
    }

    fn header_height(&self, cols: &[Col], widths: &[f32]) -> f32 {
        if cols.iter().all(|c| c.head.is_none()) {
            return 0.0;
        }
        let mut max_h: f32 = 0.0;
        for (c, &w) in cols.iter().zip(widths) {
            if let Some(head) = c.head {
                let inner = w - 2.0 * PAD;
                let zh = self.font.wrap(&head.zh, BODY, inner).len().max(1) as f32;
                let en = self.font.wrap(&head.en, SMALL, inner).len().max(1) as f32;
                max_h = max_h.max(zh * self.font.line_height(BODY) + en * self.font.line_height(SMALL));
            }
        }
        max_h + 2.0 * PAD
    }

    fn draw_header(&mut self, cols: &[Col], widths: &[f32], continued: bool) {
        let h = self.header_height(cols, widths);
        if h == 0.0 {
            return;
        }
        let y = self.y;
        let mut x = MARGIN_X;
        for (i, (c, &w)) in cols.iter().zip(widths).enumerate() {
            self.rect(x, y, w, h, Some(SHADE), Some((RULE, 0.5)));
            if let Some(head) = c.head {
                let inner = w - 2.0 * PAD;
                let mut top = y + PAD;
                let mut zh_text = head.zh.clone();
                if continued && i == 0 {
                    zh_text = format!("{}（{}）", head.zh, self.labels.continued.zh);
                }
                for line in self.font.wrap(&zh_text, BODY, inner) {
                    self.line_in(x + PAD, inner, top, Ts { size: BODY, color: INK, bold: true }, c.align, &line);
                    top += self.font.line_height(BODY);
                }
                for line in self.font.wrap(&head.en, SMALL, inner) {
                    self.line_in(x + PAD, inner, top, Ts { size: SMALL, color: MUTED, bold: false }, c.align, &line);
                    top += self.font.line_height(SMALL);
                }
            }
            x += w;
        }
        self.y = y + h;
    }

    /// Draws one row (or the part of a split row) with `lines` per cell.
    fn draw_row_part(&mut self, cols: &[Col], widths: &[f32], cells: &[&[String]], bold: bool) {
        let lh = self.font.line_height(BODY);
        let n = cells.iter().map(|c| c.len()).max().unwrap_or(0).max(1);
        let h = n as f32 * lh + 2.0 * PAD;
        let y = self.y;
        let mut x = MARGIN_X;
        for ((c, &w), lines) in cols.iter().zip(widths).zip(cells) {
            let fill = if c.shaded { Some(SHADE) } else { None };
            self.rect(x, y, w, h, fill, Some((RULE, 0.5)));
            let mut top = y + PAD;
            for line in lines.iter() {
                let color = if c.shaded { MUTED } else { INK };
                self.line_in(x + PAD, w - 2.0 * PAD, top, Ts { size: BODY, color, bold }, c.align, line);
                top += lh;
            }
            x += w;
        }
        self.y = y + h;
    }

    /// A table whose header repeats after a page break and whose rows split when taller than
    /// the room on a fresh page.
    fn wrap_rows(&self, widths: &[f32], rows: &[Vec<String>], bold_last: bool) -> Vec<RowLines> {
        rows.iter()
            .enumerate()
            .map(|(i, row)| RowLines {
                cells: widths
                    .iter()
                    .enumerate()
                    .map(|(c, &w)| self.font.wrap(row.get(c).map(String::as_str).unwrap_or(""), BODY, w - 2.0 * PAD))
                    .collect(),
                bold: bold_last && i + 1 == rows.len(),
            })
            .collect()
    }

    /// The height the table takes when it does not break.
    fn table_height(&self, cols: &[Col], rows: &[Vec<String>]) -> f32 {
        let widths = Self::col_widths(cols);
        let lh = self.font.line_height(BODY);
        let body: f32 = self
            .wrap_rows(&widths, rows, false)
            .iter()
            .map(|r| r.cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * lh + 2.0 * PAD)
            .sum();
        self.header_height(cols, &widths) + body
    }

    fn table(&mut self, cols: &[Col], rows: &[Vec<String>], bold_last: bool) {
        let widths = Self::col_widths(cols);
        let lh = self.font.line_height(BODY);
        let wrapped = self.wrap_rows(&widths, rows, bold_last);
        let header_h = self.header_height(cols, &widths);

        // Keep the header with the first row, or with its first lines if that row must split
        // anyway; otherwise the header would be stranded at the foot of a page.
        let first_lines = wrapped.first().map_or(1, |r| r.cells.iter().map(Vec::len).max().unwrap_or(1).max(1));
        let fresh_lines = ((BODY_BOTTOM - NEXT_TOP - header_h - 2.0 * PAD) / lh).floor().max(1.0) as usize;
        let first_h = if first_lines <= fresh_lines { first_lines } else { 3 } as f32 * lh + 2.0 * PAD;
        self.ensure(header_h + first_h);
        self.draw_header(cols, &widths, false);

        for row in &wrapped {
            let mut offset = 0; // lines of this row already drawn
            let total = row.cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
            // At most one page break before a row starts: with it, the loop below always draws
            // at least one line per pass, so it ends whatever the sizes.
            let mut moved = false;
            while offset < total {
                let left = total - offset;
                let need = left as f32 * lh + 2.0 * PAD;
                let fits_fresh = need <= BODY_BOTTOM - NEXT_TOP - header_h;
                if need > self.room() && (fits_fresh || self.room() < 2.0 * PAD + lh) && offset == 0 && !moved {
                    moved = true;
                    self.new_page();
                    self.draw_header(cols, &widths, true);
                    continue;
                }
                let take = if need <= self.room() { left } else { (((self.room() - 2.0 * PAD) / lh).floor() as usize).clamp(1, left) };
                let parts: Vec<&[String]> =
                    row.cells.iter().map(|c| if offset < c.len() { &c[offset..(offset + take).min(c.len())] } else { &c[0..0] }).collect();
                self.draw_row_part(cols, &widths, &parts, row.bold);
                offset += take;
                if offset < total {
                    self.new_page();
                    self.draw_header(cols, &widths, true);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// The report
// ------------------------------------------------------------------------------------------

/// Renders the report to PDF bytes. The font is embedded as a subset; photos are embedded as
/// JPEG (downscaled first when large). Pure: no I/O, no clock.
pub fn render(doc: &QcReportDoc, font: &ReportFont, labels: &Labels) -> Result<Vec<u8>, PdfError> {
    let copy = if doc.customer_copy { &labels.copy_customer } else { &labels.copy_store };
    let running = format!("{}  ·  {}  ·  {}", labels.title.both(), doc.report_no, copy.both());
    let mut c = Composer::new(font, labels, running);

    header(&mut c, doc, copy);
    checkpoints(&mut c, doc);
    findings(&mut c, doc);
    parts(&mut c, doc);
    labour(&mut c, doc);
    alerts(&mut c, doc);
    signoff(&mut c, doc);
    certificate(&mut c, doc);

    let mut pages = std::mem::take(&mut c.pages);
    footers(&mut pages, font, labels, &doc.report_no);
    let title = format!("{} {}", labels.title.both(), doc.report_no);
    emit(pages, font, title)
}

fn header(c: &mut Composer, doc: &QcReportDoc, copy: &Label) {
    let labels = c.labels;
    let top = c.y;

    // Verdict box on the right.
    let (verdict, color) = if doc.passed { (&labels.verdict_pass, PASS) } else { (&labels.verdict_fail, FAIL) };
    let (vw, vh) = (128.0, 62.0);
    let vx = PAGE_W - MARGIN_X - vw;
    c.rect(vx, top, vw, vh, Some(color), None);
    c.line_in(vx, vw, top + 6.0, Ts { size: 26.0, color: WHITE, bold: true }, Align::Center, &verdict.zh);
    c.line_in(vx, vw, top + 6.0 + c.font.line_height(26.0) - 2.0, Ts { size: 11.0, color: WHITE, bold: true }, Align::Center, &verdict.en);

    // Title, store and copy kind on the left.
    let left_w = CONTENT_W - vw - 12.0;
    let mut y = top;
    for line in c.font.wrap(&labels.title.zh, 20.0, left_w) {
        c.line_in(MARGIN_X, left_w, y, Ts { size: 20.0, color: INK, bold: true }, Align::Left, &line);
        y += c.font.line_height(20.0);
    }
    c.line_in(MARGIN_X, left_w, y - 2.0, Ts { size: 11.0, color: MUTED, bold: false }, Align::Left, &labels.title.en);
    y += c.font.line_height(11.0);
    // The copy kind as a bordered tag: the customer must see at a glance which copy this is.
    let tag = copy.both();
    let tag_w = (c.font.width(&tag, BODY) + 12.0).min(left_w);
    let tag_h = c.font.line_height(BODY) + 4.0;
    c.rect(MARGIN_X, y + 2.0, tag_w, tag_h, None, Some((color, 1.0)));
    c.line_in(MARGIN_X, tag_w, y + 4.0, Ts { size: BODY, color, bold: true }, Align::Center, &tag);
    y += tag_h + 4.0;
    c.y = y.max(top + vh) + 10.0;

    let kv = kv4();
    let rows = vec![
        vec![labels.store.both(), doc.store_name.clone(), labels.report_no.both(), doc.report_no.clone()],
        vec![labels.case_id.both(), doc.case_id.clone(), labels.inspector.both(), doc.inspector.clone()],
        vec![labels.opened_at.both(), doc.opened_at.clone(), labels.inspected_at.both(), doc.inspected_at.clone()],
    ];
    c.table(&kv, &rows, false);
    c.table(&kv2(), &[vec![labels.vehicle.both(), doc.vehicle.clone()]], false);
}

fn checkpoints(c: &mut Composer, doc: &QcReportDoc) {
    let labels = c.labels;
    let photos: Vec<(Photo, Photo)> =
        doc.checkpoints.iter().map(|cp| (prepare_photo(cp.before_jpeg.as_deref()), prepare_photo(cp.after_jpeg.as_deref()))).collect();

    // Geometry of one pair cell: name, two captioned thumbnails side by side (4:3), note.
    let gap = 8.0;
    let cell_w = (CONTENT_W - gap) / 2.0;
    let thumb_w = (cell_w - 3.0 * PAD) / 2.0;
    let thumb_h = thumb_w * 0.75;
    let name_lh = c.font.line_height(BODY);
    let small_lh = c.font.line_height(SMALL);
    let cell_h = |name_lines: usize, note_lines: usize| {
        PAD + name_lines as f32 * name_lh + small_lh + thumb_h + 2.0 + note_lines as f32 * small_lh + PAD
    };

    c.heading(&labels.section_checkpoints, cell_h(1, 1));
    if doc.checkpoints.is_empty() {
        c.paragraph(&labels.none.both(), BODY, MUTED);
        return;
    }
    for (pair_idx, chunk) in doc.checkpoints.chunks(2).enumerate() {
        // Names up to 2 lines and notes up to 3: the grid keeps its rhythm; longer text is cut
        // with "…" (these are short, system-written strings).
        let laid: Vec<(Vec<String>, Vec<String>)> = chunk
            .iter()
            .enumerate()
            .map(|(k, cp)| {
                let n = pair_idx * 2 + k + 1;
                (
                    c.font.wrap_max(&format!("{n}. {}", cp.name), BODY, cell_w - 2.0 * PAD, 2),
                    c.font.wrap_max(&cp.note, SMALL, cell_w - 2.0 * PAD, 3),
                )
            })
            .collect();
        let name_lines = laid.iter().map(|l| l.0.len().max(1)).max().unwrap_or(1);
        let note_lines = laid.iter().map(|l| l.1.len()).max().unwrap_or(0);
        let h = cell_h(name_lines, note_lines);
        c.ensure(h + gap);
        let y = c.y;
        for (k, (name, note)) in laid.iter().enumerate() {
            let x = MARGIN_X + k as f32 * (cell_w + gap);
            c.rect(x, y, cell_w, h, None, Some((RULE, 0.5)));
            let mut top = y + PAD;
            for line in name {
                c.line_in(x + PAD, cell_w - 2.0 * PAD, top, Ts { size: BODY, color: INK, bold: true }, Align::Left, line);
                top += name_lh;
            }
            top = y + PAD + name_lines as f32 * name_lh;
            let (before, after) = &photos[pair_idx * 2 + k];
            for (j, (photo, caption)) in [(before, &labels.before), (after, &labels.after)].into_iter().enumerate() {
                let tx = x + PAD + j as f32 * (thumb_w + PAD);
                c.line_in(tx, thumb_w, top, Ts { size: SMALL, color: MUTED, bold: false }, Align::Left, &caption.both());
                thumbnail(c, photo, tx, top + small_lh, thumb_w, thumb_h);
            }
            let mut top = top + small_lh + thumb_h + 2.0;
            for line in note {
                c.line_in(x + PAD, cell_w - 2.0 * PAD, top, Ts { size: SMALL, color: INK, bold: false }, Align::Left, line);
                top += small_lh;
            }
        }
        c.y = y + h + gap;
    }
}

/// A photo scaled to fit the box keeping its aspect, centred; or a grey box saying why not.
fn thumbnail(c: &mut Composer, photo: &Photo, x: f32, y: f32, w: f32, h: f32) {
    match photo {
        Photo::Ready { image, w: iw, h: ih } => {
            let scale = (w / *iw as f32).min(h / *ih as f32);
            let (dw, dh) = (*iw as f32 * scale, *ih as f32 * scale);
            c.rect(x, y, w, h, Some(SHADE), None);
            c.ops().push(Op::Image { x: x + (w - dw) / 2.0, y: y + (h - dh) / 2.0, w: dw, h: dh, image: image.clone() });
        }
        Photo::Missing | Photo::Unreadable => {
            let label = if matches!(photo, Photo::Missing) { &c.labels.not_shot } else { &c.labels.photo_unreadable };
            c.rect(x, y, w, h, Some(MISSING), None);
            let block = c.font.line_height(11.0) + c.font.line_height(SMALL);
            let top = y + (h - block) / 2.0;
            c.line_in(x, w, top, Ts { size: 11.0, color: MUTED, bold: true }, Align::Center, &label.zh);
            c.line_in(x, w, top + c.font.line_height(11.0), Ts { size: SMALL, color: MUTED, bold: false }, Align::Center, &label.en);
        }
    }
}

/// Rows for a table, or one "无 None" row when there are none.
fn rows_or_none(labels: &Labels, rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    if rows.is_empty() {
        vec![vec![labels.none.both()]]
    } else {
        rows
    }
}

fn findings(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_findings, 60.0);
    let cols = [col(&l.col_part, 0.25), col(&l.col_damage, 0.5), col(&l.col_outcome, 0.25)];
    let rows = doc.findings.iter().map(|f| vec![f.part.clone(), f.damage.clone(), f.outcome.clone()]).collect();
    c.table(&cols, &rows_or_none(l, rows), false);
}

fn parts(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_parts, 60.0);
    let cols =
        [col(&l.col_part_no, 0.2), col(&l.col_part_name, 0.28), col(&l.col_origin, 0.12), col(&l.col_code, 0.2), col(&l.col_serial, 0.2)];
    let rows =
        doc.parts.iter().map(|p| vec![p.part_no.clone(), p.name.clone(), p.origin.clone(), p.code.clone(), p.serial.clone()]).collect();
    c.table(&cols, &rows_or_none(l, rows), false);
}

fn hours(h: f64) -> String {
    if h.is_finite() {
        format!("{h:.2}")
    } else {
        "—".to_owned()
    }
}

fn labour(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_labour, 60.0);
    let num = |label| Col { head: Some(label), weight: 0.15, align: Align::Right, shaded: false };
    let cols = [col(&l.col_operation, 0.45), num(&l.col_standard_h), num(&l.col_clocked_h), col(&l.col_flag, 0.25)];
    let mut rows: Vec<Vec<String>> =
        doc.labour.iter().map(|r| vec![r.operation.clone(), hours(r.standard_h), hours(r.clocked_h), r.flag.clone()]).collect();
    let has_rows = !rows.is_empty();
    if has_rows {
        let std_sum: f64 = doc.labour.iter().map(|r| r.standard_h).sum();
        let clk_sum: f64 = doc.labour.iter().map(|r| r.clocked_h).sum();
        rows.push(vec![l.total.both(), hours(std_sum), hours(clk_sum), String::new()]);
    }
    c.table(&cols, &rows_or_none(l, rows), has_rows);
}

fn alerts(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_alerts, 60.0);
    let cols = [col(&l.col_alert_kind, 0.2), col(&l.col_alert_detail, 0.5), col(&l.col_settlement, 0.3)];
    let rows = doc.alerts.iter().map(|a| vec![a.kind.clone(), a.detail.clone(), a.settlement.clone()]).collect();
    c.table(&cols, &rows_or_none(l, rows), false);
}

fn signoff(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_signoff, 60.0);
    c.table(&kv2(), &[vec![l.inspector.both(), doc.inspector.clone()]], false);
    c.gap(6.0);
    c.ensure(c.font.line_height(BODY) * 2.0);
    let top = c.y;
    c.line_in(MARGIN_X, CONTENT_W, top, Ts { size: BODY, color: MUTED, bold: true }, Align::Left, &l.inspector_note.both());
    c.y += c.font.line_height(BODY);
    match doc.inspector_note.as_deref().map(str::trim) {
        Some(note) if !note.is_empty() => c.paragraph(note, BODY, INK),
        _ => c.paragraph(&l.none.both(), BODY, MUTED),
    }

    // Signature and date lines, kept together.
    c.gap(14.0);
    c.ensure(28.0);
    let y = c.y + 16.0;
    let half = CONTENT_W / 2.0;
    for (k, label) in [&l.signature, &l.date].into_iter().enumerate() {
        let x = MARGIN_X + k as f32 * half;
        let text = format!("{}：", label.both());
        let tw = c.font.width(&text, BODY);
        c.text(x, y, BODY, INK, false, &text);
        c.ops().push(Op::Line { x1: x + tw + 4.0, y1: y + 2.0, x2: x + half - 16.0, y2: y + 2.0, color: INK, width: 0.6 });
    }
    c.y = y + 10.0;
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn certificate(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    let cert = &doc.certificate;
    let kv = kv4();
    let mileage = match cert.mileage_km {
        Some(km) => format!("{} km", thousands(km)),
        None => l.not_recorded.both(),
    };
    let rows = vec![
        vec![l.certificate_no.both(), cert.certificate_no.clone(), l.repair_class.both(), cert.repair_class.clone()],
        vec![l.completed_at.both(), cert.completed_at.clone(), l.mileage.both(), mileage],
        vec![l.quality_inspector.both(), cert.quality_inspector.clone(), l.store_licence.both(), cert.store_licence.clone()],
    ];
    let cols = [col(&l.repair_class, 0.35), col(&l.col_warranty_terms, 0.65)];
    let warranty = rows_or_none(l, doc.warranty.iter().map(|w| vec![w.repair_class.clone(), w.terms.clone()]).collect());

    // The certificate and its warranty terms are one document for the customer: keep them on
    // one page when they fit on one.
    let warranty_gap = 10.0 + c.font.line_height(BODY) + 2.0;
    let whole = c.table_height(&kv, &rows) + warranty_gap + c.table_height(&cols, &warranty);
    let keep = if whole + 34.0 <= BODY_BOTTOM - NEXT_TOP { whole } else { 80.0 };
    c.heading(&l.section_certificate, keep);
    c.table(&kv, &rows, false);

    c.gap(10.0);
    c.ensure(c.font.line_height(BODY) + 50.0);
    let top = c.y;
    c.line_in(MARGIN_X, CONTENT_W, top, Ts { size: BODY, color: INK, bold: true }, Align::Left, &l.warranty.both());
    c.y += c.font.line_height(BODY) + 2.0;
    c.table(&cols, &warranty, false);
}

/// A key/value grid of two pairs per row; keys shaded.
fn kv4() -> [Col<'static>; 4] {
    [
        Col { head: None, weight: 0.2, align: Align::Left, shaded: true },
        Col { head: None, weight: 0.3, align: Align::Left, shaded: false },
        Col { head: None, weight: 0.2, align: Align::Left, shaded: true },
        Col { head: None, weight: 0.3, align: Align::Left, shaded: false },
    ]
}

/// A key/value grid of one pair per row, aligned with [`kv4`].
fn kv2() -> [Col<'static>; 2] {
    [Col { head: None, weight: 0.2, align: Align::Left, shaded: true }, Col { head: None, weight: 0.8, align: Align::Left, shaded: false }]
}

/// Footer on every page: the report no. on the left, "第 n 页 / 共 m 页 Page n of m" right.
fn footers(pages: &mut [Vec<Op>], font: &ReportFont, labels: &Labels, report_no: &str) {
    let total = pages.len();
    let rule_y = PAGE_H - 40.0;
    let baseline = PAGE_H - 40.0 + 4.0 + font.baseline(SMALL);
    for (i, ops) in pages.iter_mut().enumerate() {
        ops.push(Op::Line { x1: MARGIN_X, y1: rule_y, x2: PAGE_W - MARGIN_X, y2: rule_y, color: RULE, width: 0.5 });
        let left = format!("{} {}", labels.report_no.both(), report_no);
        ops.push(Op::Text { x: MARGIN_X, y: baseline, size: SMALL, color: MUTED, bold: false, text: left });
        let right = labels.page_of(i + 1, total);
        let w = font.width(&right, SMALL);
        ops.push(Op::Text { x: PAGE_W - MARGIN_X - w, y: baseline, size: SMALL, color: MUTED, bold: false, text: right });
    }
}

// ------------------------------------------------------------------------------------------
// Writing the PDF
// ------------------------------------------------------------------------------------------

fn rect_path(x: f32, y: f32, w: f32, h: f32) -> Option<krilla::geom::Path> {
    let mut pb = PathBuilder::new();
    pb.push_rect(Rect::from_xywh(x, y, w, h)?);
    pb.finish()
}

fn emit(pages: Vec<Vec<Op>>, font: &ReportFont, title: String) -> Result<Vec<u8>, PdfError> {
    let mut document = Document::new();
    document.set_metadata(Metadata::new().title(title).language("zh-CN".into()).creator("ServiceBay".into()));
    for ops in pages {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H).ok_or_else(|| PdfError::Render("invalid page size".into()))?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        for op in ops {
            match op {
                Op::Text { x, y, size, color, bold, text } => {
                    surface.set_fill(Some(Fill { paint: color.krilla().into(), ..Default::default() }));
                    // No bold face is installed with the regular one; a thin stroke in the
                    // text colour (fill+stroke render mode) keeps it real, extractable text.
                    surface.set_stroke(bold.then(|| Stroke { paint: color.krilla().into(), width: size * 0.035, ..Default::default() }));
                    surface.draw_text(Point::from_xy(x, y), font.font.clone(), size, &text, false, TextDirection::LeftToRight);
                }
                Op::Rect { x, y, w, h, fill, stroke } => {
                    if let Some(path) = rect_path(x, y, w, h) {
                        surface.set_fill(fill.map(|f| Fill { paint: f.krilla().into(), ..Default::default() }));
                        surface.set_stroke(stroke.map(|(s, width)| Stroke { paint: s.krilla().into(), width, ..Default::default() }));
                        surface.draw_path(&path);
                    }
                }
                Op::Line { x1, y1, x2, y2, color, width } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(x1, y1);
                    pb.line_to(x2, y2);
                    if let Some(path) = pb.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke { paint: color.krilla().into(), width, ..Default::default() }));
                        surface.draw_path(&path);
                    }
                }
                Op::Image { x, y, w, h, image } => {
                    if let Some(size) = Size::from_wh(w, h) {
                        surface.push_transform(&Transform::from_translate(x, y));
                        surface.draw_image(image, size);
                        surface.pop();
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    document.finish().map_err(|e| match e {
        KrillaError::Font(_, reason) => {
            PdfError::Font { path: font.path.display().to_string(), reason: format!("embedding failed: {reason}") }
        }
        other => PdfError::Render(krilla_error_text(&other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::OnceLock;
    use std::time::Instant;

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
        abs.parent().and_then(Path::parent).map(Path::to_owned).expect("src/pdf.rs has a repository root")
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
}
