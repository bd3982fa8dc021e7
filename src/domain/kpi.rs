//! The store's KPIs (门店指标) as pure maths: the period (local days in the follow-up policy's
//! time zone), the raw facts a period holds (loaded by `store::kpi`), and the figures computed from
//! them, each with its goal. No I/O and no clock: the instant "now" is an argument, so a day can be
//! recomputed later with the same answer.
//!
//! Invariants:
//! - A period is `[from, to)` in local days; its instants are local midnights converted to UTC.
//! - A figure without data is `None` (JSON null), never 0: "no answers" is not "CSAT 0".
//! - Percentages are 0–100, minutes and hours are decimals; every published number is rounded to
//!   two decimals here, once, so the API, the snapshot, /metrics and the PDF agree.
//! - The snapshot body's field names are HQ's contract (hq-web and HQ's views read them): rename
//!   nothing in `Figures` without a new `kpi_snapshot` schema version.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The longest period the API computes (a year and a bit: a month picker never needs more).
pub const MAX_PERIOD_DAYS: i64 = 400;
/// A daily snapshot covers the 30 local days ending that day.
pub const SNAPSHOT_DAYS: i64 = 30;

// ---- periods ----------------------------------------------------------------------------------

/// Local days `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// `YYYY-MM-DD`, exactly (no time, no offset, no surrounding space).
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    (s.len() == 10).then_some(())?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

impl Period {
    /// `[from, to)`; `from` before `to`, at most `MAX_PERIOD_DAYS`. Errors name the field.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period, (&'static str, String)> {
        if to <= from {
            return Err(("to", "`to` must be after `from` (the period is [from, to))".into()));
        }
        if (to - from).num_days() > MAX_PERIOD_DAYS {
            return Err(("to", format!("a period is at most {MAX_PERIOD_DAYS} days")));
        }
        Ok(Period { from, to })
    }

    /// The `days` local days ending with `last` (inclusive).
    pub fn ending(last: NaiveDate, days: i64) -> Period {
        let to = last.succ_opt().unwrap_or(last);
        Period { from: to - Duration::days(days.max(1)), to }
    }

    /// A calendar month, from `YYYY-MM`.
    pub fn month(s: &str) -> Option<Period> {
        (s.len() == 7).then_some(())?;
        let from = parse_day(&format!("{s}-01"))?;
        let to = if from.month() == 12 {
            NaiveDate::from_ymd_opt(from.year() + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(from.year(), from.month() + 1, 1)?
        };
        Some(Period { from, to })
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days()
    }

    /// The UTC instants of the period's bounds (local midnights).
    pub fn bounds(&self, tz: &FixedOffset) -> (DateTime<Utc>, DateTime<Utc>) {
        (midnight(self.from, tz), midnight(self.to, tz))
    }

    /// The last day in the period.
    pub fn last_day(&self) -> NaiveDate {
        self.to.pred_opt().unwrap_or(self.to)
    }
}

pub fn midnight(d: NaiveDate, tz: &FixedOffset) -> DateTime<Utc> {
    // A fixed offset has exactly one local midnight.
    let local = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&local).single().map(|t| t.with_timezone(&Utc)).unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

/// The local day of an instant.
pub fn local_day(t: DateTime<Utc>, tz: &FixedOffset) -> NaiveDate {
    t.with_timezone(tz).date_naive()
}

// ---- the facts of a period --------------------------------------------------------------------

/// A finding a person has decided on (pending ones are not counted), with every source that
/// reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub sources: Vec<String>,
    /// `confirmed`, `corrected` or `rejected`.
    pub status: String,
}

/// One survey answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerFact {
    pub follow_up_id: String,
    pub answered_at: DateTime<Utc>,
    /// Ties on `answered_at` go to the later recorded one.
    pub recorded_at: String,
    pub csat: u8,
    pub nps: u8,
    /// "Was it fixed" per original finding: `yes`, `partly`, `no`.
    pub fixed: Vec<String>,
}

/// A part of the car a finding names (the position where it says one).
#[derive(Debug, Clone, PartialEq)]
pub struct PartAt {
    pub part: String,
    pub position: Option<String>,
}

/// A case delivered in the period, with the parts its (not rejected) findings named.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub case_id: String,
    pub vehicle_id: String,
    pub at: DateTime<Utc>,
    pub parts: Vec<PartAt>,
}

/// A case of a delivered car opened after the delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct LaterCase {
    pub case_id: String,
    pub vehicle_id: String,
    pub created_at: DateTime<Utc>,
    pub parts: Vec<PartAt>,
}

/// A hot alert's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct HotAlert {
    pub raised_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub escalate_at: Option<DateTime<Utc>>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A finished labour line: its standard hours and the hours clocked on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabourLine {
    pub standard_h: f64,
    pub clocked_h: f64,
}

/// Everything a period's figures are computed from (`store::kpi::facts` loads it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Cases reported in the period.
    pub cases: u32,
    /// Per case reported in the period that the assistant answered: minutes from the report to
    /// the assistant's first answer.
    pub response_minutes: Vec<f64>,
    /// Per escalation in the period that a person took up: minutes to the first person's action.
    pub escalation_minutes: Vec<f64>,
    /// Hot alerts raised in the period (their first responses count as "to a person").
    pub alerts_raised: Vec<HotAlert>,
    /// Findings of the period's cases that a person decided on.
    pub reviewed: Vec<Reviewed>,
    /// Answers given in the period (all of them: the latest per follow-up is chosen here).
    pub answers: Vec<AnswerFact>,
    pub deliveries: Vec<Delivery>,
    /// Cases of the delivered cars opened after a delivery (the window is checked here).
    pub later_cases: Vec<LaterCase>,
    /// Hot alerts that may be open at `as_of` (raised before it, not resolved before it).
    pub alerts_live: Vec<HotAlert>,
    pub labour: Vec<LabourLine>,
}

// ---- the figures ------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub confirmed: u32,
    pub corrected: u32,
    pub rejected: u32,
    /// confirmed / (confirmed + corrected + rejected), %.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AiAccuracy {
    /// Findings from the customer's words (`customer`).
    pub words: Accuracy,
    /// Findings from photos (`vision`).
    pub photos: Accuracy,
}

/// The figures of a period: the snapshot body's fields (HQ's contract) besides `day`,
/// `store_id` and `period_days`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub cases: u32,
    pub response_minutes_median: Option<f64>,
    pub escalation_minutes_median: Option<f64>,
    pub ai_accuracy: AiAccuracy,
    pub csat_mean: Option<f64>,
    pub csat_share_4plus: Option<f64>,
    pub nps: Option<f64>,
    pub first_time_fix: Option<f64>,
    /// Delivered cases that came back (None: nothing delivered in the period).
    pub comebacks: Option<u32>,
    pub hot_open: u32,
    pub hot_overdue: u32,
    pub labour_efficiency: Option<f64>,
    pub minutes_saved: f64,
    pub minutes_saved_per_case: f64,
    pub surveys: u32,
}

/// How the figures came about: the counts behind each one (the API and the dashboard show them;
/// the snapshot does not carry them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// Cases with an assistant answer (the response median's sample).
    pub responses: u32,
    pub escalations: u32,
    pub escalation_only_minutes_median: Option<f64>,
    pub hot_alert_responses: u32,
    pub hot_alert_minutes_median: Option<f64>,
    /// Answers that asked "was it fixed" at least once (first-time fix's sample).
    pub fixed_asked: u32,
    pub delivered: u32,
    pub comeback_rate: Option<f64>,
    pub labour_lines: u32,
    pub standard_hours: f64,
    pub clocked_hours: f64,
}

/// CSAT and NPS of one local week (Monday first), for the charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Week {
    pub start: NaiveDate,
    pub surveys: u32,
    pub csat_mean: Option<f64>,
    pub nps: Option<f64>,
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn r2(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite()).map(round2)
}

pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn pct(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn accuracy(reviewed: &[Reviewed], source: &str) -> Accuracy {
    let mut a = Accuracy::default();
    for r in reviewed.iter().filter(|r| r.sources.iter().any(|s| s == source)) {
        match r.status.as_str() {
            "confirmed" => a.confirmed += 1,
            "corrected" => a.corrected += 1,
            "rejected" => a.rejected += 1,
            _ => {}
        }
    }
    a.rate = r2(pct(a.confirmed, a.confirmed + a.corrected + a.rejected));
    a
}

/// The latest answer of each follow-up (a phone answer and a later QR answer: the later counts).
pub fn latest_answers(answers: &[AnswerFact]) -> Vec<&AnswerFact> {
    let mut by: std::collections::BTreeMap<&str, &AnswerFact> = std::collections::BTreeMap::new();
    for a in answers {
        let newer = by.get(a.follow_up_id.as_str()).is_none_or(|b| (a.answered_at, &a.recorded_at) > (b.answered_at, &b.recorded_at));
        if newer {
            by.insert(&a.follow_up_id, a);
        }
    }
    let mut v: Vec<&AnswerFact> = by.into_values().collect();
    v.sort_by_key(|a| a.answered_at);
    v
}

/// Same part, and the same position where both name one (a photo seldom knows the side).
fn same_part(a: &PartAt, b: &PartAt) -> bool {
    a.part == b.part && (a.position.is_none() || b.position.is_none() || a.position == b.position)
}

/// Delivered cases followed, within `days`, by a new case of the same car naming a part the
/// delivered case named.
pub fn comebacks(deliveries: &[Delivery], later: &[LaterCase], days: i64) -> u32 {
    deliveries
        .iter()
        .filter(|d| {
            later.iter().any(|l| {
                l.case_id != d.case_id
                    && l.vehicle_id == d.vehicle_id
                    && l.created_at > d.at
                    && l.created_at <= d.at + Duration::days(days)
                    && l.parts.iter().any(|p| d.parts.iter().any(|q| same_part(p, q)))
            })
        })
        .count() as u32
}

/// Open at `t`: raised before it and not resolved by then.
fn open_at(a: &HotAlert, t: DateTime<Utc>) -> bool {
    a.raised_at <= t && a.resolved_at.is_none_or(|r| r > t)
}

/// Overdue at `t`: open, and either past its first-response deadline without a response, or past
/// its escalation time (72 h unresolved).
fn overdue_at(a: &HotAlert, t: DateTime<Utc>) -> bool {
    let responded = a.first_response_at.is_some_and(|r| r <= t);
    open_at(a, t) && ((!responded && a.due_at.is_some_and(|d| d <= t)) || a.escalate_at.is_some_and(|e| e <= t))
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 60_000.0
}

/// Every figure of a period. `as_of` is the instant "open" and "overdue" are judged at (now, or the
/// end of a past snapshot day).
pub fn compute(f: &Facts, as_of: DateTime<Utc>, minutes_per_case: f64, comeback_days: i64) -> (Figures, Detail) {
    let alert_minutes: Vec<f64> =
        f.alerts_raised.iter().filter_map(|a| a.first_response_at.map(|r| minutes(a.raised_at, r))).filter(|m| *m >= 0.0).collect();
    let to_person: Vec<f64> = f.escalation_minutes.iter().chain(&alert_minutes).copied().collect();

    let latest = latest_answers(&f.answers);
    let csat: Vec<u8> = latest.iter().map(|a| a.csat).collect();
    let nps: Vec<u8> = latest.iter().map(|a| a.nps).collect();
    let (csat_mean, csat_share) = match super::follow_up::csat(&csat) {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    let asked: Vec<&&AnswerFact> = latest.iter().filter(|a| !a.fixed.is_empty()).collect();
    let fixed_first_time = asked.iter().filter(|a| a.fixed.iter().all(|x| x == "yes")).count() as u32;

    let delivered = f.deliveries.len() as u32;
    let came_back = comebacks(&f.deliveries, &f.later_cases, comeback_days);

    let lines: Vec<&LabourLine> =
        f.labour.iter().filter(|l| l.standard_h.is_finite() && l.clocked_h.is_finite() && l.clocked_h > 0.0).collect();
    let standard: f64 = lines.iter().map(|l| l.standard_h).sum();
    let clocked: f64 = lines.iter().map(|l| l.clocked_h).sum();

    let figures = Figures {
        cases: f.cases,
        response_minutes_median: r2(median(&f.response_minutes)),
        escalation_minutes_median: r2(median(&to_person)),
        ai_accuracy: AiAccuracy { words: accuracy(&f.reviewed, "customer"), photos: accuracy(&f.reviewed, "vision") },
        csat_mean: r2(csat_mean),
        csat_share_4plus: r2(csat_share),
        nps: r2(super::follow_up::nps(&nps)),
        first_time_fix: r2(pct(fixed_first_time, asked.len() as u32)),
        comebacks: (delivered > 0).then_some(came_back),
        hot_open: f.alerts_live.iter().filter(|a| open_at(a, as_of)).count() as u32,
        hot_overdue: f.alerts_live.iter().filter(|a| overdue_at(a, as_of)).count() as u32,
        labour_efficiency: r2((clocked > 0.0).then(|| standard * 100.0 / clocked)),
        minutes_saved: round2(f.cases as f64 * minutes_per_case),
        minutes_saved_per_case: round2(minutes_per_case),
        surveys: latest.len() as u32,
    };
    let detail = Detail {
        responses: f.response_minutes.len() as u32,
        escalations: f.escalation_minutes.len() as u32,
        escalation_only_minutes_median: r2(median(&f.escalation_minutes)),
        hot_alert_responses: alert_minutes.len() as u32,
        hot_alert_minutes_median: r2(median(&alert_minutes)),
        fixed_asked: asked.len() as u32,
        delivered,
        comeback_rate: r2(pct(came_back, delivered)),
        labour_lines: lines.len() as u32,
        standard_hours: round2(standard),
        clocked_hours: round2(clocked),
    };
    (figures, detail)
}

/// CSAT mean and NPS per local week (Monday first) over the period, from the latest answers;
/// every week of the period is listed, weeks without answers with `None`.
pub fn weekly(answers: &[AnswerFact], period: &Period, tz: &FixedOffset) -> Vec<Week> {
    let latest = latest_answers(answers);
    let monday = |d: NaiveDate| d - Duration::days(d.weekday().num_days_from_monday() as i64);
    let mut out = Vec::new();
    let mut start = monday(period.from);
    while start < period.to && out.len() < 60 {
        let end = start + Duration::days(7);
        let week: Vec<&&AnswerFact> = latest
            .iter()
            .filter(|a| {
                let d = local_day(a.answered_at, tz);
                d >= start.max(period.from) && d < end.min(period.to)
            })
            .collect();
        let csat: Vec<u8> = week.iter().map(|a| a.csat).collect();
        let nps: Vec<u8> = week.iter().map(|a| a.nps).collect();
        out.push(Week {
            start,
            surveys: week.len() as u32,
            csat_mean: r2(super::follow_up::csat(&csat).map(|c| c.0)),
            nps: r2(super::follow_up::nps(&nps)),
        });
        start = end;
    }
    out
}

// ---- goals ------------------------------------------------------------------------------------

/// A figure's goal. The seed states three (response < 15 min, AI accuracy 90 %+, CSAT 85+ read as
/// "85 % of answers 4 or 5"); the hot-alert SLA makes "none overdue" a fourth. The others are our
/// defaults, stated next to each figure so a manager can read them as such.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum Goal {
    Below(f64),
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub fn met(&self, v: Option<f64>) -> Option<bool> {
        let v = v?;
        Some(match *self {
            Goal::Below(g) => v < g,
            Goal::AtLeast(g) => v >= g,
            Goal::AtMost(g) => v <= g,
        })
    }

    /// "< 15", "≥ 90", "≤ 0".
    pub fn text(&self) -> String {
        let n = |x: f64| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x}") };
        match *self {
            Goal::Below(g) => format!("< {}", n(g)),
            Goal::AtLeast(g) => format!("≥ {}", n(g)),
            Goal::AtMost(g) => format!("≤ {}", n(g)),
        }
    }
}

/// Goals by figure key (the keys `value_of` reads).
pub const GOALS: &[(&str, Goal)] = &[
    ("response_minutes_median", Goal::Below(15.0)),
    ("escalation_minutes_median", Goal::Below(15.0)),
    ("ai_words", Goal::AtLeast(90.0)),
    ("ai_photos", Goal::AtLeast(90.0)),
    ("csat_mean", Goal::AtLeast(4.25)),
    ("csat_share_4plus", Goal::AtLeast(85.0)),
    ("nps", Goal::AtLeast(30.0)),
    ("first_time_fix", Goal::AtLeast(90.0)),
    ("comeback_rate", Goal::AtMost(3.0)),
    ("hot_overdue", Goal::AtMost(0.0)),
    ("labour_efficiency", Goal::AtLeast(90.0)),
];

pub fn goal(key: &str) -> Option<Goal> {
    GOALS.iter().find(|(k, _)| *k == key).map(|(_, g)| *g)
}

/// The value of a figure by key (the dashboard, the gauges and the PDF walk the same keys).
pub fn value_of(f: &Figures, d: &Detail, key: &str) -> Option<f64> {
    match key {
        "cases" => Some(f.cases as f64),
        "response_minutes_median" => f.response_minutes_median,
        "escalation_minutes_median" => f.escalation_minutes_median,
        "ai_words" => f.ai_accuracy.words.rate,
        "ai_photos" => f.ai_accuracy.photos.rate,
        "csat_mean" => f.csat_mean,
        "csat_share_4plus" => f.csat_share_4plus,
        "nps" => f.nps,
        "first_time_fix" => f.first_time_fix,
        "comebacks" => f.comebacks.map(f64::from),
        "comeback_rate" => d.comeback_rate,
        "hot_open" => Some(f.hot_open as f64),
        "hot_overdue" => Some(f.hot_overdue as f64),
        "labour_efficiency" => f.labour_efficiency,
        "minutes_saved" => Some(f.minutes_saved),
        "surveys" => Some(f.surveys as f64),
        _ => None,
    }
}

/// How a figure reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Minutes,
    Percent,
    /// CSAT mean, 1–5.
    Score,
    /// NPS, −100…100.
    Nps,
    Count,
}

pub fn unit(key: &str) -> Unit {
    match key {
        "response_minutes_median" | "escalation_minutes_median" | "minutes_saved" => Unit::Minutes,
        "ai_words" | "ai_photos" | "csat_share_4plus" | "first_time_fix" | "comeback_rate" | "labour_efficiency" => Unit::Percent,
        "csat_mean" => Unit::Score,
        "nps" => Unit::Nps,
        _ => Unit::Count,
    }
}

/// A figure as text, language-neutral ("4.0", "66.7 %", "—"); minutes carry no unit word (the
/// figure's label says "minutes" in the reader's language).
pub fn format(key: &str, v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else { return "—".into() };
    match unit(key) {
        Unit::Minutes if key == "minutes_saved" => format!("{v:.0}"),
        Unit::Minutes => format!("{v:.1}"),
        Unit::Percent => format!("{v:.1} %"),
        Unit::Score => format!("{v:.2}"),
        Unit::Nps => format!("{v:.1}"),
        Unit::Count => format!("{v:.0}"),
    }
}

/// A figure's goal as text ("< 15", "≥ 90 %"), if it has one.
pub fn goal_text(key: &str) -> Option<String> {
    let g = goal(key)?;
    Some(if unit(key) == Unit::Percent { format!("{} %", g.text()) } else { g.text() })
}

/// The figures in the order every surface shows them.
pub const KEYS: &[&str] = &[
    "response_minutes_median",
    "escalation_minutes_median",
    "ai_words",
    "ai_photos",
    "csat_mean",
    "csat_share_4plus",
    "nps",
    "first_time_fix",
    "comebacks",
    "comeback_rate",
    "hot_open",
    "hot_overdue",
    "labour_efficiency",
    "cases",
    "surveys",
    "minutes_saved",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tz() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn answer(fu: &str, at: &str, csat: u8, nps: u8, fixed: &[&str]) -> AnswerFact {
        AnswerFact {
            follow_up_id: fu.into(),
            answered_at: t(at),
            recorded_at: at.into(),
            csat,
            nps,
            fixed: fixed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn periods_are_local_days() {
        let d = |s| parse_day(s).unwrap();
        let p = Period::new(d("2026-12-01"), d("2026-12-08")).unwrap();
        assert_eq!(p.days(), 7);
        // Beijing midnight is 16:00 UTC the day before.
        assert_eq!(p.bounds(&tz()), (t("2026-11-30T16:00:00Z"), t("2026-12-07T16:00:00Z")));
        assert_eq!(Period::month("2026-12"), Some(Period { from: d("2026-12-01"), to: d("2027-01-01") }));
        assert_eq!(Period::month("2026-02").unwrap().days(), 28);
        assert_eq!(Period::month("2026-13"), None);
        assert_eq!(Period::month("2026-1"), None);
        assert_eq!(Period::ending(d("2026-12-31"), 30), Period { from: d("2026-12-02"), to: d("2027-01-01") });
        assert!(Period::new(d("2026-12-08"), d("2026-12-08")).is_err());
        assert_eq!(Period::new(d("2020-01-01"), d("2026-01-01")).unwrap_err().0, "to");
        for bad in ["2026-12-1", " 2026-12-01", "2026-12-01T00:00", "2026-02-30", "２０２６-12-01", ""] {
            assert_eq!(parse_day(bad), None, "{bad:?}");
        }
        assert_eq!(local_day(t("2026-12-01T16:30:00Z"), &tz()), d("2026-12-02"));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 10.0, 2.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn the_latest_answer_per_follow_up_counts() {
        let a = vec![
            answer("f1", "2026-12-02T10:00:00Z", 2, 3, &["no"]),
            answer("f1", "2026-12-03T10:00:00Z", 5, 10, &["yes"]),
            answer("f2", "2026-12-02T11:00:00Z", 4, 8, &[]),
        ];
        let l = latest_answers(&a);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].follow_up_id.as_str(), l[0].csat), ("f2", 4));
        assert_eq!((l[1].follow_up_id.as_str(), l[1].csat), ("f1", 5));
    }

    fn part(p: &str, pos: Option<&str>) -> PartAt {
        PartAt { part: p.into(), position: pos.map(Into::into) }
    }

    #[test]
    fn comebacks_need_the_same_car_the_same_part_and_the_window() {
        let d = Delivery {
            case_id: "k1".into(),
            vehicle_id: "v1".into(),
            at: t("2026-12-01T10:00:00Z"),
            parts: vec![part("door", Some("front_right"))],
        };
        let later = |id: &str, v: &str, at: &str, p: PartAt| LaterCase {
            case_id: id.into(),
            vehicle_id: v.into(),
            created_at: t(at),
            parts: vec![p],
        };
        let same = later("k2", "v1", "2026-12-20T10:00:00Z", part("door", Some("front_right")));
        assert_eq!(comebacks(std::slice::from_ref(&d), &[same], 30), 1);
        // No side on the photo finding: still the same door.
        assert_eq!(comebacks(std::slice::from_ref(&d), &[later("k2", "v1", "2026-12-20T10:00:00Z", part("door", None))], 30), 1);
        // Another side, another part, another car, too late, or before the delivery: not a comeback.
        for l in [
            later("k2", "v1", "2026-12-20T10:00:00Z", part("door", Some("front_left"))),
            later("k2", "v1", "2026-12-20T10:00:00Z", part("bumper", Some("front_right"))),
            later("k2", "v2", "2026-12-20T10:00:00Z", part("door", Some("front_right"))),
            later("k2", "v1", "2026-12-31T10:00:01Z", part("door", Some("front_right"))),
            later("k0", "v1", "2026-11-30T10:00:00Z", part("door", Some("front_right"))),
        ] {
            assert_eq!(comebacks(std::slice::from_ref(&d), &[l.clone()], 30), 0, "{l:?}");
        }
    }

    #[test]
    fn hot_alerts_open_and_overdue_at_an_instant() {
        let a = HotAlert {
            raised_at: t("2026-12-01T10:00:00Z"),
            due_at: Some(t("2026-12-02T10:00:00Z")),
            escalate_at: Some(t("2026-12-04T10:00:00Z")),
            first_response_at: None,
            resolved_at: None,
        };
        assert!(!open_at(&a, t("2026-12-01T09:00:00Z")));
        assert!(open_at(&a, t("2026-12-01T11:00:00Z")) && !overdue_at(&a, t("2026-12-01T11:00:00Z")));
        assert!(overdue_at(&a, t("2026-12-02T10:00:00Z")));
        // Answered in time: not overdue until its escalation time passes unresolved.
        let answered = HotAlert { first_response_at: Some(t("2026-12-01T12:00:00Z")), ..a.clone() };
        assert!(!overdue_at(&answered, t("2026-12-03T10:00:00Z")));
        assert!(overdue_at(&answered, t("2026-12-04T10:00:00Z")));
        let resolved = HotAlert { resolved_at: Some(t("2026-12-03T00:00:00Z")), ..a };
        assert!(overdue_at(&resolved, t("2026-12-02T12:00:00Z")));
        assert!(!open_at(&resolved, t("2026-12-03T00:00:00Z")));
    }

    /// A small period computed by hand.
    #[test]
    fn figures_by_hand() {
        let f = Facts {
            cases: 4,
            // 2, 4, 7 minutes → median 4.
            response_minutes: vec![7.0, 2.0, 4.0],
            // One escalation taken after 20 minutes; one hot alert answered after 60.
            escalation_minutes: vec![20.0],
            alerts_raised: vec![HotAlert {
                raised_at: t("2026-12-03T10:00:00Z"),
                due_at: Some(t("2026-12-04T10:00:00Z")),
                escalate_at: Some(t("2026-12-06T10:00:00Z")),
                first_response_at: Some(t("2026-12-03T11:00:00Z")),
                resolved_at: None,
            }],
            reviewed: vec![
                Reviewed { sources: vec!["customer".into()], status: "confirmed".into() },
                Reviewed { sources: vec!["customer".into(), "vision".into()], status: "confirmed".into() },
                Reviewed { sources: vec!["customer".into()], status: "rejected".into() },
                Reviewed { sources: vec!["vision".into()], status: "corrected".into() },
                Reviewed { sources: vec!["advisor".into()], status: "confirmed".into() },
            ],
            answers: vec![
                answer("f1", "2026-12-05T10:00:00Z", 5, 10, &["yes", "yes"]),
                answer("f2", "2026-12-06T10:00:00Z", 4, 8, &["yes"]),
                answer("f3", "2026-12-07T10:00:00Z", 2, 3, &["no"]),
                answer("f4", "2026-12-07T11:00:00Z", 5, 9, &[]),
            ],
            labour: vec![LabourLine { standard_h: 1.0, clocked_h: 1.25 }, LabourLine { standard_h: 0.5, clocked_h: 0.25 }],
            ..Facts::default()
        };
        let (fig, det) = compute(&f, t("2026-12-08T00:00:00Z"), 12.0, 30);
        assert_eq!(fig.response_minutes_median, Some(4.0));
        // Median of [20, 60] = 40.
        assert_eq!(fig.escalation_minutes_median, Some(40.0));
        assert_eq!((det.escalation_only_minutes_median, det.hot_alert_minutes_median), (Some(20.0), Some(60.0)));
        // Words: 2 confirmed, 1 rejected → 66.67 %; photos: 1 confirmed, 1 corrected → 50 %.
        assert_eq!(fig.ai_accuracy.words, Accuracy { confirmed: 2, corrected: 0, rejected: 1, rate: Some(66.67) });
        assert_eq!(fig.ai_accuracy.photos, Accuracy { confirmed: 1, corrected: 1, rejected: 0, rate: Some(50.0) });
        // CSAT (5 + 4 + 2 + 5) / 4 = 4.0; 3 of 4 are 4+ → 75 %.
        assert_eq!((fig.csat_mean, fig.csat_share_4plus), (Some(4.0), Some(75.0)));
        // NPS: promoters 10, 9; detractor 3 → (2 − 1) / 4 = 25.
        assert_eq!(fig.nps, Some(25.0));
        // First-time fix over the 3 answers that were asked: 2 all-yes → 66.67 %.
        assert_eq!((fig.first_time_fix, det.fixed_asked), (Some(66.67), 3));
        assert_eq!(fig.comebacks, None);
        assert_eq!((fig.hot_open, fig.hot_overdue), (0, 0));
        // Standard 1.5 h against 1.5 h clocked → 100 %.
        assert_eq!(fig.labour_efficiency, Some(100.0));
        assert_eq!((fig.minutes_saved, fig.minutes_saved_per_case, fig.surveys), (48.0, 12.0, 4));
        // Nothing at all: nulls, not zeros.
        let (empty, _) = compute(&Facts::default(), t("2026-12-08T00:00:00Z"), 12.0, 30);
        assert_eq!((empty.csat_mean, empty.nps, empty.first_time_fix, empty.labour_efficiency), (None, None, None, None));
        assert_eq!((empty.ai_accuracy.words.rate, empty.response_minutes_median), (None, None));
        let body = serde_json::to_value(&empty).unwrap();
        assert!(body["csat_mean"].is_null() && body["ai_accuracy"]["photos"]["rate"].is_null());
    }

    #[test]
    fn weeks_cover_the_period() {
        let p = Period::month("2026-12").unwrap();
        let a = vec![answer("f1", "2026-12-01T02:00:00Z", 5, 10, &[]), answer("f2", "2026-12-09T02:00:00Z", 2, 0, &[])];
        let w = weekly(&a, &p, &tz());
        // 2026-12-01 is a Tuesday: weeks start Nov 30, Dec 7, 14, 21, 28.
        assert_eq!(w.len(), 5);
        assert_eq!(w[0].start, parse_day("2026-11-30").unwrap());
        assert_eq!((w[0].surveys, w[0].csat_mean, w[0].nps), (1, Some(5.0), Some(100.0)));
        assert_eq!((w[1].csat_mean, w[1].nps), (Some(2.0), Some(-100.0)));
        assert_eq!((w[2].surveys, w[2].csat_mean), (0, None));
    }

    #[test]
    fn goals_say_whether_they_are_met() {
        assert_eq!(goal("response_minutes_median").unwrap().met(Some(14.9)), Some(true));
        assert_eq!(goal("response_minutes_median").unwrap().met(Some(15.0)), Some(false));
        assert_eq!(goal("ai_words").unwrap().met(None), None);
        assert_eq!(goal("hot_overdue").unwrap().text(), "≤ 0");
        assert_eq!(goal("csat_mean").unwrap().text(), "≥ 4.25");
        for (k, _) in GOALS {
            assert!(KEYS.contains(k), "{k} has a goal but is not shown");
        }
    }
}
