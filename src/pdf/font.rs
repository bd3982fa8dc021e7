//! The report font: [`ReportFont`] (face selection, fail-closed loading) and the metrics
//! reader (`cmap`, `hmtx`, vertical metrics) it measures text with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use krilla::error::KrillaError;
use krilla::geom::Point;
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};
use krilla::{Data, Document};

use super::PdfError;

/// The face we want from a collection such as Debian's `NotoSansCJK-Regular.ttc`.
const REPORT_FAMILY: &str = "Noto Sans CJK SC";

/// Characters a face must map to be usable for this report at all.
const REQUIRED_CHARS: &str = "维修质检报告合格不第页共0123456789ABCXYZabcxyz.,:/";

/// The report font: the font data, the chosen face of a collection and the metrics we measure
/// text with. Cheap to share (`Arc` inside); load it once at start-up.
#[derive(Clone)]
pub struct ReportFont {
    pub(super) path: PathBuf,
    family: String,
    index: u32,
    pub(super) font: Font,
    pub(super) metrics: Arc<Metrics>,
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

    pub(super) fn width(&self, text: &str, size: f32) -> f32 {
        self.metrics.width(text, size)
    }
}

/// What we measure text with: the face's cmap as ranges, its advances, and its vertical
/// metrics, all in font units.
pub(super) struct Metrics {
    pub(super) units_per_em: f32,
    pub(super) ascent: f32,
    pub(super) descent: f32,
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

    pub(super) fn glyph(&self, c: char) -> u32 {
        let cp = u32::from(c);
        let i = self.cmap.partition_point(|&(start, _, _)| start <= cp);
        match i.checked_sub(1).map(|i| self.cmap[i]) {
            Some((start, end, gid)) if cp <= end => gid + (cp - start),
            _ => 0,
        }
    }

    pub(super) fn advance(&self, c: char) -> f32 {
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

pub(super) fn krilla_error_text(e: &KrillaError) -> String {
    match e {
        KrillaError::Font(_, reason) => format!("font: {reason}"),
        KrillaError::Image(_, _, reason) => format!("image: {reason}"),
        other => format!("{other:?}"),
    }
}
