//! Login, the forced password change, the first-run page with the certificate, the language.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;

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

pub(super) fn safe_next(next: Option<&str>) -> String {
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

pub(super) fn session_cookie(token: &str) -> String {
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
            crate::ui::harden(r)
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
