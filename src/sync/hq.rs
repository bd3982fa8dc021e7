//! HQ's side: `hq-ingest` (MQTT shared subscription → PostgreSQL → ack), `hq-publish` (signed
//! bundles down to stores), `hq-keygen`, `hq-lag`.
//!
//! Ingest, per batch: decode and check → one PostgreSQL transaction (lock the store's row, insert
//! events ON CONFLICT DO NOTHING, keep the newest row per record, advance the contiguous sequence
//! over stored ranges) → COMMIT → publish the ack (retained) → PUBACK to the broker. A crash at any
//! point leaves either nothing or a committed batch that a redelivery or a store resend finds
//! already there. Several workers share `$share/hq/servicebay/v1/+/events`; the per-store row lock
//! serialises them per store only.
//!
//! Poison (habit 16): PostgreSQL refusing a batch for its *content* is not a reason to retry — the
//! store would resend the same batch forever and its sync would wedge. `classify` sorts
//! PostgreSQL's errors by SQLSTATE: a content error sends the batch to `hq_quarantine` (its own
//! transaction, with PostgreSQL's code, message and detail), its range counts as received and the
//! ack goes out; anything else (connection lost, shutdown, deadlock, too many connections, a schema
//! or permission problem) is retried and loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde::Deserialize;

use super::link::{Link, LinkError, RawLink};
use super::topics;
use super::wire::{self, Batch, BundleKind};

const SCHEMA: &[(i32, &str)] = &[
    (1, include_str!("hq_schema.sql")),
    (2, include_str!("hq_schema_2.sql")),
    (3, include_str!("hq_schema_3.sql")),
    // The survey service: answers, their downlink to the stores, SMS/WeChat invitations.
    (4, include_str!("hq_schema_4.sql")),
    // hq-web: HQ analysts' accounts and sessions, indexes for its reads.
    (5, include_str!("hq_schema_5.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum HqError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("HQ config {path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Shown with PostgreSQL's own code, message and detail (tokio_postgres alone says "db error").
    #[error("PostgreSQL: {}", describe_pg(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl HqError {
    /// Worth retrying (broker or database unreachable, or busy) rather than fixing the config or
    /// setting the input aside.
    pub fn is_retriable(&self) -> bool {
        match self {
            HqError::Postgres(e) => classify(e) == PgFault::Retry,
            HqError::Mqtt(_) => true,
            _ => false,
        }
    }
}

/// `code message (detail: …) (hint: …)` for a server error; the error and its causes otherwise
/// (e.g. "error connecting to server: Connection refused").
pub fn describe_pg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                s.push_str(&format!(": {c}"));
                cause = c.source();
            }
            s
        }
    }
}

/// What to do about a PostgreSQL error met while storing a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFault {
    /// The batch's content is refused: the same bytes will be refused every time. Quarantine it.
    Content,
    /// Everything else: retry (reconnect, back off); nothing is lost while we wait.
    Retry,
}

/// Sort an error by its SQLSTATE. Our statements are fixed and every value is a typed parameter,
/// so only the batch's data can vary between two runs of the same statement:
/// - 22 data exception (22P05 `\u0000` in jsonb, 22021 NUL or bad byte in text, 22P02, 22003, …),
///   23 integrity constraint violation (every unique key we write has its ON CONFLICT clause, so
///   one that still fires is the data's doing), 21 cardinality violation (the same key twice in one
///   statement) and 54 program limit exceeded (a key too large for its btree index, a jsonb value
///   too large) → `Content`.
/// - 42 (syntax error, undefined table, insufficient privilege, …) is *not* content: with fixed SQL
///   it means the schema, the grants or our code are wrong, and quarantining would set every
///   store's data aside. It is retried, loudly, until someone fixes the deployment.
/// - 08 connection, 40 serialization failure / deadlock, 53 insufficient resources (too many
///   connections, disk full), 55 lock not available, 57 shutdown / cannot connect now, 58 I/O,
///   25 read-only transaction (a fail-over), XX internal, and errors that are not the server's
///   (I/O, closed connection) → `Retry`.
pub fn classify(e: &tokio_postgres::Error) -> PgFault {
    e.code().map_or(PgFault::Retry, |c| fault_of(c.code()))
}

fn fault_of(sqlstate: &str) -> PgFault {
    match sqlstate.get(..2) {
        Some("21" | "22" | "23" | "54") => PgFault::Content,
        _ => PgFault::Retry,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHqFile {
    hq: RawHq,
    log: RawHqLog,
    /// `servicebay hq-survey` (src/hq/survey_config.rs).
    survey: Option<crate::hq::survey_config::RawSurvey>,
    notify: Option<crate::hq::survey_config::RawNotify>,
    /// `servicebay hq-web` (src/hq/web.rs).
    web: crate::hq::web::RawWeb,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHq {
    postgres: String,
    worker_id: Option<String>,
    mqtt: RawLink,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHqLog {
    level: String,
    format: String,
}
impl Default for RawHqLog {
    fn default() -> Self {
        RawHqLog { level: "info".into(), format: "human".into() }
    }
}

/// Validated `hq.toml`.
#[derive(Debug, Clone)]
pub struct HqConfig {
    pub postgres: String,
    pub worker_id: String,
    pub link: Link,
    pub log_level: String,
    pub log_json: bool,
    /// No `worker_id` in the file: it came from SERVICEBAY_HQ_WORKER or the process id.
    pub worker_id_default: bool,
    /// `[survey]`: the customers' survey page (`hq-survey`); None when absent.
    pub survey: Option<crate::hq::survey_config::SurveyConfig>,
    /// `[notify]`: SMS/WeChat invitations through a webhook; None when absent (none are sent).
    pub notify: Option<crate::hq::survey_config::NotifyConfig>,
    /// `[web]`: HQ analysts' pages (`hq-web`); defaults when absent.
    pub web: crate::hq::web::WebConfig,
}

impl HqConfig {
    pub fn from_file(path: &Path) -> Result<HqConfig, HqError> {
        let text = std::fs::read_to_string(path).map_err(|source| HqError::Read { path: path.into(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, source: &str) -> Result<HqConfig, HqError> {
        let bad = |m: String| HqError::Config { path: source.into(), message: m };
        let raw: RawHqFile = toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_string()))?;
        if raw.hq.postgres.trim().is_empty() {
            return Err(bad("key `hq.postgres`: set a connection string, e.g. \"host=127.0.0.1 user=hq dbname=servicebay_hq\"".into()));
        }
        raw.hq.postgres.parse::<tokio_postgres::Config>().map_err(|e| bad(format!("key `hq.postgres`: {e}")))?;
        // systemd's servicebay-hq-ingest@N.service sets SERVICEBAY_HQ_WORKER=N.
        let worker_id_default = raw.hq.worker_id.is_none();
        let worker_id = raw
            .hq
            .worker_id
            .or_else(|| std::env::var("SERVICEBAY_HQ_WORKER").ok().map(|w| format!("hq-{w}")))
            .unwrap_or_else(|| format!("hq-{}", std::process::id()));
        if !wire::valid_store_id(&worker_id) {
            return Err(bad("key `hq.worker_id`: use letters, digits, '-' or '_'".into()));
        }
        let log_json = match raw.log.format.as_str() {
            "human" => false,
            "json" => true,
            other => return Err(bad(format!("key `log.format`: '{other}' is not \"human\" or \"json\""))),
        };
        Ok(HqConfig {
            postgres: raw.hq.postgres,
            worker_id,
            link: raw.hq.mqtt.validate("hq.mqtt")?,
            log_level: raw.log.level,
            log_json,
            worker_id_default,
            survey: raw.survey.map(|s| s.validate()).transpose().map_err(bad)?,
            notify: raw.notify.map(|n| n.validate()).transpose().map_err(bad)?,
            web: raw.web.validate().map_err(bad)?,
        })
    }

    /// Whether `text` is an HQ config (it has an `[hq]` table) rather than a store's: `check-config`
    /// validates each kind with its own rules. Text that is not TOML is not HQ's (the store's parser
    /// then names the syntax error).
    pub fn is_hq_toml(text: &str) -> bool {
        toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("hq"))
    }

    /// `check-config` for HQ: what was validated, one line per setting. Credentials files are only
    /// reported if missing, not required: they are read at each connection and systemd credentials
    /// (/run/credentials/…) exist only while the service runs.
    pub fn check_report(&self, source: &str) -> String {
        let l = &self.link;
        let mut out = format!("HQ config OK ({source})\n");
        out.push_str(&format!("  postgres   {} (connection string parsed; not connected)\n", redacted(&self.postgres)));
        if self.worker_id_default {
            out.push_str(&format!("  worker_id  {} (default: SERVICEBAY_HQ_WORKER, else the process id)\n", self.worker_id));
        } else {
            out.push_str(&format!("  worker_id  {}\n", self.worker_id));
        }
        let scheme = if l.tls { "mqtts" } else { "mqtt" };
        out.push_str(&format!("  broker     {scheme}://{}:{} ({})\n", l.host, l.port, if l.tls { "TLS" } else { "plain, loopback only" }));
        let mut files: Vec<(&str, &Path)> = Vec::new();
        if let Some(ca) = &l.ca_file {
            out.push_str(&format!("  ca_file    {}\n", ca.display()));
            files.push(("ca_file", ca));
        } else if l.tls {
            out.push_str("  ca_file    system roots\n");
        }
        if let Some((c, k)) = &l.client_cert {
            out.push_str(&format!("  identity   client certificate {} (key {})\n", c.display(), k.display()));
            files.push(("client_cert", c));
            files.push(("client_key", k));
        }
        if let (Some(u), Some(p)) = (&l.username, &l.password_file) {
            out.push_str(&format!("  identity   username {u}, password from {}\n", p.display()));
            files.push(("password_file", p));
        }
        out.push_str(&format!("  keepalive  {} s, reconnect backoff up to {} s\n", l.keepalive.as_secs(), l.backoff_max.as_secs()));
        out.push_str(&format!("  log        {} ({})\n", self.log_level, if self.log_json { "json" } else { "human" }));
        for (key, f) in files {
            if !f.exists() {
                out.push_str(&format!("  note       hq.mqtt.{key} {} does not exist here (read at each connection)\n", f.display()));
            }
        }
        out.push_str(&crate::hq::survey_config::report(self.survey.as_ref(), self.notify.as_ref()));
        out.push_str(&self.web.report());
        out
    }
}

/// A connection string without its password, for logs and `check-config`.
pub fn redacted(conn: &str) -> String {
    let Ok(c) = conn.parse::<tokio_postgres::Config>() else { return "(unparsable connection string)".into() };
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let mut parts = vec![format!("host={}", if hosts.is_empty() { "(default)".into() } else { hosts.join(",") })];
    if !c.get_ports().is_empty() {
        parts.push(format!("port={}", c.get_ports().iter().map(u16::to_string).collect::<Vec<_>>().join(",")));
    }
    parts.push(format!("user={}", c.get_user().unwrap_or("(default)")));
    parts.push(format!("dbname={}", c.get_dbname().unwrap_or("(user name)")));
    if c.get_password().is_some() {
        parts.push("password=***".into());
    }
    parts.join(" ")
}

// ---- PostgreSQL ------------------------------------------------------------------------------

pub async fn connect_pg(conn: &str) -> Result<tokio_postgres::Client, HqError> {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %describe_pg(&e), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Apply pending schema migrations; an advisory lock keeps concurrent workers from racing.
pub async fn migrate(pg: &mut tokio_postgres::Client) -> Result<i32, HqError> {
    let tx = pg.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7301)", &[]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS hq_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await?;
    let current: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM hq_schema", &[]).await?.get(0);
    for (version, sql) in SCHEMA.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO hq_schema (version) VALUES ($1)", &[version]).await?;
        tracing::info!(version, "HQ schema migrated");
    }
    let now: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM hq_schema", &[]).await?.get(0);
    tx.commit().await?;
    Ok(now)
}

/// Store one batch; returns (the store's acked sequence after it, rows newly inserted).
pub async fn store_batch(pg: &mut tokio_postgres::Client, b: &Batch, worker: &str) -> Result<(i64, u64), HqError> {
    let tx = pg.transaction().await?;
    tx.execute("INSERT INTO hq_stores (store_id) VALUES ($1) ON CONFLICT (store_id) DO NOTHING", &[&b.store_id]).await?;
    let mut acked: i64 = tx.query_one("SELECT acked_seq FROM hq_stores WHERE store_id = $1 FOR UPDATE", &[&b.store_id]).await?.get(0);

    let n = b.records.len();
    let (mut seq, mut eid, mut rtype, mut rid, mut ver, mut sv, mut at, mut body) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in &b.records {
        seq.push(r.seq);
        eid.push(r.event_id.as_str());
        rtype.push(r.record_type.as_str());
        rid.push(r.record_id.as_str());
        ver.push(r.version);
        sv.push(r.schema_version as i32);
        at.push(r.at.as_str());
        // A body that is not JSON is still kept, as a JSON string, rather than losing the record.
        body.push(if serde_json::from_str::<serde::de::IgnoredAny>(&r.body).is_ok() {
            r.body.clone()
        } else {
            serde_json::Value::String(r.body.clone()).to_string()
        });
    }
    let inserted = tx
        .execute(
            "INSERT INTO hq_events (store_id, seq, event_id, record_type, record_id, version, schema_version, at, body, worker)
             SELECT $1, u.seq, u.eid, u.rtype, u.rid, u.ver, u.sv, u.at, u.body::jsonb, $10
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[], $8::text[], $9::text[])
                  AS u(seq, eid, rtype, rid, ver, sv, at, body)
             ON CONFLICT DO NOTHING",
            &[&b.store_id, &seq, &eid, &rtype, &rid, &ver, &sv, &at, &body, &worker],
        )
        .await?;
    tx.execute(
        "INSERT INTO hq_records (store_id, record_type, record_id, version, seq, at, body)
         SELECT DISTINCT ON (u.rtype, u.rid) $1, u.rtype, u.rid, u.ver, u.seq, u.at, u.body::jsonb
         FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) AS u(seq, rtype, rid, ver, at, body)
         ORDER BY u.rtype, u.rid, u.seq DESC
         ON CONFLICT (store_id, record_type, record_id) DO UPDATE
            SET version = excluded.version, seq = excluded.seq, at = excluded.at, body = excluded.body
            WHERE hq_records.seq < excluded.seq",
        &[&b.store_id, &seq, &rtype, &rid, &ver, &at, &body],
    )
    .await?;

    for r in b.records.iter().filter(|r| r.record_type == "erasure") {
        erase(&tx, &b.store_id, r).await?;
    }
    acked = advance(&tx, b, acked).await?;
    let dup = n as i64 - inserted as i64;
    tx.execute(
        "UPDATE hq_stores SET acked_seq = $2, head_seq = GREATEST(head_seq, $3), last_seen = now(), last_batch_at = now(),
                batches = batches + 1, records = records + $4, duplicates = duplicates + $5
         WHERE store_id = $1",
        &[&b.store_id, &acked, &b.head_seq, &(inserted as i64), &dup],
    )
    .await?;
    tx.commit().await?;
    Ok((acked, inserted))
}

/// A store erased a customer: delete every record and event it names (sent before the erasure),
/// and log it in `hq_erasures`. Idempotent: a redelivered erasure finds nothing more to delete.
async fn erase(tx: &tokio_postgres::Transaction<'_>, store_id: &str, r: &crate::sync::wire::Record) -> Result<(), HqError> {
    let Ok(e) = serde_json::from_str::<crate::store::privacy::Erasure>(&r.body) else {
        tracing::warn!(store = store_id, seq = r.seq, "an erasure record that does not parse; kept, nothing deleted");
        return Ok(());
    };
    let (types, ids): (Vec<&str>, Vec<&str>) = e.records.iter().map(|x| (x.record_type.as_str(), x.record_id.as_str())).unzip();
    let records = tx
        .execute(
            "DELETE FROM hq_records h USING UNNEST($2::text[], $3::text[]) AS u(t, i)
             WHERE h.store_id = $1 AND h.record_type = u.t AND h.record_id = u.i",
            &[&store_id, &types, &ids],
        )
        .await?;
    let events = tx
        .execute(
            "DELETE FROM hq_events h USING UNNEST($2::text[], $3::text[]) AS u(t, i)
             WHERE h.store_id = $1 AND h.record_type = u.t AND h.record_id = u.i AND h.seq < $4",
            &[&store_id, &types, &ids, &r.seq],
        )
        .await?;
    let inserted = tx
        .execute(
            "INSERT INTO hq_erasures (store_id, event_id, customer_id, reason, cases, records_removed, events_removed, requested_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
            &[&store_id, &r.event_id, &e.customer_id, &e.reason, &(e.case_ids.len() as i32), &(records as i64), &(events as i64), &e.at],
        )
        .await?;
    if inserted > 0 {
        tracing::info!(
            store = store_id,
            customer.id = %e.customer_id,
            reason = %e.reason,
            records_removed = records,
            events_removed = events,
            "erased a customer's data at HQ on the store's request"
        );
    }
    Ok(())
}

/// Advance the store's contiguous sequence over the batch's range and any range stored (or
/// quarantined) beyond an earlier gap. Runs inside the batch's transaction, under the store's lock.
async fn advance(tx: &tokio_postgres::Transaction<'_>, b: &Batch, mut acked: i64) -> Result<i64, HqError> {
    if b.last_seq <= acked {
        return Ok(acked);
    }
    tx.execute(
        "INSERT INTO hq_ranges (store_id, after_seq, last_seq) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&b.store_id, &b.after_seq, &b.last_seq],
    )
    .await?;
    loop {
        let next: Option<i64> = tx
            .query_one(
                "SELECT MAX(last_seq) FROM hq_ranges WHERE store_id = $1 AND after_seq <= $2 AND last_seq > $2",
                &[&b.store_id, &acked],
            )
            .await?
            .get(0);
        match next {
            Some(n) => acked = n,
            None => break,
        }
    }
    tx.execute("DELETE FROM hq_ranges WHERE store_id = $1 AND last_seq <= $2", &[&b.store_id, &acked]).await?;
    Ok(acked)
}

/// PostgreSQL's reason for refusing a batch, as stored with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
}

impl Refusal {
    /// The detail as the log may show it. PostgreSQL's detail of a NOT NULL or CHECK violation
    /// is "Failing row contains (…every column…)", a record's body with its phone numbers and
    /// comments included: the log says which kind of detail it was and where to read it
    /// (`hq_quarantine` keeps it whole, for the operator). Other details (a key, a character) stay.
    pub fn loggable_detail(&self) -> &str {
        match self.detail.as_deref() {
            Some(d) if d.starts_with("Failing row contains") => "Failing row contains (… the row's values are in hq_quarantine.detail)",
            Some(d) => d,
            None => "",
        }
    }

    pub fn of(e: &tokio_postgres::Error) -> Refusal {
        match e.as_db_error() {
            Some(db) => Refusal {
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
            },
            None => Refusal { sqlstate: String::new(), message: describe_pg(e), detail: None },
        }
    }
}

/// Set a refused batch aside in its own transaction: the payload as received and PostgreSQL's
/// reason go to `hq_quarantine`, and the batch's range counts as received so the contiguous
/// sequence passes it and the store's rows leave its outbox. Returns (the store's acked sequence,
/// whether this was a new entry — a redelivered or resent copy is not).
pub async fn quarantine(
    pg: &mut tokio_postgres::Client,
    b: &Batch,
    payload: &[u8],
    why: &Refusal,
    worker: &str,
) -> Result<(i64, bool), HqError> {
    let tx = pg.transaction().await?;
    tx.execute("INSERT INTO hq_stores (store_id) VALUES ($1) ON CONFLICT (store_id) DO NOTHING", &[&b.store_id]).await?;
    let acked: i64 = tx.query_one("SELECT acked_seq FROM hq_stores WHERE store_id = $1 FOR UPDATE", &[&b.store_id]).await?.get(0);
    // Already passed (this exact batch quarantined before, then redelivered): nothing new to keep.
    let new = if b.last_seq > acked {
        let first = b.records.first().map_or(b.last_seq, |r| r.seq);
        let records = i32::try_from(b.records.len()).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO hq_quarantine (store_id, after_seq, first_seq, last_seq, records, payload, sqlstate, message, detail, worker)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (store_id, after_seq, last_seq) DO NOTHING",
            &[&b.store_id, &b.after_seq, &first, &b.last_seq, &records, &payload, &why.sqlstate, &why.message, &why.detail, &worker],
        )
        .await?
            == 1
    } else {
        false
    };
    let acked = advance(&tx, b, acked).await?;
    let (batches, records) = if new { (1i64, b.records.len() as i64) } else { (0, 0) };
    tx.execute(
        "UPDATE hq_stores SET acked_seq = $2, head_seq = GREATEST(head_seq, $3), last_seen = now(), last_batch_at = now(),
                quarantined_batches = quarantined_batches + $4, quarantined_records = quarantined_records + $5
         WHERE store_id = $1",
        &[&b.store_id, &acked, &b.head_seq, &batches, &records],
    )
    .await?;
    tx.commit().await?;
    Ok((acked, new))
}

async fn record_status(pg: &tokio_postgres::Client, store_id: &str, payload: &[u8]) -> Result<(), HqError> {
    let s = wire::decode_status(payload).map_err(|e| HqError::Invalid(e.to_string()))?;
    if s.store_id != store_id {
        return Err(HqError::Invalid(format!("status for {} on the topic of {store_id}", s.store_id)));
    }
    let bundles = serde_json::to_string(&s.bundles).unwrap_or_else(|_| "{}".into());
    pg.execute(
        "INSERT INTO hq_stores (store_id, link_state, link_state_at, bundles) VALUES ($1, $2, now(), $3::text::jsonb)
         ON CONFLICT (store_id) DO UPDATE SET link_state = excluded.link_state, link_state_at = now(),
             bundles = CASE WHEN $2 = 'offline' THEN hq_stores.bundles ELSE excluded.bundles END",
        &[&store_id, &s.state, &bundles],
    )
    .await?;
    Ok(())
}

// ---- ingest ----------------------------------------------------------------------------------

/// The server must store text as UTF-8: in another encoding every batch with Chinese text would be
/// refused with 22P05 — a deployment error that would look like content and fill the quarantine.
pub(crate) async fn check_encoding(pg: &tokio_postgres::Client, conn: &str) -> Result<(), HqError> {
    let enc: String = pg.query_one("SELECT current_setting('server_encoding')", &[]).await?.get(0);
    if enc != "UTF8" {
        return Err(HqError::Config {
            path: "hq.postgres".into(),
            message: format!("database ({conn}) uses encoding {enc}; HQ needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"),
        });
    }
    Ok(())
}

/// `servicebay hq-ingest`: runs until `shutdown`; reconnects to the broker and PostgreSQL with backoff.
pub async fn run_ingest(cfg: HqConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), HqError> {
    let mut pg = connect_pg(&cfg.postgres).await?;
    check_encoding(&pg, &redacted(&cfg.postgres)).await?;
    let schema = migrate(&mut pg).await?;
    tracing::info!(worker = %cfg.worker_id, schema, "HQ ingest started");
    println!("hq-ingest {} ready (schema v{schema})", cfg.worker_id);
    tokio::pin!(shutdown);
    let mut attempt = 0u32;
    loop {
        let started = std::time::Instant::now();
        let session = ingest_session(&cfg, &mut pg);
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("HQ ingest stopping");
                return Ok(());
            }
            r = session => {
                let why = match r { Ok(()) => "session ended".to_string(), Err(e) => e.to_string() };
                if pg.is_closed() {
                    match connect_pg(&cfg.postgres).await {
                        Ok(c) => pg = c,
                        Err(e) => tracing::error!(error = %e, "PostgreSQL unreachable"),
                    }
                }
                // Same rule as the store's link: a session that worked for a while resets the backoff.
                attempt = super::link::next_attempt(attempt, started.elapsed());
                let wait = super::link::backoff(attempt, cfg.link.backoff_max);
                tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "HQ ingest reconnecting");
                tokio::select! { _ = &mut shutdown => return Ok(()), _ = tokio::time::sleep(wait) => {} }
            }
        }
    }
}

async fn ingest_session(cfg: &HqConfig, pg: &mut tokio_postgres::Client) -> Result<(), HqError> {
    let mut opts = cfg.link.options(&format!("servicebay-{}", cfg.worker_id))?;
    // A clean session on purpose: Mosquitto keeps dealing a shared subscription's messages to a
    // dead worker's persisted session, so a crashed worker would swallow every other batch. The
    // store's outbox is the source of truth; what a dead worker held is resent after the ack timeout.
    opts.set_clean_start(true);
    opts.set_session_expiry_interval(None);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(Some(wire::MAX_BATCH_COMPRESSED as u32 + 4096));
    let (client, mut ev) = AsyncClient::new(opts, 256);
    client.subscribe(topics::SHARED_EVENTS, QoS::AtLeastOnce).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
    // Status is retained, which shared subscriptions do not deliver: every worker reads it.
    client.subscribe("servicebay/v1/+/status", QoS::AtLeastOnce).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
    // The event loop runs on its own task: publishing acks from the task that polls it deadlocks
    // rumqttc once its request queue fills. With manual acks the broker sends at most its in-flight
    // limit of unacknowledged messages, so this channel stays short.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<rumqttc::v5::mqttbytes::v5::Publish, String>>(1024);
    let host = cfg.link.host.clone();
    let poller = tokio::spawn(async move {
        loop {
            let item = match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => Ok(p),
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %host, "HQ ingest connected");
                    continue;
                }
                Ok(_) => continue,
                Err(e) => Err(e.to_string()),
            };
            let down = item.is_err();
            if tx.send(item).await.is_err() || down {
                return;
            }
        }
    });
    let r = ingest_loop(cfg, pg, &client, &mut rx).await;
    poller.abort();
    r
}

async fn ingest_loop(
    cfg: &HqConfig,
    pg: &mut tokio_postgres::Client,
    client: &AsyncClient,
    rx: &mut tokio::sync::mpsc::Receiver<Result<rumqttc::v5::mqttbytes::v5::Publish, String>>,
) -> Result<(), HqError> {
    loop {
        let p = match rx.recv().await {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(HqError::Mqtt(e)),
            None => return Err(HqError::Mqtt("event loop ended".into())),
        };
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        if let Some(store) = topics::store_of(&topic, "status") {
            if let Err(e) = record_status(pg, store, &p.payload).await {
                // A status PostgreSQL refuses for its content is dropped like a malformed one: it
                // is retained at the broker, so retrying it would wedge every reconnect, and the
                // store's next status replaces it anyway.
                if e.is_retriable() {
                    return Err(e);
                }
                tracing::warn!(topic, error = %e, "ignored a status message");
            }
            client.ack(&p).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
            continue;
        }
        let Some(store) = topics::store_of(&topic, "events") else {
            client.ack(&p).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
            continue;
        };
        let batch = match wire::decode_batch(&p.payload) {
            Ok(b) if b.store_id == store => b,
            Ok(b) => {
                tracing::warn!(topic, claimed = %b.store_id, "refused a batch for another store's topic");
                client.ack(&p).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
                continue;
            }
            Err(e) => {
                // Bad input is refused and acknowledged so it is not redelivered forever.
                tracing::warn!(topic, bytes = p.payload.len(), error = %e, "refused a malformed batch");
                client.ack(&p).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
                continue;
            }
        };
        let acked = match store_batch(pg, &batch, &cfg.worker_id).await {
            Ok((acked, inserted)) => {
                tracing::debug!(store, after = batch.after_seq, last = batch.last_seq, inserted, acked, "batch stored");
                acked
            }
            Err(HqError::Postgres(e)) if classify(&e) == PgFault::Content => {
                let why = Refusal::of(&e);
                let (acked, new) = quarantine(pg, &batch, &p.payload, &why, &cfg.worker_id).await?;
                tracing::error!(
                    store,
                    after = batch.after_seq,
                    last = batch.last_seq,
                    records = batch.records.len(),
                    sqlstate = %why.sqlstate,
                    message = %why.message,
                    detail = why.loggable_detail(),
                    new,
                    acked,
                    "batch quarantined: PostgreSQL refused its content; its range counts as received (see hq_quarantine)"
                );
                acked
            }
            Err(e) => return Err(e),
        };
        let ack = wire::encode_ack(&wire::Ack { v: wire::WIRE_VERSION, store_id: store.to_string(), acked_seq: acked });
        client.publish(topics::ack(store), QoS::AtLeastOnce, true, ack).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
        client.ack(&p).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
    }
}

// ---- publish, keys, lag ----------------------------------------------------------------------

/// `servicebay hq-keygen`: a new ed25519 key pair; the private key file is owner-only.
pub fn keygen(out: &Path) -> Result<String, HqError> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    std::fs::create_dir_all(out).map_err(|source| HqError::Write { path: out.into(), source })?;
    let private = out.join("hq-signing.key");
    if private.exists() {
        return Err(HqError::Invalid(format!("{} exists; refusing to overwrite a signing key", private.display())));
    }
    crate::fsutil::write_secret(&private, &format!("{}\n", wire::encode_key(&key.to_bytes())))
        .map_err(|source| HqError::Write { path: private.clone(), source })?;
    let public = wire::encode_key(key.verifying_key().as_bytes());
    let pub_path = out.join("hq-signing.pub");
    std::fs::write(&pub_path, format!("{public}\n")).map_err(|source| HqError::Write { path: pub_path, source })?;
    Ok(public)
}

pub struct PublishRequest {
    pub key_file: PathBuf,
    pub kind: BundleKind,
    pub version: u64,
    pub target: String,
    pub files: Vec<PathBuf>,
}

/// `servicebay hq-publish`: sign the files as one bundle and publish it, retained, on the target's
/// config topic; returns once the broker has acknowledged it.
pub async fn publish(cfg: &HqConfig, req: PublishRequest) -> Result<(String, usize), HqError> {
    if req.target != "all" && !wire::valid_store_id(&req.target) {
        return Err(HqError::Invalid(format!("--target '{}' is neither 'all' nor a store id", req.target)));
    }
    let key_text = std::fs::read_to_string(&req.key_file).map_err(|source| HqError::Read { path: req.key_file.clone(), source })?;
    let key = wire::parse_signing_key(&key_text).map_err(|e| HqError::Invalid(format!("{}: {e}", req.key_file.display())))?;
    let mut files = BTreeMap::new();
    for f in &req.files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let bytes = std::fs::read(f).map_err(|source| HqError::Read { path: f.clone(), source })?;
        files.insert(name, bytes);
    }
    let payload = wire::seal_bundle(&key, req.kind, req.version, &req.target, &files).map_err(|e| HqError::Invalid(e.to_string()))?;
    let topic = topics::config(&req.target);
    publish_once(cfg, &topic, payload.clone(), true).await?;
    Ok((topic, payload.len()))
}

/// Publish one QoS 1 message and wait for the broker's PUBACK.
pub async fn publish_once(cfg: &HqConfig, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), HqError> {
    let mut opts = cfg.link.options(&format!("servicebay-publisher-{}", crate::domain::new_id()))?;
    opts.set_max_packet_size(Some(wire::MAX_BUNDLE_COMPRESSED as u32 + 4096));
    let (client, mut ev) = AsyncClient::new(opts, 8);
    client.publish(topic, QoS::AtLeastOnce, retain, payload).await.map_err(|e| HqError::Mqtt(e.to_string()))?;
    let wait = async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(HqError::Mqtt(e.to_string())),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.map_err(|_| HqError::Mqtt("no PUBACK within 60 s".into()))??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ev.poll().await.is_ok() {} }).await;
    Ok(())
}

/// `servicebay hq-lag`: the per-store view as a table.
pub async fn lag_table(cfg: &HqConfig) -> Result<String, HqError> {
    let mut pg = connect_pg(&cfg.postgres).await?;
    migrate(&mut pg).await?;
    let rows = pg
        .query(
            "SELECT store_id, last_seq, backlog_estimate, to_char(last_seen, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    EXTRACT(EPOCH FROM since_last_seen)::float8, COALESCE(link_state, '-'), records, duplicates,
                    quarantined_batches
             FROM hq_sync_lag ORDER BY quarantined_batches > 0 DESC, backlog_estimate DESC, store_id",
            &[],
        )
        .await?;
    // `quarantined`: batches PostgreSQL refused for their content (rows in hq_quarantine); such a
    // store needs a person even though its backlog is 0, so it sorts first.
    let mut out = format!(
        "{:<24} {:>10} {:>8} {:<26} {:>10} {:<8} {:>10} {:>6} {:>11}\n",
        "store", "last_seq", "backlog", "last_seen", "age_s", "link", "records", "dups", "quarantined"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:>10} {:>8} {:<26} {:>10.0} {:<8} {:>10} {:>6} {:>11}\n",
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, String>(3),
            r.get::<_, f64>(4),
            r.get::<_, String>(5),
            r.get::<_, i64>(6),
            r.get::<_, i64>(7),
            r.get::<_, i64>(8)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hq_config_validates() {
        let ok = "[hq]\npostgres = \"host=127.0.0.1 user=postgres\"\nworker_id = \"w1\"\n[hq.mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\nusername = \"hq\"\npassword_file = \"/run/pw\"\n";
        let c = HqConfig::from_toml(ok, "t").unwrap();
        assert_eq!(c.worker_id, "w1");
        let e = HqConfig::from_toml("[hq]\npostgres = \"host=x\"\nbogus = 1\n", "t").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = HqConfig::from_toml("[hq]\n[hq.mqtt]\nbroker = \"mqtt://127.0.0.1\"\n", "t").unwrap_err().to_string();
        assert!(e.contains("hq.postgres"), "{e}");
    }

    #[test]
    fn a_refusals_logged_detail_never_carries_the_row() {
        let row = Refusal {
            sqlstate: "23502".into(),
            message: "null value in column \"x\" violates not-null constraint".into(),
            detail: Some(
                r#"Failing row contains (s1, follow_up, fu-1, {"contact": {"phone": "13800000000"}, "comment": "门还是响"})."#.into(),
            ),
        };
        let logged = row.loggable_detail();
        assert!(!logged.contains("13800000000") && !logged.contains("门还是响"), "{logged}");
        assert!(logged.contains("hq_quarantine"), "says where the detail is: {logged}");
        let nul = Refusal {
            sqlstate: "22P05".into(),
            message: "unsupported Unicode escape sequence".into(),
            detail: Some("\\u0000 cannot be converted to text.".into()),
        };
        assert_eq!(nul.loggable_detail(), "\\u0000 cannot be converted to text.", "a detail without the row stays whole");
        assert_eq!(Refusal { detail: None, ..nul }.loggable_detail(), "");
    }

    #[test]
    fn content_errors_are_told_from_transient_ones() {
        // Refused for what the batch holds: quarantine.
        for code in ["22P05", "22021", "22P02", "22003", "23505", "23502", "21000", "54000"] {
            assert_eq!(fault_of(code), PgFault::Content, "{code}");
        }
        // The connection, the server's state, the deployment: retry, lose nothing.
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "57014", "53300", "53100", "40001", "40P01", "55P03", "42P01", "42501", "25006",
            "58030", "XX000", "",
        ] {
            assert_eq!(fault_of(code), PgFault::Retry, "{code}");
        }
    }

    #[test]
    fn hq_files_are_told_from_store_files_and_reported() {
        let example = include_str!("../../assets/hq.example.toml");
        assert!(HqConfig::is_hq_toml(example));
        assert!(!HqConfig::is_hq_toml(include_str!("../../assets/servicebay.example.toml")));
        assert!(!HqConfig::is_hq_toml("[hq\npostgres = 1"));
        let c = HqConfig::from_toml(example, "hq.toml").unwrap();
        let r = c.check_report("hq.toml");
        assert!(r.starts_with("HQ config OK (hq.toml)"), "{r}");
        assert!(r.contains("user=servicebay_hq dbname=servicebay_hq") && r.contains("mqtts://mqtt.hq.example.com:8883"), "{r}");
        let secret =
            HqConfig::from_toml(&example.replace("dbname=servicebay_hq\"", "dbname=servicebay_hq password=hunter2\""), "t").unwrap();
        let r = secret.check_report("t");
        assert!(!r.contains("hunter2") && r.contains("password=***"), "{r}");
    }
}
