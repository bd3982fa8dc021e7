//! Real parts for the sync tests: a private Mosquitto (own port, own TLS PKI, killable), a private
//! PostgreSQL database (created and dropped) or a whole private PostgreSQL server (stoppable),
//! `servicebay hq-ingest` processes, and checks that HQ holds exactly what the store committed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::{free_port, Api, Daemon};

/// A test CA with a server certificate for 127.0.0.1/localhost and client certificates.
pub struct Pki {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "ServiceBay test CA");
        let ca = p.self_signed(&ca_key).expect("ca");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
        let pki = Pki { dir: dir.to_path_buf(), ca, ca_key };
        pki.issue("server", &["localhost", "127.0.0.1"]);
        pki
    }

    /// Writes `{name}.pem` and `{name}.key`; returns their paths.
    pub fn issue(&self, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).expect("sign");
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// A private Mosquitto 2 on its own port: TLS only, clients authenticate with certificates.
pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

pub fn mosquitto_bin() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("mosquitto is not installed: run ./scripts/setup.sh");
}

impl Broker {
    pub fn new(dir: &Path, pki: &Pki) -> Broker {
        std::fs::create_dir_all(dir.join("data")).expect("broker dir");
        let port = free_port();
        let conf = format!(
            "user root\nlistener {port} 127.0.0.1\ncafile {ca}\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\nuse_identity_as_username true\npersistence true\npersistence_location {data}/\n\
             max_queued_messages 0\nlog_dest file {dir}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n",
            ca = pki.ca().display(),
            d = pki.dir.display(),
            data = dir.join("data").display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("write conf");
        Broker { port, dir: dir.to_path_buf(), child: None }
    }

    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let child = Command::new(mosquitto_bin())
            .args(["-c", self.dir.join("mosquitto.conf").to_str().expect("utf8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn pg_admin() -> String {
    std::env::var("SERVICEBAY_TEST_PG").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".into())
}

/// A private PostgreSQL database, dropped at the end.
pub struct PgDb {
    pub name: String,
    pub conn: String,
}

async fn admin_client() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&format!("{} dbname=postgres", pg_admin()), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL (set SERVICEBAY_TEST_PG, or run ./scripts/setup.sh)");
    tokio::spawn(conn);
    c
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        admin_client().await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let conn = format!("{} dbname={name}", pg_admin());
        PgDb { name, conn }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.conn, tokio_postgres::NoTls).await.expect("connect test db");
        tokio::spawn(conn);
        c
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async {
                let c = admin_client().await;
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        })
        .join();
    }
}

/// The HQ side: its config file and its ingest worker processes.
pub struct Hq {
    pub dir: PathBuf,
    pub workers: Vec<(String, Child)>,
}

impl Hq {
    pub fn new(dir: &Path) -> Hq {
        std::fs::create_dir_all(dir).expect("hq dir");
        Hq { dir: dir.to_path_buf(), workers: Vec::new() }
    }

    /// Write `hq-{worker}.toml` for this broker and database (a libpq connection string).
    pub fn config(&self, worker: &str, broker: &Broker, pki: &Pki, postgres: &str) -> PathBuf {
        let (c, k) = pki.issue(&format!("hq-{worker}"), &[]);
        let path = self.dir.join(format!("hq-{worker}.toml"));
        let text = format!(
            "[hq]\npostgres = \"{pg}\"\nworker_id = \"{worker}\"\n\n[hq.mqtt]\nbroker = \"{url}\"\nca_file = \"{ca}\"\n\
             client_cert = \"{c}\"\nclient_key = \"{k}\"\nkeepalive_secs = 5\nbackoff_max_secs = 2\n\n[log]\nlevel = \"info,servicebay=debug\"\n",
            pg = postgres,
            url = broker.url(),
            ca = pki.ca().display(),
            c = c.display(),
            k = k.display(),
        );
        std::fs::write(&path, text).expect("write hq config");
        path
    }

    pub fn start_worker(&mut self, worker: &str, config: &Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{worker}.log"))).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_servicebay"));
        cmd.args(["--config", config.to_str().expect("utf8"), "hq-ingest"]).stdout(log.try_clone().expect("dup")).stderr(log);
        self.workers.push((worker.to_string(), cmd.spawn().expect("spawn hq-ingest")));
    }

    /// SIGKILL one worker (a crash: no ack, no goodbye) and reap it.
    pub fn kill9(&mut self, worker: &str) {
        if let Some((_, c)) = self.workers.iter_mut().find(|(w, _)| w == worker) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self, worker: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{worker}.log"))).unwrap_or_default()
    }

    /// Whether the worker has exited (and its status).
    pub fn exited(&mut self, worker: &str) -> Option<std::process::ExitStatus> {
        self.workers.iter_mut().find(|(w, _)| w == worker).and_then(|(_, c)| c.try_wait().ok().flatten())
    }

    pub fn kill_all(&mut self) {
        for (_, c) in &mut self.workers {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.workers.clear();
    }
}

impl Drop for Hq {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The `[sync]` section of a store's config, pointing at `broker` with a client certificate.
pub fn store_sync_config(store_id: &str, broker: &Broker, pki: &Pki, hq_public_key: Option<&str>) -> String {
    let (c, k) = pki.issue(&format!("store-{store_id}"), &[]);
    let key = hq_public_key.map(|k| format!("hq_public_key = \"{k}\"\n")).unwrap_or_default();
    format!(
        "\n[store]\nid = \"{store_id}\"\n\n[sync]\nenabled = true\n{key}ack_timeout_secs = 5\nbatch_max_records = 500\n\n\
         [sync.mqtt]\nbroker = \"{url}\"\nca_file = \"{ca}\"\nclient_cert = \"{c}\"\nclient_key = \"{k}\"\nkeepalive_secs = 5\nbackoff_max_secs = 2\n",
        url = broker.url(),
        ca = pki.ca().display(),
        c = c.display(),
        k = k.display(),
    )
}

/// A store daemon (child process) with sync to `broker`.
pub fn store_daemon(dir: &Path, store_id: &str, broker: &Broker, pki: &Pki, hq_public_key: Option<&str>) -> Daemon {
    std::fs::create_dir_all(dir).expect("store dir");
    let mut d = Daemon::new(dir);
    let text = super::config_text(&dir.join("data"), &format!("127.0.0.1:{}", d.port), "")
        + &store_sync_config(store_id, broker, pki, hq_public_key);
    std::fs::write(&d.config, text).expect("write config");
    d.log_level = "info".into();
    d
}

/// The newest outbox sequence this store ever committed (AUTOINCREMENT keeps it after deletes).
pub fn store_max_seq(data_dir: &Path) -> i64 {
    let conn = super::db(data_dir);
    conn.query_row("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)", [], |r| r.get(0)).expect("seq")
}

/// (case id, version) of every case at the store.
pub fn store_cases(data_dir: &Path) -> Vec<(String, i64)> {
    let conn = super::db(data_dir);
    let mut st = conn.prepare("SELECT id, version FROM cases ORDER BY id").expect("prepare");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
}

/// Wait until HQ's acked sequence for the store reaches what the store committed and the store's
/// outbox is empty.
pub async fn wait_synced(pg: &tokio_postgres::Client, store_id: &str, data_dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let want = store_max_seq(data_dir);
        let acked: i64 = pg
            .query_opt("SELECT acked_seq FROM hq_stores WHERE store_id = $1", &[&store_id])
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0))
            .unwrap_or(-1);
        if want > 0 && acked == want && super::count_rows(data_dir, "outbox") == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "not synced in {timeout:?}: HQ acked {acked}, store committed up to {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// HQ holds exactly what the store committed: every sequence 1..=max once, no duplicates, each
/// record's versions increasing with sequence, and the latest case states equal the store's.
pub async fn assert_exact(pg: &tokio_postgres::Client, store_id: &str, data_dir: &Path) {
    let max = store_max_seq(data_dir);
    let r = pg
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT seq), COUNT(DISTINCT event_id), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0)
             FROM hq_events WHERE store_id = $1",
            &[&store_id],
        )
        .await
        .expect("count");
    let (n, seqs, events, lo, hi): (i64, i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!((n, seqs, events, lo, hi), (max, max, max, 1, max), "HQ rows vs store sequence 1..={max}");
    let disorder: i64 = pg
        .query_one(
            "SELECT COUNT(*) FROM (SELECT version - LAG(version) OVER (PARTITION BY record_type, record_id ORDER BY seq) AS d
             FROM hq_events WHERE store_id = $1) x WHERE d <= 0",
            &[&store_id],
        )
        .await
        .expect("order")
        .get(0);
    assert_eq!(disorder, 0, "a record's versions must grow with its sequence");
    let hq: Vec<(String, i64)> = pg
        .query("SELECT record_id, version FROM hq_records WHERE store_id = $1 AND record_type = 'case' ORDER BY record_id", &[&store_id])
        .await
        .expect("records")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(hq, store_cases(data_dir), "HQ's latest case versions equal the store's");
}

/// Create `cases` cases, each escalated to a person and handed back: three outbox rows per case,
/// through moves any stage allows (`token` must be an advisor's or a manager's: hand-back needs
/// one). Returns how many writes were answered 2xx (errors are tolerated: the daemon may be killed).
pub async fn produce(api: &Api, token: &str, cases: usize, concurrency: usize) -> usize {
    let (s, c) = api.post("/api/v1/customers", token, json!({ "name": "同步测试" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let customer = c["id"].as_str().expect("customer id").to_string();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..cases {
        let (api, token, customer, sem) = (api.clone(), token.to_string(), customer.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.expect("sem");
            let mut ok = 0;
            let url = format!("{}/api/v1/cases", api.base);
            let r = api
                .client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "customer_id": customer, "summary": format!("sync {i}") }))
                .send()
                .await;
            let Ok(r) = r else { return ok };
            if r.status() != StatusCode::CREATED {
                return ok;
            }
            ok += 1;
            let Ok(v) = r.json::<serde_json::Value>().await else { return ok };
            let id = v["id"].as_str().unwrap_or_default().to_string();
            for (action, body) in [("escalate", json!({ "reason": "sync test" })), ("hand-back", json!({}))] {
                let r = api.client.post(format!("{url}/{id}/{action}")).bearer_auth(&token).json(&body).send().await;
                match r {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => return ok,
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    ok
}

/// One test's whole HQ side: PKI, a private broker (not started), a private database, the ingest
/// workers. On a failing test it prints every log it has.
pub struct Rig {
    pub pki: Pki,
    pub broker: Broker,
    pub db: PgDb,
    pub hq: Hq,
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Rig {
    pub async fn new() -> Rig {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().to_path_buf();
        let pki = Pki::new(&root.join("pki"));
        let broker = Broker::new(&root.join("broker"), &pki);
        let db = PgDb::create().await;
        let hq = Hq::new(&root.join("hq"));
        Rig { _tmp: tmp, pki, broker, db, hq, root }
    }

    /// Start an ingest worker on this rig's database; returns its config file.
    pub fn worker(&mut self, name: &str) -> PathBuf {
        let conn = self.db.conn.clone();
        self.worker_on(name, &conn)
    }

    /// Start an ingest worker on another database (e.g. a `PrivatePg`); returns its config file.
    pub fn worker_on(&mut self, name: &str, postgres: &str) -> PathBuf {
        let cfg = self.hq.config(name, &self.broker, &self.pki, postgres);
        self.hq.start_worker(name, &cfg);
        cfg
    }

    /// An HQ config for a client that is not a worker (publisher, sniffer, attacker).
    pub fn client_config(&self, name: &str) -> servicebay::sync::hq::HqConfig {
        servicebay::sync::hq::HqConfig::from_file(&self.hq.config(name, &self.broker, &self.pki, &self.db.conn)).expect("hq config")
    }

    /// A store daemon syncing to this rig's broker, started and ready, with its manager's token.
    pub async fn store(&self, id: &str, hq_public_key: Option<&str>) -> (Daemon, Api, String) {
        let mut d = store_daemon(&self.root.join(id), id, &self.broker, &self.pki, hq_public_key);
        d.start();
        d.wait_ready().await;
        let api = d.api();
        let token = api.manager().await;
        (d, api, token)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (w, _) in &self.hq.workers {
            eprintln!("---- {w} log ----\n{}", self.hq.log(w));
        }
        eprintln!("---- broker log ----\n{}", self.broker.log());
        for e in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let log = e.path().join("stdout.log");
            if let Ok(t) = std::fs::read_to_string(&log) {
                let tail: Vec<&str> = t.lines().rev().take(40).collect();
                eprintln!("---- {} (tail) ----\n{}", log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
    }
}

/// A whole PostgreSQL server of its own (initdb into a temporary directory, its own port and
/// socket), for tests that stop and restart PostgreSQL: the shared server is never touched.
/// As root it runs as the `postgres` OS user (PostgreSQL refuses to run as root).
pub struct PrivatePg {
    pub port: u16,
    bin: PathBuf,
    /// Owned by the server's user: data/, the socket, the log.
    home: PathBuf,
    as_postgres: bool,
    _tmp: tempfile::TempDir,
}

fn pg_bindir() -> PathBuf {
    // The newest /usr/lib/postgresql/<major>/bin (Debian), else whatever is on PATH.
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("pg_ctl").exists())
        .collect();
    majors.sort();
    majors.pop().map(|(_, p)| p).unwrap_or_default()
}

impl PrivatePg {
    /// initdb and start.
    pub fn start_new() -> PrivatePg {
        let tmp = tempfile::tempdir().expect("tmp");
        let as_postgres = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
        let home = tmp.path().join("pg");
        std::fs::create_dir_all(&home).expect("pg home");
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            // The server's user must reach its directory through ours.
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let st = Command::new("chown").args(["postgres:postgres", home.to_str().expect("utf8")]).status().expect("chown");
            assert!(st.success(), "chown to postgres failed: is there a `postgres` user?");
        }
        let pg = PrivatePg { port: free_port(), bin: pg_bindir(), home, as_postgres, _tmp: tmp };
        let data = pg.data();
        let out = pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.start();
        pg
    }

    fn data(&self) -> String {
        self.home.join("data").display().to_string()
    }

    fn cmd(&self, tool: &str, args: &[&str]) -> Command {
        let exe = if self.bin.as_os_str().is_empty() { PathBuf::from(tool) } else { self.bin.join(tool) };
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        self.cmd(tool, args).output().unwrap_or_else(|e| panic!("run {tool}: {e}"))
    }

    /// Start and wait until it accepts connections.
    pub fn start(&self) {
        // fsync off: these tests kill processes, not the machine; the page cache survives.
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.home.display());
        let log = self.home.join("postgres.log").display().to_string();
        let out = self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Stop: "fast" (clients get 57P01, a clean shutdown) or "immediate" (a crash; recovery at start).
    pub fn stop(&self, mode: &str) {
        let out = self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// libpq connection string for `dbname`.
    pub fn conn(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={dbname}", self.port)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.conn("postgres"), tokio_postgres::NoTls).await.expect("connect private PostgreSQL");
        tokio::spawn(conn);
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("---- private PostgreSQL (tail) ----\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        // Never panic here (a panic while unwinding aborts); a server already stopped just says so.
        let _ = self.cmd("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "-t", "30", "stop"]).output();
    }
}
