//! The `[survey]` and `[notify]` sections of `hq.toml` (read by `sync::hq::HqConfig`): raw TOML →
//! validated settings, each error naming its key and the fix.
//!
//! Invariants: the survey's public address is HTTPS and has no path (the store prints
//! `{base_url}/s/{token}` in its QR codes); the webhook is HTTPS except to a loopback endpoint (a
//! gateway on the same host, or a test); every invitation template carries `{url}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSurvey {
    listen: Option<String>,
    base_url: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    resend_secs: Option<u64>,
    review_url: Option<String>,
    comment_retention_days: Option<u32>,
}

/// Validated `[survey]`.
#[derive(Debug, Clone)]
pub struct SurveyConfig {
    pub listen: SocketAddr,
    /// `https://host[:port]`, no trailing slash: links are `{base_url}/s/{token}`.
    pub base_url: String,
    /// The page's own origin (what a browser sends as `Origin` on its POST).
    pub origin: String,
    /// Generated (self-signed) when both are absent, as the store does.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The signing secret (≥ 32 bytes); default: one kept in PostgreSQL (`hq_survey_secret`).
    pub secret_file: Option<PathBuf>,
    /// Unacknowledged answers are sent again this often.
    pub resend: Duration,
    /// Where the thank-you page invites every respondent to leave a review.
    pub review_url: Option<String>,
    /// An answer's free-text comment is blanked this long after it was given (the scores stay
    /// for the KPIs); the store's `[retention] survey_answers_days` does the same on the box.
    pub comment_retention_days: u32,
}

/// The default comment retention: a year, the store's default for its own copy.
pub const COMMENT_RETENTION_DAYS: u32 = 365;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    webhook_url: String,
    template_zh: String,
    template_en: String,
    interval_secs: Option<u64>,
    max_attempts: Option<u32>,
    timeout_secs: Option<u64>,
}

/// Validated `[notify]`: SMS/WeChat invitations through an HTTP webhook.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhook_url: String,
    /// Placeholders `{store}` and `{url}`.
    pub template_zh: String,
    pub template_en: String,
    /// How often due follow-ups are looked for; also the first retry delay (then doubled).
    pub interval: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
}

const TEMPLATE_MAX: usize = 500;

fn parse_url(key: &str, v: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(v.trim()).map_err(|e| format!("key `{key}`: '{v}' is not a URL ({e})"))
}

fn loopback(u: &reqwest::Url) -> bool {
    match u.host_str() {
        Some("localhost") => true,
        Some(h) => h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl RawSurvey {
    pub fn validate(self) -> Result<SurveyConfig, String> {
        if self.base_url.trim().is_empty() {
            return Err("key `survey.base_url`: set the page's public address, e.g. \"https://survey.hq.example.com\"".into());
        }
        let u = parse_url("survey.base_url", &self.base_url)?;
        if u.scheme() != "https" || u.host().is_none() {
            return Err(format!("key `survey.base_url`: '{}' must be an https:// address", self.base_url));
        }
        if !(u.path() == "/" || u.path().is_empty()) || u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
            return Err(format!("key `survey.base_url`: '{}' must be scheme, host and port only (no path)", self.base_url));
        }
        let origin = u.origin().ascii_serialization();
        let listen = self.listen.as_deref().unwrap_or("0.0.0.0:8445");
        let listen: SocketAddr =
            listen.parse().map_err(|_| format!("key `survey.listen`: '{listen}' is not an address:port, e.g. \"0.0.0.0:8445\""))?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("key `survey.tls_cert`: set both tls_cert and tls_key, or neither (a certificate is then generated)".into());
        }
        let resend = self.resend_secs.unwrap_or(30);
        if !(1..=3600).contains(&resend) {
            return Err("key `survey.resend_secs`: must be between 1 and 3600".into());
        }
        let review_url = match self.review_url.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(r) => {
                let ru = parse_url("survey.review_url", r)?;
                if ru.scheme() != "https" {
                    return Err(format!("key `survey.review_url`: '{r}' must be an https:// address"));
                }
                Some(ru.to_string())
            }
            None => None,
        };
        let comment_retention_days = self.comment_retention_days.unwrap_or(COMMENT_RETENTION_DAYS);
        if !(1..=36_500).contains(&comment_retention_days) {
            return Err("key `survey.comment_retention_days`: must be between 1 and 36500 days".into());
        }
        let dir = PathBuf::from("/var/lib/servicebay-hq/tls");
        Ok(SurveyConfig {
            listen,
            base_url: origin.clone(),
            origin,
            tls_cert: self.tls_cert.unwrap_or_else(|| dir.join("survey-cert.pem")),
            tls_key: self.tls_key.unwrap_or_else(|| dir.join("survey-key.pem")),
            secret_file: self.secret_file,
            resend: Duration::from_secs(resend),
            review_url,
            comment_retention_days,
        })
    }
}

fn template(key: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("key `{key}`: set the invitation text, with {{store}} and {{url}}"));
    }
    if !v.contains("{url}") {
        return Err(format!("key `{key}`: the text must contain {{url}} (the survey link)"));
    }
    if v.chars().count() > TEMPLATE_MAX {
        return Err(format!("key `{key}`: at most {TEMPLATE_MAX} characters"));
    }
    if let Some(c) = crate::domain::validate::forbidden_char(v) {
        return Err(format!("key `{key}`: contains the control character U+{:04X}", c as u32));
    }
    Ok(v.to_string())
}

impl RawNotify {
    pub fn validate(self) -> Result<NotifyConfig, String> {
        if self.webhook_url.trim().is_empty() {
            return Err("key `notify.webhook_url`: set the SMS/WeChat gateway's URL (or remove [notify])".into());
        }
        let u = parse_url("notify.webhook_url", &self.webhook_url)?;
        match u.scheme() {
            "https" => {}
            "http" if loopback(&u) => {}
            _ => {
                return Err(format!(
                    "key `notify.webhook_url`: '{}' must be https:// (plain http only to a loopback address)",
                    u.origin().ascii_serialization()
                ))
            }
        }
        let interval = self.interval_secs.unwrap_or(60);
        if !(1..=86_400).contains(&interval) {
            return Err("key `notify.interval_secs`: must be between 1 and 86400".into());
        }
        let max_attempts = self.max_attempts.unwrap_or(5);
        if !(1..=50).contains(&max_attempts) {
            return Err("key `notify.max_attempts`: must be between 1 and 50".into());
        }
        let timeout = self.timeout_secs.unwrap_or(10);
        if !(1..=120).contains(&timeout) {
            return Err("key `notify.timeout_secs`: must be between 1 and 120".into());
        }
        Ok(NotifyConfig {
            webhook_url: u.to_string(),
            template_zh: template("notify.template_zh", &self.template_zh)?,
            template_en: template("notify.template_en", &self.template_en)?,
            interval: Duration::from_secs(interval),
            max_attempts,
            timeout: Duration::from_secs(timeout),
        })
    }
}

impl NotifyConfig {
    /// The webhook without path or query (they may carry a gateway's key): for logs and reports.
    pub fn webhook_origin(&self) -> String {
        reqwest::Url::parse(&self.webhook_url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }
}

/// `check-config` lines for the two sections.
pub fn report(survey: Option<&SurveyConfig>, notify: Option<&NotifyConfig>) -> String {
    let mut out = String::new();
    match survey {
        Some(s) => {
            out.push_str(&format!("  survey     {}/s/<token> served on {}\n", s.base_url, s.listen));
            let tls = if s.tls_cert.exists() { "" } else { " (generated at first start)" };
            out.push_str(&format!("  survey tls {} / {}{tls}\n", s.tls_cert.display(), s.tls_key.display()));
            match &s.secret_file {
                Some(f) => out.push_str(&format!("  secret     from {}\n", f.display())),
                None => out.push_str("  secret     kept in PostgreSQL (hq_survey_secret)\n"),
            }
            out.push_str(&format!("  downlink   unacknowledged answers resent every {} s\n", s.resend.as_secs()));
            out.push_str(&format!("  retention  answers' comments blanked after {} days (scores kept)\n", s.comment_retention_days));
        }
        None => out.push_str("  survey     off (no [survey]: `hq-survey` refuses to start)\n"),
    }
    match notify {
        Some(n) => out.push_str(&format!(
            "  notify     webhook {} (path hidden), every {} s, up to {} attempts, {} s timeout\n",
            n.webhook_origin(),
            n.interval.as_secs(),
            n.max_attempts,
            n.timeout.as_secs()
        )),
        None => out.push_str("  notify     off (no SMS/WeChat invitations)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey(text: &str) -> Result<SurveyConfig, String> {
        toml::from_str::<RawSurvey>(text).map_err(|e| e.to_string())?.validate()
    }

    fn notify(text: &str) -> Result<NotifyConfig, String> {
        toml::from_str::<RawNotify>(text).map_err(|e| e.to_string())?.validate()
    }

    #[test]
    fn survey_section_is_validated() {
        let s = survey("base_url = \"https://survey.example.com/\"\nresend_secs = 5\n").unwrap();
        assert_eq!(s.base_url, "https://survey.example.com");
        assert_eq!(s.origin, "https://survey.example.com");
        assert_eq!(s.resend, Duration::from_secs(5));
        assert_eq!(s.comment_retention_days, COMMENT_RETENTION_DAYS);
        assert_eq!(survey("base_url = \"https://s.example.com\"\ncomment_retention_days = 30").unwrap().comment_retention_days, 30);
        assert_eq!(survey("base_url = \"https://127.0.0.1:8445\"").unwrap().base_url, "https://127.0.0.1:8445");
        for (bad, key) in [
            ("", "survey.base_url"),
            ("base_url = \"http://survey.example.com\"", "survey.base_url"),
            ("base_url = \"https://survey.example.com/x\"", "survey.base_url"),
            ("base_url = \"https://s.example.com\"\nlisten = \"nowhere\"", "survey.listen"),
            ("base_url = \"https://s.example.com\"\ntls_cert = \"/c.pem\"", "survey.tls_cert"),
            ("base_url = \"https://s.example.com\"\nresend_secs = 0", "survey.resend_secs"),
            ("base_url = \"https://s.example.com\"\ncomment_retention_days = 0", "survey.comment_retention_days"),
            ("base_url = \"https://s.example.com\"\ncomment_retention_days = 36501", "survey.comment_retention_days"),
            ("base_url = \"https://s.example.com\"\nreview_url = \"http://x.example.com\"", "survey.review_url"),
        ] {
            let e = survey(bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
        assert!(survey("base_url = \"https://s.example.com\"\nbogus = 1").unwrap_err().contains("bogus"));
    }

    #[test]
    fn notify_section_is_validated() {
        let ok =
            "webhook_url = \"https://gw.example.com/send?key=k\"\ntemplate_zh = \"{store}回访：{url}\"\ntemplate_en = \"{store}: {url}\"\n";
        let n = notify(ok).unwrap();
        assert_eq!((n.max_attempts, n.interval), (5, Duration::from_secs(60)));
        assert_eq!(n.webhook_origin(), "https://gw.example.com");
        assert!(notify(&ok.replace("https://gw.example.com", "http://127.0.0.1:9")).is_ok());
        let e = notify(&ok.replace("https://gw.example.com", "http://gw.example.com")).unwrap_err();
        assert!(e.contains("notify.webhook_url") && !e.contains("key=k"), "{e}");
        assert!(notify(&ok.replace("{store}: {url}", "no link")).unwrap_err().contains("template_en"));
        assert!(notify(&format!("{ok}max_attempts = 0\n")).unwrap_err().contains("max_attempts"));
        // A TOML escape decodes to a real control character, which the check refuses.
        assert!(notify(&ok.replace("回访", "\\u0007")).unwrap_err().contains("U+0007"));
    }
}
