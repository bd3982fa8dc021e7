//! The manager's pages: staff accounts, the audit log, system status.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;

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

pub(super) async fn render_users(p: &Page, s: &ApiState, q: &Query, one_time: Option<(String, String)>) -> Response {
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

pub(super) fn parse_role(x: &str) -> Option<Role> {
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
    match s.protection.status().await {
        Ok(ps) => {
            rows.push(StatusRow {
                name: t.s("status.key").to_string(),
                ok: ps.key_mode != "key file",
                value: format!("{} · {}", t.of("key_mode", ps.key_mode), ps.key_fingerprint),
            });
            let (ok, value) = match (&ps.backup_dir, ps.backup_age_secs) {
                (None, _) => (false, t.s("status.no_backups").to_string()),
                (Some(_), None) => (false, t.s("status.backup_none_yet").to_string()),
                (Some(_), Some(age)) => (age < 26 * 3600, t.f("status.backup_age", &[("hours", &format!("{:.1}", age as f64 / 3600.0))])),
            };
            rows.push(StatusRow { name: t.s("status.backup").to_string(), ok, value });
            rows.push(StatusRow {
                name: t.s("status.retention").to_string(),
                ok: ps.last_retention.as_ref().is_none_or(|r| r.ok),
                value: ps
                    .last_retention
                    .map(|r| format!("{} · {}", when(&r.at), r.report))
                    .unwrap_or_else(|| t.s("status.retention_none").to_string()),
            });
        }
        Err(e) => rows.push(StatusRow { name: t.s("status.backup").to_string(), ok: false, value: e.to_string() }),
    }
    html(&StatusPage { c: p.chrome(t.s("status.title"), &Query::default()), rows }, StatusCode::OK)
}

// ---------------------------------------------------------------------------------------------
// Manager: customers' requests about their data (export, erase) and legal holds.

pub struct PrivacyCase {
    pub id: String,
    pub short: String,
    pub status: String,
    pub hold: Option<String>,
}

pub struct PrivacyCustomer {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub plates: String,
    pub erased: bool,
    pub cases: Vec<PrivacyCase>,
}

#[derive(Template)]
#[template(path = "privacy.html", config = "src/ui/askama.toml")]
struct PrivacyPage {
    c: Chrome,
    q: String,
    searched: bool,
    customers: Vec<PrivacyCustomer>,
}

pub async fn privacy_page(p: Page, s: Arc<ApiState>, q: Query) -> Response {
    let query = q.get("q").unwrap_or("").trim().chars().take(64).collect::<String>();
    let found = if query.is_empty() { Ok(Vec::new()) } else { s.protection.find(&p.ctx.actor, query.clone()).await };
    match found {
        Ok(list) => {
            let customers = list
                .into_iter()
                .map(|c| PrivacyCustomer {
                    erased: c.erased_at.is_some(),
                    name: c.name,
                    phone: c.phone.unwrap_or_default(),
                    plates: c.plates.join(" "),
                    cases: c
                        .cases
                        .into_iter()
                        .map(|k| PrivacyCase {
                            short: k.id.chars().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect(),
                            status: p.t.of("status", &k.status),
                            hold: k.legal_hold,
                            id: k.id,
                        })
                        .collect(),
                    id: c.id,
                })
                .collect();
            html(&PrivacyPage { c: p.chrome(p.t.s("privacy.title"), &q), searched: !query.is_empty(), q: query, customers }, StatusCode::OK)
        }
        Err(e) => failed(&p, e.into()),
    }
}

fn privacy_back(f: &Form) -> String {
    format!("/manager/privacy?q={}", urlencode(f.get("q").unwrap_or("")))
}

pub async fn privacy_export(id: String, p: Page, s: Arc<ApiState>) -> Response {
    match s.protection.export(&p.ctx.actor, id.clone()).await {
        Ok(zip) => crate::api::privacy::zip_download(&id, zip),
        Err(e) => failed(&p, e.into()),
    }
}

pub async fn privacy_erase(id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = privacy_back(&f);
    if f.get("confirm").map(str::trim) != Some(id.as_str()) {
        return back(&to, Err(ApiError::field(StatusCode::BAD_REQUEST, "confirm_mismatch", "confirm", "")));
    }
    let r = s.protection.erase(&p.ctx.actor, id, "request").await.map_err(ApiError::from);
    back(&to, r.map(|_| "customer_erased"))
}

pub async fn privacy_hold(case_id: String, p: Page, f: Form, s: Arc<ApiState>) -> Response {
    let to = privacy_back(&f);
    let reason = if f.get("release").is_some() { None } else { Some(f.get("reason").unwrap_or("").trim().to_string()) };
    let key = if reason.is_some() { "hold_set" } else { "hold_released" };
    let r = s.protection.set_legal_hold(&p.ctx.actor, case_id, reason).await.map_err(ApiError::from);
    back(&to, r.map(|_| key))
}
