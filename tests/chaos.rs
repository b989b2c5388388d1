//! The chaos suite: each fault of the fleet's failure table, three runs
//! each, against three replicas (one of them reaching Redis through a relay
//! the suite can cut), a real `redis-server` and `snmpd`, with fast
//! settings (3 s lease, 1 s renew, 2 s collection interval). During every
//! run a sampler counts leaders every 100 ms and watches the file's stamp,
//! and a writer saves a change every 250 ms through the replicas in turn.
//! It prints one table and fails on any stale write accepted, acknowledged
//! change lost, two leaders at once (where fencing keys are intact), or
//! more than 1.6 polls per device per interval.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;

const RUNS: usize = 3;
const DEVICES: usize = 4;
const INTERVAL_S: f64 = 2.0;

#[derive(Clone, Copy, Debug)]
enum Fault {
    LeaderKilled,
    LeaderPaused,
    RedisFlushed,
    RedisRestartedEmpty,
    RedisBackInTime,
    RedisDown,
    FencingKeysLost,
    ReplicaCutOff,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::LeaderKilled => "leader SIGKILL",
            Fault::LeaderPaused => "leader SIGSTOP 5 s",
            Fault::RedisFlushed => "Redis FLUSHALL",
            Fault::RedisRestartedEmpty => "Redis restarted empty",
            Fault::RedisBackInTime => "Redis restarted from a 2 s old save",
            Fault::RedisDown => "Redis down 5 s",
            Fault::FencingKeysLost => "lease and epoch keys lost x3",
            Fault::ReplicaCutOff => "one replica cut off 8 s",
        }
    }
}

/// What one run measured.
#[derive(Default)]
struct Outcome {
    samples: usize,
    /// Samples with two or more replicas saying they lead.
    overlapping: usize,
    /// The file's stamp went back in epoch, or one epoch came from two holders.
    stale_writes: usize,
    acknowledged: usize,
    lost: usize,
    refused: usize,
    polls_per_device_per_interval: f64,
}

/// (epoch, holder) of the file's stamp.
fn stamp(shared: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(shared.join("inventory.json.epoch")).ok()?;
    let mut fields = text.split_whitespace();
    let epoch = fields.next()?.parse().ok()?;
    let holder = fields.nth(2).unwrap_or_default().to_string();
    Some((epoch, holder))
}

fn run(fault: Fault, snmpd: &Snmpd) -> Outcome {
    let mut redis = Redis::start();
    let proxy = CuttableProxy::start(&redis.addr());
    let shared = tempfile::tempdir().unwrap();
    let env = [("COLLECTION_INTERVAL", "2000")];
    let mut replicas: Vec<Promsnmp> = vec![
        replica(&redis.url(), shared.path(), &env, true),
        replica(&redis.url(), shared.path(), &env, true),
        replica(&proxy.url(), shared.path(), &env, true),
    ];
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr()).collect();
    wait_for_fleet_leader(&addrs, &[]);
    let port: u16 = snmpd.addr().rsplit(':').next().unwrap().parse().unwrap();
    let devices: Vec<String> = (0..DEVICES)
        .map(|i| community_device(&format!("chaos-{i}"), port, 1000, 1))
        .collect();
    let r = http_post_json(&addrs[0], "/promsnmp/inventory", &inventory_doc(&devices));
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_secs(3));

    let stop = AtomicBool::new(false);
    // Last polls_total read from each replica (a killed one keeps its last).
    let polls_seen: Mutex<Vec<f64>> =
        Mutex::new(addrs.iter().map(|a| polls_of(a).unwrap_or(0.0)).collect());
    let polls_before: Vec<f64> = polls_seen.lock().unwrap().clone();
    let started = Instant::now();
    let mut outcome = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let (mut samples, mut overlapping, mut stale) = (0, 0, 0);
            let mut last_stamp: Option<(u64, String)> = None;
            let mut holders: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) && samples < 1200 {
                let leaders = addrs
                    .iter()
                    .filter(|a| role(a).as_deref() == Some("leader"))
                    .count();
                samples += 1;
                if leaders > 1 {
                    overlapping += 1;
                }
                if let Some((epoch, holder)) = stamp(shared.path()) {
                    if last_stamp.as_ref().is_some_and(|(e, _)| epoch < *e) {
                        stale += 1;
                    }
                    holders.entry(epoch).or_default().insert(holder.clone());
                    last_stamp = Some((epoch, holder));
                }
                for (i, addr) in addrs.iter().enumerate() {
                    if let Some(v) = polls_of(addr) {
                        polls_seen.lock().unwrap()[i] = v;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stale += holders.values().filter(|h| h.len() > 1).count();
            (samples, overlapping, stale)
        });
        let writer = scope.spawn(|| {
            let (mut acknowledged, mut refused) = (Vec::new(), 0);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                let addr = &addrs[n % addrs.len()];
                match try_save_seed(addr, n, Duration::from_secs(30)).map(|r| r.status) {
                    Some(status) if (200..300).contains(&status) => acknowledged.push(n),
                    _ => refused += 1,
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            (acknowledged, refused)
        });

        std::thread::sleep(Duration::from_secs(2));
        let leader = addrs
            .iter()
            .position(|a| role(a).as_deref() == Some("leader"));
        match fault {
            Fault::LeaderKilled => replicas[leader.expect("a leader")].kill(),
            Fault::LeaderPaused => {
                let pid = replicas[leader.expect("a leader")].pid();
                send_signal(pid, libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(5));
                send_signal(pid, libc::SIGCONT);
            }
            Fault::RedisFlushed => {
                redis.cmd(&["FLUSHALL"]);
            }
            Fault::RedisRestartedEmpty => redis.restart(),
            Fault::RedisBackInTime => {
                assert_eq!(redis.cmd(&["SAVE"]), "OK");
                std::thread::sleep(Duration::from_secs(2));
                redis.restart_from_last_save();
            }
            Fault::RedisDown => {
                redis.stop();
                std::thread::sleep(Duration::from_secs(5));
                redis.restart();
            }
            Fault::FencingKeysLost => {
                for _ in 0..3 {
                    let key = |name: &str| format!("promsnmp:{{0123456789:0123456789}}:{name}");
                    redis.cmd(&["DEL", &key("epoch"), &key("leader")]);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            Fault::ReplicaCutOff => {
                proxy.set_cut(true);
                std::thread::sleep(Duration::from_secs(8));
                proxy.set_cut(false);
            }
        }
        let live: Vec<String> = match fault {
            Fault::LeaderKilled => addrs
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != leader)
                .map(|(_, a)| a.clone())
                .collect(),
            _ => addrs.clone(),
        };
        wait_for_fleet_leader(&live, &[]);
        if matches!(fault, Fault::RedisBackInTime) {
            // The fault happened: the leader saw the reloaded inventory.
            wait_for(
                "the leader to put the reloaded inventory back",
                Duration::from_secs(10),
                Duration::from_millis(200),
                || {
                    live.iter()
                        .filter_map(|a| {
                            try_self_metric(
                                a,
                                r#"promsnmp_inventory_restores_total{reason="reloaded"}"#,
                            )
                        })
                        .any(|n| n >= 1.0)
                        .then_some(())
                },
            );
        }
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        let (samples, overlapping, stale_writes) = sampler.join().unwrap();
        let (acknowledged, refused) = writer.join().unwrap();
        // Every acknowledged change on every live replica.
        let wanted: BTreeSet<String> = acknowledged.iter().copied().map(seed_target).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut missing = wanted.len();
        while Instant::now() < deadline {
            missing = live
                .iter()
                .map(|a| wanted.difference(&seed_targets(a)).count())
                .max()
                .unwrap_or(0);
            if missing == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Outcome {
            samples,
            overlapping,
            stale_writes,
            acknowledged: acknowledged.len(),
            lost: missing,
            refused,
            polls_per_device_per_interval: 0.0,
        }
    });
    let window = started.elapsed().as_secs_f64();
    let polls: f64 = polls_seen
        .lock()
        .unwrap()
        .iter()
        .zip(&polls_before)
        .map(|(now, before)| now - before)
        .sum();
    outcome.polls_per_device_per_interval = polls / DEVICES as f64 / (window / INTERVAL_S);
    drop(replicas);
    drop(proxy);
    outcome
}

/// `promsnmp_replica_polls_total` of a replica, `None` when it does not answer.
fn polls_of(addr: &str) -> Option<f64> {
    let r = try_http_request(addr, "GET", "/actuator/prometheus", &[], &[]).ok()?;
    let body = String::from_utf8_lossy(&r.body).to_string();
    body.lines()
        .filter(|l| l.starts_with("promsnmp_replica_polls_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[test]
fn chaos_suite() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let faults = [
        Fault::LeaderKilled,
        Fault::LeaderPaused,
        Fault::RedisFlushed,
        Fault::RedisRestartedEmpty,
        Fault::RedisBackInTime,
        Fault::RedisDown,
        Fault::FencingKeysLost,
        Fault::ReplicaCutOff,
    ];
    let mut table = vec![format!(
        "{:<30} {:>4} {:>21} {:>13} {:>16} {:>8} {:>17}",
        "fault",
        "runs",
        "overlapping samples",
        "stale writes",
        "acked lost/acked",
        "refused",
        "polls/dev/interval"
    )];
    let mut failures = Vec::new();
    for fault in faults {
        let outcomes: Vec<Outcome> = (0..RUNS).map(|_| run(fault, &snmpd)).collect();
        let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
        let worst_polls = outcomes
            .iter()
            .map(|o| o.polls_per_device_per_interval)
            .fold(0.0, f64::max);
        table.push(format!(
            "{:<30} {:>4} {:>14}/{:<6} {:>13} {:>9}/{:<6} {:>8} {:>17.2}",
            fault.name(),
            RUNS,
            sum(|o| o.overlapping),
            sum(|o| o.samples),
            sum(|o| o.stale_writes),
            sum(|o| o.lost),
            sum(|o| o.acknowledged),
            sum(|o| o.refused),
            worst_polls
        ));
        if sum(|o| o.stale_writes) > 0 {
            failures.push(format!("{}: a stale write was accepted", fault.name()));
        }
        if sum(|o| o.lost) > 0 {
            failures.push(format!("{}: an acknowledged change was lost", fault.name()));
        }
        if sum(|o| o.acknowledged) == 0 {
            failures.push(format!("{}: no change was acknowledged", fault.name()));
        }
        // Deleting the lease lets another replica take it while the holder
        // still believes it leads until its next renewal (fenced meanwhile).
        if !matches!(fault, Fault::FencingKeysLost) && sum(|o| o.overlapping) > 0 {
            failures.push(format!("{}: two leaders at once", fault.name()));
        }
        if worst_polls > 1.6 {
            failures.push(format!(
                "{}: {worst_polls:.2} polls per device per interval",
                fault.name()
            ));
        }
    }
    let table = table.join("\n");
    eprintln!("{table}");
    assert!(failures.is_empty(), "{failures:#?}\n{table}");
}
