//! Store data import routes (managers): the shipped mappings, and one file in (a DMS export, a
//! parts or a labour list) as multipart, dry run or for real. One service call each
//! (`crate::import::Imports`); the manager's page calls the same service.
//!
//! A file with refused rows answers 422 `rows_refused` with the whole report (every bad row's line
//! and field): nothing was imported. A file that cannot be read at all answers 400 `invalid_file`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Buf;
use futures_util::TryStreamExt;
use http::StatusCode;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::reply::{json as js, Response};
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::policy::RouteId::*;
use super::{auth, with, ApiState, Ctx};
use crate::import::{ImportKind, Report};

/// A multipart form: one file part and short text fields (128 bytes, the edge's control-character
/// rule). The whole form is read (bounded by the filter's cap) before any answer.
pub struct FileForm {
    pub fields: BTreeMap<String, String>,
    pub file: Option<Vec<u8>>,
    pub file_name: Option<String>,
}

pub async fn read_file_form(form: warp::multipart::FormData, file_field: &str, cap: u64) -> Result<FileForm, ApiError> {
    let mut up = FileForm { fields: BTreeMap::new(), file: None, file_name: None };
    let mut parts = form;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_multipart", m);
    while let Some(part) = parts.try_next().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
        let name = part.name().to_string();
        let is_file = name == file_field;
        let limit = if is_file { cap } else { 128 };
        if is_file {
            up.file_name = part.filename().map(str::to_string);
        }
        let mut data = Vec::new();
        let mut seen = 0u64;
        let mut stream = part.stream();
        while let Some(chunk) = stream.try_next().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
            seen += chunk.remaining() as u64;
            if seen <= limit {
                data.extend_from_slice(chunk.chunk());
            }
        }
        if seen > limit {
            return Err(if is_file {
                let code = if file_field == "photo" { "photo_too_large" } else { "file_too_large" };
                ApiError::field(StatusCode::PAYLOAD_TOO_LARGE, code, "file", format!("the file is larger than {cap} bytes"))
            } else {
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &name, format!("{name}: too long"))
            });
        }
        if is_file {
            up.file = (!data.is_empty()).then_some(data);
            continue;
        }
        let v = String::from_utf8_lossy(&data).trim().to_string();
        if let Err(e) = crate::domain::validate::plain_text(&name, &v) {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &name, e.to_string()));
        }
        up.fields.insert(name, v);
    }
    Ok(up)
}

async fn mappings(_s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(crate::import::mappings().map(|m| js(&json!({ "mappings": m })).into_response()).map_err(ApiError::from))
}

/// The answer to a run: 200 with the report, or 422 with it when rows were refused.
pub fn report_response(r: &Report) -> Response {
    let body = serde_json::to_value(r).unwrap_or_default();
    if r.refused() {
        let n = r.errors().len();
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rows_refused",
            format!("{n} rows were refused; nothing was imported (the report names each line and field)"),
        );
        e.extra = Some(json!({ "report": body }));
        return e.into_response();
    }
    js(&body).into_response()
}

async fn run(kind: String, s: Arc<ApiState>, c: Ctx, form: warp::multipart::FormData) -> Response {
    let r = async {
        let mut f = read_file_form(form, "file", crate::import::table::MAX_BYTES as u64).await?;
        let kind = ImportKind::parse(&kind).ok_or_else(|| ApiError::not_found("import kind"))?;
        for k in f.fields.keys() {
            if !matches!(k.as_str(), "mapping" | "dry_run") {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    k,
                    format!("unknown form field; send 'file', 'mapping', 'dry_run'"),
                ));
            }
        }
        let dry_run = match f.fields.get("dry_run").map(String::as_str) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "dry_run", "dry_run: true or false")),
        };
        let bytes =
            f.file.take().ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "file", "file: missing or empty"))?;
        let name = f.file_name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "file",
                "file: the part needs a file name (.csv, .xlsx, .xls or .ods)",
            )
        })?;
        let report = s.imports.run(&c.actor, kind, &name, bytes, f.fields.get("mapping").map(String::as_str), dry_run).await?;
        Ok(report_response(&report))
    };
    respond(r.await)
}

/// The routes, for `api::routes` to fold in with the rest.
pub(super) fn routes(s: &Arc<ApiState>) -> Vec<BoxedFilter<(Response,)>> {
    let st = || with(s.clone());
    let a = |id| auth(s.clone(), id);
    let v1 = || warp::path!("api" / "v1" / ..);
    let cap = super::drain_cap(crate::import::table::MAX_BYTES as u64);
    vec![
        v1().and(warp::path!("imports" / "mappings")).and(warp::get()).and(st()).and(a(ImportsMappings)).then(mappings).boxed(),
        v1().and(warp::path!("imports" / String))
            .and(warp::post())
            .and(st())
            .and(a(ImportsRun))
            .and(warp::multipart::form().max_length(cap))
            .then(run)
            .boxed(),
    ]
}
