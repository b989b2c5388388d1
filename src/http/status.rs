//! What a replica knows of its work, for the web console and for curl:
//! `GET /promsnmp/status/devices` (every device: its last poll, state, last
//! error and, in a fleet, the replica that polls it),
//! `GET /promsnmp/status/devices/{id}` (one device's latest series grouped
//! by module, and this replica's last polls of it),
//! `GET /promsnmp/status/fleet` (the leader and every member's version and
//! module fingerprint) and `GET /promsnmp/settings` (the configuration in
//! force, secrets redacted, and the modules loaded).

use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::StatusCode;

use super::error::{json_response, ApiError, Response};
use crate::app::AppState;
use crate::inventory::Device;
use crate::polled::PolledDevice;

/// Series listed per family on a device's page (a large table is cut).
const SERIES_PER_FAMILY: usize = 200;

/// The device's last poll this replica can see: a cached one of the fleet,
/// else its own however old.
async fn last_poll(state: &AppState, device: &Device) -> Option<Arc<PolledDevice>> {
    match state
        .store
        .cached_poll(&device.id, state.config.metrics_max_age())
        .await
    {
        Ok(Some(cached)) => Some(cached.polled),
        _ => state.store.previous_poll(&device.id),
    }
}

/// The live members a device's owner is chosen from (empty standalone);
/// read once per request.
fn members(state: &AppState) -> Vec<String> {
    state
        .fleet
        .as_ref()
        .map(|f| f.members())
        .unwrap_or_default()
}

fn device_status(
    state: &AppState,
    members: &[String],
    device: &Device,
    poll: Option<&PolledDevice>,
) -> Value {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let poll_age_ms = poll.map(|p| now_ms.saturating_sub(p.sample.polled_at_ms).max(0));
    let failure = state.collector.last_failure(&device.id);
    // A failure newer than the last poll is the device's state.
    let failed = match (&failure, poll_age_ms) {
        (Some((ago, _)), Some(age_ms)) => (ago.as_millis() as i64) < age_ms,
        (Some(_), None) => true,
        (None, _) => false,
    };
    json!({
        "id": device.id,
        "sysName": device.sys_name,
        "target": device.poll_agent().map(|a| a.endpoint.target()),
        "modules": device.modules,
        "state": if failed { "failed" } else if poll.is_some() { "polled" } else { "waiting" },
        "lastError": failure.map(|(_, e)| e),
        "lastPollAt": poll.and_then(|p| chrono::DateTime::from_timestamp_millis(p.sample.polled_at_ms)).map(|t| t.to_rfc3339()),
        "lastPollSeconds": poll.map(|p| p.sample.poll_duration_seconds),
        "series": poll.map(|p| p.sample.modules.iter().flat_map(|m| m.families()).map(|(_, s)| s.len()).sum::<usize>()),
        "owner": crate::fleet::store::rendezvous_owner(members, &device.id),
    })
}

/// `GET /promsnmp/status/devices`.
pub async fn devices(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let ids = snapshot.inventory.device_ids();
    // One batched read of the cache (few round trips in a fleet), not one per device.
    let cached = state
        .store
        .cached_polls(&ids, state.config.metrics_max_age())
        .await
        .unwrap_or_else(|_| vec![None; ids.len()]);
    let members = members(state);
    let out: Vec<Value> = snapshot
        .inventory
        .devices
        .iter()
        .zip(cached)
        .map(|(device, cached)| {
            let poll = cached
                .map(|c| c.polled)
                .or_else(|| state.store.previous_poll(&device.id));
            device_status(state, &members, device, poll.as_deref())
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!(out)))
}

/// `GET /promsnmp/status/devices/{id}`: the status and the latest series,
/// grouped by module (`id` or sysName).
pub async fn device(state: &Arc<AppState>, key: &str) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let device = snapshot
        .inventory
        .devices
        .iter()
        .find(|d| d.id == key)
        .or_else(|| snapshot.inventory.find_device(key))
        .ok_or_else(|| ApiError::NotFound(format!("no device with id or name `{key}`")))?;
    let poll = last_poll(state, device).await;
    let mut body = device_status(state, &members(state), device, poll.as_deref());
    let modules: Vec<Value> = poll
        .iter()
        .flat_map(|p| p.sample.modules.iter())
        .map(|m| {
            let families: Vec<Value> = m
                .families()
                .map(|(meta, series)| {
                    json!({
                        "name": meta.name,
                        "help": meta.help,
                        "type": meta.kind.as_str(),
                        "seriesCount": series.len(),
                        "series": series.iter().take(SERIES_PER_FAMILY).map(|s| json!({
                            "labels": s.labels.iter().map(|l| (l.name.to_string(), json!(l.value))).collect::<serde_json::Map<_, _>>(),
                            "value": s.value,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"module": m.module, "families": families})
        })
        .collect();
    body["samples"] = json!(modules);
    body["history"] = json!(state
        .collector
        .poll_history(&device.id)
        .into_iter()
        .map(|p| json!({
            "at": chrono::DateTime::from_timestamp_millis(p.at_ms).map(|t| t.to_rfc3339()),
            "seconds": p.seconds,
            "error": p.error,
        }))
        .collect::<Vec<_>>());
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /promsnmp/status/fleet`: standalone, this replica only; in a
/// fleet the lease holder and every live member with its version, commit
/// and module fingerprint (Redis asked now), and Redis' state.
pub async fn fleet(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let fingerprint = state.modules.current().fingerprint.clone();
    let Some(fleet) = &state.fleet else {
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "mode": "standalone",
                "members": [{"id": state.config.fleet.replica_id, "version": crate::identity::VERSION,
                             "commit": crate::identity::COMMIT, "fingerprint": fingerprint}],
            }),
        ));
    };
    let status = fleet.status();
    let (leader, members, redis_error) = match fleet.view().await {
        Ok((leader, members)) => (leader, members, None),
        Err(e) => (None, Vec::new(), Some(e.to_string())),
    };
    let members: Vec<Value> = members
        .into_iter()
        .map(|(id, info)| {
            let mut member = info
                .and_then(|i| serde_json::from_str::<Value>(&i).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            member["id"] = json!(id);
            member
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "mode": "fleet",
            "replica": fleet.replica_id(),
            "role": if fleet.is_leader() { "leader" } else { "follower" },
            "leader": leader,
            "epoch": status.leading_epoch.unwrap_or(status.epoch_seen),
            "redis": if redis_error.is_none() && fleet.is_redis_up() { "UP" } else { "DOWN" },
            "error": redis_error.or(status.last_error),
            "members": members,
        }),
    ))
}

/// `GET /promsnmp/settings`.
pub async fn settings(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let set = state.modules.current();
    let settings: serde_json::Map<String, Value> = state
        .config
        .settings()
        .into_iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "version": crate::identity::VERSION,
            "commit": crate::identity::COMMIT,
            "replica": state.fleet.as_ref().map(|f| f.replica_id().to_string()),
            "settings": settings,
            "modules": {
                "names": set.module_names().collect::<Vec<_>>(),
                "fingerprint": set.fingerprint,
                "files": set.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            },
        }),
    ))
}
