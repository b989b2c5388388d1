//! Scrape endpoints: `/snmp?target=T[&module=a,b][&auth=A]` (one device,
//! from cache or polled now), `/metrics` (every device) and `/targets`
//! (Prometheus HTTP service discovery).
//!
//! `module` and `auth` are snmp_exporter's parameters, so a Prometheus job
//! written for it works here: modules the device polls anyway are served
//! from its cached poll; others make a poll of their own, cached and shared
//! like any other. Inventory devices keep their own credentials; a target
//! outside the inventory is walked with the named auth only when
//! `PROMSNMP_SCRAPE_UNLISTED_TARGETS` allows it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use warp::http::StatusCode;

use super::error::{json_response, ApiError, Response};
use super::negotiation::{accepts_gzip, gzip_bytes, negotiate};
use super::Request;
use crate::app::AppState;
use crate::inventory::{is_host_name, Device};
use crate::modules::{
    ModuleSet, DEFAULT_AUTH, DEFAULT_MODULES, DEFAULT_UNLISTED_MODULE, MAX_MODULES_PER_DEVICE,
};
use crate::polled::PolledDevice;
use crate::render::{self, Format, RenderOptions};

/// Devices whose cached polls `/metrics` asks the store for at once.
const METRICS_READ_BATCH: usize = 1024;

/// The longest a scrape waits for a live poll when Prometheus does not say.
const MAX_SCRAPE_WAIT: Duration = Duration::from_secs(120);

/// `X-Prometheus-Scrape-Timeout-Seconds` less a small margin for the answer itself.
fn scrape_timeout(req: &Request) -> Option<Duration> {
    let seconds: f64 = req
        .header("x-prometheus-scrape-timeout-seconds")?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds > 0.0)
        .then(|| Duration::from_secs_f64((seconds * 0.95 - 0.05).clamp(0.1, 120.0)))
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

/// `module` (repeated and/or comma-separated), each loaded; `None` when absent.
fn requested_modules(req: &Request, set: &ModuleSet) -> Result<Option<Vec<String>>, ApiError> {
    let mut names: Vec<String> = Vec::new();
    for value in req.params("module") {
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    if names.is_empty() {
        return Ok(None);
    }
    if names.len() > MAX_MODULES_PER_DEVICE {
        return Err(ApiError::BadRequest(format!(
            "query parameter `module`: at most {MAX_MODULES_PER_DEVICE} modules"
        )));
    }
    let unknown = set.unknown(&names);
    if !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "query parameter `module`: unknown module{} `{}` (not built in and not in PROMSNMP_MODULES_FILE)",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join("`, `")
        )));
    }
    Ok(Some(names))
}

/// What one `/snmp` scrape polls and serves.
struct ScrapePlan {
    /// The device polled: the inventory device, or one made for this
    /// selection of modules or for a target outside the inventory.
    device: Device,
    /// Serve only these modules of its poll.
    modules: Option<Vec<String>>,
    /// The render cache entry.
    cache_key: String,
}

/// `host`, `host:port`, `[v6]:port`, optionally `udp://`, as snmp_exporter takes targets.
fn parse_target(target: &str) -> Result<(String, u16), ApiError> {
    let bad = |why: &str| {
        ApiError::BadRequest(format!(
            "query parameter `target`: `{target}` {why} (expected host, host:port or [IPv6]:port)"
        ))
    };
    let rest = target.trim();
    let rest = rest.strip_prefix("udp://").unwrap_or(rest);
    if rest.contains("://") {
        return Err(bad("uses a transport promsnmp does not poll over"));
    }
    if let Ok(ip) = rest.parse::<IpAddr>() {
        return Ok((ip.to_string(), 161));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("has a bad port"))?,
        ),
        None => (rest, 161),
    };
    if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
        return Err(bad("is not an address or host name"));
    }
    Ok((host.to_string(), port))
}

/// `/snmp?target=T`: one device, from cache or polled now.
pub async fn snmp(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    scrape_one(state, req, Format::Text, "snmp").await
}

async fn scrape_one(
    state: &Arc<AppState>,
    req: &Request,
    default: Format,
    endpoint: &str,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let target = req
        .param("target")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "missing query parameter `target` (a sysName, IP or IP:port from /targets)".into(),
            )
        })?;
    let live = req.flag("live", false)?;
    let set = state.modules.current();
    let requested = requested_modules(req, &set)?;
    let auth_name = req.param("auth").map(str::trim).filter(|a| !a.is_empty());
    let auth = match auth_name {
        Some(name) => Some(set.auth(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "query parameter `auth`: unknown auth `{name}` (auths come from PROMSNMP_MODULES_FILE; built in: public_v1, public_v2)"
            ))
        })?),
        None => None,
    };
    let snapshot = state.store.inventory().await?;
    let plan = match snapshot.inventory.find_device(target) {
        Some(device) => {
            let own: Vec<String> = device
                .modules
                .clone()
                .unwrap_or_else(|| DEFAULT_MODULES.iter().map(|m| m.to_string()).collect());
            match requested {
                // Modules it polls anyway: served from its own poll.
                Some(names) if names.iter().all(|n| own.contains(n)) => {
                    let same = names.len() == own.len();
                    ScrapePlan {
                        cache_key: if same {
                            device.id.clone()
                        } else {
                            format!("{}?module={}", device.id, names.join(","))
                        },
                        modules: (!same).then_some(names),
                        device: device.clone(),
                    }
                }
                // Others: a poll of exactly those, cached under its own key.
                Some(names) => {
                    let mut selected = device.clone();
                    selected.id = format!("{}~{}", device.id, names.join(","));
                    selected.modules = Some(names);
                    ScrapePlan {
                        cache_key: selected.id.clone(),
                        device: selected,
                        modules: None,
                    }
                }
                None => ScrapePlan {
                    cache_key: device.id.clone(),
                    device: device.clone(),
                    modules: None,
                },
            }
        }
        None if state.config.scrape_unlisted_targets => {
            let (host, port) = parse_target(target)?;
            let auth = match auth {
                Some(a) => a.clone(),
                None => set.auth(DEFAULT_AUTH).cloned().ok_or_else(|| {
                    ApiError::BadRequest(format!("no auth given and no `{DEFAULT_AUTH}` auth is loaded"))
                })?,
            };
            let modules = requested.unwrap_or_else(|| vec![DEFAULT_UNLISTED_MODULE.to_string()]);
            let agent = auth.agent(&host, port);
            let id = format!(
                "unlisted:{}~{}~{}",
                agent.endpoint.target(),
                auth.name,
                modules.join(",")
            );
            let device = Device {
                id: id.clone(),
                sys_name: target.to_string(),
                sys_descr: String::new(),
                sys_contact: String::new(),
                sys_location: String::new(),
                discovered_at: None,
                agents: vec![agent],
                primary_agent: None,
                modules: Some(modules),
            };
            ScrapePlan {
                cache_key: id,
                device,
                modules: None,
            }
        }
        None => {
            return Err(ApiError::NotFound(format!(
                "unknown target `{target}`: no device in the inventory has this sysName, IP or IP:port (set PROMSNMP_SCRAPE_UNLISTED_TARGETS=true to poll targets outside the inventory)"
            )))
        }
    };
    // Answer before Prometheus gives up on the scrape (it sends its timeout).
    let deadline = scrape_timeout(req).unwrap_or(MAX_SCRAPE_WAIT);
    let polled: Arc<PolledDevice> =
        tokio::time::timeout(deadline, state.collector.get_or_poll(&plan.device, live))
            .await
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "polling `{target}` did not finish within {:.1} s (the scrape timeout)",
                    deadline.as_secs_f64()
                ))
            })??;
    let format = negotiate(req.header("accept"), default);
    let gzip = accepts_gzip(req.header("accept-encoding"));
    let body = state.render_cache.single_device(
        &plan.cache_key,
        &polled,
        plan.modules.as_deref(),
        format,
        gzip,
    );
    state
        .telemetry
        .scrape_duration
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    Ok(scrape_response(format, body, gzip))
}

/// `/metrics`: every device with a fresh cached poll (or one with `target`).
pub async fn metrics(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    if req.param("target").is_some() {
        return scrape_one(state, req, Format::OpenMetrics, "metrics").await;
    }
    let started = Instant::now();
    let snapshot = state.store.inventory().await?;
    let ids = snapshot.inventory.device_ids();
    // Past the deadline the devices read so far are served: a partial answer
    // (the rest go stale in Prometheus) beats a scrape that times out whole.
    let budget = scrape_timeout(req).unwrap_or(MAX_SCRAPE_WAIT).min(
        state
            .config
            .http
            .request_timeout
            .saturating_sub(Duration::from_secs(1)),
    );
    let deadline = tokio::time::Instant::now() + budget;
    let mut polls = Vec::with_capacity(ids.len());
    let mut read = 0;
    for batch in ids.chunks(METRICS_READ_BATCH) {
        let max_age = state.config.metrics_max_age();
        match tokio::time::timeout_at(deadline, state.store.cached_polls(batch, max_age)).await {
            Ok(hits) => polls.extend(hits?.into_iter().flatten().map(|hit| hit.polled)),
            Err(_) => break,
        }
        read += batch.len();
    }
    if read < ids.len() {
        state.telemetry.metrics_incomplete.inc();
        tracing::warn!(
            read,
            devices = ids.len(),
            budget_ms = budget.as_millis() as u64,
            "/metrics: the cache was not read whole within the scrape's time; served the devices read so far"
        );
    }
    let refs: Vec<&PolledDevice> = polls.iter().map(|p| &**p).collect();
    let format = negotiate(req.header("accept"), Format::OpenMetrics);
    let mut body = Vec::with_capacity(64 * 1024);
    render::render(
        &refs,
        format,
        RenderOptions {
            device_label: true,
            modules: None,
        },
        &mut body,
    );
    state
        .telemetry
        .scrape_duration
        .with_label_values(&["metrics"])
        .observe(started.elapsed().as_secs_f64());
    let gzip = accepts_gzip(req.header("accept-encoding"));
    let body = if gzip { gzip_bytes(&body) } else { body };
    Ok(scrape_response(format, body.into(), gzip))
}

/// Prometheus HTTP service discovery: one group per device.
pub async fn targets(state: &Arc<AppState>) -> Result<Response, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_snmp_exporter_takes_them() {
        assert_eq!(
            parse_target("192.0.2.1").unwrap(),
            ("192.0.2.1".into(), 161)
        );
        assert_eq!(
            parse_target("192.0.2.1:1161").unwrap(),
            ("192.0.2.1".into(), 1161)
        );
        assert_eq!(
            parse_target("udp://router.example:162").unwrap(),
            ("router.example".into(), 162)
        );
        assert_eq!(
            parse_target("[2001:db8::1]:161").unwrap(),
            ("2001:db8::1".into(), 161)
        );
        assert_eq!(
            parse_target("2001:db8::1").unwrap(),
            ("2001:db8::1".into(), 161)
        );
        for bad in ["tcp://h:161", "h:0", "h:x", "bad host", "h:99999"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
