//! Configuration: one TOML file, parsed strictly (unknown keys are errors), then validated into
//! `Config`. Every error names the key and how to fix it. Secrets are never kept in this file's
//! values when they can come from files (systemd credentials); nothing here is ever logged whole.
//!
//! Search order: `--config PATH` / `SERVICEBAY_CONFIG`, else `/etc/servicebay/servicebay.toml` if it
//! exists, else the embedded defaults (data under `SERVICEBAY_DATA` or `/var/lib/servicebay`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/servicebay/servicebay.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

// ---- raw file shape -------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    store: RawStore,
    server: RawServer,
    tls: RawTls,
    storage: RawStorage,
    auth: RawAuth,
    llm: RawLlm,
    vision: RawVision,
    sync: RawSync,
    backup: RawBackup,
    retention: RawRetention,
    workshop: RawWorkshop,
    follow_up: RawFollowUp,
    log: RawLog,
}

/// The workshop and QC: the store's own checkpoint/warranty tables (default: the built-in
/// assets/workshop/workshop.toml) and the font the QC report PDF embeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWorkshop {
    tables: Option<PathBuf>,
    report_font: PathBuf,
    /// The store's repair licence number (维修经营许可证号), printed on the completion certificate.
    licence: String,
}
impl Default for RawWorkshop {
    fn default() -> Self {
        RawWorkshop { tables: None, report_font: PathBuf::from(DEFAULT_REPORT_FONT), licence: String::new() }
    }
}

/// Follow-up after delivery (回访): when it is due, the store's opening hours (a task never falls due
/// while the store is closed), the hot-alert SLA, HQ's survey page for the QR code, the words.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFollowUp {
    due_after_hours: i64,
    /// The store's UTC offset, e.g. "+08:00".
    utc_offset: String,
    opens: String,
    closes: String,
    /// Closed weekdays: "mon" … "sun".
    closed_days: Vec<String>,
    alert_sla_hours: i64,
    escalate_after_hours: i64,
    /// Advisor minutes one case saves with the assistant (the KPI says so next to the figure).
    minutes_saved_per_case: f64,
    comeback_days: i64,
    /// HQ's survey service, e.g. "https://survey.hq.example" (unset: no QR, phone only).
    survey_url: Option<String>,
    /// The store's own consent texts and call script (default: assets/follow_up/follow_up.toml).
    texts: Option<PathBuf>,
}
impl Default for RawFollowUp {
    fn default() -> Self {
        RawFollowUp {
            due_after_hours: 48,
            utc_offset: "+08:00".into(),
            opens: "08:30".into(),
            closes: "18:00".into(),
            closed_days: Vec::new(),
            alert_sla_hours: 24,
            escalate_after_hours: 72,
            minutes_saved_per_case: 12.0,
            comeback_days: 30,
            survey_url: None,
            texts: None,
        }
    }
}

fn follow_up_policy(r: &RawFollowUp) -> Result<crate::domain::follow_up::Policy, ConfigError> {
    use chrono::{FixedOffset, NaiveTime, Weekday};
    let time = |key: &str, v: &str| {
        NaiveTime::parse_from_str(v, "%H:%M").map_err(|_| invalid(&format!("follow_up.{key}"), "a local time like \"08:30\""))
    };
    let tz = chrono::DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{}", r.utc_offset))
        .map(|d| *d.offset())
        .map_err(|_| invalid("follow_up.utc_offset", "an offset like \"+08:00\""))?;
    let _: FixedOffset = tz;
    let mut closed = Vec::new();
    for d in &r.closed_days {
        let wd: Weekday = d.parse().map_err(|_| invalid("follow_up.closed_days", format!("`{d}` is not a weekday (mon … sun)")))?;
        closed.push(wd);
    }
    let p = crate::domain::follow_up::Policy {
        due_after: chrono::Duration::hours(r.due_after_hours),
        tz,
        open: time("opens", &r.opens)?,
        close: time("closes", &r.closes)?,
        closed_days: closed,
        alert_sla: chrono::Duration::hours(r.alert_sla_hours),
        escalate_after: chrono::Duration::hours(r.escalate_after_hours),
        minutes_saved_per_case: r.minutes_saved_per_case,
        comeback_days: r.comeback_days,
    };
    p.check().map_err(|m| invalid("follow_up", m))?;
    if !(1..=365).contains(&r.comeback_days) {
        return Err(invalid("follow_up.comeback_days", "between 1 and 365"));
    }
    Ok(p)
}

/// Debian's fonts-noto-cjk (installed by scripts/setup.sh).
pub const DEFAULT_REPORT_FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBackup {
    /// Where the scheduled backups go (off when unset).
    dir: Option<PathBuf>,
    keep: u32,
    interval_hours: u64,
}
impl Default for RawBackup {
    fn default() -> Self {
        RawBackup { dir: None, keep: 7, interval_hours: 24 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    intake_photos_days: u32,
    closed_case_personal_days: u32,
    survey_answers_days: u32,
    audit_log_days: u32,
}
impl Default for RawRetention {
    fn default() -> Self {
        let d = crate::protection::retention::Policy::default();
        RawRetention {
            intake_photos_days: d.intake_photos_days,
            closed_case_personal_days: d.closed_case_personal_days,
            survey_answers_days: d.survey_answers_days,
            audit_log_days: d.audit_log_days,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSync {
    enabled: bool,
    /// Base64 of HQ's ed25519 public key (`servicebay hq-keygen` prints it); bundles need it.
    hq_public_key: Option<String>,
    batch_max_records: usize,
    batch_max_bytes: usize,
    window_batches: usize,
    ack_timeout_secs: u64,
    outbox_alarm_rows: i64,
    mqtt: crate::sync::link::RawLink,
}
impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            enabled: false,
            hq_public_key: None,
            batch_max_records: 500,
            batch_max_bytes: 512 * 1024,
            window_batches: 4,
            ack_timeout_secs: 30,
            outbox_alarm_rows: 100_000,
            mqtt: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawVision {
    enabled: bool,
    model: String,
    review_threshold: f32,
}
impl Default for RawVision {
    fn default() -> Self {
        RawVision { enabled: true, model: "yolov8n".into(), review_threshold: 0.85 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLlm {
    enabled: bool,
    models_dir: Option<PathBuf>,
    model: String,
    threads: u32,
    phrasing: bool,
    isolation: String,
    worker_program: Option<PathBuf>,
    remote: RawRemote,
}
impl Default for RawLlm {
    fn default() -> Self {
        RawLlm {
            enabled: true,
            models_dir: None,
            model: crate::llm::DEFAULT_MODEL_FILE.into(),
            threads: 0,
            phrasing: false,
            isolation: "process".into(),
            worker_program: None,
            remote: RawRemote::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRemote {
    enabled: bool,
    base_url: String,
    api_key_file: Option<PathBuf>,
    model: String,
    timeout_secs: u64,
}
impl Default for RawRemote {
    fn default() -> Self {
        RawRemote { enabled: false, base_url: String::new(), api_key_file: None, model: String::new(), timeout_secs: 20 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    id: String,
    name: String,
}
impl Default for RawStore {
    fn default() -> Self {
        RawStore { id: "store-0001".into(), name: "ServiceBay 门店".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    http_listen: Option<String>,
    handshake_timeout_secs: u64,
    header_read_timeout_secs: u64,
    json_body_limit_bytes: u64,
    photo_body_limit_bytes: u64,
    photo_max_megapixels: f64,
    metrics_loopback_only: bool,
}
impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8443".into(),
            http_listen: None,
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            json_body_limit_bytes: 64 * 1024,
            photo_body_limit_bytes: 20 * 1024 * 1024,
            photo_max_megapixels: 50.0,
            metrics_loopback_only: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    extra_names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    data_dir: Option<PathBuf>,
    read_connections: Option<usize>,
    /// The master key file and the case keyring; outside data_dir (default: `<data_dir>-keys`).
    key_dir: Option<PathBuf>,
    require_tpm: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    session_ttl_hours: u64,
    login_failures_before_delay: u32,
    login_max_delay_secs: u64,
    address_failures_before_delay: u32,
}
impl Default for RawAuth {
    fn default() -> Self {
        RawAuth { session_ttl_hours: 12, login_failures_before_delay: 5, login_max_delay_secs: 300, address_failures_before_delay: 20 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
    level: String,
}
impl Default for RawLog {
    fn default() -> Self {
        RawLog { format: "human".into(), level: "info".into() }
    }
}

// ---- validated config -----------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub store_id: String,
    pub store_name: String,
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub json_body_limit: u64,
    pub photo_body_limit: u64,
    pub photo_max_pixels: u64,
    pub metrics_loopback_only: bool,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub tls_extra_names: Vec<String>,
    pub data_dir: PathBuf,
    pub read_connections: usize,
    pub keys: crate::keys::KeyConfig,
    /// Scheduled backups, when `[backup] dir` is set.
    pub backup: Option<crate::protection::backup::Schedule>,
    pub retention: crate::protection::retention::Policy,
    /// The workshop's checkpoint, labour and warranty tables (validated at load).
    pub workshop: std::sync::Arc<crate::domain::workshop::WorkshopTables>,
    pub report_font: PathBuf,
    pub repair_licence: String,
    pub follow_up: crate::domain::follow_up::Policy,
    pub survey_url: Option<String>,
    pub follow_up_texts: std::sync::Arc<crate::case::follow_up::Texts>,
    pub session_ttl: Duration,
    pub login_failures_before_delay: u32,
    pub login_max_delay: Duration,
    pub address_failures_before_delay: u32,
    pub llm_enabled: bool,
    pub models_dir: PathBuf,
    pub llm_model: PathBuf,
    pub llm_threads: Option<i32>,
    pub llm_phrasing: bool,
    pub llm_isolation: crate::llm::Isolation,
    /// The OpenAI-compatible fallback provider, when `[llm.remote] enabled = true`.
    pub llm_remote: Option<crate::llm::remote::RemoteConfig>,
    pub vision_enabled: bool,
    pub vision_model: String,
    pub review_threshold: f32,
    /// `Some` when `[sync] enabled = true`: the store talks to HQ.
    pub sync: Option<crate::sync::SyncSettings>,
    pub log_json: bool,
    pub log_level: String,
}

impl Config {
    /// Where to read from: the explicit path, else the default path if present, else built-in defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(p) => Self::from_file(p),
            None if Path::new(DEFAULT_PATH).exists() => Self::from_file(Path::new(DEFAULT_PATH)),
            None => Self::from_toml("", "built-in defaults"),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.to_string(),
            message: format!("{}: fix or remove that key (see assets/servicebay.example.toml for every key)", e.to_string().trim()),
        })?;
        validate(raw, source)
    }

    pub fn photos_dir(&self) -> PathBuf {
        self.data_dir.join("photos")
    }

    /// Where signed bundles from HQ are installed (`sync::bundles`).
    pub fn bundles_dir(&self) -> PathBuf {
        self.data_dir.join("bundles")
    }
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("SERVICEBAY_DATA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib/servicebay"))
}

fn validate(raw: Raw, source: &str) -> Result<Config, ConfigError> {
    let id_ok = !raw.store.id.is_empty()
        && raw.store.id.len() <= 64
        && raw.store.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err(invalid("store.id", "use 1-64 letters, digits, '-' or '_' (it becomes part of MQTT topics)"));
    }
    let listen: SocketAddr = raw
        .server
        .listen
        .parse()
        .map_err(|_| invalid("server.listen", format!("'{}' is not host:port; e.g. \"0.0.0.0:8443\"", raw.server.listen)))?;
    let http_listen = match raw.server.http_listen.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let a: SocketAddr =
                s.parse().map_err(|_| invalid("server.http_listen", format!("'{s}' is not host:port; e.g. \"127.0.0.1:8080\"")))?;
            if !a.ip().is_loopback() {
                return Err(invalid(
                    "server.http_listen",
                    format!("plain HTTP is only allowed on loopback, not {a}; use 127.0.0.1 or serve the LAN over TLS (server.listen)"),
                ));
            }
            Some(a)
        }
    };
    let secs = |key: &'static str, v: u64| {
        if (1..=300).contains(&v) {
            Ok(Duration::from_secs(v))
        } else {
            Err(invalid(key, "must be between 1 and 300 seconds"))
        }
    };
    let handshake_timeout = secs("server.handshake_timeout_secs", raw.server.handshake_timeout_secs)?;
    let header_read_timeout = secs("server.header_read_timeout_secs", raw.server.header_read_timeout_secs)?;
    if !(1024..=16 * 1024 * 1024).contains(&raw.server.json_body_limit_bytes) {
        return Err(invalid("server.json_body_limit_bytes", "must be between 1024 and 16777216"));
    }
    if !(64 * 1024..=512 * 1024 * 1024).contains(&raw.server.photo_body_limit_bytes) {
        return Err(invalid("server.photo_body_limit_bytes", "must be between 65536 and 536870912"));
    }
    if !(0.1..=500.0).contains(&raw.server.photo_max_megapixels) {
        return Err(invalid("server.photo_max_megapixels", "must be between 0.1 and 500"));
    }
    let data_dir = raw.storage.data_dir.unwrap_or_else(default_data_dir);
    if data_dir.as_os_str().is_empty() {
        return Err(invalid("storage.data_dir", "must be a directory path, e.g. \"/var/lib/servicebay\""));
    }
    let read_connections = raw.storage.read_connections.unwrap_or(4);
    if !(1..=64).contains(&read_connections) {
        return Err(invalid("storage.read_connections", "must be between 1 and 64"));
    }
    if raw.tls.cert.is_some() != raw.tls.key.is_some() {
        return Err(invalid("tls.cert", "set both tls.cert and tls.key, or neither (a self-signed pair is then generated)"));
    }
    let key_dir = raw.storage.key_dir.unwrap_or_else(|| {
        let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "servicebay".into());
        data_dir.with_file_name(format!("{name}-keys"))
    });
    let keys = crate::keys::KeyConfig {
        key_dir,
        data_dir: data_dir.clone(),
        require_tpm: raw.storage.require_tpm,
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
    };
    let backup = match raw.backup.dir {
        None => None,
        Some(dir) => {
            if !(1..=365).contains(&raw.backup.keep) {
                return Err(invalid("backup.keep", "must be between 1 and 365 copies"));
            }
            if !(1..=24 * 7).contains(&raw.backup.interval_hours) {
                return Err(invalid("backup.interval_hours", "must be between 1 and 168"));
            }
            Some(crate::protection::backup::Schedule {
                dir,
                keep: raw.backup.keep as usize,
                interval: Duration::from_secs(raw.backup.interval_hours * 3600),
            })
        }
    };
    let r = raw.retention;
    let retention = crate::protection::retention::Policy {
        intake_photos_days: r.intake_photos_days,
        closed_case_personal_days: r.closed_case_personal_days,
        survey_answers_days: r.survey_answers_days,
        audit_log_days: r.audit_log_days,
    };
    retention.check().map_err(|(key, m)| invalid(&format!("retention.{key}"), m))?;
    let workshop = match &raw.workshop.tables {
        None => crate::domain::workshop::WorkshopTables::builtin(),
        Some(p) => crate::domain::workshop::WorkshopTables::load(p).map_err(|e| invalid("workshop.tables", e.to_string()))?,
    };
    let tls_cert = raw.tls.cert.unwrap_or_else(|| data_dir.join("tls/cert.pem"));
    let tls_key = raw.tls.key.unwrap_or_else(|| data_dir.join("tls/key.pem"));
    if !(1..=24 * 30).contains(&raw.auth.session_ttl_hours) {
        return Err(invalid("auth.session_ttl_hours", "must be between 1 and 720"));
    }
    if raw.auth.login_failures_before_delay == 0 || raw.auth.address_failures_before_delay == 0 {
        return Err(invalid("auth.login_failures_before_delay", "failure thresholds must be at least 1"));
    }
    if !(1..=3600).contains(&raw.auth.login_max_delay_secs) {
        return Err(invalid("auth.login_max_delay_secs", "must be between 1 and 3600 (the owner is never locked out for good)"));
    }
    let models_dir = raw.llm.models_dir.unwrap_or_else(|| {
        std::env::var_os("SERVICEBAY_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/local/share/servicebay/models"))
    });
    if raw.llm.model.is_empty() || raw.llm.model.contains('/') {
        return Err(invalid("llm.model", "a file name inside llm.models_dir, e.g. \"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf\""));
    }
    if !(0.0..=1.0).contains(&raw.vision.review_threshold) {
        return Err(invalid("vision.review_threshold", "must be between 0 and 1 (0.85 = 85 %)"));
    }
    if raw.vision.model.is_empty() || !raw.vision.model.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid("vision.model", "an installed model name (see `servicebay model list`)"));
    }
    let llm_remote = if raw.llm.remote.enabled {
        let r = &raw.llm.remote;
        let local = r.base_url.starts_with("http://127.0.0.1") || r.base_url.starts_with("http://localhost");
        if !(r.base_url.starts_with("https://") || local) {
            return Err(invalid(
                "llm.remote.base_url",
                "use https:// (plain http only to a loopback address), e.g. \"https://api.example.com/v1\"",
            ));
        }
        if r.model.is_empty() {
            return Err(invalid("llm.remote.model", "name the provider's model"));
        }
        if !(1..=300).contains(&r.timeout_secs) {
            return Err(invalid("llm.remote.timeout_secs", "must be between 1 and 300"));
        }
        Some(crate::llm::remote::RemoteConfig {
            base_url: r.base_url.clone(),
            api_key_file: r.api_key_file.clone(),
            model: r.model.clone(),
            timeout: Duration::from_secs(r.timeout_secs),
        })
    } else {
        None
    };
    if raw.llm.threads > 256 {
        return Err(invalid("llm.threads", "must be between 0 (all cores) and 256"));
    }
    let llm_isolation = match raw.llm.isolation.as_str() {
        "process" => crate::llm::Isolation::Process { program: raw.llm.worker_program.clone() },
        "thread" => crate::llm::Isolation::Thread,
        _ => return Err(invalid("llm.isolation", "\"process\" (default: the model runs in a supervised worker) or \"thread\"")),
    };
    let sync = validate_sync(raw.sync, &raw.store.id)?;
    let log_json = match raw.log.format.as_str() {
        "human" => false,
        "json" => true,
        other => return Err(invalid("log.format", format!("'{other}' is not a format; use \"human\" or \"json\""))),
    };
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        return Err(invalid("log.level", "use a level (error, warn, info, debug, trace) or a tracing filter"));
    }
    Ok(Config {
        source: source.to_string(),
        store_id: raw.store.id,
        store_name: raw.store.name,
        listen,
        http_listen,
        handshake_timeout,
        header_read_timeout,
        json_body_limit: raw.server.json_body_limit_bytes,
        photo_body_limit: raw.server.photo_body_limit_bytes,
        photo_max_pixels: (raw.server.photo_max_megapixels * 1_000_000.0) as u64,
        metrics_loopback_only: raw.server.metrics_loopback_only,
        tls_cert,
        tls_key,
        tls_extra_names: raw.tls.extra_names,
        data_dir,
        read_connections,
        keys,
        backup,
        retention,
        workshop: std::sync::Arc::new(workshop),
        report_font: raw.workshop.report_font,
        repair_licence: raw.workshop.licence.trim().to_string(),
        follow_up: follow_up_policy(&raw.follow_up)?,
        survey_url: match raw.follow_up.survey_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u.trim_end_matches('/').to_string()),
            Some(_) => return Err(invalid("follow_up.survey_url", "an http(s) URL of HQ's survey service")),
        },
        follow_up_texts: std::sync::Arc::new(match &raw.follow_up.texts {
            None => crate::case::follow_up::Texts::builtin().map_err(|e| invalid("follow_up.texts", e))?,
            Some(p) => crate::case::follow_up::Texts::load(p).map_err(|e| invalid("follow_up.texts", e))?,
        }),
        session_ttl: Duration::from_secs(raw.auth.session_ttl_hours * 3600),
        login_failures_before_delay: raw.auth.login_failures_before_delay,
        login_max_delay: Duration::from_secs(raw.auth.login_max_delay_secs),
        address_failures_before_delay: raw.auth.address_failures_before_delay,
        llm_enabled: raw.llm.enabled,
        llm_model: models_dir.join(&raw.llm.model),
        models_dir,
        llm_threads: (raw.llm.threads > 0).then_some(raw.llm.threads as i32),
        llm_phrasing: raw.llm.phrasing,
        llm_isolation,
        llm_remote,
        vision_enabled: raw.vision.enabled,
        vision_model: raw.vision.model,
        review_threshold: raw.vision.review_threshold,
        sync,
        log_json,
        log_level: raw.log.level,
    })
}

fn validate_sync(raw: RawSync, store_id: &str) -> Result<Option<crate::sync::SyncSettings>, ConfigError> {
    let hq_key = match raw.hq_public_key.as_deref().filter(|k| !k.trim().is_empty()) {
        None => None,
        Some(k) => Some(
            crate::sync::wire::parse_verifying_key(k)
                .map_err(|e| invalid("sync.hq_public_key", format!("{e}; paste the line `servicebay hq-keygen` printed")))?,
        ),
    };
    if !raw.enabled {
        return Ok(None);
    }
    let link = raw.mqtt.validate("sync.mqtt").map_err(|e| match e {
        crate::sync::link::LinkError::Invalid { key, message } => ConfigError::Invalid { key, message },
        other => invalid("sync.mqtt", other.to_string()),
    })?;
    if !(1..=10_000).contains(&raw.batch_max_records) {
        return Err(invalid("sync.batch_max_records", "must be between 1 and 10000"));
    }
    if !(4096..=crate::sync::wire::MAX_BATCH_DECOMPRESSED / 2).contains(&raw.batch_max_bytes) {
        return Err(invalid("sync.batch_max_bytes", "must be between 4096 and 16777216"));
    }
    if !(1..=64).contains(&raw.window_batches) {
        return Err(invalid("sync.window_batches", "must be between 1 and 64"));
    }
    if !(2..=3600).contains(&raw.ack_timeout_secs) {
        return Err(invalid("sync.ack_timeout_secs", "must be between 2 and 3600"));
    }
    if raw.outbox_alarm_rows < 1 {
        return Err(invalid("sync.outbox_alarm_rows", "must be at least 1"));
    }
    Ok(Some(crate::sync::SyncSettings {
        store_id: store_id.to_string(),
        link,
        hq_key,
        batch_max_records: raw.batch_max_records,
        batch_max_bytes: raw.batch_max_bytes,
        window: raw.window_batches,
        ack_timeout: Duration::from_secs(raw.ack_timeout_secs),
        alarm_rows: raw.outbox_alarm_rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.json_body_limit, 65536);
        assert_eq!(c.photo_body_limit, 20 * 1024 * 1024);
        assert_eq!(c.photo_max_pixels, 50_000_000);
        assert!(c.http_listen.is_none());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../assets/servicebay.example.toml");
        Config::from_toml(text, "servicebay.example.toml").unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[server]\nlisten_port = 1\n", "t").unwrap_err().to_string();
        assert!(e.contains("listen_port"), "{e}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let e = Config::from_toml("[server]\nhttp_listen = \"0.0.0.0:8080\"\n", "t").unwrap_err().to_string();
        assert!(e.contains("server.http_listen") && e.contains("loopback"), "{e}");
        assert!(Config::from_toml("[server]\nhttp_listen = \"127.0.0.1:8080\"\n", "t").unwrap().http_listen.is_some());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (toml, key) in [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[store]\nid = \"a b\"", "store.id"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[tls]\ncert = \"/x\"", "tls.cert"),
            ("[auth]\nlogin_max_delay_secs = 0", "auth.login_max_delay_secs"),
        ] {
            let e = Config::from_toml(toml, "t").unwrap_err().to_string();
            assert!(e.contains(key), "{toml} → {e}");
        }
    }
}
