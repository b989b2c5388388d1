//! [`RedisStore`]: the [`Store`] of a fleet. The inventory (encrypted, with an
//! incarnation and a version), each device's poll history and its cached
//! result, poll claims and locks live in Redis under `promsnmp:{tenant:site}:`;
//! every multi-key change is one Lua script from `lua/`, run by SHA.
//!
//! Every replica keeps a local copy of what it last read: the inventory
//! snapshot (what `/targets` and scrapes use, refreshed by `fleet` on events
//! and periodically) and the last result per device. When Redis is
//! unreachable the replica serves and polls from these on its own.
//! Leases and membership are driven from `fleet`; the scripts are here.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Script};

use super::connection::{Link, RedisFailure};

use crate::crypto::InventoryCipher;
use crate::inventory::Inventory;
use crate::polled::{PolledDevice, WireError, HISTORY_FORMAT};
use crate::sample::Sample;
use crate::store::{
    CachedPoll, DeviceHistories, Fence, IfMatch, InventoryChange, InventorySnapshot, RoundClaims,
    ScrapeTurn, Store, StoreError,
};
use crate::telemetry::Telemetry;
use crate::utilization::DeviceHistory;

/// Key names; the `{tenant:site}` hash tag keeps a site's keys in one slot.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(site_key: &str) -> Keys {
        Keys {
            prefix: format!("promsnmp:{{{site_key}}}:"),
        }
    }
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    pub fn leader(&self) -> String {
        self.key("leader")
    }
    pub fn epoch(&self) -> String {
        self.key("epoch")
    }
    pub fn members(&self) -> String {
        self.key("members")
    }
    /// The highest epoch each live member has seen (the floor of a lost
    /// epoch counter).
    pub fn epochs(&self) -> String {
        self.key("epochs")
    }
    /// A member's version, commit and module fingerprint (JSON), as long
    /// as its membership lasts.
    pub fn member(&self, replica: &str) -> String {
        self.key(&format!("member:{replica}"))
    }
    pub fn inventory(&self) -> String {
        self.key("inventory")
    }
    /// Pub/sub channel of inventory change events (`<incarnation>:<version>`).
    pub fn events(&self) -> String {
        self.key("events")
    }
    pub fn history(&self, device: &str) -> String {
        self.key(&format!("history:{device}"))
    }
    pub fn cache(&self, device: &str) -> String {
        self.key(&format!("cache:{device}"))
    }
    pub fn claim(&self, device: &str) -> String {
        self.key(&format!("claim:{device}"))
    }
    pub fn lock(&self, device: &str) -> String {
        self.key(&format!("lock:{device}"))
    }
    pub fn failed(&self, device: &str) -> String {
        self.key(&format!("failed:{device}"))
    }
    /// A discovery job's progress (JSON, expires).
    pub fn job(&self, id: &str) -> String {
        self.key(&format!("job:{id}"))
    }
    /// Recent jobs: a sorted set of ids by start time (ms).
    pub fn jobs(&self) -> String {
        self.key("jobs")
    }
}

/// The Lua scripts of `lua/`, compiled into the binary, run with EVALSHA
/// (`redis::Script` loads a script again when Redis answers NOSCRIPT).
pub struct Scripts {
    pub lease_acquire: Script,
    pub lease_renew: Script,
    pub lease_release: Script,
    pub heartbeat: Script,
    pub inventory_update: Script,
    pub inventory_restore: Script,
    pub poll_claim: Script,
    pub poll_record: Script,
    pub poll_fail: Script,
    pub cache_get: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            lease_acquire: Script::new(include_str!("../../lua/lease_acquire.lua")),
            lease_renew: Script::new(include_str!("../../lua/lease_renew.lua")),
            lease_release: Script::new(include_str!("../../lua/lease_release.lua")),
            heartbeat: Script::new(include_str!("../../lua/heartbeat.lua")),
            inventory_update: Script::new(include_str!("../../lua/inventory_update.lua")),
            inventory_restore: Script::new(include_str!("../../lua/inventory_restore.lua")),
            poll_claim: Script::new(include_str!("../../lua/poll_claim.lua")),
            poll_record: Script::new(include_str!("../../lua/poll_record.lua")),
            poll_fail: Script::new(include_str!("../../lua/poll_fail.lua")),
            cache_get: Script::new(include_str!("../../lua/cache_get.lua")),
        }
    }
}

/// How long a failed poll is shared with replicas that wait for it, at
/// least; the mark lives as long as a cached result could (cache ttl), so no
/// replica serves the older result after it.
const FAILURE_SHARE: Duration = Duration::from_secs(5);
/// Pause between looks at another replica's poll in progress.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// Attempts of a poll's compare-and-set on its history before it is kept
/// locally only.
const CAS_ATTEMPTS: usize = 8;
/// How long an inventory change keeps retrying (after concurrent changes,
/// or while the leader restores an emptied Redis) before it is refused.
const CHANGE_BUDGET: Duration = Duration::from_secs(10);

/// A random pause before retry `attempt` (1, 2, …): up to 2 ms doubling to
/// 200 ms, so concurrent writers spread out instead of colliding again.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling_ms = (2u64 << attempt.min(10)).min(200);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    Duration::from_millis(1 + hasher.finish() % ceiling_ms)
}

/// A device's history as stored in Redis, with the time of the poll that
/// produced it (a slower poll finishing late must not overwrite a newer one).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StoredHistory {
    polled_at_ms: i64,
    history: DeviceHistory,
}

/// The only maxmemory-policy under which Redis never drops the lease, the
/// epoch counter or the inventory to make room.
pub const SAFE_EVICTION_POLICY: &str = "noeviction";

/// What a heartbeat learnt (`lua/heartbeat.lua`).
#[derive(Debug)]
pub struct Heartbeat {
    /// Live members, sorted by id.
    pub members: Vec<String>,
    /// Redis' maxmemory-policy.
    pub eviction_policy: String,
    /// The epoch counter after the heartbeat.
    pub epoch: u64,
    /// Redis had lost the epoch counter; this replica put it back.
    pub epoch_restored: bool,
    /// Replicas connected to the Redis primary.
    pub replicas: u64,
}

/// `{policy, epoch, restored, replicas, members...}` as the script answers it.
type HeartbeatReply = (String, u64, u8, u64, Vec<String>);

fn split_heartbeat(reply: Vec<redis::Value>) -> Result<HeartbeatReply, RedisFailure> {
    let malformed = |e: redis::ParsingError| RedisFailure {
        operation: "heartbeat",
        reason: "other",
        message: format!("unexpected heartbeat reply: {e}"),
    };
    let mut values = reply.into_iter();
    let mut next = || values.next().unwrap_or(redis::Value::Nil);
    let policy = String::from_redis_value(next()).map_err(malformed)?;
    let epoch = u64::from_redis_value(next()).map_err(malformed)?;
    let restored = u8::from_redis_value(next()).map_err(malformed)?;
    let replicas = u64::from_redis_value(next()).map_err(malformed)?;
    let members = values
        .map(String::from_redis_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(malformed)?;
    Ok((policy, epoch, restored, replicas, members))
}

/// What [`RedisStore::refresh`] found.
#[derive(Debug)]
pub enum Refresh {
    /// The local snapshot is Redis's version.
    Current,
    /// A newer version, now the local snapshot.
    Changed(InventorySnapshot),
    /// Redis holds no inventory (restart without persistence, FLUSHALL).
    Missing,
    /// This Redis server did not write the inventory it holds: it reloaded
    /// it at a restart (from a save that may be older than the last
    /// changes) or was promoted from a replica (that may have missed
    /// writes). No change builds on it and the local snapshot is kept until
    /// the leader puts the newest copy back.
    Reloaded(RemoteInventory),
}

/// The inventory as Redis holds it.
#[derive(Debug)]
pub struct RemoteInventory {
    pub incarnation: String,
    pub version: u64,
    pub inventory: Inventory,
    /// Written by another Redis server than the one answering (see
    /// [`Refresh::Reloaded`]). An inventory from before the run id was
    /// recorded has none and counts as written here.
    pub reloaded: bool,
}

/// The last result this replica saw for a device.
struct LocalPoll {
    /// Generation in Redis (0: recorded only locally, Redis was unreachable).
    generation: u64,
    polled: Arc<PolledDevice>,
    stored_at: Instant,
}

/// Which connection an operation uses: the lease and the heartbeat never
/// queue behind a large cache read, and nothing else queues behind the
/// `WAIT` of an inventory change (it holds its connection until a replica
/// answers).
#[derive(Debug, Clone, Copy)]
pub enum Lane {
    /// Lease, heartbeat, leaving.
    Control,
    /// Polls, cache reads, inventory reads, jobs.
    Data,
    /// Inventory changes and their `WAIT`.
    Inventory,
}

pub struct RedisStore {
    control: Link,
    data: Link,
    inventory_link: Link,
    pub keys: Keys,
    pub scripts: Scripts,
    cipher: Arc<InventoryCipher>,
    replica_id: String,
    redis_timeout: Duration,
    telemetry: Arc<Telemetry>,
    /// TTL of cached results (the longest any reader accepts).
    cache_ttl: Duration,
    /// TTL of a poll lock: a walk taking longer is presumed dead.
    lock_ttl: Duration,
    /// TTL of a device's history, renewed by every poll.
    history_ttl: Duration,
    /// The local snapshot; its incarnation changes whenever Redis loses the
    /// inventory and the leader restores it, and is empty until the first
    /// read from Redis.
    inventory: Mutex<InventorySnapshot>,
    local_polls: Mutex<HashMap<String, LocalPoll>>,
    /// Histories for polls recorded while Redis was unreachable.
    local_histories: DeviceHistories,
    /// Round claims taken locally while Redis was unreachable.
    local_claims: RoundClaims,
    /// Rounds known to be claimed in Redis (by this replica or another),
    /// until their claim ends: no `poll_claim` round trip before then.
    claimed_rounds: RoundClaims,
    /// Live members as of the last successful heartbeat (kept while Redis
    /// is unreachable); empty before the first one (then this replica polls
    /// every device itself).
    members: Mutex<Vec<String>>,
    /// What the heartbeat tells the others of this replica (JSON).
    member_info: Mutex<String>,
    /// Set after the first heartbeat attempt: until then this replica does
    /// not know whether to poll its share or everything.
    view_ready: AtomicBool,
    /// Why the fleet's inventory cannot be read here (another key), while
    /// it cannot: this replica then polls nothing and is not ready.
    unreadable: Mutex<Option<String>>,
    /// Redis' maxmemory-policy when it may evict keys (last heartbeat).
    eviction_policy: Mutex<Option<String>>,
    /// Redis' clock minus this replica's (ms), as of the last poll recorded
    /// in Redis: polls recorded while Redis is unreachable use it too.
    clock_offset_ms: std::sync::atomic::AtomicI64,
    /// Replicas of the Redis primary (last heartbeat): an inventory change
    /// waits for one to have it (`WAIT`), so a failover keeps it.
    redis_replicas: std::sync::atomic::AtomicU64,
    /// The last heartbeat's verdict. While down, scrapes do not wait on Redis
    /// at all (each call would cost the Redis timeout); only `fleet` probes it.
    redis_up: AtomicBool,
}

/// Rendezvous (highest random weight) hashing: the member that owns `device`.
/// Stable across processes and builds (FNV-1a, then a 64-bit finaliser).
pub fn rendezvous_owner<'a>(members: &'a [String], device: &str) -> Option<&'a str> {
    fn weight(member: &str, device: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in member.bytes().chain([0u8]).chain(device.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // splitmix64 finaliser: spreads FNV's weak low bits.
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
    members
        .iter()
        .max_by_key(|m| (weight(m, device), m.as_str()))
        .map(|m| m.as_str())
}

/// The inventory hash's incarnation, version and writing server's run id.
type InventoryHead = (Option<String>, Option<u64>, Option<String>);

/// [`InventoryHead`] with the encrypted data before the run id.
type InventoryRead = (Option<String>, Option<u64>, Option<String>, Option<String>);

/// Whether the inventory's `server` (the run id that wrote it) is not the
/// run id in `info` (`INFO server`). None (written before run ids were
/// recorded) counts as written here.
fn reloaded(server: Option<&str>, info: &str) -> bool {
    server.is_some_and(|server| Some(server) != run_id(info))
}

/// The `run_id` line of `INFO server`: each Redis process has its own.
fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

impl RedisStore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        connector: Arc<super::connection::Connector>,
        site_key: &str,
        cipher: Arc<InventoryCipher>,
        replica_id: String,
        redis_timeout: Duration,
        telemetry: Arc<Telemetry>,
        initial: Inventory,
        cache_ttl: Duration,
        lock_ttl: Duration,
    ) -> RedisStore {
        RedisStore {
            control: Link::new(connector.clone()),
            data: Link::new(connector.clone()),
            inventory_link: Link::new(connector),
            keys: Keys::new(site_key),
            scripts: Scripts::default(),
            cipher,
            replica_id,
            redis_timeout,
            telemetry,
            cache_ttl,
            lock_ttl,
            history_ttl: (cache_ttl * 10).max(Duration::from_secs(24 * 3600)),
            inventory: Mutex::new(InventorySnapshot {
                version: 0,
                incarnation: "".into(),
                inventory: Arc::new(initial),
            }),
            local_polls: Mutex::new(HashMap::new()),
            local_histories: DeviceHistories::default(),
            local_claims: RoundClaims::default(),
            claimed_rounds: RoundClaims::default(),
            members: Mutex::new(Vec::new()),
            member_info: Mutex::new("{}".into()),
            view_ready: AtomicBool::new(false),
            unreadable: Mutex::new(None),
            eviction_policy: Mutex::new(None),
            redis_replicas: std::sync::atomic::AtomicU64::new(0),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            redis_up: AtomicBool::new(false),
        }
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    pub fn is_redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Why the fleet's inventory in Redis cannot be read with this replica's
    /// key, as of the last read; `None` when it can (or there is none).
    pub fn unreadable_inventory(&self) -> Option<String> {
        self.unreadable.lock().expect("unreadable lock").clone()
    }

    /// The live members from a successful heartbeat.
    pub fn set_members(&self, members: Vec<String>) {
        *self.members.lock().expect("members lock") = members;
        self.redis_up.store(true, Ordering::Relaxed);
        self.view_ready.store(true, Ordering::Relaxed);
    }

    /// A heartbeat failed. The last view of the membership is kept: while
    /// Redis cannot be reached this replica polls the devices it owned in
    /// that view, so the fleet's load on the devices stays about the same.
    pub fn mark_down(&self) {
        self.redis_up.store(false, Ordering::Relaxed);
        self.view_ready.store(true, Ordering::Relaxed);
    }

    /// The local snapshot with the Redis incarnation it came from ("" when
    /// it was never read from Redis).
    pub fn local_inventory(&self) -> (String, InventorySnapshot) {
        let local = self.inventory.lock().expect("inventory lock").clone();
        (local.incarnation.to_string(), local)
    }

    pub fn members(&self) -> Vec<String> {
        self.members.lock().expect("members lock").clone()
    }

    /// Runs one Redis operation on the data lane; see [`RedisStore::run`].
    pub async fn redis<T, F, Fut>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        Ok(self.run(Lane::Data, operation, f).await?)
    }

    /// Runs one Redis operation within `redis_timeout` (connecting first if
    /// the lane has no connection); a failure is counted by operation and
    /// reason, and drops the connection when it broke it.
    pub async fn run<T, F, Fut>(
        &self,
        lane: Lane,
        operation: &'static str,
        f: F,
    ) -> Result<T, RedisFailure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let link = match lane {
            Lane::Control => &self.control,
            Lane::Data => &self.data,
            Lane::Inventory => &self.inventory_link,
        };
        // The connection the operation got (0: none yet), so a timeout
        // drops that one only, not one another caller opened meanwhile.
        let obtained = std::sync::atomic::AtomicU64::new(0);
        let work = async {
            let (serial, conn) = link.connection().await.map_err(|e| (None, e))?;
            obtained.store(serial, Ordering::Relaxed);
            f(conn).await.map_err(|e| (Some(serial), e))
        };
        let failure = match tokio::time::timeout(self.redis_timeout, work).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err((serial, e))) => {
                if let Some(serial) = serial {
                    link.failed(serial, &e).await;
                }
                RedisFailure::new(operation, &e)
            }
            Err(_) => {
                link.timed_out(obtained.load(Ordering::Relaxed));
                RedisFailure::timeout(operation, self.redis_timeout)
            }
        };
        self.telemetry
            .redis_errors
            .with_label_values(&[operation, failure.reason])
            .inc();
        tracing::debug!(operation, reason = failure.reason, error = %failure.message, "Redis operation failed");
        Err(failure)
    }

    /// Runs `script` with `keys` and `args` on the data lane.
    pub async fn eval<T: FromRedisValue>(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &[String],
        args: &[&str],
    ) -> Result<T, StoreError> {
        Ok(self
            .eval_on(Lane::Data, operation, script, keys, args)
            .await?)
    }

    /// Runs `script` with `keys` and `args` on `lane`.
    pub async fn eval_on<T: FromRedisValue>(
        &self,
        lane: Lane,
        operation: &'static str,
        script: &Script,
        keys: &[String],
        args: &[&str],
    ) -> Result<T, RedisFailure> {
        self.run(lane, operation, |mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs a lease script (`KEYS` leader, epoch and the members' seen
    /// epochs, `ARGV[1]` this replica, then `args`).
    pub async fn lease(
        &self,
        operation: &'static str,
        script: &Script,
        args: &[&str],
    ) -> Result<i64, StoreError> {
        let mut all = vec![self.replica_id.as_str()];
        all.extend_from_slice(args);
        Ok(self
            .eval_on(
                Lane::Control,
                operation,
                script,
                &[self.keys.leader(), self.keys.epoch(), self.keys.epochs()],
                &all,
            )
            .await?)
    }

    /// Membership heartbeat (on the control lane). `epoch_seen` puts back an
    /// epoch counter Redis lost; see `lua/heartbeat.lua`.
    pub async fn heartbeat(
        &self,
        member_ttl: Duration,
        epoch_seen: u64,
    ) -> Result<Heartbeat, RedisFailure> {
        let info = self.member_info.lock().expect("member info").clone();
        let (eviction_policy, epoch, restored, replicas, mut members) = self
            .eval_on(
                Lane::Control,
                "heartbeat",
                &self.scripts.heartbeat,
                &[
                    self.keys.members(),
                    self.keys.member(&self.replica_id),
                    self.keys.epoch(),
                    self.keys.epochs(),
                ],
                &[
                    &self.replica_id,
                    &millis(member_ttl),
                    &info,
                    &epoch_seen.to_string(),
                ],
            )
            .await
            .map(|reply: Vec<redis::Value>| split_heartbeat(reply))??;
        members.sort();
        *self.eviction_policy.lock().expect("policy lock") =
            (eviction_policy != SAFE_EVICTION_POLICY).then(|| eviction_policy.clone());
        self.redis_replicas.store(replicas, Ordering::Relaxed);
        Ok(Heartbeat {
            members,
            eviction_policy,
            epoch,
            epoch_restored: restored == 1,
            replicas,
        })
    }

    /// Redis' maxmemory-policy as of the last heartbeat, when it may evict
    /// keys: the fleet then neither leads nor changes its inventory.
    pub fn unsafe_eviction_policy(&self) -> Option<String> {
        self.eviction_policy.lock().expect("policy lock").clone()
    }

    /// What this replica tells the others about itself at every heartbeat.
    pub fn set_member_info(&self, info: String) {
        *self.member_info.lock().expect("member info") = info;
    }

    /// The lease holder, and each live member with what it told of itself.
    pub async fn fleet_view(
        &self,
    ) -> Result<(Option<String>, Vec<(String, Option<String>)>), StoreError> {
        let members = self.members();
        let leader_key = self.keys.leader();
        let info_keys: Vec<String> = members.iter().map(|m| self.keys.member(m)).collect();
        let (leader, infos): (Option<String>, Vec<Option<String>>) = self
            .redis("fleet_view", |mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("GET").arg(leader_key);
                if info_keys.is_empty() {
                    let (leader,): (Option<String>,) = pipe.query_async(&mut conn).await?;
                    return Ok((leader, Vec::new()));
                }
                pipe.cmd("MGET").arg(info_keys);
                pipe.query_async(&mut conn).await
            })
            .await?;
        Ok((
            leader,
            members
                .into_iter()
                .zip(infos.into_iter().chain(std::iter::repeat(None)))
                .collect(),
        ))
    }

    /// Leaves the membership (graceful shutdown): the others take over this
    /// replica's devices at their next check instead of after the member ttl.
    pub async fn leave(&self) {
        let key = self.keys.members();
        let id = self.replica_id.clone();
        let _ = self
            .run(Lane::Control, "leave", |mut conn| async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(id)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }

    /// Reads the inventory from Redis, with whether this server reloaded it
    /// (in the same round trip, so a reconnection in between cannot hide a
    /// reload): `None` when there is none.
    async fn read_remote(&self) -> Result<Option<RemoteInventory>, StoreError> {
        let key = self.keys.inventory();
        let ((incarnation, version, data, server), info): (InventoryRead, String) = self
            .redis("inventory_read", |mut conn| async move {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(key)
                    .arg(&["incarnation", "version", "data", "server"])
                    .cmd("INFO")
                    .arg("server")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let (Some(incarnation), Some(version), Some(data)) = (incarnation, version, data) else {
            return Ok(None);
        };
        let read = self.decode_remote(&data);
        *self.unreadable.lock().expect("unreadable lock") =
            read.as_ref().err().map(|e| e.to_string());
        Ok(Some(RemoteInventory {
            incarnation,
            version,
            inventory: read?,
            reloaded: reloaded(server.as_deref(), &info),
        }))
    }

    /// Decrypts and parses the inventory as Redis holds it.
    fn decode_remote(&self, data: &str) -> Result<Inventory, StoreError> {
        let plaintext = self.cipher.decrypt(data.as_bytes()).map_err(|e| {
            StoreError::Unreadable(format!(
                "the fleet's inventory in Redis cannot be decrypted with this replica's PROM_ENCRYPT_KEY ({e}); every replica must use the same key"
            ))
        })?;
        Inventory::from_json(&plaintext).map_err(|e| {
            StoreError::Unreadable(format!("the fleet's inventory in Redis is not valid: {e}"))
        })
    }

    /// Brings the local snapshot up to Redis's inventory. When Redis holds
    /// none the local snapshot is kept (nothing is lost) and the leader
    /// restores it.
    pub async fn refresh(&self) -> Result<Refresh, StoreError> {
        let key = self.keys.inventory();
        let ((incarnation, version, server), info): (InventoryHead, String) = self
            .redis("inventory_version", |mut conn| async move {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(key)
                    .arg(&["incarnation", "version", "server"])
                    .cmd("INFO")
                    .arg("server")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let (Some(incarnation), Some(version)) = (incarnation, version) else {
            *self.unreadable.lock().expect("unreadable lock") = None;
            return Ok(Refresh::Missing);
        };
        let is_reloaded = reloaded(server.as_deref(), &info);
        if !is_reloaded {
            let local = self.inventory.lock().expect("inventory lock");
            if *local.incarnation == *incarnation && local.version == version {
                return Ok(Refresh::Current);
            }
        }
        let Some(remote) = self.read_remote().await? else {
            return Ok(Refresh::Missing);
        };
        if remote.reloaded {
            return Ok(Refresh::Reloaded(remote));
        }
        Ok(
            match self.adopt(
                remote.incarnation,
                remote.version,
                Arc::new(remote.inventory),
            ) {
                Some(snapshot) => Refresh::Changed(snapshot),
                None => Refresh::Current,
            },
        )
    }

    /// Makes (incarnation, version) the local snapshot unless it is already
    /// there or older than what the replica holds.
    fn adopt(
        &self,
        incarnation: String,
        version: u64,
        inventory: Arc<Inventory>,
    ) -> Option<InventorySnapshot> {
        let mut local = self.inventory.lock().expect("inventory lock");
        if *local.incarnation == *incarnation && local.version >= version {
            return None;
        }
        *local = InventorySnapshot {
            version,
            incarnation: incarnation.into(),
            inventory,
        };
        let snapshot = local.clone();
        drop(local);
        self.prune_local(&snapshot.inventory);
        Some(snapshot)
    }

    /// `inventory_update.lua` on the inventory lane; with replicas behind
    /// the Redis primary, then `WAIT 1` on the same connection (WAIT counts
    /// the writes of the connection that asks), so a failover to a replica
    /// keeps what is acknowledged. Returns the script's answer and, when a
    /// WAIT ran, how it ended.
    async fn update_and_replicate(
        &self,
        args: &[&str],
    ) -> Result<(i64, Option<redis::RedisResult<i64>>), StoreError> {
        let replicas = self.redis_replicas.load(Ordering::Relaxed);
        // Half the budget: the change itself and the answer fit in the rest.
        let wait_ms = (self.redis_timeout.as_millis() / 2).max(1) as u64;
        let script = &self.scripts.inventory_update;
        let keys = [self.keys.inventory(), self.keys.leader(), self.keys.epoch()];
        Ok(self
            .run(Lane::Inventory, "inventory_update", |mut conn| async move {
                let mut invocation = script.prepare_invoke();
                for key in &keys {
                    invocation.key(key);
                }
                for arg in args {
                    invocation.arg(*arg);
                }
                let result: i64 = invocation.invoke_async(&mut conn).await?;
                if result <= 0 || replicas == 0 {
                    return Ok((result, None));
                }
                let waited = redis::cmd("WAIT")
                    .arg(1)
                    .arg(wait_ms)
                    .query_async::<i64>(&mut conn)
                    .await;
                Ok((result, Some(waited)))
            })
            .await?)
    }

    /// The outcome of the WAIT after a change: `Err` when no replica
    /// confirmed it (the change is applied on the primary all the same).
    fn replicated(
        &self,
        version: u64,
        waited: Option<redis::RedisResult<i64>>,
    ) -> Result<(), StoreError> {
        let problem = match waited {
            None | Some(Ok(1..)) => return Ok(()),
            Some(Ok(_)) => "no Redis replica confirmed it in time".to_string(),
            Some(Err(e)) => format!("waiting for a Redis replica failed ({e})"),
        };
        self.telemetry.inventory_changes_not_durable.inc();
        tracing::warn!(
            version,
            problem,
            "an inventory change is not yet on a Redis replica"
        );
        Err(StoreError::Unavailable(format!(
            "the change is applied on Redis' primary (version {version}) but {problem}, so a failover could lose it"
        )))
    }

    /// Forgets local results of devices no longer in `inventory`.
    fn prune_local(&self, inventory: &Inventory) {
        let ids: HashSet<&str> = inventory.devices.iter().map(|d| d.id.as_str()).collect();
        self.local_polls
            .lock()
            .expect("polls lock")
            .retain(|id, _| ids.contains(id.as_str()));
        self.local_histories.retain(|id| ids.contains(id));
        self.local_claims.retain(|id| ids.contains(id));
        self.claimed_rounds.retain(|id| ids.contains(id));
    }

    /// `poll_fail.lua`: shares `message` (unless empty) and releases our poll lock.
    async fn release_poll(&self, device_id: &str, message: &str) {
        let _ = self
            .eval::<i64>(
                "poll_fail",
                &self.scripts.poll_fail,
                &[self.keys.lock(device_id), self.keys.failed(device_id)],
                &[
                    &self.replica_id,
                    message,
                    &millis(self.cache_ttl.max(FAILURE_SHARE)),
                ],
            )
            .await;
    }

    /// The leader puts `inventory` into Redis. Returns the new snapshot,
    /// `None` when Redis holds another inventory. `replacing`: the (incarnation, version) of an inventory Redis
    /// reloaded, replaced only while it still holds exactly that one;
    /// `None`: only into an empty Redis. A new incarnation either way, so every
    /// replica adopts it whatever version it holds.
    pub async fn restore(
        &self,
        epoch: u64,
        inventory: Inventory,
        replacing: Option<(&str, u64)>,
    ) -> Result<Option<InventorySnapshot>, StoreError> {
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        let data = self.cipher.encrypt(&inventory.to_json());
        let mut args = vec![
            self.replica_id.clone(),
            epoch.to_string(),
            incarnation.clone(),
            data,
            self.keys.events(),
        ];
        if let Some((held_incarnation, held_version)) = replacing {
            args.push(held_incarnation.to_string());
            args.push(held_version.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let restored: i64 = self
            .eval(
                "inventory_restore",
                &self.scripts.inventory_restore,
                &[self.keys.inventory(), self.keys.leader(), self.keys.epoch()],
                &args,
            )
            .await?;
        match restored {
            1 => Ok(self.adopt(incarnation, 1, Arc::new(inventory))),
            0 => Ok(None),
            _ => Err(StoreError::StaleEpoch(epoch)),
        }
    }

    /// Drops what Redis keeps for devices that left the inventory (their
    /// local results go when the new snapshot is adopted).
    async fn forget_devices(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids
            .iter()
            .flat_map(|id| {
                [
                    self.keys.history(id),
                    self.keys.cache(id),
                    self.keys.claim(id),
                    self.keys.lock(id),
                    self.keys.failed(id),
                ]
            })
            .collect();
        let _ = self
            .redis("forget_devices", |mut conn| async move {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }

    /// `cache_get.lua`: (Redis now ms, generation, age µs, data, failure mark, locked).
    async fn cache_entry(&self, device_id: &str) -> Result<CacheEntry, StoreError> {
        let raw: RawCacheEntry = self
            .eval(
                "cache_get",
                &self.scripts.cache_get,
                &self.cache_get_keys(device_id),
                &[&self.known_generation(device_id)],
            )
            .await?;
        Ok(self.decode_cache_entry(device_id, raw))
    }

    /// The cache entries of many devices: `cache_get` for each, pipelined
    /// [`CACHE_READ_BATCH`] at a time (one round trip per batch, not per device).
    async fn cache_entries(&self, device_ids: &[String]) -> Result<Vec<CacheEntry>, StoreError> {
        let mut entries = Vec::with_capacity(device_ids.len());
        for batch in device_ids.chunks(CACHE_READ_BATCH) {
            let mut pipe = redis::pipe();
            for id in batch {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.cache_get.get_hash())
                    .arg(3)
                    .arg(&self.cache_get_keys(id)[..])
                    .arg(self.known_generation(id));
            }
            let script = &self.scripts.cache_get;
            let raws: Vec<RawCacheEntry> = self
                .redis("cache_get_batch", |mut conn| async move {
                    match pipe.query_async(&mut conn).await {
                        // A restarted Redis forgot the script: load it, once.
                        Err(e)
                            if e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                        {
                            script.load_async(&mut conn).await?;
                            pipe.query_async(&mut conn).await
                        }
                        other => other,
                    }
                })
                .await?;
            entries.extend(
                batch
                    .iter()
                    .zip(raws)
                    .map(|(id, raw)| self.decode_cache_entry(id, raw)),
            );
        }
        Ok(entries)
    }

    fn cache_get_keys(&self, device_id: &str) -> [String; 3] {
        [
            self.keys.cache(device_id),
            self.keys.failed(device_id),
            self.keys.lock(device_id),
        ]
    }

    /// The generation of the device's poll this replica has decoded ("" none):
    /// `cache_get` sends the data only when Redis holds another.
    fn known_generation(&self, device_id: &str) -> String {
        self.local_polls
            .lock()
            .expect("polls lock")
            .get(device_id)
            .map(|p| p.generation.to_string())
            .unwrap_or_default()
    }

    fn decode_cache_entry(&self, device_id: &str, raw: RawCacheEntry) -> CacheEntry {
        let (now_ms, generation, age_us, data, failure, locked) = raw;
        let polled = if generation == 0 {
            None
        } else if data.is_empty() {
            // Unchanged since we last read it: reuse the decoded copy.
            self.local_polls
                .lock()
                .expect("polls lock")
                .get(device_id)
                .filter(|p| p.generation == generation)
                .map(|p| p.polled.clone())
        } else {
            match PolledDevice::from_wire(&data) {
                Ok(p) => {
                    let polled = Arc::new(p);
                    self.remember(device_id, generation, polled.clone(), age_us);
                    Some(polled)
                }
                // Written by a replica of another version (a rolling
                // upgrade): a miss, not worth a warning.
                Err(WireError::OtherFormat) => {
                    tracing::debug!(
                        device = device_id,
                        "cached poll in Redis is in another format; treating it as a miss"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(device = device_id, error = %e, "unreadable cached poll in Redis; ignoring it");
                    None
                }
            }
        };
        let failure = failure.split_once('|').and_then(|(at, message)| {
            at.parse::<i64>()
                .ok()
                .map(|at_ms| (at_ms, message.to_string()))
        });
        CacheEntry {
            now_ms,
            age: Duration::from_micros(age_us.max(0) as u64),
            polled,
            failure,
            locked: locked == 1,
        }
    }

    /// The entry's poll, if younger than `max_age` and no failure mark is
    /// newer (a success deletes the mark, poll_record.lua): else the device is
    /// down or the poll too old.
    fn fresh(&self, entry: CacheEntry, max_age: Duration) -> Option<CachedPoll> {
        let fresh = entry
            .polled
            .filter(|_| entry.age < max_age && entry.failure.is_none());
        self.telemetry.redis_cache_get(fresh.is_some());
        fresh.map(|polled| CachedPoll {
            polled,
            stored_at: Instant::now()
                .checked_sub(entry.age)
                .unwrap_or_else(Instant::now),
        })
    }

    fn remember(&self, device_id: &str, generation: u64, polled: Arc<PolledDevice>, age_us: i64) {
        let stored_at = Instant::now()
            .checked_sub(Duration::from_micros(age_us.max(0) as u64))
            .unwrap_or_else(Instant::now);
        let len = {
            let mut polls = self.local_polls.lock().expect("polls lock");
            polls.insert(
                device_id.to_string(),
                LocalPoll {
                    generation,
                    polled,
                    stored_at,
                },
            );
            polls.len()
        };
        // Polls outside the inventory (a scrape's own module selection, an
        // unlisted target) are not kept past a bound.
        let inventory = self
            .inventory
            .lock()
            .expect("inventory lock")
            .inventory
            .clone();
        if len > 2 * inventory.devices.len() + 1024 {
            self.prune_local(&inventory);
        }
    }

    fn local_cached(&self, device_id: &str, max_age: Duration) -> Option<CachedPoll> {
        self.local_polls
            .lock()
            .expect("polls lock")
            .get(device_id)
            .filter(|p| p.stored_at.elapsed() < max_age)
            .map(|p| CachedPoll {
                polled: p.polled.clone(),
                stored_at: p.stored_at,
            })
    }

    /// The newest history of `device_id` this replica knows: the one it
    /// recorded, or the one behind the last poll it saw (its own or read from
    /// Redis). The floor the histograms continue from when Redis lost the
    /// shared one.
    fn known_history(&self, device_id: &str) -> Option<DeviceHistory> {
        let seen = self.previous_poll(device_id).map(|p| p.history());
        let kept = self.local_histories.get(device_id);
        match (kept, seen) {
            (Some(kept), Some(seen)) if seen.last_polled_at_ms > kept.last_polled_at_ms => {
                Some(seen)
            }
            (Some(kept), _) => Some(kept),
            (None, seen) => seen,
        }
    }

    /// Records a poll locally only (Redis unreachable), on Redis' clock as
    /// last seen (the histories it continues from are on it).
    fn record_locally(&self, mut sample: Sample) -> Arc<PolledDevice> {
        sample.polled_at_ms += self.clock_offset_ms.load(Ordering::Relaxed);
        let device_id = sample.device_id.clone();
        let seen = self.previous_poll(&device_id).map(|p| p.history());
        let polled = self.local_histories.record_continuing(sample, seen);
        self.remember(&device_id, 0, polled.clone(), 0);
        polled
    }

    /// The poll lock for a scrape-triggered poll (no round claim): 1 when granted.
    async fn claim_scrape(&self, device_id: &str) -> Result<i64, StoreError> {
        self.eval(
            "poll_claim",
            &self.scripts.poll_claim,
            &[self.keys.claim(device_id), self.keys.lock(device_id)],
            &[&self.replica_id, "0", &millis(self.lock_ttl)],
        )
        .await
    }

    /// We hold the poll lock; but another replica's walk may have ended
    /// after this scrape began, before our claim. Serve its outcome instead
    /// of walking again.
    async fn turn_after_claim(&self, device_id: &str, since: Instant) -> ScrapeTurn {
        if let Ok(entry) = self.cache_entry(device_id).await {
            if let Some(turn) = self.answer(&entry, since) {
                self.release_poll(device_id, "").await;
                return turn;
            }
        }
        ScrapeTurn::PollNow
    }

    /// The outcome of a walk that ended after `since` (a scrape's start), if any.
    fn answer(&self, entry: &CacheEntry, since: Instant) -> Option<ScrapeTurn> {
        let waited = since.elapsed();
        if let Some(polled) = entry.polled.as_ref().filter(|_| entry.age <= waited) {
            self.telemetry.redis_cache_get(true);
            return Some(ScrapeTurn::Polled(polled.clone()));
        }
        entry
            .failure
            .as_ref()
            .filter(|(at_ms, _)| {
                Duration::from_millis(entry.now_ms.saturating_sub(*at_ms).max(0) as u64) <= waited
            })
            .map(|(_, message)| ScrapeTurn::Failed(message.clone()))
    }

    /// One attempt at `poll_record.lua`: `Ok(None)` when the history changed meanwhile.
    /// `sample.polled_at_ms` is put on Redis' clock here.
    async fn try_record(
        &self,
        sample: &mut Sample,
    ) -> Result<Option<Arc<PolledDevice>>, StoreError> {
        let key = self.keys.history(&sample.device_id);
        let ((generation, data), (seconds, micros)): ((Option<u64>, Option<String>), (i64, i64)) =
            self.redis("history_read", |mut conn| async move {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(key)
                    .arg(&["gen", "data"])
                    .cmd("TIME")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let generation = generation.unwrap_or(0);
        // The poll's time on Redis' clock, not this replica's: which poll is
        // newer, and the time between two polls by different replicas, must
        // not depend on how well their clocks agree.
        let redis_now_ms = seconds * 1000 + micros / 1000;
        let offset_ms = redis_now_ms - chrono::Utc::now().timestamp_millis();
        self.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
        sample.polled_at_ms += offset_ms;
        let sample = &*sample;
        let id = &sample.device_id;
        // A history in another format (a replica of another version wrote
        // it) starts afresh: one poll without an observation. None at all
        // (Redis lost it): from the newest one this replica knows, so the
        // histograms do not go back.
        let mut stored: StoredHistory = match data.as_deref() {
            Some(d) => d
                .strip_prefix(HISTORY_FORMAT)
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default(),
            None => self
                .known_history(id)
                .map(|history| StoredHistory {
                    polled_at_ms: 0,
                    history,
                })
                .unwrap_or_default(),
        };
        let newer_stored = stored.polled_at_ms > sample.polled_at_ms;
        stored.history.record(sample);
        let polled = Arc::new(PolledDevice::new(sample.clone(), &stored.history));
        if newer_stored {
            // A newer poll is in already: this late one changes nothing shared.
            self.release_poll(id, "").await;
            return Ok(Some(polled));
        }
        stored.polled_at_ms = sample.polled_at_ms;
        let history_json = format!(
            "{HISTORY_FORMAT}{}",
            serde_json::to_string(&stored).expect("history serialises")
        );
        let polled_json = polled.to_wire();
        let new_generation: u64 = self
            .eval(
                "poll_record",
                &self.scripts.poll_record,
                &[
                    self.keys.history(id),
                    self.keys.cache(id),
                    self.keys.lock(id),
                    self.keys.failed(id),
                ],
                &[
                    &self.replica_id,
                    &generation.to_string(),
                    &history_json,
                    &polled_json,
                    &millis(self.cache_ttl),
                    &millis(self.history_ttl),
                ],
            )
            .await?;
        if new_generation == 0 {
            return Ok(None);
        }
        self.local_histories.insert(id, stored.history);
        self.remember(id, new_generation, polled.clone(), 0);
        Ok(Some(polled))
    }
}

/// What `cache_get.lua` answers: Redis time (ms), generation, age (µs),
/// data ("" when unchanged), failure mark, lock held.
type RawCacheEntry = (i64, u64, i64, String, String, i64);

/// Cache entries read per pipelined round trip (`/metrics` of a large fleet).
const CACHE_READ_BATCH: usize = 256;

struct CacheEntry {
    /// Redis time of the read, ms (failure marks are stamped in ms).
    now_ms: i64,
    age: Duration,
    polled: Option<Arc<PolledDevice>>,
    /// (Redis time in ms, message) of the last failed poll, if recent.
    failure: Option<(i64, String)>,
    locked: bool,
}

#[async_trait]
impl Store for RedisStore {
    /// The local snapshot: always answers, also while Redis is unreachable.
    async fn inventory(&self) -> Result<InventorySnapshot, StoreError> {
        Ok(self.inventory.lock().expect("inventory lock").clone())
    }

    async fn update_inventory(
        &self,
        change: InventoryChange<'_>,
        fence: Fence,
        if_match: Option<&IfMatch>,
    ) -> Result<InventorySnapshot, StoreError> {
        if let Some(policy) = self.unsafe_eviction_policy() {
            return Err(StoreError::Unavailable(format!(
                "Redis' maxmemory-policy is {policy}, so it may evict the inventory: nothing was changed (Redis needs maxmemory-policy noeviction)"
            )));
        }
        let fence_arg = fence.map(|e| e.to_string()).unwrap_or_default();
        let started = Instant::now();
        let mut attempt = 0;
        let mut missing = false;
        while attempt == 0 || started.elapsed() < CHANGE_BUDGET {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            attempt += 1;
            let Some(RemoteInventory {
                incarnation,
                version,
                inventory: current,
                reloaded: false,
            }) = self.read_remote().await?
            else {
                // Emptied (restart, flush) or reloaded (restart from saved
                // data, failover): the leader puts it back shortly.
                missing = true;
                continue;
            };
            missing = false;
            // Checked against what Redis holds; the script's compare-and-set
            // on (incarnation, version) makes the check and the write atomic.
            if let Some(m) = if_match {
                let tag = crate::store::etag(&incarnation, version);
                if !m.admits(&tag) {
                    return Err(StoreError::PreconditionFailed { version, etag: tag });
                }
            }
            let mut next = current.clone();
            change(&mut next)?;
            next.validate()?;
            let data = self.cipher.encrypt(&next.to_json());
            let (result, waited) = self
                .update_and_replicate(&[
                    &incarnation,
                    &version.to_string(),
                    &data,
                    &self.keys.events(),
                    &fence_arg,
                    &self.replica_id,
                ])
                .await?;
            match result {
                0 => continue, // changed concurrently: read again
                -1 => return Err(StoreError::StaleEpoch(fence.unwrap_or_default())),
                // Emptied, or reloaded by this Redis server (possibly older
                // than the last changes): the leader puts it back shortly.
                -2 | -3 => {
                    missing = true;
                    continue;
                }
                new_version => {
                    let kept: HashSet<&str> = next.devices.iter().map(|d| d.id.as_str()).collect();
                    let gone: Vec<String> = current
                        .devices
                        .iter()
                        .filter(|d| !kept.contains(d.id.as_str()))
                        .map(|d| d.id.clone())
                        .collect();
                    let snapshot = InventorySnapshot {
                        version: new_version as u64,
                        incarnation: incarnation.as_str().into(),
                        inventory: Arc::new(next),
                    };
                    // Adopting also drops local results of the devices gone
                    // (unless an event already brought a newer version).
                    self.adopt(incarnation, snapshot.version, snapshot.inventory.clone());
                    self.forget_devices(gone).await;
                    self.replicated(snapshot.version, waited)?;
                    return Ok(snapshot);
                }
            }
        }
        if missing {
            return Err(StoreError::Unavailable(format!(
                "the fleet's inventory is not in Redis, or Redis reloaded it at a restart or failover, and no leader put it back within {CHANGE_BUDGET:?}; nothing was changed, retry"
            )));
        }
        self.telemetry.inventory_change_conflicts.inc();
        tracing::warn!(
            attempts = attempt,
            "an inventory change gave up after {CHANGE_BUDGET:?} of concurrent changes"
        );
        Err(StoreError::Unavailable(format!(
            "the inventory kept changing for {CHANGE_BUDGET:?} while this change was applied; nothing was changed, retry"
        )))
    }

    async fn claim_round(&self, device_id: &str, round: Duration) -> bool {
        if !self.view_ready.load(Ordering::Relaxed) {
            return false; // the next check, after the first heartbeat, decides
        }
        if self.unreadable.lock().expect("unreadable lock").is_some() {
            return false; // what this replica holds is not the fleet's inventory
        }
        let members = self.members();
        if members.is_empty() {
            // Never had a fleet view: poll on our own rather than not at all.
            return self.local_claims.claim(device_id, round);
        }
        if rendezvous_owner(&members, device_id) != Some(self.replica_id.as_str()) {
            return false;
        }
        if !self.is_redis_up() {
            // Cut off: our share of the last view, claimed locally.
            return self.local_claims.claim(device_id, round);
        }
        if !self.claimed_rounds.claim(device_id, round) {
            return false; // claimed in Redis until then
        }
        match self
            .eval::<i64>(
                "poll_claim",
                &self.scripts.poll_claim,
                &[self.keys.claim(device_id), self.keys.lock(device_id)],
                &[&self.replica_id, &millis(round), &millis(self.lock_ttl)],
            )
            .await
        {
            Ok(1) => true,
            Ok(taken) => {
                // Claimed for `-taken` ms more, or (0) a walk in progress:
                // ask again then, or at the next check.
                let left = Duration::from_millis(taken.unsigned_abs());
                self.claimed_rounds.hold(device_id, left);
                false
            }
            // Redis failed mid-round: still poll our own share.
            Err(_) => self.local_claims.claim(device_id, round),
        }
    }

    async fn scrape_turn(&self, device_id: &str, since: Instant) -> ScrapeTurn {
        if !self.is_redis_up() {
            return ScrapeTurn::PollNow;
        }
        // Take the poll lock, or wait for whoever holds it, at most as long
        // as a lock can live; `since` decides what answers this scrape.
        let give_up = Instant::now() + self.lock_ttl + Duration::from_secs(1);
        let mut try_claim = true;
        while Instant::now() < give_up {
            if try_claim {
                match self.claim_scrape(device_id).await {
                    Ok(1) => return self.turn_after_claim(device_id, since).await,
                    Err(_) => return ScrapeTurn::PollNow,
                    Ok(_) => tokio::time::sleep(WAIT_STEP).await,
                }
            } else {
                tokio::time::sleep(WAIT_STEP).await;
            }
            let Ok(entry) = self.cache_entry(device_id).await else {
                return ScrapeTurn::PollNow;
            };
            if let Some(turn) = self.answer(&entry, since) {
                return turn;
            }
            // It finished without a result (or died): our turn next.
            try_claim = !entry.locked;
        }
        ScrapeTurn::PollNow
    }

    async fn record_failure(&self, device_id: &str, message: &str) {
        // This replica's own copy is older than the failure: never served.
        self.local_polls
            .lock()
            .expect("polls lock")
            .remove(device_id);
        if self.is_redis_up() {
            let message = if message.is_empty() {
                "poll failed"
            } else {
                message
            };
            self.release_poll(device_id, message).await;
        }
    }

    async fn abandon_poll(&self, device_id: &str) {
        if self.is_redis_up() {
            self.release_poll(device_id, "").await;
        }
    }

    async fn cached_poll(
        &self,
        device_id: &str,
        max_age: Duration,
    ) -> Result<Option<CachedPoll>, StoreError> {
        if !self.is_redis_up() {
            return Ok(self.local_cached(device_id, max_age));
        }
        match self.cache_entry(device_id).await {
            Ok(entry) => Ok(self.fresh(entry, max_age)),
            // Redis unreachable: what this replica last saw or polled itself.
            Err(_) => Ok(self.local_cached(device_id, max_age)),
        }
    }

    async fn cached_polls(
        &self,
        device_ids: &[String],
        max_age: Duration,
    ) -> Result<Vec<Option<CachedPoll>>, StoreError> {
        let local = |ids: &[String]| {
            ids.iter()
                .map(|id| self.local_cached(id, max_age))
                .collect()
        };
        if !self.is_redis_up() {
            return Ok(local(device_ids));
        }
        match self.cache_entries(device_ids).await {
            Ok(entries) => Ok(entries
                .into_iter()
                .map(|entry| self.fresh(entry, max_age))
                .collect()),
            Err(_) => Ok(local(device_ids)),
        }
    }

    fn previous_poll(&self, device_id: &str) -> Option<Arc<PolledDevice>> {
        let polls = self.local_polls.lock().expect("polls lock");
        polls.get(device_id).map(|p| p.polled.clone())
    }

    async fn record_poll(&self, mut sample: Sample) -> Result<Arc<PolledDevice>, StoreError> {
        let local_ms = sample.polled_at_ms;
        if self.is_redis_up() {
            for _ in 0..CAS_ATTEMPTS {
                sample.polled_at_ms = local_ms;
                match self.try_record(&mut sample).await {
                    Ok(Some(polled)) => return Ok(polled),
                    Ok(None) => continue,
                    Err(_) => break,
                }
            }
        }
        sample.polled_at_ms = local_ms;
        Ok(self.record_locally(sample))
    }

    async fn evict_cache(&self) -> Result<usize, StoreError> {
        let snapshot = self.inventory().await?;
        let keys: Vec<String> = snapshot
            .inventory
            .devices
            .iter()
            .map(|d| self.keys.cache(&d.id))
            .collect();
        self.local_polls.lock().expect("polls lock").clear();
        if keys.is_empty() {
            return Ok(0);
        }
        let removed: u64 = self
            .redis("evict_cache", |mut conn| async move {
                redis::cmd("DEL").arg(keys).query_async(&mut conn).await
            })
            .await?;
        Ok(removed as usize)
    }

    async fn cache_len(&self) -> usize {
        if !self.is_redis_up() {
            return self.local_polls.lock().expect("polls lock").len();
        }
        let Ok(snapshot) = self.inventory().await else {
            return 0;
        };
        let keys: Vec<String> = snapshot
            .inventory
            .devices
            .iter()
            .map(|d| self.keys.cache(&d.id))
            .collect();
        if keys.is_empty() {
            return 0;
        }
        match self
            .redis("cache_len", |mut conn| async move {
                redis::cmd("EXISTS")
                    .arg(keys)
                    .query_async::<u64>(&mut conn)
                    .await
            })
            .await
        {
            Ok(n) => n as usize,
            Err(_) => self.local_polls.lock().expect("polls lock").len(),
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn shares_jobs(&self) -> bool {
        true
    }

    /// `SET job:<id>` with an expiry and `ZADD jobs`, dropping index
    /// entries older than `keep_for`, in one transaction. Best effort: a
    /// failure leaves the job answerable on the replica running it.
    async fn publish_job(&self, id: &str, started_ms: u64, progress: Vec<u8>, keep_for: Duration) {
        let (job, jobs) = (self.keys.job(id), self.keys.jobs());
        let id = id.to_string();
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let oldest = now_ms.saturating_sub(keep_for.as_millis() as u64);
        let _ = self
            .redis("publish_job", |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&job)
                    .arg(progress)
                    .arg("PX")
                    .arg(keep_for.as_millis() as u64)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&jobs)
                    .arg(started_ms)
                    .arg(&id)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&jobs)
                    .arg("-inf")
                    .arg(format!("({oldest}"))
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&jobs)
                    .arg(keep_for.as_millis() as u64)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    async fn published_job(&self, id: &str) -> Option<Vec<u8>> {
        let key = self.keys.job(id);
        self.redis("published_job", |mut conn| async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
        })
        .await
        .ok()
        .flatten()
    }

    async fn published_jobs(&self, limit: usize) -> Vec<Vec<u8>> {
        let jobs = self.keys.jobs();
        let ids: Vec<String> = self
            .redis("published_jobs", |mut conn| async move {
                redis::cmd("ZREVRANGE")
                    .arg(jobs)
                    .arg(0)
                    .arg(limit.saturating_sub(1))
                    .query_async(&mut conn)
                    .await
            })
            .await
            .unwrap_or_default();
        if ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = ids.iter().map(|id| self.keys.job(id)).collect();
        self.redis("published_jobs", |mut conn| async move {
            redis::cmd("MGET")
                .arg(keys)
                .query_async::<Vec<Option<Vec<u8>>>>(&mut conn)
                .await
        })
        .await
        .map(|found| found.into_iter().flatten().collect())
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:3f2a9c0d1e\r\ntcp_port:6379\r\n";
        assert_eq!(run_id(info), Some("3f2a9c0d1e"));
        assert_eq!(run_id("# Server\r\nredis_version:7.0.15\r\n"), None);
        assert!(!reloaded(Some("3f2a9c0d1e"), info));
        assert!(reloaded(Some("0000"), info));
        assert!(!reloaded(None, info), "an inventory from before run ids");
    }

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut per_member: HashMap<&str, usize> = HashMap::new();
        for i in 0..300 {
            let device = format!("device-{i}");
            let owner = rendezvous_owner(&members, &device).unwrap();
            *per_member.entry(owner).or_default() += 1;
            // Removing a non-owner never moves the device.
            let others: Vec<String> = members.iter().filter(|m| *m != owner).cloned().collect();
            let without_other: Vec<String> = members
                .iter()
                .filter(|m| *m != &others[0])
                .cloned()
                .collect();
            assert_eq!(rendezvous_owner(&without_other, &device), Some(owner));
        }
        for member in ["a", "b", "c"] {
            let n = per_member.get(member).copied().unwrap_or(0);
            assert!((60..=140).contains(&n), "{member} owns {n} of 300");
        }
        assert_eq!(rendezvous_owner(&[], "x"), None);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("t1:s1");
        for key in [keys.leader(), keys.cache("d"), keys.inventory()] {
            assert!(key.starts_with("promsnmp:{t1:s1}:"), "{key}");
        }
    }
}
