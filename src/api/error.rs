//! The one mapping from errors to HTTP: every service error and every warp rejection becomes a JSON
//! body `{"error":{"code","message","field"?,…}}` with the right status. Messages tell the tablet
//! user what to do; internal details go to the log with the request id, never to the client.

use http::StatusCode;
use serde_json::{json, Value};
use warp::reply::Response;
use warp::Reply;

use crate::auth::AuthError;
use crate::case::CaseError;
use crate::domain::TransitionError;
use crate::media::MediaError;
use crate::staff::StaffError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub extra: Option<Value>,
    pub retry_after: Option<u64>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, extra: None, retry_after: None }
    }

    pub fn field(status: StatusCode, code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
        ApiError { field: Some(field.to_string()), ..ApiError::new(status, code, message) }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "log in first (Authorization: Bearer <token>)")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field {
            body["field"] = json!(f);
        }
        if let Some(Value::Object(extra)) = &self.extra {
            for (k, v) in extra {
                body[k] = v.clone();
            }
        }
        let mut resp = warp::reply::with_status(warp::reply::json(&json!({ "error": body })), self.status).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be reused.
            resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        if let Some(s) = self.retry_after {
            if let Ok(v) = http::HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Busy | StoreError::Closed => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the appliance is busy; retry in a moment")
            },
            StoreError::DiskFull => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string()),
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", "the disk is full; nothing was written")
            }
            e => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the request was not applied")
            }
        }
    }
}

impl From<CaseError> for ApiError {
    fn from(e: CaseError) -> ApiError {
        match e {
            CaseError::Invalid(i) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &i.field, i.to_string()),
            CaseError::NotFound(what) => ApiError::not_found(what),
            CaseError::Transition(t) => t.into(),
            CaseError::Store(s) => s.into(),
            CaseError::State { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            CaseError::Unavailable(m) => ApiError { retry_after: None, ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m) },
            CaseError::Intake(e @ (crate::intake::IntakeError::EmptyText | crate::intake::IntakeError::TooLong(_))) => {
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "text", format!("text: {e}"))
            }
            CaseError::Intake(e) => {
                tracing::error!(error = %e, "intake failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the assistant could not answer; hand the case to a person")
            }
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> ApiError {
        let message = e.to_string();
        match e {
            TransitionError::Illegal { current, allowed, .. } => ApiError {
                extra: Some(json!({ "current": current, "allowed": allowed })),
                ..ApiError::new(StatusCode::CONFLICT, "illegal_transition", message)
            },
            TransitionError::NotPaused { current } => {
                ApiError { extra: Some(json!({ "current": current })), ..ApiError::new(StatusCode::CONFLICT, "not_paused", message) }
            }
            TransitionError::Forbidden { .. } => ApiError::forbidden(message),
            TransitionError::StageOwned { current, endpoint, .. } => ApiError {
                extra: Some(json!({ "current": current, "stage_endpoint": endpoint })),
                ..ApiError::new(StatusCode::CONFLICT, "stage_owned", message)
            },
            TransitionError::Precondition { current, missing, .. } => ApiError {
                extra: Some(json!({ "current": current, "missing": missing })),
                ..ApiError::new(StatusCode::CONFLICT, "precondition_failed", message)
            },
        }
    }
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> ApiError {
        match e {
            StaffError::Auth(AuthError::BadCredentials) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", "wrong username or password")
            }
            StaffError::Auth(AuthError::Throttled(s)) => ApiError {
                retry_after: Some(s),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", format!("too many failed logins; try again in {s} s"))
            },
            StaffError::Auth(AuthError::NoSession) => ApiError::unauthorized(),
            StaffError::Auth(AuthError::Disabled) => ApiError::forbidden("this account is disabled; ask a manager"),
            StaffError::Auth(AuthError::Hash) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"),
            StaffError::Invalid(i) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", &i.field, i.to_string()),
            StaffError::NotFound => ApiError::not_found("user"),
            StaffError::Store(s) => s.into(),
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> ApiError {
        let m = e.to_string();
        match e {
            MediaError::TooLarge { .. } | MediaError::TooManyPixels { .. } => {
                ApiError::field(StatusCode::PAYLOAD_TOO_LARGE, "photo_too_large", "file", m)
            }
            MediaError::Empty | MediaError::Unsupported | MediaError::Corrupt(_) => {
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_photo", "file", m)
            }
            MediaError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", "the disk is full; nothing was stored")
            }
            MediaError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ApiError::new(StatusCode::GONE, "photo_removed", "this photo's file was removed (retention or erasure)")
            }
            MediaError::Io { .. } => {
                tracing::error!(error = %m, "photo storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "could not store the photo; nothing was stored")
            }
            MediaError::Key(crate::keys::KeyError::Destroyed(_)) => {
                ApiError::new(StatusCode::GONE, "photo_erased", "this photo was erased with its customer's data")
            }
            MediaError::Key(_) | MediaError::Tampered(_) => {
                tracing::error!(error = %m, "photo key or integrity error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "photo_unreadable", "the photo cannot be decrypted; see the log")
            }
        }
    }
}

impl From<crate::protection::ProtectionError> for ApiError {
    fn from(e: crate::protection::ProtectionError) -> ApiError {
        use crate::protection::ProtectionError as P;
        let m = e.to_string();
        match e {
            P::Store(s) => s.into(),
            P::NotFound => ApiError::not_found("customer"),
            P::OnHold(..) => ApiError::new(StatusCode::CONFLICT, "legal_hold", m),
            P::Invalid(_) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "reason", m),
            P::Key(_) | P::Backup(_) | P::Export(_) => {
                tracing::error!(error = %m, "data protection operation failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
            }
        }
    }
}

impl From<crate::import::dms::DmsError> for ApiError {
    fn from(e: crate::import::dms::DmsError) -> ApiError {
        use crate::import::dms::DmsError as D;
        let m = e.to_string();
        match e {
            D::Store(s) => s.into(),
            // The file itself (format, encoding, a missing column): the manager fixes the export.
            D::Table(_) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_file", "file", m),
            D::UnknownMapping(..) | D::MappingFile { .. } => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "mapping", m),
            D::Refused(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rows_refused", m),
            D::BuiltinMapping { .. } => {
                tracing::error!(error = %m, "a built-in import mapping is broken");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the request was not applied")
            }
        }
    }
}

impl From<crate::import::parts::CatalogImportError> for ApiError {
    fn from(e: crate::import::parts::CatalogImportError) -> ApiError {
        use crate::import::parts::CatalogImportError as C;
        let m = e.to_string();
        match e {
            C::Store(s) => s.into(),
            C::Table(_) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_file", "file", m),
            C::UnknownMapping(..) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "mapping", m),
            C::Rows(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rows_refused", m),
            C::Io { .. } | C::Catalog(_) => {
                tracing::error!(error = %m, "catalogue import failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "import_failed", "the import could not be completed; nothing was changed")
            }
        }
    }
}

impl From<crate::import::ImportError> for ApiError {
    fn from(e: crate::import::ImportError) -> ApiError {
        use crate::import::ImportError as I;
        match e {
            I::Dms(d) => d.into(),
            I::Catalog(c) => c.into(),
            I::Table(t) => ApiError::field(StatusCode::BAD_REQUEST, "invalid_file", "file", t.to_string()),
            I::UnknownMapping { .. } => ApiError::field(StatusCode::BAD_REQUEST, "invalid_field", "mapping", e.to_string()),
        }
    }
}

/// Turn a handler result into a response (handlers never reject after routing and auth).
pub fn respond<T: Reply>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => v.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Rejections that escaped routing: ours (auth, body) and warp's own.
pub async fn recover(r: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let e = if let Some(e) = r.find::<ApiError>() {
        ApiError {
            status: e.status,
            code: e.code,
            message: e.message.clone(),
            field: e.field.clone(),
            extra: e.extra.clone(),
            retry_after: e.retry_after,
        }
    } else if r.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is larger than the configured limit")
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "length_required", "send a Content-Length header")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send multipart/form-data for photos")
    } else if r.find::<warp::reject::InvalidHeader>().is_some() || r.find::<warp::reject::MissingHeader>().is_some() {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_header", "a required header is missing or invalid")
    } else {
        tracing::warn!(rejection = ?r, "unhandled rejection");
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the request could not be understood")
    };
    Ok(e.into_response())
}
