//! Everything a replica shares: the inventory (with a version number), cached
//! polls, and the history behind derived values (utilisation histograms).
//!
//! [`Store`] is the seam: [`MemoryStore`] backs standalone mode;
//! `fleet::RedisStore` implements the same trait for the fleet. The inventory
//! file is not in here: `persistence` writes it after each change. Who polls
//! what is decided through the store too (`claim_round`, `scrape_turn`), so the
//! collector is the same in both modes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::inventory::{InvalidInventory, Inventory};
use crate::polled::PolledDevice;
use crate::sample::Sample;
use crate::utilization::DeviceHistory;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(#[from] InvalidInventory),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A leader-only write carried an epoch that is no longer the leader's.
    #[error("refused: leadership epoch {0} is stale (another replica leads now)")]
    StaleEpoch(u64),
    /// The fleet's inventory exists but this replica cannot read it (another
    /// `PROM_ENCRYPT_KEY`, or not valid JSON).
    #[error("{0}")]
    Unreadable(String),
    /// A change found the inventory at another version than its
    /// precondition names (the HTTP layer says how to go on).
    #[error("precondition failed: the inventory is at version {version}")]
    PreconditionFailed { version: u64, etag: String },
    /// A change names a device or seed the inventory does not hold.
    #[error("{0}")]
    NotFound(String),
    /// A change clashes with entries of the inventory (`ids`).
    #[error("{message}")]
    Conflict { message: String, ids: Vec<String> },
}

/// The leadership epoch a leader-only write carries (the fencing token).
/// `None`: an API change, which any replica may apply.
pub type Fence = Option<u64>;

/// What a scrape that found no fresh cached poll should do.
#[derive(Debug)]
pub enum ScrapeTurn {
    /// Walk the device now.
    PollNow,
    /// Another replica polled it meanwhile: serve this.
    Polled(Arc<PolledDevice>),
    /// Another replica's poll of it failed meanwhile: report this.
    Failed(String),
}

/// An inventory as of one version.
#[derive(Debug, Clone)]
pub struct InventorySnapshot {
    /// Grows by one with every change; in a fleet it is Redis' counter,
    /// shared by every replica.
    pub version: u64,
    /// The history `version` counts in: versions restart at 1 when a
    /// standalone process starts and when a fleet's leader restores a lost
    /// Redis inventory, so the pair, not the version, names one inventory.
    /// Standalone: one per process; fleet: Redis' incarnation ("" before the
    /// first read).
    pub incarnation: Arc<str>,
    pub inventory: Arc<Inventory>,
}

impl InventorySnapshot {
    /// The strong HTTP entity tag of this version, quotes included
    /// (`"v17-3f2a9c1e0b4d"`).
    pub fn etag(&self) -> String {
        etag(&self.incarnation, self.version)
    }

    /// Refuses a write whose `If-Match` names another version.
    pub fn check(&self, if_match: Option<&IfMatch>) -> Result<(), StoreError> {
        match if_match {
            Some(m) if !m.admits(&self.etag()) => Err(StoreError::PreconditionFailed {
                version: self.version,
                etag: self.etag(),
            }),
            _ => Ok(()),
        }
    }
}

/// The entity tag of `version` in `incarnation` (see [`InventorySnapshot::etag`]).
pub fn etag(incarnation: &str, version: u64) -> String {
    // A prefix tells incarnations apart well enough and keeps the tag short.
    match incarnation.get(..12).unwrap_or(incarnation) {
        "" => format!("\"v{version}\""),
        short => format!("\"v{version}-{short}\""),
    }
}

/// A write's precondition (`If-Match`): the entity tags it was made
/// against. It applies only while the inventory is one of them (strong
/// comparison: a weak tag never matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatch(pub Vec<String>);

impl IfMatch {
    pub fn admits(&self, etag: &str) -> bool {
        self.0.iter().any(|t| t == etag)
    }
}

/// A change to apply to the inventory. It may run more than once (a backend
/// may retry on a concurrent change), so it must not have side effects; an
/// error leaves the inventory untouched.
pub type InventoryChange<'a> = &'a (dyn Fn(&mut Inventory) -> Result<(), StoreError> + Send + Sync);

/// A cached poll and when it was stored.
#[derive(Debug, Clone)]
pub struct CachedPoll {
    pub polled: Arc<PolledDevice>,
    pub stored_at: Instant,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current inventory.
    async fn inventory(&self) -> Result<InventorySnapshot, StoreError>;

    /// Applies `change` atomically, validates the result and bumps the version.
    /// Returns the new snapshot. On error nothing changes. A `fence` that is
    /// not the current leadership epoch is refused ([`StoreError::StaleEpoch`]);
    /// so is a change whose `if_match` does not name the version it would
    /// apply to ([`StoreError::PreconditionFailed`]), checked in the same
    /// atomic step as the write.
    async fn update_inventory(
        &self,
        change: InventoryChange<'_>,
        fence: Fence,
        if_match: Option<&IfMatch>,
    ) -> Result<InventorySnapshot, StoreError>;

    /// Whether this replica should poll `device_id` for the current collection
    /// round: true at most once per `round` per device across everything that
    /// shares the store.
    async fn claim_round(&self, device_id: &str, round: Duration) -> bool;

    /// Before a scrape-triggered poll (the scrape began at `since`): whether
    /// to walk the device here or take the result of a poll that finished
    /// meanwhile or is under way elsewhere.
    async fn scrape_turn(&self, _device_id: &str, _since: Instant) -> ScrapeTurn {
        ScrapeTurn::PollNow
    }

    /// Records that polling `device_id` failed: from now until its next
    /// successful poll no older result is served for it (`cached_poll` has
    /// none), and in a fleet the replicas waiting for it share the error.
    async fn record_failure(&self, device_id: &str, message: &str);

    /// A poll of `device_id` ended without a result (cancelled by a scrape
    /// timeout): lets the next poller in at once.
    async fn abandon_poll(&self, _device_id: &str) {}

    /// The latest poll of `device_id` if it is younger than `max_age` and no
    /// poll failed after it (a dead device is never served as alive).
    async fn cached_poll(
        &self,
        device_id: &str,
        max_age: Duration,
    ) -> Result<Option<CachedPoll>, StoreError>;

    /// [`Store::cached_poll`] of many devices, in order; a store that can
    /// reads them in a few round trips.
    async fn cached_polls(
        &self,
        device_ids: &[String],
        max_age: Duration,
    ) -> Result<Vec<Option<CachedPoll>>, StoreError> {
        let mut out = Vec::with_capacity(device_ids.len());
        for id in device_ids {
            out.push(self.cached_poll(id, max_age).await?);
        }
        Ok(out)
    }

    /// The last poll of `device_id` this replica holds, however old, without
    /// asking anyone (the next poll shares its unchanged label sets).
    fn previous_poll(&self, _device_id: &str) -> Option<Arc<PolledDevice>> {
        None
    }

    /// Feeds `sample` into the device's history, caches the result and returns it.
    async fn record_poll(&self, sample: Sample) -> Result<Arc<PolledDevice>, StoreError>;

    /// Drops every cached poll (histories stay: their buckets only grow).
    /// Returns how many entries were dropped.
    async fn evict_cache(&self) -> Result<usize, StoreError>;

    /// Number of cached polls (for self-metrics).
    async fn cache_len(&self) -> usize;

    /// Name of the backend, for health and logs.
    fn backend(&self) -> &'static str;

    /// Whether other replicas read published jobs (a fleet's store).
    fn shares_jobs(&self) -> bool {
        false
    }

    /// Publishes a discovery job's progress (JSON) so every replica can
    /// answer for it, kept for `keep_for`. Standalone there is no other
    /// replica: nothing to do.
    async fn publish_job(
        &self,
        _id: &str,
        _started_ms: u64,
        _progress: Vec<u8>,
        _keep_for: Duration,
    ) {
    }

    /// A job's progress as the replica running it published it.
    async fn published_job(&self, _id: &str) -> Option<Vec<u8>> {
        None
    }

    /// Recently published jobs, newest first, at most `limit`.
    async fn published_jobs(&self, _limit: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

/// Round claims held in this process (standalone, and a fleet replica that
/// cannot reach Redis): device id → end of its current claim.
#[derive(Default)]
pub struct RoundClaims(Mutex<HashMap<String, Instant>>);

impl RoundClaims {
    /// True, and claimed for `round`, unless a claim on `device_id` is running.
    pub fn claim(&self, device_id: &str, round: Duration) -> bool {
        let now = Instant::now();
        let mut claims = self.0.lock().expect("claims lock");
        match claims.get(device_id) {
            Some(until) if *until > now => false,
            _ => {
                claims.insert(device_id.to_string(), now + round);
                true
            }
        }
    }

    /// Makes the claim on `device_id` run for `duration` from now.
    pub fn hold(&self, device_id: &str, duration: Duration) {
        let until = Instant::now() + duration;
        self.0
            .lock()
            .expect("claims lock")
            .insert(device_id.to_string(), until);
    }

    /// Forgets the claims of devices for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0.lock().expect("claims lock").retain(|id, _| keep(id));
    }
}

/// Histories kept in this process (standalone, and a fleet replica's polls
/// recorded while Redis is unreachable): device id → its history.
#[derive(Default)]
pub struct DeviceHistories(Mutex<HashMap<String, DeviceHistory>>);

impl DeviceHistories {
    /// Adds `sample` to its device's history and returns the poll as served.
    pub fn record(&self, sample: Sample) -> Arc<PolledDevice> {
        self.record_continuing(sample, None)
    }

    /// Like [`Self::record`], continuing from `seen` (a history this process
    /// saw elsewhere) when it is newer than the one kept here.
    pub fn record_continuing(
        &self,
        sample: Sample,
        seen: Option<DeviceHistory>,
    ) -> Arc<PolledDevice> {
        let mut histories = self.0.lock().expect("history lock");
        let history = histories.entry(sample.device_id.clone()).or_default();
        if let Some(seen) = seen {
            if seen.last_polled_at_ms > history.last_polled_at_ms {
                *history = seen;
            }
        }
        history.record(&sample);
        Arc::new(PolledDevice::new(sample, history))
    }

    /// The history kept for `device_id`.
    pub fn get(&self, device_id: &str) -> Option<DeviceHistory> {
        self.0.lock().expect("history lock").get(device_id).cloned()
    }

    /// Replaces the history of `device_id` (one read back from Redis).
    pub fn insert(&self, device_id: &str, history: DeviceHistory) {
        self.0
            .lock()
            .expect("history lock")
            .insert(device_id.to_string(), history);
    }

    /// Forgets the histories of devices for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .expect("history lock")
            .retain(|id, _| keep(id));
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("history lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// In-process store for standalone mode.
pub struct MemoryStore {
    inventory: Mutex<InventorySnapshot>,
    cache: Mutex<HashMap<String, CachedPoll>>,
    histories: DeviceHistories,
    round_claims: RoundClaims,
    /// Polls older than this are dropped first when the cache is full; no
    /// reader asks for older ones.
    retention: Duration,
    cache_capacity: usize,
}

impl MemoryStore {
    pub fn new(initial: Inventory, retention: Duration, cache_capacity: usize) -> Self {
        MemoryStore {
            inventory: Mutex::new(InventorySnapshot {
                version: 1,
                incarnation: uuid::Uuid::new_v4().simple().to_string().into(),
                inventory: Arc::new(initial),
            }),
            cache: Mutex::new(HashMap::new()),
            histories: DeviceHistories::default(),
            round_claims: RoundClaims::default(),
            retention,
            cache_capacity: cache_capacity.max(1),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn inventory(&self) -> Result<InventorySnapshot, StoreError> {
        Ok(self.inventory.lock().expect("inventory lock").clone())
    }

    async fn update_inventory(
        &self,
        change: InventoryChange<'_>,
        _fence: Fence,
        if_match: Option<&IfMatch>,
    ) -> Result<InventorySnapshot, StoreError> {
        let snapshot = {
            let mut current = self.inventory.lock().expect("inventory lock");
            current.check(if_match)?;
            let mut next = (*current.inventory).clone();
            change(&mut next)?;
            next.validate()?;
            *current = InventorySnapshot {
                version: current.version + 1,
                incarnation: current.incarnation.clone(),
                inventory: Arc::new(next),
            };
            current.clone()
        };
        // Devices that left the inventory keep no cache or history.
        let ids: std::collections::HashSet<&str> = snapshot
            .inventory
            .devices
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        self.cache
            .lock()
            .expect("cache lock")
            .retain(|id, _| ids.contains(id.as_str()));
        self.histories.retain(|id| ids.contains(id));
        self.round_claims.retain(|id| ids.contains(id));
        Ok(snapshot)
    }

    async fn claim_round(&self, device_id: &str, round: Duration) -> bool {
        self.round_claims.claim(device_id, round)
    }

    async fn record_failure(&self, device_id: &str, _message: &str) {
        // The failure is the newest outcome: the older result goes (the
        // collector keeps the error itself for the scrapes it answers).
        self.cache.lock().expect("cache lock").remove(device_id);
    }

    async fn cached_poll(
        &self,
        device_id: &str,
        max_age: Duration,
    ) -> Result<Option<CachedPoll>, StoreError> {
        let cache = self.cache.lock().expect("cache lock");
        Ok(cache
            .get(device_id)
            .filter(|e| e.stored_at.elapsed() < max_age)
            .cloned())
    }

    fn previous_poll(&self, device_id: &str) -> Option<Arc<PolledDevice>> {
        let cache = self.cache.lock().expect("cache lock");
        cache.get(device_id).map(|e| e.polled.clone())
    }

    async fn record_poll(&self, sample: Sample) -> Result<Arc<PolledDevice>, StoreError> {
        let device_id = sample.device_id.clone();
        let polled = self.histories.record(sample);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= self.cache_capacity && !cache.contains_key(&device_id) {
            // Full: drop expired entries, then the oldest one.
            let retention = self.retention;
            cache.retain(|_, e| e.stored_at.elapsed() < retention);
            if cache.len() >= self.cache_capacity {
                if let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, e)| e.stored_at)
                    .map(|(k, _)| k.clone())
                {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(
            device_id,
            CachedPoll {
                polled: polled.clone(),
                stored_at: Instant::now(),
            },
        );
        // Polls outside the inventory (a scrape's own module selection, an
        // unlisted target) keep a history while they are cached, no longer.
        if self.histories.len() > 2 * self.cache_capacity {
            let inventory = self
                .inventory
                .lock()
                .expect("inventory lock")
                .inventory
                .clone();
            let ids: std::collections::HashSet<&str> =
                inventory.devices.iter().map(|d| d.id.as_str()).collect();
            self.histories
                .retain(|id| ids.contains(id) || cache.contains_key(id));
        }
        Ok(polled)
    }

    async fn evict_cache(&self) -> Result<usize, StoreError> {
        let mut cache = self.cache.lock().expect("cache lock");
        let n = cache.len();
        cache.clear();
        Ok(n)
    }

    async fn cache_len(&self) -> usize {
        self.cache.lock().expect("cache lock").len()
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::DiscoverySeed;

    fn sample(id: &str) -> Sample {
        Sample {
            device_id: id.into(),
            device_name: id.into(),
            target: "127.0.0.1:161".into(),
            polled_at_ms: 0,
            poll_duration_seconds: 0.0,
            sys_uptime_ticks: Some(1),
            modules: vec![],
        }
    }

    #[tokio::test]
    async fn failed_change_leaves_inventory_untouched() {
        let store = MemoryStore::new(Inventory::default(), Duration::from_secs(60), 10);
        let before = store.inventory().await.unwrap();
        let err = store
            .update_inventory(
                &|inv: &mut Inventory| {
                    inv.discovery_seeds.push(
                        DiscoverySeed::from_json(br#"{"potentialTargets":["127.0.0.1"]}"#).unwrap(),
                    );
                    Err(InvalidInventory::new("x", "refused").into())
                },
                None,
                None,
            )
            .await;
        assert!(err.is_err());
        let after = store.inventory().await.unwrap();
        assert_eq!(after.version, before.version);
        assert!(after.inventory.discovery_seeds.is_empty());
    }

    #[tokio::test]
    async fn if_match_is_checked_with_the_write() {
        let store = MemoryStore::new(Inventory::default(), Duration::from_secs(60), 10);
        let add_seed = |inv: &mut Inventory| {
            let seed = DiscoverySeed::from_json(br#"{"potentialTargets":["127.0.0.1"]}"#);
            inv.discovery_seeds.push(seed?);
            Ok(())
        };
        let first = store.inventory().await.unwrap();
        let tag = IfMatch(vec![first.etag()]);
        let second = store
            .update_inventory(&add_seed, None, Some(&tag))
            .await
            .unwrap();
        assert_eq!(second.version, first.version + 1);
        assert_ne!(second.etag(), first.etag());
        // The same tag again is stale now: refused, nothing changes.
        let err = store
            .update_inventory(&add_seed, None, Some(&tag))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::PreconditionFailed { version, etag } if *version == second.version && *etag == second.etag()),
            "{err}"
        );
        let after = store.inventory().await.unwrap();
        assert_eq!(after.version, second.version);
        assert_eq!(after.inventory.discovery_seeds.len(), 1);
        // Another process (or a restored Redis) counts versions anew: its tags differ.
        let other = MemoryStore::new(Inventory::default(), Duration::from_secs(60), 10);
        assert_ne!(other.inventory().await.unwrap().etag(), first.etag());
        assert!(!IfMatch(vec![format!("W/{}", after.etag())]).admits(&after.etag()));
    }

    #[tokio::test]
    async fn one_round_claim_per_round() {
        let store = MemoryStore::new(Inventory::default(), Duration::from_secs(60), 10);
        let round = Duration::from_millis(150);
        assert!(store.claim_round("a", round).await);
        assert!(!store.claim_round("a", round).await, "claimed already");
        assert!(store.claim_round("b", round).await, "per device");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(store.claim_round("a", round).await, "next round");
    }

    #[tokio::test]
    async fn cache_is_bounded_and_expires() {
        let store = MemoryStore::new(Inventory::default(), Duration::from_millis(200), 2);
        for id in ["a", "b", "c"] {
            store.record_poll(sample(id)).await.unwrap();
        }
        assert_eq!(store.cache_len().await, 2);
        let max_age = Duration::from_millis(200);
        assert!(
            store.cached_poll("a", max_age).await.unwrap().is_none(),
            "oldest entry evicted"
        );
        assert!(store.cached_poll("c", max_age).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            store.cached_poll("c", max_age).await.unwrap().is_none(),
            "expired"
        );
        let longer = Duration::from_secs(5);
        assert!(
            store.cached_poll("c", longer).await.unwrap().is_some(),
            "a longer max age sees it"
        );
    }

    #[tokio::test]
    async fn a_failure_hides_the_older_result_until_the_next_success() {
        let store = MemoryStore::new(Inventory::default(), Duration::from_secs(60), 10);
        let max_age = Duration::from_secs(60);
        store.record_poll(sample("a")).await.unwrap();
        store.record_poll(sample("b")).await.unwrap();
        store.record_failure("a", "no answer").await;
        assert!(store.cached_poll("a", max_age).await.unwrap().is_none());
        assert!(
            store.cached_poll("b", max_age).await.unwrap().is_some(),
            "per device"
        );
        store.record_poll(sample("a")).await.unwrap();
        assert!(store.cached_poll("a", max_age).await.unwrap().is_some());
    }
}
