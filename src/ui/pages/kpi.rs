//! The manager's KPI dashboard (门店指标, `/manager/kpi`): the figures of a month (or the last 30
//! days) against their goals, CSAT and NPS per week and the response-time trend from the daily
//! snapshots as server-rendered SVG (`ui::charts`), a month picker and the monthly PDF.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;
use crate::domain::kpi;
use crate::kpi::KpiError;
use crate::ui::charts::{self, Axis, Bar, GoalLine, Svg};

pub struct KpiCard {
    /// `kpi-<key>` (the tests and the page's CSS find a figure by it).
    pub id: String,
    pub label: String,
    pub value: String,
    pub goal: Option<String>,
    /// `ok`, `bad` or `none` (no goal, or no data).
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "kpi.html", config = "src/ui/askama.toml")]
struct KpiPage {
    c: Chrome,
    period: String,
    as_of: String,
    month: String,
    pdf_href: String,
    cards: Vec<KpiCard>,
    csat_chart: Svg,
    nps_chart: Svg,
    response_chart: Svg,
    saved_note: String,
    detail: String,
}

fn kpi_error(e: KpiError) -> ApiError {
    match e {
        KpiError::Invalid { field, message } => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", field, message),
        KpiError::Store(s) => s.into(),
        KpiError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    }
}

/// The goal as the reader sees it ("目标 < 15").
fn goal_words(t: &Strings, key: &str) -> Option<String> {
    kpi::goal_text(key).map(|g| t.f("kpi_dash.goal", &[("goal", &g)]))
}

pub async fn kpi_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let t = p.t;
    let (period, month) = match q.get("month") {
        Some(m) => match s.kpi.month(Some(m)) {
            Ok(period) => (period, m.to_string()),
            Err(e) => return failed(&p, kpi_error(e)),
        },
        None => (s.kpi.default_period(), s.kpi.today().format("%Y-%m").to_string()),
    };
    let report = match s.kpi.report(period).await {
        Ok(r) => r,
        Err(e) => return failed(&p, kpi_error(e)),
    };
    let trend = match s.kpi.trend(period, "response_minutes_median").await {
        Ok(v) => v,
        Err(e) => return failed(&p, kpi_error(e)),
    };
    let (f, d) = (&report.figures, &report.detail);
    let cards = kpi::KEYS
        .iter()
        .map(|k| {
            let v = kpi::value_of(f, d, k);
            let state = match kpi::goal(k).and_then(|g| g.met(v)) {
                Some(true) => "ok",
                Some(false) => "bad",
                None => "none",
            };
            KpiCard {
                id: format!("kpi-{}", k.replace('_', "-")),
                label: t.of("kpi_fig", k),
                value: kpi::format(k, v),
                goal: goal_words(&t, k),
                state,
            }
        })
        .collect();

    let week_label = |w: &kpi::Week| w.start.format("%m-%d").to_string();
    let csat_goal = kpi::goal("csat_mean");
    let csat_bars: Vec<Bar> = report
        .weeks
        .iter()
        .map(|w| Bar {
            label: week_label(w),
            value: w.csat_mean,
            text: kpi::format("csat_mean", w.csat_mean),
            good: csat_goal.and_then(|g| g.met(w.csat_mean)),
        })
        .collect();
    let nps_goal = kpi::goal("nps");
    let nps_bars: Vec<Bar> = report
        .weeks
        .iter()
        .map(|w| Bar { label: week_label(w), value: w.nps, text: kpi::format("nps", w.nps), good: nps_goal.and_then(|g| g.met(w.nps)) })
        .collect();
    let line = |key: &str| {
        let g = kpi::goal(key)?;
        let value = match g {
            kpi::Goal::Below(x) | kpi::Goal::AtLeast(x) | kpi::Goal::AtMost(x) => x,
        };
        Some(GoalLine { value, label: goal_words(&t, key)? })
    };
    let csat_chart = charts::bars(
        "kpi-chart-csat",
        t.s("kpi_chart.csat"),
        &csat_bars,
        &Axis { min: 0.0, max: 5.0, step: 1.0 },
        line("csat_mean").as_ref(),
    );
    let nps_chart =
        charts::bars("kpi-chart-nps", t.s("kpi_chart.nps"), &nps_bars, &Axis { min: -100.0, max: 100.0, step: 50.0 }, line("nps").as_ref());
    let points: Vec<(String, Option<f64>)> = trend.iter().map(|(day, v)| (day.format("%m-%d").to_string(), *v)).collect();
    let axis = Axis::fit(points.iter().filter_map(|(_, v)| *v), 20.0);
    let response_chart =
        charts::line("kpi-chart-response", t.s("kpi_chart.response"), &points, &axis, line("response_minutes_median").as_ref(), 8);

    let per_case = kpi::format("response_minutes_median", Some(f.minutes_saved_per_case));
    let page = KpiPage {
        c: p.chrome(t.s("kpi_dash.title"), &q),
        period: t.f(
            "kpi_dash.period",
            &[("from", &period.from.to_string()), ("to", &period.last_day().to_string()), ("offset", &report.utc_offset)],
        ),
        as_of: s.kpi.local_time(&report.as_of),
        pdf_href: format!("/manager/kpi/report.pdf?month={}", urlencode(&month)),
        month,
        cards,
        csat_chart,
        nps_chart,
        response_chart,
        saved_note: t.f("kpi_dash.saved_note", &[("n", &per_case)]),
        detail: t.f(
            "kpi_dash.detail",
            &[
                ("responses", &d.responses.to_string()),
                ("escalations", &d.escalations.to_string()),
                ("alerts", &d.hot_alert_responses.to_string()),
                ("delivered", &d.delivered.to_string()),
                ("lines", &d.labour_lines.to_string()),
            ],
        ),
    };
    html(&page, StatusCode::OK)
}

/// The month's PDF (the same as `GET /api/v1/kpi/report.pdf`), for the dashboard's link.
pub async fn kpi_pdf(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    match crate::api::kpi::month_pdf(&s, q.get("month")).await {
        Ok(r) => r,
        Err(e) => failed(&p, e),
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::kpi::KEYS;
    use crate::ui::i18n::{Strings, UiLang};

    /// The dashboard names figures by key (`kpi_fig.<key>`): each one has its words in both
    /// catalogues.
    #[test]
    fn every_figure_has_its_words() {
        let keys = crate::ui::i18n::keys();
        for k in KEYS {
            let key = format!("kpi_fig.{k}");
            assert!(keys.contains(&key), "assets/ui/zh-CN.toml lacks {key}");
            assert_ne!(Strings::new(UiLang::Zh).s(&key), Strings::new(UiLang::En).s(&key), "{key}");
        }
    }
}
