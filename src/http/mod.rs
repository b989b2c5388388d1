//! HTTP: [`server`] accepts connections (cap, timeouts, TLS) and serves
//! [`routes`], the warp filter that applies the web configuration (rate
//! limit, users, roles), bounds the body and the time, and calls [`handle`],
//! which dispatches by method and path to the handlers:
//!
//! - [`connections`]  — open connections, the cap, eviction of the longest idle.
//! - [`body`]         — response bodies that keep their connection busy until sent.
//! - [`scrape`]       — `/snmp`, `/metrics`, `/targets`.
//! - [`admin`]        — `/promsnmp/...` (inventory, discovery, management) and `/-/reload`.
//! - [`health`]       — `/actuator/...`, and the `healthcheck` subcommand's probe.
//! - [`guard`]        — host, origin and body-type checks before dispatch (no cross-site writes).
//! - [`error`]        — [`ApiError`], the one place errors become responses.
//! - [`negotiation`]  — exposition format and gzip from the request headers.
//! - [`render_cache`] — rendered bodies of each device's latest poll.
//!
//! Polling, storage and rendering belong to other modules.

pub mod admin;
pub mod body;
pub mod connections;
pub mod error;
pub mod guard;
pub mod health;
pub mod negotiation;
pub mod render_cache;
pub mod scrape;
pub mod server;

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use crate::app::AppState;
use crate::web::{Settings, Web};
use error::{json_response, text};
pub use error::{ApiError, Response};
pub use health::probe_health;

/// A parsed request, independent of warp.
pub struct Request {
    pub method: Method,
    pub path: String,
    /// Query parameters in order; a name may repeat.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// The last value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`, in order.
    pub fn params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.param(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" || v == "1" || v.is_empty() => Ok(true),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "query parameter `{name}`: `{v}` is not true or false"
            ))),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The filter serving every endpoint (boxed, so the server can name it).
pub type Routes = warp::filters::BoxedFilter<(Response,)>;

/// The warp filter serving every endpoint.
pub fn routes(state: Arc<AppState>, web: Arc<Web>) -> Routes {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body| {
                let state = state.clone();
                let settings = web.settings();
                async move {
                    let started = Instant::now();
                    let path = path.as_str().to_string();
                    let (route, mut response) =
                        respond(&state, &settings, method.clone(), path.clone(), query, headers, body).await;
                    for (name, value) in &settings.headers {
                        response.headers_mut().insert(name.clone(), value.clone());
                    }
                    state
                        .telemetry
                        .http_requests
                        .with_label_values(&[route, method.as_str(), response.status().as_str()])
                        .inc();
                    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
                    response
                }
            },
        )
        .boxed()
}

/// Rate limit, authentication and role, the body (bounded in size and
/// time), then the handler (bounded in time).
async fn respond<S, B>(
    state: &Arc<AppState>,
    settings: &Settings,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: S,
) -> (&'static str, Response)
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let plain = is_scrape_path(&path);
    let refused = |e: ApiError| ("refused", e.into_response(plain));
    if !settings.admit_request() {
        return refused(ApiError::TooManyRequests(
            "rate limit of the web configuration exceeded".into(),
        ));
    }
    if !is_open_path(&path) {
        let authorization = headers.get("authorization").map(|v| v.as_bytes());
        let identity = match settings.users.authenticate(authorization).await {
            Ok(identity) => identity,
            Err(e) => {
                state
                    .telemetry
                    .http_auth_refusals
                    .with_label_values(&[e.label()])
                    .inc();
                return refused(ApiError::Unauthorized(e));
            }
        };
        if is_admin_path(&path) && !identity.admin {
            state
                .telemetry
                .http_auth_refusals
                .with_label_values(&["role"])
                .inc();
            return refused(ApiError::Forbidden(format!(
                "user {} may scrape but not use admin paths (promsnmp_admin_users)",
                identity.user.unwrap_or_default()
            )));
        }
    }
    let limits = &state.config.http;
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    // Reads carry no body; a write's body is bounded, and refused from its
    // Content-Length before any of it is read.
    let limit = guard::body_limit(&method, state.config.max_body_bytes);
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refused(ApiError::PayloadTooLarge(limit));
    }
    let body = match tokio::time::timeout_at(deadline, read_body(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refused(e),
        Err(_) => {
            return refused(ApiError::RequestTimeout(format!(
                "request body not received within {} s (PROMSNMP_REQUEST_TIMEOUT_SECONDS)",
                limits.request_timeout.as_secs()
            )))
        }
    };
    let request = Request {
        method,
        path,
        query: parse_query(&query),
        headers,
        body,
    };
    match tokio::time::timeout_at(deadline, handle(state, &request)).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(method = %request.method, path = %request.path, timeout_s = limits.request_timeout.as_secs(), "request not answered in time (PROMSNMP_REQUEST_TIMEOUT_SECONDS)");
            (
                "timeout",
                ApiError::Unavailable(format!(
                    "request not answered within {} s (PROMSNMP_REQUEST_TIMEOUT_SECONDS)",
                    limits.request_timeout.as_secs()
                ))
                .into_response(plain),
            )
        }
    }
}

/// The scrape endpoints, which answer errors as one line of text.
fn is_scrape_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/snmp" | "/metrics" | "/targets"
    )
}

/// Paths of the admin role: the inventory, discovery and management API.
pub fn is_admin_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == "/promsnmp"
        || path.starts_with("/promsnmp/")
        || path == "/-/reload"
        // `//promsnmp` and the like are 404 here, but never let one through unauthenticated.
        || path.starts_with("//")
}

/// Paths answered without authentication: liveness and readiness say UP or
/// DOWN and nothing else, so orchestrators and load balancers can probe.
fn is_open_path(path: &str) -> bool {
    matches!(
        path,
        "/actuator/health/liveness" | "/actuator/health/readiness"
    )
}

async fn read_body<S, B>(stream: S, limit: usize) -> Result<Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    tokio::pin!(stream);
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// Decodes `a=b&c=d` with percent-escapes and `+` as space, keeping order and repeats.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Dispatches one request; returns the route template (for metrics) and the response.
pub async fn handle(state: &Arc<AppState>, req: &Request) -> (&'static str, Response) {
    let path = req.path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    // One leading slash only: `//promsnmp/...` is not an admin path here
    // either (a proxy's prefix rule for admin paths must not be sidestepped).
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let m = &req.method;
    if let Err(e) = guard::check(req, &state.config.allowed_hosts) {
        let plain = matches!(segments.as_slice(), ["snmp" | "metrics" | "targets"]);
        return ("refused", e.into_response(plain));
    }
    let get = m == Method::GET || m == Method::HEAD;
    let post = m == Method::POST;
    let delete = m == Method::DELETE;
    let (route, plain, result): (&'static str, bool, Result<Response, ApiError>) =
        match segments.as_slice() {
            ["snmp"] if get => ("/snmp", true, scrape::snmp(state, req).await),
            ["metrics"] if get => ("/metrics", true, scrape::metrics(state, req).await),
            ["targets"] if get => ("/targets", false, scrape::targets(state).await),
            ["promsnmp", "inventory"] if get => (
                "/promsnmp/inventory",
                false,
                admin::export_inventory(state).await,
            ),
            ["promsnmp", "inventory"] if post => (
                "/promsnmp/inventory",
                false,
                admin::import_inventory(state, req).await,
            ),
            ["promsnmp", "discovery"] if get => {
                ("/promsnmp/discovery", false, admin::list_seeds(state).await)
            }
            ["promsnmp", "discovery"] if post => (
                "/promsnmp/discovery",
                false,
                admin::submit_discovery(state, req).await,
            ),
            ["promsnmp", "discovery"] if delete => (
                "/promsnmp/discovery",
                false,
                admin::delete_seeds(state, None).await,
            ),
            ["promsnmp", "discovery", id] if get => (
                "/promsnmp/discovery/{id}",
                false,
                admin::get_seed(state, &percent_decode(id)).await,
            ),
            ["promsnmp", "discovery", id] if delete => (
                "/promsnmp/discovery/{id}",
                false,
                admin::delete_seeds(state, Some(&percent_decode(id))).await,
            ),
            ["promsnmp", "hello"] if get => (
                "/promsnmp/hello",
                false,
                Ok(text(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    b"Hello from promsnmp\n".to_vec(),
                )),
            ),
            ["promsnmp", "evictCache"] if post => (
                "/promsnmp/evictCache",
                false,
                admin::evict_cache(state).await,
            ),
            ["promsnmp", "evictCache"] if get => (
                "/promsnmp/evictCache",
                false,
                Err(ApiError::MethodMoved {
                    method: m.clone(),
                    hint: "evicting the cache changes state: use POST",
                }),
            ),
            ["promsnmp", "authProtocols"] if get => (
                "/promsnmp/authProtocols",
                false,
                Ok(admin::auth_protocols()),
            ),
            ["promsnmp", "privProtocols"] if get => (
                "/promsnmp/privProtocols",
                false,
                Ok(admin::priv_protocols()),
            ),
            ["promsnmp", "threadPools"] if get => (
                "/promsnmp/threadPools",
                false,
                admin::thread_pools(state).await,
            ),
            ["-", "reload"] if post => ("/-/reload", false, admin::reload(state).await),
            ["actuator", "health"] if get => {
                ("/actuator/health", false, Ok(health::health(state).await))
            }
            ["actuator", "health", "liveness"] if get => (
                "/actuator/health/liveness",
                false,
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"status": "UP"}),
                )),
            ),
            ["actuator", "health", "readiness"] if get => (
                "/actuator/health/readiness",
                false,
                Ok(health::readiness(state)),
            ),
            ["actuator", "prometheus"] if get => (
                "/actuator/prometheus",
                false,
                Ok(health::self_metrics(state).await),
            ),
            ["snmp" | "metrics" | "targets"]
            | ["promsnmp", "inventory" | "discovery" | "hello" | "evictCache" | "authProtocols"
            | "privProtocols" | "threadPools"]
            | ["promsnmp", "discovery", _]
            | ["-", "reload"]
            | ["actuator", "health" | "prometheus"]
            | ["actuator", "health", "liveness" | "readiness"] => {
                ("other", false, Err(ApiError::MethodNotAllowed(m.clone())))
            }
            _ => (
                "other",
                false,
                Err(ApiError::NotFound(format!("no such endpoint: {path}"))),
            ),
        };
    let response = result.unwrap_or_else(|e| {
        if e.status().is_server_error() {
            tracing::warn!(route, error = %e, "request failed");
        }
        e.into_response(plain)
    });
    (route, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(
            "target=127.0.0.1%3A1161&live=true&x=a+b&bad=%zz&tail=%4&module=a&module=b%2Cc",
        );
        let request = Request {
            method: Method::GET,
            path: "/snmp".into(),
            query: q,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(request.param("target"), Some("127.0.0.1:1161"));
        assert_eq!(request.param("live"), Some("true"));
        assert_eq!(request.param("x"), Some("a b"));
        assert_eq!(request.param("bad"), Some("%zz"));
        assert_eq!(request.param("tail"), Some("%4"));
        assert_eq!(request.params("module").collect::<Vec<_>>(), ["a", "b,c"]);
        assert_eq!(request.param("module"), Some("b,c"));
    }
}
