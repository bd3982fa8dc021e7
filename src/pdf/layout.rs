//! Page layout: text wrapping, page geometry and style, the display list, the page composer
//! with its tables, and writing the display list out as PDF with `krilla`.

use krilla::color::rgb;
use krilla::error::KrillaError;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::TextDirection;
use krilla::{Data, Document};

use super::font::krilla_error_text;
use super::{Label, Labels, PdfError, ReportFont};

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
    pub(super) fn wrap(&self, text: &str, size: f32, max_w: f32) -> Vec<String> {
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
    pub(super) fn wrap_max(&self, text: &str, size: f32, max_w: f32, max_lines: usize) -> Vec<String> {
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

    pub(super) fn line_height(&self, size: f32) -> f32 {
        size * LINE_FACTOR
    }

    /// Distance from the top of a line box to the baseline: the glyph box (ascent + descent)
    /// centred in the line height.
    pub(super) fn baseline(&self, size: f32) -> f32 {
        let m = &self.metrics;
        let (asc, desc) = (m.ascent / m.units_per_em, m.descent / m.units_per_em);
        (LINE_FACTOR - asc - desc) / 2.0 * size + asc * size
    }
}

// ------------------------------------------------------------------------------------------
// Page geometry and style
// ------------------------------------------------------------------------------------------

pub(super) const PAGE_W: f32 = 595.28;
pub(super) const PAGE_H: f32 = 841.89;
pub(super) const MARGIN_X: f32 = 40.0;
pub(super) const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
const FIRST_TOP: f32 = 36.0;
/// Pages after the first carry a running header above this line.
pub(super) const NEXT_TOP: f32 = 58.0;
pub(super) const BODY_BOTTOM: f32 = PAGE_H - 50.0;
const LINE_FACTOR: f32 = 1.4;

pub(super) const BODY: f32 = 9.0;
pub(super) const SMALL: f32 = 7.5;
pub(super) const PAD: f32 = 3.5;

/// Thumbnails are embedded at most this many pixels on the long side: enough for print at the
/// size they are drawn, and it keeps a report with 30 full-size photos to a few MB.
const THUMB_MAX_PX: u32 = 640;
/// The largest photo we agree to decode for downscaling (per side).
const PHOTO_MAX_SIDE: u32 = 12_000;

#[derive(Clone, Copy, PartialEq)]
pub(super) struct Rgb(u8, u8, u8);

pub(super) const INK: Rgb = Rgb(0x1a, 0x1a, 0x1a);
pub(super) const MUTED: Rgb = Rgb(0x66, 0x66, 0x66);
pub(super) const RULE: Rgb = Rgb(0xb0, 0xb0, 0xb0);
pub(super) const SHADE: Rgb = Rgb(0xee, 0xf1, 0xf5);
const BAR: Rgb = Rgb(0xdd, 0xe5, 0xef);
pub(super) const MISSING: Rgb = Rgb(0xd9, 0xd9, 0xd9);
pub(super) const PASS: Rgb = Rgb(0x1b, 0x7f, 0x3b);
pub(super) const FAIL: Rgb = Rgb(0xc6, 0x28, 0x28);
pub(super) const WHITE: Rgb = Rgb(0xff, 0xff, 0xff);

impl Rgb {
    fn krilla(self) -> rgb::Color {
        rgb::Color::new(self.0, self.1, self.2)
    }
}

/// How a piece of text is set.
#[derive(Clone, Copy)]
pub(super) struct Ts {
    pub(super) size: f32,
    pub(super) color: Rgb,
    pub(super) bold: bool,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Align {
    Left,
    Right,
    Center,
}

// ------------------------------------------------------------------------------------------
// Display list
// ------------------------------------------------------------------------------------------

/// One drawing operation; coordinates in points from the page's top-left corner.
pub(super) enum Op {
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
pub(super) enum Photo {
    Missing,
    Unreadable,
    Ready { image: Image, w: u32, h: u32 },
}

pub(super) fn prepare_photo(jpeg: Option<&[u8]>) -> Photo {
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
pub(super) struct Composer<'a> {
    pub(super) font: &'a ReportFont,
    pub(super) labels: &'a Labels,
    pub(super) pages: Vec<Vec<Op>>,
    pub(super) y: f32,
    /// Where content starts on the current page; used to never break a page that is still
    /// empty (which would loop on content taller than a page).
    top: f32,
    running_header: String,
}

impl<'a> Composer<'a> {
    pub(super) fn new(font: &'a ReportFont, labels: &'a Labels, running_header: String) -> Self {
        Composer { font, labels, pages: vec![Vec::new()], y: FIRST_TOP, top: FIRST_TOP, running_header }
    }

    pub(super) fn ops(&mut self) -> &mut Vec<Op> {
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
    pub(super) fn ensure(&mut self, h: f32) -> bool {
        if h > self.room() && !self.at_top() {
            self.new_page();
            true
        } else {
            false
        }
    }

    pub(super) fn text(&mut self, x: f32, baseline: f32, size: f32, color: Rgb, bold: bool, text: &str) {
        if !text.is_empty() {
            self.ops().push(Op::Text { x, y: baseline, size, color, bold, text: clean_line(text) });
        }
    }

    /// Draws one line of text in a box of width `w` starting at `x`, top of line at `top`.
    pub(super) fn line_in(&mut self, x: f32, w: f32, top: f32, style: Ts, align: Align, text: &str) {
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

    pub(super) fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Option<Rgb>, stroke: Option<(Rgb, f32)>) {
        self.ops().push(Op::Rect { x, y, w, h, fill, stroke });
    }

    pub(super) fn gap(&mut self, h: f32) {
        self.y += h;
    }

    /// A section heading on a shaded bar, kept with at least `keep` points of what follows.
    pub(super) fn heading(&mut self, label: &Label, keep: f32) {
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
    pub(super) fn paragraph(&mut self, text: &str, size: f32, color: Rgb) {
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

pub(super) struct Col<'l> {
    /// Header label, or None for a key/value grid without a header row.
    pub(super) head: Option<&'l Label>,
    /// Relative width; the widths are scaled to the content width.
    pub(super) weight: f32,
    pub(super) align: Align,
    /// Shaded cells (the label column of a key/value grid).
    pub(super) shaded: bool,
}

pub(super) fn col(head: &Label, weight: f32) -> Col<'_> {
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
    pub(super) fn table_height(&self, cols: &[Col], rows: &[Vec<String>]) -> f32 {
        let widths = Self::col_widths(cols);
        let lh = self.font.line_height(BODY);
        let body: f32 = self
            .wrap_rows(&widths, rows, false)
            .iter()
            .map(|r| r.cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * lh + 2.0 * PAD)
            .sum();
        self.header_height(cols, &widths) + body
    }

    pub(super) fn table(&mut self, cols: &[Col], rows: &[Vec<String>], bold_last: bool) {
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
// Writing the PDF
// ------------------------------------------------------------------------------------------

fn rect_path(x: f32, y: f32, w: f32, h: f32) -> Option<krilla::geom::Path> {
    let mut pb = PathBuilder::new();
    pb.push_rect(Rect::from_xywh(x, y, w, h)?);
    pb.finish()
}

pub(super) fn emit(pages: Vec<Vec<Op>>, font: &ReportFont, title: String) -> Result<Vec<u8>, PdfError> {
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
