//! The warp filter every request goes through: the web configuration's rate
//! limit, users and roles; the body (bounded in size, time and shared
//! memory); then [`super::handle`] (bounded in time); the configured
//! response headers and the request counter.

use std::sync::Arc;
use std::time::Instant;

use warp::http::{HeaderMap, Method};
use warp::Filter;

use super::connections::RequestPhase;
use super::request::{parse_query, read_body, BodyBudget, Request};
use super::{guard, handle, ApiError, Response};
use crate::app::AppState;
use crate::web::{Settings, Web};

/// The filter serving every endpoint (boxed, so the server can name it).
pub type Routes = warp::filters::BoxedFilter<(Response,)>;

/// The warp filter serving every endpoint.
pub fn routes(state: Arc<AppState>, web: Arc<Web>) -> Routes {
    // Twice the largest body: two imports at once; more wait for memory.
    let budget = BodyBudget::new(state.config.max_body_bytes.saturating_mul(2));
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<RequestPhase>())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  phase: Option<RequestPhase>,
                  body| {
                let state = state.clone();
                let settings = web.settings();
                let budget = budget.clone();
                async move {
                    let started = Instant::now();
                    let head = Head {
                        method: method.clone(),
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        phase,
                    };
                    let path = head.path.clone();
                    let (route, mut response) = respond(&state, &settings, &budget, head, body).await;
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

/// A request before its body: what the filter extracted.
struct Head {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    /// Set by the server; absent when the filter runs elsewhere.
    phase: Option<RequestPhase>,
}

/// Rate limit, authentication and role, the body (bounded in size and
/// time), then the handler (bounded in time).
async fn respond<S, B>(
    state: &Arc<AppState>,
    settings: &Settings,
    budget: &BodyBudget,
    head: Head,
    body: S,
) -> (&'static str, Response)
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let Head {
        method,
        path,
        query,
        headers,
        phase,
    } = head;
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
    let read = read_body(body, limit, declared.map(|n| n as usize), budget);
    let (body, _body_memory) = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refused(e),
        Err(_) => {
            return refused(ApiError::RequestTimeout(format!(
                "request body not received within {} s (PROMSNMP_REQUEST_TIMEOUT_SECONDS)",
                limits.request_timeout.as_secs()
            )))
        }
    };
    // From here the request is busy: its connection is not evicted for a new one.
    if let Some(phase) = phase {
        phase.handling();
    }
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
