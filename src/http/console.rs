//! The web console at `/`: one page, a script and a style sheet, embedded
//! in the binary (no build step). The script uses the public API only —
//! `/promsnmp/status/…`, `/promsnmp/inventory/devices/…` (with `If-Match`),
//! `/promsnmp/discovery…`, `/promsnmp/settings`, `/actuator/health` — so
//! it sees and may do what the user's role allows, nothing more.

use warp::http::StatusCode;

use super::error::{text, ApiError, Response};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
/// The script and style of the API page (`/swagger-ui.html`, `api_docs`).
const API_DOCS_SCRIPT: &str = include_str!("console/api-docs.js");
const API_DOCS_STYLE: &str = include_str!("console/api-docs.css");

/// Scripts and styles from this origin only; device data is text, never markup.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// A page or asset with the console's headers (the API page uses them too).
pub fn asset_response(content_type: &str, body: &str) -> Response {
    let mut r = text(StatusCode::OK, content_type, body.as_bytes().to_vec());
    let headers = r.headers_mut();
    headers.insert("content-security-policy", POLICY.parse().expect("header"));
    headers.insert("x-content-type-options", "nosniff".parse().expect("header"));
    headers.insert("cache-control", "no-cache".parse().expect("header"));
    r
}

pub fn page() -> Response {
    asset_response("text/html; charset=utf-8", PAGE)
}

/// `/console/console.{js,css}` and `/console/api-docs.{js,css}`.
pub fn asset(name: &str) -> Result<Response, ApiError> {
    match name {
        "console.js" => Ok(asset_response("text/javascript; charset=utf-8", SCRIPT)),
        "console.css" => Ok(asset_response("text/css; charset=utf-8", STYLE)),
        "api-docs.js" => Ok(asset_response(
            "text/javascript; charset=utf-8",
            API_DOCS_SCRIPT,
        )),
        "api-docs.css" => Ok(asset_response("text/css; charset=utf-8", API_DOCS_STYLE)),
        other => Err(ApiError::NotFound(format!("no console asset `{other}`"))),
    }
}
