//! The MQTT link both ends use (the store's uplink and HQ's ingest and publisher): broker URL, TLS
//! (rustls, our CA, optional client certificate), credentials, keep-alive, and the reconnect
//! backoff. One place builds `rumqttc` options so both ends get the same hardening:
//! - TLS is required except to a loopback broker (a test or an on-box bridge).
//! - Passwords come from a file (systemd credentials), never from the config text, never logged.
//! - Every reconnect builds a fresh client and event loop: rumqttc's internal state after a broker
//!   restart is what wedges; our own outbox (store) and redelivery (HQ) make dropping it safe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use serde::Deserialize;

/// The `[sync]`/`[hq]` keys that describe the broker connection (flattened into both sections).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLink {
    /// mqtts://host:8883 (or mqtt://127.0.0.1:1883 for a loopback broker).
    pub broker: String,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub keepalive_secs: Option<u64>,
    pub backoff_max_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub keepalive: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("TLS settings for the broker: {0}")]
    Tls(String),
}

impl RawLink {
    /// Validate; `section` names the config section in errors ("sync" or "hq").
    pub fn validate(self, section: &str) -> Result<Link, LinkError> {
        let bad = |k: &str, m: String| LinkError::Invalid { key: format!("{section}.{k}"), message: m };
        let (scheme, rest) = self
            .broker
            .split_once("://")
            .ok_or_else(|| bad("broker", format!("'{}' is not a broker URL; e.g. \"mqtts://hq.example.com:8883\"", self.broker)))?;
        let tls = match scheme {
            "mqtts" | "ssl" => true,
            "mqtt" | "tcp" => false,
            other => return Err(bad("broker", format!("scheme '{other}' is not mqtts:// or mqtt://"))),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("broker", format!("port '{p}' is not a number")))?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() {
            return Err(bad("broker", "the URL has no host".into()));
        }
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
        if !tls && !loopback {
            return Err(bad("broker", format!("plain MQTT is only allowed to a loopback broker, not {host}; use mqtts://")));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(bad("client_cert", "set both client_cert and client_key, or neither".into()));
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(bad("username", "set both username and password_file, or neither".into()));
        }
        if self.client_cert.is_none() && self.username.is_none() {
            return Err(bad(
                "client_cert",
                "HQ needs credentials: a client certificate (client_cert, client_key) or username + password_file".into(),
            ));
        }
        if self.client_cert.is_some() && !tls {
            return Err(bad("client_cert", "a client certificate needs an mqtts:// broker".into()));
        }
        let keepalive = Duration::from_secs(self.keepalive_secs.unwrap_or(30));
        if !(5..=600).contains(&keepalive.as_secs()) {
            return Err(bad("keepalive_secs", "must be between 5 and 600".into()));
        }
        let backoff_max = Duration::from_secs(self.backoff_max_secs.unwrap_or(60));
        if !(1..=3600).contains(&backoff_max.as_secs()) {
            return Err(bad("backoff_max_secs", "must be between 1 and 3600".into()));
        }
        Ok(Link {
            host,
            port,
            tls,
            ca_file: self.ca_file,
            client_cert: self.client_cert.zip(self.client_key),
            username: self.username,
            password_file: self.password_file,
            keepalive,
            backoff_max,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::Read { path: path.into(), source })
}

impl Link {
    /// rumqttc options for one connection attempt. Reads the CA, certificate and password files
    /// each time, so rotated credentials are picked up on the next reconnect.
    pub fn options(&self, client_id: &str) -> Result<MqttOptions, LinkError> {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(self.keepalive);
        o.set_connection_timeout(10);
        if let (Some(user), Some(pw)) = (&self.username, &self.password_file) {
            let pw = String::from_utf8(read(pw)?).map_err(|_| LinkError::Tls("password file is not UTF-8".into()))?;
            o.set_credentials(user.clone(), pw.trim_end_matches(['\r', '\n']).to_string());
        }
        if self.tls {
            let ca = self.ca_file.as_deref();
            let client = self.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            let cfg = crate::tls::client_config(ca, client).map_err(|e| LinkError::Tls(e.to_string()))?;
            o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cfg)));
        }
        Ok(o)
    }
}

/// A session that stayed up this long was a success: the next reconnect starts the backoff over.
pub const SESSION_RESETS_BACKOFF: Duration = Duration::from_secs(60);

/// The backoff attempt to wait for after a session that lasted `lasted`: back to 0 after a session
/// that worked for a while, else the next one (capped; `backoff` caps the wait anyway).
pub fn next_attempt(attempt: u32, lasted: Duration) -> u32 {
    if lasted > SESSION_RESETS_BACKOFF {
        0
    } else {
        attempt.saturating_add(1).min(16)
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in [base·2ⁿ/2, base·2ⁿ],
/// capped, so a hundred stores coming back after an HQ outage do not reconnect in lockstep.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base_ms = 500u64.saturating_mul(1u64 << attempt.min(16));
    let cap = base_ms.min(max.as_millis() as u64).max(1);
    let low = cap / 2;
    Duration::from_millis(low + rand::random::<u64>() % (cap - low + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_session_starts_the_backoff_over() {
        let mut a = 0;
        for _ in 0..20 {
            a = next_attempt(a, Duration::from_secs(1));
        }
        assert_eq!(a, 16, "short sessions climb to the cap");
        assert_eq!(next_attempt(a, Duration::from_secs(61)), 0);
        assert!(backoff(next_attempt(a, Duration::from_secs(61)), Duration::from_secs(30)) <= Duration::from_millis(500));
    }

    fn raw(broker: &str) -> RawLink {
        RawLink { broker: broker.into(), username: Some("u".into()), password_file: Some("/p".into()), ..Default::default() }
    }

    #[test]
    fn urls_and_tls_policy() {
        let l = raw("mqtts://hq.example.com").validate("sync").unwrap();
        assert_eq!((l.host.as_str(), l.port, l.tls), ("hq.example.com", 8883, true));
        let l = raw("mqtt://127.0.0.1:1999").validate("sync").unwrap();
        assert_eq!((l.port, l.tls), (1999, false));
        let e = raw("mqtt://hq.example.com:1883").validate("sync").unwrap_err().to_string();
        assert!(e.contains("sync.broker") && e.contains("loopback"), "{e}");
        assert!(raw("http://x").validate("hq").unwrap_err().to_string().contains("hq.broker"));
        let none = RawLink { broker: "mqtts://h".into(), ..Default::default() };
        assert!(none.validate("sync").unwrap_err().to_string().contains("credentials"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(10);
        for attempt in 0..40 {
            let d = backoff(attempt, max);
            assert!(d <= max, "{d:?}");
            let expected_cap = (500u64 << attempt.min(16)).min(10_000);
            assert!(d.as_millis() as u64 >= expected_cap / 2);
        }
    }
}
