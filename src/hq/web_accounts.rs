//! HQ analysts' accounts and sessions, in HQ's PostgreSQL (schema v5: `hq_analysts`,
//! `hq_analyst_sessions`, `hq_analyst_audit`). Analysts are not store staff: they have no account
//! at any store and store accounts do not exist here.
//!
//! Invariants:
//! - Passwords are argon2id hashes (`crate::auth`), verified off the async workers; an unknown
//!   name costs the same time as a known one, and both answer "wrong username or password".
//! - A session is a random 256-bit token; only its SHA-256 is stored. It ends at its expiry, at
//!   logout, when the analyst is disabled or changes the password.
//! - A one-time password (from `servicebay hq-analyst add`) must be replaced before any page shows
//!   data; it is returned to the caller once and never logged.
//! - Logins, logouts, password changes and the CLI's changes leave a row in `hq_analyst_audit`
//!   (names, outcome and client address; never a password or a token).

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::auth::{self, AuthError, Throttle};
use crate::sync::hq::{connect_pg, HqError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no analyst named '{0}'")]
    NotFound(String),
    #[error("an analyst named '{0}' exists already")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] HqError),
}

impl From<tokio_postgres::Error> for AccountError {
    fn from(e: tokio_postgres::Error) -> Self {
        AccountError::Db(HqError::Postgres(e))
    }
}

impl AccountError {
    /// The code the pages show (a key of the language catalogue) and the field it is about.
    pub fn code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            AccountError::Auth(AuthError::BadCredentials | AuthError::NoSession) => ("bad_credentials", None),
            AccountError::Auth(AuthError::Throttled(_)) => ("throttled", None),
            AccountError::Auth(AuthError::Disabled) => ("disabled", None),
            AccountError::Auth(AuthError::Hash) => ("internal", None),
            AccountError::Invalid { field, .. } => ("invalid_field", Some(field)),
            AccountError::NotFound(_) => ("not_found", None),
            AccountError::Exists(_) => ("conflict", None),
            AccountError::Db(_) => ("db", None),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> AccountError {
    AccountError::Invalid { field, message: message.into() }
}

/// An analyst as the pages and the CLI see them (no hash).
#[derive(Debug, Clone)]
pub struct Analyst {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: String,
    pub last_login_at: Option<String>,
}

const COLUMNS: &str = "a.id, a.username, a.display_name, a.must_change_password, a.disabled,
    to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_char(a.last_login_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

fn analyst(r: &tokio_postgres::Row) -> Analyst {
    Analyst {
        id: r.get(0),
        username: r.get(1),
        display_name: r.get(2),
        must_change_password: r.get(3),
        disabled: r.get(4),
        created_at: r.get(5),
        last_login_at: r.get(6),
    }
}

/// The rule for analysts' names: what the store's staff names allow.
pub fn check_username(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(invalid("username", "must be 1 to 64 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(invalid("username", "use letters, digits, '.', '-' or '_'"));
    }
    Ok(name.to_string())
}

async fn audit(pg: &Client, analyst: &str, action: &str, outcome: &str, addr: Option<&str>) -> Result<(), AccountError> {
    // Names typed at the login form are bounded and have no control characters (the form reader
    // refused them); cut them anyway so one row stays small.
    let who: String = analyst.chars().take(64).collect();
    pg.execute(
        "INSERT INTO hq_analyst_audit (analyst, action, outcome, client_addr) VALUES ($1, $2, $3, $4)",
        &[&who, &action, &outcome, &addr],
    )
    .await?;
    Ok(())
}

// ---- the CLI: `servicebay hq-analyst add|list|disable` ---------------------------------------

/// A new analyst with a one-time password, returned once (the caller prints it; never log it).
pub async fn add(pg: &Client, username: &str, display_name: Option<&str>) -> Result<(Analyst, String), AccountError> {
    let username = check_username(username)?;
    let display = match display_name.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if d.chars().count() > 100 => return Err(invalid("display_name", "must be at most 100 characters")),
        Some(d) if d.chars().any(char::is_control) => return Err(invalid("display_name", "control characters are not allowed")),
        Some(d) => d.to_string(),
        None => username.clone(),
    };
    let password = auth::generate_password();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw)).await.map_err(|_| AuthError::Hash)??;
    let row = pg
        .query_opt(
            &format!(
                "WITH a AS (INSERT INTO hq_analysts (username, display_name, password_hash) VALUES ($1, $2, $3)
                 ON CONFLICT (username) DO NOTHING RETURNING *) SELECT {COLUMNS} FROM a"
            ),
            &[&username, &display, &hash],
        )
        .await?;
    let Some(row) = row else { return Err(AccountError::Exists(username)) };
    audit(pg, &username, "analyst.add", "ok", None).await?;
    Ok((analyst(&row), password))
}

pub async fn list(pg: &Client) -> Result<Vec<Analyst>, AccountError> {
    let rows = pg.query(&format!("SELECT {COLUMNS} FROM hq_analysts a ORDER BY a.username"), &[]).await?;
    Ok(rows.iter().map(analyst).collect())
}

/// Disable an analyst: the account can no longer log in and its sessions end now.
pub async fn disable(pg: &mut Client, username: &str) -> Result<(), AccountError> {
    let tx = pg.transaction().await?;
    let id: Option<i64> =
        tx.query_opt("UPDATE hq_analysts SET disabled = true WHERE username = $1 RETURNING id", &[&username]).await?.map(|r| r.get(0));
    let Some(id) = id else { return Err(AccountError::NotFound(username.to_string())) };
    tx.execute("DELETE FROM hq_analyst_sessions WHERE analyst_id = $1", &[&id]).await?;
    tx.execute("INSERT INTO hq_analyst_audit (analyst, action, outcome) VALUES ($1, 'analyst.disable', 'ok')", &[&username]).await?;
    tx.commit().await?;
    Ok(())
}

// ---- the pages: login, sessions, password --------------------------------------------------

/// One PostgreSQL connection shared by the pages' requests (tokio-postgres pipelines concurrent
/// queries on it), opened again when it was lost.
pub struct Db {
    conn: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Db {
    pub fn new(conn: String, client: Client) -> Db {
        Db { conn, client: tokio::sync::Mutex::new(Some(Arc::new(client))) }
    }

    pub async fn get(&self) -> Result<Arc<Client>, HqError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *g = None;
        let c = Arc::new(connect_pg(&self.conn).await?);
        *g = Some(c.clone());
        Ok(c)
    }
}

pub struct Accounts {
    pub db: Arc<Db>,
    throttle: Throttle,
    ttl: Duration,
}

impl Accounts {
    pub fn new(db: Arc<Db>, ttl: Duration) -> Accounts {
        // The store's rule: 5 failures per account, 20 per address, then waits doubling up to 5 min.
        Accounts { db, throttle: Throttle::new(5, 20, Duration::from_secs(300)), ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks the password; on success a new session token (the caller sets it as a cookie).
    pub async fn login(&self, username: &str, password: &str, addr: &str) -> Result<(Analyst, String), AccountError> {
        if let Err(wait) = self.throttle.check(username, addr) {
            return Err(AuthError::Throttled(wait).into());
        }
        let pg = self.db.get().await?;
        // A name no account can have is not looked up, but costs the same time and counts as a failure.
        let row = match check_username(username) {
            Ok(name) => {
                pg.query_opt(&format!("SELECT {COLUMNS}, a.password_hash FROM hq_analysts a WHERE a.username = $1"), &[&name]).await?
            }
            Err(_) => None,
        };
        let found = row.map(|r| (analyst(&r), r.get::<_, String>(7)));
        let pw = password.to_string();
        let (who, ok) = tokio::task::spawn_blocking(move || match found {
            Some((a, hash)) => {
                let ok = auth::verify_password(&pw, &hash);
                (Some(a), ok)
            }
            None => {
                auth::verify_password(&pw, auth::dummy_hash());
                (None, false)
            }
        })
        .await
        .map_err(|_| AuthError::Hash)?;
        let a = match who {
            Some(a) if ok && !a.disabled => a,
            Some(a) if ok => {
                audit(&pg, &a.username, "auth.login", "disabled", Some(addr)).await?;
                return Err(AuthError::Disabled.into());
            }
            _ => {
                self.throttle.failed(username, addr);
                audit(&pg, username, "auth.login", "failed", Some(addr)).await?;
                return Err(AuthError::BadCredentials.into());
            }
        };
        self.throttle.succeeded(username);
        let (token, hash) = auth::new_token();
        let secs = self.ttl.as_secs() as f64;
        pg.execute("DELETE FROM hq_analyst_sessions WHERE expires_at < now()", &[]).await?;
        pg.execute(
            "WITH s AS (INSERT INTO hq_analyst_sessions (token_hash, analyst_id, expires_at, client_addr)
                        VALUES ($1, $2, now() + make_interval(secs => $3), $4) RETURNING analyst_id),
                  u AS (UPDATE hq_analysts SET last_login_at = now() WHERE id IN (SELECT analyst_id FROM s))
             INSERT INTO hq_analyst_audit (analyst, action, outcome, client_addr) SELECT $5, 'auth.login', 'ok', $4 FROM s",
            &[&hash, &a.id, &secs, &addr, &a.username],
        )
        .await?;
        Ok((a, token))
    }

    /// The analyst behind a session token, if the session is valid; `NoSession` otherwise.
    pub async fn session(&self, token: &str) -> Result<Analyst, AccountError> {
        let h = auth::token_hash(token);
        let pg = self.db.get().await?;
        let row = pg
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM hq_analyst_sessions s JOIN hq_analysts a ON a.id = s.analyst_id
                     WHERE s.token_hash = $1 AND s.expires_at > now() AND NOT a.disabled"
                ),
                &[&h],
            )
            .await?;
        row.map(|r| analyst(&r)).ok_or(AuthError::NoSession.into())
    }

    pub async fn logout(&self, a: &Analyst, token: &str, addr: &str) -> Result<(), AccountError> {
        let pg = self.db.get().await?;
        pg.execute("DELETE FROM hq_analyst_sessions WHERE token_hash = $1", &[&auth::token_hash(token)]).await?;
        audit(&pg, &a.username, "auth.logout", "ok", Some(addr)).await
    }

    /// Replace the password (the one-time one included); every session of the analyst ends.
    pub async fn change_password(&self, a: &Analyst, old: &str, new: &str, addr: &str) -> Result<(), AccountError> {
        auth::check_new_password(new).map_err(|m| invalid("new_password", m))?;
        if old == new {
            return Err(invalid("new_password", "must differ from the current password"));
        }
        let pg = self.db.get().await?;
        let hash: Option<String> = pg.query_opt("SELECT password_hash FROM hq_analysts WHERE id = $1", &[&a.id]).await?.map(|r| r.get(0));
        let Some(hash) = hash else { return Err(AccountError::NotFound(a.username.clone())) };
        let (old, new) = (old.to_string(), new.to_string());
        let new_hash = tokio::task::spawn_blocking(move || {
            if !auth::verify_password(&old, &hash) {
                return Err(invalid("old_password", "is not the current password"));
            }
            auth::hash_password(&new).map_err(AccountError::from)
        })
        .await
        .map_err(|_| AuthError::Hash)??;
        // One statement, so one transaction: the connection is shared by concurrent requests and
        // cannot carry a BEGIN … COMMIT of its own.
        pg.execute(
            "WITH u AS (UPDATE hq_analysts SET password_hash = $1, must_change_password = false WHERE id = $2 RETURNING id),
                  d AS (DELETE FROM hq_analyst_sessions WHERE analyst_id IN (SELECT id FROM u))
             INSERT INTO hq_analyst_audit (analyst, action, outcome, client_addr)
             SELECT $3, 'auth.password', 'ok', $4 FROM u",
            &[&new_hash, &a.id, &a.username, &addr],
        )
        .await?;
        Ok(())
    }
}
