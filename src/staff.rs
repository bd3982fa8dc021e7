//! Staff accounts and sessions: login with throttling, logout, password change, and the manager's
//! user administration (also used by the `servicebay user …` commands on the box).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, AuthError, Throttle};
use crate::domain::validate::{self, Invalid};
use crate::domain::{Actor, Role, User};
use crate::store::{self, audit, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("user not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A logged-in session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Login {
    pub token: String,
    pub expires_at: String,
    pub user: User,
}

#[derive(Clone)]
pub struct StaffService {
    store: store::Store,
    throttle: Arc<Throttle>,
    ttl: Duration,
    /// The first manager's one-time password file; removed once that password has been replaced.
    initial_password_file: Option<std::path::PathBuf>,
}

impl StaffService {
    pub fn new(store: store::Store, throttle: Throttle, ttl: Duration) -> StaffService {
        StaffService { store, throttle: Arc::new(throttle), ttl, initial_password_file: None }
    }

    pub fn with_initial_password_file(mut self, path: std::path::PathBuf) -> StaffService {
        self.initial_password_file = Some(path);
        self
    }

    pub async fn login(&self, username: &str, password: &str, addr: &str) -> Result<Login, StaffError> {
        if let Err(wait) = self.throttle.check(username, addr) {
            return Err(AuthError::Throttled(wait).into());
        }
        let name = username.to_string();
        let creds = self.store.read(move |tx| store::users::credentials(tx, &name)).await?;
        let pw = password.to_string();
        // argon2 is deliberately slow: keep it off the async workers. Unknown users cost the same.
        let (user, ok) = tokio::task::spawn_blocking(move || match creds {
            Some((u, h)) => {
                let ok = auth::verify_password(&pw, &h);
                (Some(u), ok)
            }
            None => {
                auth::verify_password(&pw, auth::dummy_hash());
                (None, false)
            }
        })
        .await
        .map_err(|_| AuthError::Hash)?;
        let actor = Actor {
            user_id: user.as_ref().map(|u| u.id),
            username: username.to_string(),
            role: user.as_ref().map(|u| u.role),
            client_addr: Some(addr.to_string()),
        };
        let user = match user {
            Some(u) if ok && !u.disabled => u,
            Some(u) if ok && u.disabled => {
                self.record(&actor, "auth.login", "disabled").await?;
                return Err(AuthError::Disabled.into());
            }
            _ => {
                self.throttle.failed(username, addr);
                self.record(&actor, "auth.login", "failed").await?;
                return Err(AuthError::BadCredentials.into());
            }
        };
        self.throttle.succeeded(username);
        let (token, hash) = auth::new_token();
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(12));
        let expires_at = (chrono::Utc::now() + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (exp, addr_s, uid) = (expires_at.clone(), addr.to_string(), user.id);
        self.store
            .write(move |tx| -> Result<(), StaffError> {
                store::users::insert_session(tx, &hash, uid, &exp, Some(&addr_s))?;
                audit::record(tx, &actor, "auth.login", "user", Some(&uid.to_string()), "ok")?;
                Ok(())
            })
            .await?;
        Ok(Login { token, expires_at, user })
    }

    /// The user behind a bearer token, if the session is valid.
    pub async fn session(&self, token: &str) -> Result<User, StaffError> {
        let h = auth::token_hash(token);
        let now = crate::domain::now();
        self.store.read(move |tx| store::users::session_user(tx, &h, &now)).await?.ok_or(AuthError::NoSession.into())
    }

    pub async fn logout(&self, actor: &Actor, token: &str) -> Result<(), StaffError> {
        let h = auth::token_hash(token);
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StaffError> {
                store::users::delete_session(tx, &h)?;
                audit::record(tx, &actor, "auth.logout", "user", actor.user_id.map(|i| i.to_string()).as_deref(), "ok")?;
                Ok(())
            })
            .await
    }

    pub async fn change_password(&self, actor: &Actor, user_id: i64, old: &str, new: &str) -> Result<(), StaffError> {
        auth::check_new_password(new).map_err(|m| validate::invalid("new_password", m))?;
        if old == new {
            return Err(validate::invalid("new_password", "must differ from the current password").into());
        }
        let username = actor.username.clone();
        let creds = self.store.read(move |tx| store::users::credentials(tx, &username)).await?;
        let Some((user, hash)) = creds.filter(|(u, _)| u.id == user_id) else {
            return Err(StaffError::NotFound);
        };
        let (old, new) = (old.to_string(), new.to_string());
        let old_was_initial =
            self.initial_password_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).is_some_and(|pw| pw.trim() == old);
        let new_hash = tokio::task::spawn_blocking(move || {
            if !auth::verify_password(&old, &hash) {
                return Err(StaffError::Invalid(validate::invalid("old_password", "is not the current password")));
            }
            auth::hash_password(&new).map_err(StaffError::from)
        })
        .await
        .map_err(|_| AuthError::Hash)??;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StaffError> {
                store::users::set_password(tx, user.id, &new_hash, false)?;
                audit::record(tx, &actor, "user.change_password", "user", Some(&user.id.to_string()), "ok")?;
                Ok(())
            })
            .await?;
        if old_was_initial {
            if let Some(p) = &self.initial_password_file {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }

    /// Create a user with a one-time password (returned once, to be handed over in person).
    pub async fn add_user(
        &self,
        actor: &Actor,
        username: &str,
        display_name: Option<&str>,
        role: Role,
    ) -> Result<(User, String), StaffError> {
        let username = validate::text("username", username, 64)?;
        if !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
            return Err(validate::invalid("username", "use letters, digits, '.', '-' or '_'").into());
        }
        let display = validate::opt_text("display_name", display_name, 100)?.unwrap_or_else(|| username.clone());
        let password = auth::generate_password();
        let pw = password.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw)).await.map_err(|_| AuthError::Hash)??;
        let actor = actor.clone();
        let user = self
            .store
            .write(move |tx| -> Result<User, StaffError> {
                let u = store::users::insert(tx, &username, &display, role, &hash, true)?;
                audit::record(tx, &actor, "user.create", "user", Some(&u.id.to_string()), "ok")?;
                Ok(u)
            })
            .await?;
        Ok((user, password))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StaffError> {
        Ok(self.store.read(store::users::list).await?)
    }

    pub async fn find(&self, username: &str) -> Result<User, StaffError> {
        let name = username.to_string();
        self.store.read(move |tx| store::users::credentials(tx, &name)).await?.map(|(u, _)| u).ok_or(StaffError::NotFound)
    }

    pub async fn set_disabled(&self, actor: &Actor, user_id: i64, disabled: bool) -> Result<(), StaffError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StaffError> {
                store::users::set_disabled(tx, user_id, disabled).map_err(|e| match e {
                    StoreError::NotFound(_) => StaffError::NotFound,
                    e => e.into(),
                })?;
                let action = if disabled { "user.disable" } else { "user.enable" };
                audit::record(tx, &actor, action, "user", Some(&user_id.to_string()), "ok")?;
                Ok(())
            })
            .await
    }

    /// New one-time password; the user's sessions end.
    pub async fn reset_password(&self, actor: &Actor, user_id: i64) -> Result<String, StaffError> {
        let password = auth::generate_password();
        let pw = password.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw)).await.map_err(|_| AuthError::Hash)??;
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StaffError> {
                store::users::set_password(tx, user_id, &hash, true).map_err(|e| match e {
                    StoreError::NotFound(_) => StaffError::NotFound,
                    e => e.into(),
                })?;
                audit::record(tx, &actor, "user.reset_password", "user", Some(&user_id.to_string()), "ok")?;
                Ok(())
            })
            .await?;
        Ok(password)
    }

    pub async fn user_count(&self) -> Result<i64, StaffError> {
        Ok(self.store.read(store::users::count).await?)
    }

    pub async fn audit_log(&self, target: Option<String>, before: Option<i64>, limit: u32) -> Result<Vec<audit::AuditRow>, StaffError> {
        Ok(self.store.read(move |tx| audit::list(tx, target.as_deref(), before, limit)).await?)
    }

    async fn record(&self, actor: &Actor, action: &'static str, outcome: &'static str) -> Result<(), StaffError> {
        let actor = actor.clone();
        self.store
            .write(move |tx| -> Result<(), StaffError> {
                audit::record(tx, &actor, action, "user", actor.user_id.map(|i| i.to_string()).as_deref(), outcome)?;
                Ok(())
            })
            .await
    }
}
