//! Pure helpers of HQ's pages: reading numbers and texts out of the stores' JSON bodies safely,
//! formatting them for the reader, and the geometry of the server-rendered SVG charts.
//!
//! Invariants:
//! - Everything from PostgreSQL is untrusted: a text goes through `clean` (control characters
//!   out, length bounded) before a template sees it, and askama escapes it on output. A number is
//!   used only when it is finite; anything else reads as "no data" and shows as "—".
//! - Chart coordinates are computed here, as strings of plain numbers, so templates never format
//!   floats and no value from the database reaches an SVG attribute except as a clamped number.

use serde_json::Value;

/// What the pages show for a missing number.
pub const NONE: &str = "—";

/// `s` made safe to show: control characters (C0, DEL, C1) become spaces, bidirectional overrides
/// are dropped (they can reorder what a reader sees), runs of spaces collapse, and the result is
/// at most `max` characters, with "…" when it was cut.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut n = 0;
    let mut space = false;
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}') {
            continue;
        }
        if c == ' ' {
            if space || n == 0 {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if n == max {
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('…');
            return out;
        }
        out.push(c);
        n += 1;
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// A finite number at `path` (keys, e.g. `["ai_accuracy", "words", "rate"]`), else `None`.
pub fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    cur.as_f64().filter(|x| x.is_finite())
}

/// A text at `key`, cleaned and bounded; `None` when absent, null or not a string.
pub fn text(v: &Value, key: &str, max: usize) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(|s| clean(s, max)).filter(|s| !s.is_empty())
}

/// Whether `key` holds something other than null (absent counts as null).
pub fn is_set(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// `x` with `decimals` decimals, or "—".
pub fn fixed(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) => format!("{x:.decimals$}"),
        None => NONE.to_string(),
    }
}

/// A percentage (0–100) with one decimal, e.g. "86.5%", or "—".
pub fn pct(x: Option<f64>) -> String {
    match x {
        Some(x) => format!("{x:.1}%"),
        None => NONE.to_string(),
    }
}

/// A whole number (rounded), or "—".
pub fn whole(x: Option<f64>) -> String {
    match x {
        Some(x) => format!("{:.0}", x.round()),
        None => NONE.to_string(),
    }
}

/// A stored time: RFC 3339 (the stores send UTC), or a local wall-clock `YYYY-MM-DDTHH:MM[:SS]`.
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Some(d.with_timezone(&chrono::Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s.trim(), f) {
            return chrono::Local.from_local_datetime(&n).single().map(|d| d.with_timezone(&chrono::Utc));
        }
    }
    None
}

/// A time for the reader, in HQ's local time to the minute; a text that is not a time is shown
/// cleaned and short, and nothing shows as "—".
pub fn show_time(raw: Option<&str>) -> String {
    match raw {
        None => NONE.to_string(),
        Some(s) => match parse_time(s) {
            Some(d) => d.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string(),
            None => {
                let c = clean(s, 32);
                if c.is_empty() {
                    NONE.to_string()
                } else {
                    c
                }
            }
        },
    }
}

// ---- charts ----------------------------------------------------------------------------------

fn f1(x: f64) -> String {
    format!("{x:.1}")
}

/// One bar of a bar chart: its rectangle, where its labels go, and what they say.
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// Centre of the bar, for its labels.
    pub cx: String,
    /// Baseline of the value label (above a positive bar, below a negative one).
    pub vy: String,
    pub value: String,
    /// The store, short enough for the axis; `title` is the full text.
    pub label: String,
    pub title: String,
    pub negative: bool,
}

/// A bar chart: one bar per item with a value, on a fixed domain `[lo, hi]` (values are clamped
/// into it), with a baseline at 0 when the domain spans it.
pub struct BarChart {
    pub width: String,
    pub height: String,
    pub bars: Vec<Bar>,
    /// y of the zero line, and the axis labels' y for the store names.
    pub zero_y: String,
    pub label_y: String,
    pub plot_left: String,
    pub plot_right: String,
    pub ticks: Vec<Tick>,
    /// Items without a value, named under the chart.
    pub missing: Vec<String>,
}

const SLOT: f64 = 88.0;
const LEFT: f64 = 44.0;
const TOP: f64 = 18.0;
const PLOT_H: f64 = 160.0;

/// Bars for `items`: (label, value, value as shown).
pub fn bar_chart(items: &[(String, Option<f64>, String)], lo: f64, hi: f64, ticks: &[f64]) -> BarChart {
    let span = (hi - lo).max(f64::EPSILON);
    let y_of = |v: f64| TOP + (hi - v.clamp(lo, hi)) / span * PLOT_H;
    let zero = y_of(0.0_f64.clamp(lo, hi));
    let with: Vec<&(String, Option<f64>, String)> = items.iter().filter(|i| i.1.is_some()).collect();
    let width = LEFT + SLOT * with.len().max(1) as f64 + 12.0;
    let bars = with
        .iter()
        .enumerate()
        .map(|(i, (label, v, shown))| {
            let v = v.unwrap_or(0.0);
            let y = y_of(v);
            let (top, bottom) = if y <= zero { (y, zero) } else { (zero, y) };
            let x = LEFT + SLOT * i as f64 + 14.0;
            let w = SLOT - 28.0;
            let negative = v < 0.0;
            Bar {
                x: f1(x),
                y: f1(top),
                // A value at the baseline still shows as a hairline, so every store has its bar.
                h: f1((bottom - top).max(1.0)),
                w: f1(w),
                cx: f1(x + w / 2.0),
                vy: f1(if negative { bottom + 14.0 } else { top - 4.0 }),
                value: shown.clone(),
                label: clean(label, 12),
                title: format!("{} {}", clean(label, 64), shown),
                negative,
            }
        })
        .collect();
    BarChart {
        width: f1(width),
        height: f1(TOP + PLOT_H + 30.0),
        bars,
        zero_y: f1(zero),
        label_y: f1(TOP + PLOT_H + 20.0),
        plot_left: f1(LEFT),
        plot_right: f1(width - 8.0),
        ticks: ticks.iter().map(|t| Tick { y: f1(y_of(*t)), label: format!("{t}") }).collect(),
        missing: items.iter().filter(|i| i.1.is_none()).map(|i| clean(&i.0, 64)).collect(),
    }
}

/// A small line chart of one KPI over days: polylines (a gap where a day has no value), a dot
/// per value, the newest value and the range shown.
pub struct LineChart {
    pub key: &'static str,
    pub title: String,
    pub latest: String,
    pub lines: Vec<String>,
    pub dots: Vec<Dot>,
    pub lo: String,
    pub hi: String,
    pub first_day: String,
    pub last_day: String,
    /// A goal line, e.g. 15 minutes of response time.
    pub goal: Option<Goal>,
    pub values: usize,
}

/// One day's value on a line chart, with its tooltip.
pub struct Dot {
    pub x: String,
    pub y: String,
    pub title: String,
}

pub struct Goal {
    pub y: String,
    pub label: String,
}

/// A gridline of a bar chart.
pub struct Tick {
    pub y: String,
    pub label: String,
}

pub const LINE_W: f64 = 300.0;
pub const LINE_H: f64 = 110.0;
const LPAD: f64 = 8.0;

/// `series`: (day, value) oldest first. `domain`: a fixed range, else the data's own (from 0 when
/// all values are positive). `fmt` shows a value.
pub fn line_chart(
    key: &'static str,
    title: String,
    series: &[(String, Option<f64>)],
    domain: Option<(f64, f64)>,
    goal: Option<f64>,
    fmt: impl Fn(Option<f64>) -> String,
) -> LineChart {
    let vals: Vec<f64> = series.iter().filter_map(|(_, v)| *v).collect();
    let (mut lo, mut hi) = match domain {
        Some(d) => d,
        None => {
            let mn = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let mx = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(goal.unwrap_or(f64::NEG_INFINITY));
            if vals.is_empty() {
                (0.0, 1.0)
            } else {
                (mn.min(0.0), mx)
            }
        }
    };
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let n = series.len();
    let x_of = |i: usize| if n <= 1 { LINE_W / 2.0 } else { LPAD + (LINE_W - 2.0 * LPAD) * i as f64 / (n - 1) as f64 };
    let y_of = |v: f64| LPAD + (hi - v.clamp(lo, hi)) / (hi - lo) * (LINE_H - 2.0 * LPAD);
    let mut lines = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut dots = Vec::new();
    for (i, (day, v)) in series.iter().enumerate() {
        match v {
            Some(v) => {
                let (x, y) = (f1(x_of(i)), f1(y_of(*v)));
                cur.push(format!("{x},{y}"));
                dots.push(Dot { x, y, title: format!("{} {}", clean(day, 16), fmt(Some(*v))) });
            }
            None => {
                if cur.len() > 1 {
                    lines.push(cur.join(" "));
                }
                cur.clear();
            }
        }
    }
    if cur.len() > 1 {
        lines.push(cur.join(" "));
    }
    let latest = series.iter().rev().find_map(|(_, v)| *v);
    LineChart {
        key,
        title,
        latest: fmt(latest),
        lines,
        dots,
        lo: fmt(Some(lo)),
        hi: fmt(Some(hi)),
        first_day: series.first().map(|d| clean(&d.0, 16)).unwrap_or_default(),
        last_day: series.last().map(|d| clean(&d.0, 16)).unwrap_or_default(),
        goal: goal.filter(|g| (lo..=hi).contains(g)).map(|g| Goal { y: f1(y_of(g)), label: fmt(Some(g)) }),
        values: vals.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hostile_text_is_cleaned_and_bounded() {
        assert_eq!(clean("  a\u{0}b\u{7}\r\n c  ", 50), "a b c");
        assert_eq!(clean("\u{202e}evil", 50), "evil");
        let long = "长".repeat(5000);
        let c = clean(&long, 200);
        assert_eq!(c.chars().count(), 201);
        assert!(c.ends_with('…'));
        assert_eq!(clean("<script>alert(1)</script>", 200), "<script>alert(1)</script>", "escaping is the template's job");
    }

    #[test]
    fn numbers_are_read_only_when_finite_and_shown_as_dash_otherwise() {
        let v = json!({"a": 4.5, "b": null, "c": "7", "d": {"e": {"rate": 91.25}}});
        assert_eq!(num(&v, &["a"]), Some(4.5));
        assert_eq!(num(&v, &["b"]), None);
        assert_eq!(num(&v, &["c"]), None, "a string is not a number");
        assert_eq!(num(&v, &["d", "e", "rate"]), Some(91.25));
        assert_eq!(num(&v, &["zz"]), None);
        assert_eq!(fixed(Some(4.5), 2), "4.50");
        assert_eq!(pct(Some(91.25)), "91.2%");
        assert_eq!(pct(None), "—");
        assert_eq!(whole(Some(-12.6)), "-13");
    }

    #[test]
    fn times_parse_or_show_cleaned() {
        assert!(parse_time("2026-03-01T08:00:00.000Z").is_some());
        assert!(parse_time("2026-03-01T16:00:00+08:00").is_some());
        assert!(parse_time("2026-03-01T08:00").is_some());
        assert!(parse_time("soon").is_none());
        assert_eq!(show_time(None), "—");
        assert_eq!(show_time(Some("\u{1}")), "—");
        assert_eq!(show_time(Some("next\u{0}week")), "next week");
    }

    #[test]
    fn bars_one_per_valued_item_on_a_clamped_domain() {
        let items = vec![
            ("s1".to_string(), Some(4.5), "4.50".to_string()),
            ("s2".to_string(), None, "—".to_string()),
            ("s3".to_string(), Some(99.0), "99".to_string()),
        ];
        let c = bar_chart(&items, 0.0, 5.0, &[0.0, 5.0]);
        assert_eq!(c.bars.len(), 2);
        assert_eq!(c.missing, vec!["s2".to_string()]);
        // 99 is clamped to the top of the domain: the bar fills the plot and no more.
        let top: f64 = c.bars[1].y.parse().unwrap();
        assert!((top - TOP).abs() < 0.05, "{top}");
        let nps = bar_chart(&[("a".into(), Some(-50.0), "-50".into()), ("b".into(), Some(50.0), "50".into())], -100.0, 100.0, &[]);
        assert!(nps.bars[0].negative && !nps.bars[1].negative);
        assert_eq!(nps.bars[0].y, nps.zero_y, "a negative bar hangs from the zero line");
        assert_eq!(nps.bars[0].h, nps.bars[1].h, "same size either side of zero");
    }

    #[test]
    fn lines_break_at_missing_days() {
        let s: Vec<(String, Option<f64>)> = vec![
            ("d1".into(), Some(1.0)),
            ("d2".into(), Some(2.0)),
            ("d3".into(), None),
            ("d4".into(), Some(3.0)),
            ("d5".into(), Some(4.0)),
        ];
        let c = line_chart("k", "t".into(), &s, None, Some(15.0), |x| fixed(x, 1));
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.dots.len(), 4);
        assert_eq!(c.latest, "4.0");
        assert!(c.goal.is_some(), "the goal widens the range so its line shows");
        let one = line_chart("k", "t".into(), &[("d".into(), Some(3.0))], Some((0.0, 5.0)), None, |x| fixed(x, 1));
        assert!(one.lines.is_empty() && one.dots.len() == 1, "a single day is a dot");
        let none = line_chart("k", "t".into(), &[("d".into(), None)], None, None, |x| fixed(x, 1));
        assert_eq!((none.values, none.latest.as_str()), (0, "—"));
    }
}
