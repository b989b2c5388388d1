//! The per-device and per-seed API under `/promsnmp/inventory/`: list, read,
//! add, replace, merge-patch (RFC 7396) and delete one device (named by id
//! or sysName) or seed (by id), and the inventory version on both sides:
//! every read carries it as a strong `ETag`, every write may be made
//! conditional on it with `If-Match`.
//!
//! Each write changes only its own entry inside the store's atomic change,
//! so a write without `If-Match` never undoes what discovery or another
//! client changed meanwhile elsewhere in the inventory.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};
use warp::http::{Method, StatusCode};

use super::error::{json_response, ApiError, Response};
use super::merge_patch::merge_patch;
use super::Request;
use crate::app::AppState;
use crate::discovery::ProbeError;
use crate::inventory::{
    now_seconds, Device, DiscoverySeed, InvalidInventory, Inventory, PrimaryAgent,
};
use crate::store::{IfMatch, InventorySnapshot, StoreError};

pub const DEVICES: &str = "/promsnmp/inventory/devices";
pub const SEEDS: &str = "/promsnmp/inventory/seeds";

/// The write's `If-Match`: `None` when absent or `*` (unconditional).
pub fn if_match(req: &Request) -> Result<Option<IfMatch>, ApiError> {
    let values: Vec<&str> = req
        .headers
        .get_all("if-match")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    let joined = values.join(",");
    if joined.trim() == "*" {
        return Ok(None);
    }
    parse_entity_tags(&joined).map(|tags| Some(IfMatch(tags))).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "If-Match: `{joined}` is not `*` or a list of quoted entity tags such as \"v17-3f2a9c1e0b4d\" (send the ETag a read returned)"
        ))
    })
}

/// `#entity-tag` of RFC 9110: `"…"` or `W/"…"`, separated by commas.
fn parse_entity_tags(s: &str) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let weak = rest.starts_with("W/");
        let quoted = rest.strip_prefix("W/").unwrap_or(rest).strip_prefix('"')?;
        let end = quoted.find('"')?;
        let opaque = &quoted[..end];
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return None;
        }
        tags.push(format!("{}\"{opaque}\"", if weak { "W/" } else { "" }));
        rest = quoted[end + 1..].trim_start();
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
    (!tags.is_empty()).then_some(tags)
}

/// `r` with the ETag of `snapshot`.
pub fn with_etag(mut r: Response, snapshot: &InventorySnapshot) -> Response {
    if let Ok(v) = snapshot.etag().parse() {
        r.headers_mut().insert("etag", v);
    }
    r
}

/// The request body as JSON; malformed or missing is a 400 naming `body`.
fn json_body(req: &Request) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Err(InvalidInventory::new("body", "a JSON body is required").into());
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| InvalidInventory::new("body", e.to_string()).into())
}

/// Checks what the inventory alone cannot: module names against the loaded
/// modules, and a seed's targets against the discovery limits. `path`
/// prefixes the field names ("" for a request of one seed).
pub fn check_seed(
    state: &AppState,
    seed: &DiscoverySeed,
    path: &str,
) -> Result<(), InvalidInventory> {
    let field = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(modules) = &seed.modules {
        state
            .modules
            .current()
            .check_names(&field("modules"), modules)?;
    }
    crate::discovery::parse_targets(&seed.potential_targets, state.discovery.max_addresses())
        .map_err(|e| InvalidInventory::new(field(&e.field), e.message))?;
    Ok(())
}

/// What the API does alike for devices and seeds.
pub trait Entry: Serialize + Clone + Send + Sync + Sized + 'static {
    /// For messages and logs.
    const KIND: &'static str;
    /// The collection's path (the entries' paths are below it).
    const COLLECTION: &'static str;
    /// The route label of one entry, for the request counter.
    const ENTRY_ROUTE: &'static str;
    /// Parses and validates one entry (as an import would).
    fn parse(body: &[u8]) -> Result<Self, InvalidInventory>;
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    fn entries(inv: &Inventory) -> &[Self];
    fn entries_mut(inv: &mut Inventory) -> &mut Vec<Self>;
    /// The position of the entry the path names.
    fn find(inv: &Inventory, key: &str) -> Result<usize, StoreError>;
    /// What the inventory alone cannot check (loaded modules, limits).
    fn check(&self, state: &AppState) -> Result<(), InvalidInventory>;
    /// Whether the entry clashes with a stored one other than `except`
    /// (beyond its id): a changed entry is checked as a new one is.
    fn clashes(&self, _inv: &Inventory, _except: Option<&str>) -> Result<(), StoreError> {
        Ok(())
    }
    /// The document a merge patch applies to.
    fn patch_base(&self) -> Value {
        serde_json::to_value(self).expect("entries serialise")
    }
    /// Adjusts a merged document before it is parsed.
    fn after_merge(_merged: &mut Value, _patch: &Value) {}
}

impl Entry for Device {
    const KIND: &'static str = "device";
    const COLLECTION: &'static str = DEVICES;
    const ENTRY_ROUTE: &'static str = "/promsnmp/inventory/devices/{id}";

    fn parse(body: &[u8]) -> Result<Self, InvalidInventory> {
        Device::from_json(body)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn entries(inv: &Inventory) -> &[Self] {
        &inv.devices
    }
    fn entries_mut(inv: &mut Inventory) -> &mut Vec<Self> {
        &mut inv.devices
    }
    fn find(inv: &Inventory, key: &str) -> Result<usize, StoreError> {
        match inv.devices_named(key).as_slice() {
            [] => Err(StoreError::NotFound(format!(
                "no device with id or sysName `{key}`"
            ))),
            [i] => Ok(*i),
            many => Err(StoreError::Conflict {
                message: format!(
                    "sysName `{key}` names {} devices: name one by its id",
                    many.len()
                ),
                ids: many.iter().map(|i| inv.devices[*i].id.clone()).collect(),
            }),
        }
    }
    fn check(&self, state: &AppState) -> Result<(), InvalidInventory> {
        match &self.modules {
            Some(modules) => state.modules.current().check_names("modules", modules),
            None => Ok(()),
        }
    }
    /// Two devices polling one agent endpoint would poll it twice.
    fn clashes(&self, inv: &Inventory, except: Option<&str>) -> Result<(), StoreError> {
        // A changed device is checked for the endpoints it moves to only:
        // devices an import stored at one endpoint stay editable.
        let kept: Vec<&crate::inventory::Endpoint> = inv
            .devices
            .iter()
            .filter(|d| Some(d.id.as_str()) == except)
            .flat_map(|d| d.agents.iter().map(|a| &a.endpoint))
            .collect();
        let new: Vec<&crate::inventory::Endpoint> = self
            .agents
            .iter()
            .map(|a| &a.endpoint)
            .filter(|e| !kept.contains(e))
            .collect();
        let ids: Vec<String> = inv
            .devices
            .iter()
            .filter(|d| Some(d.id.as_str()) != except)
            .filter(|d| d.agents.iter().any(|a| new.contains(&&a.endpoint)))
            .map(|d| d.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        Err(StoreError::Conflict {
            message: "a device with an agent at the same endpoint exists already: change that one"
                .into(),
            ids,
        })
    }
    /// `primaryAgent` as the reference it is, so that a patch of `agents`
    /// alone is what polls use.
    fn patch_base(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("devices serialise");
        if let Some(PrimaryAgent::Id(id)) = &self.primary_agent {
            v["primaryAgent"] = json!({ "id": id });
        }
        v
    }
    /// A primaryAgent the patch left alone whose agent the patch removed:
    /// the first agent polls.
    fn after_merge(merged: &mut Value, patch: &Value) {
        if patch.get("primaryAgent").is_some() {
            return;
        }
        let Some(id) = merged["primaryAgent"]["id"].as_str() else {
            return;
        };
        let kept = merged["agents"]
            .as_array()
            .is_some_and(|agents| agents.iter().any(|a| a["id"].as_str() == Some(id)));
        if !kept {
            merged["primaryAgent"] = Value::Null;
        }
    }
}

impl Entry for DiscoverySeed {
    const KIND: &'static str = "seed";
    const COLLECTION: &'static str = SEEDS;
    const ENTRY_ROUTE: &'static str = "/promsnmp/inventory/seeds/{id}";

    fn parse(body: &[u8]) -> Result<Self, InvalidInventory> {
        DiscoverySeed::from_json(body)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn entries(inv: &Inventory) -> &[Self] {
        &inv.discovery_seeds
    }
    fn entries_mut(inv: &mut Inventory) -> &mut Vec<Self> {
        &mut inv.discovery_seeds
    }
    fn find(inv: &Inventory, key: &str) -> Result<usize, StoreError> {
        inv.discovery_seeds
            .iter()
            .position(|s| s.id == key)
            .ok_or_else(|| StoreError::NotFound(format!("no discovery seed with id `{key}`")))
    }
    fn check(&self, state: &AppState) -> Result<(), InvalidInventory> {
        check_seed(state, self, "")
    }
}

/// Serves `/promsnmp/inventory/{collection}[/{key}]` (`collection`:
/// `devices` or `seeds`) by method: the route label and the answer.
pub async fn dispatch(
    state: &Arc<AppState>,
    req: &Request,
    collection: &str,
    key: Option<&str>,
) -> (&'static str, Result<Response, ApiError>) {
    let post = req.method == Method::POST;
    match (collection, key) {
        ("devices", None) if post => (DEVICES, create_device(state, req).await),
        ("seeds", None) if post => (SEEDS, create_seed(state, req).await),
        ("devices", _) => serve::<Device>(state, req, key).await,
        _ => serve::<DiscoverySeed>(state, req, key).await,
    }
}

/// Every method but `POST` on the collection: reads and changes of one entry.
async fn serve<T: Entry>(
    state: &Arc<AppState>,
    req: &Request,
    key: Option<&str>,
) -> (&'static str, Result<Response, ApiError>) {
    let m = &req.method;
    let get = m == Method::GET || m == Method::HEAD;
    match key {
        None if get => (T::COLLECTION, list::<T>(state).await),
        Some(key) if get => (T::ENTRY_ROUTE, self::get::<T>(state, key).await),
        Some(key) if m == Method::PUT => (T::ENTRY_ROUTE, put::<T>(state, req, key).await),
        Some(key) if m == Method::PATCH => (T::ENTRY_ROUTE, patch::<T>(state, req, key).await),
        Some(key) if m == Method::DELETE => (T::ENTRY_ROUTE, delete::<T>(state, req, key).await),
        _ => ("other", Err(ApiError::MethodNotAllowed(m.clone()))),
    }
}

/// `GET` of the collection: every entry, tagged.
pub async fn list<T: Entry>(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let body = json!(T::entries(&snapshot.inventory));
    Ok(with_etag(json_response(StatusCode::OK, &body), &snapshot))
}

/// `GET` of one entry, tagged.
pub async fn get<T: Entry>(state: &Arc<AppState>, key: &str) -> Result<Response, ApiError> {
    let snapshot = state.store.inventory().await?;
    let i = T::find(&snapshot.inventory, key)?;
    let body = json!(T::entries(&snapshot.inventory)[i]);
    Ok(with_etag(json_response(StatusCode::OK, &body), &snapshot))
}

/// Applies `edit` to the entry `key` names, inside the atomic change and
/// under the request's `If-Match`. Returns the entry's id and the new inventory.
async fn change<T: Entry>(
    state: &Arc<AppState>,
    req: &Request,
    key: &str,
    what: &'static str,
    edit: impl Fn(&mut Inventory, usize) -> Result<(), StoreError> + Send + Sync,
) -> Result<(String, InventorySnapshot), ApiError> {
    let if_match = if_match(req)?;
    // The run that was stored names the id (a change may run again on a
    // concurrent change; each run overwrites it).
    let id = Mutex::new(String::new());
    let change = |inv: &mut Inventory| {
        let i = T::find(inv, key)?;
        *id.lock().expect("id lock") = T::entries(inv)[i].id().to_string();
        edit(inv, i)
    };
    let snapshot = state.writer.apply_if(&change, if_match.as_ref()).await?;
    let id = id.into_inner().expect("id lock");
    tracing::info!(kind = T::KIND, id = %id, change = what, version = snapshot.version, "inventory entry changed");
    Ok((id, snapshot))
}

/// The stored entry `id` as the answer to a write, tagged.
fn stored<T: Entry>(status: StatusCode, snapshot: &InventorySnapshot, id: &str) -> Response {
    let entry = T::entries(&snapshot.inventory)
        .iter()
        .find(|e| e.id() == id);
    with_etag(json_response(status, &json!(entry)), snapshot)
}

/// An edited entry in place of the one at `i`, keeping its id; a body that
/// names another id is refused.
fn replace<T: Entry>(
    inv: &mut Inventory,
    i: usize,
    mut entry: T,
    given_id: Option<&str>,
) -> Result<(), StoreError> {
    let id = T::entries(inv)[i].id().to_string();
    if let Some(given) = given_id.filter(|g| !g.is_empty() && *g != id) {
        return Err(InvalidInventory::new(
            "id",
            format!(
                "`{given}` is not the id of the {} the path names (`{id}`): an id cannot change (add a new one with POST {})",
                T::KIND,
                T::COLLECTION
            ),
        )
        .into());
    }
    // Moving an agent onto another device's endpoint would poll it twice.
    entry.clashes(inv, Some(&id))?;
    entry.set_id(id);
    T::entries_mut(inv)[i] = entry;
    Ok(())
}

/// `PUT`: replaces the entry, validated as an import would be.
pub async fn put<T: Entry>(
    state: &Arc<AppState>,
    req: &Request,
    key: &str,
) -> Result<Response, ApiError> {
    let body = json_body(req)?;
    let given_id = body.get("id").and_then(Value::as_str);
    let entry = T::parse(&req.body)?;
    entry.check(state)?;
    let (id, snapshot) = change::<T>(state, req, key, "replaced", |inv, i| {
        replace(inv, i, entry.clone(), given_id)
    })
    .await?;
    Ok(stored::<T>(StatusCode::OK, &snapshot, &id))
}

/// `PATCH`: a JSON merge patch over the entry's JSON, then validated.
pub async fn patch<T: Entry>(
    state: &Arc<AppState>,
    req: &Request,
    key: &str,
) -> Result<Response, ApiError> {
    let patch = json_body(req)?;
    if !patch.is_object() {
        return Err(InvalidInventory::new(
            "body",
            format!("a merge patch of a {} is a JSON object", T::KIND),
        )
        .into());
    }
    let (id, snapshot) = change::<T>(state, req, key, "patched", |inv, i| {
        let mut merged = T::entries(inv)[i].patch_base();
        merge_patch(&mut merged, &patch);
        T::after_merge(&mut merged, &patch);
        let given_id = merged.get("id").and_then(Value::as_str).map(str::to_string);
        let bytes = serde_json::to_vec(&merged).expect("JSON serialises");
        let entry = T::parse(&bytes)?;
        entry.check(state)?;
        replace(inv, i, entry, given_id.as_deref())
    })
    .await?;
    Ok(stored::<T>(StatusCode::OK, &snapshot, &id))
}

/// `DELETE`: removes the entry; answers `{"deleted": id, "version": n}`.
pub async fn delete<T: Entry>(
    state: &Arc<AppState>,
    req: &Request,
    key: &str,
) -> Result<Response, ApiError> {
    let (id, snapshot) = change::<T>(state, req, key, "deleted", |inv, i| {
        T::entries_mut(inv).remove(i);
        Ok(())
    })
    .await?;
    let body = json!({"deleted": id, "version": snapshot.version});
    Ok(with_etag(json_response(StatusCode::OK, &body), &snapshot))
}

/// `POST` to the collection: adds one entry (201, `Location`); its id is
/// generated when absent; an id (or, for a device, an agent endpoint)
/// already stored is a 409.
pub async fn create<T: Entry>(
    state: &Arc<AppState>,
    req: &Request,
    entry: T,
) -> Result<Response, ApiError> {
    entry.check(state)?;
    let if_match = if_match(req)?;
    let add = |inv: &mut Inventory| {
        if T::entries(inv).iter().any(|e| e.id() == entry.id()) {
            return Err(StoreError::Conflict {
                message: format!("a {} with id `{}` exists already", T::KIND, entry.id()),
                ids: vec![entry.id().to_string()],
            });
        }
        entry.clashes(inv, None)?;
        T::entries_mut(inv).push(entry.clone());
        Ok(())
    };
    let snapshot = state.writer.apply_if(&add, if_match.as_ref()).await?;
    tracing::info!(kind = T::KIND, id = %entry.id(), change = "added", version = snapshot.version, "inventory entry changed");
    let mut r = stored::<T>(StatusCode::CREATED, &snapshot, entry.id());
    // Ids are validated to a URL-safe alphabet; never fail the request over a header.
    if let Ok(location) = format!("{}/{}", T::COLLECTION, entry.id()).parse() {
        r.headers_mut().insert("location", location);
    }
    Ok(r)
}

/// `POST /promsnmp/inventory/seeds`.
pub async fn create_seed(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    json_body(req)?;
    create(state, req, DiscoverySeed::from_json(&req.body)?).await
}

/// `POST /promsnmp/inventory/devices`, without discovery. With `probe=true`
/// the device's poll agent is asked for its system group first: a device
/// that does not answer is not stored (422, with why: no answer, or the agent's refusal), and the answer fills the
/// sysName, sysDescr, sysContact and sysLocation the body left out.
pub async fn create_device(state: &Arc<AppState>, req: &Request) -> Result<Response, ApiError> {
    let body = json_body(req)?;
    let mut device = Device::from_json(&req.body)?;
    if req.flag("probe", false)? {
        let agent = device
            .poll_agent()
            .expect("a validated device has an agent");
        let sys = state
            .discovery
            .probe_agent(agent)
            .await
            .map_err(|e| match e {
                ProbeError::Settings(e) => ApiError::BadRequest(format!(
                    "cannot probe the device, nothing was stored: {e}"
                )),
                ProbeError::Failed { detail, .. } => ApiError::ProbeFailed(format!(
                    "the device's agent {} did not answer the probe, nothing was stored: {detail}",
                    agent.endpoint.target()
                )),
            })?;
        if device.modules.is_none() {
            device.modules = state
                .modules
                .current()
                .choose_by_rules(&sys.sys_object_id, &sys.sys_descr);
        }
        let given = |field: &str| body[field].as_str().is_some_and(|s| !s.is_empty());
        for (field, slot, value) in [
            ("sysName", &mut device.sys_name, sys.sys_name),
            ("sysDescr", &mut device.sys_descr, sys.sys_descr),
            ("sysContact", &mut device.sys_contact, sys.sys_contact),
            ("sysLocation", &mut device.sys_location, sys.sys_location),
        ] {
            if !given(field) && !value.is_empty() {
                *slot = value;
            }
        }
        device.discovered_at.get_or_insert_with(now_seconds);
    }
    create(state, req, device).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags_are_parsed_strictly() {
        let tags = |s: &str| parse_entity_tags(s);
        assert_eq!(tags(r#""v1-ab""#), Some(vec![r#""v1-ab""#.to_string()]));
        assert_eq!(
            tags(r#" "v1", W/"v2" ,"a,b" "#),
            Some(vec![
                r#""v1""#.to_string(),
                r#"W/"v2""#.to_string(),
                r#""a,b""#.to_string()
            ])
        );
        for bad in ["", "v1", r#""v1"#, r#""v1" "v2""#, r#""v 1""#, "W/v1", ","] {
            assert_eq!(tags(bad), None, "{bad}");
        }
    }
}
