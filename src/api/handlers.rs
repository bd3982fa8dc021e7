//! Handlers: each takes parsed input and the caller, makes one service call, and answers JSON.
//! DTOs for requests live here (`deny_unknown_fields`: a typo is an error, not silently ignored).

use std::sync::Arc;

use bytes::Buf;
use futures_util::TryStreamExt;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use warp::reply::{json as js, with_status, Response};
use warp::Reply;

use super::error::{respond, ApiError};
use super::{ApiState, ClientAddr, Ctx};
use crate::case::{NewCase, NewCustomer, NewVehicle};
use crate::domain::{new_id, now, CaseStatus, Photo, Role};
use crate::store::cases::CaseFilter;

const MAX_PAGE: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginReq {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordReq {
    old_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionReq {
    to: CaseStatus,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonReq {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaiveReq {
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookReq {
    pub start: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsQuery {
    pub hours: f64,
    pub days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageReq {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateReq {
    parts_choice: Option<crate::estimate::PartsChoice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignReq {
    user_id: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserReq {
    username: String,
    display_name: Option<String>,
    role: Role,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CaseListQuery {
    status: Option<CaseStatus>,
    customer_id: Option<String>,
    assigned_to: Option<i64>,
    needs_review: Option<bool>,
    before: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CustomerListQuery {
    q: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    target_id: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

fn page_limit(l: Option<u32>) -> Result<u32, ApiError> {
    match l.unwrap_or(50) {
        0 => Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", "limit", "limit must be at least 1")),
        n => Ok(n.min(MAX_PAGE)),
    }
}

fn created<T: serde::Serialize>(v: &T) -> Response {
    with_status(js(v), StatusCode::CREATED).into_response()
}

fn addr_of(a: Option<ClientAddr>) -> String {
    a.map(|a| a.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

pub async fn healthz(s: Arc<ApiState>) -> Response {
    // No auth, no data: just whether the database answers.
    let ok = s.store.read(|tx| crate::store::outbox::depth(tx).map(|_| ())).await.is_ok();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    with_status(js(&json!({ "status": if ok { "ok" } else { "degraded" } })), status).into_response()
}

const OPENAPI_ASSET: &str = include_str!("../../assets/openapi.json");

/// The API document (`assets/openapi.json`); the unit test below and `tests/api_roles.rs` keep it
/// equal to the route table, and `tests/api_conformance.rs` checks the daemon against it.
pub fn openapi() -> Response {
    let mut r = Response::new(OPENAPI_ASSET.into());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

pub async fn metrics(s: Arc<ApiState>, addr: Option<ClientAddr>, authz: Option<String>) -> Response {
    let loopback = addr.is_some_and(|a| a.0.ip().is_loopback());
    if !loopback {
        if s.limits.metrics_loopback_only {
            return ApiError::forbidden("metrics are served to loopback clients only").into_response();
        }
        let Some(token) = super::bearer(authz) else {
            return ApiError::unauthorized().into_response();
        };
        match s.staff.session(&token).await {
            Ok(u) if u.role == Role::Manager => {}
            Ok(_) => return ApiError::forbidden("metrics are for managers").into_response(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    let protection = s.protection.status().await.ok();
    let mut text = s.metrics.render(&s.store, &s.sync, &s.intake.engine_status(), protection.as_ref()).await;
    match s.kpi.recent().await {
        Ok(r) => super::metrics::kpi_gauges(&mut text, &r),
        Err(e) => tracing::warn!(error = %e, "KPI gauges left out of /metrics"),
    }
    let mut r = Response::new(text.into());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

pub async fn login(s: Arc<ApiState>, addr: Option<ClientAddr>, req: LoginReq) -> Response {
    respond(s.staff.login(&req.username, &req.password, &addr_of(addr)).await.map(|l| js(&l)).map_err(ApiError::from))
}

pub async fn logout(s: Arc<ApiState>, c: Ctx) -> Response {
    respond(s.staff.logout(&c.actor, &c.token).await.map(|_| StatusCode::NO_CONTENT).map_err(ApiError::from))
}

pub fn me(c: Ctx) -> Response {
    js(&c.user).into_response()
}

pub async fn change_password(s: Arc<ApiState>, c: Ctx, req: ChangePasswordReq) -> Response {
    let r = s.staff.change_password(&c.actor, c.user.id, &req.old_password, &req.new_password).await;
    respond(r.map(|_| StatusCode::NO_CONTENT).map_err(ApiError::from))
}

pub async fn create_customer(s: Arc<ApiState>, c: Ctx, req: NewCustomer) -> Response {
    respond(s.cases.create_customer(&c.actor, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn list_customers(s: Arc<ApiState>, c: Ctx, q: CustomerListQuery) -> Response {
    let r = async {
        let limit = page_limit(q.limit)?;
        let list = s.cases.list_customers(&c.actor, q.q, q.before, limit).await?;
        let next = (list.len() as u32 == limit).then(|| list.last().map(|x| x.id.clone())).flatten();
        Ok::<_, ApiError>(js(&json!({ "items": list, "next_before": next })))
    };
    respond(r.await)
}

pub async fn get_customer(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    let r = s.cases.get_customer(&c.actor, id).await;
    respond(r.map(|(cust, vehicles)| js(&json!({ "customer": cust, "vehicles": vehicles }))).map_err(ApiError::from))
}

pub async fn create_vehicle(s: Arc<ApiState>, c: Ctx, req: NewVehicle) -> Response {
    respond(s.cases.create_vehicle(&c.actor, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn get_vehicle(id: String, s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.cases.get_vehicle(id).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn create_case(s: Arc<ApiState>, c: Ctx, req: NewCase) -> Response {
    respond(s.cases.create_case(&c.actor, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn list_cases(s: Arc<ApiState>, _c: Ctx, q: CaseListQuery) -> Response {
    let r = async {
        let limit = page_limit(q.limit)?;
        let f = CaseFilter {
            status: q.status,
            customer_id: q.customer_id,
            assigned_to: q.assigned_to,
            needs_review: q.needs_review,
            before: q.before,
            limit,
        };
        let list = s.cases.list_cases(f).await?;
        let next = (list.len() as u32 == limit).then(|| list.last().map(|x| x.id.clone())).flatten();
        Ok::<_, ApiError>(js(&json!({ "items": list, "next_before": next })))
    };
    respond(r.await)
}

pub async fn get_case(id: String, s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.cases.get_case(id).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn transition(id: String, s: Arc<ApiState>, c: Ctx, req: TransitionReq) -> Response {
    respond(s.cases.transition(&c.actor, id, req.to, req.reason).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn escalate(id: String, s: Arc<ApiState>, c: Ctx, req: ReasonReq) -> Response {
    let reason = req.reason.unwrap_or_else(|| "handed to a person".into());
    respond(s.cases.escalate(&c.actor, id, reason).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn hand_back(id: String, s: Arc<ApiState>, c: Ctx, req: ReasonReq) -> Response {
    respond(s.cases.hand_back(&c.actor, id, req.reason).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn assign(id: String, s: Arc<ApiState>, c: Ctx, req: AssignReq) -> Response {
    respond(s.cases.assign(&c.actor, id, req.user_id).await.map(|v| js(&v)).map_err(ApiError::from))
}

/// A customer message (typed by the customer or relayed by staff) → the assistant's next question.
pub async fn post_message(id: String, s: Arc<ApiState>, c: Ctx, req: MessageReq) -> Response {
    respond(s.intake.message(&c.actor, id, req.text).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn list_messages(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    respond(s.intake.messages(&c.actor, id).await.map(|v| js(&json!({ "items": v }))).map_err(ApiError::from))
}

/// A priced repair plan from the case's findings and the catalogue (a new estimate version).
pub async fn create_estimate(id: String, s: Arc<ApiState>, c: Ctx, req: EstimateReq) -> Response {
    let choice = req.parts_choice.unwrap_or(crate::estimate::PartsChoice::Oem);
    respond(s.estimates.create(&c.actor, id, choice).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn get_estimate(id: String, s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.estimates.latest(id).await.map(|v| js(&v)).map_err(ApiError::from))
}

/// The model's wording of the latest estimate, checked against its numbers (stored only if it passes).
pub async fn explain_estimate(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    let r = s.estimates.phrase(&c.actor, id, Box::new(|_: &str| true)).await;
    respond(r.map(|x| js(&json!({ "text": x.text, "from_llm": x.from_llm, "rejected": x.rejected }))).map_err(ApiError::from))
}

pub async fn list_findings(id: String, s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.cases.findings(id).await.map(|v| js(&json!({ "items": v }))).map_err(ApiError::from))
}

pub async fn add_finding(id: String, s: Arc<ApiState>, c: Ctx, req: crate::case::NewFinding) -> Response {
    respond(s.cases.add_finding(&c.actor, id, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn waive_photos(id: String, s: Arc<ApiState>, c: Ctx, req: WaiveReq) -> Response {
    respond(crate::case::photos::waive_photos(&s.store, &c.actor, id, req.reason).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn approve(id: String, s: Arc<ApiState>, c: Ctx, req: crate::case::schedule::NewApproval) -> Response {
    respond(s.schedule.approve(&c.actor, id, req).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn slots(s: Arc<ApiState>, _c: Ctx, q: SlotsQuery) -> Response {
    respond(s.schedule.slots(q.hours, q.days.unwrap_or(14)).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn get_appointment(id: String, s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.schedule.appointment(id).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn book(id: String, s: Arc<ApiState>, c: Ctx, req: BookReq) -> Response {
    respond(s.schedule.book(&c.actor, id, req.start).await.map(|v| created(&v)).map_err(ApiError::from))
}

pub async fn cancel_booking(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    respond(s.schedule.cancel(&c.actor, id).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn review_finding(id: String, s: Arc<ApiState>, c: Ctx, req: crate::case::Review) -> Response {
    respond(s.cases.review_finding(&c.actor, id, req).await.map(|v| js(&v)).map_err(ApiError::from))
}

pub async fn measure_finding(id: String, s: Arc<ApiState>, c: Ctx, req: crate::case::MarkedReference) -> Response {
    respond(s.cases.measure_finding(&c.actor, id, req).await.map(|v| js(&v)).map_err(ApiError::from))
}

/// Multipart: one `file` part (the photo) and an optional `shot` (front, side, close_up, other).
pub async fn upload_photo(case_id: String, s: Arc<ApiState>, c: Ctx, form: warp::multipart::FormData) -> Response {
    respond(upload(case_id, &s, &c, form).await)
}

async fn upload(case_id: String, s: &ApiState, c: &Ctx, form: warp::multipart::FormData) -> Result<Response, ApiError> {
    let (file, mut fields) = photo_form(s, &case_id, form, &["shot"]).await?;
    let shot = fields.remove("shot");
    if let Some(sh) = &shot {
        if !matches!(sh.as_str(), "front" | "side" | "close_up" | "other") {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "shot", "shot: use front, side, close_up or other"));
        }
    }
    let p = save_photo(s, c, case_id, file, shot, None).await?;
    let mut v = serde_json::to_value(&p).unwrap_or_default();
    v["analysis"] = json!("pending");
    Ok(created(&v))
}

/// Read a photo upload form: the `file` part (at most the photo cap) and the short text fields
/// named in `text` (64 bytes each, control characters refused). The whole form is read (bounded by
/// the multipart filter's drain cap) before any answer, so a tablet that is still sending sees our
/// error rather than a broken connection; the first error wins. A missing case answers 404 first.
pub async fn photo_form(
    s: &ApiState,
    case_id: &str,
    form: warp::multipart::FormData,
    text: &[&str],
) -> Result<(Vec<u8>, std::collections::BTreeMap<String, String>), ApiError> {
    let limit = s.limits.photo_body;
    let mut file: Option<Vec<u8>> = None;
    let mut fields = std::collections::BTreeMap::new();
    let mut first_error: Option<ApiError> = None;
    let mut parts = form;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_multipart", m);
    while let Some(part) = parts.try_next().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
        let name = part.name().to_string();
        let cap = if name == "file" { limit } else { 64 };
        let mut data = Vec::new();
        let mut seen = 0u64;
        let mut stream = part.stream();
        while let Some(chunk) = stream.try_next().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
            seen += chunk.remaining() as u64;
            if seen <= cap {
                data.extend_from_slice(chunk.chunk());
            }
        }
        let err = if seen > cap && name == "file" {
            Some(ApiError::field(
                StatusCode::PAYLOAD_TOO_LARGE,
                "photo_too_large",
                "file",
                format!("the photo is larger than {limit} bytes"),
            ))
        } else if seen > cap && text.contains(&name.as_str()) {
            Some(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &name, format!("{name}: too long")))
        } else if name == "file" {
            file = Some(data);
            None
        } else if text.contains(&name.as_str()) {
            // The edge's control-character rule applies to form text as to JSON text.
            let value = String::from_utf8_lossy(&data).to_string();
            match crate::domain::validate::plain_text(&name, &value) {
                Ok(()) => {
                    fields.insert(name, value.trim().to_string());
                    None
                }
                Err(i) => Some(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &name, i.to_string())),
            }
        } else {
            let known = text.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
            Some(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                &name,
                format!("unknown form field '{}'; send 'file' and optionally {known}", printable_name(&name)),
            ))
        };
        if first_error.is_none() {
            first_error = err;
        }
    }
    if !s.cases.case_exists(case_id.to_string()).await? {
        return Err(ApiError::not_found("case"));
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let file = file.ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "file", "file: missing photo part"))?;
    Ok((file, fields))
}

fn printable_name(name: &str) -> String {
    name.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Checks and stores a photo's bytes, attaches it to the case and wakes the analyser: the one
/// way a photo enters a case (the API's multipart route and the tablet page both come here).
pub async fn save_photo(
    s: &ApiState,
    c: &Ctx,
    case_id: String,
    file: Vec<u8>,
    shot: Option<String>,
    workshop: Option<crate::case::work_order::ShotTarget>,
) -> Result<Photo, ApiError> {
    if !s.cases.case_exists(case_id.clone()).await? {
        return Err(ApiError::not_found("case"));
    }
    let limit = s.limits.photo_body;
    let max_pixels = s.limits.photo_max_pixels;
    let files = s.files.clone();
    let cid = case_id.clone();
    // Decode check and the durable (encrypted) write are blocking work: off the async workers.
    let (info, sha, created_file, bytes) = tokio::task::spawn_blocking(move || {
        let info = crate::media::inspect(&file, limit, max_pixels)?;
        let (sha, created_file) = files.put(&cid, &file)?;
        Ok::<_, crate::media::MediaError>((info, sha, created_file, file.len() as u64))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "photo processing failed"))??;
    let photo = Photo {
        id: new_id(),
        case_id: case_id.clone(),
        sha256: sha.clone(),
        media_type: info.media_type.to_string(),
        width: info.width,
        height: info.height,
        bytes,
        shot,
        uploaded_by: c.user.username.clone(),
        uploaded_at: now(),
    };
    let workshop = workshop.map(|t| (s.workshop_tables(), t));
    match s.cases.attach_photo(&c.actor, photo, workshop).await {
        Ok(p) => {
            s.analyzer.notify();
            Ok(p)
        }
        Err(e) => {
            // No row → no file: remove what this upload created unless another row now uses it.
            if created_file {
                let files = s.files.clone();
                let _ = s
                    .store
                    .write(move |tx| -> Result<(), crate::store::StoreError> {
                        if !crate::store::photos::sha_in_case(tx, &case_id, &sha)? {
                            files.remove(&case_id, &sha);
                        }
                        Ok(())
                    })
                    .await;
            }
            Err(e.into())
        }
    }
}

pub async fn get_photo(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    let r = async {
        let p = s.cases.photo(&c.actor, id).await?;
        let files = s.files.clone();
        let (case_id, sha) = (p.case_id.clone(), p.sha256.clone());
        let bytes = tokio::task::spawn_blocking(move || files.read(&case_id, &sha))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "photo read failed"))??;
        let mut r = Response::new(bytes.into());
        if let Ok(v) = http::HeaderValue::from_str(&p.media_type) {
            r.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        r.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("private, max-age=3600"));
        Ok::<_, ApiError>(r)
    };
    respond(r.await)
}

/// The stored analysis: 200 when done (or failed), 202 while the worker has not reached it.
pub async fn photo_analysis(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    let r = async {
        s.cases.photo(&c.actor, id.clone()).await?;
        let a = s.store.read(move |tx| crate::store::photos::analysis(tx, &id)).await?;
        Ok::<_, ApiError>(match a {
            Some(a) => js(&a).into_response(),
            None => with_status(js(&json!({ "status": "pending" })), StatusCode::ACCEPTED).into_response(),
        })
    };
    respond(r.await)
}

/// The photo with boxes and labels (staff), or with faces/plates/heads pixelated (shareable).
/// The blurred version is refused unless a detector with a face or person class analysed the photo:
/// never an unblurred photo by mistake (`case::photos::privacy_detections`).
pub async fn photo_render(id: String, s: Arc<ApiState>, c: Ctx, blurred: bool) -> Response {
    let r = async {
        let p = s.cases.photo(&c.actor, id.clone()).await?;
        let a = s.store.read(move |tx| Ok::<_, crate::store::StoreError>(crate::store::photos::analysis(tx, &id))).await?;
        let dets = if blurred {
            crate::case::photos::privacy_detections(a)?
        } else {
            let Some(a) = a?.filter(|a| a.status == "done") else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "analysis_pending",
                    "the photo has not been analysed yet; try again shortly",
                ));
            };
            a.detections
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?
                .unwrap_or_default()
        };
        let files = s.files.clone();
        let jpeg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
            let img =
                files.open_image(&p.case_id, &p.sha256).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
            let out = if blurred {
                crate::vision::blur::blur_pii(&img, &dets)
            } else {
                crate::vision::cli::annotate_image(&img.to_rgb8(), &dets)
            };
            let mut buf = std::io::Cursor::new(Vec::new());
            out.write_to(&mut buf, image::ImageFormat::Jpeg)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
            Ok(buf.into_inner())
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "rendering failed"))??;
        let mut r = Response::new(jpeg.into());
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("image/jpeg"));
        Ok(r)
    };
    respond(r.await)
}

pub async fn list_users(s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.staff.list_users().await.map(|v| js(&json!({ "items": v }))).map_err(ApiError::from))
}

pub async fn create_user(s: Arc<ApiState>, c: Ctx, req: CreateUserReq) -> Response {
    let r = s.staff.add_user(&c.actor, &req.username, req.display_name.as_deref(), req.role).await;
    // The one-time password is returned once, to the manager who created the account.
    respond(r.map(|(u, pw)| created(&json!({ "user": u, "one_time_password": pw }))).map_err(ApiError::from))
}

pub async fn set_disabled(id: i64, s: Arc<ApiState>, c: Ctx, disabled: bool) -> Response {
    if disabled && id == c.user.id {
        return ApiError::new(StatusCode::CONFLICT, "self_disable", "you cannot disable your own account").into_response();
    }
    respond(s.staff.set_disabled(&c.actor, id, disabled).await.map(|_| StatusCode::NO_CONTENT).map_err(ApiError::from))
}

pub async fn reset_password(id: i64, s: Arc<ApiState>, c: Ctx) -> Response {
    if id == c.user.id {
        // A reset ends the user's sessions and asks for a one-time password: done to oneself it
        // would lock the manager out mid-session. One's own password changes at /auth/password.
        return ApiError::new(StatusCode::CONFLICT, "self_reset", "you cannot reset your own password; change it at /api/v1/auth/password")
            .into_response();
    }
    respond(s.staff.reset_password(&c.actor, id).await.map(|pw| js(&json!({ "one_time_password": pw }))).map_err(ApiError::from))
}

pub async fn audit(s: Arc<ApiState>, _c: Ctx, q: AuditQuery) -> Response {
    let r = async {
        let limit = page_limit(q.limit)?;
        let rows = s.staff.audit_log(q.target_id, q.before, limit).await?;
        Ok::<_, ApiError>(js(&json!({ "items": rows })))
    };
    respond(r.await)
}

pub async fn llm_status(s: Arc<ApiState>, _c: Ctx) -> Response {
    js(&s.intake.engine_status()).into_response()
}

pub async fn sync_status(s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.sync.status().await.map(|st| js(&st)).map_err(ApiError::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented operation is routed (tests/api_roles.rs checks the other direction).
    #[test]
    fn openapi_asset_documents_only_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_ASSET).expect("assets/openapi.json is valid JSON");
        let mut n = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                let m = method.to_uppercase();
                assert!(
                    super::super::policy::ROUTES.iter().any(|r| r.path == path.as_str() && r.method == m),
                    "{m} {path} is documented but not routed"
                );
                n += 1;
            }
        }
        assert_eq!(n, super::super::policy::ROUTES.len());
    }
}
