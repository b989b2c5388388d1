//! Fleet mode (`REDIS_URL` set): identical replicas coordinated through Redis.
//!
//! [`Fleet::run`] is one loop per replica. Every renew period it heartbeats
//! (membership, which decides who owns which device), renews or tries to
//! acquire the leader lease, and checks the inventory version; change events
//! from pub/sub trigger the same check at once. The leader alone runs
//! scheduled discovery and `DISCOVERY_ON_START` (once per leadership), writes
//! the inventory through to the file, and restores the inventory into an
//! empty Redis from the file. All of that carries the leadership epoch; the
//! Lua scripts and the file refuse a stale one. A leader that cannot renew
//! steps down on its own before its lease can expire (monotonic clock).
//!
//! The shared state itself ([`RedisStore`]) is in [`store`]; polling is the
//! collector's, which asks the store which devices are this replica's.

pub mod connection;
pub mod store;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use connection::{Connector, RedisFailure};
pub use store::{RedisStore, Refresh, RemoteInventory};

use crate::config::{DiscoverySchedule, FleetConfig};
use crate::discovery::Discovery;
use crate::persistence::{FileError, InventoryWriter};
use crate::store::StoreError;
use crate::telemetry::Telemetry;

/// Leadership as `/actuator/health` shows it (Redis reachability and the
/// members come from the store's last heartbeat).
#[derive(Debug, Clone, Default)]
pub struct FleetStatus {
    /// The epoch while this replica leads, and until when (its deadline).
    pub leading_epoch: Option<u64>,
    pub leading_until: Option<Instant>,
    /// The highest epoch this replica has seen.
    pub epoch_seen: u64,
    /// Why the last heartbeat failed, if it did.
    pub last_error: Option<String>,
    /// While the fleet's inventory cannot be read here: when that was last
    /// reported in the log (`None`: it can be read).
    pub unreadable_logged: Option<Instant>,
    /// Redis as last reported in the log: `None` before the first
    /// heartbeat, then `Ok(())` or the reason it failed.
    pub redis_reported: Option<Result<(), &'static str>>,
    /// Redis' maxmemory-policy as last reported, when it may evict keys.
    pub eviction_reported: Option<String>,
}

/// How often a replica that cannot read the fleet's inventory says so again.
const UNREADABLE_LOG_PERIOD: Duration = Duration::from_secs(60);

/// This replica's leadership: valid until `deadline`.
struct Leadership {
    epoch: u64,
    /// Lease start as sent (before Redis started its clock) + lease − margin.
    deadline: Instant,
    /// Stops the leader-only tasks.
    stop: CancellationToken,
    /// (incarnation, version) last written to the file by this leadership.
    persisted: Option<(String, u64)>,
}

pub struct Fleet {
    store: Arc<RedisStore>,
    connector: Arc<Connector>,
    config: FleetConfig,
    writer: Arc<InventoryWriter>,
    discovery: Arc<Discovery>,
    telemetry: Arc<Telemetry>,
    discovery_schedule: Option<DiscoverySchedule>,
    discovery_on_start: bool,
    status: Mutex<FleetStatus>,
    leader_tasks: tokio_util::task::TaskTracker,
}

impl Fleet {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<RedisStore>,
        connector: Arc<Connector>,
        config: FleetConfig,
        writer: Arc<InventoryWriter>,
        discovery: Arc<Discovery>,
        telemetry: Arc<Telemetry>,
        discovery_schedule: Option<DiscoverySchedule>,
        discovery_on_start: bool,
    ) -> Fleet {
        telemetry.register_fleet();
        Fleet {
            store,
            connector,
            config,
            writer,
            discovery,
            telemetry,
            discovery_schedule,
            discovery_on_start,
            status: Mutex::new(FleetStatus::default()),
            leader_tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    pub fn status(&self) -> FleetStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Whether this replica leads now: its deadline counts even while the
    /// run loop is busy (a slow Redis call), so no two replicas claim it.
    pub fn is_leader(&self) -> bool {
        let status = self.status.lock().expect("status lock");
        status.leading_epoch.is_some() && status.leading_until.is_some_and(|d| Instant::now() < d)
    }

    pub fn replica_id(&self) -> &str {
        self.store.replica_id()
    }

    /// Whether the last heartbeat reached Redis.
    pub fn is_redis_up(&self) -> bool {
        self.store.is_redis_up()
    }

    /// Redis' maxmemory-policy when it may evict keys (then there is no
    /// leader and the inventory cannot be changed).
    pub fn unsafe_eviction_policy(&self) -> Option<String> {
        self.store.unsafe_eviction_policy()
    }

    /// Why the fleet's inventory cannot be read with this replica's key,
    /// while it cannot (the replica is then not ready).
    pub fn inventory_error(&self) -> Option<String> {
        self.store.unreadable_inventory()
    }

    /// What the heartbeat tells the other replicas of this one.
    pub fn set_member_info(&self, info: String) {
        self.store.set_member_info(info);
    }

    /// The lease holder and the live members with what they told of
    /// themselves (version, commit, module fingerprint), asked of Redis now.
    pub async fn view(
        &self,
    ) -> Result<(Option<String>, Vec<(String, Option<String>)>), crate::store::StoreError> {
        self.store.fleet_view().await
    }

    /// Live members as of the last heartbeat.
    pub fn members(&self) -> Vec<String> {
        self.store.members()
    }

    fn update_status(&self, f: impl FnOnce(&mut FleetStatus)) {
        f(&mut self.status.lock().expect("status lock"));
    }

    /// Stop acting as leader before the lease can pass to another replica:
    /// renewals that keep failing end it at `deadline`, ahead of the TTL.
    fn step_down_margin(&self) -> Duration {
        (self.config.renew_period / 2).min(self.config.lease_ttl / 4)
    }

    /// Runs until `cancel` fires; then releases the lease and leaves the
    /// membership so the others take over at once.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let file_epoch = self.writer.file().current_stamp().await.epoch;
        self.update_status(|s| s.epoch_seen = s.epoch_seen.max(file_epoch));
        let (events_tx, mut events_rx) = mpsc::channel::<()>(1);
        let subscriber = tokio::spawn(self.clone().subscribe(events_tx, cancel.clone()));
        let mut leadership: Option<Leadership> = None;
        let mut ticker = tokio::time::interval(self.config.renew_period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = leadership.as_ref().map(|l| l.deadline);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => self.tick(&mut leadership).await,
                Some(()) = events_rx.recv() => self.sync_inventory(&mut leadership).await,
                _ = sleep_until(deadline) => {
                    self.step_down(&mut leadership, "the lease was not renewed before its deadline");
                }
            }
        }
        if let Some(mut l) = leadership.take() {
            // Last write-through, then hand over at once.
            if Instant::now() < l.deadline {
                self.write_through(&mut l).await;
            }
            let released = self
                .store
                .lease(
                    "lease_release",
                    &self.store.scripts.lease_release,
                    &[&l.epoch.to_string()],
                )
                .await;
            l.stop.cancel();
            self.telemetry.leader.set(0);
            tracing::info!(
                epoch = l.epoch,
                released = matches!(released, Ok(1)),
                "leader lease released on shutdown"
            );
        }
        self.leader_tasks.close();
        self.store.leave().await;
        subscriber.abort();
        tracing::info!("fleet coordination stopped");
    }

    /// Pub/sub listener for inventory events; reconnects until cancelled.
    /// Lost messages are caught by the periodic version check.
    async fn subscribe(self: Arc<Self>, events: mpsc::Sender<()>, cancel: CancellationToken) {
        let channel = self.store.keys.events();
        let timeout = self.config.redis_timeout;
        while !cancel.is_cancelled() {
            let connected = tokio::time::timeout(timeout, async {
                let mut pubsub = self.connector.client().await?.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match connected {
                Ok(Ok(mut pubsub)) => {
                    tracing::debug!("subscribed to inventory events");
                    let _ = events.try_send(()); // resynchronise after a gap
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            message = messages.next() => match message {
                                Some(_) => { let _ = events.try_send(()); }
                                None => break,
                            },
                        }
                    }
                    tracing::debug!("inventory event subscription lost; reconnecting");
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to inventory events"),
                Err(_) => tracing::debug!("subscribing to inventory events timed out"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn tick(&self, leadership: &mut Option<Leadership>) {
        if self.store.unreadable_inventory().is_some() {
            // No heartbeat and no lease until the fleet's inventory can be
            // read here (it may be rewritten with this replica's key).
            self.sync_inventory(leadership).await;
            if self.store.unreadable_inventory().is_some() {
                return;
            }
        }
        let epoch_seen = self.status().epoch_seen;
        match self
            .store
            .heartbeat(self.config.lease_ttl, epoch_seen)
            .await
        {
            Ok(beat) => {
                self.telemetry.fleet_members.set(beat.members.len() as i64);
                self.telemetry.redis_up.set(1);
                self.store.set_members(beat.members);
                self.update_status(|s| {
                    s.last_error = None;
                    s.epoch_seen = s.epoch_seen.max(beat.epoch);
                });
                self.report_redis(Ok(()), None);
                if beat.epoch_restored {
                    self.telemetry.redis_epoch_restored.inc();
                    tracing::warn!(epoch = beat.epoch, "Redis had lost the epoch counter (eviction, a restart without persistence or FLUSHALL): put it back from the highest epoch this replica has seen, so no epoch is handed out twice");
                }
                if self.report_eviction(leadership) {
                    // Reads go on; no lease, no leader-only work.
                    self.sync_inventory(leadership).await;
                    return;
                }
            }
            Err(failure) => {
                self.store.mark_down();
                self.telemetry.fleet_members.set(0);
                self.telemetry.redis_up.set(0);
                self.update_status(|s| s.last_error = Some(failure.to_string()));
                self.report_redis(Err(failure.reason), Some(&failure));
                // A leader keeps its lease until its deadline (a blip must not
                // cost a new epoch and a new DISCOVERY_ON_START); it cannot
                // renew, so the deadline ends it.
                return;
            }
        }
        match leadership {
            Some(_) => self.renew(leadership).await,
            None => self.try_acquire(leadership).await,
        }
        self.sync_inventory(leadership).await;
    }

    /// Logs Redis' state when it changed since the last report (also the
    /// first one at start, and a change of the reason it fails).
    fn report_redis(&self, now: Result<(), &'static str>, failure: Option<&RedisFailure>) {
        let before = {
            let mut status = self.status.lock().expect("status lock");
            status.redis_reported.replace(now)
        };
        if before == Some(now) {
            return;
        }
        match failure {
            None => tracing::info!("Redis reachable: taking part in the fleet"),
            Some(f) => {
                tracing::warn!(reason = f.reason, error = %f.message, operation = f.operation, "Redis unreachable: serving from the local snapshot and cache and polling this replica's share of the devices; a leader steps down at its lease deadline")
            }
        }
    }

    /// Steps down and says so when Redis may evict keys; returns whether it may.
    fn report_eviction(&self, leadership: &mut Option<Leadership>) -> bool {
        let policy = self.store.unsafe_eviction_policy();
        let before = {
            let mut status = self.status.lock().expect("status lock");
            std::mem::replace(&mut status.eviction_reported, policy.clone())
        };
        self.telemetry
            .redis_eviction_unsafe
            .set(i64::from(policy.is_some()));
        match (&before, &policy) {
            (_, Some(p)) if before.as_ref() != Some(p) => tracing::error!(
                maxmemory_policy = %p,
                "Redis may evict keys (maxmemory-policy {p}): the leader lease, the fencing epoch and the inventory could vanish, so no replica leads and inventory changes are refused until Redis runs with maxmemory-policy noeviction"
            ),
            (Some(_), None) => tracing::info!(
                "Redis' maxmemory-policy is noeviction again: the fleet elects a leader"
            ),
            _ => {}
        }
        if policy.is_some() && leadership.is_some() {
            self.step_down(leadership, "Redis may evict keys (maxmemory-policy)");
        }
        policy.is_some()
    }

    async fn renew(&self, leadership: &mut Option<Leadership>) {
        let Some(l) = leadership.as_mut() else { return };
        let sent = Instant::now();
        let renewed = self
            .store
            .lease(
                "lease_renew",
                &self.store.scripts.lease_renew,
                &[
                    &l.epoch.to_string(),
                    &self.config.lease_ttl.as_millis().to_string(),
                ],
            )
            .await;
        self.telemetry
            .lease_renew_duration
            .observe(sent.elapsed().as_secs_f64());
        match renewed {
            Ok(1) => {
                l.deadline = sent + self.config.lease_ttl - self.step_down_margin();
                let deadline = l.deadline;
                self.update_status(|s| s.leading_until = Some(deadline));
            }
            Ok(_) => self.step_down(leadership, "the lease is held by another replica now"),
            // Keep leading until the deadline; the next tick tries again.
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
    }

    async fn try_acquire(&self, leadership: &mut Option<Leadership>) {
        // Never go below an epoch seen before (Redis may have lost its data):
        // every epoch Redis answered with, and the file's (another leader
        // may have written it since).
        let stamp = self.writer.file().current_stamp().await;
        let floor = self.status().epoch_seen.max(stamp.epoch);
        let sent = Instant::now();
        let acquired = self
            .store
            .lease(
                "lease_acquire",
                &self.store.scripts.lease_acquire,
                &[
                    &self.config.lease_ttl.as_millis().to_string(),
                    &floor.to_string(),
                ],
            )
            .await;
        let epoch = match acquired {
            Ok(e) if e > 0 => e as u64,
            Ok(held) => {
                // Another replica leads with epoch -held.
                let current = held.unsigned_abs();
                self.telemetry.leader_epoch.set(current as i64);
                self.update_status(|s| s.epoch_seen = s.epoch_seen.max(current));
                return;
            }
            Err(_) => return,
        };
        let l = Leadership {
            epoch,
            deadline: sent + self.config.lease_ttl - self.step_down_margin(),
            stop: CancellationToken::new(),
            persisted: None,
        };
        self.telemetry.leader.set(1);
        self.telemetry.leader_epoch.set(epoch as i64);
        self.telemetry
            .leadership_transitions
            .with_label_values(&["leader"])
            .inc();
        let deadline = l.deadline;
        self.update_status(|s| {
            s.leading_epoch = Some(epoch);
            s.leading_until = Some(deadline);
            s.epoch_seen = s.epoch_seen.max(epoch);
        });
        tracing::info!(epoch, replica = %self.store.replica_id(), "became fleet leader");
        self.start_leader_tasks(&l);
        *leadership = Some(l);
    }

    fn start_leader_tasks(&self, l: &Leadership) {
        let fence = Some(l.epoch);
        if let Some(schedule) = self.discovery_schedule.clone() {
            self.leader_tasks.spawn(self.discovery.clone().run_schedule(
                schedule,
                fence,
                l.stop.clone(),
            ));
        }
        if self.discovery_on_start {
            let discovery = self.discovery.clone();
            let stop = l.stop.clone();
            self.leader_tasks.spawn(async move {
                // Give the restore from the file a moment when Redis was empty.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        discovery.run_saved_seeds("DISCOVERY_ON_START (new leader)", fence).await
                    }
                }
            });
        }
    }

    fn step_down(&self, leadership: &mut Option<Leadership>, reason: &str) {
        let Some(l) = leadership.take() else { return };
        l.stop.cancel();
        self.telemetry.leader.set(0);
        // Writing the file is the next leader's job now.
        self.telemetry.inventory_file_behind.set(0);
        self.telemetry
            .leadership_transitions
            .with_label_values(&["follower"])
            .inc();
        self.update_status(|s| {
            s.leading_epoch = None;
            s.leading_until = None;
        });
        tracing::warn!(epoch = l.epoch, reason, "stepped down as fleet leader");
    }

    /// Checks the inventory version in Redis and adopts a newer one. The
    /// leader also restores an empty Redis from the file and writes each
    /// new version through to the file.
    async fn sync_inventory(&self, leadership: &mut Option<Leadership>) {
        if let Some(l) = leadership.as_ref() {
            if Instant::now() >= l.deadline {
                self.step_down(leadership, "the lease was not renewed before its deadline");
            }
        }
        let refreshed = self.store.refresh().await;
        if let Err(StoreError::Unreadable(reason)) = &refreshed {
            self.cannot_read_inventory(leadership, reason).await;
            return;
        }
        if refreshed.is_ok() {
            let was_unreadable = self
                .status
                .lock()
                .expect("status lock")
                .unreadable_logged
                .take()
                .is_some();
            if was_unreadable {
                self.telemetry.fleet_inventory_unreadable.set(0);
                tracing::info!("the fleet's inventory can be read again: taking part in the fleet");
            }
        }
        match refreshed {
            Ok(Refresh::Changed(ref snapshot)) => {
                self.writer.observe(snapshot);
                tracing::info!(
                    version = snapshot.version,
                    devices = snapshot.inventory.devices.len(),
                    "inventory updated from the fleet"
                );
            }
            Ok(Refresh::Current) => {}
            Ok(Refresh::Missing) => {
                if let Some(epoch) = leadership.as_ref().map(|l| l.epoch) {
                    self.restore(epoch, leadership, None).await;
                }
            }
            Ok(Refresh::Reloaded(reloaded)) => {
                // Possibly older than the file: never write it through.
                if let Some(epoch) = leadership.as_ref().map(|l| l.epoch) {
                    self.restore(epoch, leadership, Some(reloaded)).await;
                }
                return;
            }
            Err(e) => {
                // Not current: do not write a possibly stale copy to the file.
                tracing::debug!(error = %e, "inventory version check failed");
                return;
            }
        }
        if let Some(l) = leadership.as_mut() {
            self.write_through(l).await;
        }
    }

    /// The fleet's inventory cannot be read with this replica's key: it
    /// leaves the membership (its share of the devices goes to the others)
    /// and any leadership, is not ready, and says so now and every
    /// [`UNREADABLE_LOG_PERIOD`] while it lasts.
    async fn cannot_read_inventory(&self, leadership: &mut Option<Leadership>, reason: &str) {
        if leadership.is_some() {
            self.step_down(leadership, "the fleet's inventory cannot be read here");
        }
        let (first, due) = {
            let mut status = self.status.lock().expect("status lock");
            let last = status.unreadable_logged;
            let due = last.is_none_or(|at| at.elapsed() >= UNREADABLE_LOG_PERIOD);
            if due {
                status.unreadable_logged = Some(Instant::now());
            }
            (last.is_none(), due)
        };
        if first {
            self.store.leave().await;
        }
        if due {
            self.telemetry.fleet_inventory_unreadable.set(1);
            tracing::error!(reason, "this replica cannot read the fleet's inventory: it is not ready, polls nothing and has left the fleet until it can (every replica needs the same PROM_ENCRYPT_KEY)");
        }
    }

    /// Puts the inventory back into an empty Redis, or over the copy a
    /// restarted or promoted Redis server `reloaded`, as a new incarnation:
    /// see [`newest_copy`] for which. The file is fenced first, so no older
    /// leader writes a version the copies read here would miss.
    async fn restore(
        &self,
        epoch: u64,
        leadership: &mut Option<Leadership>,
        reloaded: Option<RemoteInventory>,
    ) {
        let file = self.writer.file().clone();
        match file.fence(epoch, self.store.replica_id()).await {
            Ok(()) => {}
            Err(FileError::StaleEpoch { .. }) => {
                self.telemetry.stale_epoch_rejections.inc();
                self.step_down(leadership, "a newer leader has written the file");
                return;
            }
            // The file cannot be written (its write-through reports that):
            // the copies are read all the same.
            Err(e) => tracing::debug!(error = %e, "cannot fence the inventory file"),
        }
        let (local_incarnation, local) = self.store.local_inventory();
        let stamp = file.current_stamp().await;
        let from_file = match tokio::task::spawn_blocking(move || file.load())
            .await
            .expect("loading the file does not panic")
        {
            Ok(inventory) => inventory,
            Err(e) => {
                // Never replace what the users entered with nothing: wait for
                // the file to be fixed.
                tracing::error!(error = %e, "the inventory file cannot be read: not putting the inventory back into Redis");
                return;
            }
        };
        let mut copies = Vec::new();
        if let Some(inventory) = from_file {
            copies.push(Copy {
                source: "the file",
                incarnation: stamp.incarnation.clone(),
                version: stamp.version,
                inventory,
            });
        }
        let replacing = reloaded
            .as_ref()
            .map(|r| (r.incarnation.clone(), r.version));
        if let Some(r) = reloaded {
            copies.push(Copy {
                source: "the copy Redis reloaded",
                incarnation: r.incarnation,
                version: r.version,
                inventory: r.inventory,
            });
        }
        copies.push(Copy {
            source: "this replica's snapshot",
            // Before it read Redis it holds the file as loaded at start:
            // never newer than the file.
            version: if local_incarnation.is_empty() {
                0
            } else {
                local.version
            },
            incarnation: local_incarnation,
            inventory: (*local.inventory).clone(),
        });
        let newest = newest_copy(&stamp.incarnation, copies);
        let (source, devices, seeds) = (
            newest.source,
            newest.inventory.devices.len(),
            newest.inventory.discovery_seeds.len(),
        );
        let held = replacing.as_ref().map(|(i, v)| (i.as_str(), *v));
        match self.store.restore(epoch, newest.inventory, held).await {
            Ok(Some(snapshot)) => {
                self.writer.observe(&snapshot);
                match replacing {
                    None => {
                        self.telemetry
                            .inventory_restores
                            .with_label_values(&["empty"])
                            .inc();
                        tracing::info!(
                            devices,
                            seeds,
                            from = source,
                            "Redis held no inventory: put it back"
                        );
                    }
                    Some((_, reloaded_version)) => {
                        self.telemetry
                            .inventory_restores
                            .with_label_values(&["reloaded"])
                            .inc();
                        tracing::warn!(devices, seeds, from = source, reloaded_version, file_version = stamp.version, "Redis had reloaded the inventory (a restart from its saved data, or a failover to a replica), which may miss the latest changes: put the newest copy back; changes were held back meanwhile");
                    }
                }
            }
            Ok(None) => {}
            Err(StoreError::StaleEpoch(_)) => {
                self.telemetry.stale_epoch_rejections.inc();
                self.step_down(
                    leadership,
                    "restoring the inventory was refused: stale epoch",
                );
            }
            Err(e) => tracing::warn!(error = %e, "restoring the inventory failed"),
        }
    }

    /// Writes the current snapshot to the file when this leadership has not
    /// written that version yet.
    async fn write_through(&self, l: &mut Leadership) {
        let (incarnation, snapshot) = self.store.local_inventory();
        // Version 0: nothing read from Redis yet; the file is the source.
        let current = (incarnation, snapshot.version);
        if snapshot.version == 0 || l.persisted.as_ref() == Some(&current) {
            self.telemetry.inventory_file_behind.set(0);
            return;
        }
        if Instant::now() >= l.deadline {
            self.telemetry.inventory_file_behind.set(1);
            return;
        }
        match self
            .writer
            .persist_fenced(
                &snapshot,
                &current.0,
                l.epoch,
                self.store.replica_id(),
                l.deadline,
            )
            .await
        {
            Ok(_) => {
                l.persisted = Some(current);
                self.telemetry.inventory_file_behind.set(0);
            }
            Err(FileError::StaleEpoch { .. } | FileError::NoLongerLeader { .. }) => {
                self.telemetry.stale_epoch_rejections.inc();
                l.deadline = Instant::now(); // a newer leader wrote: stop leading
            }
            Err(_) => {
                // Logged by the writer; retried at the next check.
                self.telemetry.inventory_file_behind.set(1);
            }
        }
    }
}

/// One copy of the inventory the leader may put back into Redis.
struct Copy {
    source: &'static str,
    /// "" for this replica's snapshot before it read Redis (the file as
    /// loaded at start), or for a file no fleet leader stamped.
    incarnation: String,
    version: u64,
    inventory: crate::inventory::Inventory,
}

/// Which copy goes back into Redis: the newest version of the file's
/// incarnation (the file's stamp; else the first copy's that has one), the
/// one lineage whose versions compare; on a tie the earlier copy (the file:
/// what was acknowledged). When no copy is of the stamped incarnation (the
/// file is gone), the first copy read from Redis, else the last one.
fn newest_copy(stamped: &str, mut copies: Vec<Copy>) -> Copy {
    let lineage = if stamped.is_empty() {
        copies
            .iter()
            .map(|c| c.incarnation.as_str())
            .find(|i| !i.is_empty())
            .unwrap_or("")
            .to_string()
    } else {
        stamped.to_string()
    };
    let mut best: Option<usize> = None;
    for (i, copy) in copies.iter().enumerate() {
        if copy.incarnation == lineage && best.is_none_or(|b| copy.version > copies[b].version) {
            best = Some(i);
        }
    }
    let pick = best
        .or_else(|| copies.iter().position(|c| !c.incarnation.is_empty()))
        .unwrap_or(copies.len() - 1);
    copies.swap_remove(pick)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(source: &'static str, incarnation: &str, version: u64) -> Copy {
        Copy {
            source,
            incarnation: incarnation.to_string(),
            version,
            inventory: crate::inventory::Inventory::default(),
        }
    }

    fn pick(stamped: &str, copies: Vec<Copy>) -> &'static str {
        newest_copy(stamped, copies).source
    }

    #[test]
    fn the_newest_copy_of_the_stamped_lineage_goes_back() {
        // Redis reloaded an older save: the file.
        let older = vec![
            copy("file", "x", 7),
            copy("redis", "x", 5),
            copy("local", "x", 7),
        ];
        assert_eq!(pick("x", older), "file");
        // Redis saved a change the file has not got yet: that one.
        let newer = vec![
            copy("file", "x", 7),
            copy("redis", "x", 9),
            copy("local", "x", 8),
        ];
        assert_eq!(pick("x", newer), "redis");
        // This replica saw a change Redis lost and the file has not got yet.
        let local = vec![copy("file", "x", 7), copy("local", "x", 8)];
        assert_eq!(pick("x", local), "local");
        // An older incarnation reloaded is never compared by version.
        let other = vec![
            copy("file", "y", 2),
            copy("redis", "x", 50),
            copy("local", "y", 2),
        ];
        assert_eq!(pick("y", other), "file");
    }

    #[test]
    fn without_a_stamp_or_a_file_the_copy_read_from_redis_goes_back() {
        // No leader wrote the file (new volume): never the empty start copy.
        let fresh = vec![copy("redis", "x", 5), copy("local", "", 0)];
        assert_eq!(pick("", fresh), "redis");
        // The stamped file is gone: the copy from Redis, not the start copy.
        let gone = vec![copy("redis", "x", 5), copy("local", "", 0)];
        assert_eq!(pick("y", gone), "redis");
        // First start of a fleet: the file as loaded.
        let first = vec![copy("file", "", 0), copy("local", "", 0)];
        assert_eq!(pick("", first), "file");
        let no_file = vec![copy("local", "", 0)];
        assert_eq!(pick("", no_file), "local");
    }
}
