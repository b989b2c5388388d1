//! HTTP: [`routes`] builds the warp filter that `main` serves and the tests
//! use; [`handle`] dispatches by method and path; [`ApiError`] is the one
//! place errors become status codes and bodies (one-line text for scrape
//! endpoints, JSON for management endpoints). Polling, storage and rendering
//! belong to other modules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use crate::app::AppState;
use crate::collector::CollectError;
use crate::inventory::{
    DiscoverySeed, InvalidInventory, Inventory, AUTH_PROTOCOLS, PRIV_PROTOCOLS,
};
use crate::render::{self, Format, RenderOptions};
use crate::store::StoreError;

/// Largest request body accepted (an inventory of many thousand devices fits).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

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
    #[error("method {0} not allowed here")]
    MethodNotAllowed(Method),
    #[error("request body larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
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
            StoreError::StaleEpoch(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<InvalidInventory> for ApiError {
    fn from(e: InvalidInventory) -> Self {
        ApiError::Invalid(e)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: a single text line for scrape endpoints (Prometheus shows
    /// it as the scrape error), JSON elsewhere.
    pub fn into_response(self, plain: bool) -> Response {
        let status = self.status();
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
        if let ApiError::Invalid(i) = &self {
            body["field"] = json!(i.field);
            body["message"] = json!(i.message);
        }
        json_response(status, &body)
    }
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", content_type.parse().expect("valid header"));
    r
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    text(
        status,
        "application/json",
        serde_json::to_vec(value).expect("json serialises"),
    )
}

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    text(status, "application/json", bytes)
}

/// A parsed request, independent of warp.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(|s| s.as_str())
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.param(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" || v == "1" || v.is_empty() => Ok(true),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "query parameter `{name}`: `{v}` is not true or false"
            ))),
        }
    }
}

/// The warp filter serving every endpoint.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body| {
            let state = state.clone();
            async move {
                let started = Instant::now();
                let body = match read_body(body).await {
                    Ok(b) => b,
                    Err(e) => return e.into_response(false),
                };
                let request = Request { method, path: path.as_str().to_string(), query: parse_query(&query), headers, body };
                let (route, response) = handle(&state, &request).await;
                state
                    .telemetry
                    .http_requests
                    .with_label_values(&[route, request.method.as_str(), response.status().as_str()])
                    .inc();
                tracing::debug!(method = %request.method, path = %request.path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
                response
            }
        })
}

async fn read_body<S, B>(stream: S) -> Result<Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    tokio::pin!(stream);
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        if out.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
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

/// Decodes `a=b&c=d` with percent-escapes and `+` as space.
pub fn parse_query(raw: &str) -> HashMap<String, String> {
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
    let get = m == Method::GET || m == Method::HEAD;
    let (route, plain, result): (&'static str, bool, Result<Response, ApiError>) = match segments
        .as_slice()
    {
        ["snmp"] if get => (
            "/snmp",
            true,
            scrape_one(state, req, Format::Text, "snmp").await,
        ),
        ["metrics"] if get => ("/metrics", true, metrics(state, req).await),
        ["targets"] if get => ("/targets", false, targets(state).await),
        ["promsnmp", "inventory"] if get => {
            ("/promsnmp/inventory", false, export_inventory(state).await)
        }
        ["promsnmp", "inventory"] if m == Method::POST => (
            "/promsnmp/inventory",
            false,
            import_inventory(state, req).await,
        ),
        ["promsnmp", "discovery"] if get => ("/promsnmp/discovery", false, list_seeds(state).await),
        ["promsnmp", "discovery"] if m == Method::POST => (
            "/promsnmp/discovery",
            false,
            submit_discovery(state, req).await,
        ),
        ["promsnmp", "discovery"] if m == Method::DELETE => (
            "/promsnmp/discovery",
            false,
            delete_seeds(state, None).await,
        ),
        ["promsnmp", "discovery", id] if get => (
            "/promsnmp/discovery/{id}",
            false,
            get_seed(state, &percent_decode(id)).await,
        ),
        ["promsnmp", "discovery", id] if m == Method::DELETE => (
            "/promsnmp/discovery/{id}",
            false,
            delete_seeds(state, Some(&percent_decode(id))).await,
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
        ["promsnmp", "evictCache"] if get => {
            ("/promsnmp/evictCache", false, evict_cache(state).await)
        }
        ["promsnmp", "authProtocols"] if get => (
            "/promsnmp/authProtocols",
            false,
            Ok(json_response(StatusCode::OK, &json!(AUTH_PROTOCOLS))),
        ),
        ["promsnmp", "privProtocols"] if get => (
            "/promsnmp/privProtocols",
            false,
            Ok(json_response(StatusCode::OK, &json!(PRIV_PROTOCOLS))),
        ),
        ["promsnmp", "threadPools"] if get => {
            ("/promsnmp/threadPools", false, thread_pools(state).await)
        }
        ["actuator", "health"] if get => ("/actuator/health", false, Ok(health(state).await)),
        ["actuator", "health", "liveness"] if get => (
            "/actuator/health/liveness",
            false,
            Ok(json_response(StatusCode::OK, &json!({"status": "UP"}))),
        ),
        ["actuator", "health", "readiness"] if get => {
            ("/actuator/health/readiness", false, Ok(readiness(state)))
        }
        ["actuator", "prometheus"] if get => {
            ("/actuator/prometheus", false, Ok(self_metrics(state).await))
        }
        ["snmp" | "metrics" | "targets"]
        | ["promsnmp", "inventory" | "discovery" | "hello" | "evictCache" | "authProtocols" | "privProtocols"
        | "threadPools"]
        | ["promsnmp", "discovery", _]
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

fn accept(req: &Request) -> Option<&str> {
    req.headers.get("accept").and_then(|v| v.to_str().ok())
}

/// The longest a scrape waits for a live poll when Prometheus does not say.
const MAX_SCRAPE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `X-Prometheus-Scrape-Timeout-Seconds` less a small margin for the answer itself.
fn scrape_timeout(req: &Request) -> Option<std::time::Duration> {
    let seconds: f64 = req
        .headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds > 0.0)
        .then(|| std::time::Duration::from_secs_f64((seconds * 0.95 - 0.05).clamp(0.1, 120.0)))
}

/// A scrape body with its content type and, when gzipped, its encoding.
fn scrape_response(format: Format, body: Bytes, gzip: bool) -> Response {
    let mut response = warp::reply::Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        format.content_type().parse().expect("valid header"),
    );
    if gzip {
        headers.insert("content-encoding", "gzip".parse().expect("valid header"));
    }
    headers.insert(
        "vary",
        "Accept, Accept-Encoding".parse().expect("valid header"),
    );
    response
}

/// Whether the client (Prometheus does) accepts a gzipped body.
fn wants_gzip(req: &Request) -> bool {
    render::accepts_gzip(
        req.headers
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok()),
    )
}

/// `/snmp?target=T` (and `/metrics?target=T`): one device, from cache or polled now.
async fn scrape_one(
    state: &Arc<AppState>,
    req: &Request,
    default: Format,
    endpoint: &str,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let target = req
        .param("target")
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "missing query parameter `target` (a sysName, IP or IP:port from /targets)".into(),
            )
        })?;
    let live = req.flag("live", false)?;
    let snapshot = state.store.inventory().await?;
    let device = snapshot.inventory.find_device(target).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown target `{target}`: no device in the inventory has this sysName, IP or IP:port"
        ))
    })?;
    // Answer before Prometheus gives up on the scrape (it sends its timeout).
    let deadline = scrape_timeout(req).unwrap_or(MAX_SCRAPE_WAIT);
    let polled = tokio::time::timeout(deadline, state.collector.get_or_poll(device, live))
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "polling `{target}` did not finish within {:.1} s (the scrape timeout)",
                deadline.as_secs_f64()
            ))
        })?
        .map_err(|e| match e {
            CollectError::Store(s) => ApiError::from(s),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    let format = Format::negotiate(accept(req), default);
    let gzip = wants_gzip(req);
    let body = state
        .render_cache
        .single_device(&device.id, &polled, format, gzip);
    state
        .telemetry
        .scrape_duration
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    Ok(scrape_response(format, body, gzip))
}

/// `/metrics`: every device with a fresh cached poll (or one with `target`).
async fn metrics(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    if req.param("target").is_some() {
        return scrape_one(state, req, Format::OpenMetrics, "metrics").await;
    }
    let started = Instant::now();
    let snapshot = state.store.inventory().await?;
    let mut polls = Vec::with_capacity(snapshot.inventory.devices.len());
    for device in &snapshot.inventory.devices {
        if let Some(hit) = state
            .store
            .cached_poll(&device.id, state.config.metrics_max_age())
            .await?
        {
            polls.push(hit.polled);
        }
    }
    let refs: Vec<&crate::sample::PolledDevice> = polls.iter().map(|p| &**p).collect();
    let format = Format::negotiate(accept(req), Format::OpenMetrics);
    let mut body = Vec::with_capacity(64 * 1024);
    render::render(
        &refs,
        format,
        RenderOptions { device_label: true },
        &mut body,
    );
    state
        .telemetry
        .scrape_duration
        .with_label_values(&["metrics"])
        .observe(started.elapsed().as_secs_f64());
    let gzip = wants_gzip(req);
    let body = if gzip {
        render::gzip_bytes(&body)
    } else {
        body
    };
    Ok(scrape_response(format, body.into(), gzip))
}

/// Prometheus HTTP service discovery: one group per device.
async fn targets(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let config = &state.config;
    let groups: Vec<serde_json::Value> = snapshot
        .inventory
        .devices
        .iter()
        .filter_map(|d| {
            let agent = d.poll_agent()?;
            let mut labels = json!({
                "device_name": d.sys_name,
                "device_id": d.id,
                "agent_type": agent.agent_type.as_str(),
                "snmp_version": agent.version.name(),
                "site_id": config.site_id,
                "tenant_id": config.tenant_id,
            });
            if let Some(label) = &config.site_label {
                labels["site_label"] = json!(label);
            }
            if !d.sys_location.is_empty() {
                labels["sys_location"] = json!(d.sys_location);
            }
            Some(json!({ "targets": [agent.endpoint.target()], "labels": labels }))
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!(groups)))
}

async fn export_inventory(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    Ok(json_bytes(StatusCode::OK, snapshot.inventory.to_json()))
}

/// Replaces the inventory with the posted document, all or nothing.
/// Without `discoverySeeds` the saved seeds stay; `devices` is required.
async fn import_inventory(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    let (imported, seeds_given) = Inventory::from_import_json(&req.body)?;
    for (i, seed) in imported.discovery_seeds.iter().enumerate() {
        crate::discovery::parse_targets(&seed.potential_targets, state.discovery.max_addresses())
            .map_err(|e| {
            InvalidInventory::new(format!("discoverySeeds[{i}].{}", e.field), e.message)
        })?;
    }
    let counts = (imported.devices.len(), imported.discovery_seeds.len());
    let change = move |inv: &mut Inventory| {
        let seeds = std::mem::take(&mut inv.discovery_seeds);
        *inv = imported.clone();
        if !seeds_given {
            inv.discovery_seeds = seeds;
        }
        Ok(())
    };
    let snapshot = state.writer.apply(&change).await?;
    tracing::info!(
        devices = counts.0,
        seeds = counts.1,
        version = snapshot.version,
        "inventory imported"
    );
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "devices": counts.0,
            "discoverySeeds": snapshot.inventory.discovery_seeds.len(),
            "version": snapshot.version,
        }),
    ))
}

async fn list_seeds(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    Ok(json_response(
        StatusCode::OK,
        &json!(snapshot.inventory.discovery_seeds),
    ))
}

/// Starts a discovery (`scheduleNow`, default true) and/or saves the seed (`saveSeed`, default false).
async fn submit_discovery(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    let schedule_now = req.flag("scheduleNow", true)?;
    let save_seed = req.flag("saveSeed", false)?;
    if !schedule_now && !save_seed {
        return Err(ApiError::BadRequest(
            "nothing to do: scheduleNow=false and saveSeed=false".into(),
        ));
    }
    let seed = DiscoverySeed::from_json(&req.body)?;
    crate::discovery::parse_targets(&seed.potential_targets, state.discovery.max_addresses())
        .map_err(|e| InvalidInventory::new(e.field, e.message))?;
    if save_seed {
        let saved = seed.clone();
        state
            .writer
            .apply(&move |inv: &mut Inventory| {
                inv.upsert_seed(saved.clone());
                Ok(())
            })
            .await?;
    }
    if schedule_now {
        let progress = state.discovery.submit(seed)?;
        let mut r = json_response(StatusCode::ACCEPTED, &json!(progress));
        // Ids are validated to a URL-safe alphabet; never fail the request over a header.
        if let Ok(location) = format!("/promsnmp/discovery/{}", progress.id).parse() {
            r.headers_mut().insert("location", location);
        }
        return Ok(r);
    }
    Ok(json_response(StatusCode::CREATED, &json!(seed)))
}

/// One saved seed (with the progress of its latest run), or a job's progress.
async fn get_seed(state: &Arc<AppState>, id: &str) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let progress = state.discovery.progress(id);
    match snapshot
        .inventory
        .discovery_seeds
        .iter()
        .find(|s| s.id == id)
    {
        Some(seed) => {
            let mut v = json!(seed);
            if let Some(p) = progress {
                v["progress"] = json!(p);
            }
            Ok(json_response(StatusCode::OK, &v))
        }
        None => match progress {
            Some(p) => Ok(json_response(
                StatusCode::OK,
                &json!({"id": id, "progress": p}),
            )),
            None => Err(ApiError::NotFound(format!(
                "no discovery seed or job with id `{id}`"
            ))),
        },
    }
}

async fn delete_seeds(state: &Arc<AppState>, id: Option<&str>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let deleted = match id {
        Some(id) => usize::from(
            snapshot
                .inventory
                .discovery_seeds
                .iter()
                .any(|s| s.id == id),
        ),
        None => snapshot.inventory.discovery_seeds.len(),
    };
    if let (Some(id), 0) = (id, deleted) {
        return Err(ApiError::NotFound(format!(
            "no discovery seed with id `{id}`"
        )));
    }
    let id = id.map(str::to_string);
    state
        .writer
        .apply(&move |inv: &mut Inventory| {
            match &id {
                Some(id) => inv.discovery_seeds.retain(|s| &s.id != id),
                None => inv.discovery_seeds.clear(),
            }
            Ok(())
        })
        .await?;
    Ok(json_response(StatusCode::OK, &json!({"deleted": deleted})))
}

async fn evict_cache(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let evicted = state.store.evict_cache().await?;
    tracing::info!(evicted, "metrics cache evicted");
    Ok(json_response(StatusCode::OK, &json!({"evicted": evicted})))
}

async fn thread_pools(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let rt = tokio::runtime::Handle::current().metrics();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "runtime": {"workers": rt.num_workers(), "aliveTasks": rt.num_alive_tasks(), "globalQueueDepth": rt.global_queue_depth()},
            "collector": {"concurrency": state.config.poll_concurrency, "pollsInFlight": state.telemetry.polls_in_flight.get()},
            "discovery": {"concurrency": state.discovery.concurrency(), "runningJobs": state.discovery.running_jobs()},
            "cache": {"entries": state.store.cache_len().await, "capacity": state.config.cache_entry_count},
        }),
    ))
}

fn readiness(state: &Arc<AppState>) -> Response {
    if state.is_ready() {
        json_response(StatusCode::OK, &json!({"status": "UP"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "OUT_OF_SERVICE"}),
        )
    }
}

/// Spring-style health: overall status plus components.
async fn health(state: &Arc<AppState>) -> Response {
    let ready = state.is_ready();
    let (inventory, store_up) = match state.store.inventory().await {
        Ok(s) => (
            json!({"status": "UP", "details": {"devices": s.inventory.devices.len(), "discoverySeeds": s.inventory.discovery_seeds.len(), "version": s.version, "file": state.config.inventory_file.display().to_string()}}),
            true,
        ),
        Err(e) => (
            json!({"status": "DOWN", "details": {"error": e.to_string()}}),
            false,
        ),
    };
    // Fleet: Redis is a component of its own. While it is down the replica
    // still serves (liveness and readiness stay UP), but the fleet is degraded.
    let redis_up = state.fleet.as_ref().is_none_or(|fleet| fleet.is_redis_up());
    let redis = state.fleet.as_ref().map(|fleet| {
        let status = fleet.status();
        json!({
            "status": if redis_up { "UP" } else { "DOWN" },
            "details": {
                "replicaId": fleet.replica_id(),
                "role": if fleet.is_leader() { "leader" } else { "follower" },
                "epoch": status.leading_epoch.unwrap_or(status.epoch_seen),
                "members": fleet.members(),
                "error": status.last_error,
            }
        })
    });
    let status = if store_up && redis_up && ready {
        "UP"
    } else if !store_up || !redis_up {
        "DOWN"
    } else {
        "OUT_OF_SERVICE"
    };
    let mut components = json!({
        "inventory": inventory,
        "store": {"status": if store_up { "UP" } else { "DOWN" }, "details": {"backend": state.store.backend()}},
        "livenessState": {"status": "UP"},
        "readinessState": {"status": if ready { "UP" } else { "OUT_OF_SERVICE" }},
    });
    if let Some(redis) = redis {
        components["redis"] = redis;
    }
    let body = json!({
        "status": status,
        "components": components,
    });
    let code = if status == "UP" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}

async fn self_metrics(state: &Arc<AppState>) -> Response {
    state
        .telemetry
        .cache_entries
        .set(state.store.cache_len().await as i64);
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        state.telemetry.render(),
    )
}

/// The `healthcheck` subcommand: asks the local `/actuator/health/readiness`
/// (3 s timeout). Readiness, not the aggregate: a replica whose Redis is down
/// still serves and must not be replaced by the orchestrator.
pub async fn probe_health(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
        stream
            .write_all(
                b"GET /actuator/health/readiness HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        stream
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        if text.starts_with("HTTP/1.1 200") && text.contains("\"status\":\"UP\"") {
            Ok(())
        } else {
            Err(text.lines().next().unwrap_or("no answer").to_string())
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), work)
        .await
        .map_err(|_| "timed out after 3 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("target=127.0.0.1%3A1161&live=true&x=a+b&bad=%zz&tail=%4");
        assert_eq!(q["target"], "127.0.0.1:1161");
        assert_eq!(q["live"], "true");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["tail"], "%4");
    }
}
