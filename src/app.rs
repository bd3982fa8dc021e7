//! Composition root: config → store → services → API → listeners, and graceful shutdown.
//! The only module that knows every other one. `App::serve` takes a listener so tests run the real
//! stack on 127.0.0.1:0 with a temporary data directory.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use warp::Filter;

use crate::api::{self, server, ApiState, Limits};
use crate::auth::Throttle;
use crate::case::CaseService;
use crate::config::Config;
use crate::domain::{Actor, Role};
use crate::files::PhotoFiles;
use crate::staff::{StaffError, StaffService};
use crate::store::{self, MigrationReport, Store, StoreError};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Staff(#[from] StaffError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Vision(#[from] crate::vision::VisionError),
    #[error(transparent)]
    Intake(#[from] crate::intake::IntakeError),
    #[error(transparent)]
    Dataset(#[from] crate::case::dataset::DatasetError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Protection(#[from] crate::protection::ProtectionError),
    #[error(transparent)]
    Import(#[from] crate::import::dms::DmsError),
    /// The tablet UI's words (compiled in) are broken: a build error, not the operator's.
    #[error("the UI's string catalogue is broken: {0}")]
    UiCatalogue(String),
}

/// What start-up did, for the banner.
#[derive(Debug, Clone)]
pub struct Startup {
    pub migration: MigrationReport,
    pub tls_fingerprint: String,
    pub tls_generated: bool,
    /// The first manager's username, only on the start that created the account (its one-time
    /// password is in INITIAL_PASSWORD_FILE, never printed by the daemon).
    pub initial_manager: Option<String>,
}

pub struct App {
    pub cfg: Config,
    /// Held while serving: restore and key rotation refuse to replace files under a running daemon.
    _lock: crate::fsutil::DirLock,
    pub store: Store,
    pub state: Arc<ApiState>,
    tls: Arc<rustls::ServerConfig>,
}

pub const INITIAL_PASSWORD_FILE: &str = "initial-manager-password";

impl App {
    pub async fn build(cfg: Config) -> Result<(App, Startup), AppError> {
        Self::build_with_clock(cfg, crate::clock::Clock::system()).await
    }

    /// `build` with the clock the time-driven stages read (tests move it instead of sleeping).
    pub async fn build_with_clock(cfg: Config, clock: crate::clock::Clock) -> Result<(App, Startup), AppError> {
        crate::ui::i18n::check().map_err(AppError::UiCatalogue)?;
        let lock = crate::fsutil::lock_dir(&cfg.data_dir)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another servicebay is already serving the data directory {}", cfg.data_dir.display()),
            )
        })?;
        // Keys first: without the master key nothing below can open (fail closed, explained).
        let keys = Arc::new(crate::keys::Keys::load(&cfg.keys)?);
        let (store, migration) = Store::open(&cfg.data_dir, &keys.db_key(), cfg.read_connections)?;
        let (id, name) = (cfg.store_id.clone(), cfg.store_name.clone());
        store.write(move |tx| store::cases::ensure_store(tx, &id, &name)).await?;
        let files = PhotoFiles::new(cfg.photos_dir(), keys.clone());
        files.clean_tmp();
        let protection = crate::protection::DataProtection::new(
            store.clone(),
            files.clone(),
            cfg.store_id.clone(),
            cfg.retention.clone(),
            cfg.backup.clone(),
        );
        let chores = protection.start_up().await?;
        tracing::info!(key_mode = keys.mode().as_str(), key = %keys.fingerprint(), chores = %chores, "data protection ready");

        let tls_generated = tls::ensure_cert(&cfg.tls_cert, &cfg.tls_key, &cfg.tls_extra_names)?;
        let tls_fingerprint = tls::fingerprint(&cfg.tls_cert)?;
        let tls = tls::server_config(&cfg.tls_cert, &cfg.tls_key)?;

        let throttle = Throttle::new(cfg.login_failures_before_delay, cfg.address_failures_before_delay, cfg.login_max_delay);
        let staff = StaffService::new(store.clone(), throttle, cfg.session_ttl)
            .with_initial_password_file(cfg.data_dir.join(INITIAL_PASSWORD_FILE));
        let cases = CaseService::new(store.clone(), cfg.store_id.clone());
        let engine = load_llm(&cfg).await;
        let intake = crate::case::intake::IntakeService::new(store.clone(), engine.clone(), cfg.llm_phrasing);
        // The catalogue HQ last sent (signed bundles), over the built-in starter files.
        let catalog = crate::catalog::SharedCatalog::new(crate::sync::bundles::load_catalog(&cfg.bundles_dir()));
        // The intake lexicon HQ last sent (a signed `lexicon` bundle), else the built-in one.
        if let Some(lexicon) = crate::sync::bundles::load_lexicon(&cfg.bundles_dir()) {
            crate::intake::lexicon::install(std::sync::Arc::new(lexicon));
        }
        let estimates = crate::case::estimate::EstimateService::new(
            store.clone(),
            engine.clone(),
            catalog.clone(),
            cfg.store_id.clone(),
            cfg.review_threshold,
        );
        let schedule = crate::case::schedule::ScheduleService::new(store.clone(), catalog.clone(), cfg.store_id.clone());
        let detector = load_detector(&cfg).await;
        let analyzer = crate::case::photos::PhotoAnalyzer::start(
            store.clone(),
            files.clone(),
            detector,
            crate::case::photos::AnalyzerConfig { review_threshold: cfg.review_threshold, quality: Default::default() },
        );

        let follow_up_setup = crate::case::follow_up::Setup {
            policy: cfg.follow_up.clone(),
            texts: cfg.follow_up_texts.clone(),
            survey_url: cfg.survey_url.clone(),
            store_name: cfg.store_name.clone(),
        };
        let follow_up = Arc::new(crate::case::follow_up::FollowUpService::new(
            store.clone(),
            engine.clone(),
            clock.clone(),
            follow_up_setup.clone(),
            cfg.store_id.clone(),
        ));
        follow_up.watch_sla();
        let workshop = crate::case::work_order::WorkshopService::new(
            store.clone(),
            files.clone(),
            catalog.clone(),
            cfg.workshop.clone(),
            crate::case::work_order::ReportSetup {
                font: cfg.report_font.clone(),
                labels: Arc::new(crate::pdf::Labels::builtin().map_err(|e| AppError::UiCatalogue(format!("QC report labels: {e}")))?),
                store_name: cfg.store_name.clone(),
                licence: cfg.repair_licence.clone(),
            },
            Arc::new(follow_up_setup),
            clock.clone(),
        );
        // The report font is needed only when a report is signed: the store keeps working without
        // it, and signing then refuses with the reason (fail closed, never a PDF without its font).
        if let Err(e) = crate::pdf::ReportFont::load(&cfg.report_font) {
            tracing::warn!(error = %e, "QC reports cannot be made until the font is installed");
        }
        let bays = catalog.get().store(&cfg.store_id).bays;
        let kpi = Arc::new(crate::kpi::KpiService::new(
            store.clone(),
            clock.clone(),
            cfg.follow_up.clone(),
            cfg.store_id.clone(),
            cfg.store_name.clone(),
            cfg.report_font.clone(),
        ));
        // Store data brought in from files: the DMS export, the parts and labour lists (the latter
        // swap the catalogue in memory like an HQ bundle).
        let imports = Arc::new(crate::import::Imports {
            dms: crate::import::dms::DmsImport::new(store.clone()),
            catalog: Arc::new(crate::import::parts::CatalogImport::new(store.clone(), catalog.clone(), cfg.bundles_dir())),
        });
        let sync =
            crate::sync::Sync::start(store.clone(), cfg.store_id.clone(), cfg.sync.clone(), catalog, cfg.bundles_dir(), follow_up.clone());

        let initial_manager = if staff.user_count().await? == 0 {
            let (user, pw) = staff.add_user(&Actor::system("setup"), "manager", Some("店长 Manager"), Role::Manager).await?;
            crate::fsutil::write_secret(&cfg.data_dir.join(INITIAL_PASSWORD_FILE), &format!("{}\n", pw))?;
            Some(user.username)
        } else {
            None
        };

        let state = Arc::new(ApiState {
            cases,
            intake,
            estimates,
            schedule,
            analyzer,
            sync,
            staff,
            files,
            protection,
            workshop,
            follow_up,
            kpi,
            imports,
            clock,
            bays,
            store: store.clone(),
            limits: Limits {
                json_body: cfg.json_body_limit,
                photo_body: cfg.photo_body_limit,
                photo_max_pixels: cfg.photo_max_pixels,
                metrics_loopback_only: cfg.metrics_loopback_only,
            },
            metrics: Arc::new(Default::default()),
            site: api::Site {
                store_name: cfg.store_name.clone(),
                tls_fingerprint: tls_fingerprint.clone(),
                tls_cert: cfg.tls_cert.clone(),
                data_dir: cfg.data_dir.clone(),
            },
        });
        Ok((App { cfg, _lock: lock, store, state, tls }, Startup { migration, tls_fingerprint, tls_generated, initial_manager }))
    }

    fn options(&self, tls: bool) -> server::ServeOptions {
        server::ServeOptions {
            tls: tls.then(|| tokio_rustls::TlsAcceptor::from(self.tls.clone())),
            handshake_timeout: self.cfg.handshake_timeout,
            header_read_timeout: self.cfg.header_read_timeout,
            max_connections: 1024,
            metrics: self.state.metrics.clone(),
        }
    }

    /// Serve HTTPS on `listener` (and plain HTTP on `plain`, loopback only) until `shutdown`.
    pub async fn serve(self, listener: TcpListener, plain: Option<TcpListener>, shutdown: impl Future<Output = ()> + Send + 'static) {
        // The tablet pages first (they hand on what is not theirs), then the JSON API.
        let routes = crate::ui::routes(self.state.clone()).or(api::routes(self.state.clone()).map(warp::Reply::into_response)).unify();
        let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
        // The daily jobs (backup, retention) start a little after the daemon, then check every 10 min.
        let jobs = self.state.protection.clone();
        let jobs_task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            jobs.run_jobs().await;
        });
        // The KPI snapshot of each finished local day (and days missed while the box was off).
        let kpi_task = self.state.kpi.spawn_daily();
        let mut rx_tls = tx.subscribe();
        let tls_task = tokio::spawn(server::serve(listener, routes.clone(), self.options(true), async move {
            let _ = rx_tls.recv().await;
        }));
        let plain_task = plain.map(|l| {
            let mut rx = tx.subscribe();
            tokio::spawn(server::serve(l, routes, self.options(false), async move {
                let _ = rx.recv().await;
            }))
        });
        shutdown.await;
        jobs_task.abort();
        kpi_task.abort();
        tracing::info!("shutting down: finishing open requests");
        let _ = tx.send(());
        let _ = tls_task.await;
        if let Some(t) = plain_task {
            let _ = t.await;
        }
        // Tell HQ we are going offline (the last will covers a crash).
        self.state.sync.stop().await;
        // Writer drains its queue, then the WAL is checkpointed.
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// The detector for photo analysis; without it photos get the quality gate only.
async fn load_detector(cfg: &Config) -> Option<Box<dyn crate::vision::Detector>> {
    if !cfg.vision_enabled {
        return None;
    }
    // A detector model HQ sent (signed bundle) wins over the installed one of the same name.
    let bundled = crate::sync::bundles::current_dir(&cfg.bundles_dir(), crate::sync::wire::BundleKind::DetectorModel)
        .filter(|d| d.join(format!("{}.safetensors", cfg.vision_model)).exists());
    let (dir, name) = (bundled.unwrap_or_else(|| cfg.models_dir.clone()), cfg.vision_model.clone());
    match tokio::task::spawn_blocking(move || crate::vision::load_detector(&dir, &name, Default::default())).await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "detector unavailable: photos get the quality gate only and go to an advisor");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "detector loader crashed");
            None
        }
    }
}

/// The local LLM, loaded once (mmap) off the async runtime; without it intake runs degraded.
async fn load_llm(cfg: &Config) -> Arc<dyn crate::llm::TextGen> {
    let (model, threads, disabled, remote) = (cfg.llm_model.clone(), cfg.llm_threads, !cfg.llm_enabled, cfg.llm_remote.clone());
    let isolation = cfg.llm_isolation.clone();
    let open = move || crate::llm::open_engine(crate::llm::open_local(&model, threads, disabled, isolation), remote.as_ref());
    match tokio::task::spawn_blocking(open).await {
        Ok(engine) => Arc::from(engine),
        Err(e) => {
            tracing::error!(error = %e, "LLM loader crashed: intake runs degraded");
            Arc::new(crate::llm::NoneTextGen)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `servicebay serve`: build, print the banner, serve until a signal.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let listen = cfg.listen;
    let http = cfg.http_listen;
    let (app, startup) = App::build(cfg).await?;
    let listener = server::bind(listen).await?;
    let plain = match http {
        Some(a) => Some(server::bind(a).await?),
        None => None,
    };
    let local = listener.local_addr()?;
    // The banner goes to stdout, not the log: it is for the person installing the box.
    println!("ServiceBay is serving https://{local}/ (store {}): open it in a browser to log in", app.cfg.store_id);
    println!("TLS certificate SHA-256 fingerprint (pin this on the tablets): {}", startup.tls_fingerprint);
    println!("Guided intake engine: {}", app.state.intake.engine_name());
    println!("Photo detector: {}", app.state.analyzer.model.as_deref().unwrap_or("none (quality gate only)"));
    if let Some(user) = &startup.initial_manager {
        // Never the password itself: stdout may be a log file or the journal.
        println!(
            "First manager account: {user}; its one-time password is in {} (owner-only; removed once changed)",
            app.cfg.data_dir.join(INITIAL_PASSWORD_FILE).display()
        );
    }
    tracing::info!(
        addr = %local,
        schema_from = startup.migration.from,
        schema_to = startup.migration.to,
        backup = ?startup.migration.backup,
        encrypted = ?startup.migration.encrypted,
        tls_generated = startup.tls_generated,
        "started"
    );
    app.serve(listener, plain, shutdown_signal()).await;
    Ok(())
}
