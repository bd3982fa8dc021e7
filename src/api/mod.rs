//! The HTTP API (warp) under `/api/v1`: filters (routing, body caps, auth against the policy
//! matrix) → handler (one service call) → JSON. `server` serves it over TLS with timeouts.

pub mod error;
mod follow_up;
pub mod handlers;
pub mod imports;
pub mod kpi;
pub mod metrics;
pub mod policy;
pub mod privacy;
pub mod server;
pub mod workshop;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection, Reply};

use crate::case::CaseService;
use crate::domain::{validate, Actor, User};
use crate::files::PhotoFiles;
use crate::staff::StaffService;
use crate::store::Store;
use error::ApiError;
use policy::{Access, RouteId};

/// Body and request limits from the config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub json_body: u64,
    pub photo_body: u64,
    pub photo_max_pixels: u64,
    pub metrics_loopback_only: bool,
}

/// Everything the handlers need; built once by `app`.
pub struct ApiState {
    pub cases: CaseService,
    pub intake: crate::case::intake::IntakeService,
    pub estimates: crate::case::estimate::EstimateService,
    pub schedule: crate::case::schedule::ScheduleService,
    pub analyzer: crate::case::photos::PhotoAnalyzer,
    pub sync: Arc<crate::sync::Sync>,
    pub staff: StaffService,
    pub files: PhotoFiles,
    pub protection: crate::protection::DataProtection,
    pub workshop: crate::case::work_order::WorkshopService,
    pub follow_up: Arc<crate::case::follow_up::FollowUpService>,
    /// The store's KPIs (门店指标): figures, daily snapshots, the monthly PDF.
    pub kpi: Arc<crate::kpi::KpiService>,
    /// Store data import (DMS export, parts and labour lists).
    pub imports: Arc<crate::import::Imports>,
    /// The clock of the time-driven stages (follow-up due times, alert SLAs, KPI days).
    pub clock: crate::clock::Clock,
    /// The store's bays (the bay board's columns).
    pub bays: u32,
    pub store: Store,
    pub limits: Limits,
    pub metrics: Arc<metrics::Metrics>,
    /// What the tablets' first-run page shows: the store and its certificate's fingerprint.
    pub site: Site,
}

impl ApiState {
    pub fn workshop_tables(&self) -> Arc<crate::domain::workshop::WorkshopTables> {
        self.workshop.tables_arc()
    }
}

/// The store as the UI names it, and the TLS fingerprint a tablet checks before trusting it.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub store_name: String,
    pub tls_fingerprint: String,
    /// The certificate itself (public), offered for download on the first-run page.
    pub tls_cert: std::path::PathBuf,
    /// Where the daemon keeps its data (the status page reports the disk's free space there).
    pub data_dir: std::path::PathBuf,
}

/// The peer address of the connection, put on each request by `server`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The authenticated caller of a route.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: User,
    pub actor: Actor,
    pub token: String,
}

fn reject(e: ApiError) -> Rejection {
    warp::reject::custom(e)
}

fn bearer(header: Option<String>) -> Option<String> {
    let h = header?;
    let t = h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))?.trim();
    (!t.is_empty() && t.len() <= 256).then(|| t.to_string())
}

/// Authenticate and authorise for one route, before any body is read or any record looked up.
fn auth(state: Arc<ApiState>, id: RouteId) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and(warp::ext::optional::<ClientAddr>()).and_then(
        move |h: Option<String>, addr: Option<ClientAddr>| {
            let state = state.clone();
            async move {
                let token = bearer(h).ok_or_else(|| reject(ApiError::unauthorized()))?;
                let user = state.staff.session(&token).await.map_err(|e| reject(e.into()))?;
                let access = policy::access(id);
                if !policy::allows(id, user.role) {
                    return Err(reject(ApiError::forbidden(format!("role {} may not use this route", user.role))));
                }
                if user.must_change_password && access != Access::AnyUser {
                    return Err(reject(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "password_change_required",
                        "change your one-time password first (POST /api/v1/auth/password)",
                    )));
                }
                let actor = Actor {
                    user_id: Some(user.id),
                    username: user.username.clone(),
                    role: Some(user.role),
                    client_addr: addr.map(|a| a.0.ip().to_string()),
                };
                Ok::<_, Rejection>(Ctx { user, actor, token })
            }
        },
    )
}

/// Parse JSON naming the offending field; unknown fields are refused by the DTOs.
///
/// Before any typed deserialisation, every string and every object key of the document is checked
/// for control characters (`validate::forbidden_char`): one rule for every body of every route,
/// answered as `invalid_field` with the JSON path (`name`, `items[0].note`), so hostile text never
/// reaches a service. The typed pass then parses the bytes again (a body is at most 64 KiB), which
/// keeps serde's own errors, duplicate keys included, exactly as they were.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Any error here is a syntax error (or the end came too soon): a `Value` takes every document.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}")))?;
    if let Some((field, c)) = first_control_char(&value, &mut String::new()) {
        return Err(control_char_error("invalid_field", &field, c));
    }
    // Every body of this API is an object. serde would also fill a struct from an array in field
    // order (`["intake", null]` as a transition), which no client means and the document forbids.
    if !value.is_object() {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "body", "the body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at_root = path == "." || path.is_empty();
        if inner.is_eof() || (inner.is_syntax() && at_root) {
            return ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {inner}"));
        }
        let msg = inner.to_string();
        // serde names unknown/missing fields only in the message: `unknown field `x``.
        let field = if at_root { msg.split('`').nth(1).unwrap_or("body").to_string() } else { path };
        ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &field, format!("{field}: {msg}"))
    })
}

/// The path (serde_path_to_error's notation: `a.b[0].c`) and character of the first string or object
/// key in `v` that holds a control character. `path` is the location of `v` (empty at the root).
fn first_control_char(v: &serde_json::Value, path: &mut String) -> Option<(String, char)> {
    use serde_json::Value;
    match v {
        Value::String(s) => validate::forbidden_char(s).map(|c| (display_path(path), c)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = first_control_char(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            // A key is named with its control characters escaped, so the answer stays printable.
            path.push_str(&printable(k));
            let found = validate::forbidden_char(k).map(|c| (display_path(path), c)).or_else(|| first_control_char(item, path));
            path.truncate(len);
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// A name with its control characters escaped (`\u{0}`), for an error that names it.
fn printable(name: &str) -> String {
    name.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        path.to_string()
    }
}

fn control_char_error(code: &'static str, field: &str, c: char) -> ApiError {
    let msg = validate::plain_text(field, &c.to_string()).err().map(|i| i.to_string()).unwrap_or_default();
    ApiError::field(StatusCode::BAD_REQUEST, code, field, msg)
}

/// The body, at most `limit` bytes: a declared Content-Length over the cap is refused before reading,
/// and a chunked body is counted as it arrives (no Content-Length is required).
fn limited_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, body| collect_body(declared, body, limit))
}

/// Bodies up to this size are read (and discarded) before an error is answered, so a client that is
/// still sending sees our 413 instead of a broken connection; larger ones are refused at once.
pub fn drain_cap(limit: u64) -> u64 {
    (limit * 2).max(1024 * 1024)
}

async fn collect_body<S, B>(declared: Option<u64>, body: S, limit: u64) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures_util::TryStreamExt;
    let too_large =
        || reject(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the request body is larger than {limit} bytes")));
    if declared.is_some_and(|n| n > drain_cap(limit)) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| reject(ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("could not read the body: {e}"))))?
    {
        seen += chunk.remaining() as u64;
        if seen > drain_cap(limit) {
            return Err(too_large());
        }
        if seen <= limit {
            out.extend_from_slice(chunk.chunk());
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(out.freeze())
}

fn json_body<T: DeserializeOwned + Send + 'static>(limit: u64) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    limited_body(limit).and_then(|b: Bytes| async move { parse_json::<T>(&b).map_err(reject) })
}

fn query<T: DeserializeOwned + Send + 'static>() -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify().and_then(|q: String| async move {
        // The same control-character rule as for JSON bodies, on the decoded names and values.
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let field = printable(&k);
            if let Some(c) = validate::forbidden_char(&k).or_else(|| validate::forbidden_char(&v)) {
                return Err(reject(control_char_error("invalid_query", &field, c)));
            }
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = if field == "." { msg.split('`').nth(1).unwrap_or("query").to_string() } else { field };
            reject(ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", &field, format!("{field}: {msg}")))
        })
    })
}

fn with<T: Clone + Send>(v: T) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || v.clone())
}

/// All routes. Each line: method + path, auth for its RouteId, body/query, handler.
pub fn routes(s: Arc<ApiState>) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    use handlers as h;
    use warp::path::end;
    use RouteId::*;
    let json = s.limits.json_body;
    let st = || with(s.clone());
    let a = |id| auth(s.clone(), id);

    let health = warp::path!("healthz").and(warp::get()).and(st()).then(h::healthz).boxed();
    let openapi = warp::path!("api" / "v1" / "openapi.json").and(warp::get()).map(h::openapi).boxed();
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(st())
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::header::optional::<String>("authorization"))
        .then(h::metrics)
        .boxed();

    let v1 = warp::path!("api" / "v1" / ..);
    let login = v1
        .and(warp::path!("auth" / "login"))
        .and(warp::post())
        .and(st())
        .and(warp::ext::optional::<ClientAddr>())
        .and(json_body(json))
        .then(h::login)
        .boxed();
    let logout = v1.and(warp::path!("auth" / "logout")).and(warp::post()).and(st()).and(a(Logout)).then(h::logout).boxed();
    let me = v1.and(warp::path!("auth" / "me")).and(warp::get()).and(a(Me)).map(h::me).boxed();
    let password = v1
        .and(warp::path!("auth" / "password"))
        .and(warp::post())
        .and(st())
        .and(a(ChangePassword))
        .and(json_body(json))
        .then(h::change_password)
        .boxed();

    let customers_create = v1
        .and(warp::path!("customers"))
        .and(warp::post())
        .and(st())
        .and(a(CustomersCreate))
        .and(json_body(json))
        .then(h::create_customer)
        .boxed();
    let customers_list =
        v1.and(warp::path!("customers")).and(warp::get()).and(st()).and(a(CustomersList)).and(query()).then(h::list_customers).boxed();
    let customers_get =
        v1.and(warp::path!("customers" / String)).and(warp::get()).and(st()).and(a(CustomersGet)).then(h::get_customer).boxed();
    let vehicles_create = v1
        .and(warp::path!("vehicles"))
        .and(warp::post())
        .and(st())
        .and(a(VehiclesCreate))
        .and(json_body(json))
        .then(h::create_vehicle)
        .boxed();
    let vehicles_get = v1.and(warp::path!("vehicles" / String)).and(warp::get()).and(st()).and(a(VehiclesGet)).then(h::get_vehicle).boxed();

    let cases_create =
        v1.and(warp::path!("cases")).and(warp::post()).and(st()).and(a(CasesCreate)).and(json_body(json)).then(h::create_case).boxed();
    let cases_list = v1.and(warp::path!("cases")).and(warp::get()).and(st()).and(a(CasesList)).and(query()).then(h::list_cases).boxed();
    let cases_get = v1.and(warp::path!("cases" / String)).and(warp::get()).and(st()).and(a(CasesGet)).then(h::get_case).boxed();
    let cases_transition = v1
        .and(warp::path!("cases" / String / "transition"))
        .and(warp::post())
        .and(st())
        .and(a(CasesTransition))
        .and(json_body(json))
        .then(h::transition)
        .boxed();
    let cases_escalate = v1
        .and(warp::path!("cases" / String / "escalate"))
        .and(warp::post())
        .and(st())
        .and(a(CasesEscalate))
        .and(json_body(json))
        .then(h::escalate)
        .boxed();
    let cases_hand_back = v1
        .and(warp::path!("cases" / String / "hand-back"))
        .and(warp::post())
        .and(st())
        .and(a(CasesHandBack))
        .and(json_body(json))
        .then(h::hand_back)
        .boxed();
    let cases_assign = v1
        .and(warp::path!("cases" / String / "assign"))
        .and(warp::post())
        .and(st())
        .and(a(CasesAssign))
        .and(json_body(json))
        .then(h::assign)
        .boxed();

    let messages_post = v1
        .and(warp::path!("cases" / String / "messages"))
        .and(warp::post())
        .and(st())
        .and(a(CasesMessagesPost))
        .and(json_body(json))
        .then(h::post_message)
        .boxed();
    let messages_list = v1
        .and(warp::path!("cases" / String / "messages"))
        .and(warp::get())
        .and(st())
        .and(a(CasesMessagesList))
        .then(h::list_messages)
        .boxed();
    let estimate_post = v1
        .and(warp::path!("cases" / String / "estimate"))
        .and(warp::post())
        .and(st())
        .and(a(CasesEstimateCreate))
        .and(json_body(json))
        .then(h::create_estimate)
        .boxed();
    let estimate_get = v1
        .and(warp::path!("cases" / String / "estimate"))
        .and(warp::get())
        .and(st())
        .and(a(CasesEstimateGet))
        .then(h::get_estimate)
        .boxed();
    let estimate_explain = v1
        .and(warp::path!("cases" / String / "estimate" / "explanation"))
        .and(warp::post())
        .and(st())
        .and(a(CasesEstimateExplain))
        .then(h::explain_estimate)
        .boxed();
    let findings_list =
        v1.and(warp::path!("cases" / String / "findings")).and(warp::get()).and(st()).and(a(CasesFindings)).then(h::list_findings).boxed();
    let findings_add = v1
        .and(warp::path!("cases" / String / "findings"))
        .and(warp::post())
        .and(st())
        .and(a(CasesFindingsAdd))
        .and(json_body(json))
        .then(h::add_finding)
        .boxed();
    let photos_waive = v1
        .and(warp::path!("cases" / String / "photos" / "waive"))
        .and(warp::post())
        .and(st())
        .and(a(CasesPhotosWaive))
        .and(json_body(json))
        .then(h::waive_photos)
        .boxed();
    let approval = v1
        .and(warp::path!("cases" / String / "approval"))
        .and(warp::post())
        .and(st())
        .and(a(CasesApprove))
        // A signature image rides along (at most 200,000 base64 characters, which JSON escaping of
        // other text could grow sixfold): sixteen times the JSON cap, so that any body the document
        // allows is read and answered, never cut off.
        .and(json_body(json.saturating_mul(16)))
        .then(h::approve)
        .boxed();
    let slots = v1.and(warp::path!("slots")).and(warp::get()).and(st()).and(a(SlotsList)).and(query()).then(h::slots).boxed();
    let appointment_get = v1
        .and(warp::path!("cases" / String / "appointment"))
        .and(warp::get())
        .and(st())
        .and(a(CasesAppointmentGet))
        .then(h::get_appointment)
        .boxed();
    let appointment_book = v1
        .and(warp::path!("cases" / String / "appointment"))
        .and(warp::post())
        .and(st())
        .and(a(CasesAppointmentBook))
        .and(json_body(json))
        .then(h::book)
        .boxed();
    let appointment_cancel = v1
        .and(warp::path!("cases" / String / "appointment"))
        .and(warp::delete())
        .and(st())
        .and(a(CasesAppointmentCancel))
        .then(h::cancel_booking)
        .boxed();
    let findings_review = v1
        .and(warp::path!("findings" / String / "review"))
        .and(warp::post())
        .and(st())
        .and(a(FindingsReview))
        .and(json_body(json))
        .then(h::review_finding)
        .boxed();
    let findings_measure = v1
        .and(warp::path!("findings" / String / "measure"))
        .and(warp::post())
        .and(st())
        .and(a(FindingsMeasure))
        .and(json_body(json))
        .then(h::measure_finding)
        .boxed();
    let photos_upload = v1
        .and(warp::path!("cases" / String / "photos"))
        .and(warp::post())
        .and(st())
        .and(a(PhotosUpload))
        // Multipart framing adds a little to the photo itself.
        .and(warp::multipart::form().max_length(drain_cap(s.limits.photo_body)))
        .then(h::upload_photo)
        .boxed();
    let photo_analysis = v1
        .and(warp::path!("photos" / String / "analysis"))
        .and(warp::get())
        .and(st())
        .and(a(PhotosAnalysis))
        .then(h::photo_analysis)
        .boxed();
    let photo_annotated = v1
        .and(warp::path!("photos" / String / "annotated"))
        .and(warp::get())
        .and(st())
        .and(a(PhotosAnnotated))
        .then(|id, s, c| h::photo_render(id, s, c, false))
        .boxed();
    let photo_blurred = v1
        .and(warp::path!("photos" / String / "blurred"))
        .and(warp::get())
        .and(st())
        .and(a(PhotosBlurred))
        .then(|id, s, c| h::photo_render(id, s, c, true))
        .boxed();
    let photos_get = v1.and(warp::path!("photos" / String)).and(warp::get()).and(st()).and(a(PhotosGet)).then(h::get_photo).boxed();

    let users_list = v1.and(warp::path!("users")).and(warp::get()).and(end()).and(st()).and(a(UsersList)).then(h::list_users).boxed();
    let users_create =
        v1.and(warp::path!("users")).and(warp::post()).and(st()).and(a(UsersCreate)).and(json_body(json)).then(h::create_user).boxed();
    let users_disable = v1
        .and(warp::path!("users" / i64 / "disable"))
        .and(warp::post())
        .and(st())
        .and(a(UsersDisable))
        .then(|id, s, c| h::set_disabled(id, s, c, true))
        .boxed();
    let users_enable = v1
        .and(warp::path!("users" / i64 / "enable"))
        .and(warp::post())
        .and(st())
        .and(a(UsersEnable))
        .then(|id, s, c| h::set_disabled(id, s, c, false))
        .boxed();
    let users_reset = v1
        .and(warp::path!("users" / i64 / "reset-password"))
        .and(warp::post())
        .and(st())
        .and(a(UsersResetPassword))
        .then(h::reset_password)
        .boxed();
    let audit = v1.and(warp::path!("audit")).and(warp::get()).and(st()).and(a(AuditList)).and(query()).then(h::audit).boxed();
    let sync_status = v1.and(warp::path!("sync" / "status")).and(warp::get()).and(st()).and(a(SyncStatus)).then(h::sync_status).boxed();
    let llm_status = v1.and(warp::path!("llm" / "status")).and(warp::get()).and(st()).and(a(LlmStatus)).then(h::llm_status).boxed();
    let privacy_find = v1
        .and(warp::path!("privacy" / "customers"))
        .and(warp::get())
        .and(st())
        .and(a(PrivacyFind))
        .and(query())
        .then(privacy::find)
        .boxed();
    let privacy_export = v1
        .and(warp::path!("privacy" / "customers" / String / "export"))
        .and(warp::get())
        .and(st())
        .and(a(PrivacyExport))
        .then(privacy::export)
        .boxed();
    let privacy_erase = v1
        .and(warp::path!("privacy" / "customers" / String / "erase"))
        .and(warp::post())
        .and(st())
        .and(a(PrivacyErase))
        .and(json_body(json))
        .then(privacy::erase)
        .boxed();
    let legal_hold = v1
        .and(warp::path!("cases" / String / "legal-hold"))
        .and(warp::post())
        .and(st())
        .and(a(CasesLegalHold))
        .and(json_body(json))
        .then(privacy::legal_hold)
        .boxed();
    let protection_status =
        v1.and(warp::path!("protection" / "status")).and(warp::get()).and(st()).and(a(ProtectionStatus)).then(privacy::status).boxed();

    use workshop as w;
    let ws_board = v1.and(warp::path!("workshop" / "board")).and(warp::get()).and(st()).and(a(WorkshopBoard)).then(w::board).boxed();
    let ws_flags =
        v1.and(warp::path!("workshop" / "flags")).and(warp::get()).and(st()).and(a(WorkshopFlags)).and(query()).then(w::flags).boxed();
    let ws_settle = v1
        .and(warp::path!("workshop" / "flags" / String))
        .and(warp::post())
        .and(st())
        .and(a(WorkshopFlagSettle))
        .and(json_body(json))
        .then(w::settle)
        .boxed();
    let case_ws =
        v1.and(warp::path!("cases" / String / "workshop")).and(warp::get()).and(st()).and(a(CasesWorkshop)).then(w::case_workshop).boxed();
    let ws_photos = v1
        .and(warp::path!("cases" / String / "workshop" / "photos"))
        .and(warp::post())
        .and(st())
        .and(a(CasesWorkshopPhotos))
        .and(warp::multipart::form().max_length(drain_cap(s.limits.photo_body)))
        .then(w::upload_shot)
        .boxed();
    let baseline_mark = v1
        .and(warp::path!("cases" / String / "baseline" / "marks"))
        .and(warp::post())
        .and(st())
        .and(a(CasesBaselineMark))
        .and(json_body(json))
        .then(w::mark)
        .boxed();
    let baseline_sign = v1
        .and(warp::path!("cases" / String / "baseline" / "sign"))
        .and(warp::post())
        .and(st())
        .and(a(CasesBaselineSign))
        // A signature image rides along, as with the estimate approval.
        .and(json_body(json.saturating_mul(16)))
        .then(w::sign_baseline)
        .boxed();
    let wo_start = v1
        .and(warp::path!("cases" / String / "work-order"))
        .and(warp::post())
        .and(st())
        .and(a(CasesWorkOrderStart))
        .and(json_body(json))
        .then(w::start)
        .boxed();
    let wo_finish = v1
        .and(warp::path!("cases" / String / "work-order" / "finish"))
        .and(warp::post())
        .and(st())
        .and(a(CasesWorkOrderFinish))
        .and(json_body(json))
        .then(w::finish)
        .boxed();
    let wo_clock = v1
        .and(warp::path!("work-order-lines" / String / "clock"))
        .and(warp::post())
        .and(st())
        .and(a(WorkOrderLineClock))
        .and(json_body(json))
        .then(w::clock)
        .boxed();
    let clock_correct = v1
        .and(warp::path!("clock-entries" / String / "correct"))
        .and(warp::post())
        .and(st())
        .and(a(ClockEntryCorrect))
        .and(json_body(json))
        .then(w::correct_clock)
        .boxed();
    let parts_scan = v1
        .and(warp::path!("cases" / String / "parts"))
        .and(warp::post())
        .and(st())
        .and(a(CasesPartsScan))
        .and(warp::multipart::form().max_length(drain_cap(s.limits.photo_body)))
        .then(w::scan_part)
        .boxed();
    let qc_compare = v1
        .and(warp::path!("cases" / String / "qc" / "compare"))
        .and(warp::post())
        .and(st())
        .and(a(CasesQcCompare))
        .and(json_body(json))
        .then(w::compare)
        .boxed();
    let qc_report = v1
        .and(warp::path!("cases" / String / "qc" / "report"))
        .and(warp::post())
        .and(st())
        .and(a(CasesQcReport))
        .and(json_body(json))
        .then(w::sign_report)
        .boxed();
    let qc_pdf = v1
        .and(warp::path!("cases" / String / "qc" / "report.pdf"))
        .and(warp::get())
        .and(st())
        .and(a(CasesQcReportPdf))
        .and(query())
        .then(w::report_pdf)
        .boxed();

    // One flat list, folded with `unify` + `boxed` at each step: a 40-deep `Or` type overflows
    // the compiler's query depth and gains nothing.
    [
        openapi,
        metrics,
        login,
        logout,
        me,
        password,
        customers_create,
        customers_list,
        customers_get,
        vehicles_create,
        vehicles_get,
        cases_create,
        cases_list,
        cases_get,
        cases_transition,
        cases_escalate,
        cases_hand_back,
        cases_assign,
        messages_post,
        messages_list,
        estimate_post,
        estimate_get,
        estimate_explain,
        findings_list,
        findings_add,
        findings_review,
        findings_measure,
        photos_waive,
        photos_upload,
        approval,
        slots,
        appointment_get,
        appointment_book,
        appointment_cancel,
        photos_get,
        photo_analysis,
        photo_annotated,
        photo_blurred,
        users_list,
        users_create,
        users_disable,
        users_enable,
        users_reset,
        audit,
        sync_status,
        llm_status,
        privacy_find,
        privacy_export,
        privacy_erase,
        legal_hold,
        protection_status,
        ws_board,
        ws_flags,
        ws_settle,
        case_ws,
        ws_photos,
        baseline_mark,
        baseline_sign,
        wo_start,
        wo_finish,
        wo_clock,
        clock_correct,
        parts_scan,
        qc_compare,
        qc_report,
        qc_pdf,
    ]
    .into_iter()
    .chain(follow_up::routes(&s))
    .chain(kpi::routes(&s))
    .chain(imports::routes(&s))
    .fold(health, |acc, r| acc.or(r).unify().boxed())
    .recover(error::recover)
}
