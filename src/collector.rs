//! Scheduling and serving polls: the [`Collector`] polls every inventory
//! device each collection interval with bounded concurrency, serves scrapes
//! from the store's cache, and makes sure concurrent scrapes of one device
//! share a single walk. What one poll does is `poll`'s business; what a
//! device polls, `modules`'. It knows nothing of HTTP or exposition formats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::inventory::Device;
use crate::modules::Modules;
use crate::poll::{poll_device, PollError, PollSettings};
use crate::polled::PolledDevice;
use crate::store::{ScrapeTurn, Store, StoreError};
use crate::telemetry::Telemetry;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error("polling {device} failed on another replica: {message}")]
    Elsewhere { device: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often devices are checked for a due poll: a quarter of the collection
/// interval, at most 5 s.
pub fn check_period(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Polls of a device remembered for its page in the console.
const POLLS_REMEMBERED: usize = 20;

/// One poll of a device by this replica.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRecord {
    /// When it ended, ms since the Unix epoch.
    pub at_ms: i64,
    pub seconds: f64,
    /// Why it failed; `None`: it succeeded.
    pub error: Option<String>,
}

/// Polls devices and serves their latest results.
pub struct Collector {
    store: Arc<dyn Store>,
    modules: Arc<Modules>,
    telemetry: Arc<Telemetry>,
    settings: PollSettings,
    poll_concurrency: usize,
    /// How old a cached poll a scrape may be served.
    cache_expiry: Duration,
    /// One lock per device, so concurrent scrapes share one walk.
    device_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The last failed poll per device, so scrapes that waited for it share
    /// its error instead of each walking an unreachable device again.
    recent_failures: std::sync::Mutex<HashMap<String, (Instant, CollectError)>>,
    /// This replica's last polls per device, newest last (for the console).
    poll_history: std::sync::Mutex<HashMap<String, std::collections::VecDeque<PollRecord>>>,
    /// Walks running at once, background and scrape-triggered together.
    poll_slots: tokio::sync::Semaphore,
}

/// Keeps `promsnmp_polls_in_flight` right even when a poll is cancelled.
struct InFlight<'a>(&'a Telemetry);

impl<'a> InFlight<'a> {
    fn start(telemetry: &'a Telemetry) -> Self {
        telemetry.polls_in_flight.inc();
        InFlight(telemetry)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.polls_in_flight.dec();
    }
}

/// Tells the store when a poll is dropped midway (a scrape timeout cancels
/// the request future), so a fleet's poll lock does not outlive the poll.
struct Unfinished<'a> {
    store: Option<Arc<dyn Store>>,
    device_id: &'a str,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let (Some(store), Ok(runtime)) = (self.store.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let device_id = self.device_id.to_string();
        runtime.spawn(async move { store.abandon_poll(&device_id).await });
    }
}

impl Collector {
    pub fn new(
        store: Arc<dyn Store>,
        modules: Arc<Modules>,
        telemetry: Arc<Telemetry>,
        settings: PollSettings,
        poll_concurrency: usize,
        cache_expiry: Duration,
    ) -> Self {
        Collector {
            store,
            modules,
            telemetry,
            settings,
            poll_concurrency,
            cache_expiry,
            device_locks: Default::default(),
            recent_failures: Default::default(),
            poll_history: Default::default(),
            poll_slots: tokio::sync::Semaphore::new(poll_concurrency.max(1)),
        }
    }

    fn device_lock(&self, device_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.device_locks.lock().expect("device locks");
        if locks.len() > 4 * self.poll_concurrency + 1024 {
            // Forget locks nobody holds (devices that left the inventory).
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            self.recent_failures
                .lock()
                .expect("failures")
                .retain(|id, _| locks.contains_key(id));
        }
        locks.entry(device_id.to_string()).or_default().clone()
    }

    /// This replica's last polls of `device_id`, oldest first.
    pub fn poll_history(&self, device_id: &str) -> Vec<PollRecord> {
        self.poll_history
            .lock()
            .expect("history")
            .get(device_id)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remember_poll(&self, device_id: &str, record: PollRecord) {
        let mut history = self.poll_history.lock().expect("history");
        let polls = history.entry(device_id.to_string()).or_default();
        if polls.len() == POLLS_REMEMBERED {
            polls.pop_front();
        }
        polls.push_back(record);
    }

    /// This replica's last failed poll of `device_id` since its last success:
    /// how long ago, and why.
    pub fn last_failure(&self, device_id: &str) -> Option<(Duration, String)> {
        self.recent_failures
            .lock()
            .expect("failures")
            .get(device_id)
            .map(|(at, e)| (at.elapsed(), e.to_string()))
    }

    /// Polls `device` now and stores the result.
    pub async fn poll(&self, device: &Device) -> Result<Arc<PolledDevice>, CollectError> {
        let lock = self.device_lock(&device.id);
        let _guard = lock.lock().await;
        self.poll_locked(device).await
    }

    async fn poll_locked(&self, device: &Device) -> Result<Arc<PolledDevice>, CollectError> {
        // Background and scrape-triggered polls share one bound.
        let _slot = self
            .poll_slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut unfinished = Unfinished {
            store: Some(self.store.clone()),
            device_id: &device.id,
        };
        let result = self.poll_and_record(device).await;
        unfinished.store = None;
        result
    }

    async fn poll_and_record(&self, device: &Device) -> Result<Arc<PolledDevice>, CollectError> {
        let resolved = self.modules.current().resolve(device.modules.as_deref());
        let previous = self.store.previous_poll(&device.id);
        let in_flight = InFlight::start(&self.telemetry);
        let started = std::time::Instant::now();
        let result = poll_device(device, &resolved, self.settings, previous.as_deref()).await;
        drop(previous);
        drop(in_flight);
        self.telemetry.replica_polls.inc();
        let stats = match &result {
            Ok((_, stats, _)) | Err((_, stats)) => *stats,
        };
        if let Some(cap) = stats.learned_answer_cap {
            self.telemetry.answer_caps_learned.inc();
            tracing::warn!(device = %device.sys_name, varbinds_per_request = cap, "the agent left a large GETBULK request unanswered and answered a smaller one: its polls ask for at most this many varbinds per request (for the next hour)");
        }
        match result {
            Ok((sample, stats, skipped)) => {
                self.telemetry.record_poll(&device.sys_name, stats, true);
                self.remember_poll(
                    &device.id,
                    PollRecord {
                        at_ms: sample.polled_at_ms,
                        seconds: sample.poll_duration_seconds,
                        error: None,
                    },
                );
                if skipped.count > 0 {
                    self.telemetry.decode_skipped.inc_by(skipped.count);
                    tracing::debug!(device = %device.sys_name, skipped = skipped.count, first = skipped.first.as_deref().unwrap_or(""), "values the modules could not read were left out");
                }
                self.recent_failures
                    .lock()
                    .expect("failures")
                    .remove(&device.id);
                Ok(self.store.record_poll(sample).await?)
            }
            Err((e, stats)) => {
                let e = CollectError::from(e);
                self.telemetry.record_poll(&device.sys_name, stats, false);
                self.remember_poll(
                    &device.id,
                    PollRecord {
                        at_ms: chrono::Utc::now().timestamp_millis(),
                        seconds: started.elapsed().as_secs_f64(),
                        error: Some(e.to_string()),
                    },
                );
                self.recent_failures
                    .lock()
                    .expect("failures")
                    .insert(device.id.clone(), (Instant::now(), e.clone()));
                self.store.record_failure(&device.id, &e.to_string()).await;
                Err(e)
            }
        }
    }

    /// The cached poll of `device` if fresh, else a live poll (shared with any
    /// concurrent scrape of the same device, failures included). `live` skips
    /// the cache.
    pub async fn get_or_poll(
        &self,
        device: &Device,
        live: bool,
    ) -> Result<Arc<PolledDevice>, CollectError> {
        // Anything stored after this instant answers this scrape.
        let started = Instant::now();
        if !live {
            if let Some(hit) = self
                .store
                .cached_poll(&device.id, self.cache_expiry)
                .await?
            {
                self.telemetry.cache_hit();
                return Ok(hit.polled);
            }
        }
        let lock = self.device_lock(&device.id);
        let _guard = lock.lock().await;
        // A poll that ended after this scrape began answers it, live or not:
        // concurrent scrapes share one walk, and a storm of live scrapes
        // costs one walk per device at a time, not one per scrape.
        if let Some(hit) = self
            .store
            .cached_poll(&device.id, self.cache_expiry)
            .await?
        {
            if hit.stored_at >= started {
                if !live {
                    self.telemetry.cache_hit();
                }
                return Ok(hit.polled);
            }
        }
        let failed = self
            .recent_failures
            .lock()
            .expect("failures")
            .get(&device.id)
            .cloned();
        if let Some((at, error)) = failed {
            if at >= started {
                return Err(error);
            }
        }
        if !live {
            self.telemetry.cache_miss();
            // In a fleet another replica may be walking it right now.
            match self.store.scrape_turn(&device.id, started).await {
                ScrapeTurn::PollNow => {}
                ScrapeTurn::Polled(polled) => return Ok(polled),
                ScrapeTurn::Failed(message) => {
                    return Err(CollectError::Elsewhere {
                        device: device.sys_name.clone(),
                        message,
                    })
                }
            }
        }
        self.poll_locked(device).await
    }

    /// Polls every inventory device whose round this replica can claim
    /// (`Store::claim_round`: in a fleet, the devices it owns and nobody polled
    /// this round), `poll_concurrency` at a time. A poll still running after
    /// `poll_deadline` is abandoned (its device keeps its last result), so one
    /// broken agent cannot stall the rounds. Returns (ok, failed).
    pub async fn poll_due(&self, round: Duration, poll_deadline: Duration) -> (usize, usize) {
        let inventory = match self.store.inventory().await {
            Ok(s) => s.inventory,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inventory; skipping this collection round");
                return (0, 0);
            }
        };
        // What is remembered per device follows the inventory (a device
        // that left it is forgotten; an idle one is kept).
        if self.poll_history.lock().expect("history").len() > inventory.devices.len() {
            let ids: std::collections::HashSet<&str> =
                inventory.devices.iter().map(|d| d.id.as_str()).collect();
            self.poll_history
                .lock()
                .expect("history")
                .retain(|id, _| ids.contains(id.as_str()));
        }
        // Each poll holds the snapshot (not a copy of its device).
        let results: Vec<Option<bool>> = futures_util::stream::iter(0..inventory.devices.len())
            .map(|i| {
                let inventory = inventory.clone();
                async move {
                let device = &inventory.devices[i];
                if !self.store.claim_round(&device.id, round).await {
                    return None;
                }
                Some(match tokio::time::timeout(poll_deadline, self.poll(device)).await {
                    Ok(Ok(_)) => true,
                    Err(_) => {
                        tracing::warn!(device = %device.sys_name, deadline_ms = poll_deadline.as_millis() as u64, "background poll abandoned: it took longer than the collection interval");
                        false
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(device = %device.sys_name, error = %e, "background poll failed");
                        false
                    }
                })
                }
            })
            .buffer_unordered(self.poll_concurrency)
            .collect()
            .await;
        let ok = results.iter().filter(|r| **r == Some(true)).count();
        let failed = results.iter().filter(|r| **r == Some(false)).count();
        (ok, failed)
    }

    /// Polls every device once per `interval` until `cancel` fires; polls in
    /// progress complete first. Devices are checked every `check_period(interval)`
    /// and polled when their round claim has expired, so in a fleet a device
    /// whose owner died is picked up by the next owner within one interval.
    pub async fn run(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let check = check_period(interval);
        // Claims end half a check early so the next check after `interval`
        // finds them free: rounds average `interval`.
        let round = interval.saturating_sub(check / 2).max(check);
        let mut ticker = tokio::time::interval(check);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let started = Instant::now();
            let (ok, failed) = self.poll_due(round, interval).await;
            if ok + failed == 0 {
                continue;
            }
            self.telemetry.collection_rounds.inc();
            // glibc keeps freed pages; a round frees and allocates the same
            // sizes for every device. Off the async threads: it walks the heap.
            let _ = tokio::task::spawn_blocking(crate::heap::release_free_memory).await;
            tracing::info!(
                ok,
                failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "collection round finished"
            );
        }
        tracing::info!("collector stopped");
    }
}
