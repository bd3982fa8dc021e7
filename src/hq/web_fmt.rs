//! Pure helpers of HQ's pages: reading numbers and texts out of the stores' JSON bodies safely,
//! and formatting them for the reader. The charts themselves are drawn by `crate::ui::charts`,
//! the same as the store's KPI dashboard; this module only prepares what they are given.
//!
//! Invariants:
//! - Everything from PostgreSQL is untrusted: a text goes through `clean` (control characters
//!   out, length bounded) before a template or a chart sees it, and is escaped on output (askama,
//!   `ui::charts::esc`). A number is used only when it is finite; anything else reads as "no data"
//!   and shows as "—".

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
}
