//! `servicebay hq-web`: HQ analysts' own pages over HTTPS — 门店对比 (the stores' latest KPI
//! snapshots side by side, with SVG bar charts), 热点告警 (open hot alerts across stores, oldest
//! due first) and each store's page (its KPI history as SVG line charts, and its alerts). The
//! charts are the store dashboard's own (`crate::ui::charts`).
//! They read what `hq-ingest` keeps in PostgreSQL (`hq_records`, `hq_stores`); they change nothing
//! there but the analysts' own accounts and sessions (schema v5, `web_accounts`).
//!
//! The same UI stack as the store's tablet pages (`crate::ui`): askama templates on `base.html`,
//! the language catalogues, the static files, CSRF tokens derived from the session, the security
//! headers, `crate::api::server` and `crate::tls` for HTTPS. It is a server of its own, with its
//! own accounts: nothing of the store's API is routed here, and a store's token means nothing.
//!
//! Invariants:
//! - Every page needs a valid analyst session (cookie `sbhq_session`: HttpOnly, Secure,
//!   SameSite=Strict); without one it redirects to the login page. A one-time password must be
//!   replaced first. Analysts have one role: read every store's figures (there is no finer grant
//!   to give at HQ, and nothing here writes store data).
//! - Every state-changing request is a POST carrying the session's CSRF token, from our own
//!   Origin; anything else is refused before it touches the database.
//! - Strings from PostgreSQL are untrusted: cleaned and bounded (`web_fmt::clean`) and escaped
//!   by askama. A page never answers 500 for bad data: missing or malformed numbers show as "—".

#[path = "web_accounts.rs"]
pub mod accounts;
#[path = "web_fmt.rs"]
pub mod fmt;
#[path = "web_pages.rs"]
mod pages;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use tokio::net::TcpListener;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::api::ClientAddr;
use crate::sync::hq::{self, HqConfig, HqError};
use crate::ui::i18n::{Strings, UiLang};
use crate::ui::{csrf_of, html, see_other, urlencode, Form, Query};
pub use accounts::{AccountError, Analyst};

/// The analysts' session cookie: a name of its own, so a store's pages on the same host (cookies
/// ignore ports) never see it, nor HQ the store's.
pub const SESSION_COOKIE: &str = "sbhq_session";
const FORM_LIMIT: u64 = 16 * 1024;
/// A larger body is still read (and discarded) up to this size before the 413, so a client that
/// is still sending sees the answer rather than a broken connection; beyond it, refused at once.
const FORM_DRAIN: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Hq(#[from] HqError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("the UI's language catalogue is broken: {0}")]
    Catalogue(String),
    #[error("{0} (key `web.listen`)")]
    Listen(std::io::Error),
}

// ---- config: the `[web]` section of hq.toml ---------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    listen: String,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    session_ttl_minutes: u64,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            listen: "127.0.0.1:9443".into(),
            tls_cert: "/var/lib/servicebay-hq/tls/cert.pem".into(),
            tls_key: "/var/lib/servicebay-hq/tls/key.pem".into(),
            session_ttl_minutes: 480,
        }
    }
}

/// Validated `[web]`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// PEM files; a self-signed pair is made on first start when both are missing (as the store
    /// does), so HQ can start before its own certificate is issued.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub session_ttl: Duration,
}

impl RawWeb {
    /// Errors name the key and say what would be right.
    pub fn validate(self) -> Result<WebConfig, String> {
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| format!("key `web.listen`: '{}' is not an address with a port, e.g. \"0.0.0.0:9443\"", self.listen))?;
        for (key, p) in [("web.tls_cert", &self.tls_cert), ("web.tls_key", &self.tls_key)] {
            if p.as_os_str().is_empty() {
                return Err(format!("key `{key}`: set a file path"));
            }
        }
        if self.tls_cert == self.tls_key {
            return Err("keys `web.tls_cert` and `web.tls_key`: the certificate and the key must be two files".into());
        }
        if !(5..=10_080).contains(&self.session_ttl_minutes) {
            return Err(format!("key `web.session_ttl_minutes`: {} is outside 5..=10080 (a week)", self.session_ttl_minutes));
        }
        Ok(WebConfig {
            listen,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            session_ttl: Duration::from_secs(self.session_ttl_minutes * 60),
        })
    }
}

impl WebConfig {
    /// `check-config`'s line for `[web]`.
    pub fn report(&self) -> String {
        format!(
            "  web        https://{} (certificate {}, key {}; sessions {} min)\n",
            self.listen,
            self.tls_cert.display(),
            self.tls_key.display(),
            self.session_ttl.as_secs() / 60
        )
    }
}

// ---- the server -------------------------------------------------------------------------------

pub(crate) struct Web {
    pub accounts: accounts::Accounts,
    pub fingerprint: String,
}

/// Serve HQ's pages on `listener` until `shutdown`: migrates the schema, makes the TLS pair if
/// missing, then serves HTTPS. Returns once open requests have finished.
pub async fn run(cfg: HqConfig, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) -> Result<(), WebError> {
    crate::ui::i18n::check().map_err(WebError::Catalogue)?;
    let mut pg = hq::connect_pg(&cfg.postgres).await?;
    let schema = hq::migrate(&mut pg).await?;
    let w = &cfg.web;
    if crate::tls::ensure_cert(&w.tls_cert, &w.tls_key, &[])? {
        tracing::info!(cert = %w.tls_cert.display(), "generated a self-signed certificate for hq-web");
    }
    let fingerprint = crate::tls::fingerprint(&w.tls_cert)?;
    let tls = crate::tls::server_config(&w.tls_cert, &w.tls_key)?;
    let db = Arc::new(accounts::Db::new(cfg.postgres.clone(), pg));
    let state = Arc::new(Web { accounts: accounts::Accounts::new(db, w.session_ttl), fingerprint: fingerprint.clone() });
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(listen = %addr, schema, "hq-web started");
    println!("hq-web ready on https://{addr} (schema v{schema}; certificate SHA-256 {fingerprint})");
    let opts = crate::api::server::ServeOptions {
        tls: Some(tokio_rustls::TlsAcceptor::from(tls)),
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        max_connections: 512,
        metrics: Arc::new(crate::api::metrics::Metrics::default()),
    };
    crate::api::server::serve(listener, routes(state), opts, shutdown).await;
    tracing::info!("hq-web stopped");
    Ok(())
}

/// The connection of the `servicebay hq-analyst` commands: PostgreSQL, the schema migrated.
pub async fn admin_connect(cfg: &HqConfig) -> Result<tokio_postgres::Client, WebError> {
    let mut pg = hq::connect_pg(&cfg.postgres).await?;
    hq::migrate(&mut pg).await?;
    Ok(pg)
}

// ---- the frame every page shares (the fields `base.html` reads) ------------------------------

pub(crate) struct NavItem {
    pub href: &'static str,
    pub label: String,
    pub active: bool,
}

pub(crate) struct Chrome {
    pub t: Strings,
    pub lang: &'static str,
    pub title: String,
    pub user: Option<String>,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub ok: Option<String>,
    pub err: Option<String>,
    pub here: String,
}

const NAV: &[(&str, &str)] = &[("/stores", "hqweb_nav.stores"), ("/alerts", "hqweb_nav.alerts")];

/// The flash message of `?ok=` / `?err=` (`&field=`): HQ's own words first, else the store UI's.
fn flash(t: &Strings, q: &Query) -> (Option<String>, Option<String>) {
    let is_key = |k: &&str| k.len() <= 48 && k.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let word = |kind: &str, k: &str, fallback: &str| t.or(&format!("hqweb_{kind}.{k}"), &t.or(&format!("{kind}.{k}"), fallback));
    let ok = q.get("ok").filter(is_key).map(|k| word("ok", k, t.s("ok.saved")));
    let err = q.get("err").filter(is_key).map(|k| {
        let base = word("err", k, t.s("err.generic"));
        match q.get("field").filter(is_key) {
            Some(f) => format!("{base}（{}）", t.or(&format!("field.{f}"), f)),
            None => base,
        }
    });
    (ok, err)
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

/// The signed-in analyst of a request.
pub(crate) struct Me {
    pub analyst: Analyst,
    pub token: String,
    pub csrf: String,
    pub t: Strings,
    pub path: String,
    pub addr: String,
}

impl Me {
    pub fn chrome(&self, title: &str, q: &Query) -> Chrome {
        let (ok, err) = flash(&self.t, q);
        let nav =
            NAV.iter().map(|(href, key)| NavItem { href, label: self.t.s(key).to_string(), active: self.path.starts_with(href) }).collect();
        Chrome {
            t: self.t,
            lang: self.t.lang().tag(),
            title: title.to_string(),
            user: Some(fmt::clean(&self.analyst.display_name, 64)),
            role: self.t.s("hqweb_role.analyst").to_string(),
            csrf: self.csrf.clone(),
            nav,
            ok,
            err,
            here: self.path.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "hq_web_error.html", config = "src/ui/askama.toml")]
struct ErrorPage {
    c: Chrome,
    message: String,
}

pub(crate) fn error_page(t: Strings, status: StatusCode, key: &str) -> Response {
    let c = public_chrome(t, t.s("err.title"), &Query::default());
    html(&ErrorPage { message: t.or(key, t.s("err.generic")), c }, status)
}

/// A page that could not read PostgreSQL: a friendly 503, the cause in the log.
pub(crate) fn unavailable(t: Strings, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "an hq-web page could not read PostgreSQL");
    error_page(t, StatusCode::SERVICE_UNAVAILABLE, "hqweb_err.db")
}

// ---- filters -----------------------------------------------------------------------------------

/// Why a request was refused before its handler ran.
#[derive(Debug)]
enum Refusal {
    Login { next: String },
    ChangePassword,
    Csrf(UiLang),
    Bad(UiLang),
    TooLarge(UiLang),
    Unavailable(UiLang),
}

impl warp::reject::Reject for Refusal {}

fn refuse(r: Refusal) -> Rejection {
    warp::reject::custom(r)
}

fn with<T: Clone + Send>(v: T) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || v.clone())
}

fn lang() -> impl Filter<Extract = (Strings,), Error = Rejection> + Clone {
    crate::ui::cookies().map(|c: Option<String>| Strings::new(crate::ui::lang_of(c.as_deref())))
}

/// The query string as a map; control characters are refused as everywhere else.
fn query() -> impl Filter<Extract = (Query,), Error = Rejection> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify().and(lang()).and_then(|q: String, t: Strings| async move {
        let mut m = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if crate::domain::validate::forbidden_char(&k).or_else(|| crate::domain::validate::forbidden_char(&v)).is_some() {
                return Err(refuse(Refusal::Bad(t.lang())));
            }
            m.insert(k.into_owned(), v.into_owned());
        }
        Ok(Query(m))
    })
}

fn client_addr(a: Option<ClientAddr>) -> String {
    a.map(|a| a.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// A signed-in request. `before_password`: the password page itself, reachable while a one-time
/// password is unchanged; every other page sends such an analyst there first.
fn me(w: Arc<Web>, before_password: bool) -> impl Filter<Extract = (Me,), Error = Rejection> + Clone {
    crate::ui::cookies()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<ClientAddr>())
        .and_then(move |cookies: Option<String>, full: warp::path::FullPath, q: String, addr: Option<ClientAddr>| {
            let w = w.clone();
            async move {
                let lang = crate::ui::lang_of(cookies.as_deref());
                let path = full.as_str().to_string();
                let here = if q.is_empty() { path.clone() } else { format!("{path}?{q}") };
                let token = crate::ui::cookie(cookies.as_deref(), SESSION_COOKIE)
                    .filter(|t| !t.is_empty() && t.len() <= 256)
                    .ok_or_else(|| refuse(Refusal::Login { next: here.clone() }))?
                    .to_string();
                let analyst = match w.accounts.session(&token).await {
                    Ok(a) => a,
                    Err(AccountError::Db(e)) => {
                        tracing::warn!(error = %e, "hq-web cannot check a session");
                        return Err(refuse(Refusal::Unavailable(lang)));
                    }
                    Err(_) => return Err(refuse(Refusal::Login { next: here })),
                };
                if analyst.must_change_password && !before_password {
                    return Err(refuse(Refusal::ChangePassword));
                }
                let csrf = csrf_of(&token);
                Ok::<_, Rejection>(Me { analyst, token, csrf, t: Strings::new(lang), path, addr: client_addr(addr) })
            }
        })
}

/// A POST from one of our pages: the browser's Origin, when it sends one, is this host.
fn same_origin() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::host::optional())
        .and(lang())
        .and_then(|origin: Option<String>, host: Option<warp::host::Authority>, t: Strings| async move {
            let ok = match (origin.as_deref(), host.as_ref()) {
                (None, _) => true,
                (Some(o), Some(h)) => o.strip_prefix("https://") == Some(h.as_str()),
                (Some(_), None) => false,
            };
            if ok {
                Ok(())
            } else {
                Err(refuse(Refusal::Csrf(t.lang())))
            }
        })
        .untuple_one()
}

/// A form's body, at most `FORM_LIMIT` bytes (no Content-Length needed; a chunked body is counted).
fn form_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length").and(lang()).and(warp::body::stream()).and_then(collect_form)
}

async fn collect_form<S, B>(declared: Option<u64>, t: Strings, body: S) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures_util::TryStreamExt;
    let too_large = || refuse(Refusal::TooLarge(t.lang()));
    if declared.is_some_and(|n| n > FORM_DRAIN) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    let mut seen = 0u64;
    while let Some(mut chunk) = body.try_next().await.map_err(|_| refuse(Refusal::Bad(t.lang())))? {
        seen += chunk.remaining() as u64;
        if seen > FORM_DRAIN {
            return Err(too_large());
        }
        while seen <= FORM_LIMIT && chunk.has_remaining() {
            let n = chunk.chunk().len();
            out.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    if seen > FORM_LIMIT {
        return Err(too_large());
    }
    Ok(out.freeze())
}

/// A signed-in POST with a small urlencoded body and the session's CSRF token (field `csrf` or
/// header `X-CSRF-Token`).
fn action(w: Arc<Web>, before_password: bool) -> impl Filter<Extract = (Me, Form), Error = Rejection> + Clone {
    warp::post()
        .and(same_origin())
        .and(me(w, before_password))
        .and(warp::header::optional::<String>("x-csrf-token"))
        .and(form_body())
        .and_then(|m: Me, header: Option<String>, body: Bytes| async move {
            let form = Form::parse(&body, m.t.lang()).map_err(|_| refuse(Refusal::Bad(m.t.lang())))?;
            let sent = header.or_else(|| form.0.get("csrf").cloned()).unwrap_or_default();
            if !crate::ui::constant_time_eq(sent.as_bytes(), m.csrf.as_bytes()) {
                return Err(refuse(Refusal::Csrf(m.t.lang())));
            }
            Ok::<_, Rejection>((m, form))
        })
        .untuple_one()
}

/// Every refusal becomes a page: no rejection reaches the server (and none is a 500).
async fn recover(r: Rejection) -> Result<Response, std::convert::Infallible> {
    let zh = Strings::new(UiLang::Zh);
    Ok(if let Some(f) = r.find::<Refusal>() {
        match f {
            Refusal::Login { next } => see_other(&format!("/login?next={}", urlencode(next))),
            Refusal::ChangePassword => see_other("/password"),
            Refusal::Csrf(l) => error_page(Strings::new(*l), StatusCode::FORBIDDEN, "err.csrf"),
            Refusal::Bad(l) => error_page(Strings::new(*l), StatusCode::BAD_REQUEST, "err.invalid_field"),
            Refusal::TooLarge(l) => error_page(Strings::new(*l), StatusCode::PAYLOAD_TOO_LARGE, "err.body_too_large"),
            Refusal::Unavailable(l) => error_page(Strings::new(*l), StatusCode::SERVICE_UNAVAILABLE, "hqweb_err.db"),
        }
    } else if r.is_not_found() {
        error_page(zh, StatusCode::NOT_FOUND, "err.not_found")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        error_page(zh, StatusCode::METHOD_NOT_ALLOWED, "err.not_found")
    } else {
        error_page(zh, StatusCode::BAD_REQUEST, "err.generic")
    })
}

pub(crate) fn routes(w: Arc<Web>) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    use warp::path::end;
    let get = warp::get;
    let st = || with(w.clone());
    let signed = |before| me(w.clone(), before);
    let act = |before| action(w.clone(), before);

    let statics =
        warp::path("static").and(warp::path::tail()).and(get()).map(|t: warp::path::Tail| crate::ui::statics::serve(t.as_str())).boxed();
    // `/today` is the brand link of the shared frame (base.html).
    let root = end().or(warp::path!("today")).unify().and(get()).map(|| see_other("/stores")).boxed();
    let healthz = warp::path!("healthz").and(get()).map(|| warp::reply::with_status("ok", StatusCode::OK).into_response()).boxed();
    let login_page = warp::path!("login").and(get()).and(st()).and(lang()).and(query()).then(login_page).boxed();
    let login = warp::path!("login")
        .and(warp::post())
        .and(same_origin())
        .and(st())
        .and(lang())
        .and(warp::ext::optional::<ClientAddr>())
        .and(form_body())
        .then(login)
        .boxed();
    let logout = warp::path!("logout").and(act(true)).and(st()).then(logout).boxed();
    let set_lang = warp::path!("lang" / String).and(get()).and(query()).map(set_lang).boxed();
    let password_page = warp::path!("password").and(get()).and(signed(true)).and(query()).then(password_page).boxed();
    let password = warp::path!("password").and(act(true)).and(st()).then(change_password).boxed();
    let stores = warp::path!("stores").and(get()).and(signed(false)).and(st()).and(query()).then(pages::stores).boxed();
    let store = warp::path!("stores" / String).and(get()).and(signed(false)).and(st()).and(query()).then(pages::store).boxed();
    let alerts = warp::path!("alerts").and(get()).and(signed(false)).and(st()).and(query()).then(pages::alerts).boxed();

    [root, healthz, login_page, login, logout, set_lang, password_page, password, stores, store, alerts]
        .into_iter()
        .fold(statics, |acc, r| acc.or(r).unify().boxed())
        .recover(recover)
        .unify()
}

// ---- login, logout, password, language -----------------------------------------------------

#[derive(Template)]
#[template(path = "hq_web_login.html", config = "src/ui/askama.toml")]
struct LoginPage {
    c: Chrome,
    next: String,
    fingerprint: String,
    username: String,
}

/// Only our own paths: never an open redirect to another host.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() < 512 => n.to_string(),
        _ => "/stores".to_string(),
    }
}

async fn login_page(w: Arc<Web>, t: Strings, q: Query) -> Response {
    let c = public_chrome(t, t.s("hqweb_login.title"), &q);
    let username = q.get("u").map(|u| fmt::clean(u, 64)).unwrap_or_default();
    html(&LoginPage { c, next: safe_next(q.get("next")), fingerprint: w.fingerprint.clone(), username }, StatusCode::OK)
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(cookie) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
    r
}

const CLEAR_SESSION: &str = "sbhq_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0";

async fn login(w: Arc<Web>, t: Strings, addr: Option<ClientAddr>, body: Bytes) -> Response {
    let Ok(form) = Form::parse(&body, t.lang()) else { return see_other("/login?err=invalid_field") };
    let next = safe_next(form.get("next"));
    let user = form.get("username").unwrap_or("").to_string();
    let pass = form.0.get("password").cloned().unwrap_or_default();
    match w.accounts.login(&user, &pass, &client_addr(addr)).await {
        Ok((a, token)) => {
            let to = if a.must_change_password { "/password".to_string() } else { next };
            let max_age = w.accounts.ttl().as_secs();
            with_cookie(see_other(&to), &format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"))
        }
        Err(e) => {
            if let AccountError::Db(d) = &e {
                tracing::warn!(error = %d, "hq-web login could not reach PostgreSQL");
            }
            let (code, _) = e.code();
            let u: String = user.chars().take(64).collect();
            see_other(&format!("/login?err={code}&next={}&u={}", urlencode(&next), urlencode(&u)))
        }
    }
}

async fn logout(m: Me, _f: Form, w: Arc<Web>) -> Response {
    if let Err(e) = w.accounts.logout(&m.analyst, &m.token, &m.addr).await {
        tracing::warn!(error = %e, "hq-web logout could not end the session in PostgreSQL");
    }
    with_cookie(see_other("/login?ok=logged_out"), CLEAR_SESSION)
}

fn set_lang(lang: String, q: Query) -> Response {
    let l = UiLang::parse(&lang);
    let r = see_other(&safe_next(q.get("next")));
    with_cookie(r, &format!("sb_lang={}; Path=/; Secure; SameSite=Strict; Max-Age=31536000", l.code()))
}

/// The store's password page (`password.html`), on HQ's frame.
#[derive(Template)]
#[template(path = "password.html", config = "src/ui/askama.toml")]
struct PasswordPage {
    c: Chrome,
    forced: bool,
}

async fn password_page(m: Me, q: Query) -> Response {
    let forced = m.analyst.must_change_password;
    let mut c = m.chrome(m.t.s("password.title"), &q);
    if forced {
        c.nav.clear();
    }
    html(&PasswordPage { c, forced }, StatusCode::OK)
}

async fn change_password(m: Me, f: Form, w: Arc<Web>) -> Response {
    let old = f.0.get("old_password").cloned().unwrap_or_default();
    let new = f.0.get("new_password").cloned().unwrap_or_default();
    if f.0.get("new_password_again").map(String::as_str) != Some(new.as_str()) {
        return see_other("/password?err=password_mismatch");
    }
    match w.accounts.change_password(&m.analyst, &old, &new, &m.addr).await {
        // Every session ended with the old password: sign in again with the new one.
        Ok(()) => with_cookie(see_other(&format!("/login?ok=password_changed&u={}", urlencode(&m.analyst.username))), CLEAR_SESSION),
        Err(e) => {
            let (code, field) = e.code();
            let field = field.map(|f| format!("&field={f}")).unwrap_or_default();
            see_other(&format!("/password?err={code}{field}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_section_is_validated() {
        let ok = RawWeb::default().validate().unwrap();
        assert_eq!(ok.session_ttl, Duration::from_secs(480 * 60));
        let bad = |f: fn(&mut RawWeb)| {
            let mut r = RawWeb::default();
            f(&mut r);
            r.validate().unwrap_err()
        };
        assert!(bad(|r| r.listen = "9443".into()).contains("web.listen"));
        assert!(bad(|r| r.session_ttl_minutes = 0).contains("web.session_ttl_minutes"));
        assert!(bad(|r| r.tls_key = r.tls_cert.clone()).contains("web.tls_key"));
        assert!(bad(|r| r.tls_cert = PathBuf::new()).contains("web.tls_cert"));
        let e = toml::from_str::<RawWeb>("listen = \"0.0.0.0:1\"\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn next_is_only_a_local_path() {
        assert_eq!(safe_next(Some("/alerts?x=1")), "/alerts?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/stores", "{bad}");
        }
    }

    /// Every `hqweb_` key HQ's code names is in the zh-CN catalogue (the UI's own test scans only
    /// src/ui); the templates are scanned there.
    #[test]
    fn every_key_hq_web_names_exists() {
        let re = regex::Regex::new(r#""(hqweb_[a-z0-9_]+\.[a-z0-9_.]+)""#).unwrap();
        let keys: std::collections::HashSet<String> = crate::ui::i18n::keys().into_iter().collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/hq");
        let mut named = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("web")) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for c in re.captures_iter(&text) {
                named += 1;
                assert!(keys.contains(&c[1]), "{}: '{}' is not in assets/ui/zh-CN.toml", p.display(), &c[1]);
            }
        }
        assert!(named > 20, "only {named} keys found: is the scan broken?");
    }
}
