//! Page handlers: each takes the signed-in `Page`, makes the same service calls as the JSON route
//! and renders a template (or answers 303 to the page that shows the result). View models are
//! plain strings and numbers, already in the reader's language. This file holds the frame every
//! page shares; the pages are grouped by what staff do on them.

mod account;
mod board;
mod case;
mod estimate;
mod evidence;
mod floor;
mod follow_up;
mod import;
mod kpi;
mod manager;
mod qc;
mod workshop;

pub use account::*;
pub use board::*;
pub use case::*;
pub use estimate::*;
pub use evidence::*;
pub use floor::*;
pub use follow_up::*;
pub use import::*;
pub use kpi::*;
pub use manager::*;
pub use qc::*;
pub use workshop::*;

use std::collections::BTreeMap;

use askama::Template;
use bytes::Bytes;
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
    ("/follow-ups", "fu_nav.queue", RouteId::FollowUpsList),
    ("/follow-up/alerts", "fu_nav.alerts", RouteId::FollowUpAlerts),
    ("/bay", "nav.bay", RouteId::WorkOrderLineClock),
    ("/qc", "nav.qc", RouteId::CasesQcReport),
    ("/manager/bay", "nav.board", RouteId::WorkshopBoard),
    ("/manager/anomalies", "nav.anomalies", RouteId::WorkshopFlags),
    ("/manager/kpi", "kpi_dash.nav", RouteId::KpiFigures),
    ("/manager/import", "nav.import", RouteId::ImportsRun),
    ("/manager/users", "nav.users", RouteId::UsersList),
    ("/manager/audit", "nav.audit", RouteId::AuditList),
    ("/manager/privacy", "nav.privacy", RouteId::PrivacyFind),
    ("/manager/status", "nav.status", RouteId::LlmStatus),
];

/// The follow-up screens (customer service sees them first).
const FOLLOW_UP_NAV: [&str; 2] = ["/follow-ups", "/follow-up/alerts"];

pub(super) fn flash(t: &Strings, q: &Query) -> (Option<String>, Option<String>) {
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

pub(super) fn is_key(k: &str) -> bool {
    k.len() <= 48 && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

impl Page {
    fn chrome(&self, title: &str, q: &Query) -> Chrome {
        let (ok, err) = flash(&self.t, q);
        let mut nav = NAV
            .iter()
            .filter(|(_, _, id)| self.may(*id))
            .map(|(href, key, _)| NavItem { href, label: self.t.s(key).to_string(), active: self.path.starts_with(href) })
            .collect::<Vec<_>>();
        // Customer service works the follow-up first: its two screens lead the bar (stable sort).
        if self.ctx.user.role == Role::CustomerService {
            nav.sort_by_key(|n| !FOLLOW_UP_NAV.contains(&n.href));
        }
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

pub(super) fn public_chrome(t: Strings, title: &str, q: &Query) -> Chrome {
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

/// A refused form or query (a control character): the error page, naming the field it was in.
pub fn bad_input_page(t: Strings, err: &ApiError) -> Response {
    let key = format!("err.{}", if err.code == "invalid_query" { "invalid_field" } else { err.code });
    let mut message = t.or(&key, t.s("err.generic"));
    if let Some(f) = err.field.as_deref().filter(|f| is_key(f)) {
        // The shared field words, else the follow-up pages' (their forms have fields of their own).
        message = format!("{message}（{}）", t.or(&format!("field.{f}"), &t.or(&format!("fu_field.{f}"), f)));
    }
    let c = public_chrome(t, t.s("err.title"), &Query::default());
    html(&ErrorPage { message, c }, err.status)
}

/// A service error on a page that cannot show its content: the error page, with the right status.
pub(super) fn failed(p: &Page, e: ApiError) -> Response {
    if e.status.is_server_error() {
        tracing::warn!(code = e.code, "a page could not be shown");
    }
    let c = p.chrome(p.t.s("err.title"), &Query::default());
    let message = p.t.or(&format!("err.{}", e.code), p.t.s("err.generic"));
    html(&ErrorPage { c, message }, e.status)
}

pub(super) fn when(at: &str) -> String {
    // Stored times are RFC 3339 (UTC) or local wall-clock; show local minutes.
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(at) {
        return d.with_timezone(&chrono::Local).format("%m-%d %H:%M").to_string();
    }
    at.replace('T', " ").chars().take(16).collect()
}

pub(super) fn money(cny: f64) -> String {
    crate::estimate::fmt_money(cny)
}

// ---------------------------------------------------------------------------------------------
// Photo forms.

/// A multipart form of a page: the CSRF token, short text fields and one file (the photo in
/// `photo`, an import in `file`), read within the file's cap; the file's name as the browser sent it.
pub(super) struct Upload {
    pub csrf: String,
    pub fields: BTreeMap<String, String>,
    pub file: Option<Vec<u8>>,
    pub file_name: Option<String>,
}

pub(super) async fn read_upload(s: &ApiState, form: warp::multipart::FormData) -> Result<Upload, ApiError> {
    read_file_form(form, "photo", s.limits.photo_body).await
}

/// A page's multipart form whose file part is `file_field` (at most `cap` bytes): the API's reader,
/// with the CSRF token taken out of the fields.
pub(super) async fn read_file_form(form: warp::multipart::FormData, file_field: &str, cap: u64) -> Result<Upload, ApiError> {
    let mut f = crate::api::imports::read_file_form(form, file_field, cap).await?;
    let csrf = f.fields.remove("csrf").unwrap_or_default();
    Ok(Upload { csrf, fields: f.fields, file: f.file, file_name: f.file_name })
}

impl Upload {
    pub(super) fn checked(self, p: &Page) -> Result<Upload, ApiError> {
        if crate::ui::constant_time_eq(self.csrf.as_bytes(), p.csrf.as_bytes()) {
            Ok(self)
        } else {
            Err(ApiError::forbidden("csrf"))
        }
    }

    pub(super) fn photo(&mut self) -> Result<Vec<u8>, ApiError> {
        self.file.take().ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_photo", "file", "no photo"))
    }
}
