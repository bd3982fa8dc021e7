//! The `servicebay` command: the daemon and the on-box administration commands.
//! Errors are mapped to exit codes here, once (sysexits-style, so scripts and systemd can tell a bad
//! config from a busy database from a bug).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use servicebay::app::{self, AppError};
use servicebay::config::{Config, ConfigError};
use servicebay::domain::{Actor, Role};
use servicebay::hq::web::{AccountError, WebError};
use servicebay::keys::{KeyError, Keys};
use servicebay::protection::backup::BackupError;
use servicebay::protection::{DataProtection, ProtectionError};
use servicebay::staff::{StaffError, StaffService};
use servicebay::store::{Store, StoreError};
use servicebay::sync::hq::{self, HqConfig, HqError};
use servicebay::sync::wire::BundleKind;
use servicebay::vision::VisionError;

mod cli;
use cli::import::{catalog_convert, catalog_main, import_dms, CatalogCmd, ImportCmd};

#[derive(Parser)]
#[command(name = "servicebay", version, about = "ServiceBay — after-sales service appliance for dealerships")]
struct Cli {
    /// Config file (default: /etc/servicebay/servicebay.toml if present, else built-in defaults).
    #[arg(long, global = true, env = "SERVICEBAY_CONFIG")]
    config: Option<PathBuf>,
    /// Models directory (default: llm.models_dir of the config, i.e. $SERVICEBAY_MODELS or
    /// /usr/local/share/servicebay/models). Filled by scripts/fetch-models.sh.
    #[arg(long, global = true)]
    models: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: HTTPS API for the store's tablets.
    Serve,
    /// Apply pending database migrations (a backup copy is taken first) and exit.
    Migrate,
    /// Validate the config file and print the effective settings.
    CheckConfig,
    /// Print the SHA-256 fingerprint of the TLS certificate (for pinning on tablets).
    TlsFingerprint,
    /// Manage staff accounts on this box.
    #[command(subcommand)]
    User(UserCmd),
    /// The master key: which mode protects it, rotation.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Write an encrypted backup (database + photos), consistent while the daemon serves.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into the (empty) data directory of the config, then check it.
    Restore { file: PathBuf },
    /// Apply the retention policy now ([retention] in the config) and report what it removed.
    Retention,
    /// A customer's requests about their personal data (PIPL): find, export, erase.
    #[command(subcommand)]
    Customer(CustomerCmd),
    /// Bring data in from files: the dealer's DMS export (customers, vehicles, service history).
    #[command(subcommand)]
    Import(ImportCmd),
    /// Put a case on legal hold (retention and erasure leave it alone), or release it.
    Hold {
        case_id: String,
        #[arg(long, required_unless_present = "release")]
        reason: Option<String>,
        #[arg(long)]
        release: bool,
    },
    /// Run a detector on photos: class, role, confidence and pixel box per detection.
    Detect {
        /// Installed model name (see `servicebay model list`).
        #[arg(long, default_value = "yolov8n")]
        model: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Write the picture with boxes and labels here (a directory when several images are given).
        #[arg(long)]
        annotate: Option<PathBuf>,
    },
    /// Detector models: import Ultralytics files (.onnx, .pt, .safetensors), list what is installed.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Guided intake tools.
    #[command(subcommand)]
    Intake(IntakeCmd),
    /// Retraining data from this store's reviewed photo findings.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// The parts and labour lists: import a DMS export (CSV/XLSX/XLS/ODS), export the catalogue as
    /// such files, and (HQ) convert a list into the files of a price_list bundle.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// HQ: store every store's synced batches in PostgreSQL and acknowledge them (`--config hq.toml`).
    /// Run several for more throughput; they share the work through an MQTT shared subscription.
    HqIngest,
    /// HQ: sign files as one bundle and publish it (retained) to one store or to all.
    HqPublish {
        /// The HQ signing key (from `servicebay hq-keygen`).
        #[arg(long)]
        key: PathBuf,
        /// price_list (parts.toml, operations.toml), labour_rates (rates.toml),
        /// knowledge_base (knowledge.toml), detector_model (NAME.safetensors + NAME.toml) or
        /// lexicon (any of the intake lexicon's files: parts.toml, damages.toml, …).
        #[arg(long)]
        kind: String,
        /// Must grow with every bundle of this kind.
        #[arg(long)]
        version: u64,
        /// A store id, or "all".
        #[arg(long, default_value = "all")]
        target: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// HQ: make the ed25519 key pair that signs bundles; prints the public key for the stores' config.
    HqKeygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// HQ: per-store sync lag (last sequence, last seen, backlog estimate).
    HqLag,
    /// HQ: the customers' follow-up survey page (HTTPS, `[survey]`), the downlink of their answers
    /// to the stores over MQTT, and SMS/WeChat invitations through a webhook (`[notify]`).
    HqSurvey,
    /// HQ: the analysts' pages over HTTPS (`[web]` of hq.toml): stores compared, open hot alerts
    /// across stores, each store's KPI history.
    HqWeb,
    /// HQ: the analysts' accounts of `hq-web` (not store staff).
    #[command(subcommand)]
    HqAnalyst(HqAnalystCmd),
    /// Internal: the daemon's supervised LLM worker (JSON lines on stdin/stdout).
    #[command(hide = true)]
    LlmWorker {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        threads: Option<i32>,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Which mode protects the master key ("tpm2", "host secret", "key file"), its fingerprint and
    /// the case keys held.
    Status,
    /// New master key: the database is re-keyed and every case key re-wrapped (stop the daemon
    /// first). The old key is kept under <key_dir>/retired/ for older backups.
    Rotate,
}

#[derive(Subcommand)]
enum CustomerCmd {
    /// Customers by id, phone, plate or VIN (exact).
    Find { query: String },
    /// Everything held about a customer as a zip: customer.json and their photos.
    Export {
        customer_id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Erase a customer: photo keys destroyed, personal fields replaced by tombstones, HQ told.
    Erase {
        customer_id: String,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Import a YOLOv8 detection model without Python; writes NAME.safetensors and NAME.toml.
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
    /// List installed detector models.
    List,
}

#[derive(Subcommand)]
enum IntakeCmd {
    /// Extract findings (part, position, damage, length, primer, when) from a customer's words.
    Extract {
        text: String,
        #[arg(long)]
        json: bool,
        /// Lexicon only, without the local LLM (what the appliance does when the model is missing).
        #[arg(long)]
        no_model: bool,
    },
    /// Precision, recall and F1 per slot on a labelled set (JSON lines: text + gold findings),
    /// e.g. tests/data/intake_eval.jsonl.
    Eval {
        file: PathBuf,
        /// Lexicon only, without the local LLM.
        #[arg(long)]
        no_model: bool,
        /// Also print every utterance the extractor got wrong.
        #[arg(long)]
        misses: bool,
    },
}

#[derive(Subcommand)]
enum DatasetCmd {
    /// Write confirmed and corrected photo findings as an Ultralytics YOLO dataset (images/,
    /// labels/, data.yaml) into a new directory; images are privacy-blurred.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create an account; prints its one-time password.
    Add {
        username: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List accounts.
    List,
    /// Disable an account and end its sessions.
    Disable { username: String },
    /// Re-enable a disabled account.
    Enable { username: String },
    /// Set a new one-time password and end the account's sessions.
    ResetPassword { username: String },
}

#[derive(Subcommand)]
enum HqAnalystCmd {
    /// Create an analyst; prints a one-time password once (to be changed at first login).
    Add {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List analysts.
    List,
    /// Disable an analyst and end their sessions.
    Disable { username: String },
}

// sysexits(3)
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_IOERR: u8 = 74;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

fn store_code(e: &StoreError) -> u8 {
    match e {
        StoreError::Busy | StoreError::Closed => EX_TEMPFAIL,
        StoreError::DiskFull | StoreError::Io { .. } => EX_IOERR,
        StoreError::NotFound(_) | StoreError::Conflict(_) => EX_DATAERR,
        StoreError::Migration(_) | StoreError::Locked(_) => EX_CONFIG,
        _ => EX_SOFTWARE,
    }
}

fn exit_code(e: &AppError) -> u8 {
    match e {
        AppError::Config(_) | AppError::Tls(_) => EX_CONFIG,
        AppError::Store(s) => store_code(s),
        AppError::Staff(StaffError::Store(s)) => store_code(s),
        AppError::Staff(StaffError::NotFound | StaffError::Invalid(_)) => EX_DATAERR,
        AppError::Staff(_) => EX_SOFTWARE,
        AppError::Io(e) if e.kind() == std::io::ErrorKind::AddrInUse => EX_UNAVAILABLE,
        AppError::Io(_) => EX_IOERR,
        AppError::Vision(VisionError::ModelMissing { .. }) => EX_UNAVAILABLE,
        AppError::Vision(VisionError::Io { .. }) => EX_IOERR,
        AppError::Vision(VisionError::Inference(_)) => EX_SOFTWARE,
        AppError::Vision(_) => EX_DATAERR,
        AppError::Intake(_) => EX_DATAERR,
        AppError::Dataset(servicebay::case::dataset::DatasetError::Store(s)) => store_code(s),
        AppError::Dataset(servicebay::case::dataset::DatasetError::Io { .. }) => EX_IOERR,
        AppError::Dataset(_) => EX_DATAERR,
        AppError::UiCatalogue(_) => EX_SOFTWARE,
        AppError::Key(k) => key_code(k),
        AppError::Protection(p) => protection_code(p),
        AppError::Import(servicebay::import::dms::DmsError::Store(s)) => store_code(s),
        AppError::Import(servicebay::import::dms::DmsError::BuiltinMapping { .. }) => EX_SOFTWARE,
        AppError::Import(servicebay::import::dms::DmsError::MappingFile { .. }) => EX_CONFIG,
        AppError::Import(_) => EX_DATAERR,
    }
}

fn key_code(e: &KeyError) -> u8 {
    match e {
        KeyError::Io { .. } | KeyError::Keyring { .. } => EX_IOERR,
        KeyError::Destroyed(_) => EX_DATAERR,
        KeyError::Crypto(_) => EX_SOFTWARE,
        _ => EX_CONFIG,
    }
}

fn protection_code(e: &ProtectionError) -> u8 {
    match e {
        ProtectionError::Store(s) => store_code(s),
        ProtectionError::Key(k) => key_code(k),
        ProtectionError::Backup(BackupError::Store(s)) => store_code(s),
        ProtectionError::Backup(BackupError::Io { .. }) => EX_IOERR,
        ProtectionError::Backup(BackupError::ForeignKey { .. }) => EX_CONFIG,
        ProtectionError::Backup(_) => EX_DATAERR,
        ProtectionError::NotFound | ProtectionError::OnHold(..) | ProtectionError::Invalid(_) => EX_DATAERR,
        ProtectionError::Export(_) => EX_IOERR,
    }
}

fn survey_code(e: &servicebay::hq::survey::SurveyError) -> u8 {
    use servicebay::hq::survey::SurveyError;
    match e {
        SurveyError::Config(_) | SurveyError::Tls(_) => EX_CONFIG,
        SurveyError::Hq(h) => hq_code(h),
        SurveyError::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse => EX_UNAVAILABLE,
        SurveyError::Io(_) => EX_IOERR,
    }
}

fn hq_code(e: &HqError) -> u8 {
    match e {
        HqError::Read { .. } | HqError::Config { .. } | HqError::Link(_) => EX_CONFIG,
        HqError::Postgres(_) | HqError::Mqtt(_) => EX_UNAVAILABLE,
        HqError::Invalid(_) => EX_DATAERR,
        HqError::Write { .. } => EX_IOERR,
    }
}

/// Config loaded, logging on, runtime up — or the exit code that says why not.
fn boot<C>(
    loaded: Result<C, impl std::fmt::Display>,
    log: impl Fn(&C) -> (bool, String),
) -> Result<(C, tokio::runtime::Runtime), ExitCode> {
    let cfg = loaded.map_err(|e| {
        eprintln!("servicebay: {e}");
        ExitCode::from(EX_CONFIG)
    })?;
    let (json, level) = log(&cfg);
    servicebay::telemetry::init(json, &level);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("servicebay: cannot start the runtime: {e}");
        ExitCode::from(EX_SOFTWARE)
    })?;
    Ok((cfg, rt))
}

/// The HQ commands read `hq.toml`, not the store's config.
fn hq_main(config: Option<PathBuf>, cmd: Command) -> ExitCode {
    if let Command::HqKeygen { out } = &cmd {
        return match hq::keygen(out) {
            Ok(public) => {
                println!("wrote {}/hq-signing.key (keep it secret) and hq-signing.pub", out.display());
                println!("put this in every store's config:\n[sync]\nhq_public_key = \"{public}\"");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("servicebay: {e}");
                ExitCode::from(hq_code(&e))
            }
        };
    }
    let Some(path) = config else {
        eprintln!("servicebay: HQ commands need --config hq.toml (see assets/hq.example.toml)");
        return ExitCode::from(EX_CONFIG);
    };
    // hq-survey: the server's access log prints paths, and a survey's path holds its token (this
    // command logs its own access lines with the token replaced, hq::survey); at debug level the
    // PostgreSQL and MQTT clients print statement parameters and payloads (phones, comments).
    let survey = matches!(cmd, Command::HqSurvey);
    let log = move |c: &HqConfig| {
        let quiet = ",servicebay::api::server=warn,tokio_postgres=info,rumqttc=info";
        let level = if survey { format!("{}{quiet}", c.log_level) } else { c.log_level.clone() };
        (c.log_json, level)
    };
    let (cfg, rt) = match boot(HqConfig::from_file(&path), log) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if survey {
        return match rt.block_on(servicebay::hq::survey::serve_main(cfg, app::shutdown_signal())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("servicebay: {e}");
                ExitCode::from(survey_code(&e))
            }
        };
    }
    if matches!(cmd, Command::HqWeb | Command::HqAnalyst(_)) {
        return hq_web_main(cfg, rt, cmd);
    }
    let r = rt.block_on(async move {
        match cmd {
            Command::HqIngest => hq::run_ingest(cfg, app::shutdown_signal()).await,
            Command::HqLag => {
                print!("{}", hq::lag_table(&cfg).await?);
                Ok(())
            }
            Command::HqPublish { key, kind, version, target, files } => {
                let kind = BundleKind::parse(&kind).ok_or_else(|| {
                    HqError::Invalid(format!("--kind '{kind}' is not price_list, labour_rates, knowledge_base, detector_model or lexicon"))
                })?;
                let (topic, bytes) = hq::publish(&cfg, hq::PublishRequest { key_file: key, kind, version, target, files }).await?;
                println!("published {} v{version} ({bytes} bytes) on {topic}", kind.as_str());
                Ok(())
            }
            _ => Ok(()),
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("servicebay: {e}");
            ExitCode::from(hq_code(&e))
        }
    }
}

fn web_code(e: &WebError) -> u8 {
    match e {
        WebError::Hq(e) | WebError::Account(AccountError::Db(e)) => hq_code(e),
        WebError::Tls(_) => EX_CONFIG,
        WebError::Account(AccountError::Invalid { .. } | AccountError::Exists(_) | AccountError::NotFound(_)) => EX_DATAERR,
        WebError::Account(AccountError::Auth(_)) | WebError::Catalogue(_) => EX_SOFTWARE,
        WebError::Listen(e) if e.kind() == std::io::ErrorKind::AddrInUse => EX_UNAVAILABLE,
        WebError::Listen(_) => EX_CONFIG,
    }
}

/// `hq-web` and `hq-analyst …`.
fn hq_web_main(cfg: HqConfig, rt: tokio::runtime::Runtime, cmd: Command) -> ExitCode {
    use servicebay::hq::web::{self, accounts};
    let r = rt.block_on(async move {
        match cmd {
            Command::HqWeb => {
                let listener = servicebay::api::server::bind(cfg.web.listen).await.map_err(WebError::Listen)?;
                web::run(cfg, listener, app::shutdown_signal()).await
            }
            Command::HqAnalyst(c) => {
                let mut pg = web::admin_connect(&cfg).await?;
                match c {
                    HqAnalystCmd::Add { username, display_name } => {
                        // The password is printed here once and nowhere else (never logged).
                        let (a, pw) = accounts::add(&pg, &username, display_name.as_deref()).await?;
                        println!("created analyst {} (id {})", a.username, a.id);
                        println!("one-time password: {pw}");
                        println!("(shown once; it must be changed at the first login to hq-web)");
                    }
                    HqAnalystCmd::List => {
                        println!("{:<5} {:<20} {:<9} {:<21} display name", "id", "username", "state", "last login");
                        for a in accounts::list(&pg).await? {
                            let state = if a.disabled {
                                "disabled"
                            } else if a.must_change_password {
                                "new"
                            } else {
                                "active"
                            };
                            let last = a.last_login_at.as_deref().unwrap_or("-");
                            println!("{:<5} {:<20} {:<9} {:<21} {}", a.id, a.username, state, last, a.display_name);
                        }
                    }
                    HqAnalystCmd::Disable { username } => {
                        accounts::disable(&mut pg, &username).await?;
                        println!("disabled analyst {username}; their sessions have ended");
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("servicebay: {e}");
            ExitCode::from(web_code(&e))
        }
    }
}

/// `check-config` on an HQ file: HqConfig's own validation, then what it checked (no connection is
/// made: the config must be checkable where PostgreSQL and the broker are not reachable).
fn hq_check_config(path: &std::path::Path) -> ExitCode {
    match HqConfig::from_file(path) {
        Ok(cfg) => {
            print!("{}", cfg.check_report(&path.display().to_string()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("servicebay: {e}");
            ExitCode::from(hq_code(&e))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::LlmWorker { model, threads } = cli.command {
        // No config, no runtime: the daemon that started it owns those.
        return match servicebay::llm::worker::serve_stdio(model, threads) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("servicebay llm-worker: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        };
    }
    if matches!(
        cli.command,
        Command::HqIngest
            | Command::HqPublish { .. }
            | Command::HqKeygen { .. }
            | Command::HqLag
            | Command::HqWeb
            | Command::HqAnalyst(_)
            | Command::HqSurvey
    ) {
        return hq_main(cli.config, cli.command);
    }
    if let Command::Catalog(CatalogCmd::Convert { what, file, mapping, out }) = &cli.command {
        return catalog_convert(what, file, mapping.as_deref(), out);
    }
    // `check-config` serves both kinds of file: an `[hq]` table means HQ's (assets/hq.example.toml).
    if let (Command::CheckConfig, Some(path)) = (&cli.command, &cli.config) {
        if std::fs::read_to_string(path).is_ok_and(|t| HqConfig::is_hq_toml(&t)) {
            return hq_check_config(path);
        }
    }
    let (cfg, rt) = match boot(Config::load(cli.config.as_deref()), |c| (c.log_json, c.log_level.clone())) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Command::Catalog(cmd) = cli.command {
        return rt.block_on(catalog_main(cmd, cfg));
    }
    let models = cli.models.unwrap_or_else(|| cfg.models_dir.clone());
    match rt.block_on(dispatch(cli.command, cfg, models)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("servicebay: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn dispatch(cmd: Command, cfg: Config, models: PathBuf) -> Result<(), AppError> {
    match cmd {
        Command::Detect { model, images, json, annotate } => {
            let out = tokio::task::spawn_blocking(move || {
                servicebay::vision::cli::cli_detect(&models, &model, &images, json, annotate.as_deref())
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
            print!("{out}");
            Ok(())
        }
        Command::Model(ModelCmd::Import { file, name }) => {
            print!("{}", servicebay::vision::cli::cli_import(&file, &models, name.as_deref())?);
            Ok(())
        }
        Command::Model(ModelCmd::List) => {
            print!("{}", servicebay::vision::cli::cli_list(&models)?);
            Ok(())
        }
        Command::Intake(cmd) => {
            let out = tokio::task::spawn_blocking(move || -> Result<String, AppError> {
                let no_model = match &cmd {
                    IntakeCmd::Extract { no_model, .. } | IntakeCmd::Eval { no_model, .. } => *no_model,
                };
                let model = models.join(servicebay::llm::DEFAULT_MODEL_FILE);
                let engine = servicebay::llm::open_local(&model, None, no_model, servicebay::llm::Isolation::Thread);
                if !engine.is_available() && !no_model {
                    eprintln!("warning: the local LLM could not be loaded from {}; lexicon only (degraded)", models.display());
                }
                Ok(match cmd {
                    IntakeCmd::Extract { text, json, .. } => servicebay::intake::cli_extract(&text, json, engine.as_ref())?,
                    IntakeCmd::Eval { file, misses, .. } => servicebay::intake::eval::cli_eval(&file, engine.as_ref(), misses)?,
                })
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
            println!("{out}");
            Ok(())
        }
        Command::Serve => app::run(cfg).await,
        Command::Dataset(DatasetCmd::Export { out }) => {
            let keys = std::sync::Arc::new(Keys::load(&cfg.keys)?);
            let (store, _) = Store::open(&cfg.data_dir, &keys.db_key(), 1)?;
            let files = servicebay::files::PhotoFiles::new(cfg.photos_dir(), keys);
            let r = servicebay::case::dataset::export(&store, &files, &out).await;
            store.close();
            let r = r?;
            println!(
                "exported {} images with {} boxes ({} rejected findings left unlabelled) to {}",
                r.images,
                r.boxes,
                r.rejected,
                out.display()
            );
            Ok(())
        }
        Command::HqIngest
        | Command::HqPublish { .. }
        | Command::HqKeygen { .. }
        | Command::HqLag
        | Command::HqWeb
        | Command::HqAnalyst(_)
        | Command::HqSurvey
        | Command::Catalog(_)
        | Command::LlmWorker { .. } => Ok(()),
        Command::CheckConfig => {
            println!("config OK ({})", cfg.source);
            println!("  store      {} ({})", cfg.store_id, cfg.store_name);
            println!("  listen     https://{}", cfg.listen);
            if let Some(h) = cfg.http_listen {
                println!("  http       http://{h} (loopback only)");
            }
            println!("  data_dir   {} (encrypted; keys in {})", cfg.data_dir.display(), cfg.keys.key_dir.display());
            if cfg.keys.require_tpm {
                println!("  keys       the master key must be sealed to the TPM2");
            }
            match &cfg.backup {
                Some(b) => println!("  backup     every {} h to {}, {} kept", b.interval.as_secs() / 3600, b.dir.display(), b.keep),
                None => println!("  backup     not scheduled ([backup] dir unset)"),
            }
            let r = &cfg.retention;
            println!(
                "  retention  photos {} d, personal data {} d after closing, survey comments {} d, audit log {} d",
                r.intake_photos_days, r.closed_case_personal_days, r.survey_answers_days, r.audit_log_days
            );
            println!("  tls        {} / {}", cfg.tls_cert.display(), cfg.tls_key.display());
            println!("  limits     json {} B, photo {} B, {} px", cfg.json_body_limit, cfg.photo_body_limit, cfg.photo_max_pixels);
            if cfg.llm_enabled {
                let how = match &cfg.llm_isolation {
                    servicebay::llm::Isolation::Thread => "in the daemon",
                    servicebay::llm::Isolation::Process { .. } => "supervised worker process",
                };
                println!("  llm        {} ({how})", cfg.llm_model.display());
            } else {
                println!("  llm        off (lexicon only; unclear messages go to a person)");
            }
            match &cfg.sync {
                Some(s) => println!(
                    "  sync       to {}:{} ({}), HQ key {}",
                    s.link.host,
                    s.link.port,
                    if s.link.tls { "TLS" } else { "plain, loopback" },
                    if s.hq_key.is_some() { "set" } else { "not set: bundles are refused" }
                ),
                None => println!("  sync       off (standalone)"),
            }
            Ok(())
        }
        Command::TlsFingerprint => {
            println!("{}", servicebay::tls::fingerprint(&cfg.tls_cert)?);
            Ok(())
        }
        Command::Migrate => {
            let keys = Keys::load(&cfg.keys)?;
            let (store, report) = Store::open(&cfg.data_dir, &keys.db_key(), 1)?;
            store.close();
            if let Some(e) = &report.encrypted {
                println!("{e}");
            }
            match report.backup {
                Some(b) => println!("migrated schema v{} → v{} (backup: {})", report.from, report.to, b.display()),
                None if report.from == report.to => println!("schema is current (v{})", report.to),
                None => println!("created schema v{}", report.to),
            }
            Ok(())
        }
        Command::Key(KeyCmd::Status) => {
            let keys = Keys::load(&cfg.keys)?;
            let s = keys.status()?;
            println!("mode         {}", s.mode);
            println!("fingerprint  {}", s.fingerprint);
            println!("key dir      {}", s.key_dir);
            println!("case keys    {} held, {} destroyed (erased customers)", s.case_keys, s.destroyed);
            println!("tpm2         {}", if s.tpm_present { "present" } else { "not present" });
            Ok(())
        }
        Command::Key(KeyCmd::Rotate) => {
            let _lock = exclusive(&cfg)?;
            let keys = Keys::load(&cfg.keys)?;
            if keys.mode() != servicebay::keys::KeyMode::KeyFile {
                // Checked before anything changes: the credential cannot be rewritten from here.
                return Err(AppError::Key(KeyError::Unsupported(format!(
                    "the master key is a systemd credential ({}); rotate it with scripts/key-setup.sh",
                    keys.mode().as_str()
                ))));
            }
            let new = servicebay::keys::Secret::random();
            let db = cfg.data_dir.join("servicebay.db");
            // The new key is on disk (0600) before anything depends on it: an interrupted rotation
            // never loses a key.
            servicebay::fsutil::write_secret(&cfg.keys.key_dir.join("master.key.next"), &format!("{}\n", new.hex().as_str()))?;
            if db.exists() {
                servicebay::store::rekey_file(&db, &keys.db_key(), &servicebay::keys::db_key_of(&new))?;
            }
            let n = keys.rewrap_all(&new)?;
            let retired = keys.install_key_file(&new)?;
            let _ = std::fs::remove_file(cfg.keys.key_dir.join("master.key.next"));
            println!("rotated: database re-keyed, {n} case keys re-wrapped; new key {}", new.fingerprint());
            println!("the old key is kept for older backups: {}", retired.display());
            Ok(())
        }
        Command::Backup { out } => {
            let (p, store) = open_protection(&cfg).await?;
            let r = p.backup(&Actor::system("cli"), out).await;
            store.close();
            let r = r?;
            println!("backup written: {} ({} bytes, {} photos, {} ms)", r.file.display(), r.bytes, r.photos, r.millis);
            if r.missing > 0 {
                println!("note: {} photo files named by the database were already gone (retention)", r.missing);
            }
            Ok(())
        }
        Command::Restore { file } => {
            let _lock = exclusive(&cfg)?;
            let keys = std::sync::Arc::new(Keys::load(&cfg.keys)?);
            let data_dir = cfg.data_dir.clone();
            let r = tokio::task::spawn_blocking(move || servicebay::protection::backup::restore(&file, &data_dir, &keys))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .map_err(ProtectionError::from)?;
            println!("restored the backup of {} into {} (schema v{})", r.created_at, cfg.data_dir.display(), r.schema);
            println!("integrity check: {}", r.integrity);
            println!("photos: {} decrypt; {} belong to customers erased since (their keys are destroyed)", r.photos_ok, r.photos_erased);
            Ok(())
        }
        Command::Retention => {
            let (p, store) = open_protection(&cfg).await?;
            let r = p.apply_retention(&Actor::system("cli")).await;
            store.close();
            println!("retention: {}", r?.summary());
            Ok(())
        }
        Command::Import(ImportCmd::Dms { file, mapping, dry_run }) => import_dms(&cfg, &file, &mapping, dry_run).await,
        Command::Customer(c) => {
            let (p, store) = open_protection(&cfg).await?;
            let r = customer_cmd(c, &p).await;
            store.close();
            r
        }
        Command::Hold { case_id, reason, release } => {
            let (p, store) = open_protection(&cfg).await?;
            let r = p.set_legal_hold(&Actor::system("cli"), case_id.clone(), if release { None } else { reason }).await;
            store.close();
            r?;
            println!("case {case_id}: legal hold {}", if release { "released" } else { "set" });
            Ok(())
        }
        Command::User(u) => {
            let keys = Keys::load(&cfg.keys)?;
            let (store, _) = Store::open(&cfg.data_dir, &keys.db_key(), 1)?;
            let staff = StaffService::new(
                store.clone(),
                servicebay::auth::Throttle::new(cfg.login_failures_before_delay, cfg.address_failures_before_delay, cfg.login_max_delay),
                cfg.session_ttl,
            );
            let r = user_cmd(u, &staff).await;
            store.close();
            r
        }
    }
}

/// The data directory to ourselves (no daemon serving it), or the reason why not.
fn exclusive(cfg: &Config) -> Result<servicebay::fsutil::DirLock, AppError> {
    servicebay::fsutil::lock_dir(&cfg.data_dir)?.ok_or_else(|| {
        AppError::Io(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!("the daemon is serving {}; stop it first (systemctl stop servicebay)", cfg.data_dir.display()),
        ))
    })
}

async fn open_protection(cfg: &Config) -> Result<(DataProtection, Store), AppError> {
    let keys = std::sync::Arc::new(Keys::load(&cfg.keys)?);
    let (store, _) = Store::open(&cfg.data_dir, &keys.db_key(), 1)?;
    let files = servicebay::files::PhotoFiles::new(cfg.photos_dir(), keys);
    let p = DataProtection::new(store.clone(), files, cfg.store_id.clone(), cfg.retention.clone(), cfg.backup.clone());
    Ok((p, store))
}

async fn customer_cmd(cmd: CustomerCmd, p: &DataProtection) -> Result<(), AppError> {
    let actor = Actor::system("cli");
    match cmd {
        CustomerCmd::Find { query } => {
            for c in p.find(&actor, query).await? {
                let holds = c.cases.iter().filter(|k| k.legal_hold.is_some()).count();
                println!(
                    "{}  {}  {}  plates {}  {} cases{}{}",
                    c.id,
                    c.name,
                    c.phone.as_deref().unwrap_or("-"),
                    if c.plates.is_empty() { "-".to_string() } else { c.plates.join(",") },
                    c.cases.len(),
                    if holds > 0 { format!(", {holds} on legal hold") } else { String::new() },
                    c.erased_at.as_deref().map(|t| format!(", erased {t}")).unwrap_or_default()
                );
            }
        }
        CustomerCmd::Export { customer_id, out } => {
            let zip = p.export(&actor, customer_id).await?;
            std::fs::write(&out, &zip)?;
            println!("exported to {} ({} bytes)", out.display(), zip.len());
        }
        CustomerCmd::Erase { customer_id, yes } => {
            if !yes {
                return Err(AppError::Protection(ProtectionError::Invalid(
                    "erasure cannot be undone; run again with --yes to confirm".into(),
                )));
            }
            let e = p.erase(&actor, customer_id, "request").await?;
            println!(
                "erased customer {}: {} cases, their photo keys destroyed; HQ is told (event {})",
                e.customer_id,
                e.case_ids.len(),
                e.id
            );
        }
    }
    Ok(())
}

async fn user_cmd(cmd: UserCmd, staff: &StaffService) -> Result<(), AppError> {
    let actor = Actor::system("cli");
    match cmd {
        UserCmd::Add { username, role, display_name } => {
            let role = Role::parse(&role).ok_or_else(|| {
                let all: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
                ConfigError::Invalid { key: "--role".into(), message: format!("'{role}' is not a role; use one of {}", all.join(", ")) }
            })?;
            let (user, pw) = staff.add_user(&actor, &username, display_name.as_deref(), role).await?;
            println!("created user {} (id {}, role {})", user.username, user.id, user.role);
            println!("one-time password: {pw}");
        }
        UserCmd::List => {
            println!("{:<5} {:<20} {:<17} {:<8} display name", "id", "username", "role", "state");
            for u in staff.list_users().await? {
                let state = if u.disabled {
                    "disabled"
                } else if u.must_change_password {
                    "new"
                } else {
                    "active"
                };
                println!("{:<5} {:<20} {:<17} {:<8} {}", u.id, u.username, u.role.as_str(), state, u.display_name);
            }
        }
        UserCmd::Disable { username } => {
            let u = staff.find(&username).await?;
            staff.set_disabled(&actor, u.id, true).await?;
            println!("disabled {} and ended its sessions", u.username);
        }
        UserCmd::Enable { username } => {
            let u = staff.find(&username).await?;
            staff.set_disabled(&actor, u.id, false).await?;
            println!("enabled {}", u.username);
        }
        UserCmd::ResetPassword { username } => {
            let u = staff.find(&username).await?;
            let pw = staff.reset_password(&actor, u.id).await?;
            println!("new one-time password for {}: {pw}", u.username);
        }
    }
    Ok(())
}
