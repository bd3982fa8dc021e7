//! The monthly store KPI report (门店指标月报) as an A4 PDF: the month's figures against their
//! goals, CSAT and NPS per week as bar charts drawn with krilla paths, and the notes that say how
//! each figure is counted. It reuses the QC report's font, page composer, tables and writer.
//!
//! Invariants: the same as the QC report's (fail closed on the font, text is text, deterministic
//! output for the same input); every label comes from `assets/report/kpi_report.toml`, checked at
//! load (a missing or unknown key is an error, never a blank on the page).

use std::collections::BTreeMap;

use super::layout::{
    col, emit, Align, Col, Composer, Op, Ts, BODY, CONTENT_W, FAIL, INK, MARGIN_X, MISSING, MUTED, PAGE_H, PAGE_W, PASS, RULE, SMALL,
};
use super::{Label, Labels, PdfError, ReportFont};
use crate::domain::kpi::{self, Detail, Figures, Week};

const BUILTIN: &str = include_str!("../../assets/report/kpi_report.toml");

/// Every label the renderer prints besides the `fig_<key>` ones (one per `kpi::KEYS`).
const KEYS: &[&str] = &[
    "title",
    "store",
    "month",
    "period",
    "as_of",
    "section_figures",
    "col_kpi",
    "col_value",
    "col_goal",
    "col_met",
    "met_yes",
    "met_no",
    "section_charts",
    "chart_csat",
    "chart_nps",
    "goal_line",
    "no_answers",
    "section_notes",
    "note_saved",
    "note_definitions",
];

/// The report's labels, checked complete at load.
#[derive(Debug, Clone)]
pub struct KpiLabels(BTreeMap<String, Label>);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    labels: BTreeMap<String, RawLabel>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    zh: String,
    en: String,
}

impl KpiLabels {
    pub fn builtin() -> Result<KpiLabels, PdfError> {
        KpiLabels::parse(BUILTIN, "assets/report/kpi_report.toml (builtin)")
    }

    pub fn parse(text: &str, source: &str) -> Result<KpiLabels, PdfError> {
        let raw: Raw = toml::from_str(text).map_err(|e| PdfError::Labels(format!("{source}: {e}")))?;
        let wanted: Vec<String> = KEYS.iter().map(|k| k.to_string()).chain(kpi::KEYS.iter().map(|k| format!("fig_{k}"))).collect();
        let mut out = BTreeMap::new();
        for (k, v) in raw.labels {
            if !wanted.contains(&k) {
                return Err(PdfError::Labels(format!("{source}: unknown key `labels.{k}`")));
            }
            let (zh, en) = (v.zh.trim().to_string(), v.en.trim().to_string());
            if zh.is_empty() || en.is_empty() {
                return Err(PdfError::Labels(format!("{source}: key `labels.{k}` has an empty text")));
            }
            out.insert(k, Label { zh, en });
        }
        if let Some(k) = wanted.iter().find(|k| !out.contains_key(*k)) {
            return Err(PdfError::Labels(format!("{source}: missing key `labels.{k}`")));
        }
        if !out["note_saved"].zh.contains("{n}") || !out["note_saved"].en.contains("{n}") {
            return Err(PdfError::Labels(format!("{source}: key `labels.note_saved` must contain {{n}}")));
        }
        Ok(KpiLabels(out))
    }

    fn get(&self, key: &str) -> Label {
        // Complete by construction (checked in `parse`); the key itself is a visible fallback.
        self.0.get(key).cloned().unwrap_or_else(|| Label { zh: key.to_string(), en: key.to_string() })
    }
}

/// What one monthly report prints.
#[derive(Debug, Clone)]
pub struct KpiReportDoc {
    pub store_name: String,
    /// `YYYY-MM`
    pub month: String,
    /// e.g. "2026-12-01 – 2026-12-31 (UTC+08:00)"
    pub period: String,
    pub as_of: String,
    pub figures: Figures,
    pub detail: Detail,
    pub weeks: Vec<Week>,
}

/// Renders the report to PDF bytes. Pure: no I/O, no clock.
pub fn render(doc: &KpiReportDoc, font: &ReportFont) -> Result<Vec<u8>, PdfError> {
    let l = KpiLabels::builtin()?;
    // The composer's own words (a table continued on the next page, the page counter).
    let qc = Labels::builtin()?;
    let title = l.get("title");
    let running = format!("{}  ·  {}  ·  {}", title.both(), doc.store_name, doc.month);
    let mut c = Composer::new(font, &qc, running.clone());

    // Title and the month.
    let top = c.y;
    c.line_in(MARGIN_X, CONTENT_W, top, Ts { size: 20.0, color: INK, bold: true }, Align::Left, &title.zh);
    c.line_in(MARGIN_X, CONTENT_W, top, Ts { size: 20.0, color: INK, bold: true }, Align::Right, &doc.month);
    let y = top + font.line_height(20.0) - 2.0;
    c.line_in(MARGIN_X, CONTENT_W, y, Ts { size: 11.0, color: MUTED, bold: false }, Align::Left, &title.en);
    c.y = y + font.line_height(11.0) + 8.0;
    let kv = [
        Col { head: None, weight: 1.0, align: Align::Left, shaded: true },
        Col { head: None, weight: 3.0, align: Align::Left, shaded: false },
    ];
    let rows = vec![
        vec![l.get("store").both(), doc.store_name.clone()],
        vec![l.get("month").both(), doc.month.clone()],
        vec![l.get("period").both(), doc.period.clone()],
        vec![l.get("as_of").both(), doc.as_of.clone()],
    ];
    c.table(&kv, &rows, false);

    // The figures against their goals.
    let (h_kpi, h_value, h_goal, h_met) = (l.get("col_kpi"), l.get("col_value"), l.get("col_goal"), l.get("col_met"));
    let mut cols = vec![col(&h_kpi, 3.2), col(&h_value, 1.3), col(&h_goal, 1.0), col(&h_met, 1.0)];
    for c in cols.iter_mut().skip(1) {
        c.align = Align::Right;
    }
    let rows: Vec<Vec<String>> = kpi::KEYS
        .iter()
        .map(|k| {
            let v = kpi::value_of(&doc.figures, &doc.detail, k);
            let met = kpi::goal(k).and_then(|g| g.met(v));
            vec![
                l.get(&format!("fig_{k}")).both(),
                kpi::format(k, v),
                kpi::goal_text(k).unwrap_or_default(),
                match met {
                    Some(true) => l.get("met_yes").both(),
                    Some(false) => l.get("met_no").both(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    c.heading(&l.get("section_figures"), c.table_height(&cols, &rows[..1]));
    c.table(&cols, &rows, false);

    // CSAT and NPS per week.
    c.heading(&l.get("section_charts"), 170.0);
    let labels: Vec<String> = doc.weeks.iter().map(|w| w.start.format("%m-%d").to_string()).collect();
    let csat: Vec<Option<f64>> = doc.weeks.iter().map(|w| w.csat_mean).collect();
    let nps: Vec<Option<f64>> = doc.weeks.iter().map(|w| w.nps).collect();
    let goal = |k: &str| {
        kpi::goal(k).map(|g| match g {
            kpi::Goal::Below(x) | kpi::Goal::AtLeast(x) | kpi::Goal::AtMost(x) => x,
        })
    };
    bar_chart(&mut c, &l, &l.get("chart_csat"), &labels, &csat, (0.0, 5.0, 1.0), goal("csat_mean"), "csat_mean");
    bar_chart(&mut c, &l, &l.get("chart_nps"), &labels, &nps, (-100.0, 100.0, 50.0), goal("nps"), "nps");

    // How the figures are counted.
    c.heading(&l.get("section_notes"), 40.0);
    let per_case = kpi::format("response_minutes_median", Some(doc.figures.minutes_saved_per_case));
    let saved = l.get("note_saved");
    c.paragraph(&saved.zh.replace("{n}", &per_case), BODY, INK);
    c.paragraph(&saved.en.replace("{n}", &per_case), BODY, MUTED);
    c.gap(4.0);
    let defs = l.get("note_definitions");
    c.paragraph(&defs.zh, BODY, INK);
    c.paragraph(&defs.en, BODY, MUTED);

    let mut pages = std::mem::take(&mut c.pages);
    let total = pages.len();
    let rule_y = PAGE_H - 40.0;
    let baseline = PAGE_H - 40.0 + 4.0 + font.baseline(SMALL);
    for (i, ops) in pages.iter_mut().enumerate() {
        ops.push(Op::Line { x1: MARGIN_X, y1: rule_y, x2: PAGE_W - MARGIN_X, y2: rule_y, color: RULE, width: 0.5 });
        ops.push(Op::Text { x: MARGIN_X, y: baseline, size: SMALL, color: MUTED, bold: false, text: running.clone() });
        let right = qc.page_of(i + 1, total);
        let w = font.width(&right, SMALL);
        ops.push(Op::Text { x: PAGE_W - MARGIN_X - w, y: baseline, size: SMALL, color: MUTED, bold: false, text: right });
    }
    emit(pages, font, format!("{} {} {}", title.both(), doc.store_name, doc.month))
}

/// One bar per week on a value axis `(lo, hi, step)`, coloured by the goal (green met, red
/// missed), the goal as a line, and the value on each bar; a week without answers is marked.
#[allow(clippy::too_many_arguments)]
fn bar_chart(
    c: &mut Composer,
    l: &KpiLabels,
    title: &Label,
    labels: &[String],
    values: &[Option<f64>],
    axis: (f32, f32, f32),
    goal: Option<f64>,
    key: &str,
) {
    let (lo, hi, step) = axis;
    let height = 150.0;
    c.ensure(height + 10.0);
    let top = c.y;
    c.line_in(MARGIN_X, CONTENT_W, top, Ts { size: BODY, color: INK, bold: true }, Align::Left, &title.both());
    let (x0, x1) = (MARGIN_X + 34.0, MARGIN_X + CONTENT_W);
    let (y0, y1) = (top + 22.0, top + height - 22.0);
    let y_of = |v: f32| y1 - (v.clamp(lo, hi) - lo) / (hi - lo) * (y1 - y0);
    // Axis ticks and grid.
    let mut v = lo;
    while v <= hi + 0.001 {
        let y = y_of(v);
        c.ops().push(Op::Line { x1: x0, y1: y, x2: x1, y2: y, color: if v == 0.0 || v == lo { MUTED } else { RULE }, width: 0.4 });
        let text = format!("{v:.0}");
        let w = c.font.width(&text, SMALL);
        let baseline = y + c.font.baseline(SMALL) - c.font.line_height(SMALL) / 2.0;
        c.text(x0 - 4.0 - w, baseline, SMALL, MUTED, false, &text);
        v += step;
    }
    let base = y_of(0.0_f32.clamp(lo, hi));
    let n = labels.len().max(1) as f32;
    let slot = (x1 - x0) / n;
    let bw = (slot * 0.6).min(48.0);
    for (i, (label, value)) in labels.iter().zip(values).enumerate() {
        let cx = x0 + slot * (i as f32 + 0.5);
        match value {
            Some(v) => {
                let y = y_of(*v as f32);
                let met = kpi::goal(key).and_then(|g| g.met(Some(*v)));
                let color = match met {
                    Some(false) => FAIL,
                    _ => PASS,
                };
                let (ry, rh) = if y < base { (y, base - y) } else { (base, y - base) };
                c.rect(cx - bw / 2.0, ry, bw, rh.max(0.8), Some(color), None);
                let text = kpi::format(key, Some(*v));
                let w = c.font.width(&text, SMALL);
                let ty = if y < base { y - c.font.line_height(SMALL) } else { y + 1.0 };
                c.line_in(cx - w / 2.0, w, ty, Ts { size: SMALL, color: INK, bold: false }, Align::Left, &text);
            }
            None => {
                c.rect(cx - bw / 2.0, base - 1.0, bw, 2.0, Some(MISSING), None);
                let w = c.font.width("—", SMALL);
                c.line_in(
                    cx - w / 2.0,
                    w,
                    base - c.font.line_height(SMALL),
                    Ts { size: SMALL, color: MUTED, bold: false },
                    Align::Left,
                    "—",
                );
            }
        }
        let w = c.font.width(label, SMALL);
        c.line_in(cx - w / 2.0, w, y1 + 3.0, Ts { size: SMALL, color: MUTED, bold: false }, Align::Left, label);
    }
    if let Some(g) = goal {
        let y = y_of(g as f32);
        c.ops().push(Op::Line { x1: x0, y1: y, x2: x1, y2: y, color: FAIL, width: 0.8 });
        let text = format!("{} {}", l.get("goal_line").both(), kpi::format(key, Some(g)));
        let w = c.font.width(&text, SMALL);
        c.line_in(x1 - w, w, y - c.font.line_height(SMALL), Ts { size: SMALL, color: FAIL, bold: false }, Align::Left, &text);
    }
    if values.iter().all(Option::is_none) {
        let text = l.get("no_answers").both();
        c.line_in(x0, x1 - x0, (y0 + y1) / 2.0 - 8.0, Ts { size: BODY, color: MUTED, bold: false }, Align::Center, &text);
    }
    c.y = top + height;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_labels_are_complete_and_checked() {
        let l = KpiLabels::builtin().unwrap();
        for k in kpi::KEYS {
            assert_ne!(l.get(&format!("fig_{k}")).zh, format!("fig_{k}"));
        }
        let missing = BUILTIN.replace("[labels.fig_nps]", "[labels.fig_nps_x]");
        assert!(KpiLabels::parse(&missing, "t").unwrap_err().to_string().contains("fig_nps"));
        let empty = BUILTIN.replace("zh = \"门店\"", "zh = \" \"");
        assert!(KpiLabels::parse(&empty, "t").unwrap_err().to_string().contains("empty"));
    }
}
