//! The tablet web UI: server-rendered pages (askama templates in `templates/`, checked at compile
//! time), a few ES modules and vendored htmx in `static/`, all embedded in the binary and served
//! on the API's own origin over TLS.
//!
//! Invariants:
//! - Pages are thin, like API handlers: they call the same services and render; no SQL here.
//! - Every page and every action names a `RouteId` of `api::policy`, the one route × role table:
//!   a role sees (in the navigation) and reaches only what it may do; anything else is 403.
//! - Sessions are the API's sessions, carried in an HttpOnly, Secure, SameSite=Strict cookie.
//! - Every state-changing request is a POST carrying the session's CSRF token (form field `csrf`
//!   or header `X-CSRF-Token`), and a foreign `Origin` is refused.
//! - Every string comes from the language catalogue (`i18n`); error `code`s, not messages, choose
//!   what the advisor reads.

pub mod charts;
pub mod i18n;
mod pages;
pub(crate) mod statics;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use sha2::{Digest, Sha256};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::api::error::ApiError;
use crate::api::policy::{self, Access, RouteId};
use crate::api::{ApiState, ClientAddr, Ctx};
use crate::domain::{validate, Actor};
use i18n::{Strings, UiLang};

pub const SESSION_COOKIE: &str = "sb_session";
const LANG_COOKIE: &str = "sb_lang";

/// The signed-in caller of a page, with what every page needs to render its frame.
#[derive(Clone)]
pub struct Page {
    pub ctx: Ctx,
    pub csrf: String,
    pub t: Strings,
    /// The request's path, for the navigation's active item and the login redirect.
    pub path: String,
}

impl Page {
    pub fn may(&self, id: RouteId) -> bool {
        policy::allows(id, self.ctx.user.role)
    }
}

/// Why a UI request was refused before its handler ran.
#[derive(Debug)]
enum UiReject {
    Login { next: String },
    ChangePassword,
    Forbidden { lang: UiLang },
    Csrf { lang: UiLang },
    Bad { lang: UiLang, err: ApiError },
}

impl warp::reject::Reject for UiReject {}

fn reject(r: UiReject) -> Rejection {
    warp::reject::custom(r)
}

/// The CSRF token of a session: a hash of its secret token, so it needs no storage and dies with
/// the session. Knowing it does not reveal the session token.
pub fn csrf_of(session_token: &str) -> String {
    let d = Sha256::digest(format!("servicebay-csrf:{session_token}").as_bytes());
    hex::encode(&d[..16])
}

pub(crate) fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The request's cookies as one `Cookie` header. Over HTTP/2 a browser may send each cookie in a
/// header field of its own (RFC 9113 §8.2.3), and warp's header filters read only the first: the
/// language cookie, or even the session, would be missed.
pub(crate) fn cookies() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::headers_cloned().and_then(|h: http::HeaderMap| async move {
        let all: Vec<&str> = h.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
        Ok::<_, Rejection>((!all.is_empty()).then(|| all.join("; ")))
    })
}

pub(crate) fn lang_of(cookies: Option<&str>) -> UiLang {
    cookie(cookies, LANG_COOKIE).map(UiLang::parse).unwrap_or(UiLang::Zh)
}

/// A signed-in page for route `id`: redirects to the login page without a session, to the
/// password page while a one-time password is unchanged, and answers 403 to a role the route
/// table does not list.
fn page(s: Arc<ApiState>, id: RouteId) -> impl Filter<Extract = (Page,), Error = Rejection> + Clone {
    cookies()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<ClientAddr>())
        .and_then(move |cookies: Option<String>, full: warp::path::FullPath, q: String, addr: Option<ClientAddr>| {
            let s = s.clone();
            async move {
                let lang = lang_of(cookies.as_deref());
                let path = full.as_str().to_string();
                let here = if q.is_empty() { path.clone() } else { format!("{path}?{q}") };
                let token = cookie(cookies.as_deref(), SESSION_COOKIE)
                    .filter(|t| !t.is_empty() && t.len() <= 256)
                    .ok_or_else(|| reject(UiReject::Login { next: here.clone() }))?
                    .to_string();
                let user = s.staff.session(&token).await.map_err(|_| reject(UiReject::Login { next: here.clone() }))?;
                if !policy::allows(id, user.role) {
                    return Err(reject(UiReject::Forbidden { lang }));
                }
                if user.must_change_password && policy::access(id) != Access::AnyUser {
                    return Err(reject(UiReject::ChangePassword));
                }
                let actor = Actor {
                    user_id: Some(user.id),
                    username: user.username.clone(),
                    role: Some(user.role),
                    client_addr: addr.map(|a| a.0.ip().to_string()),
                };
                let csrf = csrf_of(&token);
                Ok::<_, Rejection>(Page { ctx: Ctx { user, actor, token }, csrf, t: Strings::new(lang), path })
            }
        })
}

/// The language of a request that needs no session.
fn lang() -> impl Filter<Extract = (Strings,), Error = Rejection> + Clone {
    cookies().map(|c: Option<String>| Strings::new(lang_of(c.as_deref())))
}

/// A POST from one of our pages: the Origin, when the browser sends one, is this host (the Host
/// header in HTTP/1.1, the request's authority in HTTP/2).
fn same_origin() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::host::optional())
        .and(cookies())
        .and_then(|origin: Option<String>, host: Option<warp::host::Authority>, cookies: Option<String>| async move {
            let ok = match (origin.as_deref(), host.as_ref()) {
                (None, _) => true,
                (Some(o), Some(h)) => o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) == Some(h.as_str()),
                (Some(_), None) => false,
            };
            if ok {
                Ok(())
            } else {
                Err(reject(UiReject::Csrf { lang: lang_of(cookies.as_deref()) }))
            }
        })
        .untuple_one()
}

/// The fields of a urlencoded form, checked like every JSON body: no control characters.
#[derive(Debug, Default, Clone)]
pub struct Form(pub BTreeMap<String, String>);

impl Form {
    pub(crate) fn parse(body: &[u8], lang: UiLang) -> Result<Form, Rejection> {
        let mut m = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            // Text areas send CR LF line ends; the services' rule refuses other control characters.
            let v = v.replace("\r\n", "\n");
            if let Some(c) = validate::forbidden_char(&k).or_else(|| validate::forbidden_char(&v).filter(|c| *c != '\n')) {
                let msg = validate::plain_text(&k, &c.to_string()).err().map(|i| i.to_string()).unwrap_or_default();
                return Err(reject(UiReject::Bad { lang, err: ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &k, msg) }));
            }
            m.insert(k.into_owned(), v);
        }
        Ok(Form(m))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
    }
}

/// A signed-in POST for route `id` with a urlencoded body of at most the JSON cap and a valid
/// CSRF token (field `csrf` or header `X-CSRF-Token`).
fn action(s: Arc<ApiState>, id: RouteId) -> impl Filter<Extract = (Page, Form), Error = Rejection> + Clone {
    let limit = s.limits.json_body;
    warp::post()
        .and(same_origin())
        .and(page(s, id))
        .and(warp::header::optional::<String>("x-csrf-token"))
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and_then(|p: Page, header: Option<String>, body: Bytes| async move {
            let form = Form::parse(&body, p.t.lang())?;
            let sent = header.or_else(|| form.0.get("csrf").cloned()).unwrap_or_default();
            if !constant_time_eq(sent.as_bytes(), p.csrf.as_bytes()) {
                return Err(reject(UiReject::Csrf { lang: p.t.lang() }));
            }
            Ok::<_, Rejection>((p, form))
        })
        .untuple_one()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The query string as a map (control characters refused, as for the API's queries).
#[derive(Debug, Default, Clone)]
pub struct Query(pub BTreeMap<String, String>);

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
    }
}

fn query() -> impl Filter<Extract = (Query,), Error = Rejection> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify().and(lang()).and_then(|q: String, t: Strings| async move {
        let mut m = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if validate::forbidden_char(&k).or_else(|| validate::forbidden_char(&v)).is_some() {
                let err = ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", &k, "control characters are not allowed");
                return Err(reject(UiReject::Bad { lang: t.lang(), err }));
            }
            m.insert(k.into_owned(), v.into_owned());
        }
        Ok(Query(m))
    })
}

/// Security headers on every UI response: nothing from another host, no framing, no caching of
/// personal data, no referrer (with case ids) sent to another host.
pub fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, http::HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on our own
    // form posts, and the Origin check above needs the real one. Other hosts still get nothing.
    set(h, "referrer-policy", "same-origin");
    if !h.contains_key(http::header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    r
}

/// An HTML page from a template.
pub fn html<T: askama::Template>(t: &T, status: StatusCode) -> Response {
    match t.render() {
        Ok(body) => {
            let mut r = warp::reply::with_status(warp::reply::html(body), status).into_response();
            r = harden(r);
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            harden(warp::reply::with_status("internal error", StatusCode::INTERNAL_SERVER_ERROR).into_response())
        }
    }
}

/// 303 See Other to `to` (after a POST, so a reload does not send it again).
pub fn see_other(to: &str) -> Response {
    let mut r = warp::reply::with_status("", StatusCode::SEE_OTHER).into_response();
    if let Ok(v) = http::HeaderValue::from_str(to) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    harden(r)
}

/// Back to `to` with a message key (`?ok=`) or an error code (`?err=`, `&field=`).
pub fn back(to: &str, r: Result<&str, ApiError>) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    match r {
        Ok(key) => see_other(&format!("{to}{sep}ok={key}")),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(code = e.code, "a page action failed");
            }
            let field = e.field.map(|f| format!("&field={}", urlencode(&f))).unwrap_or_default();
            see_other(&format!("{to}{sep}err={}{field}", e.code))
        }
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Rejections of UI routes become pages; any other rejection passes on to the API's routes.
async fn recover(r: Rejection) -> Result<Response, Rejection> {
    let Some(u) = r.find::<UiReject>() else { return Err(r) };
    Ok(match u {
        UiReject::Login { next } => see_other(&format!("/login?next={}", urlencode(next))),
        UiReject::ChangePassword => see_other("/password"),
        UiReject::Forbidden { lang } => pages::error_page(Strings::new(*lang), StatusCode::FORBIDDEN, "err.forbidden"),
        UiReject::Csrf { lang } => pages::error_page(Strings::new(*lang), StatusCode::FORBIDDEN, "err.csrf"),
        UiReject::Bad { lang, err } => pages::bad_input_page(Strings::new(*lang), err),
    })
}

/// `/cases/{id}`, but not `/cases/new` (whose own route answers, or refuses, that path).
fn case_path() -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::path("cases").and(warp::path::param::<String>()).and(warp::path::end()).and_then(|id: String| async move {
        if id == "new" {
            Err(warp::reject::not_found())
        } else {
            Ok(id)
        }
    })
}

fn with<T: Clone + Send>(v: T) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || v.clone())
}

/// Every UI route. Each names the `RouteId` whose row in `api::policy` guards it.
pub fn routes(s: Arc<ApiState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    use pages as p;
    use warp::path::end;
    use RouteId::*;
    let st = || with(s.clone());
    let pg = |id| page(s.clone(), id);
    let act = |id| action(s.clone(), id);
    let get = warp::get;

    let statics = warp::path("static").and(warp::path::tail()).and(get()).map(|t: warp::path::Tail| statics::serve(t.as_str())).boxed();
    let root = end().and(get()).map(|| see_other("/today")).boxed();
    let login_page = warp::path!("login").and(get()).and(st()).and(lang()).and(query()).then(p::login_page).boxed();
    let login = warp::path!("login")
        .and(warp::post())
        .and(same_origin())
        .and(st())
        .and(lang())
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::body::content_length_limit(s.limits.json_body))
        .and(warp::body::bytes())
        .then(p::login)
        .boxed();
    let welcome = warp::path!("welcome").and(get()).and(st()).and(lang()).then(p::welcome).boxed();
    let certificate = warp::path!("servicebay.crt").and(get()).and(st()).then(p::certificate).boxed();
    let set_lang = warp::path!("lang" / String).and(get()).and(query()).map(p::set_lang).boxed();
    let logout = warp::path!("logout").and(act(Logout)).and(st()).then(p::logout).boxed();
    let password_page = warp::path!("password").and(get()).and(pg(ChangePassword)).and(query()).then(p::password_page).boxed();
    let password = warp::path!("password").and(act(ChangePassword)).and(st()).then(p::change_password).boxed();

    let today = warp::path!("today").and(get()).and(pg(CasesList)).and(st()).and(query()).then(p::today).boxed();
    let review = warp::path!("review").and(get()).and(pg(CasesList)).and(st()).and(query()).then(p::review_queue).boxed();
    let new_case_page = warp::path!("cases" / "new").and(get()).and(pg(CasesCreate)).and(st()).and(query()).then(p::new_case_page).boxed();
    let new_case = warp::path!("cases" / "new").and(act(CasesCreate)).and(st()).then(p::new_case).boxed();
    let case_page = case_path().and(get()).and(pg(CasesGet)).and(st()).and(query()).then(p::case_page).boxed();
    let intake_page =
        warp::path!("cases" / String / "intake").and(get()).and(pg(CasesMessagesList)).and(st()).and(query()).then(p::intake_page).boxed();
    let phrase =
        warp::path!("cases" / String / "intake" / "phrase").and(get()).and(pg(CasesMessagesPost)).and(st()).then(p::phrase_stream).boxed();
    let message = warp::path!("cases" / String / "messages").and(act(CasesMessagesPost)).and(st()).then(p::post_message).boxed();
    let photos_page =
        warp::path!("cases" / String / "photos").and(get()).and(pg(CasesGet)).and(st()).and(query()).then(p::photos_page).boxed();
    let photo_upload = warp::path!("cases" / String / "photos")
        .and(warp::post())
        .and(same_origin())
        .and(pg(PhotosUpload))
        .and(st())
        .and(warp::multipart::form().max_length(crate::api::drain_cap(s.limits.photo_body)))
        .then(p::upload_photo)
        .boxed();
    let photo_card =
        warp::path!("cases" / String / "photos" / String / "card").and(get()).and(pg(PhotosAnalysis)).and(st()).then(p::photo_card).boxed();
    let waive = warp::path!("cases" / String / "photos" / "waive").and(act(CasesPhotosWaive)).and(st()).then(p::waive_photos).boxed();
    let photo_raw = warp::path!("photo" / String).and(get()).and(pg(PhotosGet)).and(st()).then(p::photo_raw).boxed();
    let photo_annotated =
        warp::path!("photo" / String / "annotated").and(get()).and(pg(PhotosAnnotated)).and(st()).then(p::photo_annotated).boxed();
    let findings_page =
        warp::path!("cases" / String / "findings").and(get()).and(pg(CasesFindings)).and(st()).and(query()).then(p::findings_page).boxed();
    let finding_add = warp::path!("cases" / String / "findings").and(act(CasesFindingsAdd)).and(st()).then(p::add_finding).boxed();
    let finding_review =
        warp::path!("cases" / String / "findings" / String / "review").and(act(FindingsReview)).and(st()).then(p::review_finding).boxed();
    let measure_page = warp::path!("cases" / String / "findings" / String / "measure")
        .and(get())
        .and(pg(FindingsMeasure))
        .and(st())
        .and(query())
        .then(p::measure_page)
        .boxed();
    let measure =
        warp::path!("cases" / String / "findings" / String / "measure").and(act(FindingsMeasure)).and(st()).then(p::measure).boxed();
    let estimate_page = warp::path!("cases" / String / "estimate")
        .and(get())
        .and(pg(CasesEstimateGet))
        .and(st())
        .and(query())
        .then(p::estimate_page)
        .boxed();
    let estimate = warp::path!("cases" / String / "estimate").and(act(CasesEstimateCreate)).and(st()).then(p::create_estimate).boxed();
    let explain = warp::path!("cases" / String / "estimate" / "explain")
        .and(get())
        .and(pg(CasesEstimateCreate))
        .and(st())
        .then(p::explain_stream)
        .boxed();
    let quote = warp::path!("cases" / String / "quote").and(get()).and(pg(CasesEstimateGet)).and(st()).then(p::quote_page).boxed();
    let approve = warp::path!("cases" / String / "approval").and(act(CasesApprove)).and(st()).then(p::approve).boxed();
    let book = warp::path!("cases" / String / "appointment").and(act(CasesAppointmentBook)).and(st()).then(p::book).boxed();
    let cancel =
        warp::path!("cases" / String / "appointment" / "cancel").and(act(CasesAppointmentCancel)).and(st()).then(p::cancel).boxed();
    let escalate = warp::path!("cases" / String / "escalate").and(act(CasesEscalate)).and(st()).then(p::escalate).boxed();
    let take = warp::path!("cases" / String / "take").and(act(CasesAssign)).and(st()).then(p::take).boxed();
    let hand_back = warp::path!("cases" / String / "hand-back").and(act(CasesHandBack)).and(st()).then(p::hand_back).boxed();

    // The workshop and QC (seed scenario 2).
    let multipart = || warp::multipart::form().max_length(crate::api::drain_cap(s.limits.photo_body));
    let workshop_page =
        warp::path!("cases" / String / "workshop").and(get()).and(pg(CasesWorkshop)).and(st()).and(query()).then(p::workshop_page).boxed();
    let shot_card = warp::path!("cases" / String / "workshop" / "shots" / String / String)
        .and(get())
        .and(pg(CasesWorkshop))
        .and(st())
        .then(p::shot_card_poll)
        .boxed();
    let shot_upload = warp::path!("cases" / String / "workshop" / "photos")
        .and(warp::post())
        .and(same_origin())
        .and(pg(CasesWorkshopPhotos))
        .and(st())
        .and(multipart())
        .then(p::upload_shot)
        .boxed();
    let baseline_mark = warp::path!("cases" / String / "baseline" / "marks").and(act(CasesBaselineMark)).and(st()).then(p::mark).boxed();
    let baseline_sign =
        warp::path!("cases" / String / "baseline" / "sign").and(act(CasesBaselineSign)).and(st()).then(p::sign_baseline).boxed();
    let job_start = warp::path!("cases" / String / "work-order").and(act(CasesWorkOrderStart)).and(st()).then(p::start_job).boxed();
    let job_finish =
        warp::path!("cases" / String / "work-order" / "finish").and(act(CasesWorkOrderFinish)).and(st()).then(p::finish_job).boxed();
    let line_clock =
        warp::path!("cases" / String / "lines" / String / "clock").and(act(WorkOrderLineClock)).and(st()).then(p::clock).boxed();
    let clock_correct = warp::path!("cases" / String / "clock-entries" / String / "correct")
        .and(act(ClockEntryCorrect))
        .and(st())
        .then(p::correct_clock)
        .boxed();
    let part_scan = warp::path!("cases" / String / "parts")
        .and(warp::post())
        .and(same_origin())
        .and(pg(CasesPartsScan))
        .and(st())
        .and(multipart())
        .then(p::scan_part)
        .boxed();
    let bay = warp::path!("bay").and(get()).and(pg(WorkOrderLineClock)).and(st()).and(query()).then(p::bay_page).boxed();
    let qc_queue = warp::path!("qc").and(get()).and(pg(CasesQcReport)).and(st()).and(query()).then(p::qc_queue).boxed();
    let qc_page = warp::path!("cases" / String / "qc").and(get()).and(pg(CasesWorkshop)).and(st()).and(query()).then(p::qc_page).boxed();
    let qc_compare = warp::path!("cases" / String / "qc" / "compare").and(act(CasesQcCompare)).and(st()).then(p::compare).boxed();
    let qc_alert =
        warp::path!("cases" / String / "qc" / "alerts" / String).and(act(WorkshopFlagSettle)).and(st()).then(p::settle_alert).boxed();
    let qc_report = warp::path!("cases" / String / "qc" / "report").and(act(CasesQcReport)).and(st()).then(p::sign_report).boxed();
    let qc_pdf = warp::path!("cases" / String / "qc" / "report.pdf")
        .and(get())
        .and(pg(CasesQcReportPdf))
        .and(st())
        .and(query())
        .then(p::report_pdf)
        .boxed();
    let board = warp::path!("manager" / "bay").and(get()).and(pg(WorkshopBoard)).and(st()).and(query()).then(p::board_page).boxed();
    let anomalies =
        warp::path!("manager" / "anomalies").and(get()).and(pg(WorkshopFlags)).and(st()).and(query()).then(p::anomalies_page).boxed();
    let anomaly_settle = warp::path!("manager" / "anomalies" / String).and(act(WorkshopFlagSettle)).and(st()).then(p::settle_flag).boxed();

    let privacy = warp::path!("manager" / "privacy").and(get()).and(pg(PrivacyFind)).and(st()).and(query()).then(p::privacy_page).boxed();
    let privacy_export = warp::path!("manager" / "privacy" / "customers" / String / "export")
        .and(get())
        .and(pg(PrivacyExport))
        .and(st())
        .then(p::privacy_export)
        .boxed();
    let privacy_erase =
        warp::path!("manager" / "privacy" / "customers" / String / "erase").and(act(PrivacyErase)).and(st()).then(p::privacy_erase).boxed();
    let privacy_hold =
        warp::path!("manager" / "privacy" / "cases" / String / "hold").and(act(CasesLegalHold)).and(st()).then(p::privacy_hold).boxed();
    let users = warp::path!("manager" / "users").and(get()).and(pg(UsersList)).and(st()).and(query()).then(p::users_page).boxed();
    let user_create = warp::path!("manager" / "users").and(act(UsersCreate)).and(st()).then(p::create_user).boxed();
    let user_disable = warp::path!("manager" / "users" / i64 / "disable")
        .and(act(UsersDisable))
        .and(st())
        .then(|id, p, f, s| pages::set_disabled(id, p, f, s, true))
        .boxed();
    let user_enable = warp::path!("manager" / "users" / i64 / "enable")
        .and(act(UsersEnable))
        .and(st())
        .then(|id, p, f, s| pages::set_disabled(id, p, f, s, false))
        .boxed();
    let user_reset =
        warp::path!("manager" / "users" / i64 / "reset").and(act(UsersResetPassword)).and(st()).then(p::reset_password).boxed();
    let audit = warp::path!("manager" / "audit").and(get()).and(pg(AuditList)).and(st()).and(query()).then(p::audit_page).boxed();
    let status = warp::path!("manager" / "status").and(get()).and(pg(LlmStatus)).and(st()).then(p::status_page).boxed();
    let kpi = warp::path!("manager" / "kpi").and(get()).and(pg(KpiFigures)).and(st()).and(query()).then(p::kpi_page).boxed();
    let kpi_pdf =
        warp::path!("manager" / "kpi" / "report.pdf").and(get()).and(pg(KpiReportPdf)).and(st()).and(query()).then(p::kpi_pdf).boxed();

    // Store data import: the form, then the dry run's report and the confirmation (multipart).
    let import_page =
        warp::path!("manager" / "import").and(get()).and(pg(ImportsMappings)).and(st()).and(query()).then(p::import_page).boxed();
    let import_post = warp::path!("manager" / "import")
        .and(warp::post())
        .and(same_origin())
        .and(pg(ImportsRun))
        .and(st())
        .and(warp::multipart::form().max_length(crate::api::drain_cap(crate::import::table::MAX_BYTES as u64)))
        .then(p::post_import)
        .boxed();

    // Follow-up after delivery (seed scenario 3): the queue, the call, the alerts, the delivery page.
    let fu_queue = warp::path!("follow-ups").and(get()).and(pg(FollowUpsList)).and(st()).and(query()).then(p::follow_up_queue).boxed();
    let fu_call = warp::path!("cases" / String / "follow-up")
        .and(get())
        .and(pg(CasesFollowUp))
        .and(st())
        .and(query())
        .then(p::follow_up_call)
        .boxed();
    let fu_answer =
        warp::path!("cases" / String / "follow-up" / "answer").and(act(CasesFollowUpAnswer)).and(st()).then(p::follow_up_answer).boxed();
    let fu_attempt =
        warp::path!("cases" / String / "follow-up" / "attempt").and(act(CasesFollowUpAttempt)).and(st()).then(p::follow_up_attempt).boxed();
    let fu_alerts =
        warp::path!("follow-up" / "alerts").and(get()).and(pg(FollowUpAlerts)).and(st()).and(query()).then(p::follow_up_alerts).boxed();
    let fu_respond = warp::path!("follow-up" / "alerts" / String / "respond")
        .and(act(FollowUpAlertRespond))
        .and(st())
        .then(p::follow_up_alert_respond)
        .boxed();
    let fu_resolve = warp::path!("follow-up" / "alerts" / String / "resolve")
        .and(act(FollowUpAlertResolve))
        .and(st())
        .then(p::follow_up_alert_resolve)
        .boxed();
    let fu_delivery = warp::path!("cases" / String / "delivery")
        .and(get())
        .and(pg(CasesConsent))
        .and(st())
        .and(query())
        .then(p::fu_delivery_page)
        .boxed();
    let fu_consent = warp::path!("cases" / String / "consent").and(act(CasesConsent)).and(st()).then(p::fu_record_consent).boxed();
    let fu_revoke =
        warp::path!("cases" / String / "consent" / "revoke").and(act(CustomersConsentRevoke)).and(st()).then(p::fu_revoke_consent).boxed();

    [
        root,
        login_page,
        login,
        welcome,
        certificate,
        set_lang,
        logout,
        password_page,
        password,
        today,
        review,
        new_case_page,
        new_case,
        case_page,
        intake_page,
        phrase,
        message,
        photos_page,
        photo_upload,
        photo_card,
        waive,
        photo_raw,
        photo_annotated,
        findings_page,
        finding_add,
        finding_review,
        measure_page,
        measure,
        estimate_page,
        estimate,
        explain,
        quote,
        approve,
        book,
        cancel,
        escalate,
        take,
        hand_back,
        workshop_page,
        shot_card,
        shot_upload,
        baseline_mark,
        baseline_sign,
        job_start,
        job_finish,
        line_clock,
        clock_correct,
        part_scan,
        bay,
        qc_queue,
        qc_page,
        qc_compare,
        qc_alert,
        qc_report,
        qc_pdf,
        board,
        anomalies,
        anomaly_settle,
        users,
        user_create,
        user_disable,
        user_enable,
        user_reset,
        audit,
        status,
        kpi,
        kpi_pdf,
        import_page,
        import_post,
        privacy,
        privacy_export,
        privacy_erase,
        privacy_hold,
        fu_queue,
        fu_call,
        fu_answer,
        fu_attempt,
        fu_alerts,
        fu_respond,
        fu_resolve,
        fu_delivery,
        fu_consent,
        fu_revoke,
    ]
    .into_iter()
    .fold(statics, |acc, r| acc.or(r).unify().boxed())
    .recover(recover)
    .unify()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_csrf() {
        let h = Some("a=1; sb_session=tok; sb_lang=en");
        assert_eq!(cookie(h, SESSION_COOKIE), Some("tok"));
        assert_eq!(lang_of(h), UiLang::En);
        assert_eq!(cookie(Some("xsb_session=1"), SESSION_COOKIE), None);
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert!(constant_time_eq(b"ab", b"ab") && !constant_time_eq(b"ab", b"ac") && !constant_time_eq(b"a", b"ab"));
    }

    #[test]
    fn forms_refuse_control_characters_but_keep_line_breaks() {
        let f = Form::parse(b"text=a%0D%0Ab&csrf=x", UiLang::Zh).unwrap();
        assert_eq!(f.get("text"), Some("a\nb"));
        assert!(Form::parse(b"text=a%00b", UiLang::Zh).is_err());
    }
}
