//! Test harness: the real stack over real TLS. `Server` runs the library in-process on 127.0.0.1:0
//! with a temporary data directory; `Daemon` runs the `servicebay` binary as a child process so
//! tests can restart it or kill -9 it. Clients trust exactly the appliance's generated certificate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use servicebay::app::{App, INITIAL_PASSWORD_FILE};
use servicebay::config::Config;

/// `extra` is appended inside [server] and may open further sections. The LLM and the detector are
/// off unless a test configures [llm] / [vision] itself (only the engine tests need the models).
pub fn config_text(data_dir: &Path, listen: &str, extra: &str) -> String {
    let llm = if extra.contains("[llm]") { "" } else { "\n[llm]\nenabled = false\n" };
    // The LLM runs in a supervised `servicebay llm-worker`, as in the daemon; a test binary is not
    // servicebay, so name the real one.
    let extra = extra.replacen("[llm]\n", &format!("[llm]\nworker_program = \"{}\"\n", env!("CARGO_BIN_EXE_servicebay")), 1);
    let vision = if extra.contains("[vision]") { "" } else { "\n[vision]\nenabled = false\n" };
    // The master key lives beside the data directory, never inside it.
    let keys = data_dir.parent().unwrap_or(data_dir).join("keys");
    format!(
        "[storage]\ndata_dir = \"{}\"\nkey_dir = \"{}\"\n\n[server]\nlisten = \"{listen}\"\n{extra}\n{llm}{vision}",
        data_dir.display(),
        keys.display()
    )
}

/// The key directory the harness gives a data directory (`<data_dir>/../keys`).
pub fn key_dir(data_dir: &Path) -> PathBuf {
    data_dir.parent().unwrap_or(data_dir).join("keys")
}

/// The appliance's database, opened with its key (as the daemon does), for checks behind the API.
pub fn db(data_dir: &Path) -> rusqlite::Connection {
    db_with_keys(data_dir, &key_dir(data_dir))
}

/// A database restored on the same box: its key lives in another data directory's key dir.
pub fn db_with_keys(data_dir: &Path, keys: &Path) -> rusqlite::Connection {
    let cfg = servicebay::keys::KeyConfig {
        key_dir: keys.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        require_tpm: false,
        credentials_dir: None,
    };
    let key = servicebay::keys::db_key_for(&cfg).expect("the appliance's key");
    servicebay::store::open_keyed(&data_dir.join("servicebay.db"), &key, false).expect("open db")
}

/// A TLS client that trusts only this appliance's certificate.
pub fn client_for(cert: &Path) -> Client {
    let pem = std::fs::read(cert).expect("cert");
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .tls_built_in_root_certs(false)
        .https_only(true)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

pub struct Server {
    pub dir: tempfile::TempDir,
    data: PathBuf,
    pub base: String,
    pub client: Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The daemon's clock: tests move it forward (follow-up due times, alert SLAs) instead of sleeping.
    pub clock: servicebay::clock::Clock,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with("").await
    }

    /// `server_extra` is appended to the [server] section.
    pub async fn start_with(server_extra: &str) -> Server {
        Self::start_in(tempfile::tempdir().expect("tempdir"), server_extra).await
    }

    /// Like `start_with`, in a directory the test prepared (its `data/` e.g. with an applied HQ
    /// bundle; the keys go to its `keys/`).
    pub async fn start_in(dir: tempfile::TempDir, server_extra: &str) -> Server {
        let data = dir.path().join("data");
        let text = config_text(&data, "127.0.0.1:0", server_extra);
        let cfg = Config::from_toml(&text, "test").expect("config");
        let cert = cfg.tls_cert.clone();
        let clock = servicebay::clock::Clock::system();
        let (app, _) = App::build_with_clock(cfg, clock.clone()).await.expect("build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, None, async move {
            let _ = rx.await;
        }));
        Server {
            base: format!("https://localhost:{port}"),
            client: client_for(&cert),
            dir,
            data,
            shutdown: Some(tx),
            task: Some(task),
            clock,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub fn api(&self) -> Api {
        Api { base: self.base.clone(), client: self.client.clone(), data_dir: self.data.clone() }
    }
}

/// A running `servicebay serve` child process with its own data dir and port.
pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub stdout_log: PathBuf,
    pub log_level: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Daemon {
    pub fn new(dir: &Path) -> Daemon {
        let port = free_port();
        let config = dir.join("servicebay.toml");
        std::fs::write(&config, config_text(&dir.join("data"), &format!("127.0.0.1:{port}"), "")).expect("write config");
        Daemon { dir: dir.to_path_buf(), config, port, child: None, stdout_log: dir.join("stdout.log"), log_level: "warn".into() }
    }

    pub fn start(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.stdout_log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_servicebay"))
            .args(["--config", self.config.to_str().expect("utf8"), "serve"])
            .env("RUST_LOG", &self.log_level)
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn servicebay");
        self.child = Some(child);
    }

    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn client(&self) -> Client {
        client_for(&self.data_dir().join("tls/cert.pem"))
    }

    pub fn api(&self) -> Api {
        Api { base: self.base(), client: self.client(), data_dir: self.data_dir() }
    }

    /// Wait until /healthz answers (the certificate exists by then).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.data_dir().join("tls/cert.pem").exists() {
                if let Ok(r) = self.client().get(format!("{}/healthz", self.base())).send().await {
                    if r.status() == StatusCode::OK {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not become ready; log:\n{}",
                std::fs::read_to_string(&self.stdout_log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL on Unix
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A thin JSON client for the API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: Client,
    pub data_dir: PathBuf,
}

impl Api {
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": username, "password": password }))).await
    }

    /// Log in with a one-time password and set a permanent one; returns a usable token.
    pub async fn activate(&self, username: &str, one_time: &str) -> String {
        let (s, v) = self.login(username, one_time).await;
        assert_eq!(s, StatusCode::OK, "login {username}: {v}");
        let t = v["token"].as_str().expect("token").to_string();
        let new_pw = format!("{username}-Permanent-Pw1");
        let (s, v) = self.post("/api/v1/auth/password", &t, json!({ "old_password": one_time, "new_password": new_pw })).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        let (s, v) = self.login(username, &new_pw).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// A client like a browser's form posts: this appliance's certificate, redirects not followed
    /// (the tests look at each 303), no bearer token (UI routes use the session cookie).
    pub fn form_client(&self) -> Client {
        let pem = std::fs::read(self.data_dir.join("tls/cert.pem")).expect("cert");
        Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    /// A session for `user` through the login form (what a tablet does): (cookie header, CSRF token).
    /// The cookie carries its security attributes.
    pub async fn form_login(&self, user: &str, password: &str) -> (String, String) {
        let r = self
            .form_client()
            .post(format!("{}/login", self.base))
            .form(&[("username", user), ("password", password), ("next", "/today")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_string();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        let token = set.split(';').next().unwrap().trim_start_matches("sb_session=").to_string();
        (format!("sb_session={token}"), servicebay::ui::csrf_of(&token))
    }

    /// The first manager, activated from the one-time password the appliance wrote at first start.
    pub async fn manager(&self) -> String {
        let pw = std::fs::read_to_string(self.data_dir.join(INITIAL_PASSWORD_FILE)).expect("initial password file");
        self.activate("manager", pw.trim()).await
    }

    /// A new active user of `role`, created by the manager; returns (user id, token).
    pub async fn user(&self, manager: &str, username: &str, role: &str) -> (i64, String) {
        let (s, v) = self.post("/api/v1/users", manager, json!({ "username": username, "role": role })).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["user"]["id"].as_i64().expect("id");
        let pw = v["one_time_password"].as_str().expect("pw").to_string();
        (id, self.activate(username, &pw).await)
    }
}

/// Count rows directly in the appliance's database (read-only; fine while it runs in WAL mode).
pub fn count_rows(data_dir: &Path, table: &str) -> i64 {
    db(data_dir).query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).expect("count")
}

pub fn files_under(dir: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, n)
                } else {
                    *n += 1
                }
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

// ---- the real models (LLM and detector), shared by the engine tests ----------------------------

/// `SERVICEBAY_MODELS`, else `models/` next to Cargo.toml (filled by scripts/fetch-models.sh).
pub fn models_dir() -> PathBuf {
    std::env::var_os("SERVICEBAY_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

pub fn model_path() -> PathBuf {
    models_dir().join(servicebay::llm::DEFAULT_MODEL_FILE)
}

/// One llama.cpp engine per test process (the backend may be initialised once per process).
pub fn engine() -> &'static servicebay::llm::llama::LlamaEngine {
    use servicebay::llm::llama::{LlamaConfig, LlamaEngine};
    static E: std::sync::OnceLock<LlamaEngine> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let p = model_path();
        LlamaEngine::load(LlamaConfig::new(&p)).unwrap_or_else(|e| panic!("load {}: {e} (run scripts/fetch-models.sh)", p.display()))
    })
}

/// The models directory when the detector weights are there; otherwise None, said loudly (CI
/// always has them: scripts/test.sh runs the fetch first).
pub fn vision_models() -> Option<PathBuf> {
    let dir = models_dir();
    if dir.join("yolov8n.onnx").exists() {
        Some(dir)
    } else {
        eprintln!("\n!!!!!!!! SKIPPING: no models in {} — run scripts/fetch-models.sh !!!!!!!!\n", dir.display());
        None
    }
}

/// A server with the real YOLOv8n (imported from the fetched ONNX) and no LLM; with the models dir.
/// The TempDir holding the imported model must live as long as the server.
pub async fn yolo_server() -> Option<(Server, PathBuf, tempfile::TempDir)> {
    let src = vision_models()?;
    let models = tempfile::tempdir().expect("tempdir");
    servicebay::vision::import_model(&src.join("yolov8n.onnx"), models.path(), Some("yolov8n")).expect("import yolov8n");
    let extra =
        format!("\n[llm]\nenabled = false\nmodels_dir = \"{}\"\n[vision]\nenabled = true\nmodel = \"yolov8n\"\n", models.path().display());
    Some((Server::start_with(&extra).await, src, models))
}

/// Upload a photo to a case (multipart); returns the created photo.
pub async fn upload(api: &Api, token: &str, case: &str, bytes: Vec<u8>) -> Value {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name("p.jpg"));
    let r = api.client.post(format!("{}/api/v1/cases/{case}/photos", api.base)).bearer_auth(token).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

pub async fn analysis(api: &Api, token: &str, photo: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, v) = api.get(&format!("/api/v1/photos/{photo}/analysis"), token).await;
        if s == StatusCode::OK {
            return v;
        }
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert!(Instant::now() < deadline, "analysis did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server with the COCO model under a dealer-style card (the way a dealer plugs in a model):
/// `bus` → `part:door`, `person` → `damage:scratch`, so bus.jpg yields photo findings on a door;
/// photo findings below 0.5 confidence wait for a person. Returns it with the models dir and the
/// TempDir holding the imported model (keep it alive as long as the server).
pub async fn remap_server() -> Option<(Server, PathBuf, tempfile::TempDir)> {
    let src = vision_models()?;
    let models = tempfile::tempdir().expect("tempdir");
    servicebay::vision::import_model(&src.join("yolov8n.onnx"), models.path(), Some("remap")).expect("import yolov8n");
    remap_card(models.path());
    let extra = format!(
        "\n[llm]\nenabled = false\nmodels_dir = \"{}\"\n[vision]\nenabled = true\nmodel = \"remap\"\nreview_threshold = 0.5\n",
        models.path().display()
    );
    Some((Server::start_with(&extra).await, src, models))
}

fn remap_card(models: &std::path::Path) {
    let path = models.join("remap.toml");
    let mut card: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let classes: Vec<String> = card["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let roles = card["roles"].as_array_mut().unwrap();
    for (i, c) in classes.iter().enumerate() {
        roles[i] = toml::Value::String(
            match c.as_str() {
                "bus" => "part:door",
                "person" => "damage:scratch",
                _ => "ignore",
            }
            .into(),
        );
    }
    std::fs::write(&path, toml::to_string(&card).unwrap()).unwrap();
}

pub mod browser;
pub mod hq;
pub mod survey;
pub mod workshop;
