//! The store's KPI service (门店指标): the figures of a period (`domain::kpi` does the maths over
//! what `store::kpi` reads), the daily snapshot HQ receives, the background task that snapshots
//! each finished local day, the cached figures `/metrics` exports and the monthly PDF.
//!
//! Invariants:
//! - "Today" is the injected clock's local day in the follow-up policy's time zone, so tests move
//!   time instead of sleeping, and a day is a store's day wherever the box's clock is set.
//! - A snapshot covers the `SNAPSHOT_DAYS` local days ending with its day; it is stored and put in
//!   the outbox in one transaction, its version one higher each time the day is recomputed.
//! - No snapshot is made for a day before the store's database existed, nor for a future day.
//! - `/metrics` computes the figures at most once a minute (`CACHE_FOR`), whatever the scrape rate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::clock::{self, Clock};
use crate::domain::follow_up::Policy;
use crate::domain::kpi::{self, Detail, Figures, Goal, Period, Week, SNAPSHOT_DAYS};
use crate::domain::Actor;
use crate::store::{self, Store, StoreError};

/// How long `/metrics` reuses computed figures.
pub const CACHE_FOR: StdDuration = StdDuration::from_secs(60);
/// How far back the daily task fills in days it missed (the box was off).
const CATCH_UP_DAYS: i64 = 7;
/// The daily task's first look after start, then its interval.
const FIRST_LOOK: StdDuration = StdDuration::from_secs(2);
const EVERY: StdDuration = StdDuration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum KpiError {
    /// A bad date, month or period; `field` names the parameter.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The PDF cannot be made (no report font); the figures are still served.
    #[error("{0}")]
    Unavailable(String),
}

impl KpiError {
    fn invalid(field: &'static str, message: impl Into<String>) -> KpiError {
        KpiError::Invalid { field, message: message.into() }
    }
}

/// A figure's goal as the dashboard and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct GoalView {
    #[serde(flatten)]
    pub goal: Goal,
    pub text: String,
    /// None when the figure has no data.
    pub met: Option<bool>,
}

/// The KPIs of a period, with how they came about and the weekly scores for the charts.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub store_id: String,
    pub from: NaiveDate,
    /// Exclusive: the period is `[from, to)`.
    pub to: NaiveDate,
    pub period_days: i64,
    pub utc_offset: String,
    /// The instant open and overdue alerts were judged at.
    pub as_of: String,
    pub figures: Figures,
    pub detail: Detail,
    pub goals: BTreeMap<&'static str, GoalView>,
    pub weeks: Vec<Week>,
}

/// A stored daily snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub day: NaiveDate,
    pub version: i64,
    pub body: Value,
}

pub struct KpiService {
    store: Store,
    clock: Clock,
    policy: Policy,
    store_id: String,
    store_name: String,
    font: PathBuf,
    cache: Mutex<Option<(Instant, Arc<Report>)>>,
}

impl KpiService {
    pub fn new(store: Store, clock: Clock, policy: Policy, store_id: String, store_name: String, font: PathBuf) -> KpiService {
        KpiService { store, clock, policy, store_id, store_name, font, cache: Mutex::new(None) }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The store's local day now.
    pub fn today(&self) -> NaiveDate {
        kpi::local_day(self.clock.now(), &self.policy.tz)
    }

    /// The last 30 local days, today included.
    pub fn default_period(&self) -> Period {
        Period::ending(self.today(), SNAPSHOT_DAYS)
    }

    /// The period of `from` / `to` query values (`YYYY-MM-DD`, `[from, to)`); either left out
    /// falls back to the last 30 days (ending with `to` when only `to` is given).
    pub fn period(&self, from: Option<&str>, to: Option<&str>) -> Result<Period, KpiError> {
        let day = |field: &'static str, v: &str| kpi::parse_day(v).ok_or_else(|| KpiError::invalid(field, "a local date YYYY-MM-DD"));
        let to_day = to.map(|t| day("to", t)).transpose()?;
        let from_day = from.map(|f| day("from", f)).transpose()?;
        let p = match (from_day, to_day) {
            (None, None) => return Ok(self.default_period()),
            (Some(f), None) => Period::new(f, f + Duration::days(SNAPSHOT_DAYS)),
            (None, Some(t)) => Period::new(t - Duration::days(SNAPSHOT_DAYS), t),
            (Some(f), Some(t)) => Period::new(f, t),
        };
        p.map_err(|(field, m)| KpiError::invalid(field, m))
    }

    /// The period of a `month` value (`YYYY-MM`; None: this month).
    pub fn month(&self, month: Option<&str>) -> Result<Period, KpiError> {
        let m = month.map(str::to_string).unwrap_or_else(|| self.today().format("%Y-%m").to_string());
        Period::month(&m).ok_or_else(|| KpiError::invalid("month", "a month YYYY-MM"))
    }

    /// A stamp as the store's local wall-clock time ("2026-11-10 00:00"), for the pages and the PDF.
    pub fn local_time(&self, stamp: &str) -> String {
        match clock::parse(stamp) {
            Some(t) => t.with_timezone(&self.policy.tz).format("%Y-%m-%d %H:%M").to_string(),
            None => stamp.to_string(),
        }
    }

    /// The instant "open" and "overdue" are judged at: now, or the end of a period that is over.
    fn as_of(&self, p: &Period) -> DateTime<Utc> {
        self.clock.now().min(p.bounds(&self.policy.tz).1)
    }

    /// The KPIs of a period.
    pub async fn report(&self, p: Period) -> Result<Report, KpiError> {
        let (from, to) = p.bounds(&self.policy.tz);
        let as_of = self.as_of(&p);
        let days = self.policy.comeback_days;
        let facts = self.store.read(move |tx| store::kpi::facts(tx, from, to, as_of, days)).await?;
        let (figures, detail) = kpi::compute(&facts, as_of, self.policy.minutes_saved_per_case, days);
        let goals = kpi::GOALS
            .iter()
            .map(|(k, g)| {
                (*k, GoalView { goal: *g, text: kpi::goal_text(k).unwrap_or_default(), met: g.met(kpi::value_of(&figures, &detail, k)) })
            })
            .collect();
        Ok(Report {
            store_id: self.store_id.clone(),
            from: p.from,
            to: p.to,
            period_days: p.days(),
            utc_offset: self.policy.tz.to_string(),
            as_of: clock::stamp(as_of),
            weeks: kpi::weekly(&facts.answers, &p, &self.policy.tz),
            figures,
            detail,
            goals,
        })
    }

    /// The last 30 days' KPIs, computed at most once a minute (for `/metrics`).
    pub async fn recent(&self) -> Result<Arc<Report>, KpiError> {
        if let Some((at, r)) = self.cache.lock().ok().and_then(|c| c.clone()) {
            if at.elapsed() < CACHE_FOR {
                return Ok(r);
            }
        }
        let r = Arc::new(self.report(self.default_period()).await?);
        if let Ok(mut c) = self.cache.lock() {
            *c = Some((Instant::now(), r.clone()));
        }
        Ok(r)
    }

    /// The snapshot body of a day: HQ's contract (see `domain::kpi::Figures`).
    pub async fn snapshot_body(&self, day: NaiveDate) -> Result<Value, KpiError> {
        let r = self.report(Period::ending(day, SNAPSHOT_DAYS)).await?;
        let mut body = serde_json::to_value(&r.figures).map_err(|e| StoreError::Encode(format!("KPI snapshot: {e}")))?;
        if let Some(o) = body.as_object_mut() {
            o.insert("day".into(), Value::from(day.format("%Y-%m-%d").to_string()));
            o.insert("store_id".into(), Value::from(self.store_id.clone()));
            o.insert("period_days".into(), Value::from(SNAPSHOT_DAYS));
        }
        Ok(body)
    }

    /// Compute and store a day's snapshot and append it to the outbox (one transaction). `actor`
    /// is the manager who asked for it (audited); None for the daily task.
    pub async fn snapshot(&self, actor: Option<&Actor>, day: NaiveDate) -> Result<Snapshot, KpiError> {
        let today = self.today();
        if day > today {
            return Err(KpiError::invalid("day", "a day that has begun (today or earlier)"));
        }
        // HQ keeps a year of daily figures; a day further back is a typo, not a recompute.
        if (today - day).num_days() > kpi::MAX_PERIOD_DAYS {
            return Err(KpiError::invalid("day", format!("a day within the last {} days", kpi::MAX_PERIOD_DAYS)));
        }
        let body = self.snapshot_body(day).await?;
        let (d, at, b, actor) = (day.format("%Y-%m-%d").to_string(), self.clock.stamp(), body.clone(), actor.cloned());
        let version = self
            .store
            .write(move |tx| -> Result<i64, StoreError> {
                let v = store::kpi::save_snapshot(tx, &d, &b, &at)?;
                if let Some(a) = &actor {
                    store::audit::record(tx, a, "kpi.snapshot", "kpi_snapshot", Some(&d), "ok")?;
                }
                Ok(v)
            })
            .await?;
        Ok(Snapshot { day, version, body })
    }

    /// Snapshot every finished local day of the last week that has none yet (and that the store
    /// existed for). Returns how many were made.
    pub async fn catch_up(&self) -> Result<usize, KpiError> {
        let today = self.today();
        let tz = self.policy.tz;
        let days: Vec<String> = (1..=CATCH_UP_DAYS).rev().map(|n| (today - Duration::days(n)).format("%Y-%m-%d").to_string()).collect();
        let missing = self
            .store
            .read(move |tx| -> Result<Vec<NaiveDate>, StoreError> {
                let since = store::kpi::store_since(tx)?.map(|t| kpi::local_day(t, &tz));
                let mut out = Vec::new();
                for d in days {
                    let Some(day) = kpi::parse_day(&d) else { continue };
                    if since.is_some_and(|s| day >= s) && store::kpi::snapshot(tx, &d)?.is_none() {
                        out.push(day);
                    }
                }
                Ok(out)
            })
            .await?;
        for day in &missing {
            self.snapshot(None, *day).await?;
        }
        Ok(missing.len())
    }

    /// The daily task: a first look shortly after start, then one a minute; a failure is logged
    /// and tried again at the next look.
    pub fn spawn_daily(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FIRST_LOOK).await;
            loop {
                match me.catch_up().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(days = n, "KPI snapshots made"),
                    Err(e) => tracing::warn!(error = %e, "KPI snapshot failed; retrying at the next look"),
                }
                tokio::time::sleep(EVERY).await;
            }
        })
    }

    /// One figure per day of the period from the stored snapshots (None where a day has none).
    pub async fn trend(&self, p: Period, key: &'static str) -> Result<Vec<(NaiveDate, Option<f64>)>, KpiError> {
        let (from, to) = (p.from.format("%Y-%m-%d").to_string(), p.to.format("%Y-%m-%d").to_string());
        let stored = self.store.read(move |tx| store::kpi::snapshots(tx, &from, &to)).await?;
        let by_day: BTreeMap<String, Option<f64>> = stored.into_iter().map(|(d, v)| (d, v[key].as_f64())).collect();
        let mut out = Vec::new();
        let mut d = p.from;
        while d < p.to {
            out.push((d, by_day.get(&d.format("%Y-%m-%d").to_string()).copied().flatten()));
            d += Duration::days(1);
        }
        Ok(out)
    }

    /// The month's report as a PDF (zh-CN first, English second).
    pub async fn month_pdf(&self, month: Period) -> Result<Vec<u8>, KpiError> {
        let r = self.report(month).await?;
        let doc = crate::pdf::kpi_report::KpiReportDoc {
            store_name: self.store_name.clone(),
            month: month.from.format("%Y-%m").to_string(),
            period: format!("{} – {} (UTC{})", month.from, month.last_day(), r.utc_offset),
            as_of: self.local_time(&r.as_of),
            figures: r.figures,
            detail: r.detail,
            weeks: r.weeks,
        };
        let font = self.font.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, KpiError> {
            let font = crate::pdf::ReportFont::load(&font).map_err(|e| KpiError::Unavailable(e.to_string()))?;
            crate::pdf::kpi_report::render(&doc, &font).map_err(|e| KpiError::Unavailable(e.to_string()))
        })
        .await
        .map_err(|_| KpiError::Unavailable("the report renderer stopped".into()))?
    }
}
