//! The manager's data-protection routes: find a customer, export or erase their data, legal holds,
//! and what protects the data (key mode, backups, retention). One service call each.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use warp::reply::{json as js, Response};

use super::error::{respond, ApiError};
use super::{ApiState, Ctx};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindQuery {
    q: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseReq {
    /// The customer's id typed again: an erasure is never one stray tap.
    confirm: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldReq {
    /// Why the case is held; null releases the hold.
    reason: Option<String>,
}

pub async fn find(s: Arc<ApiState>, c: Ctx, q: FindQuery) -> Response {
    if q.q.trim().is_empty() || q.q.chars().count() > 64 || q.q.chars().any(char::is_control) {
        return ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", "q", "q: a customer id, phone, plate or VIN (1-64 characters)")
            .into_response();
    }
    respond(s.protection.find(&c.actor, q.q).await.map(|v| js(&json!({ "items": v }))).map_err(ApiError::from))
}

pub async fn export(id: String, s: Arc<ApiState>, c: Ctx) -> Response {
    respond(s.protection.export(&c.actor, id.clone()).await.map_err(ApiError::from).map(|zip| zip_download(&id, zip)))
}

/// A customer's export as a download (the API and the manager's screen answer the same).
pub fn zip_download(customer_id: &str, zip: Vec<u8>) -> Response {
    let mut r = Response::new(zip.into());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/zip"));
    let name: String = customer_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    if let Ok(v) = http::HeaderValue::from_str(&format!("attachment; filename=\"customer-{name}.zip\"")) {
        h.insert(http::header::CONTENT_DISPOSITION, v);
    }
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

pub async fn erase(id: String, s: Arc<ApiState>, c: Ctx, req: EraseReq) -> Response {
    if req.confirm != id {
        return ApiError::field(StatusCode::BAD_REQUEST, "confirm_mismatch", "confirm", "confirm: type the customer's id to erase them")
            .into_response();
    }
    respond(s.protection.erase(&c.actor, id, "request").await.map(|e| js(&e)).map_err(ApiError::from))
}

pub async fn legal_hold(id: String, s: Arc<ApiState>, c: Ctx, req: HoldReq) -> Response {
    let held = req.reason.is_some();
    respond(
        s.protection
            .set_legal_hold(&c.actor, id.clone(), req.reason)
            .await
            .map(|_| js(&json!({ "case_id": id, "legal_hold": held })))
            .map_err(ApiError::from),
    )
}

pub async fn status(s: Arc<ApiState>, _c: Ctx) -> Response {
    respond(s.protection.status().await.map(|v| js(&v)).map_err(ApiError::from))
}
