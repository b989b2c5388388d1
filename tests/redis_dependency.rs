//! Redis as a production dependency: TLS with a client certificate, the
//! README's ACL line as the only rights, failures named by reason, real
//! timeouts, an evicting Redis refused, a lost epoch counter put back. Real
//! `redis-server`s, `openssl` certificates and `snmpd` on 127.0.0.1.
//!
//! The tests run one at a time (`SERIAL`): they count Redis commands and
//! watch timing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::pki::Pki;
use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `promsnmp_redis_errors_total` of one replica by reason.
fn redis_errors(addr: &str) -> BTreeMap<String, f64> {
    let body = http_get(addr, "/actuator/prometheus").text();
    let mut by_reason = BTreeMap::new();
    for (name, labels, value) in parse_text(&body) {
        if name == "promsnmp_redis_errors_total" {
            let reason = labels.get("reason").cloned().unwrap_or_default();
            *by_reason.entry(reason).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    by_reason
}

/// The ACL line the README gives, with `password` in place of its placeholder.
fn documented_acl_line(password: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("ACL SETUSER promsnmp on "))
        .expect("README gives an `ACL SETUSER promsnmp on ...` line");
    line.split_whitespace()
        .map(|w| {
            if w == ">CHANGE-ME" {
                format!(">{password}")
            } else {
                w.to_string()
            }
        })
        .collect()
}

fn acl_setuser(redis: &Redis, words: &[String]) {
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let reply = redis.cmd(&args);
    assert_eq!(reply, "OK", "{args:?}");
}

/// The commands clients sent Redis while `during` ran (script-internal
/// calls excluded: one entry is one command on the wire), as `COMMAND` or
/// `EVALSHA <script>`, read with `MONITOR`.
fn monitored<T>(redis: &Redis, during: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::io::{Read, Write};
    let scripts = promsnmp::fleet::store::Scripts::default();
    let names: BTreeMap<String, &str> = [
        (&scripts.lease_acquire, "lease_acquire"),
        (&scripts.lease_renew, "lease_renew"),
        (&scripts.lease_release, "lease_release"),
        (&scripts.heartbeat, "heartbeat"),
        (&scripts.inventory_update, "inventory_update"),
        (&scripts.inventory_restore, "inventory_restore"),
        (&scripts.poll_claim, "poll_claim"),
        (&scripts.poll_record, "poll_record"),
        (&scripts.poll_fail, "poll_fail"),
        (&scripts.cache_get, "cache_get"),
    ]
    .into_iter()
    .map(|(script, name)| (script.get_hash().to_string(), name))
    .collect();
    let mut stream = std::net::TcpStream::connect(redis.addr()).expect("connect for MONITOR");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    stream.write_all(b"MONITOR\r\n").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 65536];
            let give_up = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < give_up {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            String::from_utf8_lossy(&out).to_string()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let result = during();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let text = reader.join().unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let commands = text
        .lines()
        .filter(|l| l.starts_with('+') && l.contains('[') && !l.contains(" lua]"))
        .filter_map(|l| {
            let args: Vec<&str> = l.split('"').skip(1).step_by(2).collect();
            let command = args.first()?.to_uppercase();
            Some(match command.as_str() {
                "EVALSHA" => format!(
                    "EVALSHA {}",
                    args.get(1)
                        .and_then(|sha| names.get(*sha))
                        .copied()
                        .unwrap_or("?")
                ),
                _ => command,
            })
        })
        .collect();
    (result, commands)
}

fn tally(commands: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for c in commands {
        *counts.entry(c.as_str()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn tls_with_a_client_certificate_and_the_documented_acl_user() {
    let _serial = serial();
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new(certs.path(), "ca");
    let server = pki.issue("ca", "redis", &["IP:127.0.0.1", "DNS:localhost"]);
    let client = pki.issue("ca", "promsnmp", &["DNS:promsnmp"]);
    let ca = pki.ca_cert("ca");
    let tls_port = free_tcp_port().to_string();
    let redis = Redis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        server.cert.to_str().unwrap(),
        "--tls-key-file",
        server.key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca.to_str().unwrap(),
        "--tls-auth-clients",
        "yes",
    ]);
    acl_setuser(&redis, &documented_acl_line("s3cret-pw"));
    // The same rights without INFO: the heartbeat's policy check is refused.
    let mut no_info = documented_acl_line("s3cret-pw");
    no_info[2] = "noinfo".into();
    no_info.retain(|w| w != "+info");
    acl_setuser(&redis, &no_info);

    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let shared = tempfile::tempdir().unwrap();
    let url = format!("rediss://promsnmp:s3cret-pw@127.0.0.1:{tls_port}/");
    let tls_env = [
        ("PROMSNMP_REDIS_CA_FILE", ca.to_str().unwrap()),
        ("PROMSNMP_REDIS_CERT_FILE", client.cert.to_str().unwrap()),
        ("PROMSNMP_REDIS_KEY_FILE", client.key.to_str().unwrap()),
    ];
    let a = replica(&url, shared.path(), &tls_env, true);
    let b = replica(&url, shared.path(), &tls_env, true);
    let addrs = [a.addr(), b.addr()];
    wait_for_fleet_leader(&addrs, &[]);

    // A change through one replica reaches the other and is polled and
    // cached through Redis, over TLS, as the restricted user.
    let r = http_post_json(
        &a.addr(),
        "/promsnmp/inventory",
        &one_device_inventory(&snmpd, "tls-dev"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for(
        "the device on the second replica",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            http_get(&b.addr(), "/promsnmp/inventory")
                .text()
                .contains("tls-dev")
                .then_some(())
        },
    );
    let scrape = http_get(&b.addr(), "/snmp?target=tls-dev");
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    assert!(scrape.text().contains("sysUpTime"), "{}", scrape.text());
    wait_for(
        "a cached poll in Redis",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let keys = redis.cmd(&["KEYS", "promsnmp:*cache:*"]);
            (!keys.trim().is_empty()).then_some(())
        },
    );
    let clients = redis.cmd(&["CLIENT", "LIST"]);
    assert!(clients.contains("user=promsnmp"), "{clients}");
    for addr in &addrs {
        let errors = redis_errors(addr);
        for reason in ["acl", "auth", "tls"] {
            assert!(!errors.contains_key(reason), "{addr}: {errors:?}");
        }
    }

    // Failures are logged at start with their reason, and counted by it.
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: [Case; 3] = [
        (
            "tls",
            url.clone(),
            vec![("PROMSNMP_REDIS_CA_FILE", ca.to_str().unwrap())], // no client certificate
        ),
        (
            "auth",
            format!("rediss://promsnmp:wrong@127.0.0.1:{tls_port}/"),
            tls_env.to_vec(),
        ),
        (
            "acl",
            format!("rediss://noinfo:s3cret-pw@127.0.0.1:{tls_port}/"),
            tls_env.to_vec(),
        ),
    ];
    for (reason, url, env) in cases {
        let refused = replica(&url, shared.path(), &env, false);
        let addr = refused.addr();
        let wanted = format!("reason=\"{reason}\"");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut errors = String::new();
        while Instant::now() < deadline && !errors.contains(&wanted) {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(r) = try_http_request(&addr, "GET", "/actuator/prometheus", &[], &[]) {
                errors = String::from_utf8_lossy(&r.body).to_string();
            }
        }
        assert!(
            errors.contains(&wanted),
            "no error with {wanted}:\n{}\n{}",
            errors
                .lines()
                .filter(|l| l.contains("redis_errors"))
                .collect::<Vec<_>>()
                .join("\n"),
            refused.log()
        );
        let log = refused.log();
        let warned = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains("Redis unreachable"))
            .unwrap_or_else(|| panic!("no WARN line for {reason}:\n{log}"));
        assert!(warned.contains(&wanted), "{warned}\n{errors}");
        let h = health(&addr).expect("health answers");
        assert_eq!(h["components"]["redis"]["status"], "DOWN", "{h}");
        assert!(!log.contains("s3cret-pw"), "the password leaked:\n{log}");
    }
}

/// Sets Redis' maxmemory-policy to an evicting `policy` and waits until
/// every replica of `addrs` has seen it (and none leads).
fn set_eviction_policy(redis: &Redis, addrs: &[String], policy: &str) {
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "maxmemory-policy", policy]),
        "OK"
    );
    wait_for(
        "every replica to see the policy and none to lead",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            addrs
                .iter()
                .all(|a| {
                    health(a).is_some_and(|h| {
                        let details = &h["components"]["redis"]["details"];
                        details["role"] == "follower" && details["maxmemoryPolicy"] == policy
                    })
                })
                .then_some(())
        },
    );
}

#[test]
fn redis_that_may_evict_keys_gets_no_leader_and_no_changes() {
    let _serial = serial();
    let redis = Redis::start();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let shared = tempfile::tempdir().unwrap();
    let url = redis.url();
    let a = replica(&url, shared.path(), &[], true);
    let b = replica(&url, shared.path(), &[], true);
    let addrs = [a.addr(), b.addr()];
    wait_for_fleet_leader(&addrs, &[]);
    let doc = one_device_inventory(&snmpd, "evict-dev");
    assert_eq!(
        http_post_json(&a.addr(), "/promsnmp/inventory", &doc).status,
        200
    );

    set_eviction_policy(&redis, &addrs, "allkeys-lru");
    for addr in &addrs {
        let h = health(addr).unwrap();
        let redis_health = &h["components"]["redis"];
        assert_eq!(redis_health["status"], "DOWN", "{h}");
        assert_eq!(
            redis_health["details"]["maxmemoryPolicy"], "allkeys-lru",
            "{h}"
        );
        assert_eq!(self_metric(addr, "promsnmp_redis_eviction_unsafe"), 1.0);
    }
    // Followers stay followers (3 lease periods), changes are refused, nothing lost.
    let before = http_get(&b.addr(), "/promsnmp/inventory").json();
    let deadline = Instant::now() + Duration::from_secs(9);
    while Instant::now() < deadline {
        for addr in &addrs {
            assert_eq!(role(addr).as_deref(), Some("follower"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = http_post_json(&b.addr(), "/promsnmp/inventory", &inventory_doc(&[]));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("maxmemory-policy"), "{}", r.text());
    assert_eq!(http_get(&a.addr(), "/promsnmp/inventory").json(), before);
    // Scrapes are still served.
    assert_eq!(http_get(&a.addr(), "/snmp?target=evict-dev").status, 200);
    let logged = a.log() + &b.log();
    assert!(logged.contains("maxmemory-policy allkeys-lru"), "{logged}");

    // Back to noeviction: a leader again, changes accepted.
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
        "OK"
    );
    wait_for_fleet_leader(&addrs, &[]);
    wait_for(
        "every replica to see noeviction",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            addrs
                .iter()
                .all(|a| health(a).is_some_and(|h| h["components"]["redis"]["status"] == "UP"))
                .then_some(())
        },
    );
    let r = http_post_json(&b.addr(), "/promsnmp/inventory", &doc);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        self_metric(&a.addr(), "promsnmp_redis_eviction_unsafe"),
        0.0
    );
}

#[test]
fn a_lost_epoch_counter_is_put_back_and_no_epoch_serves_two_leaders() {
    let _serial = serial();
    let redis = Redis::start();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let ReplicaSet {
        replicas,
        addrs,
        shared,
    } = replicas_with_leader(&redis.url(), 3, &[]);
    let doc = one_device_inventory(&snmpd, "epoch-dev");
    assert_eq!(
        http_post_json(&addrs[0], "/promsnmp/inventory", &doc).status,
        200
    );

    // What eviction does to the fencing keys, ten times: the counter and the
    // lease vanish together, while changes keep coming.
    let keys = |name: &str| format!("promsnmp:{{0123456789:0123456789}}:{name}");
    let mut highest_seen = 0u64;
    for round in 0..10 {
        let epoch: u64 = redis.cmd(&["GET", &keys("epoch")]).parse().unwrap_or(0);
        highest_seen = highest_seen.max(epoch);
        redis.cmd(&["DEL", &keys("epoch"), &keys("leader")]);
        let seed = format!(
            r#"{{"potentialTargets":["127.0.0.{}"],"version":"v2c","readCommunity":"public"}}"#,
            round + 10
        );
        let r = http_post_json(
            &addrs[round % 3],
            "/promsnmp/discovery?scheduleNow=false&saveSeed=true",
            &seed,
        );
        assert!(
            r.status == 200 || r.status == 201 || r.status == 202,
            "{} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    wait_for_fleet_leader(&addrs, &[]);
    let epoch_now: u64 = redis.cmd(&["GET", &keys("epoch")]).parse().unwrap();
    assert!(
        epoch_now > highest_seen,
        "the counter went on above {highest_seen}: {epoch_now}"
    );

    let mut holders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for r in &replicas {
        for (epoch, replica) in leaderships(&r.log()) {
            holders.entry(epoch).or_default().push(replica);
        }
    }
    let fleet_log = || {
        replicas
            .iter()
            .flat_map(|r| r.log().lines().map(String::from).collect::<Vec<_>>())
            .filter(|l| l.contains("leader") || l.contains("epoch"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (epoch, who) in &holders {
        assert_eq!(
            who.len(),
            1,
            "epoch {epoch} led by {who:?}\n{}",
            fleet_log()
        );
    }
    assert!(holders.len() >= 3, "leaderships changed: {holders:?}");
    let restored: f64 = addrs
        .iter()
        .map(|a| self_metric_sum(a, "promsnmp_redis_epoch_restored_total"))
        .sum();
    assert!(restored >= 1.0, "a replica put the counter back");
    // The file records the last leadership and its holder.
    let stamp = std::fs::read_to_string(shared.path().join("inventory.json.epoch")).unwrap();
    let fields: Vec<&str> = stamp.split_whitespace().collect();
    let file_epoch: u64 = fields[0].parse().unwrap();
    assert_eq!(
        holders.get(&file_epoch).map(|w| w[0].as_str()),
        Some(fields[3]),
        "{stamp} {holders:?}"
    );
    // Every saved seed is there.
    let seeds = http_get(&addrs[1], "/promsnmp/discovery").json();
    assert_eq!(seeds.as_array().map(Vec::len), Some(10), "{seeds}");
}

#[test]
fn the_timeout_setting_bounds_redis_calls_and_no_ping_precedes_them() {
    let _serial = serial();
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let shared = tempfile::tempdir().unwrap();
    let url = redis.url();
    let env = [("PROMSNMP_REDIS_TIMEOUT_MS", "3000")];
    let a = replica(&url, shared.path(), &env, true);
    let b = replica(&url, shared.path(), &env, true);
    let addrs = [a.addr(), b.addr()];
    wait_for_fleet_leader(&addrs, &[]);
    assert_eq!(
        http_post_json(
            &a.addr(),
            "/promsnmp/inventory",
            &one_device_inventory(&snmpd, "slow-dev")
        )
        .status,
        200
    );
    std::thread::sleep(Duration::from_secs(3));
    let leader_before: Vec<Option<String>> = addrs.iter().map(|a| role(a)).collect();
    let errors_before: Vec<BTreeMap<String, f64>> = addrs.iter().map(|a| redis_errors(a)).collect();
    let polls = || polls_total(&addrs);
    let polls_before = polls();

    // 800 ms of latency on every command for 8 s: more than the client
    // library's own 500 ms default, well inside the 3 s setting.
    let (slow_window, slow_commands) = monitored(&redis, || {
        let start = Instant::now();
        for _ in 0..8 {
            redis.cmd(&["DEBUG", "SLEEP", "0.8"]);
            std::thread::sleep(Duration::from_millis(200));
            for addr in &addrs {
                let h = health(addr).expect("health");
                assert_eq!(h["components"]["redis"]["status"], "UP", "{h}");
            }
        }
        start.elapsed()
    });
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(
            role(addr),
            leader_before[i],
            "leadership held through the latency"
        );
        let errors = redis_errors(addr);
        assert_eq!(
            errors.get("timeout"),
            errors_before[i].get("timeout"),
            "{addr}: {errors:?}"
        );
    }
    let slow_polls = polls() - polls_before;
    assert!(slow_polls >= 2.0, "polling went on: {slow_polls}");

    // Round trips per poll, per scrape of the cached device, per heartbeat:
    // one command each, no PING or UNWATCH before them.
    let polls_before = polls();
    let (_, commands) = monitored(&redis, || std::thread::sleep(Duration::from_secs(6)));
    let window_polls = polls() - polls_before;
    let (_, scrape_commands) = monitored(&redis, || {
        for _ in 0..20 {
            assert_eq!(http_get(&b.addr(), "/snmp?target=slow-dev").status, 200);
        }
    });
    let (slow, idle, scrapes) = (
        tally(&slow_commands),
        tally(&commands),
        tally(&scrape_commands),
    );
    eprintln!("commands on the wire with 2 replicas and 1 device (one line per command):");
    eprintln!("  {slow_window:?} of 800 ms latency ({slow_polls} polls): {slow:?}");
    eprintln!("  6 s idle ({window_polls} polls): {idle:?}");
    eprintln!("  20 scrapes of the cached device: {scrapes:?}");
    for counts in [&slow, &idle, &scrapes] {
        assert!(
            !counts.contains_key("PING") && !counts.contains_key("UNWATCH"),
            "{counts:?}"
        );
    }
    let per_poll = |name: &str| idle.get(name).copied().unwrap_or(0) as f64 / window_polls.max(1.0);
    assert!(window_polls >= 2.0, "{window_polls} polls in 6 s");
    // A background poll: one claim, one history read, one record (the
    // inventory version checks, one HMGET per replica per renew period, aside).
    assert!(per_poll("EVALSHA poll_claim") <= 1.5, "{idle:?}");
    assert!(per_poll("EVALSHA poll_record") <= 1.0, "{idle:?}");
    // A scrape served from the cache: one cache read.
    let cache_reads = scrapes.get("EVALSHA cache_get").copied().unwrap_or(0);
    assert!((20..=22).contains(&cache_reads), "{scrapes:?}");

    // Slower than the setting: the calls fail as timeouts (and are counted
    // so) instead of waiting for Redis.
    let timeouts = |addr: &String| redis_errors(addr).get("timeout").copied().unwrap_or(0.0);
    let before: Vec<f64> = addrs.iter().map(timeouts).collect();
    let slept = Instant::now();
    let reply = redis
        .try_cmd_timeout(&["DEBUG", "SLEEP", "5"], Duration::from_secs(10))
        .expect("DEBUG SLEEP answers");
    assert_eq!(reply, "OK");
    assert!(slept.elapsed() >= Duration::from_secs(4), "Redis slept");
    let after: Vec<f64> = addrs.iter().map(timeouts).collect();
    assert!(
        after.iter().zip(&before).any(|(a, b)| a > b),
        "Redis calls timed out: {before:?} -> {after:?}"
    );
}

/// libfaketime's multithreaded library (Debian `faketime`), to run one
/// replica with its clock ahead.
fn libfaketime() -> std::path::PathBuf {
    require_program("faketime", "faketime");
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketimeMT.so.1"))
        .find(|lib| lib.exists());
    found.expect("libfaketimeMT.so.1 under /usr/lib/*/faketime (Debian package faketime)")
}

/// Every `interface_utilization_count` series of a `/metrics` body.
fn utilization_counts(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| l.starts_with("interface_utilization_count{"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse::<f64>().ok()?))
        })
        .collect()
}

#[test]
fn which_poll_is_newer_is_decided_by_redis_not_by_a_replicas_clock() {
    let _serial = serial();
    let lib = libfaketime();
    let redis = Redis::start();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let shared = tempfile::tempdir().unwrap();
    let url = redis.url();
    let a = replica(&url, shared.path(), &[], true);
    let b = replica(&url, shared.path(), &[], true);
    let ahead = replica(
        &url,
        shared.path(),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME", "+600s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        true,
    );
    // Its log stamps are 600 s ahead: the clock really is.
    let first_line = ahead.log().lines().next().unwrap_or_default().to_string();
    let stamp = first_line.split_whitespace().next().unwrap_or_default();
    let logged = chrono::DateTime::parse_from_rfc3339(stamp).expect("a timestamp first");
    let skew = logged.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (500..=700).contains(&skew),
        "clock ahead by {skew} s: {first_line}"
    );

    let addrs = vec![a.addr(), b.addr(), ahead.addr()];
    wait_for_fleet_leader(&addrs, &[]);
    let port: u16 = snmpd.addr().rsplit(':').next().unwrap().parse().unwrap();
    let devices: Vec<String> = (0..4)
        .map(|i| community_device(&format!("clock-{i}"), port, 1000, 1))
        .collect();
    assert_eq!(
        http_post_json(&a.addr(), "/promsnmp/inventory", &inventory_doc(&devices)).status,
        200
    );
    let devices_in_metrics = |addr: &str| {
        let body = http_get(addr, "/metrics").text();
        let n = body.lines().filter(|l| l.starts_with("sysUpTime{")).count();
        (n, utilization_counts(&body))
    };
    for addr in &addrs {
        wait_for(
            "every device in /metrics",
            Duration::from_secs(20),
            Duration::from_millis(200),
            || (devices_in_metrics(addr).0 == 4).then_some(()),
        );
    }
    // The replica ahead has polled its share (its histories carry its
    // clock); now it dies and the others take its devices over.
    std::thread::sleep(Duration::from_secs(3));
    let mut ahead = ahead;
    ahead.kill();
    let addrs = vec![a.addr(), b.addr()];
    wait_for(
        "two members left",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            addrs
                .iter()
                .all(|a| {
                    health(a).is_some_and(|h| {
                        h["components"]["redis"]["details"]["members"]
                            .as_array()
                            .is_some_and(|m| m.len() == 2)
                    })
                })
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let polls_before = polls_total(&addrs);
    let counts_before = devices_in_metrics(&a.addr()).1;
    let start = Instant::now();
    let mut scrapes = 0;
    while start.elapsed() < Duration::from_secs(20) {
        for addr in &addrs {
            let (n, _) = devices_in_metrics(addr);
            assert_eq!(n, 4, "{addr}: every device in /metrics");
            scrapes += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let window = start.elapsed().as_secs_f64();
    let polls = polls_total(&addrs) - polls_before;
    let per_device_per_interval = polls / 4.0 / (window / 2.0);
    let counts_after = devices_in_metrics(&a.addr()).1;
    eprintln!(
        "after the replica 600 s ahead left: {polls} polls of 4 devices in {window:.1} s ({per_device_per_interval:.2} per device per 2 s interval), {scrapes} scrapes of /metrics"
    );
    assert!(
        per_device_per_interval <= 1.3,
        "each device polled about once per interval: {per_device_per_interval:.2}"
    );
    // Interfaces without a speed are never observed: the others must grow.
    let observed: Vec<(&String, &f64)> = counts_before.iter().filter(|(_, n)| **n > 0.0).collect();
    assert!(observed.len() >= 4, "{counts_before:?}");
    for (series, before) in observed {
        let after = counts_after.get(series).copied().unwrap_or(0.0);
        assert!(
            after > *before,
            "{series} stopped growing: {before} -> {after}"
        );
    }
}

/// Saves seed `n` through `addr` until it is acknowledged (bounded 30 s);
/// returns how many answers asked to retry first.
fn save_seed_until_acknowledged(addr: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut retries = 0;
    loop {
        let r = save_seed(addr, n);
        if (200..300).contains(&r.status) {
            return retries;
        }
        retries += 1;
        assert!(
            Instant::now() < deadline,
            "change {n} never accepted: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded 20 s) until every replica lists exactly the seeds `wanted`.
fn wait_for_seeds_everywhere(
    addrs: &[String],
    wanted: &std::collections::BTreeSet<String>,
    what: &str,
) {
    for addr in addrs {
        wait_for(
            what,
            Duration::from_secs(20),
            Duration::from_millis(200),
            || (seed_targets(addr) == *wanted).then_some(()),
        );
    }
}

#[test]
fn concurrent_changes_are_all_applied_and_an_acknowledged_change_survives_a_flush() {
    let _serial = serial();
    let redis = Redis::start();
    // Long polls apart: this test is about changes.
    let env = [("COLLECTION_INTERVAL", "600000")];
    let fleet = replicas_with_leader(&redis.url(), 3, &env);
    let addrs = fleet.addrs.clone();
    // A sizeable inventory: every change re-encrypts all of it, so
    // concurrent changes overlap.
    let devices: Vec<String> = (0..300)
        .map(|i| community_device(&format!("big-{i}"), 9, 200, 0))
        .collect();
    let r = http_post_json(&addrs[0], "/promsnmp/inventory", &inventory_doc(&devices));
    assert_eq!(r.status, 200, "{}", r.text());

    // 50 changes at once, through all three replicas.
    let started = Instant::now();
    let go = std::sync::Barrier::new(50);
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|n| {
                let addr = addrs[n % 3].clone();
                let go = &go;
                scope.spawn(move || {
                    go.wait();
                    let r = save_seed(&addr, n);
                    (r.status, r.text())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    let refused: Vec<&(u16, String)> = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(s))
        .collect();
    eprintln!(
        "50 concurrent changes through 3 replicas: {} refused, {took:?}",
        refused.len()
    );
    assert!(refused.is_empty(), "refused: {refused:?}");
    let wanted: std::collections::BTreeSet<String> = (0..50).map(seed_target).collect();
    // Each acknowledged change is in Redis and the file; every replica
    // lists it once the change event (or the version check) reached it.
    wait_for_seeds_everywhere(&addrs, &wanted, "every change on every replica");

    // An acknowledged change, then at once a flush: the leader restores what
    // it wrote to the file before the change was acknowledged.
    let mut wanted = wanted;
    let mut refused_after_flush = 0;
    for n in 50..70 {
        let leader = addrs
            .iter()
            .position(|a| role(a).as_deref() == Some("leader"));
        let via = &addrs[(leader.unwrap_or(0) + 1 + n % 2) % 3];
        refused_after_flush += save_seed_until_acknowledged(via, n);
        assert_eq!(redis.cmd(&["FLUSHALL"]), "OK");
        wanted.insert(seed_target(n));
    }
    wait_for_seeds_everywhere(
        &addrs,
        &wanted,
        "every acknowledged change back after the flushes",
    );
    eprintln!("20 changes each followed by FLUSHALL: 0 lost, {refused_after_flush} answers asked to retry");
}

#[test]
fn redis_reloading_an_older_save_loses_no_acknowledged_change() {
    let _serial = serial();
    let mut redis = Redis::start();
    let env = [("COLLECTION_INTERVAL", "600000")];
    let fleet = replicas_with_leader(&redis.url(), 3, &env);
    let addrs = fleet.addrs.clone();
    for n in 0..3 {
        save_seed_until_acknowledged(&addrs[n % 3], n);
    }
    // Redis' snapshot holds changes 0-2; 3-5 come after it.
    assert_eq!(redis.cmd(&["SAVE"]), "OK");
    for n in 3..6 {
        save_seed_until_acknowledged(&addrs[n % 3], n);
    }
    // Redis crashes and comes back from its snapshot: the same inventory,
    // three versions older than the file.
    redis.restart_from_last_save();
    // A change at once, through a replica that may not have noticed yet:
    // it waits for the leader's repair (or is refused, and retried here).
    let mut retries = save_seed_until_acknowledged(&addrs[1], 6);
    let wanted: std::collections::BTreeSet<String> = (0..7).map(seed_target).collect();
    wait_for_seeds_everywhere(
        &addrs,
        &wanted,
        "every acknowledged change on every replica after Redis reloaded an older save",
    );
    // Again from the same save: now an older incarnation than the file's.
    redis.restart_from_last_save();
    retries += save_seed_until_acknowledged(&addrs[2], 7);
    let wanted: std::collections::BTreeSet<String> = (0..8).map(seed_target).collect();
    wait_for_seeds_everywhere(
        &addrs,
        &wanted,
        "every acknowledged change on every replica after Redis reloaded an older incarnation",
    );
    let reloaded_restores: f64 = addrs
        .iter()
        .map(|a| {
            try_self_metric(a, r#"promsnmp_inventory_restores_total{reason="reloaded"}"#)
                .unwrap_or(0.0)
        })
        .sum();
    assert!(
        reloaded_restores >= 2.0,
        "the leader put the inventory back after each reload: {reloaded_restores}"
    );
    // What the file holds is all of it: an emptied Redis gets every change back.
    retries += save_seed_until_acknowledged(&addrs[0], 8);
    assert_eq!(redis.cmd(&["FLUSHALL"]), "OK");
    let wanted: std::collections::BTreeSet<String> = (0..9).map(seed_target).collect();
    wait_for_seeds_everywhere(
        &addrs,
        &wanted,
        "every acknowledged change back after a flush",
    );
    eprintln!("Redis reloaded a save three changes back, twice: 0 of 9 acknowledged changes lost, {retries} answers asked to retry, {reloaded_restores} repairs");
}

#[test]
fn a_sentinel_failover_keeps_one_leader_and_every_acknowledged_change() {
    let _serial = serial();
    let mut primary = Redis::start();
    let primary_port = primary.port().to_string();
    let mut replica_redis = Redis::start_with(&["--replicaof", "127.0.0.1", &primary_port]);
    wait_for(
        "the Redis replica in sync",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            replica_redis
                .cmd(&["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        },
    );
    let sentinel = Sentinel::start("fleet", primary.port());
    // The first Sentinel listed takes connections and never answers (its
    // host is gone): the replicas ask both at once and go on with the other.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/fleet",
        blackhole.local_addr().unwrap().port(),
        sentinel.port()
    );
    let env = [("COLLECTION_INTERVAL", "600000")];
    let ReplicaSet {
        replicas,
        addrs,
        shared: _shared,
    } = replicas_with_leader(&url, 3, &env);
    wait_for(
        "a first change (the replicas know of the Redis replica)",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            (200..300)
                .contains(&save_seed(&addrs[0], 900).status)
                .then_some(())
        },
    );

    // A Redis replica that does not confirm: the change is not acknowledged.
    let not_durable =
        |addr: &str| self_metric_sum(addr, "promsnmp_inventory_changes_not_durable_total");
    let before = not_durable(&addrs[1]);
    replica_redis.pause();
    let r = save_seed(&addrs[1], 901);
    replica_redis.resume();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("no Redis replica confirmed it"),
        "{}",
        r.text()
    );
    assert_eq!(not_durable(&addrs[1]), before + 1.0);

    // Under load (a change at a time through every replica in turn, and
    // the leaders counted every 100 ms), the primary dies.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (leader_samples, changes, failover) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && samples.len() < 2000 {
                let leaders = addrs
                    .iter()
                    .filter(|a| role(a).as_deref() == Some("leader"))
                    .count();
                samples.push(leaders);
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        let writer = scope.spawn(|| {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 500 {
                let r = save_seed(&addrs[n % 3], 1000 + n);
                if (200..300).contains(&r.status) {
                    acknowledged.push(1000 + n);
                } else {
                    refused += 1;
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (acknowledged, refused)
        });
        std::thread::sleep(Duration::from_secs(3));
        // Changes waited for the Redis replica before they were acknowledged.
        let stats = primary.cmd(&["INFO", "commandstats"]);
        assert!(stats.contains("cmdstat_wait:calls="), "{stats}");
        let killed = Instant::now();
        primary.stop();
        wait_for(
            "the Sentinel to promote the replica",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || (sentinel.primary_port() == Some(replica_redis.port())).then_some(()),
        );
        let promoted = killed.elapsed();
        wait_for_fleet_leader(&addrs, &[]);
        let led = killed.elapsed();
        // Changes go through again.
        wait_for(
            "a change acknowledged after the failover",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                (200..300)
                    .contains(&save_seed(&addrs[1], 5000).status)
                    .then_some(())
            },
        );
        let writable = killed.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (
            sampler.join().unwrap(),
            writer.join().unwrap(),
            (promoted, led, writable),
        )
    });
    let (acknowledged, refused) = changes;
    let most_leaders = leader_samples.iter().copied().max().unwrap_or(0);
    eprintln!(
        "Sentinel failover: promoted after {:?}, a leader after {:?}, changes accepted after {:?}; {} samples, at most {most_leaders} leader(s) at once; {} changes acknowledged, {refused} refused",
        failover.0,
        failover.1,
        failover.2,
        leader_samples.len(),
        acknowledged.len()
    );
    assert!(most_leaders <= 1, "two leaders at once: {leader_samples:?}");
    assert!(
        acknowledged.len() >= 10,
        "changes went through: {}",
        acknowledged.len()
    );
    let mut wanted: std::collections::BTreeSet<String> =
        acknowledged.iter().copied().map(seed_target).collect();
    wanted.insert(seed_target(5000));
    wanted.insert(seed_target(900));
    for addr in &addrs {
        wait_for(
            "every acknowledged change on every replica",
            Duration::from_secs(20),
            Duration::from_millis(200),
            || seed_targets(addr).is_superset(&wanted).then_some(()),
        );
    }
    // No epoch led twice.
    let mut holders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for r in &replicas {
        for (epoch, replica) in leaderships(&r.log()) {
            holders.entry(epoch).or_default().push(replica);
        }
    }
    for (epoch, who) in &holders {
        assert_eq!(who.len(), 1, "epoch {epoch} led by {who:?}");
    }
}

#[test]
fn histograms_never_go_back_when_redis_loses_its_data() {
    let _serial = serial();
    let redis = Redis::start();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let shared = tempfile::tempdir().unwrap();
    let url = redis.url();
    let env = [("COLLECTION_INTERVAL", "1000")];
    let a = replica(&url, shared.path(), &env, true);
    let b = replica(&url, shared.path(), &env, true);
    let addrs = vec![a.addr(), b.addr()];
    wait_for_fleet_leader(&addrs, &[]);
    assert_eq!(
        http_post_json(
            &a.addr(),
            "/promsnmp/inventory",
            &one_device_inventory(&snmpd, "floor-dev")
        )
        .status,
        200
    );
    let observed = |addr: &str| -> BTreeMap<String, f64> {
        utilization_counts(&http_get(addr, "/metrics").text())
            .into_iter()
            .filter(|(_, n)| *n > 0.0)
            .collect()
    };
    for addr in &addrs {
        wait_for(
            "observations in the histograms",
            Duration::from_secs(20),
            Duration::from_millis(200),
            || observed(addr).values().any(|n| *n >= 3.0).then_some(()),
        );
    }
    // Every series of every replica: its count never below the highest it served.
    let mut highest: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut check = |phase: &str| {
        for addr in &addrs {
            for (series, count) in observed(addr) {
                let top = highest
                    .entry((addr.clone(), series.clone()))
                    .or_insert(count);
                assert!(
                    count >= *top,
                    "{phase}: {addr} {series} went back from {top} to {count}"
                );
                *top = count;
            }
        }
    };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        check("before the flush");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(redis.cmd(&["FLUSHALL"]), "OK");
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        check("after the flush");
        std::thread::sleep(Duration::from_millis(250));
    }
    let grown = highest.values().filter(|n| **n >= 5.0).count();
    assert!(grown > 0, "the histograms kept growing: {highest:?}");
}

#[test]
fn discovery_retries_a_save_the_store_refused() {
    let _serial = serial();
    let redis = Redis::start();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let shared = tempfile::tempdir().unwrap();
    let a = replica(&redis.url(), shared.path(), &[], true);
    wait_for_fleet_leader(&[a.addr()], &[]);
    // Redis may evict: the save of what discovery finds is refused …
    set_eviction_policy(&redis, &[a.addr()], "allkeys-lru");
    let port: u16 = snmpd.addr().rsplit(':').next().unwrap().parse().unwrap();
    let seed = serde_json::json!({"id": "retry-job", "potentialTargets": ["127.0.0.1"], "port": port,
        "version": "v2c", "agentType": "snmp-community", "readCommunity": "public",
        "timeout": 500, "retries": 0});
    let r = http_post_json(&a.addr(), "/promsnmp/discovery", &seed.to_string());
    assert_eq!(r.status, 202, "{}", r.text());
    // … until Redis is fixed a moment later: the retried save lands.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
        "OK"
    );
    let progress = wait_for(
        "the job to finish",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let r = http_get(&a.addr(), "/promsnmp/discovery/retry-job");
            (r.status == 200)
                .then(|| r.json())
                .filter(|v| v["progress"]["state"] == "finished")
                .map(|v| v["progress"].clone())
        },
    );
    assert_eq!(progress["found"], 1, "{progress}");
    assert_eq!(progress["errors"], serde_json::json!([]), "{progress}");
    let inventory = http_get(&a.addr(), "/promsnmp/inventory").json();
    assert_eq!(
        inventory["devices"].as_array().map(Vec::len),
        Some(1),
        "{inventory}"
    );
    assert!(
        a.log()
            .contains("saving discovered devices failed; retrying"),
        "{}",
        a.log()
    );
}
