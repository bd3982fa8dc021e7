//! The store's KPI routes (managers): the figures of a period, a day's snapshot on demand (it goes
//! to HQ like the daily one), and the monthly PDF. One service call each (`crate::kpi`).

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::reply::{json as js, Response};
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::policy::RouteId::*;
use super::{auth, json_body, query, with, ApiState, Ctx};
use crate::domain::kpi;
use crate::kpi::KpiError;

/// The one mapping of the KPI service's errors; `code` is `invalid_query` for GET parameters and
/// `invalid_field` for a body field.
fn api_error(e: KpiError, code: &'static str) -> ApiError {
    match e {
        KpiError::Invalid { field, message } => ApiError::field(StatusCode::BAD_REQUEST, code, field, format!("{field}: {message}")),
        KpiError::Store(s) => s.into(),
        KpiError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn figures(s: Arc<ApiState>, _c: Ctx, q: PeriodQuery) -> Response {
    let r = async {
        let p = s.kpi.period(q.from.as_deref(), q.to.as_deref())?;
        s.kpi.report(p).await
    };
    respond(r.await.map(|v| js(&v).into_response()).map_err(|e| api_error(e, "invalid_query")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    month: Option<String>,
}

/// The month's PDF, served inline (the API and the dashboard's link answer the same).
pub async fn month_pdf(s: &ApiState, month: Option<&str>) -> Result<Response, ApiError> {
    let p = s.kpi.month(month).map_err(|e| api_error(e, "invalid_query"))?;
    let pdf = s.kpi.month_pdf(p).await.map_err(|e| api_error(e, "invalid_query"))?;
    let mut r = Response::new(pdf.into());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/pdf"));
    let name = format!("inline; filename=\"kpi-{}.pdf\"", p.from.format("%Y-%m"));
    if let Ok(v) = http::HeaderValue::from_str(&name) {
        h.insert(http::header::CONTENT_DISPOSITION, v);
    }
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn report_pdf(s: Arc<ApiState>, _c: Ctx, q: MonthQuery) -> Response {
    respond(month_pdf(&s, q.month.as_deref()).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    day: String,
}

async fn snapshot(s: Arc<ApiState>, c: Ctx, req: SnapshotRequest) -> Response {
    let r = async {
        let day = kpi::parse_day(&req.day).ok_or(KpiError::Invalid { field: "day", message: "a local date YYYY-MM-DD".into() })?;
        s.kpi.snapshot(Some(&c.actor), day).await
    };
    respond(r.await.map(|v| js(&v).into_response()).map_err(|e| api_error(e, "invalid_field")))
}

/// The routes, for `api::routes` to fold in with the rest.
pub(super) fn routes(s: &Arc<ApiState>) -> Vec<BoxedFilter<(Response,)>> {
    let json = s.limits.json_body;
    let st = || with(s.clone());
    let a = |id| auth(s.clone(), id);
    let v1 = || warp::path!("api" / "v1" / ..);
    vec![
        v1().and(warp::path!("kpi")).and(warp::get()).and(st()).and(a(KpiFigures)).and(query()).then(figures).boxed(),
        v1().and(warp::path!("kpi" / "report.pdf")).and(warp::get()).and(st()).and(a(KpiReportPdf)).and(query()).then(report_pdf).boxed(),
        v1().and(warp::path!("kpi" / "snapshots"))
            .and(warp::post())
            .and(st())
            .and(a(KpiSnapshot))
            .and(json_body(json))
            .then(snapshot)
            .boxed(),
    ]
}
