//! `servicebay import dms` and `servicebay catalog import|export|convert`: store data from files
//! on the box (the manager's screen and the API call the same services).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use servicebay::app::AppError;
use servicebay::config::Config;
use servicebay::domain::Actor;
use servicebay::import::parts::{CatalogFile, CatalogImport, CatalogImportError, CatalogReport};
use servicebay::keys::Keys;
use servicebay::store::Store;

use crate::{key_code, store_code, EX_CONFIG, EX_DATAERR, EX_IOERR, EX_USAGE};

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Import a parts (配件价格表) or labour (工时表) list into this store's catalogue. A running
    /// daemon reads it at its next start; the manager's upload applies at once.
    Import {
        /// parts or labour
        what: String,
        file: PathBuf,
        /// A shipped mapping (parts_zh, labour_zh) or a mapping file; default: the shipped one.
        #[arg(long)]
        mapping: Option<String>,
        /// Check and count only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the catalogue in force as parts.csv and labour.csv (UTF-8 with BOM, the shipped
    /// mappings' headers); importing them gives back the same catalogue.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// HQ: a parts or labour list into DIR/parts.toml and DIR/operations.toml (over the files
    /// already in DIR, else the built-in ones), validated, for `hq-publish --kind price_list`.
    Convert {
        what: String,
        file: PathBuf,
        #[arg(long)]
        mapping: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ImportCmd {
    /// A DMS/CRM export (CSV in UTF-8 or GBK, XLSX, XLS, ODS): every row is checked first; a file
    /// with a bad row imports nothing and the refused rows are listed with their line numbers.
    Dms {
        file: PathBuf,
        /// A built-in mapping (generic_zh, ro_lines_zh, crm_zh) or the path of a mapping file.
        #[arg(long, default_value = "generic_zh")]
        mapping: String,
        /// Check and count only; write nothing but the import's record.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn import_dms(cfg: &Config, file: &std::path::Path, mapping: &str, dry_run: bool) -> Result<(), AppError> {
    use servicebay::import::dms::{self, DmsError};
    let (mapping_name, m) = dms::mapping(mapping)?;
    let len = std::fs::metadata(file)?.len();
    if len > servicebay::import::table::MAX_BYTES as u64 {
        return Err(DmsError::Table(servicebay::import::table::TableError::TooLarge).into());
    }
    let bytes = std::fs::read(file)?;
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let keys = Keys::load(&cfg.keys)?;
    let (store, _) = Store::open(&cfg.data_dir, &keys.db_key(), 1)?;
    let r = dms::DmsImport::new(store.clone()).run_named(&Actor::system("cli"), &file_name, bytes, &mapping_name, &m, dry_run).await;
    store.close();
    let r = r?;
    let c = |x: &dms::Counts| format!("{} new, {} updated, {} unchanged", x.new, x.updated, x.unchanged);
    println!("{}{} rows (mapping {}, sha256 {})", if r.dry_run { "dry run: " } else { "" }, r.rows, r.mapping, r.file_sha256);
    if r.refused() {
        for e in &r.errors {
            println!("line {}: {}: {}", e.line, e.field, e.message);
        }
        if r.errors_total > r.errors.len() {
            println!("… and {} more", r.errors_total - r.errors.len());
        }
        return Err(DmsError::Refused(r.errors_total).into());
    }
    println!("customers: {}", c(&r.customers));
    println!("vehicles:  {}", c(&r.vehicles));
    println!("visits:    {}", c(&r.visits));
    println!("import {} in {} ms", r.import_id, r.elapsed_ms);
    Ok(())
}

fn catalog_what(what: &str) -> Result<CatalogFile, ExitCode> {
    CatalogFile::parse(what).ok_or_else(|| {
        eprintln!("servicebay: '{what}' is neither parts nor labour");
        ExitCode::from(EX_USAGE)
    })
}

fn catalog_code(e: &CatalogImportError) -> u8 {
    match e {
        CatalogImportError::Table(_) | CatalogImportError::Rows(_) | CatalogImportError::UnknownMapping(..) => EX_DATAERR,
        CatalogImportError::Io { .. } => EX_IOERR,
        CatalogImportError::Catalog(_) => EX_CONFIG,
        CatalogImportError::Store(s) => store_code(s),
    }
}

/// The report for people: counts, then each refused row; errors mean exit 65 (nothing changed).
fn catalog_report(r: &CatalogReport) -> ExitCode {
    println!(
        "{} rows: {} new, {} changed, {} unchanged, {} kept{}",
        r.rows,
        r.new,
        r.changed,
        r.unchanged,
        r.kept,
        if r.dry_run {
            " (dry run: nothing written)"
        } else if r.applied {
            " (in force)"
        } else {
            " (nothing changed)"
        }
    );
    for e in &r.errors {
        eprintln!("line {}, {}: {}", e.line, e.field, e.message);
    }
    if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("servicebay: {}", CatalogImportError::Rows(r.errors.len()));
        ExitCode::from(EX_DATAERR)
    }
}

fn read_list(
    file: &std::path::Path,
    what: CatalogFile,
    mapping: Option<&str>,
) -> Result<(Vec<u8>, servicebay::import::table::Mapping), CatalogImportError> {
    let bytes = std::fs::read(file).map_err(|source| CatalogImportError::Io { path: file.display().to_string(), source })?;
    let mapping = servicebay::import::parts::mapping(mapping.unwrap_or(what.default_mapping()))?;
    Ok((bytes, mapping))
}

pub fn catalog_convert(what: &str, file: &std::path::Path, mapping: Option<&str>, out: &std::path::Path) -> ExitCode {
    let what = match catalog_what(what) {
        Ok(w) => w,
        Err(c) => return c,
    };
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let r = read_list(file, what, mapping).and_then(|(bytes, m)| servicebay::import::parts::convert(what, &name, &bytes, &m, out));
    match r {
        Ok(r) => {
            let code = catalog_report(&r);
            if r.applied {
                println!("wrote {0}/parts.toml and {0}/operations.toml", out.display());
            }
            code
        }
        Err(e) => {
            eprintln!("servicebay: {e}");
            ExitCode::from(catalog_code(&e))
        }
    }
}

pub async fn catalog_main(cmd: CatalogCmd, cfg: Config) -> ExitCode {
    let catalog = servicebay::sync::bundles::load_catalog(&cfg.bundles_dir());
    match cmd {
        CatalogCmd::Export { out } => match servicebay::import::parts::write_export(&catalog, &out) {
            Ok(()) => {
                println!(
                    "wrote {0}/parts.csv ({1} parts) and {0}/labour.csv ({2} operations)",
                    out.display(),
                    catalog.parts.len(),
                    catalog.operations.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("servicebay: {e}");
                ExitCode::from(catalog_code(&e))
            }
        },
        CatalogCmd::Import { what, file, mapping, dry_run } => {
            let what = match catalog_what(&what) {
                Ok(w) => w,
                Err(c) => return c,
            };
            let (bytes, mapping) = match read_list(&file, what, mapping.as_deref()) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("servicebay: {e}");
                    return ExitCode::from(catalog_code(&e));
                }
            };
            let keys = match Keys::load(&cfg.keys) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("servicebay: {e}");
                    return ExitCode::from(key_code(&e));
                }
            };
            let store = match Store::open(&cfg.data_dir, &keys.db_key(), 1) {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("servicebay: {e}");
                    return ExitCode::from(store_code(&e));
                }
            };
            let shared = servicebay::catalog::SharedCatalog::new(catalog);
            let importer = CatalogImport::new(store.clone(), shared, cfg.bundles_dir());
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let r = importer.run(&Actor::system("cli"), what, &name, bytes, &mapping, dry_run).await;
            store.close();
            match r {
                Ok(r) => catalog_report(&r),
                Err(e) => {
                    eprintln!("servicebay: {e}");
                    ExitCode::from(catalog_code(&e))
                }
            }
        }
        CatalogCmd::Convert { .. } => ExitCode::SUCCESS,
    }
}
