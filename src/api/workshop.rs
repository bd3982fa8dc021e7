//! The workshop and QC routes (seed scenario 2): baseline shots, marks and signature, the work
//! order and its clock, the parts scan, the before/after comparison, alerts and flags, and the QC
//! report. One service call each (`case::work_order`, `case::qc`).

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use warp::reply::{json as js, with_status, Response};
use warp::Reply;

use super::error::{respond, ApiError};
use super::handlers::{photo_form, save_photo};
use super::{ApiState, Ctx};
use crate::case::qc::{Copy, SignReport};
use crate::case::work_order::{BaselineSignature, ClockCorrection, ClockRequest, NewMark, Phase, Settlement, ShotTarget, WorkshopService};
use crate::domain::workshop::Origin;

fn created<T: serde::Serialize>(v: &T) -> Response {
    with_status(js(v), StatusCode::CREATED).into_response()
}

/// Everything of a case's workshop at once: the baseline, the work order with its clock, the QC view.
pub async fn case_workshop(id: String, s: Arc<ApiState>, _c: Ctx) -> Response {
    let r = async {
        let baseline = s.workshop.baseline(id.clone()).await?;
        let order = s.workshop.work_order(id.clone()).await?;
        let qc = s.workshop.qc_view(id).await?;
        let lines = order.as_ref().map(WorkshopService::line_clocks);
        Ok::<_, crate::case::CaseError>(js(&json!({ "baseline": baseline, "work_order": order, "lines": lines, "qc": qc })))
    };
    respond(r.await.map_err(ApiError::from))
}

/// Multipart: `file`, `phase` (before, after, in_repair) and `checkpoint` for before/after shots.
pub async fn upload_shot(id: String, s: Arc<ApiState>, c: Ctx, form: warp::multipart::FormData) -> Response {
    let r = async {
        let (file, mut fields) = photo_form(&s, &id, form, &["phase", "checkpoint"]).await?;
        let phase =
            fields.remove("phase").and_then(|p| Phase::parse(&p)).filter(|p| *p != Phase::PartLabel).ok_or_else(|| {
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "phase", "phase: use before, after or in_repair")
            })?;
        let target = ShotTarget { phase, checkpoint: fields.remove("checkpoint").filter(|c| !c.is_empty()) };
        let p = save_photo(&s, &c, id, file, None, Some(target.clone())).await?;
        let mut v = serde_json::to_value(&p).unwrap_or_default();
        v["phase"] = json!(target.phase);
        v["checkpoint"] = json!(target.checkpoint);
        v["analysis"] = json!("pending");
        Ok::<_, ApiError>(created(&v))
    };
    respond(r.await)
}

pub async fn mark(id: String, s: Arc<ApiState>, c: Ctx, req: NewMark) -> Response {
    respond(s.workshop.mark(&c.actor, id, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn sign_baseline(id: String, s: Arc<ApiState>, c: Ctx, req: BaselineSignature) -> Response {
    respond(s.workshop.sign_baseline(&c.actor, id, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

pub async fn start(id: String, s: Arc<ApiState>, c: Ctx, _req: Empty) -> Response {
    respond(s.workshop.start(&c.actor, id).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn finish(id: String, s: Arc<ApiState>, c: Ctx, _req: Empty) -> Response {
    respond(s.workshop.finish(&c.actor, id).await.map(|v| js(&v).into_response()).map_err(ApiError::from))
}

pub async fn clock(id: String, s: Arc<ApiState>, c: Ctx, req: ClockRequest) -> Response {
    respond(s.workshop.clock(&c.actor, id, req.action).await.map(|v| js(&v).into_response()).map_err(ApiError::from))
}

pub async fn correct_clock(id: String, s: Arc<ApiState>, c: Ctx, req: ClockCorrection) -> Response {
    respond(s.workshop.correct_clock(&c.actor, id, req).await.map(|v| js(&v).into_response()).map_err(ApiError::from))
}

/// Multipart: `file` (the part's label or packaging) and optionally `origin` (oem, equivalent,
/// refurbished) when the label does not say.
pub async fn scan_part(id: String, s: Arc<ApiState>, c: Ctx, form: warp::multipart::FormData) -> Response {
    let r = async {
        let (file, mut fields) = photo_form(&s, &id, form, &["origin"]).await?;
        let origin = match fields.remove("origin").filter(|o| !o.is_empty()) {
            None => None,
            Some(o) => Some(Origin::parse(&o).ok_or_else(|| {
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "origin", "origin: use oem, equivalent or refurbished")
            })?),
        };
        let target = ShotTarget { phase: Phase::PartLabel, checkpoint: None };
        let p = save_photo(&s, &c, id, file, None, Some(target)).await?;
        let res = s.workshop.scan_part(&c.actor, p, origin).await?;
        Ok::<_, ApiError>(created(&res))
    };
    respond(r.await)
}

pub async fn compare(id: String, s: Arc<ApiState>, c: Ctx, _req: Empty) -> Response {
    respond(s.workshop.compare(&c.actor, id).await.map(|v| js(&v).into_response()).map_err(ApiError::from))
}

pub async fn sign_report(id: String, s: Arc<ApiState>, c: Ctx, req: SignReport) -> Response {
    respond(s.workshop.sign_report(&c.actor, id, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyQuery {
    copy: Option<Copy>,
}

pub async fn report_pdf(id: String, s: Arc<ApiState>, c: Ctx, q: CopyQuery) -> Response {
    let copy = q.copy.unwrap_or(Copy::Store);
    respond(
        s.workshop
            .report_pdf(&c.actor, id, copy)
            .await
            .map_err(ApiError::from)
            .map(|(r, pdf)| pdf_download(&r.case_id, r.version, copy, pdf)),
    )
}

/// A report PDF as a download (the API and the inspector's screen answer the same).
pub fn pdf_download(case_id: &str, version: i64, copy: Copy, pdf: Vec<u8>) -> Response {
    let mut r = Response::new(pdf.into());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/pdf"));
    let name: String = case_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    let kind = if copy == Copy::Customer { "customer" } else { "store" };
    if let Ok(v) = http::HeaderValue::from_str(&format!("inline; filename=\"qc-report-{name}-v{version}-{kind}.pdf\"")) {
        h.insert(http::header::CONTENT_DISPOSITION, v);
    }
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

pub async fn board(s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.workshop.board(s.bays).await.map(|v| js(&v).into_response()).map_err(ApiError::from))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    queue: String,
    open: Option<bool>,
}

pub async fn flags(s: Arc<ApiState>, _c: Ctx, q: QueueQuery) -> Response {
    respond(
        s.workshop
            .queue(q.queue, q.open.unwrap_or(false))
            .await
            .map(|v| js(&json!({ "items": v })).into_response())
            .map_err(ApiError::from),
    )
}

pub async fn settle(id: String, s: Arc<ApiState>, c: Ctx, req: Settlement) -> Response {
    respond(s.workshop.settle(&c.actor, id, req).await.map(|v| js(&v).into_response()).map_err(ApiError::from))
}
