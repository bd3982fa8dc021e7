//! HQ's three pages: 门店对比 (`/stores`), 热点告警 (`/alerts`) and a store's page
//! (`/stores/{id}`). Each reads PostgreSQL (read-only), turns the stores' JSON bodies into view
//! models of plain, already cleaned strings (`fmt`), draws its charts with `crate::ui::charts` (the
//! store's KPI dashboard draws with the same), and renders a template.
//!
//! Alert rules, from the store's `follow_up_alert` record: open = kind "hot" and no `resolved_at`;
//! overdue = open, `due_at` passed and no `first_response_at`; escalated = `escalated_at` set.
//! They are evaluated here, with HQ's clock, rather than taken from the latest KPI snapshot, so the
//! counts are as fresh as the last synced alert.

use std::cmp::Ordering;
use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use serde_json::Value;
use warp::reply::Response;

use super::fmt::{self, clean, fixed, num, pct, whole, NONE};
use super::{unavailable, Chrome, Me, Web};
use crate::ui::charts::{self, Axis, Bar, GoalLine, Svg};
use crate::ui::i18n::Strings;
use crate::ui::{html, urlencode, Query};

/// At most this many open hot alerts are read at once (the page says when there are more).
const ALERTS_MAX: i64 = 2000;
const SUMMARY_MAX: usize = 200;

fn body(text: &str) -> Value {
    // A body that is not JSON (hq-ingest keeps such a body as a JSON string) reads as empty.
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn store_href(id: &str) -> String {
    format!("/stores/{}", urlencode(id))
}

// ---- alerts -------------------------------------------------------------------------------------

pub(crate) struct AlertRow {
    pub store: String,
    pub store_href: String,
    pub id: String,
    pub case_id: String,
    pub category: String,
    pub reasons: Vec<String>,
    pub summary: String,
    pub raised: String,
    pub due: String,
    pub open: bool,
    pub overdue: bool,
    pub escalated: bool,
    pub hot: bool,
    pub resolved: String,
    due_at: Option<chrono::DateTime<chrono::Utc>>,
}

const CATEGORIES: &[&str] = &["quality", "price", "time", "staff", "other"];
const REASONS: &[&str] = &["low_csat", "detractor", "not_fixed"];

fn alert_row(t: &Strings, store: &str, record_id: &str, b: &Value, now: chrono::DateTime<chrono::Utc>) -> AlertRow {
    let s = |k: &str| b.get(k).and_then(Value::as_str);
    let hot = s("kind") == Some("hot");
    let open = hot && !fmt::is_set(b, "resolved_at");
    let due_at = s("due_at").and_then(fmt::parse_time);
    let overdue = open && due_at.is_some_and(|d| d < now) && !fmt::is_set(b, "first_response_at");
    let category = s("category").filter(|c| CATEGORIES.contains(c)).unwrap_or("other");
    let reasons = b
        .get("reasons")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|r| REASONS.contains(r))
                .take(REASONS.len())
                .map(|r| t.s(&format!("hqweb_reason.{r}")).to_string())
                .collect()
        })
        .unwrap_or_default();
    AlertRow {
        store: clean(store, 64),
        store_href: store_href(store),
        id: clean(s("id").unwrap_or(record_id), 64),
        case_id: s("case_id").map(|c| clean(c, 64)).unwrap_or_default(),
        category: t.s(&format!("hqweb_category.{category}")).to_string(),
        reasons,
        summary: fmt::text(b, "summary", SUMMARY_MAX).unwrap_or_else(|| NONE.to_string()),
        raised: fmt::show_time(s("raised_at")),
        due: fmt::show_time(s("due_at")),
        open,
        overdue,
        escalated: fmt::is_set(b, "escalated_at"),
        hot,
        resolved: if fmt::is_set(b, "resolved_at") { fmt::show_time(s("resolved_at")) } else { String::new() },
        due_at,
    }
}

/// Oldest due first; alerts without a readable due time last; then by store and id, so the
/// order is stable.
fn by_due(a: &AlertRow, b: &AlertRow) -> Ordering {
    match (a.due_at, b.due_at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.store.cmp(&b.store))
    .then_with(|| a.id.cmp(&b.id))
}

/// Every open hot alert of every store (bounded), oldest due first; and whether there were more.
async fn open_hot_alerts(w: &Web, t: &Strings) -> Result<(Vec<AlertRow>, bool), super::WebError> {
    let pg = w.accounts.db.get().await?;
    let rows = pg
        .query(
            "SELECT store_id, record_id, body::text FROM hq_records
             WHERE record_type = 'follow_up_alert' AND body ->> 'kind' = 'hot' AND body ->> 'resolved_at' IS NULL
             ORDER BY body ->> 'due_at', store_id, record_id LIMIT $1",
            &[&(ALERTS_MAX + 1)],
        )
        .await
        .map_err(crate::sync::hq::HqError::from)?;
    let more = rows.len() as i64 > ALERTS_MAX;
    let now = chrono::Utc::now();
    let mut list: Vec<AlertRow> = rows
        .iter()
        .take(ALERTS_MAX as usize)
        .map(|r| alert_row(t, r.get::<_, &str>(0), r.get::<_, &str>(1), &body(r.get::<_, &str>(2)), now))
        .filter(|a| a.open)
        .collect();
    list.sort_by(by_due);
    Ok((list, more))
}

#[derive(Template)]
#[template(path = "hq_web_alerts.html", config = "src/ui/askama.toml")]
struct AlertsPage {
    c: Chrome,
    alerts: Vec<AlertRow>,
    overdue: usize,
    escalated: usize,
    more: bool,
}

pub(crate) async fn alerts(me: Me, w: Arc<Web>, q: Query) -> Response {
    match open_hot_alerts(&w, &me.t).await {
        Ok((alerts, more)) => {
            let overdue = alerts.iter().filter(|a| a.overdue).count();
            let escalated = alerts.iter().filter(|a| a.escalated).count();
            html(&AlertsPage { c: me.chrome(me.t.s("hqweb_alerts.title"), &q), alerts, overdue, escalated, more }, StatusCode::OK)
        }
        Err(e) => unavailable(me.t, &e),
    }
}

// ---- the comparison -------------------------------------------------------------------------

/// One store's latest figures, shown and as numbers (for sorting and the charts).
pub(crate) struct StoreRow {
    pub id: String,
    pub href: String,
    pub day: String,
    pub csat: String,
    pub csat_share: String,
    pub nps: String,
    pub ftf: String,
    pub response: String,
    /// Above the goal (< 15 minutes): shown in red.
    pub response_over: bool,
    pub ai_words: String,
    pub ai_photos: String,
    pub hot_open: usize,
    pub hot_overdue: usize,
    pub saved: String,
    pub seen: String,
    pub seen_at: String,
    pub link: String,
    /// "N records behind", or empty when nothing is waiting.
    pub backlog: String,
    /// Not heard from for more than an hour.
    pub stale: bool,
    raw_id: String,
    v: Value,
    age: Option<f64>,
}

pub const RESPONSE_GOAL_MIN: f64 = 15.0;

fn ago(t: &Strings, secs: Option<f64>) -> String {
    match secs {
        None => NONE.to_string(),
        Some(s) if s < 60.0 => t.s("hqweb_ago.now").to_string(),
        Some(s) if s < 3600.0 => t.f("hqweb_ago.minutes", &[("n", ((s / 60.0) as i64).to_string().as_str())]),
        Some(s) if s < 86400.0 => t.f("hqweb_ago.hours", &[("n", ((s / 3600.0) as i64).to_string().as_str())]),
        Some(s) => t.f("hqweb_ago.days", &[("n", ((s / 86400.0) as i64).to_string().as_str())]),
    }
}

fn backlog(t: &Strings, n: i64) -> String {
    if n > 0 {
        t.f("hqweb_stores.backlog", &[("n", n.to_string().as_str())])
    } else {
        String::new()
    }
}

fn store_row(t: &Strings, r: &tokio_postgres::Row, alerts: &[AlertRow]) -> StoreRow {
    let raw_id: String = r.get(0);
    let v = r.get::<_, Option<&str>>(2).map(body).unwrap_or(Value::Null);
    let age: Option<f64> = r.get::<_, Option<f64>>(4).filter(|x| x.is_finite());
    let response = num(&v, &["response_minutes_median"]);
    let id = clean(&raw_id, 64);
    let mine = alerts.iter().filter(|a| a.store == id);
    let (open, overdue) = mine.fold((0, 0), |(o, d), a| (o + 1, d + a.overdue as usize));
    StoreRow {
        href: store_href(&raw_id),
        day: r.get::<_, Option<&str>>(1).map(|d| clean(d, 16)).unwrap_or_else(|| NONE.to_string()),
        csat: fixed(num(&v, &["csat_mean"]), 2),
        csat_share: pct(num(&v, &["csat_share_4plus"])),
        nps: whole(num(&v, &["nps"])),
        ftf: pct(num(&v, &["first_time_fix"])),
        response: fixed(response, 1),
        response_over: response.is_some_and(|m| m >= RESPONSE_GOAL_MIN),
        ai_words: pct(num(&v, &["ai_accuracy", "words", "rate"])),
        ai_photos: pct(num(&v, &["ai_accuracy", "photos", "rate"])),
        hot_open: open,
        hot_overdue: overdue,
        saved: whole(num(&v, &["minutes_saved"])),
        seen: ago(t, age),
        seen_at: r.get::<_, Option<&str>>(3).map(|s| clean(s, 32)).unwrap_or_else(|| NONE.to_string()),
        link: r.get::<_, Option<&str>>(5).map(|s| clean(s, 32)).filter(|s| !s.is_empty()).unwrap_or_else(|| NONE.to_string()),
        backlog: backlog(t, r.get(6)),
        stale: age.is_none_or(|a| a > 3600.0),
        id,
        raw_id,
        v,
        age,
    }
}

/// The sortable columns: (query value, what it reads, whether a higher value sorts first by default).
const SORTS: &[(&str, &[&str], bool)] = &[
    ("store", &[], false),
    ("csat", &["csat_mean"], true),
    ("nps", &["nps"], true),
    ("ftf", &["first_time_fix"], true),
    ("response", &["response_minutes_median"], false),
    ("ai", &["ai_accuracy", "words", "rate"], true),
    ("hot", &[], true),
    ("saved", &["minutes_saved"], true),
    ("lag", &[], true),
];

fn sort_rows(rows: &mut [StoreRow], key: &str, desc: bool) {
    let path = SORTS.iter().find(|s| s.0 == key).map(|s| s.1).unwrap_or(&[]);
    let value = |r: &StoreRow| -> Option<f64> {
        match key {
            "hot" => Some(r.hot_open as f64 + r.hot_overdue as f64 / 1000.0),
            "lag" => r.age,
            _ => num(&r.v, path),
        }
    };
    rows.sort_by(|a, b| {
        let o = if key == "store" {
            a.raw_id.cmp(&b.raw_id)
        } else {
            // Stores without a figure go last in either direction.
            match (value(a), value(b)) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        };
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.raw_id.cmp(&b.raw_id))
    });
}

pub(crate) struct SortLink {
    pub key: &'static str,
    pub label: String,
    pub href: String,
    /// "asc" / "desc" on the current column (aria-sort), else empty.
    pub current: &'static str,
}

#[derive(Template)]
#[template(path = "hq_web_stores.html", config = "src/ui/askama.toml")]
struct StoresPage {
    c: Chrome,
    rows: Vec<StoreRow>,
    heads: Vec<SortLink>,
    charts: Vec<Svg>,
    goal_title: String,
    legend: String,
    alerts_more: bool,
}

pub(crate) async fn stores(me: Me, w: Arc<Web>, q: Query) -> Response {
    let t = me.t;
    let (alerts, alerts_more) = match open_hot_alerts(&w, &t).await {
        Ok(x) => x,
        Err(e) => return unavailable(t, &e),
    };
    let pg = match w.accounts.db.get().await {
        Ok(pg) => pg,
        Err(e) => return unavailable(t, &e),
    };
    let rows = pg
        .query(
            "SELECT l.store_id, k.record_id, k.body::text,
                    to_char(l.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    EXTRACT(EPOCH FROM l.since_last_seen)::float8, l.link_state, l.backlog_estimate
             FROM hq_sync_lag l
             LEFT JOIN LATERAL (SELECT record_id, body FROM hq_records r
                                WHERE r.store_id = l.store_id AND r.record_type = 'kpi_snapshot'
                                ORDER BY r.record_id DESC LIMIT 1) k ON true
             ORDER BY l.store_id LIMIT 1000",
            &[],
        )
        .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return unavailable(t, &crate::sync::hq::describe_pg(&e)),
    };
    let mut rows: Vec<StoreRow> = rows.iter().map(|r| store_row(&t, r, &alerts)).collect();
    let key = q.get("sort").and_then(|s| SORTS.iter().find(|x| x.0 == s)).map(|x| x.0).unwrap_or("store");
    let default_desc = SORTS.iter().find(|x| x.0 == key).is_some_and(|x| x.2);
    let desc = match q.get("dir") {
        Some("asc") => false,
        Some("desc") => true,
        _ => default_desc,
    };
    sort_rows(&mut rows, key, desc);
    let heads = SORTS
        .iter()
        .map(|(k, _, high_first)| {
            let here = *k == key;
            let next_desc = if here { !desc } else { *high_first };
            SortLink {
                key: *k,
                label: t.s(&format!("hqweb_col.{k}")).to_string(),
                href: format!("/stores?sort={k}&dir={}", if next_desc { "desc" } else { "asc" }),
                current: if !here {
                    ""
                } else if desc {
                    "descending"
                } else {
                    "ascending"
                },
            }
        })
        .collect();
    let goal = format!("{RESPONSE_GOAL_MIN:.0}");
    // A store's name is cut short for the axis; the bar's tooltip and the table name it in full.
    // CSAT has no goal here (neutral bars); an NPS below zero shows red.
    let csat: Vec<Bar> =
        rows.iter().map(|r| Bar { label: clean(&r.id, 12), value: num(&r.v, &["csat_mean"]), text: r.csat.clone(), good: None }).collect();
    let nps: Vec<Bar> = rows
        .iter()
        .map(|r| {
            let v = num(&r.v, &["nps"]);
            Bar { label: clean(&r.id, 12), value: v, text: r.nps.clone(), good: v.map(|v| v >= 0.0) }
        })
        .collect();
    html(
        &StoresPage {
            c: me.chrome(t.s("hqweb_stores.title"), &q),
            rows,
            heads,
            charts: vec![
                charts::bars("chart-csat", t.s("hqweb_chart.csat"), &csat, &Axis { min: 0.0, max: 5.0, step: 1.0 }, None),
                charts::bars("chart-nps", t.s("hqweb_chart.nps"), &nps, &Axis { min: -100.0, max: 100.0, step: 50.0 }, None),
            ],
            goal_title: t.f("hqweb_stores.goal", &[("n", goal.as_str())]),
            legend: t.f("hqweb_stores.legend", &[("n", goal.as_str())]),
            alerts_more,
        },
        StatusCode::OK,
    )
}

// ---- one store ------------------------------------------------------------------------------

/// The KPIs charted on a store's page: (key, JSON path, fixed axis (min, max, step), goal, how a
/// value shows). Without a fixed axis, the chart fits the data (and the goal).
type Kpi = (&'static str, &'static [&'static str], Option<(f64, f64, f64)>, Option<f64>, fn(Option<f64>) -> String);

fn two(x: Option<f64>) -> String {
    fixed(x, 2)
}

fn one(x: Option<f64>) -> String {
    fixed(x, 1)
}

const KPIS: &[Kpi] = &[
    ("csat_mean", &["csat_mean"], Some((1.0, 5.0, 1.0)), None, two),
    ("csat_share_4plus", &["csat_share_4plus"], Some((0.0, 100.0, 25.0)), None, pct),
    ("nps", &["nps"], Some((-100.0, 100.0, 50.0)), None, whole),
    ("first_time_fix", &["first_time_fix"], Some((0.0, 100.0, 25.0)), None, pct),
    ("response_minutes_median", &["response_minutes_median"], None, Some(RESPONSE_GOAL_MIN), one),
    ("escalation_minutes_median", &["escalation_minutes_median"], None, Some(RESPONSE_GOAL_MIN), one),
    ("ai_words", &["ai_accuracy", "words", "rate"], Some((0.0, 100.0, 25.0)), None, pct),
    ("ai_photos", &["ai_accuracy", "photos", "rate"], Some((0.0, 100.0, 25.0)), None, pct),
    ("hot_open", &["hot_open"], None, None, whole),
    ("hot_overdue", &["hot_overdue"], None, None, whole),
    ("comebacks", &["comebacks"], None, None, whole),
    ("labour_efficiency", &["labour_efficiency"], None, None, pct),
    ("minutes_saved", &["minutes_saved"], None, None, whole),
    ("surveys", &["surveys"], None, None, whole),
];

/// One KPI's chart on a store's page, with its newest value shown beside it.
pub(crate) struct KpiLine {
    pub key: &'static str,
    pub latest: String,
    pub chart: Svg,
}

/// At most this many days are labelled under a line chart.
const DAY_LABELS: usize = 5;

fn kpi_line(t: &Strings, &(key, path, axis, goal, show): &Kpi, days: &[(String, Value)]) -> KpiLine {
    // A snapshot's day as "MM-DD" under the axis (as the store's dashboard writes it): a full date
    // does not fit under the last point.
    let day = |d: &str| match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
        Ok(x) => x.format("%m-%d").to_string(),
        Err(_) => clean(d, 16),
    };
    let points: Vec<(String, Option<f64>)> = days.iter().map(|(d, v)| (day(d), num(v, path))).collect();
    let axis = match axis {
        Some((min, max, step)) => Axis { min, max, step },
        None => Axis::fit(points.iter().filter_map(|p| p.1), goal.unwrap_or(0.0)),
    };
    let goal = goal.map(|g| GoalLine { value: g, label: format!("{} {}", t.s("hqweb_chart.goal"), show(Some(g))) });
    let title = t.s(&format!("hqweb_kpi.{key}")).to_string();
    KpiLine {
        key,
        latest: show(points.iter().rev().find_map(|p| p.1)),
        chart: charts::line(&format!("kpi-{key}"), &title, &points, &axis, goal.as_ref(), DAY_LABELS),
    }
}

#[derive(Template)]
#[template(path = "hq_web_store.html", config = "src/ui/askama.toml")]
struct StorePage {
    c: Chrome,
    day: String,
    period: String,
    seen: String,
    link: String,
    backlog: String,
    history: String,
    charts: Vec<KpiLine>,
    snapshots: usize,
    alerts: Vec<AlertRow>,
}

pub(crate) async fn store(id: String, me: Me, w: Arc<Web>, q: Query) -> Response {
    let t = me.t;
    // Store ids are what hq-ingest accepts; anything else cannot be a store.
    if !crate::sync::wire::valid_store_id(&id) {
        return super::error_page(t, StatusCode::NOT_FOUND, "hqweb_err.no_store");
    }
    let pg = match w.accounts.db.get().await {
        Ok(pg) => pg,
        Err(e) => return unavailable(t, &e),
    };
    let read = async {
        let head = pg
            .query_opt(
                "SELECT EXTRACT(EPOCH FROM since_last_seen)::float8, link_state, backlog_estimate FROM hq_sync_lag WHERE store_id = $1",
                &[&id],
            )
            .await?;
        let snaps = pg
            .query(
                "SELECT record_id, body::text FROM hq_records WHERE store_id = $1 AND record_type = 'kpi_snapshot'
                 ORDER BY record_id DESC LIMIT 30",
                &[&id],
            )
            .await?;
        let alerts = pg
            .query(
                "SELECT record_id, body::text FROM hq_records WHERE store_id = $1 AND record_type = 'follow_up_alert'
                 ORDER BY (body ->> 'resolved_at') IS NULL DESC, at DESC, record_id LIMIT 200",
                &[&id],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>((head, snaps, alerts))
    };
    let (head, snaps, alert_rows) = match read.await {
        Ok(x) => x,
        Err(e) => return unavailable(t, &crate::sync::hq::describe_pg(&e)),
    };
    let Some(head) = head else { return super::error_page(t, StatusCode::NOT_FOUND, "hqweb_err.no_store") };
    let mut days: Vec<(String, Value)> = snaps.iter().map(|r| (r.get::<_, String>(0), body(r.get::<_, &str>(1)))).collect();
    days.reverse();
    let latest = days.last().map(|d| d.1.clone()).unwrap_or(Value::Null);
    let charts = KPIS.iter().map(|k| kpi_line(&t, k, &days)).collect();
    let now = chrono::Utc::now();
    let mut alerts: Vec<AlertRow> =
        alert_rows.iter().map(|r| alert_row(&t, &id, r.get::<_, &str>(0), &body(r.get::<_, &str>(1)), now)).collect();
    // Open ones first, oldest due first; then the closed ones as PostgreSQL gave them (newest).
    alerts.sort_by(|a, b| b.open.cmp(&a.open).then_with(|| if a.open && b.open { by_due(a, b) } else { Ordering::Equal }));
    let age: Option<f64> = head.get::<_, Option<f64>>(0).filter(|x| x.is_finite());
    html(
        &StorePage {
            c: me.chrome(&t.f("hqweb_store.title", &[("store", clean(&id, 64).as_str())]), &q),
            day: days.last().map(|d| clean(&d.0, 16)).unwrap_or_else(|| NONE.to_string()),
            period: whole(num(&latest, &["period_days"])),
            seen: ago(&t, age),
            link: head.get::<_, Option<&str>>(1).map(|s| clean(s, 32)).filter(|s| !s.is_empty()).unwrap_or_else(|| NONE.to_string()),
            backlog: backlog(&t, head.get(2)),
            history: t.f("hqweb_store.history", &[("n", days.len().to_string().as_str())]),
            snapshots: days.len(),
            charts,
            alerts,
        },
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::i18n::UiLang;
    use serde_json::json;

    #[test]
    fn alert_rules() {
        let t = Strings::new(UiLang::Zh);
        let now = chrono::Utc::now();
        let past = (now - chrono::Duration::hours(1)).to_rfc3339();
        let future = (now + chrono::Duration::hours(1)).to_rfc3339();
        let a = alert_row(&t, "s1", "a1", &json!({"kind": "hot", "due_at": past, "resolved_at": null}), now);
        assert!(a.open && a.overdue && !a.escalated);
        let b = alert_row(&t, "s1", "a2", &json!({"kind": "hot", "due_at": past, "first_response_at": past}), now);
        assert!(b.open && !b.overdue, "answered in time is not overdue");
        let c = alert_row(&t, "s1", "a3", &json!({"kind": "hot", "due_at": future, "escalated_at": past}), now);
        assert!(c.open && !c.overdue && c.escalated);
        let d = alert_row(&t, "s1", "a4", &json!({"kind": "suggestion", "due_at": past}), now);
        assert!(!d.open && !d.overdue, "a suggestion is never a hot alert");
        let e = alert_row(&t, "s1", "a5", &json!({"kind": "hot", "resolved_at": past}), now);
        assert!(!e.open);
        let hostile = alert_row(&t, "s1", "a6", &json!({"kind": "hot", "category": "<b>", "reasons": ["x", "low_csat"], "due_at": 7}), now);
        assert_eq!(hostile.category, t.s("hqweb_category.other"));
        assert_eq!(hostile.reasons.len(), 1);
        assert_eq!(hostile.due, NONE);
        let mut v = [c, a, hostile];
        v.sort_by(by_due);
        assert_eq!(v.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["a1", "a3", "a6"]);
    }
}
