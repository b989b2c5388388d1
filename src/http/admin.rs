//! Management endpoints under `/promsnmp/` (inventory export and import,
//! discovery and its seeds, cache, protocols, thread pools) and `/-/reload`.

use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;

use super::error::{json_bytes, json_response, ApiError, Response};
use super::inventory_api::{check_seed, if_match, with_etag};
use super::Request;
use crate::app::AppState;
use crate::inventory::{DiscoverySeed, Inventory, AUTH_PROTOCOLS, PRIV_PROTOCOLS};

pub fn auth_protocols() -> Response {
    json_response(StatusCode::OK, &json!(AUTH_PROTOCOLS))
}

pub fn priv_protocols() -> Response {
    json_response(StatusCode::OK, &json!(PRIV_PROTOCOLS))
}

/// `POST /-/reload`: reads the module files and rules again. A bad file
/// keeps the configuration in force and answers 400 with the reason.
pub async fn reload(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let set = state.reload_modules("POST /-/reload").await.map_err(|e| {
        ApiError::BadRequest(format!(
            "reload failed, the previous modules stay in force: {e}"
        ))
    })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "modules": set.module_count(),
            "auths": set.auth_count(),
            "fingerprint": set.fingerprint,
        }),
    ))
}

/// The whole inventory, tagged with its version (`ETag`).
pub async fn export_inventory(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    Ok(with_etag(
        json_bytes(StatusCode::OK, snapshot.inventory.to_json()),
        &snapshot,
    ))
}

/// Replaces the inventory with the posted document, all or nothing, when
/// `If-Match` (if any) names the current version.
/// Without `discoverySeeds` the saved seeds stay; `devices` is required.
pub async fn import_inventory(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    let if_match = if_match(req)?;
    let (imported, seeds_given) = Inventory::from_import_json(&req.body)?;
    state.modules.current().check_inventory(&imported)?;
    for (i, seed) in imported.discovery_seeds.iter().enumerate() {
        check_seed(state, seed, &format!("discoverySeeds[{i}]"))?;
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
    let snapshot = state.writer.apply_if(&change, if_match.as_ref()).await?;
    tracing::info!(
        devices = counts.0,
        seeds = counts.1,
        version = snapshot.version,
        "inventory imported"
    );
    let body = json!({
        "devices": counts.0,
        "discoverySeeds": snapshot.inventory.discovery_seeds.len(),
        "version": snapshot.version,
    });
    Ok(with_etag(json_response(StatusCode::OK, &body), &snapshot))
}

pub async fn list_seeds(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    Ok(json_response(
        StatusCode::OK,
        &json!(snapshot.inventory.discovery_seeds),
    ))
}

/// Starts a discovery (`scheduleNow`, default true) and/or saves the seed (`saveSeed`, default false).
pub async fn submit_discovery(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    let schedule_now = req.flag("scheduleNow", true)?;
    let save_seed = req.flag("saveSeed", false)?;
    if !schedule_now && !save_seed {
        return Err(ApiError::BadRequest(
            "nothing to do: scheduleNow=false and saveSeed=false".into(),
        ));
    }
    let seed = DiscoverySeed::from_json(&req.body)?;
    check_seed(state, &seed, "")?;
    if schedule_now {
        // Refused before anything is saved.
        state.discovery.has_room()?;
    }
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
pub async fn get_seed(state: &Arc<AppState>, id: &str) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let progress = state.discovery.progress(id).await;
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

/// `GET /promsnmp/discovery/jobs`: recent jobs of every replica, newest
/// first, without their per-address outcomes (`GET /promsnmp/discovery/{id}`
/// has them); `?limit=` (default 50, at most 200).
pub async fn list_jobs(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    let limit = match req.param("limit") {
        None => 50,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit=`{v}`: expected 1 to 200")))?,
    };
    let jobs: Vec<serde_json::Value> = state
        .discovery
        .recent(limit)
        .await
        .into_iter()
        .map(|mut job| {
            job.outcomes.clear();
            let mut v = json!(job);
            if let Some(fields) = v.as_object_mut() {
                fields.remove("outcomes");
            }
            v
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!(jobs)))
}

pub async fn delete_seeds(state: &Arc<AppState>, id: Option<&str>) -> Result<Response, ApiError> {
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

pub async fn evict_cache(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let evicted = state.store.evict_cache().await?;
    tracing::info!(evicted, "metrics cache evicted");
    Ok(json_response(StatusCode::OK, &json!({"evicted": evicted})))
}

pub async fn thread_pools(state: &Arc<AppState>) -> Result<Response, ApiError> {
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
