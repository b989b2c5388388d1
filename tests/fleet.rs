//! Fleet mode end to end: several promsnmp processes, one real `redis-server`
//! and real `snmpd` agents, all on 127.0.0.1. Leases run at 3 s renewed every
//! 1 s so failures show within seconds.
//!
//! The tests in this file run one at a time (`SERIAL`): they measure timing
//! and request counts, which two fleets competing for two cores would blur.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

static SERIAL: Mutex<()> = Mutex::new(());

const LEASE_MS: u64 = 3000;
const RENEW_MS: u64 = 1000;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Fleet {
    redis: Redis,
    replicas: Vec<Promsnmp>,
    shared: tempfile::TempDir,
}

impl Fleet {
    /// `n` replicas sharing one Redis and one inventory file.
    fn start(n: usize, collection_interval_ms: u64, extra_env: &[(&str, &str)]) -> Fleet {
        Fleet::start_with(n, collection_interval_ms, extra_env, None)
    }

    /// Like [`Fleet::start`], with `initial` written to the inventory file
    /// (plaintext JSON, which promsnmp accepts) before the first replica starts.
    fn start_with(
        n: usize,
        collection_interval_ms: u64,
        extra_env: &[(&str, &str)],
        initial: Option<&Value>,
    ) -> Fleet {
        let redis = Redis::start();
        let shared = tempfile::Builder::new()
            .prefix("psnmp-fleet")
            .tempdir()
            .expect("tempdir");
        if let Some(inventory) = initial {
            std::fs::write(shared.path().join("inventory.json"), inventory.to_string())
                .expect("write the initial inventory");
        }
        let mut fleet = Fleet {
            redis,
            replicas: Vec::new(),
            shared,
        };
        for _ in 0..n {
            let replica = fleet.start_replica(collection_interval_ms, extra_env);
            fleet.replicas.push(replica);
        }
        fleet
    }

    fn inventory_file(&self) -> PathBuf {
        self.shared.path().join("inventory.json")
    }

    fn start_replica(&self, collection_interval_ms: u64, extra_env: &[(&str, &str)]) -> Promsnmp {
        let url = self.redis.url();
        let file = self.inventory_file();
        let interval = collection_interval_ms.to_string();
        let lease = LEASE_MS.to_string();
        let renew = RENEW_MS.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("REDIS_URL", &url),
            ("PROM_INV_FILE", file.to_str().unwrap()),
            ("PROMSNMP_BIND_ADDRESS", "127.0.0.1"),
            ("COLLECTION_INTERVAL", &interval),
            ("PROMSNMP_LEASE_TTL_MS", &lease),
            ("PROMSNMP_LEASE_RENEW_MS", &renew),
            ("DISCOVERY_CRON", "-"),
        ];
        for (k, v) in extra_env {
            env.retain(|(ek, _)| ek != k);
            env.push((k, v));
        }
        Promsnmp::start(&env)
    }

    fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.addr()).collect()
    }

    /// Indexes of the replicas whose health says leader (dead ones skipped).
    fn leaders(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|i| role(&self.replicas[*i].addr()).as_deref() == Some("leader"))
            .collect()
    }

    fn wait_one_leader(&self, timeout: Duration) -> usize {
        wait_for(
            "exactly one leader",
            timeout,
            Duration::from_millis(50),
            || match self.leaders().as_slice() {
                [one] => Some(*one),
                _ => None,
            },
        )
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.replicas.iter().enumerate() {
            out += &format!("\n----- replica {i} ({}) -----\n", r.addr());
            out += &file_tail(&r.dir.path().join("promsnmp.log"), 40);
        }
        out
    }
}

fn file_epoch(inventory: &Path) -> u64 {
    let mut stamp = inventory.as_os_str().to_owned();
    stamp.push(".epoch");
    std::fs::read_to_string(stamp)
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `n` community devices that all point at one agent, named `dev-00`…: one
/// agent under many names, so its own counters see every poll of every device.
fn many_devices(port: u16, n: usize) -> Value {
    let devices: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("dev-{i:02}"),
                "sysName": format!("dev-{i:02}"),
                "agents": [{
                    "type": "snmp-community",
                    "id": format!("agent-{i:02}"),
                    "endpoint": {"address": "127.0.0.1", "port": port},
                    "version": 1,
                    "timeout": 1500,
                    "retries": 1,
                    "readCommunity": "public"
                }]
            })
        })
        .collect();
    json!({"devices": devices, "discoverySeeds": []})
}

fn import(addr: &str, inventory: &Value) {
    let r = http_post_json(addr, "/promsnmp/inventory", &inventory.to_string());
    assert_eq!(r.status, 200, "import: {}", r.text());
}

fn targets(addr: &str) -> Value {
    http_get(addr, "/targets").json()
}

const SNMP_IN_PKTS: &str = "1.3.6.1.2.1.11.1.0";

/// Replicas whose log shows a run of the saved seeds.
fn replicas_that_ran_seeds(fleet: &Fleet) -> Vec<usize> {
    (0..fleet.replicas.len())
        .filter(|i| {
            fleet.replicas[*i]
                .log()
                .contains("running saved discovery seeds")
        })
        .collect()
}

#[test]
fn one_leader_and_failover_after_sigkill() {
    let _serial = serial();
    // A saved seed (its port answers nothing): DISCOVERY_ON_START runs it on
    // the leader only, once per leadership.
    let seeds = json!({"devices": [], "discoverySeeds": [{
        "id": "seed-start", "potentialTargets": ["127.0.0.1"], "port": free_udp_port(),
        "version": "v2c", "agentType": "snmp-community", "readCommunity": "public",
        "timeout": 300, "retries": 0
    }]});
    let mut fleet = Fleet::start_with(3, 60_000, &[("DISCOVERY_ON_START", "true")], Some(&seeds));
    let leader = fleet.wait_one_leader(Duration::from_secs(10));
    wait_for(
        "DISCOVERY_ON_START on the leader",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (replicas_that_ran_seeds(&fleet) == vec![leader]).then_some(()),
    );
    let epoch_before = health(&fleet.replicas[leader].addr()).unwrap()["components"]["redis"]
        ["details"]["epoch"]
        .as_u64()
        .unwrap();
    // Exactly one leader at every sampled moment.
    for sample in 0..30 {
        let leaders = fleet.leaders();
        assert_eq!(
            leaders.len(),
            1,
            "sample {sample}: leaders {leaders:?}{}",
            fleet.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Every replica sees all three members.
    for addr in fleet.addrs() {
        let members = health(&addr).unwrap()["components"]["redis"]["details"]["members"].clone();
        assert_eq!(
            members.as_array().map(Vec::len),
            Some(3),
            "{addr}: {members}"
        );
    }

    fleet.replicas[leader].kill();
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = wait_for(
        "a new leader after SIGKILL",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            survivors
                .iter()
                .copied()
                .find(|i| role(&fleet.replicas[*i].addr()).as_deref() == Some("leader"))
        },
    );
    let failover = killed_at.elapsed();
    println!(
        "failover after SIGKILL of the leader: {:.2} s",
        failover.as_secs_f64()
    );
    let bound = Duration::from_millis(LEASE_MS + RENEW_MS + 300);
    assert!(
        failover <= bound,
        "new leader after {failover:?}, bound {bound:?} (lease + renew period + sampling){}",
        fleet.logs()
    );
    let epoch_after = health(&fleet.replicas[new_leader].addr()).unwrap()["components"]["redis"]
        ["details"]["epoch"]
        .as_u64()
        .unwrap();
    assert!(
        epoch_after > epoch_before,
        "epoch {epoch_before} -> {epoch_after}"
    );
    for sample in 0..10 {
        let leaders = fleet.leaders();
        assert_eq!(leaders, vec![new_leader], "sample {sample}");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        self_metric_sum(&fleet.replicas[new_leader].addr(), "promsnmp_leader"),
        1.0
    );
    // The new leader ran DISCOVERY_ON_START for its leadership; the third did not.
    wait_for(
        "DISCOVERY_ON_START on the new leader",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            replicas_that_ran_seeds(&fleet)
                .contains(&new_leader)
                .then_some(())
        },
    );
    assert_eq!(replicas_that_ran_seeds(&fleet).len(), 2, "{}", fleet.logs());

    // Graceful shutdown hands the lease over at once (released, not expired).
    send_signal(fleet.replicas[new_leader].pid(), libc::SIGTERM);
    let stopped_at = Instant::now();
    let last = survivors.into_iter().find(|i| *i != new_leader).unwrap();
    wait_for(
        "the last replica to lead",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || (role(&fleet.replicas[last].addr()).as_deref() == Some("leader")).then_some(()),
    );
    let handover = stopped_at.elapsed();
    println!(
        "handover after SIGTERM of the leader: {:.2} s",
        handover.as_secs_f64()
    );
    assert!(
        handover < Duration::from_millis(LEASE_MS),
        "a released lease is taken at the next renew tick, not after expiry: {handover:?}"
    );
    let status = fleet.replicas[new_leader].terminate();
    assert!(status.success(), "exit {status}");
}

#[test]
fn paused_leader_is_fenced() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig {
        sys_name: "fenced-agent".into(),
        ..Default::default()
    });
    // A second address that never answers keeps each discovery running for
    // 4 s, so a found device waits in the job while we pause the leader.
    let silent = std::net::UdpSocket::bind(("127.0.0.2", agent.port)).expect("bind 127.0.0.2");
    let fleet = Fleet::start(
        3,
        60_000,
        &[("DISCOVERY_CRON", "*/2 * * * * *"), ("DISCOVERY_TZ", "UTC")],
    );
    let seed = json!({
        "devices": [],
        "discoverySeeds": [{
            "id": "seed-fence",
            "potentialTargets": ["127.0.0.1", "127.0.0.2"],
            "port": agent.port,
            "version": "v2c",
            "agentType": "snmp-community",
            "readCommunity": "public",
            "timeout": 4000,
            "retries": 0
        }]
    });
    import(&fleet.replicas[0].addr(), &seed);
    let old = fleet.wait_one_leader(Duration::from_secs(10));
    let old_addr = fleet.replicas[old].addr();
    let old_epoch = health(&old_addr).unwrap()["components"]["redis"]["details"]["epoch"]
        .as_u64()
        .unwrap();

    // Wait for a scheduled run whose found device is not written yet.
    wait_for(
        "a scheduled discovery holding a found device",
        Duration::from_secs(15),
        Duration::from_millis(10),
        || {
            let r = try_http_request(&old_addr, "GET", "/promsnmp/discovery/seed-fence", &[], &[])
                .ok()?;
            let progress = serde_json::from_slice::<Value>(&r.body).ok()?["progress"].clone();
            (progress["state"] == "running"
                && progress["probed"].as_u64() >= Some(1)
                && progress["found"].as_u64() == Some(0))
            .then_some(())
        },
    );
    send_signal(fleet.replicas[old].pid(), libc::SIGSTOP);

    // Watch the file's epoch while the leadership moves.
    let inventory = fleet.inventory_file();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                seen.push(file_epoch(&inventory));
                thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = wait_for(
        "another leader while the old one is stopped",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            others
                .iter()
                .copied()
                .find(|i| role(&fleet.replicas[*i].addr()).as_deref() == Some("leader"))
        },
    );
    let new_epoch = health(&fleet.replicas[new].addr()).unwrap()["components"]["redis"]["details"]
        ["epoch"]
        .as_u64()
        .unwrap();
    assert!(new_epoch > old_epoch);
    // Let the new leader write the file under its epoch.
    wait_for(
        "the new leader's epoch in the file",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (file_epoch(&fleet.inventory_file()) >= new_epoch).then_some(()),
    );

    send_signal(fleet.replicas[old].pid(), libc::SIGCONT);
    // The woken leader's pending write carries the old epoch: refused.
    wait_for(
        "the old leader's stale write to be refused",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            (self_metric_sum(&old_addr, "promsnmp_stale_epoch_rejections_total") >= 1.0)
                .then_some(())
        },
    );
    assert_eq!(
        role(&old_addr).as_deref(),
        Some("follower"),
        "{}",
        fleet.logs()
    );
    assert_eq!(self_metric_sum(&old_addr, "promsnmp_leader"), 0.0);
    assert!(
        self_metric_sum(&old_addr, r#"promsnmp_leadership_transitions_total"#) >= 2.0,
        "became leader and stepped down"
    );
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(fleet.leaders(), vec![new], "{}", fleet.logs());
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the file's epoch went down: {seen:?}"
    );
    assert!(file_epoch(&fleet.inventory_file()) >= new_epoch);
    // The refused write left the inventory in Redis intact and readable.
    let exported = http_get(&fleet.replicas[new].addr(), "/promsnmp/inventory").json();
    assert_eq!(exported["discoverySeeds"][0]["id"], "seed-fence");
    drop(silent);
}

#[test]
fn every_device_polled_once_per_interval_across_replicas() {
    let _serial = serial();
    const DEVICES: usize = 24;
    const INTERVAL_MS: u64 = 2000;
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(3, INTERVAL_MS, &[]);
    import(
        &fleet.replicas[0].addr(),
        &many_devices(agent.port, DEVICES),
    );
    fleet.wait_one_leader(Duration::from_secs(10));
    // Every replica has the devices and all three members.
    for addr in fleet.addrs() {
        wait_for(
            "devices on every replica",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || (targets(&addr).as_array().map(Vec::len) == Some(DEVICES)).then_some(()),
        );
    }
    // Let ownership settle for one interval.
    thread::sleep(Duration::from_millis(INTERVAL_MS + 500));

    let polls = |fleet: &Fleet| -> f64 {
        fleet
            .addrs()
            .iter()
            .map(|a| self_metric_sum(a, "promsnmp_replica_polls_total"))
            .sum()
    };
    let requests = |fleet: &Fleet| -> f64 {
        fleet
            .addrs()
            .iter()
            .map(|a| self_metric_sum(a, "promsnmp_snmp_requests_total"))
            .sum()
    };
    let agent_addr = agent.addr();
    let window = Duration::from_millis(5 * INTERVAL_MS);
    let in_before = snmp_get_u64(&agent_addr, "public", SNMP_IN_PKTS);
    let (polls_before, requests_before) = (polls(&fleet), requests(&fleet));
    let started = Instant::now();
    thread::sleep(window);
    let in_after = snmp_get_u64(&agent_addr, "public", SNMP_IN_PKTS);
    let elapsed = started.elapsed();
    let (polls_after, requests_after) = (polls(&fleet), requests(&fleet));

    let polled = polls_after - polls_before;
    let sent = requests_after - requests_before;
    let received = (in_after - in_before) as f64 - 1.0; // minus our own first snmpget
    let rounds = elapsed.as_secs_f64() / (INTERVAL_MS as f64 / 1000.0);
    let per_poll = sent / polled.max(1.0);
    // One poller polls each device once per interval: `rounds` polls, plus one
    // for a round that straddles the window's edges. Three independent pollers
    // would poll three times as often.
    let one_poller_polls = DEVICES as f64 * (rounds + 1.0);
    let one_poller_requests = one_poller_polls * per_poll;
    let per_replica: Vec<f64> = fleet
        .addrs()
        .iter()
        .map(|a| self_metric_sum(a, "promsnmp_replica_polls_total"))
        .collect();
    println!(
        "exactly-once: {DEVICES} devices, interval {INTERVAL_MS} ms, window {:.1} s ({rounds:.1} rounds): \
         {polled} polls by the fleet (per replica, cumulative {per_replica:?}), {sent} SNMP requests sent, \
         agent snmpInPkts grew by {received}; bound for one poller {one_poller_polls:.0} polls / \
         {one_poller_requests:.0} requests ({per_poll:.2} requests per poll)",
        elapsed.as_secs_f64()
    );
    assert!(
        polled <= one_poller_polls,
        "{polled} polls > one poller's {one_poller_polls:.0}{}",
        fleet.logs()
    );
    assert!(
        polled >= DEVICES as f64 * (rounds - 1.5),
        "devices were not polled every interval: {polled} polls in {rounds:.1} rounds"
    );
    assert!(
        received <= one_poller_requests + 2.0,
        "agent received {received} requests > one poller's {one_poller_requests:.0}"
    );
    // Nothing else talks to the agent: what the fleet sent is what it received.
    assert!(
        (received - sent).abs() <= 2.0 + sent * 0.02,
        "agent saw {received}, fleet sent {sent}"
    );
    // The work is spread: every replica polled something.
    assert!(
        per_replica.iter().all(|p| *p > 0.0),
        "per replica {per_replica:?}"
    );
}

#[test]
fn a_cache_miss_is_walked_once_across_replicas() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(3, 60_000, &[]);
    import(&fleet.replicas[0].addr(), &many_devices(agent.port, 1));
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();
    wait_for(
        "the first background poll",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            // The round claim (set by background polls only) holds for the
            // rest of the test, so only scrapes walk from here on.
            let claim = "promsnmp:{0123456789:0123456789}:claim:dev-00";
            let lock = "promsnmp:{0123456789:0123456789}:lock:dev-00";
            let r = try_http_request(&addrs[0], "GET", "/snmp?target=dev-00", &[], &[]).ok()?;
            (r.status == 200
                && fleet.redis.cmd(&["EXISTS", claim]) == "1"
                && fleet.redis.cmd(&["EXISTS", lock]) == "0")
                .then_some(())
        },
    );
    let polls = || polls_total(&addrs);
    let r = http_request(&addrs[0], "POST", "/promsnmp/evictCache", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    for round in 0..3 {
        if round > 0 {
            assert_eq!(
                http_request(&addrs[round], "POST", "/promsnmp/evictCache", &[], b"").status,
                200
            );
        }
        let polls_before = polls();
        let in_before = snmp_get_u64(&agent.addr(), "public", SNMP_IN_PKTS);
        // Three scrapes of the uncached device at once, one per replica.
        let barrier = Arc::new(std::sync::Barrier::new(addrs.len()));
        let scrapers: Vec<_> = addrs
            .iter()
            .cloned()
            .map(|addr| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    http_get(&addr, "/snmp?target=dev-00")
                })
            })
            .collect();
        let bodies: Vec<String> = scrapers
            .into_iter()
            .map(|t| {
                let r = t.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                r.text()
            })
            .collect();
        let in_after = snmp_get_u64(&agent.addr(), "public", SNMP_IN_PKTS);
        let walked = polls() - polls_before;
        let received = in_after - in_before - 1;
        println!("cache miss, round {round}: 3 concurrent scrapes on 3 replicas -> {walked} walk(s), {received} SNMP requests at the agent");
        assert_eq!(walked, 1.0, "one walk for three scrapes{}", fleet.logs());
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "the waiting replicas serve the same poll"
        );
    }

    // A scrape that times out mid-walk releases the device at once (its lock
    // would otherwise hold off every poller for a minute).
    send_signal(agent.pid(), libc::SIGSTOP);
    assert_eq!(
        http_request(&addrs[0], "POST", "/promsnmp/evictCache", &[], b"").status,
        200
    );
    let r = http_request(
        &addrs[0],
        "GET",
        "/snmp?target=dev-00",
        &[("X-Prometheus-Scrape-Timeout-Seconds", "0.5")],
        &[],
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let lock = "promsnmp:{0123456789:0123456789}:lock:dev-00";
    wait_for(
        "the abandoned poll's lock to go",
        Duration::from_secs(2),
        Duration::from_millis(20),
        || (fleet.redis.cmd(&["EXISTS", lock]) == "0").then_some(()),
    );
    send_signal(agent.pid(), libc::SIGCONT);
    let r = http_get(&addrs[1], "/snmp?target=dev-00");
    assert_eq!(r.status, 200, "the next scrape walks it: {}", r.text());
}

/// Metric lines of one scrape, `series -> value`.
fn parse_exposition(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn same_answer_from_every_replica() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(3, 1000, &[]);
    import(&fleet.replicas[0].addr(), &many_devices(agent.port, 3));
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();
    for addr in &addrs {
        wait_for(
            "a cached poll on every replica",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let r = try_http_request(addr, "GET", "/snmp?target=dev-01", &[], &[]).ok()?;
                (r.status == 200).then_some(())
            },
        );
    }
    // Generation of a poll: its sysUpTime (hundredths of a second) differs per poll.
    let mut scrapes: Vec<(String, BTreeMap<String, f64>)> = Vec::new();
    for i in 0..30 {
        let addr = &addrs[i % addrs.len()];
        let r = http_get(addr, "/snmp?target=dev-01");
        assert_eq!(r.status, 200, "{addr}: {}", r.text());
        let body = r.text();
        let series = parse_exposition(&body);
        let uptime = series
            .iter()
            .find(|(k, _)| k.starts_with("sysUpTime"))
            .map(|(_, v)| *v)
            .expect("sysUpTime in the scrape");
        scrapes.push((format!("{uptime}"), series));
        thread::sleep(Duration::from_millis(100));
    }
    let mut generations: BTreeMap<&str, &BTreeMap<String, f64>> = BTreeMap::new();
    for (generation, series) in &scrapes {
        if let Some(first) = generations.get(generation.as_str()) {
            assert_eq!(
                *first, series,
                "two answers for poll generation {generation}"
            );
        } else {
            generations.insert(generation, series);
        }
    }
    assert!(
        generations.len() >= 2,
        "30 scrapes over 3 s should span several 1 s polls: {}",
        generations.len()
    );
    // Across generations (in scrape order): counters and histogram buckets never go down.
    for pair in scrapes.windows(2) {
        let (before, after) = (&pair[0].1, &pair[1].1);
        for (series, value) in before {
            let monotonic = series.starts_with("ifHC")
                || series.starts_with("interface_utilization_bucket")
                || series.starts_with("interface_utilization_count")
                || series.starts_with("interface_utilization_sum");
            if !monotonic {
                continue;
            }
            let now = after
                .get(series)
                .unwrap_or_else(|| panic!("{series} vanished"));
            assert!(now >= value, "{series} went from {value} to {now}");
        }
    }
}

#[test]
fn redis_outage_restart_and_flush() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let mut fleet = Fleet::start(3, 2000, &[]);
    import(&fleet.replicas[0].addr(), &many_devices(agent.port, 4));
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();
    wait_for(
        "the leader to write the file",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (file_epoch(&fleet.inventory_file()) > 0).then_some(()),
    );
    // The import went through replica A while B and C may still have been
    // subscribing; the version check brings it to them within a renew period.
    for addr in &addrs {
        wait_for(
            "the four devices on every replica",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || (targets(addr).as_array().map(Vec::len) == Some(4)).then_some(()),
        );
    }
    let targets_before: Vec<Value> = addrs.iter().map(|a| targets(a)).collect();
    for addr in &addrs {
        wait_for(
            "a poll of every device",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                (0..4)
                    .all(|i| {
                        try_http_request(addr, "GET", &format!("/snmp?target=dev-{i:02}"), &[], &[])
                            .map(|r| r.status == 200)
                            .unwrap_or(false)
                    })
                    .then_some(())
            },
        );
    }

    // Every replica's view of the membership has all three (each owns its
    // share in it): what a replica keeps polling while Redis is down.
    for addr in &addrs {
        wait_for(
            "three members in every replica's view",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || (self_metric(addr, "promsnmp_fleet_members") == 3.0).then_some(()),
        );
    }

    // Redis down for 30 s: every scrape of every replica still answers 200.
    let polls = || polls_total(&addrs);
    let polls_before = polls();
    let per_replica_before: Vec<f64> = addrs
        .iter()
        .map(|a| self_metric_sum(a, "promsnmp_replica_polls_total"))
        .collect();
    fleet.redis.stop();
    let down_at = Instant::now();
    let mut scrapes = 0;
    let mut saw_down = vec![false; addrs.len()];
    while down_at.elapsed() < Duration::from_secs(30) {
        for (i, addr) in addrs.iter().enumerate() {
            let device = format!("dev-{:02}", scrapes % 4);
            let r = http_get(addr, &format!("/snmp?target={device}"));
            assert_eq!(
                r.status,
                200,
                "{addr} {device} with Redis down: {}",
                r.text()
            );
            assert_eq!(targets(addr), targets_before[i], "{addr}: /targets changed");
            scrapes += 1;
            if !saw_down[i] {
                if let Some(h) = health(addr) {
                    if h["components"]["redis"]["status"] == "DOWN" {
                        assert_eq!(h["components"]["livenessState"]["status"], "UP");
                        let live = http_get(addr, "/actuator/health/liveness");
                        assert_eq!(live.status, 200);
                        saw_down[i] = true;
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert!(
        saw_down.iter().all(|d| *d),
        "health showed Redis DOWN on every replica"
    );
    assert!(fleet.leaders().is_empty(), "no leader without Redis");
    // The replicas kept polling their shares of the last membership they
    // saw: 4 devices every 2 s (every replica polling every device would be
    // three times that). The margin covers the rounds at the outage's edges
    // (a round claimed in Redis is claimed again locally) and late rounds
    // or heartbeats on a loaded machine.
    let outage_polls = polls() - polls_before;
    let due = 4.0 * down_at.elapsed().as_secs_f64() / 2.0;
    let per_replica: Vec<f64> = addrs
        .iter()
        .zip(&per_replica_before)
        .map(|(a, before)| self_metric_sum(a, "promsnmp_replica_polls_total") - before)
        .collect();
    println!(
        "{outage_polls} polls ({per_replica:?} per replica), {due:.0} due, by 3 replicas of 4 devices (2 s interval) in a Redis outage"
    );
    assert!(
        (0.6 * due..=1.5 * due).contains(&outage_polls),
        "{outage_polls} polls ({per_replica:?} per replica) with {due:.0} due: each replica polls its share of the last membership it saw"
    );
    for addr in &addrs {
        assert!(self_metric_sum(addr, "promsnmp_redis_errors_total") > 0.0);
        assert_eq!(self_metric(addr, "promsnmp_redis_up"), 0.0);
    }
    println!("{scrapes} scrapes answered 200 during a 30 s Redis outage");

    // Back, empty (no persistence): one leader again, inventory restored from the file.
    fleet.redis.restart();
    fleet.wait_one_leader(Duration::from_secs(10));
    let inventory_key = "promsnmp:{0123456789:0123456789}:inventory";
    wait_for(
        "the inventory back in Redis",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (fleet.redis.cmd(&["HEXISTS", inventory_key, "data"]) == "1").then_some(()),
    );
    let stored = fleet.redis.cmd(&["HGET", inventory_key, "data"]);
    assert!(
        !stored.contains("public") && !stored.contains("dev-00"),
        "the inventory in Redis is encrypted"
    );
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(targets(addr), targets_before[i], "{addr}: /targets changed");
        wait_for(
            "Redis UP in health",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || (health(addr)?["components"]["redis"]["status"] == "UP").then_some(()),
        );
        assert_eq!(self_metric(addr, "promsnmp_redis_up"), 1.0);
    }

    // FLUSHALL while running: restored again, nothing lost.
    assert_eq!(fleet.redis.cmd(&["FLUSHALL"]), "OK");
    wait_for(
        "one leader after FLUSHALL",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            (fleet.redis.cmd(&["HEXISTS", inventory_key, "data"]) == "1"
                && fleet.leaders().len() == 1)
                .then_some(())
        },
    );
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(targets(addr), targets_before[i], "{addr}: /targets changed");
    }
    // And changes work again through any replica.
    let r = http_post_json(
        &addrs[2],
        "/promsnmp/inventory",
        &many_devices(agent.port, 5).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for addr in &addrs {
        wait_for(
            "the fifth device everywhere",
            Duration::from_secs(3),
            Duration::from_millis(50),
            || (targets(addr).as_array().map(Vec::len) == Some(5)).then_some(()),
        );
    }
    let _ = &mut fleet;
}

#[test]
fn inventory_changes_reach_every_replica() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(3, 60_000, &[]);
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();

    import(&addrs[0], &many_devices(agent.port, 2));
    let changed_at = Instant::now();
    for addr in &addrs[1..] {
        wait_for(
            "the change on the other replicas",
            Duration::from_secs(1),
            Duration::from_millis(10),
            || (targets(addr).as_array().map(Vec::len) == Some(2)).then_some(()),
        );
    }
    println!(
        "inventory change visible on B and C after {} ms",
        changed_at.elapsed().as_millis()
    );

    // C misses the event: stopped, and its subscription dropped by Redis.
    let c = &fleet.replicas[2];
    send_signal(c.pid(), libc::SIGSTOP);
    fleet.redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    import(&addrs[1], &many_devices(agent.port, 3));
    thread::sleep(Duration::from_millis(300));
    send_signal(c.pid(), libc::SIGCONT);
    let resumed = Instant::now();
    wait_for(
        "the missed change on C",
        Duration::from_millis(RENEW_MS * 3),
        Duration::from_millis(20),
        || (targets(&addrs[2]).as_array().map(Vec::len) == Some(3)).then_some(()),
    );
    println!(
        "missed change caught on C {} ms after it resumed",
        resumed.elapsed().as_millis()
    );
    // Same versions everywhere.
    let versions: Vec<u64> = addrs
        .iter()
        .map(|a| {
            health(a).unwrap()["components"]["inventory"]["details"]["version"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] == w[1]),
        "versions {versions:?}"
    );
    // A bad import through any replica changes nothing anywhere.
    let r = http_post_json(&addrs[2], "/promsnmp/inventory", r#"{"devices": 3}"#);
    assert_eq!(r.status, 400);
    thread::sleep(Duration::from_millis(200));
    for addr in &addrs {
        assert_eq!(targets(addr).as_array().map(Vec::len), Some(3));
    }
}

fn etag(r: &HttpResponse) -> String {
    r.header("etag")
        .unwrap_or_else(|| panic!("no ETag (status {}): {}", r.status, r.text()))
        .to_string()
}

/// Waits (bounded) until `addr` serves `path` with the ETag `tag`; returns the body.
fn wait_for_tag(addr: &str, path: &str, tag: &str) -> Value {
    wait_for(
        &format!("ETag {tag} on {addr}{path}"),
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let r = http_get(addr, path);
            (r.status == 200 && r.header("etag") == Some(tag)).then(|| r.json())
        },
    )
}

/// The per-device API through any replica: a change through one is read
/// (body and ETag) through the others; an If-Match read on one replica is
/// accepted on another while nothing changed and refused (412) once
/// something did; a tag from before Redis lost the inventory is stale.
#[test]
fn device_api_and_if_match_across_replicas() {
    let _serial = serial();
    let fleet = Fleet::start(3, 600_000, &[]);
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();
    let (a, b, c) = (&addrs[0], &addrs[1], &addrs[2]);
    let dev = "/promsnmp/inventory/devices/dev-00";

    let r = http_post_json(
        a,
        "/promsnmp/inventory",
        &many_devices(free_udp_port(), 2).to_string(),
    );
    assert_eq!(r.status, 200, "import: {}", r.text());
    let imported = etag(&r);
    for addr in &addrs {
        wait_for_tag(addr, dev, &imported);
    }

    // A PATCH through A (conditional on the tag read) is seen through B.
    let r = http_json(
        a,
        "PATCH",
        dev,
        &[("If-Match", &imported)],
        r#"{"sysLocation":"via A"}"#,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), fleet.logs());
    let after_a = etag(&r);
    assert_ne!(after_a, imported);
    assert_eq!(wait_for_tag(b, dev, &after_a)["sysLocation"], "via A");
    // The tag read on A is accepted on B while nothing changed (checked
    // against Redis, whatever B's own copy holds)...
    let r = http_json(
        b,
        "PATCH",
        dev,
        &[("If-Match", &after_a)],
        r#"{"sysContact":"via B"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let after_b = etag(&r);
    // ...and refused on C once something changed: 412, nothing changes.
    let r = http_json(c, "DELETE", dev, &[("If-Match", &after_a)], "");
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["etag"], after_b.as_str(), "{}", r.text());
    let r = http_json(
        c,
        "POST",
        "/promsnmp/inventory",
        &[("If-Match", &imported)],
        r#"{"devices":[]}"#,
    );
    assert_eq!(r.status, 412, "{}", r.text());
    for addr in &addrs {
        let d = wait_for_tag(addr, dev, &after_b);
        assert_eq!(
            (d["sysLocation"].as_str(), d["sysContact"].as_str()),
            (Some("via A"), Some("via B"))
        );
        assert_eq!(etag(&http_get(addr, "/promsnmp/inventory")), after_b);
    }

    // Two clients patching two devices through two replicas at once: both kept.
    let writers: Vec<_> = [(a.clone(), "dev-00"), (c.clone(), "dev-01")]
        .into_iter()
        .map(|(addr, id)| {
            thread::spawn(move || {
                for i in 0..10 {
                    let body = json!({"sysLocation": format!("{id}-{i}")}).to_string();
                    let r = http_json(
                        &addr,
                        "PATCH",
                        &format!("/promsnmp/inventory/devices/{id}"),
                        &[],
                        &body,
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    // Each replica's copy follows Redis' change events: wait for the last
    // writes on A, then every replica serves that version with that tag.
    let last = wait_for(
        "both devices' last values on A",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let r = http_get(a, "/promsnmp/inventory");
            let inv = r.json();
            (inv["devices"][0]["sysLocation"] == "dev-00-9"
                && inv["devices"][1]["sysLocation"] == "dev-01-9")
                .then(|| etag(&r))
        },
    );
    for addr in &addrs {
        wait_for_tag(addr, "/promsnmp/inventory", &last);
    }

    // Redis loses everything; the leader restores the inventory from the
    // file, counting versions anew: the tag from before is stale.
    fleet.redis.cmd(&["FLUSHALL"]);
    let restored = wait_for(
        "the inventory restored into Redis",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let r = try_http_request(a, "GET", "/promsnmp/inventory", &[], &[]).ok()?;
            let tag = r.header("etag")?.to_string();
            (tag != last
                && fleet
                    .redis
                    .cmd(&["KEYS", "*inventory*"])
                    .contains("inventory"))
            .then_some(tag)
        },
    );
    assert!(restored.starts_with("\"v1-"), "{restored}");
    let r = http_json(
        b,
        "PATCH",
        dev,
        &[("If-Match", &last)],
        r#"{"sysLocation":"stale"}"#,
    );
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["etag"], restored.as_str(), "{}", r.text());
}

/// The leader reports an inventory it could not write to the file
/// (`promsnmp_inventory_file_behind`, the PromsnmpInventoryFileNotWritten
/// alert) until a write succeeds.
#[test]
fn a_failing_file_write_is_reported_until_it_succeeds() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(2, 2000, &[]);
    import(&fleet.replicas[0].addr(), &many_devices(agent.port, 1));
    let leader = fleet.wait_one_leader(Duration::from_secs(10));
    let leader_addr = fleet.replicas[leader].addr();
    let file = fleet.inventory_file();
    wait_for(
        "the leader to write the file",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (file_epoch(&file) > 0 && file.is_file()).then_some(()),
    );
    assert_eq!(
        self_metric(&leader_addr, "promsnmp_inventory_file_behind"),
        0.0
    );

    // A directory where the file goes: every replacement of the file fails.
    // The leader may write the file again between the two steps: retry.
    let mut attempts = 0;
    loop {
        let _ = std::fs::remove_file(&file);
        match std::fs::create_dir(&file) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("a directory in the file's place: {e}"),
        }
    }
    let errors_before = self_metric(
        &leader_addr,
        "promsnmp_inventory_file_writes_total{result=\"error\"}",
    );
    // The change reaches Redis, but is not acknowledged: it is not in the file.
    let r = http_post_json(
        &fleet.replicas[1 - leader].addr(),
        "/promsnmp/inventory",
        &many_devices(agent.port, 2).to_string(),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("no leader wrote it"), "{}", r.text());
    wait_for(
        "the leader to report the file behind",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (self_metric(&leader_addr, "promsnmp_inventory_file_behind") == 1.0).then_some(()),
    );
    assert!(
        self_metric(
            &leader_addr,
            "promsnmp_inventory_file_writes_total{result=\"error\"}"
        ) > errors_before
    );
    let follower = fleet.replicas[1 - leader].addr();
    assert_eq!(
        self_metric(&follower, "promsnmp_inventory_file_behind"),
        0.0
    );

    // Fixed: the next check writes it, and the gauge goes back to 0.
    std::fs::remove_dir(&file).expect("remove the directory");
    wait_for(
        "the file written again",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            (file.is_file() && self_metric(&leader_addr, "promsnmp_inventory_file_behind") == 0.0)
                .then_some(())
        },
    );
}

/// One device with several modules (one of them from the reference module
/// file): every replica serves identical series, all of them from one poll
/// per interval — the agent sees one poller's requests.
#[test]
fn several_modules_polled_once_and_served_alike() {
    let _serial = serial();
    const INTERVAL_MS: u64 = 1000;
    let agent = Snmpd::start(&SnmpdConfig::default());
    let reference = reference_modules_dir()
        .join("snmp.yml")
        .display()
        .to_string();
    let fleet = Fleet::start(2, INTERVAL_MS, &[("PROMSNMP_MODULES_FILE", &reference)]);
    let mut inventory = many_devices(agent.port, 1);
    inventory["devices"][0]["modules"] = json!(["system", "if_mib", "hrStorage", "ucd_memory"]);
    import(&fleet.replicas[0].addr(), &inventory);
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();
    for addr in &addrs {
        wait_for(
            "the device's modules on every replica",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let r = try_http_request(addr, "GET", "/snmp?target=dev-00", &[], &[]).ok()?;
                (r.status == 200 && r.text().contains("hrStorageSize{")).then_some(())
            },
        );
    }
    thread::sleep(Duration::from_millis(INTERVAL_MS));
    let sum = |name: &str| -> f64 { addrs.iter().map(|a| self_metric_sum(a, name)).sum() };
    let in_before = snmp_get_u64(&agent.addr(), "public", SNMP_IN_PKTS);
    let (polls_before, sent_before) = (
        sum("promsnmp_replica_polls_total"),
        sum("promsnmp_snmp_requests_total"),
    );
    let started = Instant::now();
    let mut generations: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for i in 0..30 {
        let r = http_get(&addrs[i % addrs.len()], "/snmp?target=dev-00");
        assert_eq!(r.status, 200, "{}", r.text());
        let series = parse_exposition(&r.text());
        for name in [
            "hrStorageUsed{",
            "memTotalReal ",
            "ifOperStatus{",
            "sysDescr{",
        ] {
            assert!(
                series
                    .keys()
                    .any(|k| k.starts_with(name.trim_end_matches(' '))),
                "{name} missing"
            );
        }
        let generation = series
            .iter()
            .find(|(k, _)| k.starts_with("sysUpTime"))
            .map(|(_, v)| v.to_string())
            .expect("sysUpTime");
        match generations.get(&generation) {
            Some(first) => assert_eq!(first, &series, "two answers for one poll"),
            None => {
                generations.insert(generation, series);
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    let in_after = snmp_get_u64(&agent.addr(), "public", SNMP_IN_PKTS);
    let polled = sum("promsnmp_replica_polls_total") - polls_before;
    let sent = sum("promsnmp_snmp_requests_total") - sent_before;
    let received = (in_after - in_before) as f64 - 1.0;
    let rounds = elapsed.as_secs_f64() * 1000.0 / INTERVAL_MS as f64;
    println!(
        "several modules: {polled} polls in {rounds:.1} intervals, {sent} requests sent, agent received {received}, {} distinct polls served",
        generations.len()
    );
    assert!(generations.len() >= 2, "the scrapes spanned several polls");
    assert!(
        polled <= rounds + 1.0,
        "{polled} polls in {rounds:.1} intervals: more than one poller"
    );
    assert!(
        polled >= rounds - 1.5,
        "{polled} polls in {rounds:.1} intervals: polls were missed"
    );
    assert!(
        (received - sent).abs() <= 2.0 + sent * 0.02,
        "agent saw {received}, the fleet sent {sent}"
    );
}

/// Cached polls in Redis carry a format line: an entry in another format (a
/// replica of another version during a rolling upgrade) is a quiet miss; an
/// entry in this format is served as it stands.
#[test]
fn cached_polls_of_another_format_are_a_quiet_miss() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(1, 600_000, &[]);
    import(&fleet.replicas[0].addr(), &many_devices(agent.port, 1));
    fleet.wait_one_leader(Duration::from_secs(10));
    let addr = fleet.replicas[0].addr();
    let key = "promsnmp:{0123456789:0123456789}:cache:dev-00";
    wait_for(
        "a cached poll in Redis",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let r = try_http_request(&addr, "GET", "/snmp?target=dev-00", &[], &[]).ok()?;
            (r.status == 200 && fleet.redis.cmd(&["EXISTS", key]) == "1").then_some(())
        },
    );
    let data = fleet.redis.cmd(&["HGET", key, "data"]);
    let (format, json) = data.split_once('\n').expect("a format line");
    assert_eq!(format, "promsnmp-poll/3");
    let generation: u64 = fleet.redis.cmd(&["HGET", key, "gen"]).parse().unwrap();
    let now_us = || -> String {
        let t = fleet.redis.cmd(&["TIME"]);
        let mut parts = t.lines();
        let (s, us): (u64, u64) = (
            parts.next().unwrap().parse().unwrap(),
            parts.next().unwrap().parse().unwrap(),
        );
        (s * 1_000_000 + us).to_string()
    };
    let put = |generation: u64, data: &str| {
        fleet.redis.cmd(&[
            "HSET",
            key,
            "gen",
            &generation.to_string(),
            "stored_us",
            &now_us(),
            "data",
            data,
        ]);
    };
    // This format, with a value no agent reports: served from Redis.
    let mut poll: Value = serde_json::from_str(json).unwrap();
    let family = poll["modules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|m| m["families"].as_array_mut().unwrap().iter_mut())
        .find(|f| f["name"] == "sysUpTime")
        .expect("sysUpTime in the cached poll");
    family["series"][0][1] = json!(4242424242u64);
    put(generation + 1, &format!("{format}\n{poll}"));
    let polls_before = self_metric_sum(&addr, "promsnmp_replica_polls_total");
    let r = http_get(&addr, "/snmp?target=dev-00");
    assert!(r.text().contains("sysUpTime 4242424242\n"), "{}", r.text());
    assert_eq!(
        self_metric_sum(&addr, "promsnmp_replica_polls_total"),
        polls_before
    );
    // Another format: not read, the device is polled again, nothing logged above debug.
    put(generation + 2, &format!("promsnmp-poll/1\n{poll}"));
    let r = http_get(&addr, "/snmp?target=dev-00");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.text().contains("4242424242"),
        "the foreign entry was not served"
    );
    assert_eq!(
        self_metric_sum(&addr, "promsnmp_replica_polls_total"),
        polls_before + 1.0
    );
    let log = fleet.replicas[0].log();
    assert!(
        !log.contains("cached poll in Redis"),
        "a miss, quietly: {log}"
    );
}

/// A replica started with another PROM_ENCRYPT_KEY cannot read the fleet's
/// inventory: it says so at once (log, health, readiness 503 with the
/// reason, self-metric), leaves the membership so the others poll its share,
/// and never takes the lease.
#[test]
fn a_replica_with_another_key_is_not_ready_and_leaves_the_fleet() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(1, 60_000, &[]);
    fleet.wait_one_leader(Duration::from_secs(10));
    let a = fleet.addrs()[0].clone();
    import(&a, &many_devices(agent.port, 4));

    let url = fleet.redis.url();
    let lease = LEASE_MS.to_string();
    let renew = RENEW_MS.to_string();
    let dir = tempfile::Builder::new()
        .prefix("psnmp-otherkey")
        .tempdir()
        .expect("tempdir");
    let b = Promsnmp::spawn_in(
        dir,
        &[
            ("REDIS_URL", &url),
            ("PROM_ENCRYPT_KEY", "AnotherKey-16byt"),
            ("PROMSNMP_BIND_ADDRESS", "127.0.0.1"),
            ("COLLECTION_INTERVAL", "60000"),
            ("PROMSNMP_LEASE_TTL_MS", &lease),
            ("PROMSNMP_LEASE_RENEW_MS", &renew),
            ("DISCOVERY_CRON", "-"),
        ],
    );
    let addr = b.addr();
    let readiness = wait_for(
        "the other-key replica to report itself not ready",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let r = try_http_request(&addr, "GET", "/actuator/health/readiness", &[], &[]).ok()?;
            (r.status == 503).then_some(r)
        },
    );
    assert!(
        readiness.text().contains("PROM_ENCRYPT_KEY"),
        "{}",
        readiness.text()
    );
    let h = health(&addr).expect("health");
    assert_eq!(h["status"], "DOWN", "{h}");
    assert_eq!(h["components"]["inventory"]["status"], "DOWN", "{h}");
    assert!(
        h["components"]["inventory"]["details"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be decrypted")),
        "{h}"
    );
    assert!(
        b.log().contains("cannot read the fleet's inventory"),
        "{}",
        b.log()
    );
    assert_eq!(
        self_metric(&addr, "promsnmp_fleet_inventory_unreadable"),
        1.0
    );
    // It is not counted as a member, and it stays out for several renewals.
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(RENEW_MS));
        let members = health(&a).unwrap()["components"]["redis"]["details"]["members"].clone();
        assert_eq!(
            members.as_array().map(Vec::len),
            Some(1),
            "members {members}"
        );
        assert_eq!(role(&addr).as_deref(), Some("follower"));
    }
    // Its /snmp does not pretend: the devices are not in what it holds.
    assert_ne!(
        http_get(&addr, "/snmp?target=dev-00").status,
        200,
        "served a device it cannot know"
    );
    // The first replica polls every device, its own share and the rest.
    wait_for(
        "every device polled by the readable replica",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let polled = self_metric_sum(&a, "promsnmp_replica_polls_total");
            (polled >= 4.0).then_some(())
        },
    );
    assert!(
        b.log().matches("cannot read the fleet's inventory").count() <= 2,
        "logged every renewal:\n{}",
        b.log()
    );
}

/// A failed poll is shared like a result: after the replica that polls a
/// device fails, no replica serves the device's older values.
#[test]
fn a_dead_device_is_served_as_down_by_every_replica() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(2, 1_000, &[("CACHE_EXP_MILLIS", "300000")]);
    fleet.wait_one_leader(Duration::from_secs(10));
    let addrs = fleet.addrs();
    let mut inventory = many_devices(agent.port, 1);
    inventory["devices"][0]["agents"][0]["timeout"] = json!(300);
    inventory["devices"][0]["agents"][0]["retries"] = json!(0);
    import(&addrs[0], &inventory);
    for addr in &addrs {
        wait_for(
            "the device served",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || (http_get(addr, "/snmp?target=dev-00").status == 200).then_some(()),
        );
    }
    send_signal(agent.pid(), libc::SIGSTOP);
    let errors = || -> f64 {
        addrs
            .iter()
            .map(|a| self_metric_sum(a, "promsnmp_snmp_poll_errors_total"))
            .sum()
    };
    wait_for(
        "a failed background poll",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (errors() >= 1.0).then_some(()),
    );
    for addr in &addrs {
        let r = http_get(addr, "/snmp?target=dev-00");
        assert_eq!(r.status, 503, "{addr} served the old values: {}", r.text());
    }
    send_signal(agent.pid(), libc::SIGCONT);
    for addr in &addrs {
        wait_for(
            "the device back",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || (http_get(addr, "/snmp?target=dev-00").status == 200).then_some(()),
        );
    }
}

/// `/metrics` reads the shared cache of a large inventory in pipelined
/// batches (300 devices: two round trips), also after Redis lost its scripts.
#[test]
fn metrics_read_the_shared_cache_in_batches() {
    let _serial = serial();
    let agent = Snmpd::start(&SnmpdConfig::default());
    let fleet = Fleet::start(2, 60_000, &[]);
    let mut inventory = many_devices(agent.port, 300);
    for device in inventory["devices"].as_array_mut().unwrap() {
        device["modules"] = json!(["system"]);
    }
    import(&fleet.replicas[0].addr(), &inventory);
    fleet.wait_one_leader(Duration::from_secs(10));
    let devices_in_metrics = |addr: &str| {
        let body = http_get(addr, "/metrics").text();
        body.lines().filter(|l| l.starts_with("sysUpTime{")).count()
    };
    for addr in fleet.addrs() {
        wait_for(
            "every device in /metrics",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || (devices_in_metrics(&addr) == 300).then_some(()),
        );
    }
    // Redis forgets its scripts (a restart without persistence does): the
    // batch loads the script again and nothing is missing.
    assert_eq!(fleet.redis.cmd(&["SCRIPT", "FLUSH"]), "OK");
    for addr in fleet.addrs() {
        assert_eq!(devices_in_metrics(&addr), 300, "{addr} after SCRIPT FLUSH");
        let own = http_get(&addr, "/actuator/prometheus").text();
        assert!(
            !own.lines().any(
                |l| l.starts_with("promsnmp_redis_errors_total{operation=\"cache_get_batch\"}")
            ),
            "{addr}: a batch failed"
        );
    }
    // Redis stops answering: within the scrape's deadline `/metrics` answers
    // with what it read (nothing here), says so in the log, and counts it.
    let mut fleet = fleet;
    fleet.redis.pause();
    let addr = fleet.replicas[1].addr();
    let r = http_request(
        &addr,
        "GET",
        "/metrics",
        &[("X-Prometheus-Scrape-Timeout-Seconds", "0.5")],
        &[],
    );
    fleet.redis.resume();
    assert_eq!(r.status, 200, "{}", r.text());
    let own = http_get(&addr, "/actuator/prometheus").text();
    assert!(own.contains("promsnmp_metrics_incomplete_total 1"), "{own}");
    assert!(fleet.replicas[1]
        .log()
        .contains("served the devices read so far"));
}

#[test]
fn the_fleet_view_names_the_leader_and_each_members_modules() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "- sys_descr: Linux\n  modules: [system]\n").unwrap();
    let rules = rules.display().to_string();
    let mut fleet = Fleet::start(2, 600_000, &[]);
    // A third replica with other module rules: another fingerprint.
    let odd = fleet.start_replica(600_000, &[("PROMSNMP_MODULE_RULES", &rules)]);
    fleet.replicas.push(odd);
    let leader = fleet.wait_one_leader(Duration::from_secs(15));
    let id_of = |addr: &str| {
        health(addr).unwrap()["components"]["redis"]["details"]["replicaId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let leader_id = id_of(&fleet.replicas[leader].addr());
    let odd_id = id_of(&fleet.replicas[2].addr());
    for addr in fleet.addrs() {
        let view = wait_for(
            "every member in the fleet view",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                let view = http_get(&addr, "/promsnmp/status/fleet").json();
                (view["members"].as_array().map(Vec::len) == Some(3)
                    && view["leader"] == leader_id.as_str())
                .then_some(view)
            },
        );
        assert_eq!(view["mode"], "fleet");
        assert_eq!(view["redis"], "UP", "{view}");
        let members = view["members"].as_array().unwrap();
        let fingerprint = |id: &str| {
            members.iter().find(|m| m["id"] == id).unwrap()["fingerprint"]
                .as_str()
                .unwrap()
                .to_string()
        };
        for m in members {
            assert_eq!(m["version"], env!("CARGO_PKG_VERSION"), "{m}");
            let id = m["id"].as_str().unwrap();
            if id == odd_id {
                assert_ne!(fingerprint(id), fingerprint(&leader_id), "{view}");
            } else {
                assert_eq!(fingerprint(id), fingerprint(&leader_id), "{view}");
            }
        }
    }
}
