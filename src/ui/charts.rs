//! Server-rendered SVG charts for the pages (no chart script, nothing fetched): a bar chart with
//! negative values and a goal line, and a line chart over days with gaps. The one chart
//! implementation: the store's KPI dashboard and HQ's pages (`hq-web`) both draw with it.
//!
//! Invariants:
//! - Every text that reaches the markup is escaped here (`esc`), so a chart can be inserted with
//!   askama's `|safe` and a store name or label cannot inject markup.
//! - Only presentation attributes, never `style=` (the pages' Content-Security-Policy has no
//!   inline styles); the size comes from `viewBox`, the page's CSS scales it.
//! - A missing value is drawn as missing (a grey mark and "—"), never as zero.
//! - A value outside the axis is clamped to it: a bar never leaves the plot.
//! - A bar chart widens (never narrows below 640) so each bar keeps `MIN_SLOT` of room: HQ compares
//!   many stores, and their names must stay readable (the page scrolls the chart sideways).

use std::fmt::{self, Write};

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 30.0;
/// The least room one bar (and its label) gets.
const MIN_SLOT: f64 = 72.0;

const INK: &str = "#1b2330";
const MUTED: &str = "#5b6675";
const GRID: &str = "#e6eaf0";
const OK: &str = "#1f7a3a";
const BAD: &str = "#c2281f";
const NEUTRAL: &str = "#1d5fc2";
const MISSING: &str = "#b9c2cf";

/// Finished SVG markup (escaped inside); `Display` for templates (`{{ chart|safe }}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Svg(pub String);

impl fmt::Display for Svg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text for SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One bar: its label under the axis, its value (None: no data), the text shown on it, and
/// whether it meets its goal (green / red; None: neutral blue).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub text: String,
    pub good: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    pub step: f64,
}

impl Axis {
    /// 0 (or the lowest value, when negative) to a round number above the highest value.
    pub fn fit(values: impl IntoIterator<Item = f64>, at_least: f64) -> Axis {
        let (mut lo, mut hi) = (0.0_f64, at_least.max(1e-9));
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let span = hi - lo;
        let raw = span / 4.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
        Axis { min: (lo / step).floor() * step, max: (hi / step).ceil() * step, step }
    }

    fn ticks(&self) -> Vec<f64> {
        let mut v = Vec::new();
        let mut t = self.min;
        while t <= self.max + self.step * 1e-6 && v.len() < 12 && self.step > 0.0 {
            v.push(t);
            t += self.step;
        }
        v
    }
}

/// A horizontal goal line with its label ("目标 ≥ 4.25").
#[derive(Debug, Clone, PartialEq)]
pub struct GoalLine {
    pub value: f64,
    pub label: String,
}

struct Frame<'a> {
    id: &'a str,
    title: &'a str,
    axis: &'a Axis,
    /// The drawing's width (`W`, or more for a bar chart of many bars).
    w: f64,
}

impl Frame<'_> {
    fn y(&self, v: f64) -> f64 {
        let (lo, hi) = (self.axis.min, self.axis.max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        H - BOTTOM - (v.clamp(lo, hi) - lo) / span * (H - BOTTOM - TOP)
    }

    fn open(&self, out: &mut String, class: &str) {
        let _ = write!(
            out,
            r#"<svg id="{id}" class="chart {class}" viewBox="0 0 {w} {H}" width="{w}" height="{H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
            id = esc(self.id),
            t = esc(self.title),
            w = self.w,
        );
        let _ = write!(out, r#"<text x="{LEFT}" y="18" font-size="14" font-weight="600" fill="{INK}">{}</text>"#, esc(self.title));
        for t in self.axis.ticks() {
            let y = self.y(t);
            let stroke = if t == 0.0 { MUTED } else { GRID };
            let _ = write!(
                out,
                r#"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}" stroke-width="1"/>"#,
                x2 = self.w - RIGHT
            );
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{ty:.1}" text-anchor="end" font-size="11" fill="{MUTED}">{}</text>"#,
                num(t),
                x = LEFT - 6.0,
                ty = y + 4.0
            );
        }
    }

    fn goal(&self, out: &mut String, goal: Option<&GoalLine>) {
        if let Some(g) = goal {
            let y = self.y(g.value);
            let _ = write!(
                out,
                r#"<line class="goal" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="{BAD}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{x2}" y="{ty:.1}" text-anchor="end" font-size="11" fill="{BAD}">{}</text>"#,
                esc(&g.label),
                x2 = self.w - RIGHT,
                ty = y - 4.0
            );
        }
    }
}

/// A number for an axis: no trailing ".0".
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v)
    } else {
        format!("{v}")
    }
}

/// Bars on `axis` (values below zero hang down from the zero line), an optional goal line.
pub fn bars(id: &str, title: &str, items: &[Bar], axis: &Axis, goal: Option<&GoalLine>) -> Svg {
    let n = items.len().max(1) as f64;
    let f = Frame { id, title, axis, w: W.max(LEFT + RIGHT + MIN_SLOT * n) };
    let mut out = String::new();
    f.open(&mut out, "bar-chart");
    let base = f.y(0.0_f64.clamp(axis.min, axis.max));
    let slot = (f.w - LEFT - RIGHT) / n;
    let bw = (slot * 0.6).min(56.0);
    for (i, b) in items.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let _ = write!(out, r#"<g class="bar-group" data-label="{}">"#, esc(&b.label));
        match b.value.filter(|v| v.is_finite()) {
            Some(v) => {
                let y = f.y(v);
                let (top, h) = if y < base { (y, base - y) } else { (base, y - base) };
                let fill = match b.good {
                    Some(true) => OK,
                    Some(false) => BAD,
                    None => NEUTRAL,
                };
                let _ = write!(
                    out,
                    r#"<rect class="bar" x="{x:.1}" y="{top:.1}" width="{bw:.1}" height="{h:.1}" rx="2" fill="{fill}"><title>{l}: {t}</title></rect>"#,
                    x = cx - bw / 2.0,
                    h = h.max(1.0),
                    l = esc(&b.label),
                    t = esc(&b.text)
                );
                let ty = if y < base { y - 5.0 } else { y + 14.0 };
                let _ = write!(
                    out,
                    r#"<text class="bar-value" x="{cx:.1}" y="{ty:.1}" text-anchor="middle" font-size="12" font-weight="600" fill="{INK}">{}</text>"#,
                    esc(&b.text)
                );
            }
            None => {
                let _ = write!(
                    out,
                    r#"<rect class="bar-missing" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="2" fill="{MISSING}"/><text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" font-size="12" fill="{MUTED}">—</text>"#,
                    x = cx - bw / 2.0,
                    y = base - 1.0,
                    ty = base - 6.0
                );
            }
        }
        let _ = write!(
            out,
            r#"<text class="bar-label" x="{cx:.1}" y="{y:.1}" text-anchor="middle" font-size="11" fill="{MUTED}">{}</text></g>"#,
            esc(&b.label),
            y = H - BOTTOM + 16.0
        );
    }
    f.goal(&mut out, goal);
    out.push_str("</svg>");
    Svg(out)
}

/// A line over labelled points (days); a missing point breaks the line. At most `max_labels`
/// x labels are written (evenly spaced), so 30 days stay readable.
pub fn line(id: &str, title: &str, points: &[(String, Option<f64>)], axis: &Axis, goal: Option<&GoalLine>, max_labels: usize) -> Svg {
    let f = Frame { id, title, axis, w: W };
    let mut out = String::new();
    f.open(&mut out, "line-chart");
    let n = points.len();
    let x = |i: usize| if n <= 1 { (LEFT + W - RIGHT) / 2.0 } else { LEFT + 8.0 + (W - LEFT - RIGHT - 16.0) * i as f64 / (n - 1) as f64 };
    f.goal(&mut out, goal);
    // One polyline per run of consecutive values.
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, out: &mut String| {
        if run.len() > 1 {
            let _ = write!(out, r#"<polyline class="trend" points="{}" fill="none" stroke="{NEUTRAL}" stroke-width="2"/>"#, run.join(" "));
        }
        run.clear();
    };
    for (i, (_, v)) in points.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push(format!("{:.1},{:.1}", x(i), f.y(v))),
            None => flush(&mut run, &mut out),
        }
    }
    flush(&mut run, &mut out);
    for (i, (label, v)) in points.iter().enumerate() {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            let _ = write!(
                out,
                r#"<circle class="point" cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{NEUTRAL}"><title>{l}: {t}</title></circle>"#,
                cx = x(i),
                cy = f.y(v),
                l = esc(label),
                t = num((v * 10.0).round() / 10.0)
            );
        }
    }
    let every = n.div_ceil(max_labels.max(1)).max(1);
    // The last point is labelled too, unless the label before it is too close to read both.
    let last_shown = n.saturating_sub(1) / every * every;
    let label_last = n > 0 && (n - 1 - last_shown) * 2 >= every;
    for (i, (label, _)) in points.iter().enumerate() {
        if i % every == 0 || (i + 1 == n && label_last) {
            let _ = write!(
                out,
                r#"<text class="x-label" x="{cx:.1}" y="{y:.1}" text-anchor="middle" font-size="11" fill="{MUTED}">{}</text>"#,
                esc(label),
                cx = x(i),
                y = H - BOTTOM + 16.0
            );
        }
    }
    if points.iter().all(|(_, v)| v.is_none()) {
        let _ = write!(
            out,
            r#"<text class="no-data" x="{cx:.1}" y="{cy:.1}" text-anchor="middle" font-size="13" fill="{MUTED}">—</text>"#,
            cx = W / 2.0,
            cy = H / 2.0
        );
    }
    out.push_str("</svg>");
    Svg(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_escape_text_and_hang_negatives_from_zero() {
        let axis = Axis { min: -100.0, max: 100.0, step: 50.0 };
        let items = vec![
            Bar { label: "<w1>".into(), value: Some(50.0), text: "50".into(), good: Some(true) },
            Bar { label: "w2".into(), value: Some(-50.0), text: "-50".into(), good: Some(false) },
            Bar { label: "w3".into(), value: None, text: "—".into(), good: None },
        ];
        let svg = bars("c", "NPS \"&\"", &items, &axis, Some(&GoalLine { value: 30.0, label: "goal ≥ 30".into() })).0;
        assert!(svg.starts_with("<svg id=\"c\"") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;w1&gt;") && !svg.contains("<w1>"));
        assert!(svg.contains("NPS &quot;&amp;&quot;"));
        assert!(!svg.contains("style="));
        // Zero sits mid-axis (y = 34 + 176 / 2 = 122): the positive bar ends there from above,
        // the negative one starts there.
        assert!(svg.contains(r#"y="78.0" width="56.0" height="44.0""#), "{svg}");
        assert!(svg.contains(r#"y="122.0" width="56.0" height="44.0""#), "{svg}");
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("class=\"bar-missing\"").count(), 1);
        assert!(svg.contains("class=\"goal\""));
    }

    #[test]
    fn lines_break_at_missing_days() {
        let axis = Axis::fit([3.0, 22.0], 15.0);
        assert_eq!((axis.min, axis.max, axis.step), (0.0, 30.0, 10.0));
        let pts: Vec<(String, Option<f64>)> =
            [Some(3.0), Some(5.0), None, Some(22.0), Some(9.0)].iter().enumerate().map(|(i, v)| (format!("d{i}"), *v)).collect();
        let svg = line("t", "trend", &pts, &axis, None, 3).0;
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        // Labels thinned to every second day (the last is one of them).
        assert_eq!(svg.matches("class=\"x-label\"").count(), 3);
        // 30 days, 8 labels: every 4th day (0, 4, … 28); day 29 is too close to day 28 to add.
        let month: Vec<(String, Option<f64>)> = (0..30).map(|i| (format!("d{i}"), None)).collect();
        let svg = line("m", "month", &month, &axis, None, 8).0;
        assert_eq!(svg.matches("class=\"x-label\"").count(), 8);
        assert!(svg.contains(">d28<") && !svg.contains(">d29<"));
        let svg = line("m", "month", &month[..27], &axis, None, 8).0;
        assert!(svg.contains(">d24<") && svg.contains(">d26<"), "two days after the last label: the last day is labelled too");
        let empty = line("t", "trend", &[("d".into(), None)], &axis, None, 3).0;
        assert!(empty.contains("no-data"));
    }

    #[test]
    fn bars_clamp_to_the_axis_and_widen_for_many_items() {
        let axis = Axis { min: 0.0, max: 5.0, step: 1.0 };
        let over = [Bar { label: "s3".into(), value: Some(99.0), text: "99".into(), good: None }];
        let svg = bars("c", "t", &over, &axis, None).0;
        // 99 on a 0–5 axis fills the plot and no more: from the top (34) to the zero line (210).
        assert!(svg.contains(r#"y="34.0" width="56.0" height="176.0""#), "{svg}");
        let few: Vec<Bar> = (0..6).map(|i| Bar { label: format!("w{i}"), value: Some(1.0), text: "1".into(), good: None }).collect();
        assert!(bars("c", "t", &few, &axis, None).0.contains(r#"width="640""#), "a month of weeks keeps the usual size");
        let many: Vec<Bar> = (0..20).map(|i| Bar { label: format!("s{i}"), value: Some(1.0), text: "1".into(), good: None }).collect();
        let svg = bars("c", "t", &many, &axis, None).0;
        // 48 + 12 + 20 × 72: every store keeps its room.
        assert!(svg.contains(r#"viewBox="0 0 1500 240" width="1500""#), "{svg}");
        assert_eq!(svg.matches("class=\"bar-label\"").count(), 20);
    }

    #[test]
    fn one_day_is_a_dot() {
        let axis = Axis { min: 0.0, max: 5.0, step: 1.0 };
        let svg = line("t", "trend", &[("d".into(), Some(3.0))], &axis, None, 3).0;
        assert_eq!((svg.matches("<polyline").count(), svg.matches("<circle").count()), (0, 1));
        assert!(!svg.contains("no-data"));
    }

    #[test]
    fn axes_fit_round_numbers() {
        let a = Axis::fit([0.4, 4.6], 5.0);
        assert_eq!((a.min, a.max, a.step), (0.0, 6.0, 2.0));
        let a = Axis::fit([-20.0, 60.0], 1.0);
        assert!(a.min <= -20.0 && a.max >= 60.0 && a.ticks().len() <= 12);
    }
}
