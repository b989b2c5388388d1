//! Discovery: expands a seed's targets (IPs, host names, CIDR blocks, with an
//! upper bound; duplicate addresses are probed once), probes them concurrently
//! for the SNMP system group, and adds each agent that answers to the
//! inventory as a device named by its sysName. Host names are resolved inside
//! the probe stream. One semaphore bounds the probes in flight across all jobs
//! of the process; found devices are written to the inventory in batches.
//! Jobs run in the background and report progress (probed / total / found)
//! and how each address ended: found, no answer (a wrong v1/v2c community
//! looks the same), refused by the agent with its reason (SNMPv3 reports,
//! read by `usm_report`), or a name that did not resolve. In a fleet the
//! progress is published to the store so every replica can answer for it.
//! Cancellation stops new probes and still saves what was found. Scheduled
//! runs follow `DISCOVERY_CRON` in `DISCOVERY_TZ`. SNMP itself is `snmp`'s
//! business, storage `persistence`'s.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::DiscoverySchedule;
use crate::inventory::{
    now_seconds, Agent, Device, DiscoverySeed, InvalidInventory, Inventory, PrimaryAgent,
};
use crate::modules::Modules;
use crate::persistence::InventoryWriter;
use crate::poll::{read_system, SystemInfo};
use crate::snmp::{AgentParams, Session, SnmpError};
use crate::store::{Fence, StoreError};
use crate::telemetry::Telemetry;

/// Finished jobs remembered for progress queries (running jobs are always
/// kept): this many at most, each for this long after it finished.
const JOBS_KEPT: usize = 200;
const JOB_KEPT_FOR: Duration = Duration::from_secs(3600);
/// Jobs running at once before the API refuses another (`429`); the
/// scheduled run of the saved seeds is not refused.
pub const MAX_API_JOBS: usize = 8;
/// Addresses whose outcome a job lists one by one (its counts cover all).
const MAX_LISTED_OUTCOMES: usize = 4096;
/// A running job's progress is published this often at most.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The API may not start another discovery job now.
#[derive(Debug, thiserror::Error)]
#[error("{running} discovery jobs are running (the API starts at most {MAX_API_JOBS} at once): retry when one has finished")]
pub struct Busy {
    pub running: usize,
}
/// Found devices are written to the inventory once this many are pending…
const FLUSH_DEVICES: usize = 64;
/// …or this long after the previous write, and always when the job ends.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long one host name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pauses (seconds) before the further tries of a save the store refused
/// as unavailable.
const SAVE_RETRY_PAUSES_S: [u64; 3] = [1, 3, 10];

/// One entry of a seed's target list, checked but not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    Address(IpAddr),
    Block(ipnet::IpNet),
    HostName(String),
}

impl TargetSpec {
    fn address_count(&self) -> u128 {
        match self {
            TargetSpec::Address(_) | TargetSpec::HostName(_) => 1,
            TargetSpec::Block(net) => match net {
                ipnet::IpNet::V4(n) if n.prefix_len() >= 31 => 1u128 << (32 - n.prefix_len()),
                ipnet::IpNet::V4(n) => (1u128 << (32 - n.prefix_len())) - 2,
                ipnet::IpNet::V6(n) => 1u128
                    .checked_shl(128 - n.prefix_len() as u32)
                    .unwrap_or(u128::MAX),
            },
        }
    }
}

/// Checks a seed's targets; refuses unknown forms and more than `max_addresses` addresses.
pub fn parse_targets(
    targets: &[String],
    max_addresses: usize,
) -> Result<Vec<TargetSpec>, InvalidInventory> {
    let mut specs = Vec::new();
    let mut total: u128 = 0;
    for (i, raw) in targets.iter().enumerate() {
        let t = raw.trim();
        let field = format!("potentialTargets[{i}]");
        let spec = if t.contains('/') {
            TargetSpec::Block(
                t.parse::<ipnet::IpNet>()
                    .map_err(|_| {
                        InvalidInventory::new(&field, format!("`{t}` is not a CIDR block"))
                    })?
                    .trunc(),
            )
        } else if let Ok(ip) = t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            TargetSpec::Address(ip)
        } else if crate::inventory::is_host_name(t) {
            TargetSpec::HostName(t.to_string())
        } else {
            return Err(InvalidInventory::new(
                &field,
                format!("`{t}` is not an IP address, CIDR block or host name"),
            ));
        };
        total = total.saturating_add(spec.address_count());
        if total > max_addresses as u128 {
            return Err(InvalidInventory::new(
                &field,
                format!("the targets expand to more than {max_addresses} addresses (PROMSNMP_DISCOVERY_MAX_ADDRESSES); split the range"),
            ));
        }
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(InvalidInventory::new(
            "potentialTargets",
            "at least one target is required",
        ));
    }
    Ok(specs)
}

/// What a job probes: each distinct address of the IP and CIDR targets once,
/// and each distinct host name once (resolved when its turn comes).
#[derive(Debug, Clone, PartialEq)]
struct Expanded {
    addresses: Vec<IpAddr>,
    host_names: Vec<String>,
}

impl Expanded {
    /// Probe items, and so the job's `total`: exact before anything is resolved.
    fn total(&self) -> usize {
        self.addresses.len() + self.host_names.len()
    }
}

/// Expands checked targets (bounded by `parse_targets`). Addresses are
/// deduplicated across IP and CIDR targets; host names are not resolved here,
/// so a name that resolves to an address also listed is probed twice (harmless:
/// the inventory upsert is keyed by endpoint).
fn expand(specs: &[TargetSpec]) -> Expanded {
    let mut addresses = BTreeSet::new();
    let mut host_names = Vec::new();
    let mut seen_names = HashSet::new();
    for spec in specs {
        match spec {
            TargetSpec::Address(ip) => {
                addresses.insert(*ip);
            }
            TargetSpec::Block(net) => addresses.extend(hosts(net)),
            TargetSpec::HostName(name) => {
                if seen_names.insert(name.to_ascii_lowercase()) {
                    host_names.push(name.clone());
                }
            }
        }
    }
    Expanded {
        addresses: addresses.into_iter().collect(),
        host_names,
    }
}

/// One unit of probing work: holds one permit of the process-wide limit.
enum ProbeItem {
    Address(IpAddr),
    HostName(String),
}

/// How one probe item ended.
enum ProbeOutcome {
    /// An agent answered at this address.
    Found(IpAddr, Box<Device>),
    /// Probed and did not end with a device: why, per address.
    Failed(AddressOutcome),
    /// Stopped by cancellation before it was probed; not counted.
    Cancelled,
}

/// How one address (or host name) of a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressOutcome {
    pub address: String,
    pub outcome: Outcome,
    /// Why, in words: the agent's report, the timeout, the lookup error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The device's sysName, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Found,
    /// Nothing answered within the timeout: the agent is down or
    /// unreachable, or (v1/v2c) the community is wrong.
    NoAnswer,
    /// The agent answered with a refusal (SNMPv3 report, error) or an
    /// answer that could not be used.
    Refused,
    /// A host name that did not resolve.
    Unresolved,
}

/// Progress of one discovery job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    pub id: String,
    pub seed_id: String,
    pub state: JobState,
    pub total: usize,
    pub probed: usize,
    pub found: usize,
    #[serde(default)]
    pub no_answer: usize,
    #[serde(default)]
    pub refused: usize,
    #[serde(default)]
    pub unresolved: usize,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub errors: Vec<String>,
    /// The replica that runs the job.
    #[serde(default)]
    pub replica: String,
    /// Each probed address's outcome (the first `MAX_LISTED_OUTCOMES`).
    #[serde(default)]
    pub outcomes: Vec<AddressOutcome>,
    /// Outcomes counted but not listed.
    #[serde(default)]
    pub outcomes_omitted: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Finished,
    Cancelled,
}

struct Job {
    id: String,
    seed_id: String,
    total: AtomicUsize,
    probed: AtomicUsize,
    found: AtomicUsize,
    /// Per address, and the counts of each failure kind.
    outcomes: Mutex<JobOutcomes>,
    started_at: String,
    /// For the store's index of recent jobs.
    started_ms: u64,
    /// State, RFC 3339 time and instant of the end.
    finished: Mutex<Option<(JobState, String, Instant)>>,
    errors: Mutex<Vec<String>>,
    /// Leadership epoch of a leader-only run (schedule, DISCOVERY_ON_START):
    /// its inventory writes are refused once another replica leads.
    fence: Fence,
    /// The seed named modules: they replace a found device's modules.
    seed_modules: bool,
}

#[derive(Default)]
struct JobOutcomes {
    listed: Vec<AddressOutcome>,
    omitted: usize,
    no_answer: usize,
    refused: usize,
    unresolved: usize,
}

impl JobOutcomes {
    fn add(&mut self, outcome: AddressOutcome) {
        match outcome.outcome {
            Outcome::Found => {}
            Outcome::NoAnswer => self.no_answer += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Unresolved => self.unresolved += 1,
        }
        if self.listed.len() < MAX_LISTED_OUTCOMES {
            self.listed.push(outcome);
        } else {
            self.omitted += 1;
        }
    }
}

impl Job {
    fn outcome(&self, outcome: AddressOutcome) {
        self.outcomes.lock().expect("job lock").add(outcome);
    }

    fn is_running(&self) -> bool {
        self.finished.lock().expect("job lock").is_none()
    }

    fn error(&self, line: String) {
        self.errors.lock().expect("job lock").push(line);
    }

    fn progress(&self, replica: &str) -> JobProgress {
        let finished = self.finished.lock().expect("job lock").clone();
        let outcomes = self.outcomes.lock().expect("job lock");
        JobProgress {
            id: self.id.clone(),
            seed_id: self.seed_id.clone(),
            state: finished.as_ref().map_or(JobState::Running, |(s, _, _)| *s),
            total: self.total.load(Ordering::Relaxed),
            probed: self.probed.load(Ordering::Relaxed),
            found: self.found.load(Ordering::Relaxed),
            no_answer: outcomes.no_answer,
            refused: outcomes.refused,
            unresolved: outcomes.unresolved,
            started_at: self.started_at.clone(),
            finished_at: finished.map(|(_, at, _)| at),
            errors: self.errors.lock().expect("job lock").clone(),
            replica: replica.to_string(),
            outcomes: outcomes.listed.clone(),
            outcomes_omitted: outcomes.omitted,
        }
    }
}

/// Drops finished jobs that ended more than `keep_for` ago, then the oldest
/// finished ones beyond `keep_count` jobs in all; running jobs stay.
fn forget_finished(
    jobs: &mut VecDeque<Arc<Job>>,
    now: Instant,
    keep_for: Duration,
    keep_count: usize,
) {
    jobs.retain(|j| match &*j.finished.lock().expect("job lock") {
        None => true,
        Some((_, _, at)) => now.saturating_duration_since(*at) < keep_for,
    });
    while jobs.len() > keep_count {
        let Some(oldest_done) = jobs.iter().position(|j| !j.is_running()) else {
            break;
        };
        jobs.remove(oldest_done);
    }
}

pub struct Discovery {
    writer: Arc<InventoryWriter>,
    /// The module rules pick modules for devices a seed names none for.
    modules: Arc<Modules>,
    telemetry: Arc<Telemetry>,
    concurrency: usize,
    /// `concurrency` permits shared by every job: each probe holds one, so
    /// all jobs together never have more than `concurrency` probes in flight.
    probe_permits: Arc<Semaphore>,
    max_addresses: usize,
    max_repetitions: u32,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    /// This replica's id, named in the progress of the jobs it runs.
    replica: String,
    cancel: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

/// How discovery probes, from the configuration.
#[derive(Debug, Clone)]
pub struct DiscoverySettings {
    /// Probes in flight across all jobs (`PROMSNMP_DISCOVERY_CONCURRENCY`).
    pub concurrency: usize,
    /// Largest job, in addresses (`PROMSNMP_DISCOVERY_MAX_ADDRESSES`).
    pub max_addresses: usize,
    pub max_repetitions: u32,
    /// This replica's id, named in the progress of the jobs it runs.
    pub replica: String,
}

impl Discovery {
    pub fn new(
        writer: Arc<InventoryWriter>,
        modules: Arc<Modules>,
        telemetry: Arc<Telemetry>,
        settings: DiscoverySettings,
        cancel: CancellationToken,
    ) -> Self {
        let DiscoverySettings {
            concurrency,
            max_addresses,
            max_repetitions,
            replica,
        } = settings;
        let concurrency = concurrency.max(1);
        Discovery {
            writer,
            modules,
            telemetry,
            concurrency,
            probe_permits: Arc::new(Semaphore::new(concurrency)),
            max_addresses,
            max_repetitions,
            jobs: Mutex::new(VecDeque::new()),
            replica,
            cancel,
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    pub fn max_addresses(&self) -> usize {
        self.max_addresses
    }

    /// Checks `seed` and starts a job in the background. The job id is the seed id.
    pub fn submit(self: &Arc<Self>, seed: DiscoverySeed) -> Result<JobProgress, InvalidInventory> {
        self.submit_fenced(seed, None)
    }

    /// Whether the API may start another job now (asked before anything of
    /// the request is saved).
    pub fn has_room(&self) -> Result<(), Busy> {
        let running = self.running_jobs();
        if running >= MAX_API_JOBS {
            return Err(Busy { running });
        }
        Ok(())
    }

    /// [`Discovery::submit`] for a leader-only run carrying its epoch.
    pub fn submit_fenced(
        self: &Arc<Self>,
        seed: DiscoverySeed,
        fence: Fence,
    ) -> Result<JobProgress, InvalidInventory> {
        let specs = parse_targets(&seed.potential_targets, self.max_addresses)?;
        let targets = expand(&specs);
        let job = Arc::new(Job {
            id: seed.id.clone(),
            seed_id: seed.id.clone(),
            total: AtomicUsize::new(targets.total()),
            probed: AtomicUsize::new(0),
            found: AtomicUsize::new(0),
            outcomes: Mutex::new(JobOutcomes::default()),
            started_at: now_seconds().to_rfc3339(),
            started_ms: chrono::Utc::now().timestamp_millis().max(0) as u64,
            finished: Mutex::new(None),
            errors: Mutex::new(Vec::new()),
            fence,
            seed_modules: seed.modules.is_some(),
        });
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            // A new run of a seed replaces its finished runs.
            jobs.retain(|j| j.id != job.id || j.is_running());
            forget_finished(&mut jobs, Instant::now(), JOB_KEPT_FOR, JOBS_KEPT - 1);
            jobs.push_back(job.clone());
        }
        let this = self.clone();
        let progress = job.progress(&self.replica);
        self.tasks
            .spawn(async move { this.run_job(job, seed, targets).await });
        Ok(progress)
    }

    /// Progress of the newest job with this id: run here, else as the
    /// replica running it published it (fleet).
    pub async fn progress(&self, id: &str) -> Option<JobProgress> {
        let local = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            forget_finished(&mut jobs, Instant::now(), JOB_KEPT_FOR, JOBS_KEPT);
            jobs.iter()
                .rev()
                .find(|j| j.id == id)
                .map(|j| j.progress(&self.replica))
        };
        // A job still running here is the freshest view there is (a
        // console follows it every second): no need to ask the store.
        if local.as_ref().is_some_and(|p| p.state == JobState::Running) {
            return local;
        }
        let published = self
            .writer
            .store()
            .published_job(id)
            .await
            .and_then(|json| serde_json::from_slice::<JobProgress>(&json).ok());
        newest(local, published)
    }

    /// Recent jobs of every replica, newest first, at most `limit`.
    pub async fn recent(&self, limit: usize) -> Vec<JobProgress> {
        let mut all: Vec<JobProgress> = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            forget_finished(&mut jobs, Instant::now(), JOB_KEPT_FOR, JOBS_KEPT);
            jobs.iter().map(|j| j.progress(&self.replica)).collect()
        };
        for json in self.writer.store().published_jobs(limit).await {
            let Ok(published) = serde_json::from_slice::<JobProgress>(&json) else {
                continue;
            };
            match all.iter_mut().find(|p| p.id == published.id) {
                Some(known) => *known = newest(Some(known.clone()), Some(published)).expect("two"),
                None => all.push(published),
            }
        }
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        all.truncate(limit);
        all
    }

    /// Publishes a job's progress for the other replicas (a no-op standalone).
    async fn publish(&self, job: &Job) {
        // Standalone nobody else reads it: skip encoding every second.
        if !self.writer.store().shares_jobs() {
            return;
        }
        let progress = job.progress(&self.replica);
        match serde_json::to_vec(&progress) {
            Ok(json) => {
                self.writer
                    .store()
                    .publish_job(&job.id, job.started_ms, json, JOB_KEPT_FOR)
                    .await
            }
            Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot encode the job's progress"),
        }
    }

    /// Jobs still running (for `/promsnmp/threadPools`).
    pub fn running_jobs(&self) -> usize {
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .filter(|j| j.is_running())
            .count()
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn run_job(&self, job: Arc<Job>, seed: DiscoverySeed, targets: Expanded) {
        self.telemetry.discoveries_running.inc();
        tracing::info!(job = %job.id, targets = ?seed.potential_targets, total = job.total.load(Ordering::Relaxed), "discovery started");
        let seed = &seed;
        let items = targets
            .addresses
            .into_iter()
            .map(ProbeItem::Address)
            .chain(targets.host_names.into_iter().map(ProbeItem::HostName));
        // At most `concurrency` items buffered per job; the shared semaphore
        // bounds what is actually in flight across jobs. Set to `None` on
        // cancellation: that abandons the probes in flight (releasing their
        // permits) and starts no new ones.
        let mut probes = Some(Box::pin(
            futures_util::stream::iter(items)
                .map(|item| self.probe_item(seed, item))
                .buffer_unordered(self.concurrency),
        ));
        // Found devices not yet written. A write is short (one inventory
        // change); probes in flight keep their own timers meanwhile.
        let mut pending: Vec<(IpAddr, Device)> = Vec::new();
        let mut last_flush = tokio::time::Instant::now();
        let mut last_publish = tokio::time::Instant::now();
        self.publish(&job).await;
        let mut cancelled = false;
        while let Some(stream) = probes.as_mut() {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    cancelled = true;
                    probes = None;
                }
                _ = tokio::time::sleep_until(last_flush + FLUSH_INTERVAL), if !pending.is_empty() => {}
                next = stream.next() => match next {
                    None => probes = None,
                    Some(outcome) => self.record(&job, outcome, &mut pending),
                },
            }
            if pending.len() >= FLUSH_DEVICES || last_flush.elapsed() >= FLUSH_INTERVAL {
                if !pending.is_empty() {
                    self.flush(&job, std::mem::take(&mut pending)).await;
                }
                last_flush = tokio::time::Instant::now();
            }
            if last_publish.elapsed() >= PUBLISH_INTERVAL {
                self.publish(&job).await;
                last_publish = tokio::time::Instant::now();
            }
        }
        // Whatever was found is saved, cancelled or not.
        if !pending.is_empty() {
            self.flush(&job, pending).await;
        }
        let state = if cancelled {
            JobState::Cancelled
        } else {
            JobState::Finished
        };
        *job.finished.lock().expect("job lock") =
            Some((state, now_seconds().to_rfc3339(), Instant::now()));
        self.telemetry.discoveries_running.dec();
        self.publish(&job).await;
        let p = job.progress(&self.replica);
        tracing::info!(job = %job.id, probed = p.probed, found = p.found, no_answer = p.no_answer, refused = p.refused, unresolved = p.unresolved, state = ?state, "discovery finished");
    }

    /// Counts one finished probe item; an answering agent waits in `pending`
    /// for the next inventory write.
    fn record(&self, job: &Job, outcome: ProbeOutcome, pending: &mut Vec<(IpAddr, Device)>) {
        match outcome {
            ProbeOutcome::Cancelled => return,
            ProbeOutcome::Failed(failed) => {
                if failed.outcome == Outcome::Unresolved {
                    job.error(format!(
                        "{}: {}",
                        failed.address,
                        failed.detail.as_deref().unwrap_or("")
                    ));
                } else {
                    self.telemetry.discovery_probes.inc();
                }
                tracing::debug!(job = %job.id, address = %failed.address, outcome = ?failed.outcome, detail = ?failed.detail, "probe ended without a device");
                job.outcome(failed);
            }
            ProbeOutcome::Found(ip, device) => {
                self.telemetry.discovery_probes.inc();
                job.outcome(AddressOutcome {
                    address: ip.to_string(),
                    outcome: Outcome::Found,
                    detail: None,
                    sys_name: Some(device.sys_name.clone()),
                });
                pending.push((ip, *device));
            }
        }
        job.probed.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes a batch of found devices to the inventory in one change.
    async fn flush(&self, job: &Job, batch: Vec<(IpAddr, Device)>) {
        let count = batch.len();
        let change = |inv: &mut Inventory| {
            for (_, device) in &batch {
                inv.upsert_discovered(device.clone(), job.seed_modules);
            }
            Ok(())
        };
        // A store that is briefly unavailable (a Redis failover, a restore
        // in progress) gets a few more tries: found devices are not dropped
        // for a blip. The upsert is idempotent, so a retry of a change that
        // did land changes nothing.
        let mut result = self.writer.apply_fenced(&change, job.fence).await;
        for pause_s in SAVE_RETRY_PAUSES_S {
            if !matches!(result, Err(StoreError::Unavailable(_))) || self.cancel.is_cancelled() {
                break;
            }
            tracing::info!(job = %job.id, devices = count, retry_in_s = pause_s, "saving discovered devices failed; retrying");
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(pause_s)) => {}
            }
            result = self.writer.apply_fenced(&change, job.fence).await;
        }
        match result {
            Ok(_) => {
                job.found.fetch_add(count, Ordering::Relaxed);
                self.telemetry.discovery_found.inc_by(count as u64);
                for (ip, device) in &batch {
                    tracing::info!(job = %job.id, address = %ip, sys_name = %device.sys_name, "discovered agent");
                }
            }
            Err(e) => {
                if matches!(e, StoreError::StaleEpoch(_)) {
                    self.telemetry.stale_epoch_rejections.inc();
                }
                tracing::warn!(job = %job.id, devices = count, error = %e, "cannot save discovered devices");
                job.error(format!("saving {count} discovered device(s) failed: {e}"));
            }
        }
    }

    /// One probe item under one permit of the process-wide limit: resolves a
    /// host name (bounded by `RESOLVE_TIMEOUT`), then probes the address.
    async fn probe_item(&self, seed: &DiscoverySeed, item: ProbeItem) -> ProbeOutcome {
        let _permit = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return ProbeOutcome::Cancelled,
            permit = self.probe_permits.acquire() => {
                permit.expect("the probe semaphore is never closed")
            }
        };
        let ip = match item {
            ProbeItem::Address(ip) => ip,
            ProbeItem::HostName(name) => {
                let resolved = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return ProbeOutcome::Cancelled,
                    r = resolve(&name, seed.port) => r,
                };
                match resolved {
                    Ok(ip) => ip,
                    Err(e) => {
                        return ProbeOutcome::Failed(AddressOutcome {
                            address: name,
                            outcome: Outcome::Unresolved,
                            detail: Some(e),
                            sys_name: None,
                        })
                    }
                }
            }
        };
        match self.probe(seed, ip).await {
            Ok(device) => ProbeOutcome::Found(ip, Box::new(device)),
            Err(failed) => ProbeOutcome::Failed(failed),
        }
    }

    /// Probes one agent on an API request (adding a device), under the
    /// same limit of probes in flight as discovery jobs. `Err(None)`: the
    /// agent's settings cannot be used (the error says which).
    pub async fn probe_agent(&self, agent: &Agent) -> Result<SystemInfo, ProbeError> {
        let params = AgentParams::from_agent(agent, self.max_repetitions)
            .map_err(|e| ProbeError::Settings(e.to_string()))?;
        let _permit = self
            .probe_permits
            .acquire()
            .await
            .expect("the probe semaphore is never closed");
        match read_system(&mut Session::new(params.clone())).await {
            Ok(sys) => Ok(sys),
            Err(e) => {
                let (outcome, detail) = explain(&params, e).await;
                Err(ProbeError::Failed { outcome, detail })
            }
        }
    }

    /// Asks `ip` for its system group with the seed's credentials.
    async fn probe(&self, seed: &DiscoverySeed, ip: IpAddr) -> Result<Device, AddressOutcome> {
        let agent = seed.agent_for(ip, seed.port);
        let failed = |outcome, detail: String| AddressOutcome {
            address: ip.to_string(),
            outcome,
            detail: Some(detail),
            sys_name: None,
        };
        let params = AgentParams::from_agent(&agent, self.max_repetitions)
            .map_err(|e| failed(Outcome::Refused, e.to_string()))?;
        match read_system(&mut Session::new(params.clone())).await {
            Ok(sys) => Ok(Device {
                // The seed's modules, else what the module rules pick.
                modules: seed.modules.clone().or_else(|| {
                    self.modules
                        .current()
                        .choose_by_rules(&sys.sys_object_id, &sys.sys_descr)
                }),
                id: String::new(),
                sys_name: if sys.sys_name.is_empty() {
                    ip.to_string()
                } else {
                    sys.sys_name
                },
                sys_descr: sys.sys_descr,
                sys_contact: sys.sys_contact,
                sys_location: sys.sys_location,
                discovered_at: Some(now_seconds()),
                primary_agent: Some(PrimaryAgent::Id(agent.id.clone())),
                agents: vec![agent],
            }),
            Err(e) => {
                let (outcome, detail) = explain(&params, e).await;
                Err(failed(outcome, detail))
            }
        }
    }

    /// Starts a job for every saved seed (scheduled runs, `DISCOVERY_ON_START`);
    /// `fence` is the leadership epoch in a fleet.
    pub async fn run_saved_seeds(self: &Arc<Self>, reason: &str, fence: Fence) {
        let seeds = match self.writer.store().inventory().await {
            Ok(s) => s.inventory.discovery_seeds.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read seeds for discovery");
                return;
            }
        };
        tracing::info!(seeds = seeds.len(), reason, "running saved discovery seeds");
        for seed in seeds {
            if let Err(e) = self.submit_fenced(seed.clone(), fence) {
                tracing::warn!(seed = %seed.id, error = %e, "saved seed refused");
            }
        }
    }

    /// Runs the saved seeds on `schedule` until `stop` (or shutdown) fires.
    pub async fn run_schedule(
        self: Arc<Self>,
        schedule: DiscoverySchedule,
        fence: Fence,
        stop: CancellationToken,
    ) {
        loop {
            let Some(next) = schedule.schedule.upcoming(schedule.timezone).next() else {
                tracing::warn!(cron = %schedule.expression, "discovery schedule has no future run");
                return;
            };
            let wait = (next.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            tracing::info!(next = %next, "next scheduled discovery");
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            self.run_saved_seeds("schedule", fence).await;
        }
    }

    /// Waits for running jobs after cancellation (bounded by the caller).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Why probing one agent did not give its system group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The agent's settings cannot be used (a protocol name, a key).
    Settings(String),
    /// The agent did not answer, or refused: how, in words.
    Failed { outcome: Outcome, detail: String },
}

/// How a failed probe of `params` ended, in words an operator can act on.
async fn explain(params: &AgentParams, error: SnmpError) -> (Outcome, String) {
    match error {
        // v1/v2c: a wrong community gets no answer either.
        e @ SnmpError::Timeout { .. } if params.usm.is_none() => (
            Outcome::NoAnswer,
            format!("{e}: the agent is down or unreachable, or the community is wrong (v1/v2c agents do not answer a wrong one)"),
        ),
        // v3: the agent's report says why (read through a relay that keeps
        // it); one that answers the engine discovery and then drops the
        // request could not decrypt it.
        e @ (SnmpError::Timeout { .. } | SnmpError::Auth { .. }) => {
            let timed_out = matches!(e, SnmpError::Timeout { .. });
            match crate::usm_report::diagnose(params).await {
                Some(report) => (Outcome::Refused, format!("refused by the agent: {report}")),
                None if timed_out => (Outcome::NoAnswer, e.to_string()),
                None => (Outcome::Refused, e.to_string()),
            }
        }
        e => (Outcome::Refused, e.to_string()),
    }
}

/// Of two views of one job, the one further along (a finished job's, or the
/// one that probed more).
fn newest(a: Option<JobProgress>, b: Option<JobProgress>) -> Option<JobProgress> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let rank =
                |p: &JobProgress| (p.started_at.clone(), p.state != JobState::Running, p.probed);
            Some(if rank(&b) > rank(&a) { b } else { a })
        }
        (a, b) => a.or(b),
    }
}

/// The first address `name` resolves to, within `RESOLVE_TIMEOUT`.
async fn resolve(name: &str, port: u16) -> Result<IpAddr, String> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await {
        Ok(Ok(mut found)) => found
            .next()
            .map(|sa| sa.ip())
            .ok_or_else(|| "no address".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("lookup timed out".to_string()),
    }
}

fn hosts(net: &ipnet::IpNet) -> Vec<IpAddr> {
    match net {
        ipnet::IpNet::V4(n) if n.prefix_len() >= 31 => {
            let start = u32::from(n.network());
            (0..(1u64 << (32 - n.prefix_len())))
                .map(|i| IpAddr::V4((start + i as u32).into()))
                .collect()
        }
        _ => net.hosts().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, finished: Option<Instant>) -> Arc<Job> {
        Arc::new(Job {
            id: id.into(),
            seed_id: id.into(),
            total: AtomicUsize::new(1),
            probed: AtomicUsize::new(0),
            found: AtomicUsize::new(0),
            outcomes: Mutex::new(JobOutcomes::default()),
            started_at: String::new(),
            started_ms: 0,
            finished: Mutex::new(finished.map(|at| (JobState::Finished, String::new(), at))),
            errors: Mutex::new(Vec::new()),
            fence: None,
            seed_modules: false,
        })
    }

    #[test]
    fn finished_jobs_are_forgotten_by_age_and_count_running_ones_never() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let ago = |s: u64| Some(now.checked_sub(Duration::from_secs(s)).unwrap_or(now));
        let mut jobs: VecDeque<_> = [
            job("old", ago(7200)),
            job("running-long", None),
            job("recent-1", ago(60)),
            job("recent-2", ago(30)),
        ]
        .into_iter()
        .collect();
        forget_finished(&mut jobs, now, hour, 10);
        let ids = |jobs: &VecDeque<Arc<Job>>| jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&jobs), ["running-long", "recent-1", "recent-2"]);
        forget_finished(&mut jobs, now, hour, 2);
        assert_eq!(ids(&jobs), ["running-long", "recent-2"]);
        forget_finished(&mut jobs, now, hour, 0);
        assert_eq!(
            ids(&jobs),
            ["running-long"],
            "a running job is never dropped"
        );
    }

    #[test]
    fn targets_are_checked_and_bounded() {
        let t =
            |v: &[&str]| parse_targets(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 4096);
        assert_eq!(
            t(&["127.0.0.1"]).unwrap(),
            vec![TargetSpec::Address("127.0.0.1".parse().unwrap())]
        );
        assert_eq!(t(&["127.0.0.0/24"]).unwrap()[0].address_count(), 254);
        assert_eq!(t(&["127.0.0.8/31"]).unwrap()[0].address_count(), 2);
        assert!(matches!(
            t(&["localhost"]).unwrap()[0],
            TargetSpec::HostName(_)
        ));
        let e = t(&["10.0.0.0/8"]).unwrap_err();
        assert_eq!(e.field, "potentialTargets[0]");
        assert!(e.message.contains("4096"));
        assert!(t(&["not a host!"]).is_err());
        assert!(t(&["127.0.0.1/33"]).is_err());
        assert!(t(&[]).is_err());
        assert_eq!(hosts(&"127.0.0.0/30".parse().unwrap()).len(), 2);
    }

    #[test]
    fn total_counts_distinct_addresses_plus_host_names() {
        let targets: Vec<String> = ["127.0.0.1", "127.0.0.0/30", "127.0.0.2", "localhost"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let expanded = expand(&parse_targets(&targets, 4096).unwrap());
        // 127.0.0.0/30 holds the hosts .1 and .2, which the two single IPs
        // repeat: two distinct addresses, plus one (unresolved) host name.
        assert_eq!(
            expanded.addresses,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "127.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(expanded.host_names, vec!["localhost".to_string()]);
        assert_eq!(expanded.total(), 2 + 1);
        // The same host name twice is one probe item.
        let twice = expand(&[
            TargetSpec::HostName("localhost".into()),
            TargetSpec::HostName("LOCALHOST".into()),
            TargetSpec::Block("127.0.0.8/31".parse().unwrap()),
        ]);
        assert_eq!(twice.total(), 2 + 1);
    }
}
