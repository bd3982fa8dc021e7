//! The manager's import screen (数据导入): pick what the file is and which shipped mapping reads it,
//! upload it for a dry run (the report lists every refused row by line and field), then confirm.
//! The same `Imports` service as `POST /api/v1/imports/{kind}`; audited there.
//!
//! With htmx the form posts in the background and only the report is swapped, so the chosen file
//! stays selected for the confirmation and a progress bar follows the upload.

use std::sync::Arc;

use askama::Template;
use http::StatusCode;
use warp::reply::Response;

use super::*;
use crate::import::{ImportKind, MappingInfo, Report};

pub struct SourceOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One line of the counts table: what, new, changed, unchanged.
pub struct CountRow {
    pub what: String,
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
}

pub struct ErrorRow {
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// The outcome shown under the form.
pub struct Outcome {
    pub dry_run: bool,
    pub refused: bool,
    pub summary: String,
    pub counts: Vec<CountRow>,
    pub errors: Vec<ErrorRow>,
    /// More refused rows than listed.
    pub more: Option<String>,
    pub nothing_to_do: bool,
}

#[derive(Template)]
#[template(path = "import.html", config = "src/ui/askama.toml")]
struct ImportPage {
    c: Chrome,
    sources: Vec<SourceOption>,
    outcome: Option<Outcome>,
    failure: Option<String>,
}

fn sources(t: &Strings, all: &[MappingInfo], chosen: Option<&str>) -> Vec<SourceOption> {
    all.iter()
        .enumerate()
        .map(|(i, m)| {
            let value = format!("{}/{}", m.kind.as_str(), m.name);
            let selected = chosen.map_or(i == 0, |c| c == value);
            SourceOption { label: format!("{} · {}", t.s(&format!("import.kind.{}", m.kind.as_str())), m.description), value, selected }
        })
        .collect()
}

fn outcome(t: &Strings, r: &Report) -> Outcome {
    let (rows, elapsed, counts, errors_total, nothing) = match r {
        Report::Dms(d) => {
            let c = |key: &str, x: &crate::import::dms::Counts| CountRow {
                what: t.s(key).to_string(),
                new: x.new,
                changed: x.updated,
                unchanged: x.unchanged,
            };
            let counts = vec![c("import.customers", &d.customers), c("import.vehicles", &d.vehicles), c("import.visits", &d.visits)];
            let nothing = [d.customers, d.vehicles, d.visits].iter().all(|x| x.new == 0 && x.updated == 0);
            (d.rows, d.elapsed_ms, counts, d.errors_total, nothing)
        }
        Report::Catalog(cr) => {
            let key = if cr.file == crate::import::parts::CatalogFile::Parts { "import.parts" } else { "import.operations" };
            let counts = vec![CountRow { what: t.s(key).to_string(), new: cr.new, changed: cr.changed, unchanged: cr.unchanged }];
            (cr.rows, cr.elapsed_ms, counts, cr.errors.len(), cr.new == 0 && cr.changed == 0)
        }
    };
    let errors: Vec<ErrorRow> = r
        .errors()
        .iter()
        .map(|e| ErrorRow { line: e.line, field: t.or(&format!("import.field.{}", e.field), &e.field), message: e.message.clone() })
        .collect();
    let more = (errors_total > errors.len()).then(|| t.f("import.more_errors", &[("n", &(errors_total - errors.len()).to_string())]));
    let secs = format!("{:.1}", elapsed as f64 / 1000.0);
    let summary = t.f("import.summary", &[("rows", &rows.to_string()), ("secs", &secs)]);
    Outcome { dry_run: r.dry_run(), refused: r.refused(), summary, counts, errors, more, nothing_to_do: nothing }
}

fn render(p: &Page, q: &Query, chosen: Option<&str>, outcome: Option<Outcome>, failure: Option<String>) -> Response {
    match crate::import::mappings() {
        Ok(all) => {
            let page = ImportPage { c: p.chrome(p.t.s("import.title"), q), sources: sources(&p.t, &all, chosen), outcome, failure };
            html(&page, StatusCode::OK)
        }
        Err(e) => failed(p, ApiError::from(e)),
    }
}

pub async fn import_page(p: Page, _s: Arc<ApiState>, q: Query) -> Response {
    render(&p, &q, None, None, None)
}

/// The message a manager reads for an error before anything was imported.
fn failure_text(t: &Strings, e: &ApiError) -> String {
    let base = t.or(&format!("err.{}", e.code), t.s("err.generic"));
    if e.code == "invalid_file" {
        format!("{base}：{}", e.message)
    } else {
        base
    }
}

pub async fn post_import(p: Page, s: Arc<ApiState>, form: warp::multipart::FormData) -> Response {
    let q = Query::default();
    let up = match read_file_form(form, "file", crate::import::table::MAX_BYTES as u64).await.and_then(|u| u.checked(&p)) {
        Ok(u) => u,
        Err(e) if e.code == "forbidden" => return failed(&p, e),
        Err(e) => return render(&p, &q, None, None, Some(failure_text(&p.t, &e))),
    };
    let source = up.fields.get("source").cloned().unwrap_or_default();
    let chosen = Some(source.as_str());
    let Some((kind, mapping)) = source.split_once('/').and_then(|(k, m)| Some((ImportKind::parse(k)?, m.to_string()))) else {
        return render(&p, &q, None, None, Some(p.t.s("import.pick_source").to_string()));
    };
    let (Some(bytes), Some(name)) = (up.file, up.file_name.filter(|n| !n.is_empty())) else {
        return render(&p, &q, chosen, None, Some(p.t.s("import.pick_file").to_string()));
    };
    let dry_run = up.fields.get("dry_run").map(String::as_str) != Some("0");
    match s.imports.run(&p.ctx.actor, kind, &name, bytes, Some(&mapping), dry_run).await {
        Ok(r) => render(&p, &q, chosen, Some(outcome(&p.t, &r)), None),
        Err(e) => {
            let e = ApiError::from(e);
            render(&p, &q, chosen, None, Some(failure_text(&p.t, &e)))
        }
    }
}
