//! The report's sections (header, checkpoints, tables, sign-off, certificate) and the page
//! footers, laid out with the [`Composer`].

use super::layout::{
    col, prepare_photo, Align, Col, Composer, Op, Photo, Ts, BODY, BODY_BOTTOM, CONTENT_W, FAIL, INK, MARGIN_X, MISSING, MUTED, NEXT_TOP,
    PAD, PAGE_H, PAGE_W, PASS, RULE, SHADE, SMALL, WHITE,
};
use super::{Label, Labels, QcReportDoc, ReportFont};

pub(super) fn header(c: &mut Composer, doc: &QcReportDoc, copy: &Label) {
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

pub(super) fn checkpoints(c: &mut Composer, doc: &QcReportDoc) {
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

pub(super) fn findings(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_findings, 60.0);
    let cols = [col(&l.col_part, 0.25), col(&l.col_damage, 0.5), col(&l.col_outcome, 0.25)];
    let rows = doc.findings.iter().map(|f| vec![f.part.clone(), f.damage.clone(), f.outcome.clone()]).collect();
    c.table(&cols, &rows_or_none(l, rows), false);
}

pub(super) fn parts(c: &mut Composer, doc: &QcReportDoc) {
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

pub(super) fn labour(c: &mut Composer, doc: &QcReportDoc) {
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

pub(super) fn alerts(c: &mut Composer, doc: &QcReportDoc) {
    let l = c.labels;
    c.heading(&l.section_alerts, 60.0);
    let cols = [col(&l.col_alert_kind, 0.2), col(&l.col_alert_detail, 0.5), col(&l.col_settlement, 0.3)];
    let rows = doc.alerts.iter().map(|a| vec![a.kind.clone(), a.detail.clone(), a.settlement.clone()]).collect();
    c.table(&cols, &rows_or_none(l, rows), false);
}

pub(super) fn signoff(c: &mut Composer, doc: &QcReportDoc) {
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

pub(super) fn certificate(c: &mut Composer, doc: &QcReportDoc) {
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
pub(super) fn footers(pages: &mut [Vec<Op>], font: &ReportFont, labels: &Labels, report_no: &str) {
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

/// The follow-up survey: its QR code beside the invitation and the address (typed by hand when a
/// phone cannot scan).
pub(super) fn survey(c: &mut Composer, doc: &QcReportDoc) {
    let Some(s) = &doc.survey else { return };
    let Ok(image) = krilla::image::Image::from_png(krilla::Data::from(s.png.clone()), true) else { return };
    let l = c.labels;
    let size = 84.0;
    c.gap(14.0);
    c.ensure(size + 8.0);
    let top = c.y;
    c.ops().push(Op::Image { x: MARGIN_X, y: top, w: size, h: size, image });
    let (x, w) = (MARGIN_X + size + 12.0, CONTENT_W - size - 12.0);
    c.line_in(x, w, top + 18.0, Ts { size: BODY, color: INK, bold: true }, Align::Left, &l.survey_invite.both());
    c.line_in(x, w, top + 40.0, Ts { size: SMALL, color: MUTED, bold: false }, Align::Left, &s.url);
    c.y = top + size + 4.0;
}
