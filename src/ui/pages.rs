//! Page handlers: each takes the signed-in `Page`, makes the same service calls as the JSON route
//! and renders a template (or answers 303 to the page that shows the result). View models are
//! plain strings and numbers, already in the reader's language.

use std::sync::Arc;

use askama::Template;
use bytes::{Buf, Bytes};
use futures_util::TryStreamExt;
use http::StatusCode;
use serde_json::Value;
use warp::reply::Response;
use warp::Reply;

use super::i18n::{Strings, UiLang};
use super::{back, html, see_other, urlencode, Form, Page, Query, LANG_COOKIE, SESSION_COOKIE};
use crate::api::error::ApiError;
use crate::api::policy::RouteId;
use crate::api::{ApiState, ClientAddr};
use crate::case::schedule::{Channel, NewApproval};
use crate::case::{Decision, MarkedReference, NewCase, NewCustomer, NewFinding, NewVehicle, Review};
use crate::domain::{CaseStatus, Role};
use crate::estimate::PartsChoice;
use crate::store::cases::CaseFilter;

// ---------------------------------------------------------------------------------------------
// The frame every page shares.

pub struct NavItem {
    pub href: &'static str,
    pub label: String,
    pub active: bool,
}

/// What `base.html` needs: strings, the user, the CSRF token, the navigation and a flash message.
pub struct Chrome {
    pub t: Strings,
    pub lang: &'static str,
    pub title: String,
    pub user: Option<String>,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub ok: Option<String>,
    pub err: Option<String>,
    /// This page's path (the language switch comes back here).
    pub here: String,
}

const NAV: &[(&str, &str, RouteId)] = &[
    ("/today", "nav.today", RouteId::CasesList),
    ("/cases/new", "nav.new_case", RouteId::CasesCreate),
    ("/review", "nav.review", RouteId::FindingsReview),
    ("/manager/users", "nav.users", RouteId::UsersList),
    ("/manager/audit", "nav.audit", RouteId::AuditList),
    ("/manager/status", "nav.status", RouteId::LlmStatus),
];

fn flash(t: &Strings, q: &Query) -> (Option<String>, Option<String>) {
    let ok = q.get("ok").filter(|k| is_key(k)).map(|k| t.or(&format!("ok.{k}"), t.s("ok.saved")));
    let err = q.get("err").filter(|k| is_key(k)).map(|k| {
        let base = t.or(&format!("err.{k}"), t.s("err.generic"));
        match q.get("field").filter(|f| f.len() <= 64) {
            Some(f) => format!("{base}（{}）", t.or(&format!("field.{f}"), f)),
            None => base,
        }
    });
    (ok, err)
}

fn is_key(k: &str) -> bool {
    k.len() <= 48 && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

impl Page {
    fn chrome(&self, title: &str, q: &Query) -> Chrome {
        let (ok, err) = flash(&self.t, q);
        let nav = NAV
            .iter()
            .filter(|(_, _, id)| self.may(*id))
            .map(|(href, key, _)| NavItem { href, label: self.t.s(key).to_string(), active: self.path.starts_with(href) })
            .collect();
        Chrome {
            t: self.t,
            lang: self.t.lang().tag(),
            title: title.to_string(),
            user: Some(self.ctx.user.display_name.clone()),
            role: self.t.of("role", self.ctx.user.role.as_str()),
            csrf: self.csrf.clone(),
            nav,
            ok,
            err,
            here: self.path.clone(),
        }
    }
}

fn public_chrome(t: Strings, title: &str, q: &Query) -> Chrome {
    let (ok, err) = flash(&t, q);
    Chrome {
        t,
        lang: t.lang().tag(),
        title: title.to_string(),
        user: None,
        role: String::new(),
        csrf: String::new(),
        nav: vec![],
        ok,
        err,
        here: "/login".into(),
    }
}

#[derive(Template)]
#[template(path = "error.html", config = "src/ui/askama.toml")]
struct ErrorPage {
    c: Chrome,
    message: String,
}

pub fn error_page(t: Strings, status: StatusCode, key: &str) -> Response {
    let c = public_chrome(t, t.s("err.title"), &Query::default());
    html(&ErrorPage { message: t.or(key, t.s("err.generic")), c }, status)
}

/// A service error on a page that cannot show its content: the error page, with the right status.
fn failed(p: &Page, e: ApiError) -> Response {
    if e.status.is_server_error() {
        tracing::warn!(code = e.code, "a page could not be shown");
    }
    let c = p.chrome(p.t.s("err.title"), &Query::default());
    let message = p.t.or(&format!("err.{}", e.code), p.t.s("err.generic"));
    html(&ErrorPage { c, message }, e.status)
}

fn when(at: &str) -> String {
    // Stored times are RFC 3339 (UTC) or local wall-clock; show local minutes.
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(at) {
        return d.with_timezone(&chrono::Local).format("%m-%d %H:%M").to_string();
    }
    at.replace('T', " ").chars().take(16).collect()
}

fn money(cny: f64) -> String {
    crate::estimate::fmt_money(cny)
}

// ---------------------------------------------------------------------------------------------
// Login, first run, password, language.

#[derive(Template)]
#[template(path = "login.html", config = "src/ui/askama.toml")]
struct LoginPage {
    c: Chrome,
    next: String,
    store_name: String,
    fingerprint: String,
    username: String,
}

fn safe_next(next: Option<&str>) -> String {
    // Only our own paths: never an open redirect to another host.
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() < 512 => n.to_string(),
        _ => "/today".to_string(),
    }
}

pub async fn login_page(s: Arc<ApiState>, t: Strings, q: Query) -> Response {
    let c = public_chrome(t, t.s("login.title"), &q);
    html(
        &LoginPage {
            c,
            next: safe_next(q.get("next")),
            store_name: s.site.store_name.clone(),
            fingerprint: s.site.tls_fingerprint.clone(),
            username: q.get("u").unwrap_or("").chars().take(64).collect(),
        },
        StatusCode::OK,
    )
}

fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

pub async fn login(s: Arc<ApiState>, t: Strings, addr: Option<ClientAddr>, body: Bytes) -> Response {
    let form = match Form::parse(&body, t.lang()) {
        Ok(f) => f,
        Err(_) => return see_other("/login?err=invalid_field"),
    };
    let next = safe_next(form.get("next"));
    let user = form.get("username").unwrap_or("").to_string();
    let pass = form.0.get("password").cloned().unwrap_or_default();
    let ip = addr.map(|a| a.0.ip().to_string()).unwrap_or_else(|| "unknown".into());
    match s.staff.login(&user, &pass, &ip).await {
        Ok(l) => {
            let to = if l.user.must_change_password { "/password".to_string() } else { next };
            let mut r = see_other(&to);
            if let Ok(v) = http::HeaderValue::from_str(&session_cookie(&l.token)) {
                r.headers_mut().append(http::header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            see_other(&format!("/login?err={}&next={}&u={}", e.code, urlencode(&next), urlencode(&user)))
        }
    }
}

#[derive(Template)]
#[template(path = "welcome.html", config = "src/ui/askama.toml")]
struct WelcomePage {
    c: Chrome,
    store_name: String,
    fingerprint: String,
}

pub async fn welcome(s: Arc<ApiState>, t: Strings) -> Response {
    let c = public_chrome(t, t.s("welcome.title"), &Query::default());
    html(&WelcomePage { c, store_name: s.site.store_name.clone(), fingerprint: s.site.tls_fingerprint.clone() }, StatusCode::OK)
}

/// The store's certificate (public by nature), for a tablet to install and trust; the first-run
/// page says to compare its fingerprint before trusting it.
pub async fn certificate(s: Arc<ApiState>) -> Response {
    match tokio::fs::read(&s.site.tls_cert).await {
        Ok(pem) => {
            let mut r = Response::new(pem.into());
            let h = r.headers_mut();
            h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-x509-ca-cert"));
            h.insert(http::header::CONTENT_DISPOSITION, http::HeaderValue::from_static("attachment; filename=\"servicebay.crt\""));
            super::harden(r)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the TLS certificate for download");
            error_page(Strings::new(UiLang::Zh), StatusCode::NOT_FOUND, "err.not_found")
        }
    }
}

pub fn set_lang(lang: String, q: Query) -> Response {
    let l = UiLang::parse(&lang);
    let mut r = see_other(&safe_next(q.get("next")));
    if let Ok(v) = http::HeaderValue::from_str(&format!("{LANG_COOKIE}={}; Path=/; Secure; SameSite=Strict; Max-Age=31536000", l.code())) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
    r
}

pub async fn logout(p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let _ = s.staff.logout(&p.ctx.actor, &p.ctx.token).await;
    let mut r = see_other("/login?ok=logged_out");
    if let Ok(v) = http::HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
    r
}

#[derive(Template)]
#[template(path = "password.html", config = "src/ui/askama.toml")]
struct PasswordPage {
    c: Chrome,
    forced: bool,
}

pub async fn password_page(p: Page, q: Query) -> Response {
    let forced = p.ctx.user.must_change_password;
    let mut c = p.chrome(p.t.s("password.title"), &q);
    if forced {
        c.nav.clear();
    }
    html(&PasswordPage { c, forced }, StatusCode::OK)
}

pub async fn change_password(p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let old = f.0.get("old_password").cloned().unwrap_or_default();
    let new = f.0.get("new_password").cloned().unwrap_or_default();
    if f.0.get("new_password_again").map(String::as_str) != Some(new.as_str()) {
        return see_other("/password?err=password_mismatch");
    }
    match s.staff.change_password(&p.ctx.actor, p.ctx.user.id, &old, &new).await {
        // A password change ends every session of the user: sign in again with the new one.
        Ok(()) => see_other(&format!("/login?ok=password_changed&u={}", urlencode(&p.ctx.user.username))),
        Err(e) => back("/password", Err(e.into())),
    }
}

// ---------------------------------------------------------------------------------------------
// Today, search and the review queue.

pub struct CaseRow {
    pub id: String,
    pub short: String,
    pub status: String,
    pub status_label: String,
    pub summary: String,
    pub needs_review: bool,
    pub updated: String,
}

fn case_row(t: &Strings, c: &crate::domain::case::Case) -> CaseRow {
    CaseRow {
        id: c.id.clone(),
        short: short_id(&c.id),
        status: c.status.as_str().to_string(),
        status_label: t.of("status", c.status.as_str()),
        summary: c.summary.chars().take(60).collect(),
        needs_review: c.needs_review,
        updated: when(&c.updated_at),
    }
}

fn short_id(id: &str) -> String {
    let n = id.len();
    id[n.saturating_sub(6)..].to_uppercase()
}

pub struct Tile {
    pub status: String,
    pub label: String,
    pub n: i64,
}

pub struct ApptRow {
    pub case_id: String,
    pub short: String,
    pub time: String,
    pub bay: String,
}

#[derive(Template)]
#[template(path = "today.html", config = "src/ui/askama.toml")]
struct TodayPage {
    c: Chrome,
    tiles: Vec<Tile>,
    waiting: i64,
    appointments: Vec<ApptRow>,
    /// The cases assigned to the signed-in person (what a technician or inspector works on).
    mine: Vec<CaseRow>,
    recent: Vec<CaseRow>,
    q: String,
    results: Option<Vec<CaseRow>>,
    may_search: bool,
    may_create: bool,
}

const OPEN_STATUSES: [CaseStatus; 9] = [
    CaseStatus::Reported,
    CaseStatus::Intake,
    CaseStatus::Assessed,
    CaseStatus::Estimated,
    CaseStatus::Scheduled,
    CaseStatus::InRepair,
    CaseStatus::Qc,
    CaseStatus::Delivered,
    CaseStatus::Escalated,
];

pub async fn today(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let counts = s.cases.status_counts().await?;
        let tiles = OPEN_STATUSES
            .iter()
            .map(|st| Tile {
                status: st.as_str().to_string(),
                label: p.t.of("status", st.as_str()),
                n: counts.iter().find(|(k, _)| k == st.as_str()).map(|(_, n)| *n).unwrap_or(0),
            })
            .collect();
        let waiting = s.cases.waiting_for_a_person().await?;
        let day = chrono::Local::now().date_naive();
        let appointments = s
            .schedule
            .on_day(day)
            .await?
            .into_iter()
            .map(|a| ApptRow {
                short: short_id(&a.case_id),
                case_id: a.case_id,
                time: format!("{}–{}", a.starts_at.get(11..16).unwrap_or(""), a.ends_at.get(11..16).unwrap_or("")),
                bay: a.bay,
            })
            .collect();
        let recent = s.cases.list_cases(filter(None, 20)).await?.iter().map(|c| case_row(&p.t, c)).collect();
        let mut f = filter(None, 50);
        f.assigned_to = Some(p.ctx.user.id);
        let mine = s.cases.list_cases(f).await?.iter().filter(|c| !c.status.is_terminal()).map(|c| case_row(&p.t, c)).collect();
        let may_search = p.may(RouteId::CustomersList);
        let query = q.get("q").map(|x| x.chars().take(64).collect::<String>());
        let results = match (&query, may_search) {
            (Some(text), true) => {
                let mut rows = vec![];
                for cust in s.cases.list_customers(&p.ctx.actor, Some(text.clone()), None, 10).await? {
                    let mut f = filter(None, 10);
                    f.customer_id = Some(cust.id.clone());
                    rows.extend(s.cases.list_cases(f).await?.iter().map(|c| case_row(&p.t, c)));
                }
                Some(rows)
            }
            _ => None,
        };
        Ok::<_, ApiError>(TodayPage {
            c: p.chrome(p.t.s("today.title"), &q),
            tiles,
            waiting,
            appointments,
            mine,
            recent,
            q: query.unwrap_or_default(),
            results,
            may_search,
            may_create: p.may(RouteId::CasesCreate),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

fn filter(needs_review: Option<bool>, limit: u32) -> CaseFilter {
    CaseFilter { status: None, customer_id: None, assigned_to: None, needs_review, before: None, limit }
}

pub struct ReviewRow {
    pub case: CaseRow,
    pub why: String,
    pub mine: bool,
}

#[derive(Template)]
#[template(path = "review.html", config = "src/ui/askama.toml")]
struct ReviewPage {
    c: Chrome,
    rows: Vec<ReviewRow>,
    may_take: bool,
}

/// Every case whose AI decision waits for a person, oldest first.
pub async fn review_queue(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let mut cases = s.cases.list_cases(filter(Some(true), 100)).await?;
        cases.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        let mut rows = vec![];
        for c in &cases {
            // Why it waits: the latest reason on its timeline (escalation, low confidence, disagreement).
            let why = s.cases.get_case(c.id.clone()).await?.timeline.iter().rev().find_map(|e| e.reason.clone()).unwrap_or_default();
            rows.push(ReviewRow { case: case_row(&p.t, c), why, mine: c.assigned_to == Some(p.ctx.user.id) });
        }
        Ok::<_, ApiError>(ReviewPage { c: p.chrome(p.t.s("review.title"), &q), rows, may_take: p.may(RouteId::CasesAssign) })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

// ---------------------------------------------------------------------------------------------
// New case.

pub struct CustomerRow {
    pub id: String,
    pub name: String,
    pub phone: String,
}

#[derive(Template)]
#[template(path = "case_new.html", config = "src/ui/askama.toml")]
struct NewCasePage {
    c: Chrome,
    q: String,
    customers: Vec<CustomerRow>,
    may_vehicle: bool,
}

pub async fn new_case_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let query = q.get("q").map(|x| x.chars().take(64).collect::<String>());
    let customers = match &query {
        Some(text) => match s.cases.list_customers(&p.ctx.actor, Some(text.clone()), None, 10).await {
            Ok(v) => v.into_iter().map(|c| CustomerRow { id: c.id, name: c.name, phone: c.phone.unwrap_or_default() }).collect(),
            Err(e) => return failed(&p, e.into()),
        },
        None => vec![],
    };
    let c = p.chrome(p.t.s("new.title"), &q);
    html(&NewCasePage { c, q: query.unwrap_or_default(), customers, may_vehicle: p.may(RouteId::VehiclesCreate) }, StatusCode::OK)
}

fn opt(f: &Form, k: &str) -> Option<String> {
    f.get(k).map(str::to_string)
}

pub async fn new_case(p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let customer_id = match f.get("customer_id") {
            Some(id) => id.to_string(),
            None => {
                let name =
                    f.get("name").ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "name", "name: required"))?;
                let c = NewCustomer { name: name.to_string(), phone: opt(&f, "phone"), email: None, preferred_language: None };
                s.cases.create_customer(&p.ctx.actor, c).await?.id
            }
        };
        let vehicle_id = if (f.get("plate").is_some() || f.get("vin").is_some()) && p.may(RouteId::VehiclesCreate) {
            let year = f
                .get("year")
                .map(|y| y.parse::<i32>())
                .transpose()
                .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "year", "year: a number such as 2021"))?;
            let v = NewVehicle {
                customer_id: customer_id.clone(),
                vin: opt(&f, "vin"),
                plate: opt(&f, "plate"),
                make: opt(&f, "make"),
                model: opt(&f, "model"),
                year,
                mileage_km: None,
            };
            Some(s.cases.create_vehicle(&p.ctx.actor, v).await?.id)
        } else {
            None
        };
        // The summary is the desk's one-line note; the customer's words go into the conversation next.
        let summary = f.get("summary").unwrap_or("").to_string();
        let case = s.cases.create_case(&p.ctx.actor, NewCase { customer_id, vehicle_id, summary }).await?;
        Ok::<_, ApiError>(case.id)
    };
    match r.await {
        Ok(id) => see_other(&format!("/cases/{id}/intake")),
        Err(e) => back("/cases/new", Err(e)),
    }
}

// ---------------------------------------------------------------------------------------------
// The case: its head (status, tabs, hand to a person) and its pages.

pub struct Tab {
    pub href: String,
    pub label: String,
    pub active: bool,
}

pub struct CaseHead {
    pub id: String,
    pub short: String,
    pub status: String,
    pub status_label: String,
    pub needs_review: bool,
    pub summary: String,
    pub vehicle: String,
    pub tabs: Vec<Tab>,
    pub may_escalate: bool,
    pub may_take: bool,
    pub may_hand_back: bool,
    pub csrf: String,
}

async fn head(p: &Page, s: &ApiState, id: &str, active: &str) -> Result<(CaseHead, crate::case::CaseView), ApiError> {
    let v = s.cases.get_case(id.to_string()).await?;
    let tabs = [
        ("", "tab.overview", RouteId::CasesGet),
        ("/intake", "tab.intake", RouteId::CasesMessagesList),
        ("/photos", "tab.photos", RouteId::CasesGet),
        ("/findings", "tab.findings", RouteId::CasesFindings),
        ("/estimate", "tab.estimate", RouteId::CasesEstimateGet),
    ]
    .iter()
    .filter(|(_, _, r)| p.may(*r))
    .map(|(suffix, key, _)| Tab { href: format!("/cases/{id}{suffix}"), label: p.t.s(key).to_string(), active: *suffix == active })
    .collect();
    let vehicle = v
        .vehicle
        .as_ref()
        .map(|x| [x.plate.clone(), x.make.clone(), x.model.clone(), x.vin.clone()].into_iter().flatten().collect::<Vec<_>>().join(" · "))
        .unwrap_or_default();
    let escalated = v.case.status == CaseStatus::Escalated;
    let h = CaseHead {
        id: id.to_string(),
        short: short_id(id),
        status: v.case.status.as_str().to_string(),
        status_label: p.t.of("status", v.case.status.as_str()),
        needs_review: v.case.needs_review,
        summary: v.case.summary.clone(),
        vehicle,
        tabs,
        may_escalate: p.may(RouteId::CasesEscalate) && !escalated,
        may_take: p.may(RouteId::CasesAssign) && v.case.assigned_to != Some(p.ctx.user.id),
        may_hand_back: p.may(RouteId::CasesHandBack) && escalated,
        csrf: p.csrf.clone(),
    };
    Ok((h, v))
}

pub struct TimelineRow {
    pub at: String,
    pub actor: String,
    pub what: String,
    pub reason: String,
}

pub struct PhotoRow {
    pub id: String,
    /// What the page shows: the annotated photo once analysed, the original before.
    pub img: Option<String>,
    /// A bad photo's reshoot button: (link, label).
    pub retake: Option<(String, String)>,
    pub shot: String,
    pub state: String,
    pub ok: bool,
    pub reasons: Vec<String>,
    pub pending: bool,
    pub case_id: String,
}

#[derive(Template)]
#[template(path = "case.html", config = "src/ui/askama.toml")]
struct CasePage {
    c: Chrome,
    h: CaseHead,
    customer: String,
    timeline: Vec<TimelineRow>,
    photos: Vec<PhotoRow>,
    estimate: Option<String>,
    appointment: Option<String>,
}

pub async fn case_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "").await?;
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        let timeline = v
            .timeline
            .iter()
            .rev()
            .map(|e| TimelineRow {
                at: when(&e.at),
                actor: e.actor.clone(),
                what: match e.to_status {
                    Some(st) => p.t.f("timeline.moved", &[("status", &p.t.of("status", st.as_str()))]),
                    None => p.t.of("event", &e.kind),
                },
                reason: e.reason.clone().unwrap_or_default(),
            })
            .collect();
        let mut photos = vec![];
        for ph in &v.photos {
            photos.push(photo_row(&p, &s, &id, ph).await?);
        }
        let estimate = match s.estimates.latest(id.clone()).await {
            Ok(e) => Some(p.t.f(
                "case.estimate_line",
                &[
                    ("v", &e.version.to_string()),
                    ("total", &money(e.total_fen as f64 / 100.0)),
                    ("state", &p.t.of("estimate_state", &e.status)),
                ],
            )),
            Err(crate::case::CaseError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let appointment = appointment_text(&p.t, &s, &id).await?;
        Ok::<_, ApiError>(CasePage {
            c: p.chrome(&format!("{} {}", p.t.s("case.title"), h.short), &q),
            h,
            customer,
            timeline,
            photos,
            estimate,
            appointment,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

async fn appointment_text(t: &Strings, s: &ApiState, id: &str) -> Result<Option<String>, ApiError> {
    match s.schedule.appointment(id.to_string()).await {
        Ok(a) if a.status == "booked" => Ok(Some(t.f(
            "case.appointment_line",
            &[
                ("start", &a.starts_at.replace('T', " ")[..16.min(a.starts_at.len())]),
                ("end", a.ends_at.get(11..16).unwrap_or("")),
                ("bay", &a.bay),
            ],
        ))),
        Ok(_) | Err(crate::case::CaseError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn photo_row(p: &Page, s: &ApiState, case_id: &str, ph: &crate::domain::Photo) -> Result<PhotoRow, ApiError> {
    let t = &p.t;
    let pid = ph.id.clone();
    let a = s.store.read(move |tx| crate::store::photos::analysis(tx, &pid)).await?;
    let done = a.as_ref().is_some_and(|a| a.status == "done");
    let (state, ok, reasons, pending) = match a {
        None => (t.s("photo.pending").to_string(), false, vec![], true),
        Some(a) if a.status == "done" => {
            let quality = a.quality.unwrap_or(Value::Null);
            let ok = quality["ok"].as_bool().unwrap_or(false);
            let reasons: Vec<String> = quality["issues"]
                .as_array()
                .map(|v| v.iter().filter_map(|i| i["reason"].as_str()).map(|r| t.of("quality", r)).collect())
                .unwrap_or_default();
            (if ok { t.s("photo.ok").to_string() } else { t.s("photo.retake").to_string() }, ok, reasons, false)
        }
        Some(_) => (t.s("photo.failed").to_string(), false, vec![t.s("photo.failed_hint").to_string()], false),
    };
    let img = if done && p.may(RouteId::PhotosAnnotated) {
        Some(format!("/photo/{}/annotated", ph.id))
    } else if p.may(RouteId::PhotosGet) {
        Some(format!("/photo/{}", ph.id))
    } else {
        None
    };
    let retake = (done && !ok && p.may(RouteId::PhotosUpload)).then(|| {
        (format!("/cases/{case_id}/photos?shot={}", ph.shot.as_deref().unwrap_or("close_up")), t.s("photo.retake_button").to_string())
    });
    Ok(PhotoRow {
        id: ph.id.clone(),
        img,
        retake,
        shot: t.of("shot", ph.shot.as_deref().unwrap_or("other")),
        state,
        ok,
        reasons,
        pending,
        case_id: case_id.to_string(),
    })
}

// --- intake --------------------------------------------------------------------------------------

pub struct ChatRow {
    pub customer: bool,
    pub text: String,
    pub at: String,
    pub degraded: bool,
    /// Where the model's rewording of this question streams from, while it is pending.
    pub stream: Option<String>,
}

#[derive(Template)]
#[template(path = "intake.html", config = "src/ui/askama.toml")]
struct IntakePage {
    c: Chrome,
    h: CaseHead,
    chat: Vec<ChatRow>,
    may_post: bool,
    next_photos: bool,
}

pub async fn intake_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/intake").await?;
        let messages = s.intake.messages(&p.ctx.actor, id.clone()).await?;
        let last = messages.last().map(|m| m.id);
        let may_phrase = p.may(RouteId::CasesMessagesPost) && s.intake.can_phrase();
        let chat = messages
            .into_iter()
            .map(|m| ChatRow {
                customer: m.sender == "customer",
                degraded: m.meta.as_ref().and_then(|x| x["degraded"].as_bool()).unwrap_or(false),
                stream: (may_phrase && Some(m.id) == last && crate::case::intake::phrase_pending(&m))
                    .then(|| format!("/cases/{id}/intake/phrase")),
                text: m.text,
                at: when(&m.at),
            })
            .collect::<Vec<_>>();
        let next_photos = matches!(v.case.status, CaseStatus::Intake);
        Ok::<_, ApiError>(IntakePage {
            c: p.chrome(p.t.s("intake.title"), &q),
            h,
            chat,
            may_post: p.may(RouteId::CasesMessagesPost),
            next_photos,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn post_message(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/intake");
    let text = f.get("text").unwrap_or("").to_string();
    // The template's question at once; the page streams the model's wording in after.
    match s.intake.message_now(&p.ctx.actor, id, text).await {
        Ok(_) => see_other(&format!("{to}#last")),
        Err(e) => back(&to, Err(e.into())),
    }
}

// --- photos --------------------------------------------------------------------------------------

pub struct ShotSlot {
    pub shot: &'static str,
    pub label: String,
    pub done: bool,
}

#[derive(Template)]
#[template(path = "photos.html", config = "src/ui/askama.toml")]
struct PhotosPage {
    c: Chrome,
    h: CaseHead,
    photos: Vec<PhotoRow>,
    shots: Vec<ShotSlot>,
    shot: String,
    may_upload: bool,
    may_waive: bool,
    progress: String,
}

pub async fn photos_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/photos").await?;
        let mut photos = vec![];
        for ph in &v.photos {
            photos.push(photo_row(&p, &s, &id, ph).await?);
        }
        let passed = photos.iter().filter(|x| x.ok).count();
        let taken = |shot: &str| v.photos.iter().any(|x| x.shot.as_deref() == Some(shot));
        let shots: Vec<ShotSlot> =
            ["front", "side", "close_up"].into_iter().map(|sh| ShotSlot { shot: sh, label: p.t.of("shot", sh), done: taken(sh) }).collect();
        let shot = q
            .get("shot")
            .filter(|x| matches!(*x, "front" | "side" | "close_up"))
            .map(str::to_string)
            .or_else(|| shots.iter().find(|x| !x.done).map(|x| x.shot.to_string()))
            .unwrap_or_else(|| "close_up".into());
        Ok::<_, ApiError>(PhotosPage {
            c: p.chrome(p.t.s("photos.title"), &q),
            h,
            photos,
            shots,
            shot,
            may_upload: p.may(RouteId::PhotosUpload),
            may_waive: p.may(RouteId::CasesPhotosWaive) && matches!(v.case.status, CaseStatus::Intake),
            progress: p
                .t
                .f("photos.progress", &[("n", &passed.to_string()), ("needed", &crate::domain::case::REQUESTED_PHOTOS.to_string())]),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

/// The photo form: `csrf`, `shot` and `photo` (the file), read within the photo cap.
pub async fn upload_photo(id: String, p: Page, s: Arc<ApiState>, form: warp::multipart::FormData) -> Response {
    let to = format!("/cases/{id}/photos");
    let r = async {
        let limit = s.limits.photo_body;
        let (mut csrf, mut shot, mut file) = (String::new(), None, None);
        let mut parts = form;
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_multipart", m);
        while let Some(part) = parts.try_next().await.map_err(|e| bad(e.to_string()))? {
            let name = part.name().to_string();
            let cap = if name == "photo" { limit } else { 128 };
            let mut data = Vec::new();
            let mut seen = 0u64;
            let mut stream = part.stream();
            while let Some(chunk) = stream.try_next().await.map_err(|e| bad(e.to_string()))? {
                seen += chunk.remaining() as u64;
                if seen <= cap {
                    data.extend_from_slice(chunk.chunk());
                }
            }
            if seen > cap {
                return Err(ApiError::field(StatusCode::PAYLOAD_TOO_LARGE, "photo_too_large", "file", "too large"));
            }
            match name.as_str() {
                "csrf" => csrf = String::from_utf8_lossy(&data).to_string(),
                "shot" => {
                    shot = Some(String::from_utf8_lossy(&data).trim().to_string())
                        .filter(|x| matches!(x.as_str(), "front" | "side" | "close_up"))
                }
                "photo" if !data.is_empty() => file = Some(data),
                _ => {}
            }
        }
        if !super::constant_time_eq(csrf.as_bytes(), p.csrf.as_bytes()) {
            return Err(ApiError::forbidden("csrf"));
        }
        let file = file.ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_photo", "file", "no photo"))?;
        crate::api::handlers::save_photo(&s, &p.ctx, id.clone(), file, shot).await
    };
    match r.await {
        Ok(_) => see_other(&format!("{to}?ok=photo_uploaded")),
        Err(e) if e.code == "forbidden" => error_page(p.t, StatusCode::FORBIDDEN, "err.csrf"),
        Err(e) => back(&to, Err(e)),
    }
}

#[derive(Template)]
#[template(path = "photo_card.html", config = "src/ui/askama.toml")]
struct PhotoCard {
    ph: PhotoRow,
}

/// One photo's card: the page polls it (htmx) while the analysis is pending.
pub async fn photo_card(id: String, pid: String, p: Page, s: Arc<ApiState>) -> Response {
    let r = async {
        let ph = s.cases.photo(&p.ctx.actor, pid).await?;
        if ph.case_id != id {
            return Err(ApiError::not_found("photo"));
        }
        Ok::<_, ApiError>(PhotoCard { ph: photo_row(&p, &s, &id, &ph).await? })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => super::harden(warp::reply::with_status("", e.status).into_response()),
    }
}

pub async fn waive_photos(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let reason = f.get("reason").unwrap_or("").to_string();
    let r = crate::case::photos::waive_photos(&s.store, &p.ctx.actor, id.clone(), reason).await;
    match r {
        Ok(_) => see_other(&format!("/cases/{id}/findings?ok=photos_waived")),
        Err(e) => back(&format!("/cases/{id}/photos"), Err(e.into())),
    }
}

pub async fn photo_raw(pid: String, p: Page, s: Arc<ApiState>) -> Response {
    super::harden(crate::api::handlers::get_photo(pid, s, p.ctx).await)
}

pub async fn photo_annotated(pid: String, p: Page, s: Arc<ApiState>) -> Response {
    super::harden(crate::api::handlers::photo_render(pid, s, p.ctx, false).await)
}

// --- findings ------------------------------------------------------------------------------------

pub struct FindingRow {
    pub id: String,
    pub text: String,
    pub sources: Vec<String>,
    pub confidence: String,
    pub review: bool,
    pub state: String,
    pub state_label: String,
    pub length: String,
    pub measurable: bool,
    pub part: String,
    pub position: String,
    pub damage_type: String,
}

#[derive(Template)]
#[template(path = "findings.html", config = "src/ui/askama.toml")]
struct FindingsPage {
    c: Chrome,
    h: CaseHead,
    rows: Vec<FindingRow>,
    may_review: bool,
    may_add: bool,
    may_estimate: bool,
    parts: Vec<(String, String)>,
    damages: Vec<(String, String)>,
    positions: Vec<(String, String)>,
}

/// A vocabulary word in the reader's language: the domain's own Chinese names (one source for
/// them), the wire id in English.
fn word(t: &Strings, kind: &str, id: &str) -> String {
    use crate::domain::vocab::{DamageType, Part, Position};
    if t.lang() == UiLang::En {
        return id.replace('_', " ");
    }
    let zh = match kind {
        "part" => Part::from_id(id).map(Part::name_zh),
        "damage" => DamageType::from_id(id).map(DamageType::name_zh),
        "position" => Position::from_id(id).map(Position::name_zh),
        _ => None,
    };
    zh.map(str::to_string).unwrap_or_else(|| id.to_string())
}

fn vocab(t: &Strings, kind: &str, ids: impl Iterator<Item = &'static str>) -> Vec<(String, String)> {
    ids.map(|k| (k.to_string(), word(t, kind, k))).collect()
}

pub async fn findings_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    use crate::domain::vocab::{DamageType, Part, Position};
    let r = async {
        let (h, v) = head(&p, &s, &id, "/findings").await?;
        let threshold = s.estimates.review_threshold();
        let rows = s
            .cases
            .findings(id.clone())
            .await?
            .into_iter()
            .map(|f| {
                let pending = f.review_status == "pending";
                let low = f.source == "vision" && f.confidence.unwrap_or(0.0) < threshold;
                let text = [
                    f.position.as_deref().map(|x| word(&p.t, "position", x)),
                    Some(word(&p.t, "part", &f.part)),
                    Some(word(&p.t, "damage", &f.damage_type)),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
                FindingRow {
                    id: f.id.clone(),
                    text,
                    sources: f.sources.iter().map(|x| p.t.of("source", x)).collect(),
                    confidence: f.confidence.map(|c| format!("{:.0}%", c * 100.0)).unwrap_or_default(),
                    review: pending && low,
                    state: f.review_status.clone(),
                    state_label: p.t.of("review_state", &f.review_status),
                    length: f.length_cm.or(f.measured_cm).map(|l| format!("{l:.0} cm")).unwrap_or_default(),
                    measurable: f.photo_id.is_some() && p.may(RouteId::FindingsMeasure),
                    part: f.part.clone(),
                    position: f.position.clone().unwrap_or_default(),
                    damage_type: f.damage_type.clone(),
                }
            })
            .collect();
        let may_estimate = p.may(RouteId::CasesEstimateCreate)
            && matches!(v.case.status, CaseStatus::Assessed | CaseStatus::Estimated | CaseStatus::Scheduled);
        Ok::<_, ApiError>(FindingsPage {
            c: p.chrome(p.t.s("findings.title"), &q),
            h,
            rows,
            may_review: p.may(RouteId::FindingsReview),
            may_add: p.may(RouteId::CasesFindingsAdd),
            may_estimate,
            parts: vocab(&p.t, "part", Part::ALL.iter().map(|x| x.id())),
            damages: vocab(&p.t, "damage", DamageType::ALL.iter().map(|x| x.id())),
            positions: vocab(&p.t, "position", Position::ALL.iter().map(|x| x.id())),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

fn num(f: &Form, k: &str) -> Result<Option<f64>, ApiError> {
    f.get(k)
        .map(|x| x.parse::<f64>())
        .transpose()
        .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", k, format!("{k}: a number")))
}

pub async fn add_finding(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/findings");
    let r = async {
        let n = NewFinding {
            part: f.get("part").unwrap_or("").to_string(),
            position: opt(&f, "position"),
            damage_type: f.get("damage_type").unwrap_or("").to_string(),
            length_cm: num(&f, "length_cm")?,
            note: opt(&f, "note"),
        };
        s.cases.add_finding(&p.ctx.actor, id.clone(), n).await.map_err(ApiError::from)
    };
    back(&to, r.await.map(|_| "finding_added"))
}

pub async fn review_finding(id: String, fid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/findings");
    let r = async {
        let decision = match f.get("decision") {
            Some("confirm") => Decision::Confirm,
            Some("correct") => Decision::Correct,
            Some("reject") => Decision::Reject,
            _ => return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "decision", "decision")),
        };
        let correcting = matches!(decision, Decision::Correct);
        let r = Review {
            decision,
            part: if correcting { opt(&f, "part") } else { None },
            position: if correcting { opt(&f, "position") } else { None },
            damage_type: if correcting { opt(&f, "damage_type") } else { None },
            length_cm: if correcting { num(&f, "length_cm")? } else { None },
            reason: opt(&f, "reason"),
        };
        s.cases.review_finding(&p.ctx.actor, fid, r).await.map_err(ApiError::from)
    };
    back(&to, r.await.map(|_| "finding_reviewed"))
}

#[derive(Template)]
#[template(path = "measure.html", config = "src/ui/askama.toml")]
struct MeasurePage {
    c: Chrome,
    h: CaseHead,
    finding_id: String,
    photo_id: String,
    text: String,
}

pub async fn measure_page(id: String, fid: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, _) = head(&p, &s, &id, "/findings").await?;
        let f = s.cases.findings(id.clone()).await?.into_iter().find(|f| f.id == fid).ok_or_else(|| ApiError::not_found("finding"))?;
        let photo_id = f.photo_id.clone().ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no_photo", "no photo"))?;
        let text = format!("{} {}", word(&p.t, "part", &f.part), word(&p.t, "damage", &f.damage_type));
        Ok::<_, ApiError>(MeasurePage { c: p.chrome(p.t.s("measure.title"), &q), h, finding_id: fid, photo_id, text })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn measure(id: String, fid: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = async {
        let n = |k: &str| -> Result<f64, ApiError> {
            num(&f, k)?.ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", k, format!("{k}: required")))
        };
        let m = MarkedReference {
            from: [n("from_x")? as f32, n("from_y")? as f32],
            to: [n("to_x")? as f32, n("to_y")? as f32],
            length_cm: n("length_cm")?,
        };
        s.cases.measure_finding(&p.ctx.actor, fid.clone(), m).await.map_err(ApiError::from)
    };
    match r.await {
        Ok(_) => see_other(&format!("/cases/{id}/findings?ok=measured")),
        Err(e) => back(&format!("/cases/{id}/findings/{fid}/measure"), Err(e)),
    }
}

// --- estimate, approval, booking -----------------------------------------------------------------

pub struct LineRow {
    pub name: String,
    pub detail: String,
    pub amount: String,
}

pub struct SlotRow {
    pub start: String,
    pub label: String,
}

pub struct EstimateView {
    pub version: i64,
    pub lines: Vec<LineRow>,
    pub total: String,
    pub range: String,
    pub days: u32,
    pub hours: String,
    pub explanation: String,
    pub from_model: bool,
    pub approved: bool,
    pub parts_choice: String,
    pub awaiting: Vec<String>,
    pub created: String,
}

#[derive(Template)]
#[template(path = "estimate.html", config = "src/ui/askama.toml")]
struct EstimatePage {
    c: Chrome,
    h: CaseHead,
    e: Option<EstimateView>,
    may_create: bool,
    may_approve: bool,
    may_book: bool,
    stream: bool,
    customer: String,
    slots: Vec<SlotRow>,
    appointment: Option<String>,
    may_cancel: bool,
    approval_lead: String,
}

fn estimate_view(t: &Strings, e: &crate::store::estimates::StoredEstimate) -> EstimateView {
    let plan = &e.plan;
    let zh = t.lang() == UiLang::Zh;
    let name = |x: &Value| x[if zh { "name_zh" } else { "name_en" }].as_str().unwrap_or("").to_string();
    let mut lines = vec![];
    for l in plan["labour"].as_array().into_iter().flatten() {
        lines.push(LineRow {
            name: name(l),
            detail: t.f("estimate.labour_detail", &[("h", &format!("{:.1}", l["hours"].as_f64().unwrap_or(0.0)))]),
            amount: money(l["amount"].as_f64().unwrap_or(0.0)),
        });
    }
    let mut choice = "oem".to_string();
    for x in plan["parts"].as_array().into_iter().flatten() {
        choice = x["chosen"].as_str().unwrap_or("oem").to_string();
        lines.push(LineRow {
            name: name(x),
            detail: format!("× {} · {}", x["qty"].as_u64().unwrap_or(1), t.of("parts_choice", &choice)),
            amount: money(x["amount"].as_f64().unwrap_or(0.0)),
        });
    }
    let range = plan["range"]
        .as_array()
        .filter(|r| r.len() == 2)
        .map(|r| format!("¥{} – ¥{}", money(r[0].as_f64().unwrap_or(0.0)), money(r[1].as_f64().unwrap_or(0.0))))
        .unwrap_or_default();
    let awaiting = plan["awaiting_review"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!("{} {}", word(t, "part", a["part"].as_str().unwrap_or("")), word(t, "damage", a["damage_type"].as_str().unwrap_or("")))
        })
        .collect();
    EstimateView {
        version: e.version,
        lines,
        total: money(e.total_fen as f64 / 100.0),
        range,
        days: plan["days"].as_u64().unwrap_or(1) as u32,
        hours: format!("{:.1}", plan["hours"].as_f64().unwrap_or(0.0)),
        explanation: e.explanation.clone(),
        from_model: e.explanation_from_llm,
        approved: e.status == "approved",
        parts_choice: choice,
        awaiting,
        created: when(&e.created_at),
    }
}

pub async fn estimate_page(id: String, p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/estimate").await?;
        let stored = match s.estimates.latest(id.clone()).await {
            Ok(e) => Some(e),
            Err(crate::case::CaseError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let e = stored.as_ref().map(|x| estimate_view(&p.t, x));
        let booked = s.schedule.appointment(id.clone()).await.ok().filter(|a| a.status == "booked");
        let approved = e.as_ref().is_some_and(|e| e.approved);
        let slots = match (&stored, approved, &booked, p.may(RouteId::SlotsList)) {
            (Some(st), true, None, true) => {
                let hours = st.plan["hours"].as_f64().unwrap_or(1.0).max(0.5);
                s.schedule
                    .slots(hours, 14)
                    .await?
                    .slots
                    .into_iter()
                    .take(12)
                    .map(|x| SlotRow { label: slot_label(&p.t, &x.start), start: x.start })
                    .collect()
            }
            _ => vec![],
        };
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        let stream = e.as_ref().is_some_and(|e| !e.from_model) && p.may(RouteId::CasesEstimateCreate) && s.estimates.can_phrase();
        Ok::<_, ApiError>(EstimatePage {
            c: p.chrome(p.t.s("estimate.title"), &q),
            may_create: p.may(RouteId::CasesEstimateCreate)
                && matches!(v.case.status, CaseStatus::Assessed | CaseStatus::Estimated | CaseStatus::Scheduled),
            may_approve: p.may(RouteId::CasesApprove) && e.as_ref().is_some_and(|e| !e.approved),
            may_book: p.may(RouteId::CasesAppointmentBook),
            may_cancel: p.may(RouteId::CasesAppointmentCancel) && booked.is_some() && v.case.status == CaseStatus::Scheduled,
            appointment: appointment_text(&p.t, &s, &id).await?,
            approval_lead: p.t.f("approval.lead", &[("total", e.as_ref().map(|x| x.total.as_str()).unwrap_or(""))]),
            h,
            e,
            stream,
            customer,
            slots,
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

fn slot_label(t: &Strings, start: &str) -> String {
    let Some(d) = crate::case::estimate::parse_local(start) else { return start.to_string() };
    use chrono::Datelike;
    let wd = t.of("weekday", &d.weekday().num_days_from_monday().to_string());
    format!("{} {} {}", d.format("%m-%d"), wd, d.format("%H:%M"))
}

pub async fn create_estimate(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let choice = match f.get("parts_choice") {
        Some("aftermarket") => PartsChoice::Aftermarket,
        _ => PartsChoice::Oem,
    };
    let r = s.estimates.create(&p.ctx.actor, id.clone(), choice).await;
    match r {
        Ok(_) => see_other(&format!("/cases/{id}/estimate?ok=estimate_created")),
        Err(e) => back(&format!("/cases/{id}/findings"), Err(e.into())),
    }
}

/// Server-sent events: the model's wording of the latest estimate as it is generated, then
/// `done` with the text and whether it passed the number check (only then is it stored).
pub async fn explain_stream(id: String, p: Page, s: Arc<ApiState>) -> Response {
    let (estimates, actor) = (s.estimates.clone(), p.ctx.actor.clone());
    stream_words(move |on_delta| async move {
        estimates.phrase(&actor, id, on_delta).await.map(|x| (x.text, x.from_llm)).map_err(ApiError::from)
    })
}

/// Server-sent events: the model's rewording of the assistant's latest question, then `done`
/// (stored only if it passed the intake's check).
pub async fn phrase_stream(id: String, p: Page, s: Arc<ApiState>) -> Response {
    let (intake, actor) = (s.intake.clone(), p.ctx.actor.clone());
    stream_words(move |on_delta| async move { intake.phrase_last(&actor, id, on_delta).await.map_err(ApiError::from) })
}

/// Model text as server-sent events (what `static/stream.js` reads): `{"delta"}` pieces as they
/// are generated, then `done` with `{"text","accepted"}`, or `error` with the error code. A page
/// that goes away stops the generation (its callback then answers false).
fn stream_words<F, Fut>(work: F) -> Response
where
    F: FnOnce(Box<dyn FnMut(&str) -> bool + Send>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(String, bool), ApiError>> + Send + 'static,
{
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    tokio::spawn(async move {
        let delta_tx = tx.clone();
        let on_delta = Box::new(move |d: &str| {
            let ev = warp::sse::Event::default().data(serde_json::json!({ "delta": d }).to_string());
            // Called on the generating thread (blocking work), never on the runtime's.
            delta_tx.blocking_send(ev).is_ok()
        });
        let ev = match work(on_delta).await {
            Ok((text, accepted)) => {
                warp::sse::Event::default().event("done").data(serde_json::json!({ "text": text, "accepted": accepted }).to_string())
            }
            Err(e) => warp::sse::Event::default().event("error").data(serde_json::json!({ "code": e.code }).to_string()),
        };
        let _ = tx.send(ev).await;
    });
    let stream = tokio_stream_of(rx).map(Ok::<_, std::convert::Infallible>);
    super::harden(warp::sse::reply(stream).into_response())
}

fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Template)]
#[template(path = "quote.html", config = "src/ui/askama.toml")]
struct QuotePage {
    c: Chrome,
    h: CaseHead,
    e: EstimateView,
    customer: String,
    store_name: String,
    printed: String,
}

pub async fn quote_page(id: String, p: Page, s: Arc<ApiState>) -> Response {
    let r = async {
        let (h, v) = head(&p, &s, &id, "/estimate").await?;
        let e = estimate_view(&p.t, &s.estimates.latest(id.clone()).await?);
        let customer = if p.may(RouteId::CustomersGet) {
            s.cases.get_customer(&p.ctx.actor, v.case.customer_id.clone()).await.map(|(c, _)| c.name).unwrap_or_default()
        } else {
            String::new()
        };
        Ok::<_, ApiError>(QuotePage {
            c: p.chrome(p.t.s("quote.title"), &Query::default()),
            h,
            e,
            customer,
            store_name: s.site.store_name.clone(),
            printed: chrono::Local::now().format("%Y-%m-%d %H:%M").to_string(),
        })
    };
    match r.await {
        Ok(v) => html(&v, StatusCode::OK),
        Err(e) => failed(&p, e),
    }
}

pub async fn approve(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = format!("/cases/{id}/estimate");
    let r = async {
        let version = f
            .get("estimate_version")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "estimate_version", "estimate_version"))?;
        let channel = match f.get("channel") {
            Some("in_person") => Channel::InPerson,
            Some("phone") => Channel::Phone,
            _ => Channel::Tablet,
        };
        let n = NewApproval {
            estimate_version: version,
            approved_by: f.get("approved_by").unwrap_or("").to_string(),
            channel,
            signature_png: opt(&f, "signature_png"),
        };
        s.schedule.approve(&p.ctx.actor, id.clone(), n).await.map_err(ApiError::from)
    };
    back(&to, r.await.map(|_| "approved"))
}

pub async fn book(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let start = f.get("start").unwrap_or("").to_string();
    let r = s.schedule.book(&p.ctx.actor, id.clone(), start).await.map_err(ApiError::from);
    back(&format!("/cases/{id}/estimate"), r.map(|_| "booked"))
}

pub async fn cancel(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.schedule.cancel(&p.ctx.actor, id.clone()).await.map_err(ApiError::from);
    back(&format!("/cases/{id}/estimate"), r.map(|_| "cancelled"))
}

/// 转人工: one tap hands the case to a person (it leaves the AI's hands and enters the queue).
pub async fn escalate(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let reason = f.get("reason").map(str::to_string).unwrap_or_else(|| "handed to a person from the tablet".into());
    let r = s.cases.escalate(&p.ctx.actor, id.clone(), reason).await.map_err(ApiError::from);
    back(&format!("/cases/{id}"), r.map(|_| "escalated"))
}

pub async fn take(id: String, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    let r = s.cases.assign(&p.ctx.actor, id.clone(), p.ctx.user.id).await.map_err(ApiError::from);
    back(&format!("/cases/{id}"), r.map(|_| "taken"))
}

pub async fn hand_back(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let r = s.cases.hand_back(&p.ctx.actor, id.clone(), opt(&f, "reason")).await.map_err(ApiError::from);
    back(&format!("/cases/{id}"), r.map(|_| "handed_back"))
}

// ---------------------------------------------------------------------------------------------
// Manager: users, audit, status.

pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub must_change: bool,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "users.html", config = "src/ui/askama.toml")]
struct UsersPage {
    c: Chrome,
    users: Vec<UserRow>,
    roles: Vec<(String, String)>,
    one_time: Option<(String, String)>,
}

async fn render_users(p: &Page, s: &ApiState, q: &Query, one_time: Option<(String, String)>) -> Response {
    match s.staff.list_users().await {
        Ok(list) => {
            let users = list
                .into_iter()
                .map(|u| UserRow {
                    id: u.id,
                    me: u.id == p.ctx.user.id,
                    username: u.username,
                    name: u.display_name,
                    role: p.t.of("role", u.role.as_str()),
                    disabled: u.disabled,
                    must_change: u.must_change_password,
                })
                .collect();
            let roles = Role::ALL.iter().map(|r| (r.as_str().to_string(), p.t.of("role", r.as_str()))).collect();
            html(&UsersPage { c: p.chrome(p.t.s("users.title"), q), users, roles, one_time }, StatusCode::OK)
        }
        Err(e) => failed(p, e.into()),
    }
}

pub async fn users_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    render_users(&p, &s, &q, None).await
}

fn parse_role(x: &str) -> Option<Role> {
    Role::ALL.iter().copied().find(|r| r.as_str() == x)
}

pub async fn create_user(p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let Some(role) = f.get("role").and_then(parse_role) else {
        return back("/manager/users", Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "role", "role")));
    };
    let username = f.get("username").unwrap_or("").to_string();
    match s.staff.add_user(&p.ctx.actor, &username, f.get("display_name"), role).await {
        // The one-time password is shown once, on this response only (never in a URL or a log).
        Ok((u, pw)) => render_users(&p, &s, &Query::default(), Some((u.username, pw))).await,
        Err(e) => back("/manager/users", Err(e.into())),
    }
}

pub async fn set_disabled(id: i64, p: Page, _f: Form, s: Arc<ApiState>, disabled: bool) -> Response {
    if disabled && id == p.ctx.user.id {
        return back("/manager/users", Err(ApiError::new(StatusCode::CONFLICT, "self_disable", "")));
    }
    let r = s.staff.set_disabled(&p.ctx.actor, id, disabled).await.map_err(ApiError::from);
    back("/manager/users", r.map(|_| if disabled { "user_disabled" } else { "user_enabled" }))
}

pub async fn reset_password(id: i64, p: Page, _f: Form, s: Arc<ApiState>) -> Response {
    if id == p.ctx.user.id {
        return back("/manager/users", Err(ApiError::new(StatusCode::CONFLICT, "self_reset", "")));
    }
    let name = s.staff.list_users().await.ok().and_then(|l| l.into_iter().find(|u| u.id == id)).map(|u| u.username).unwrap_or_default();
    match s.staff.reset_password(&p.ctx.actor, id).await {
        Ok(pw) => render_users(&p, &s, &Query::default(), Some((name, pw))).await,
        Err(e) => back("/manager/users", Err(e.into())),
    }
}

pub struct AuditRowView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "audit.html", config = "src/ui/askama.toml")]
struct AuditPage {
    c: Chrome,
    rows: Vec<AuditRowView>,
    next: Option<i64>,
}

pub async fn audit_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let before = q.get("before").and_then(|b| b.parse::<i64>().ok());
    match s.staff.audit_log(None, before, 100).await {
        Ok(rows) => {
            let next = (rows.len() == 100).then(|| rows.last().map(|r| r.id)).flatten();
            let rows = rows
                .into_iter()
                .map(|r| AuditRowView {
                    at: when(&r.at),
                    actor: r.username,
                    action: r.action,
                    target: [r.target_type, r.target_id.unwrap_or_default()].join(" ").trim().to_string(),
                    outcome: r.outcome,
                })
                .collect();
            html(&AuditPage { c: p.chrome(p.t.s("audit.title"), &q), rows, next }, StatusCode::OK)
        }
        Err(e) => failed(&p, e.into()),
    }
}

pub struct StatusRow {
    pub name: String,
    pub value: String,
    pub ok: bool,
}

#[derive(Template)]
#[template(path = "status.html", config = "src/ui/askama.toml")]
struct StatusPage {
    c: Chrome,
    rows: Vec<StatusRow>,
}

pub async fn status_page(p: Page, s: Arc<ApiState>) -> Response {
    let t = p.t;
    let mut rows = vec![];
    let llm = s.intake.engine_status();
    let llm_json = serde_json::to_value(&llm).unwrap_or(Value::Null);
    let llm_state = llm_json["state"].as_str().unwrap_or("unknown").to_string();
    rows.push(StatusRow {
        name: t.s("status.llm").to_string(),
        ok: llm_state == "ready",
        value: format!("{} · {}", t.of("engine", &llm_state), llm_json["model"].as_str().unwrap_or("")),
    });
    let det = s.analyzer.model.clone();
    rows.push(StatusRow {
        name: t.s("status.detector").to_string(),
        ok: det.is_some(),
        value: det.unwrap_or_else(|| t.s("status.none").to_string()),
    });
    match s.sync.status().await {
        Ok(st) => {
            rows.push(StatusRow {
                name: t.s("status.hq_link").to_string(),
                ok: !st.enabled || st.connected,
                value: if st.enabled { t.of("link", &st.state) } else { t.s("status.sync_off").to_string() },
            });
            rows.push(StatusRow {
                name: t.s("status.outbox").to_string(),
                ok: !st.outbox_alarm,
                value: t.f("status.outbox_value", &[("n", &st.outbox_depth.to_string())]),
            });
        }
        Err(e) => rows.push(StatusRow { name: t.s("status.hq_link").to_string(), ok: false, value: e.to_string() }),
    }
    let disk = crate::fsutil::free_space(&s.site.data_dir);
    rows.push(StatusRow {
        name: t.s("status.disk").to_string(),
        ok: disk.is_some_and(|(free, total)| total == 0 || free * 10 >= total),
        value: disk
            .map(|(free, total)| {
                t.f(
                    "status.disk_value",
                    &[("free", &format!("{:.1}", free as f64 / 1e9)), ("total", &format!("{:.1}", total as f64 / 1e9))],
                )
            })
            .unwrap_or_else(|| t.s("status.unknown").to_string()),
    });
    rows.push(StatusRow { name: t.s("status.backup").to_string(), ok: true, value: t.s("status.no_backups").to_string() });
    html(&StatusPage { c: p.chrome(t.s("status.title"), &Query::default()), rows }, StatusCode::OK)
}
