//! Polling: one poll of one device becomes a plain [`Sample`] (sysUpTime and
//! the IF-MIB columns the Java PromSNMP reads); the [`Collector`] polls every
//! inventory device each collection interval with bounded concurrency, serves
//! scrapes from the store's cache, and makes sure concurrent scrapes of one
//! device share a single walk. It knows nothing of HTTP or exposition formats.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::inventory::Device;
use crate::sample::{InterfaceSample, PolledDevice, Sample, COUNTERS};
use crate::snmp::{AgentParams, Session, SnmpError, SnmpValue, WalkState, MAX_REQUESTS_PER_WALK};
use crate::store::{ScrapeTurn, Store, StoreError};
use crate::telemetry::Telemetry;

const SYSTEM: [u64; 7] = [1, 3, 6, 1, 2, 1, 1];
const IF_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// Column numbers under ifEntry / ifXEntry.
const IF_DESCR: u64 = 2;
const IF_SPEED: u64 = 5;
const IFX_NAME: u64 = 1;
const IFX_HIGH_SPEED: u64 = 15;
const IFX_ALIAS: u64 = 18;

fn column(entry: &[u64], col: u64) -> Vec<u64> {
    let mut v = entry.to_vec();
    v.push(col);
    v
}

/// sysDescr.0 … sysLocation.0
pub fn system_oid(leaf: u64) -> Vec<u64> {
    let mut v = SYSTEM.to_vec();
    v.extend([leaf, 0]);
    v
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectError {
    #[error("device {device} has no agent to poll")]
    NoAgent { device: String },
    #[error("polling {device} failed: {source}")]
    Snmp { device: String, source: SnmpError },
    #[error("polling {device} failed on another replica: {message}")]
    Elsewhere { device: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The system group of an agent, as discovery stores it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemInfo {
    pub sys_descr: String,
    pub sys_name: String,
    pub sys_contact: String,
    pub sys_location: String,
    pub sys_uptime_ticks: u32,
}

/// GETs the system group scalars in one request.
pub async fn read_system(session: &mut Session) -> Result<SystemInfo, SnmpError> {
    let oids: Vec<Vec<u64>> = [1, 3, 4, 5, 6]
        .iter()
        .map(|leaf| system_oid(*leaf))
        .collect();
    let values = session.get(&oids).await?;
    let text = |leaf: u64| {
        values
            .iter()
            .find(|(oid, _)| *oid == system_oid(leaf))
            .and_then(|(_, v)| v.as_text())
            .unwrap_or_default()
    };
    let uptime = values
        .iter()
        .find(|(oid, _)| *oid == system_oid(3))
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(0);
    Ok(SystemInfo {
        sys_descr: text(1),
        sys_name: text(5),
        sys_contact: text(4),
        sys_location: text(6),
        sys_uptime_ticks: uptime as u32,
    })
}

/// What one poll cost on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollStats {
    pub requests: u64,
    pub duration: Duration,
}

/// How a poll talks to an agent.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// GETBULK max-repetitions per column.
    pub max_repetitions: u32,
    /// Sessions that walk one device's columns at once once the first
    /// request shows the table needs more than one (round trips dominate).
    pub sessions_per_poll: usize,
}

/// Polls one device once: sysUpTime plus the IF-MIB columns.
pub async fn poll_device(
    device: &Device,
    settings: PollSettings,
) -> Result<(Sample, PollStats), (CollectError, PollStats)> {
    let started = Instant::now();
    let name = device.sys_name.clone();
    let Some(agent) = device.poll_agent() else {
        return Err((CollectError::NoAgent { device: name }, PollStats::default()));
    };
    let params = match AgentParams::from_agent(agent, settings.max_repetitions) {
        Ok(p) => p,
        Err(source) => {
            return Err((
                CollectError::Snmp {
                    device: name,
                    source,
                },
                PollStats::default(),
            ))
        }
    };
    let mut session = Session::new(params);
    let mut requests = 0;
    let result = walk_interfaces(&mut session, settings.sessions_per_poll, &mut requests).await;
    let stats = PollStats {
        requests: requests + session.requests_sent,
        duration: started.elapsed(),
    };
    match result {
        Ok((uptime, interfaces)) => Ok((
            Sample {
                device_id: device.id.clone(),
                device_name: device.sys_name.clone(),
                target: agent.endpoint.target(),
                polled_at_ms: chrono::Utc::now().timestamp_millis(),
                poll_duration_seconds: stats.duration.as_secs_f64(),
                sys_uptime_ticks: uptime,
                interfaces,
            },
            stats,
        )),
        Err(source) => Err((
            CollectError::Snmp {
                device: name,
                source,
            },
            stats,
        )),
    }
}

/// Walks the interface columns. The first request asks for every column; a
/// small table ends there. A longer one is continued by up to
/// `sessions_per_poll` sessions at once, each walking a share of the columns
/// (their requests are added to `extra_requests`).
async fn walk_interfaces(
    session: &mut Session,
    sessions_per_poll: usize,
    extra_requests: &mut u64,
) -> Result<(u32, Vec<InterfaceSample>), SnmpError> {
    // Text/gauge columns first, then the counters, all walked together.
    let mut columns = vec![
        column(&IF_ENTRY, IF_DESCR),
        column(&IF_ENTRY, IF_SPEED),
        column(&IFX_ENTRY, IFX_NAME),
        column(&IFX_ENTRY, IFX_HIGH_SPEED),
        column(&IFX_ENTRY, IFX_ALIAS),
    ];
    let fixed = columns.len();
    columns.extend(
        COUNTERS
            .iter()
            .map(|c| column(&IFX_ENTRY, c.oid_suffix as u64)),
    );
    let mut state = WalkState::new(&[system_oid(3)], &columns);
    session.advance(&mut state, 1).await?;
    if !state.is_complete() && sessions_per_poll > 1 {
        let parts = state.split_unfinished(sessions_per_poll);
        let walks = parts.into_iter().map(|(positions, mut part)| {
            let params = session.params().clone();
            async move {
                let mut helper = Session::new(params);
                let result = helper.advance(&mut part, MAX_REQUESTS_PER_WALK).await;
                (positions, part, result, helper.requests_sent)
            }
        });
        for (positions, part, result, requests) in futures_util::future::join_all(walks).await {
            *extra_requests += requests;
            result?;
            state.merge(&positions, part);
        }
    }
    session.advance(&mut state, MAX_REQUESTS_PER_WALK).await?;
    let walked = session.finish(state).await?;
    let uptime = walked.scalars[0].as_u64().unwrap_or(0) as u32;

    let mut interfaces: BTreeMap<u32, InterfaceSample> = BTreeMap::new();
    for (col, rows) in walked.columns.into_iter().enumerate() {
        for (index, value) in rows {
            let [if_index] = index[..] else { continue };
            let Ok(if_index) = u32::try_from(if_index) else {
                continue;
            };
            let iface = interfaces
                .entry(if_index)
                .or_insert_with(|| InterfaceSample {
                    if_index,
                    ..Default::default()
                });
            let text = || value.as_text().unwrap_or_default();
            match col {
                0 => iface.if_descr = text(),
                1 => iface.if_speed_bps = value.as_u64(),
                2 => iface.if_name = text(),
                3 => iface.if_high_speed_mbps = value.as_u64(),
                4 => iface.if_alias = text(),
                n => {
                    iface.counters[n - fixed] = match value {
                        SnmpValue::Counter64(v) => Some(v),
                        ref other => other.as_u64(),
                    }
                }
            }
        }
    }
    Ok((uptime, interfaces.into_values().collect()))
}

/// How often devices are checked for a due poll: a quarter of the collection
/// interval, at most 5 s.
pub fn check_period(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Polls devices and serves their latest results.
pub struct Collector {
    store: Arc<dyn Store>,
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
        telemetry: Arc<Telemetry>,
        settings: PollSettings,
        poll_concurrency: usize,
        cache_expiry: Duration,
    ) -> Self {
        Collector {
            store,
            telemetry,
            settings,
            poll_concurrency,
            cache_expiry,
            device_locks: Default::default(),
            recent_failures: Default::default(),
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

    /// Polls `device` now and stores the result.
    pub async fn poll(&self, device: &Device) -> Result<Arc<PolledDevice>, CollectError> {
        let lock = self.device_lock(&device.id);
        let _guard = lock.lock().await;
        self.poll_locked(device).await
    }

    async fn poll_locked(&self, device: &Device) -> Result<Arc<PolledDevice>, CollectError> {
        let mut unfinished = Unfinished {
            store: Some(self.store.clone()),
            device_id: &device.id,
        };
        let result = self.poll_and_record(device).await;
        unfinished.store = None;
        result
    }

    async fn poll_and_record(&self, device: &Device) -> Result<Arc<PolledDevice>, CollectError> {
        let in_flight = InFlight::start(&self.telemetry);
        let result = poll_device(device, self.settings).await;
        drop(in_flight);
        self.telemetry.replica_polls.inc();
        match result {
            Ok((sample, stats)) => {
                self.telemetry.record_poll(&device.sys_name, stats, true);
                self.recent_failures
                    .lock()
                    .expect("failures")
                    .remove(&device.id);
                Ok(self.store.record_poll(sample).await?)
            }
            Err((e, stats)) => {
                self.telemetry.record_poll(&device.sys_name, stats, false);
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
        if !live {
            // Someone else may have polled while we waited for the lock.
            if let Some(hit) = self
                .store
                .cached_poll(&device.id, self.cache_expiry)
                .await?
            {
                if hit.stored_at >= started {
                    self.telemetry.cache_hit();
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
        let results: Vec<Option<bool>> = futures_util::stream::iter(inventory.devices.iter().cloned())
            .map(|device| async move {
                if !self.store.claim_round(&device.id, round).await {
                    return None;
                }
                Some(match tokio::time::timeout(poll_deadline, self.poll(&device)).await {
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
