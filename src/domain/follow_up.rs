//! Follow-up after delivery (回访), as rules: when the task is due, what a survey answer is, where it
//! goes (a hot alert to a person, a suggestion, nothing), the alert's SLA, and the score maths the
//! KPIs share. Pure: every function takes the time it needs as an argument (the service's clock is
//! injected, so tests never sleep).
//!
//! Invariants:
//! - A task is never due while the store is closed: a due time that falls in closed hours or on a
//!   closed day moves to the next opening.
//! - Every respondent is invited to leave a review, whatever the score (inviting only the happy
//!   ones is review gating: Google's policy, the FTC's 16 CFR 465 and SAMR's rules forbid it).
//! - CSAT <= 3, NPS <= 6 or any "not fixed" is hot: a person answers it within the SLA.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// The store's follow-up settings (config `[follow_up]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// After delivery (48 h).
    pub due_after: Duration,
    /// The store's local time zone (China: +08:00).
    pub tz: FixedOffset,
    /// Opening hours, local time; `open < close`.
    pub open: NaiveTime,
    pub close: NaiveTime,
    pub closed_days: Vec<Weekday>,
    /// A hot alert needs a person's first response within this (24 h)…
    pub alert_sla: Duration,
    /// …and goes to the manager after this if still unresolved (72 h).
    pub escalate_after: Duration,
    /// Advisor minutes one case saves with the assistant (stated on the dashboard).
    pub minutes_saved_per_case: f64,
    /// A new case on the same part within this many days is a comeback.
    pub comeback_days: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            due_after: Duration::hours(48),
            tz: FixedOffset::east_opt(8 * 3600).expect("+08:00"),
            open: NaiveTime::from_hms_opt(8, 30, 0).expect("08:30"),
            close: NaiveTime::from_hms_opt(18, 0, 0).expect("18:00"),
            closed_days: Vec::new(),
            alert_sla: Duration::hours(24),
            escalate_after: Duration::hours(72),
            minutes_saved_per_case: 12.0,
            comeback_days: 30,
        }
    }
}

impl Policy {
    fn is_open_day(&self, wd: Weekday) -> bool {
        !self.closed_days.contains(&wd)
    }

    /// `t` if the store is open then, else the next opening time.
    pub fn next_open(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let local = t.with_timezone(&self.tz);
        let (day, time) = (local.date_naive(), local.time());
        let opening =
            |d: chrono::NaiveDate| self.tz.from_local_datetime(&d.and_time(self.open)).single().map(|x| x.with_timezone(&Utc)).unwrap_or(t);
        if self.is_open_day(day.weekday()) && time < self.close {
            return if time >= self.open { t } else { opening(day) };
        }
        // Validated: at least one open day a week.
        let mut d = day;
        for _ in 0..7 {
            d = d.succ_opt().unwrap_or(d);
            if self.is_open_day(d.weekday()) {
                return opening(d);
            }
        }
        t
    }

    /// When the follow-up of a car delivered at `delivered` is due.
    pub fn due_at(&self, delivered: DateTime<Utc>) -> DateTime<Utc> {
        self.next_open(delivered + self.due_after)
    }

    /// A hot alert raised at `raised`: (first response due, escalate to the manager at).
    pub fn alert_deadlines(&self, raised: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        (raised + self.alert_sla, raised + self.escalate_after)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.open >= self.close {
            return Err("opening time must be before closing time".into());
        }
        if self.closed_days.len() >= 7 {
            return Err("the store must be open at least one day a week".into());
        }
        if self.due_after < Duration::hours(1) || self.due_after > Duration::days(30) {
            return Err("due_after_hours must be between 1 and 720".into());
        }
        if self.alert_sla <= Duration::zero() || self.escalate_after < self.alert_sla {
            return Err("escalate_after_hours must be at least alert_sla_hours (> 0)".into());
        }
        if !(0.0..=600.0).contains(&self.minutes_saved_per_case) {
            return Err("minutes_saved_per_case must be between 0 and 600".into());
        }
        Ok(())
    }
}

/// "Was <the original complaint> fixed?"
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fixed {
    Yes,
    Partly,
    No,
}

/// What a dissatisfied answer is about (the model picks one, grammar-constrained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Quality,
    Price,
    Time,
    Staff,
    Other,
}

impl Category {
    pub const ALL: [Category; 5] = [Category::Quality, Category::Price, Category::Time, Category::Staff, Category::Other];
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Quality => "quality",
            Category::Price => "price",
            Category::Time => "time",
            Category::Staff => "staff",
            Category::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The GBNF grammar of the model's one-line summary: `category: text`, one line, bounded.
pub fn summary_grammar() -> String {
    let cats = Category::ALL.iter().map(|c| format!("\"{}\"", c.as_str())).collect::<Vec<_>>().join(" | ");
    format!("root ::= cat \": \" line\ncat ::= {cats}\nline ::= [^\\n]{{4,80}}\n")
}

/// The model's output under `summary_grammar`, read back (None if it does not parse).
pub fn parse_summary(text: &str) -> Option<(Category, String)> {
    let (cat, line) = text.trim().split_once(": ")?;
    let line = line.trim();
    (!line.is_empty()).then_some(())?;
    Some((Category::parse(cat.trim())?, line.chars().take(80).collect()))
}

/// One answer to one original finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedAnswer {
    pub finding_id: String,
    pub answer: Fixed,
}

/// A survey answer, from the phone call or HQ's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// 1–5 (the seed's satisfaction score).
    pub csat: u8,
    /// 0–10 (likelihood to recommend).
    pub nps: u8,
    #[serde(default)]
    pub fixed: Vec<FixedAnswer>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HotReason {
    LowCsat,
    Detractor,
    NotFixed,
}

/// Where an answer goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routing {
    /// To a person at once, with the SLA.
    pub hot: bool,
    pub reasons: Vec<HotReason>,
    /// CSAT 4: recorded as a suggestion with its category.
    pub suggestion: bool,
    /// Always true (no review gating); kept explicit so the UI and HQ read it from one place.
    pub review_invited: bool,
}

pub fn route(a: &Answer) -> Routing {
    let mut reasons = Vec::new();
    if a.csat <= 3 {
        reasons.push(HotReason::LowCsat);
    }
    if a.nps <= 6 {
        reasons.push(HotReason::Detractor);
    }
    if a.fixed.iter().any(|f| f.answer == Fixed::No) {
        reasons.push(HotReason::NotFixed);
    }
    let hot = !reasons.is_empty();
    Routing { hot, reasons, suggestion: !hot && a.csat == 4, review_invited: true }
}

/// Check an answer against the task's questions: scores in range, every finding asked answered
/// once and nothing else. Returns a field name and message on failure.
pub fn check_answer(a: &Answer, asked: &[String]) -> Result<(), (&'static str, String)> {
    if !(1..=5).contains(&a.csat) {
        return Err(("csat", "satisfaction is 1 to 5".into()));
    }
    if a.nps > 10 {
        return Err(("nps", "likelihood to recommend is 0 to 10".into()));
    }
    for f in &a.fixed {
        if !asked.contains(&f.finding_id) {
            return Err(("fixed", format!("finding {} was not asked about", f.finding_id)));
        }
    }
    for id in asked {
        let n = a.fixed.iter().filter(|f| &f.finding_id == id).count();
        if n != 1 {
            return Err(("fixed", format!("answer \"was it fixed\" once for finding {id}")));
        }
    }
    Ok(())
}

/// Net Promoter Score: % promoters (9–10) − % detractors (0–6), −100…100. None without answers.
pub fn nps(scores: &[u8]) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let promoters = scores.iter().filter(|s| **s >= 9).count() as f64;
    let detractors = scores.iter().filter(|s| **s <= 6).count() as f64;
    Some((promoters - detractors) * 100.0 / n)
}

/// CSAT: (mean 1–5, share of 4 and 5 in %). None without answers.
pub fn csat(scores: &[u8]) -> Option<(f64, f64)> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let mean = scores.iter().map(|s| *s as f64).sum::<f64>() / n;
    let share = scores.iter().filter(|s| **s >= 4).count() as f64 * 100.0 / n;
    Some((mean, share))
}

/// The grammar-free fallback summary: the first words of the comment, or what was scored.
pub fn template_summary(a: &Answer) -> (Category, String) {
    let text = a.comment.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let cat = if a.fixed.iter().any(|f| f.answer != Fixed::Yes) { Category::Quality } else { Category::Other };
    match text {
        Some(c) => (cat, c.chars().filter(|ch| !ch.is_control()).take(60).collect()),
        None => (cat, format!("CSAT {} / NPS {}", a.csat, a.nps)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn due_48h_later_inside_opening_hours() {
        let p = Policy::default();
        // Delivered Tuesday 10:00 Beijing → Thursday 10:00.
        assert_eq!(p.due_at(at("2026-12-01T10:00:00+08:00")), at("2026-12-03T10:00:00+08:00"));
    }

    #[test]
    fn due_in_closed_hours_moves_to_the_next_opening() {
        let p = Policy::default();
        // Delivered 17:50 + 48 h = 17:50, still open.
        assert_eq!(p.due_at(at("2026-12-01T17:50:00+08:00")), at("2026-12-03T17:50:00+08:00"));
        // Delivered 18:30 → due 18:30 (closed) → next morning 08:30.
        assert_eq!(p.due_at(at("2026-12-01T18:30:00+08:00")), at("2026-12-04T08:30:00+08:00"));
        // Delivered 07:00 → due 07:00 → same day 08:30.
        assert_eq!(p.due_at(at("2026-12-01T07:00:00+08:00")), at("2026-12-03T08:30:00+08:00"));
    }

    #[test]
    fn closed_days_are_skipped() {
        let p = Policy { closed_days: vec![Weekday::Sun, Weekday::Mon], ..Policy::default() };
        // Friday 2026-12-04 11:00 → Sunday 11:00 (closed) → Tuesday 08:30.
        assert_eq!(p.due_at(at("2026-12-04T11:00:00+08:00")), at("2026-12-08T08:30:00+08:00"));
        // Saturday 19:00 → Monday 19:00 (closed day, after hours) → Tuesday 08:30.
        assert_eq!(p.due_at(at("2026-12-05T19:00:00+08:00")), at("2026-12-08T08:30:00+08:00"));
        // The hours are the store's local hours, whatever zone the instant was written in.
        assert_eq!(p.due_at(at("2026-12-01T02:00:00Z")), at("2026-12-03T10:00:00+08:00"));
    }

    #[test]
    fn policy_is_validated() {
        assert!(Policy::default().check().is_ok());
        let all_closed = Policy {
            closed_days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun],
            ..Policy::default()
        };
        assert!(all_closed.check().is_err());
        let backwards = Policy { open: NaiveTime::from_hms_opt(19, 0, 0).unwrap(), ..Policy::default() };
        assert!(backwards.check().is_err());
    }

    fn answer(csat: u8, nps: u8, fixed: &[Fixed]) -> Answer {
        Answer {
            csat,
            nps,
            fixed: fixed.iter().enumerate().map(|(i, f)| FixedAnswer { finding_id: format!("f{i}"), answer: *f }).collect(),
            comment: None,
        }
    }

    #[test]
    fn routing_follows_the_seed_rule_without_review_gating() {
        let r = route(&answer(2, 9, &[Fixed::Yes]));
        assert!(r.hot && r.reasons == vec![HotReason::LowCsat] && r.review_invited);
        let r = route(&answer(5, 6, &[Fixed::Yes]));
        assert!(r.hot && r.reasons == vec![HotReason::Detractor]);
        let r = route(&answer(5, 10, &[Fixed::Yes, Fixed::No]));
        assert!(r.hot && r.reasons == vec![HotReason::NotFixed]);
        // Partly fixed alone is not hot, but CSAT 4 is a suggestion.
        let r = route(&answer(4, 8, &[Fixed::Partly]));
        assert!(!r.hot && r.suggestion && r.review_invited);
        let r = route(&answer(5, 10, &[Fixed::Yes]));
        assert!(!r.hot && !r.suggestion && r.review_invited);
        let r = route(&answer(3, 7, &[]));
        assert!(r.hot && !r.suggestion);
    }

    #[test]
    fn answers_are_checked_against_the_questions() {
        let asked = vec!["f0".to_string(), "f1".to_string()];
        assert!(check_answer(&answer(5, 10, &[Fixed::Yes, Fixed::No]), &asked).is_ok());
        assert_eq!(check_answer(&answer(0, 10, &[Fixed::Yes, Fixed::No]), &asked).unwrap_err().0, "csat");
        assert_eq!(check_answer(&answer(5, 11, &[Fixed::Yes, Fixed::No]), &asked).unwrap_err().0, "nps");
        assert_eq!(check_answer(&answer(5, 10, &[Fixed::Yes]), &asked).unwrap_err().0, "fixed");
        assert_eq!(check_answer(&answer(5, 10, &[Fixed::Yes, Fixed::No, Fixed::Yes]), &asked).unwrap_err().0, "fixed");
    }

    #[test]
    fn score_maths() {
        // 3 promoters, 1 passive, 2 detractors of 6 → (3 − 2) / 6 = 16.67.
        let n = nps(&[10, 9, 9, 8, 6, 0]).unwrap();
        assert!((n - 100.0 / 6.0).abs() < 1e-9);
        assert_eq!(nps(&[]), None);
        let (mean, share) = csat(&[5, 4, 2, 5]).unwrap();
        assert!((mean - 4.0).abs() < 1e-9 && (share - 75.0).abs() < 1e-9);
    }

    #[test]
    fn summaries_parse_under_the_grammar_shape() {
        assert_eq!(parse_summary("quality: 车门仍有异响"), Some((Category::Quality, "车门仍有异响".into())));
        assert_eq!(parse_summary("weather: nice"), None);
        assert_eq!(parse_summary("price"), None);
        assert!(summary_grammar().contains("\"staff\""));
        let (c, s) = template_summary(&Answer { comment: Some("  等了很久\u{7}".into()), ..answer(2, 3, &[Fixed::Yes]) });
        assert_eq!((c, s.as_str()), (Category::Other, "等了很久"));
    }
}
