//! HTTP: [`server`] accepts connections (cap, timeouts, TLS) and serves
//! [`routes`], the warp filter that applies the web configuration (rate
//! limit, users, roles), bounds the body and the time, and calls [`handle`],
//! which dispatches by method and path to the handlers:
//!
//! - [`server`]       — the accept loop: connection cap, TLS handshake, timeouts, drain.
//! - [`connections`]  — open connections by phase; the cap; which one is evicted.
//! - [`body`]         — response bodies that keep their connection busy until sent.
//! - [`routes`]       — the filter: rate limit, users, roles, bounded body and time.
//! - [`request`]      — [`Request`], query decoding, body reading within the memory budget.
//! - [`scrape`]       — `/snmp`, `/metrics`, `/targets`.
//! - [`admin`]        — `/promsnmp/...` (inventory, discovery, management) and `/-/reload`.
//! - [`inventory_api`] — `/promsnmp/inventory/devices|seeds[/{id}]`: one device or seed;
//!   inventory `ETag` and `If-Match`.
//! - [`merge_patch`]  — JSON Merge Patch (RFC 7396) for `PATCH`.
//! - [`api_docs`]     — the OpenAPI 3 document (`/v3/api-docs`) and its page (`/swagger-ui.html`).
//! - [`health`]       — `/actuator/...`, and the `healthcheck` subcommand's probe.
//! - [`status`]       — `/promsnmp/status/...` and `/promsnmp/settings`: devices' polls, configuration.
//! - [`console`]      — the web console at `/` (embedded page, script and style).
//! - [`client`]       — a small HTTP client for the subcommands that ask a running replica.
//! - [`guard`]        — host, origin and body-type checks before dispatch (no cross-site writes).
//! - [`error`]        — [`ApiError`], the one place errors become responses.
//! - [`negotiation`]  — exposition format and gzip from the request headers.
//! - [`render_cache`] — rendered bodies of each device's latest poll.
//!
//! Polling, storage and rendering belong to other modules.

pub mod admin;
pub mod api_docs;
pub mod body;
pub mod client;
pub mod connections;
pub mod console;
pub mod error;
pub mod guard;
pub mod health;
pub mod inventory_api;
pub mod merge_patch;
pub mod negotiation;
pub mod render_cache;
pub mod request;
pub mod routes;
pub mod scrape;
pub mod server;
pub mod status;

use std::sync::Arc;

use warp::http::{Method, StatusCode};

use crate::app::AppState;
use error::{json_response, text};
pub use error::{ApiError, Response};
pub use health::probe_health;
use inventory_api as inv;
use request::percent_decode_segment;
pub use request::{parse_query, Request};
pub use routes::{routes, Routes};

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
            ["promsnmp", "inventory", collection @ ("devices" | "seeds"), rest @ ..]
                if rest.len() <= 1 =>
            {
                let key = rest.first().map(|id| percent_decode_segment(id));
                let (route, result) = inv::dispatch(state, req, collection, key.as_deref()).await;
                (route, false, result)
            }
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
            ["promsnmp", "discovery", "jobs"] if get => (
                "/promsnmp/discovery/jobs",
                false,
                admin::list_jobs(state, req).await,
            ),
            ["promsnmp", "discovery", id] if get => (
                "/promsnmp/discovery/{id}",
                false,
                admin::get_seed(state, &percent_decode_segment(id)).await,
            ),
            ["promsnmp", "discovery", id] if delete => (
                "/promsnmp/discovery/{id}",
                false,
                admin::delete_seeds(state, Some(&percent_decode_segment(id))).await,
            ),
            ["promsnmp", "status", "devices"] if get => (
                "/promsnmp/status/devices",
                false,
                status::devices(state).await,
            ),
            ["promsnmp", "status", "devices", id] if get => (
                "/promsnmp/status/devices/{id}",
                false,
                status::device(state, &percent_decode_segment(id)).await,
            ),
            ["promsnmp", "status", "fleet"] if get => {
                ("/promsnmp/status/fleet", false, status::fleet(state).await)
            }
            ["promsnmp", "settings"] if get => {
                ("/promsnmp/settings", false, status::settings(state).await)
            }
            [""] if get => ("/", false, Ok(console::page())),
            ["console", asset] if get => ("/console/{asset}", false, console::asset(asset)),
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
            ["actuator", "info"] if get => (
                "/actuator/info",
                false,
                Ok(json_response(StatusCode::OK, &crate::identity::info_json())),
            ),
            ["v3", "api-docs"] if get => ("/v3/api-docs", false, Ok(api_docs::json())),
            ["swagger-ui.html"] if get => ("/swagger-ui.html", false, Ok(api_docs::page())),
            ["actuator", "prometheus"] if get => (
                "/actuator/prometheus",
                false,
                Ok(health::self_metrics(state).await),
            ),
            ["snmp" | "metrics" | "targets"]
            | ["promsnmp", "inventory" | "discovery" | "hello" | "evictCache" | "authProtocols"
            | "privProtocols" | "threadPools"]
            | ["promsnmp", "discovery", _]
            | ["promsnmp", "status", "devices" | "fleet"]
            | ["promsnmp", "status", "devices", _]
            | ["promsnmp", "settings"]
            | [""]
            | ["console", _]
            | ["-", "reload"]
            | ["actuator", "health" | "info" | "prometheus"]
            | ["v3", "api-docs"]
            | ["swagger-ui.html"]
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
        let not_allowed = e.status() == StatusCode::METHOD_NOT_ALLOWED;
        let mut response = e.into_response(plain);
        // RFC 9110: a 405 lists what the path takes.
        if let Some(allow) = not_allowed
            .then(|| api_docs::allowed_methods(path))
            .flatten()
        {
            if let Ok(value) = allow.parse() {
                response.headers_mut().insert("allow", value);
            }
        }
        response
    });
    (route, response)
}
