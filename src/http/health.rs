//! Health and self-observation: `/actuator/health` (Spring-style, with the
//! inventory, store, modules and, in a fleet, Redis), readiness,
//! `/actuator/prometheus`, and the `healthcheck` subcommand's probe.

use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;

use super::error::{json_response, text, Response};
use crate::app::AppState;

pub fn readiness(state: &Arc<AppState>) -> Response {
    if state.is_ready() {
        json_response(StatusCode::OK, &json!({"status": "UP"}))
    } else {
        let mut body = json!({"status": "OUT_OF_SERVICE"});
        if let Some(reason) = state.fleet.as_ref().and_then(|f| f.inventory_error()) {
            body["reason"] = json!(reason);
        }
        json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
    }
}

/// Spring-style health: overall status plus components.
pub async fn health(state: &Arc<AppState>) -> Response {
    let ready = state.is_ready();
    let unreadable = state.fleet.as_ref().and_then(|f| f.inventory_error());
    let (inventory, store_up) = match state.store.inventory().await {
        // What this replica holds is not the fleet's inventory.
        Ok(_) if unreadable.is_some() => (
            json!({"status": "DOWN", "details": {"error": unreadable}}),
            false,
        ),
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
    // Redis that may evict keys is reachable but unfit: no leader, no changes.
    let eviction = state
        .fleet
        .as_ref()
        .and_then(|fleet| fleet.unsafe_eviction_policy());
    let redis_up =
        state.fleet.as_ref().is_none_or(|fleet| fleet.is_redis_up()) && eviction.is_none();
    let redis = state.fleet.as_ref().map(|fleet| {
        let status = fleet.status();
        let error = match &eviction {
            Some(policy) => Some(format!("Redis' maxmemory-policy is {policy}: it may evict the lease, the epoch or the inventory, so no replica leads and inventory changes are refused; set maxmemory-policy noeviction")),
            None => status.last_error,
        };
        json!({
            "status": if redis_up { "UP" } else { "DOWN" },
            "details": {
                "replicaId": fleet.replica_id(),
                "role": if fleet.is_leader() { "leader" } else { "follower" },
                "epoch": status.leading_epoch.unwrap_or(status.epoch_seen),
                "members": fleet.members(),
                "maxmemoryPolicy": eviction,
                "error": error,
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
        "modules": modules_component(state).await,
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

pub async fn self_metrics(state: &Arc<AppState>) -> Response {
    state
        .telemetry
        .cache_entries
        .set(state.store.cache_len().await as i64);
    if let Ok(snapshot) = state.store.inventory().await {
        let unknown = state.modules.current().unknown_in(&snapshot.inventory);
        state.telemetry.set_unknown_modules(&unknown);
    }
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        state.telemetry.render(),
    )
}

/// The modules in force: fingerprint (replicas with different files differ
/// here), counts, files, rules, devices naming modules that are not loaded,
/// and the last failed reload.
async fn modules_component(state: &Arc<AppState>) -> serde_json::Value {
    let set = state.modules.current();
    let unknown = match state.store.inventory().await {
        Ok(snapshot) => set.unknown_in(&snapshot.inventory),
        Err(_) => Default::default(),
    };
    json!({
        "status": "UP",
        "details": {
            "fingerprint": set.fingerprint,
            "modules": set.module_count(),
            "auths": set.auth_count(),
            "metrics": set.metric_count(),
            "files": set.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "rules": set.rules().source.clone().unwrap_or_else(|| "built-in".into()),
            "unknownModules": unknown,
            "lastReloadError": state.modules.last_error(),
        }
    })
}

/// The `healthcheck` subcommand: asks the local `/actuator/health/readiness`
/// (3 s timeout; open to all, so no credentials), over TLS when the web
/// configuration asks for it, on the address the replica binds (loopback
/// when it binds every address). Readiness, not the aggregate: a replica
/// whose Redis is down still serves and must not be replaced by the
/// orchestrator.
pub async fn probe_health(
    bind_address: std::net::IpAddr,
    port: u16,
    web_config_file: Option<&std::path::Path>,
) -> Result<(), String> {
    let (base, tls) = super::client::local_replica(bind_address, port, web_config_file)?;
    let answer = super::client::request(
        &base,
        warp::http::Method::GET,
        "/actuator/health/readiness",
        &[],
        Vec::new(),
        tls,
        std::time::Duration::from_secs(3),
    )
    .await?;
    if answer.status == StatusCode::OK && answer.text().contains("\"status\":\"UP\"") {
        Ok(())
    } else {
        Err(format!("{}: {}", answer.status, answer.text().trim()))
    }
}
