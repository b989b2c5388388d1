//! Discovery: expands a seed's targets (IPs, host names, CIDR blocks, with an
//! upper bound), probes every address concurrently (bounded) for the SNMP
//! system group, and adds each agent that answers to the inventory as a device
//! named by its sysName. Jobs run in the background and report progress
//! (probed / total / found); scheduled runs follow `DISCOVERY_CRON` in
//! `DISCOVERY_TZ`. SNMP itself is `snmp`'s business, storage `persistence`'s.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::collector::read_system;
use crate::config::DiscoverySchedule;
use crate::inventory::{now_seconds, Device, DiscoverySeed, InvalidInventory, Inventory};
use crate::persistence::InventoryWriter;
use crate::snmp::{AgentParams, Session};
use crate::telemetry::Telemetry;

/// Finished jobs remembered for progress queries.
const JOBS_KEPT: usize = 200;

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
        } else if is_host_name(t) {
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

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Progress of one discovery job.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    pub id: String,
    pub seed_id: String,
    pub state: JobState,
    pub total: usize,
    pub probed: usize,
    pub found: usize,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
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
    started_at: String,
    finished: Mutex<Option<(JobState, String)>>,
    errors: Mutex<Vec<String>>,
}

impl Job {
    fn progress(&self) -> JobProgress {
        let finished = self.finished.lock().expect("job lock").clone();
        JobProgress {
            id: self.id.clone(),
            seed_id: self.seed_id.clone(),
            state: finished.as_ref().map_or(JobState::Running, |(s, _)| *s),
            total: self.total.load(Ordering::Relaxed),
            probed: self.probed.load(Ordering::Relaxed),
            found: self.found.load(Ordering::Relaxed),
            started_at: self.started_at.clone(),
            finished_at: finished.map(|(_, at)| at),
            errors: self.errors.lock().expect("job lock").clone(),
        }
    }
}

pub struct Discovery {
    writer: Arc<InventoryWriter>,
    telemetry: Arc<Telemetry>,
    concurrency: usize,
    max_addresses: usize,
    max_repetitions: u32,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    cancel: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Discovery {
    pub fn new(
        writer: Arc<InventoryWriter>,
        telemetry: Arc<Telemetry>,
        concurrency: usize,
        max_addresses: usize,
        max_repetitions: u32,
        cancel: CancellationToken,
    ) -> Self {
        Discovery {
            writer,
            telemetry,
            concurrency,
            max_addresses,
            max_repetitions,
            jobs: Mutex::new(VecDeque::new()),
            cancel,
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    pub fn max_addresses(&self) -> usize {
        self.max_addresses
    }

    /// Checks `seed` and starts a job in the background. The job id is the seed id.
    pub fn submit(self: &Arc<Self>, seed: DiscoverySeed) -> Result<JobProgress, InvalidInventory> {
        let specs = parse_targets(&seed.potential_targets, self.max_addresses)?;
        let job = Arc::new(Job {
            id: seed.id.clone(),
            seed_id: seed.id.clone(),
            total: AtomicUsize::new(specs.iter().map(|s| s.address_count() as usize).sum()),
            probed: AtomicUsize::new(0),
            found: AtomicUsize::new(0),
            started_at: now_seconds().to_rfc3339(),
            finished: Mutex::new(None),
            errors: Mutex::new(Vec::new()),
        });
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            jobs.retain(|j| j.id != job.id || j.finished.lock().expect("job lock").is_none());
            while jobs.len() >= JOBS_KEPT {
                jobs.pop_front();
            }
            jobs.push_back(job.clone());
        }
        let this = self.clone();
        let progress = job.progress();
        self.tasks
            .spawn(async move { this.run_job(job, seed, specs).await });
        Ok(progress)
    }

    /// Progress of the newest job with this id.
    pub fn progress(&self, id: &str) -> Option<JobProgress> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .rev()
            .find(|j| j.id == id)
            .map(|j| j.progress())
    }

    /// Jobs still running (for `/promsnmp/threadPools`).
    pub fn running_jobs(&self) -> usize {
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .filter(|j| j.finished.lock().expect("job lock").is_none())
            .count()
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn run_job(&self, job: Arc<Job>, seed: DiscoverySeed, specs: Vec<TargetSpec>) {
        self.telemetry.discoveries_running.inc();
        tracing::info!(job = %job.id, targets = ?seed.potential_targets, total = job.total.load(Ordering::Relaxed), "discovery started");
        let mut addresses: Vec<IpAddr> = Vec::new();
        for spec in &specs {
            match spec {
                TargetSpec::Address(ip) => addresses.push(*ip),
                TargetSpec::Block(net) => addresses.extend(hosts(net)),
                TargetSpec::HostName(name) => {
                    let lookup = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        tokio::net::lookup_host((name.as_str(), seed.port)),
                    )
                    .await;
                    let resolved = match lookup {
                        Ok(Ok(mut found)) => found
                            .next()
                            .map(|sa| sa.ip())
                            .ok_or_else(|| "no address".to_string()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("lookup timed out".to_string()),
                    };
                    match resolved {
                        Ok(ip) => addresses.push(ip),
                        Err(e) => {
                            // An unresolvable name counts as probed (and not found).
                            job.errors
                                .lock()
                                .expect("job lock")
                                .push(format!("{name}: {e}"));
                            job.probed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        addresses.sort();
        addresses.dedup();
        job.total.store(
            addresses.len() + job.probed.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );

        let probes = futures_util::stream::iter(addresses)
            .map(|ip| {
                let seed = seed.clone();
                async move { (ip, self.probe(&seed, ip).await) }
            })
            .buffer_unordered(self.concurrency);
        tokio::pin!(probes);
        let mut cancelled = false;
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => { cancelled = true; break; }
                n = probes.next() => n,
            };
            let Some((ip, result)) = next else { break };
            job.probed.fetch_add(1, Ordering::Relaxed);
            self.telemetry.discovery_probes.inc();
            let Some(device) = result else { continue };
            let name = device.sys_name.clone();
            let change = move |inv: &mut Inventory| {
                inv.upsert_discovered(device.clone());
                Ok(())
            };
            match self.writer.apply(&change).await {
                Ok(_) => {
                    job.found.fetch_add(1, Ordering::Relaxed);
                    self.telemetry.discovery_found.inc();
                    tracing::info!(job = %job.id, address = %ip, sys_name = %name, "discovered agent");
                }
                Err(e) => job
                    .errors
                    .lock()
                    .expect("job lock")
                    .push(format!("{ip}: {e}")),
            }
        }
        let state = if cancelled {
            JobState::Cancelled
        } else {
            JobState::Finished
        };
        *job.finished.lock().expect("job lock") = Some((state, now_seconds().to_rfc3339()));
        self.telemetry.discoveries_running.dec();
        let p = job.progress();
        tracing::info!(job = %job.id, probed = p.probed, found = p.found, state = ?state, "discovery finished");
    }

    /// Asks `ip` for its system group with the seed's credentials.
    async fn probe(&self, seed: &DiscoverySeed, ip: IpAddr) -> Option<Device> {
        let agent = seed.agent_for(ip, seed.port);
        let params = AgentParams::from_agent(&agent, self.max_repetitions).ok()?;
        let mut session = Session::new(params);
        match read_system(&mut session).await {
            Ok(sys) => Some(Device {
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
                agents: vec![agent.clone()],
                primary_agent: Some(agent),
            }),
            Err(e) => {
                tracing::debug!(address = %ip, error = %e, "no agent");
                None
            }
        }
    }

    /// Starts a job for every saved seed (scheduled runs, `DISCOVERY_ON_START`).
    pub async fn run_saved_seeds(self: &Arc<Self>, reason: &str) {
        let seeds = match self.writer.store().inventory().await {
            Ok(s) => s.inventory.discovery_seeds.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read seeds for discovery");
                return;
            }
        };
        tracing::info!(seeds = seeds.len(), reason, "running saved discovery seeds");
        for seed in seeds {
            if let Err(e) = self.submit(seed.clone()) {
                tracing::warn!(seed = %seed.id, error = %e, "saved seed refused");
            }
        }
    }

    /// Runs the saved seeds on `schedule` until cancelled.
    pub async fn run_schedule(self: Arc<Self>, schedule: DiscoverySchedule) {
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
                _ = tokio::time::sleep(wait) => {}
            }
            self.run_saved_seeds("schedule").await;
        }
    }

    /// Waits for running jobs after cancellation (bounded by the caller).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
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
}
