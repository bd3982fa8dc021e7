//! `servicebay hq-survey`: HQ's survey service. Customers open `{base_url}/s/{token}` (the QR code
//! the store printed, or the link of an SMS/WeChat invitation), answer on their phone, and the
//! answer travels down to the store over MQTT (`relay`). The notifier (`notify`) sends the
//! invitations. One process, four tasks (the fourth blanks old answers' comments: retention);
//! PostgreSQL holds everything between them.
//!
//! Invariants:
//! - The HTTP layer is thin: token → task (`survey_store`), form → checked answer
//!   (`survey_page`), one transaction, a page. Every refusal is a friendly page with the right
//!   status, never a 500; nothing is stored unless the whole answer is valid.
//! - A POST is accepted only with the form's CSRF token (an HMAC bound to the survey) and, when
//!   the browser sends one, our own `Origin`; bodies over `BODY_LIMIT` are refused from their
//!   Content-Length before a byte is read.
//! - Logs never carry a token, a phone number or a comment: the server's own access log (which
//!   prints paths) is turned off for this command in `main.rs`, and `access_log` here prints the
//!   route with the token replaced.
//! - Retention runs before the page is served (so a restart after a long stop catches up before
//!   anyone reads) and then once a day, against the injected clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::relay::{self, RelayHandle};
use super::survey_config::SurveyConfig;
use super::survey_page::{self as page, FormInput, Refill, Signer, BODY_LIMIT};
use super::survey_store::{self as db, Pool, Stored, Task};
use crate::clock::Clock;
use crate::sync::hq::{self, HqConfig, HqError};
use crate::ui::i18n::{Strings, UiLang};

/// PostgreSQL connections of one hq-survey process (pages, relay and notifier together).
const POOL_SIZE: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error("HQ config: {0}")]
    Config(String),
    #[error(transparent)]
    Hq(#[from] HqError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What every handler shares.
pub struct Survey {
    pub(crate) pool: Arc<Pool>,
    pub(crate) signer: Signer,
    pub(crate) clock: Clock,
    pub(crate) cfg: SurveyConfig,
    relay: RelayHandle,
}

/// `servicebay hq-survey`: listen on `[survey] listen` and serve until `shutdown`.
pub async fn serve_main(cfg: HqConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), SurveyError> {
    let s = cfg.survey.clone().ok_or_else(no_section)?;
    let listener = crate::api::server::bind(s.listen).await?;
    run(cfg, Clock::system(), listener, shutdown).await
}

fn no_section() -> SurveyError {
    SurveyError::Config("hq-survey needs a [survey] section with base_url (see assets/hq.example.toml)".into())
}

/// The survey service on `listener` with `clock` (tests inject theirs), until `shutdown`: migrate,
/// start the relay and the notifier, serve HTTPS; then stop the tasks.
pub async fn run(
    cfg: HqConfig,
    clock: Clock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SurveyError> {
    let scfg = cfg.survey.clone().ok_or_else(no_section)?;
    let mut pg = hq::connect_pg(&cfg.postgres).await?;
    hq::check_encoding(&pg, &hq::redacted(&cfg.postgres)).await?;
    let schema = hq::migrate(&mut pg).await?;
    let signer = Signer::new(db::secret(&pg, scfg.secret_file.as_deref()).await?);
    let pool = Arc::new(Pool::new(&cfg.postgres, POOL_SIZE));
    pool.put(pg);

    let host = reqwest::Url::parse(&scfg.base_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    if crate::tls::ensure_cert(&scfg.tls_cert, &scfg.tls_key, &[host])? {
        tracing::info!(cert = %scfg.tls_cert.display(), "generated a self-signed certificate for the survey page");
    }
    let tls = crate::tls::server_config(&scfg.tls_cert, &scfg.tls_key)?;

    retention(&pool, &clock, scfg.comment_retention_days).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let retention_task = start_retention(pool.clone(), clock.clone(), scfg.comment_retention_days, stop_rx.clone());
    let (relay, relay_task) = relay::start(&cfg, pool.clone(), scfg.resend, stop_rx.clone());
    let notifier = cfg
        .notify
        .clone()
        .map(|n| super::notify::start(n, scfg.base_url.clone(), pool.clone(), signer.clone(), clock.clone(), stop_rx.clone()));
    let addr = listener.local_addr()?;
    let state = Arc::new(Survey { pool, signer, clock, cfg: scfg, relay });
    tracing::info!(%addr, schema, notify = notifier.is_some(), "hq-survey started");
    println!("hq-survey {} ready on https://{addr} (schema v{schema})", cfg.worker_id);

    let opts = crate::api::server::ServeOptions {
        tls: Some(tokio_rustls::TlsAcceptor::from(tls)),
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        max_connections: 4096,
        metrics: Arc::new(crate::api::metrics::Metrics::default()),
    };
    crate::api::server::serve(listener, routes(state), opts, shutdown).await;
    let _ = stop_tx.send(true);
    for t in [Some(relay_task), Some(retention_task), notifier].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    tracing::info!("hq-survey stopped");
    Ok(())
}

// ---- retention ------------------------------------------------------------------------------

const RETENTION_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Blank the comments of answers older than `days` (by `clock`). A failure is logged and left to
/// the next run: the answers are not lost, only kept a day longer.
async fn retention(pool: &Pool, clock: &Clock, days: u32) {
    let cutoff = clock.now() - chrono::Duration::days(i64::from(days));
    match db::blank_old_comments(pool, cutoff).await {
        Ok(n) => tracing::info!(blanked = n, days, "survey comment retention applied"),
        Err(e) => tracing::warn!(error = %e, "survey comment retention failed; retried in a day"),
    }
}

fn start_retention(pool: Arc<Pool>, clock: Clock, days: u32, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = relay::stopped(&mut stop) => return,
                _ = tokio::time::sleep(RETENTION_EVERY) => retention(&pool, &clock, days).await,
            }
        }
    })
}

// ---- routes ----------------------------------------------------------------------------------

fn with<T: Clone + Send>(v: T) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || v.clone())
}

/// `?lang=` only; anything else in the query is ignored.
#[derive(Debug, Default, serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
    done: Option<String>,
}

fn lang_query() -> impl Filter<Extract = (LangQuery,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify().map(|q: String| {
        let mut l = LangQuery::default();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "lang" if v.len() <= 8 => l.lang = Some(v.into_owned()),
                "done" if v.len() <= 8 => l.done = Some(v.into_owned()),
                _ => {}
            }
        }
        l
    })
}

/// The reader's language before a task is known: from the browser.
fn browser_lang() -> impl Filter<Extract = (Strings,), Error = Rejection> + Clone {
    warp::header::optional::<String>("accept-language").map(|h: Option<String>| {
        let en = h.as_deref().is_some_and(|h| h.trim_start().to_ascii_lowercase().starts_with("en"));
        Strings::new(if en { UiLang::En } else { UiLang::Zh })
    })
}

static CSS: &[u8] = include_bytes!("survey.css");

fn css() -> Response {
    let mut r = Response::new(CSS.into());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=86400"));
    crate::ui::harden(r)
}

/// The route of a path, for logs: tokens replaced.
fn route_of(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/s/") => "/s/:token",
        "/static/survey.css" => "/static/survey.css",
        "/healthz" => "/healthz",
        _ => "other",
    }
}

pub fn routes(s: Arc<Survey>) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    let st = with(s);
    let page = warp::path!("s" / String)
        .and(warp::get())
        .and(st.clone())
        .and(lang_query())
        .and(browser_lang())
        .then(|token: String, s: Arc<Survey>, q: LangQuery, bt: Strings| async move { show(&s, &token, q, bt).await });
    let submit = warp::path!("s" / String)
        .and(warp::post())
        .and(st.clone())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::host::optional())
        .and(browser_lang())
        .and(warp::body::content_length_limit(BODY_LIMIT))
        .and(warp::body::bytes())
        .then(
            |token: String, s: Arc<Survey>, origin: Option<String>, host: Option<warp::host::Authority>, bt: Strings, body: Bytes| async move {
                let from = Origin { origin: origin.as_deref(), host: host.as_ref().map(|h| h.as_str()) };
                submit(&s, &token, from, bt, &body).await
            },
        );
    let static_css = warp::path!("static" / "survey.css").and(warp::get()).map(css);
    let health =
        warp::path!("healthz").and(warp::get()).map(|| crate::ui::harden(warp::reply::with_status("ok", StatusCode::OK).into_response()));
    page.or(submit).unify().or(static_css).unify().or(health).unify().boxed().recover(recover).unify().with(warp::log::custom(|info| {
        tracing::info!(method = %info.method(), route = route_of(info.path()), status = info.status().as_u16(),
                ms = info.elapsed().as_secs_f64() * 1000.0, "served");
    }))
}

/// Every refusal before a handler ran (unknown path, wrong method, body too large or without a
/// length) is a page (zh-CN: the request may be anything).
async fn recover(r: Rejection) -> Result<Response, std::convert::Infallible> {
    let t = Strings::new(UiLang::Zh);
    let (status, kind) = if r.is_not_found() {
        (StatusCode::NOT_FOUND, "survey-not-found")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "survey-too-large")
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "survey-error")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "survey-error")
    } else {
        (StatusCode::BAD_REQUEST, "survey-error")
    };
    Ok(message(t, status, kind, "", None))
}

fn message(t: Strings, status: StatusCode, kind: &'static str, store: &str, review_url: Option<&str>) -> Response {
    crate::ui::html(&page::message_page(t, kind, store, review_url), status)
}

fn unavailable(t: Strings, e: &HqError) -> Response {
    tracing::error!(error = %e, "the survey service cannot reach PostgreSQL");
    message(t, StatusCode::SERVICE_UNAVAILABLE, "survey-unavailable", "", None)
}

/// The task behind `token`, or the page that says why there is none.
async fn task_of(s: &Survey, token: &str, t: Strings) -> Result<(Task, String), Response> {
    if !page::valid_token(token) {
        return Err(message(t, StatusCode::NOT_FOUND, "survey-not-found", "", None));
    }
    let hash = db::token_hash(token);
    let c = s.pool.get().await.map_err(|e| unavailable(t, &e))?;
    match db::task_by_token_hash(&c, &hash).await {
        Ok(Some(task)) => Ok((task, hash)),
        Ok(None) => Err(message(t, StatusCode::NOT_FOUND, "survey-not-found", "", None)),
        Err(e) => Err(unavailable(t, &e)),
    }
}

/// Where a task stands for the page: open, answered (at HQ or by phone at the store), or closed.
enum Standing {
    Open,
    Answered,
    Closed,
}

async fn standing(s: &Survey, task: &Task) -> Result<Standing, HqError> {
    let c = s.pool.get().await?;
    if db::answered(&c, &task.store_id, &task.follow_up_id).await? {
        return Ok(Standing::Answered);
    }
    Ok(match task.body.status.as_str() {
        "answered" => Standing::Answered,
        // The customer declined the follow-up, or the store closed it: the page no longer asks.
        "declined" | "closed" => Standing::Closed,
        // pending, unreachable (no one answered the call: the page still may), or newer states.
        _ => Standing::Open,
    })
}

async fn show(s: &Survey, token: &str, q: LangQuery, bt: Strings) -> Response {
    let bt = match q.lang.as_deref() {
        Some(l) => Strings::new(page::lang_of(Some(l), "")),
        None => bt,
    };
    let (task, hash) = match task_of(s, token, bt).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = Strings::new(page::lang_of(q.lang.as_deref(), &task.body.lang));
    let store = task.body.store_name.as_str();
    match standing(s, &task).await {
        Err(e) => unavailable(t, &e),
        Ok(Standing::Answered) => {
            let kind = if q.done.is_some() { "survey-thanks" } else { "survey-answered" };
            message(t, StatusCode::OK, kind, store, s.cfg.review_url.as_deref())
        }
        Ok(Standing::Closed) => message(t, StatusCode::GONE, "survey-closed", store, None),
        Ok(Standing::Open) => {
            let input = FormInput { t, token, store_name: store, questions: &task.body.questions, csrf: s.signer.csrf(&hash) };
            crate::ui::html(&page::form_page(input, Refill::default()), StatusCode::OK)
        }
    }
}

/// The `Origin` of a POST, when the browser sends one, must be the page's: the configured public
/// origin, or this request's own host (a proxy in front may present either).
fn origin_ok(cfg: &SurveyConfig, from: Origin<'_>) -> bool {
    match from.origin {
        None => true,
        Some(o) => o == cfg.origin || from.host.is_some_and(|h| o == format!("https://{h}")),
    }
}

/// A POST's `Origin` header and the host it was sent to.
#[derive(Clone, Copy)]
struct Origin<'a> {
    origin: Option<&'a str>,
    host: Option<&'a str>,
}

async fn submit(s: &Survey, token: &str, from: Origin<'_>, bt: Strings, body: &[u8]) -> Response {
    if !origin_ok(&s.cfg, from) {
        tracing::warn!("a survey answer from a foreign origin refused");
        return message(bt, StatusCode::FORBIDDEN, "survey-refused", "", None);
    }
    let (task, hash) = match task_of(s, token, bt).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let sent = page::parse_form(body);
    let t = Strings::new(page::lang_of(sent.lang.as_deref(), &task.body.lang));
    let store = task.body.store_name.as_str();
    if !s.signer.csrf_ok(&hash, &sent.csrf) {
        tracing::warn!(store = %task.store_id, follow_up.id = %task.follow_up_id, "a survey answer without a valid CSRF token refused");
        return message(t, StatusCode::FORBIDDEN, "survey-refused", store, None);
    }
    match standing(s, &task).await {
        Err(e) => return unavailable(t, &e),
        Ok(Standing::Answered) => return message(t, StatusCode::CONFLICT, "survey-answered", store, s.cfg.review_url.as_deref()),
        Ok(Standing::Closed) => return message(t, StatusCode::GONE, "survey-closed", store, None),
        Ok(Standing::Open) => {}
    }
    let answer = match page::to_answer(&sent, &task.body.questions) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(store = %task.store_id, follow_up.id = %task.follow_up_id, field = e.field, code = e.code, "a survey answer refused");
            let input = FormInput { t, token, store_name: store, questions: &task.body.questions, csrf: s.signer.csrf(&hash) };
            return crate::ui::html(&page::form_page(input, Refill { sent: Some(&sent), error: Some(e) }), StatusCode::BAD_REQUEST);
        }
    };
    match db::store_answer(&s.pool, &task, &answer, t.lang().tag(), s.clock.now()).await {
        Ok(Stored::New { answer_id, seq }) => {
            tracing::info!(store = %task.store_id, follow_up.id = %task.follow_up_id, answer.id = %answer_id, seq, via = task.via.as_str(),
                csat = answer.csat, nps = answer.nps, "survey answered at HQ");
            s.relay.wake(&task.store_id);
            crate::ui::see_other(&format!("/s/{token}?lang={}&done=1", t.lang().code()))
        }
        Ok(Stored::AlreadyAnswered) => message(t, StatusCode::CONFLICT, "survey-answered", store, s.cfg.review_url.as_deref()),
        Err(e) if e.is_retriable() => unavailable(t, &e),
        Err(e) => {
            // Content PostgreSQL refuses despite the checks: the customer can do nothing about it.
            tracing::error!(store = %task.store_id, follow_up.id = %task.follow_up_id, error = %e, "a survey answer could not be stored");
            message(t, StatusCode::BAD_REQUEST, "survey-error", store, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_name_routes_not_tokens() {
        assert_eq!(route_of("/s/0123456789abcdef0123456789abcdef0123"), "/s/:token");
        assert_eq!(route_of("/etc/passwd"), "other");
    }

    #[test]
    fn origins() {
        let cfg = toml::from_str::<super::super::survey_config::RawSurvey>("base_url = \"https://survey.example.com\"")
            .unwrap()
            .validate()
            .unwrap();
        let ok = |origin, host| origin_ok(&cfg, Origin { origin, host });
        assert!(ok(None, None));
        assert!(ok(Some("https://survey.example.com"), Some("10.0.0.1:8445")));
        assert!(ok(Some("https://localhost:8445"), Some("localhost:8445")));
        assert!(!ok(Some("https://evil.example.com"), Some("localhost:8445")));
        assert!(!ok(Some("null"), Some("localhost:8445")));
        assert!(!ok(Some("http://localhost:8445"), Some("localhost:8445")));
    }
}
