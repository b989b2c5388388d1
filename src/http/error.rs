//! The one place errors become HTTP responses: [`ApiError`] and its status
//! code; a single text line on scrape endpoints (Prometheus shows it as the
//! scrape error), JSON elsewhere. Also the small response builders.

use serde_json::json;
use warp::http::{Method, StatusCode};

use crate::collector::CollectError;
use crate::inventory::InvalidInventory;
use crate::store::StoreError;

pub type Response = warp::reply::Response;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(InvalidInventory),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the inventory (an ambiguous sysName, a
    /// duplicate id or endpoint); `ids` are the entries it conflicts with.
    #[error("{message}")]
    Conflict { message: String, ids: Vec<String> },
    /// `If-Match` names another version than the current one.
    #[error("If-Match does not name the current inventory, which is version {version} (ETag {etag}); nothing was changed: read it again and retry")]
    PreconditionFailed { version: u64, etag: String },
    /// The device's agent, probed on the client's behalf, did not answer or
    /// refused: the request cannot be carried out (422, not a server error).
    #[error("{0}")]
    ProbeFailed(String),
    #[error("method {0} not allowed here")]
    MethodNotAllowed(Method),
    /// A method the path had once (the Java PromSNMP's), with what to use now.
    #[error("method {method} not allowed here: {hint}")]
    MethodMoved { method: Method, hint: &'static str },
    /// Authentication failed; the body says no more than that.
    #[error("Unauthorized")]
    Unauthorized(crate::web::AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => ApiError::Invalid(i),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict { message, ids } => ApiError::Conflict { message, ids },
            StoreError::PreconditionFailed { version, etag } => {
                ApiError::PreconditionFailed { version, etag }
            }
            StoreError::StaleEpoch(_) | StoreError::Unreadable(_) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

impl From<InvalidInventory> for ApiError {
    fn from(e: InvalidInventory) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<crate::discovery::Busy> for ApiError {
    fn from(e: crate::discovery::Busy) -> Self {
        ApiError::TooManyRequests(e.to_string())
    }
}

impl From<CollectError> for ApiError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::Store(s) => ApiError::from(s),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::ProbeFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) | ApiError::MethodMoved { .. } => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: a single text line for scrape endpoints (Prometheus shows
    /// it as the scrape error), JSON elsewhere.
    pub fn into_response(self, plain: bool) -> Response {
        let status = self.status();
        if let ApiError::Unauthorized(_) = self {
            // Nothing about users or why: the same answer for every failure.
            let mut r = text(
                status,
                "text/plain; charset=utf-8",
                b"Unauthorized\n".to_vec(),
            );
            r.headers_mut().insert(
                "www-authenticate",
                warp::http::HeaderValue::from_static("Basic realm=\"promsnmp\""),
            );
            return r;
        }
        if plain {
            let line = self.to_string().replace('\n', " ");
            return text(
                status,
                "text/plain; charset=utf-8",
                format!("{line}\n").into_bytes(),
            );
        }
        let mut body = json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or(""),
            "message": self.to_string(),
        });
        match &self {
            ApiError::Invalid(i) => {
                body["field"] = json!(i.field);
                body["message"] = json!(i.message);
            }
            ApiError::Conflict { ids, .. } => body["ids"] = json!(ids),
            ApiError::PreconditionFailed { version, etag } => {
                body["version"] = json!(version);
                body["etag"] = json!(etag);
            }
            _ => {}
        }
        let mut r = json_response(status, &body);
        if let ApiError::PreconditionFailed { etag, .. } = &self {
            // The current tag, so a client can tell what it would overwrite.
            if let Ok(v) = etag.parse() {
                r.headers_mut().insert("etag", v);
            }
        }
        r
    }
}

pub fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", content_type.parse().expect("valid header"));
    r
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    text(
        status,
        "application/json",
        serde_json::to_vec(value).expect("json serialises"),
    )
}

pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    text(status, "application/json", bytes)
}
