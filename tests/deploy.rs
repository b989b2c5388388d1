//! End to end, the deployment as shipped: Redis, three promsnmp replicas,
//! HAProxy with the repository's `haproxy.cfg`, Prometheus with
//! `compose/prometheus.yml` and the rules in `alerts/`, and three `snmpd`
//! agents, all on 127.0.0.0/8. Only addresses are substituted: the replicas
//! listen on 127.0.0.2-4 at one port, like containers of one service, and a
//! test DNS server on 127.0.53.1:53 answers `promsnmp` with those three
//! addresses as Docker's DNS would, so HAProxy's `server-template` and
//! Prometheus' `dns_sd_configs` find them by name. The replicas get the
//! settings of `compose/.env.example`, and the web configuration of
//! `compose/web/web.yml.example` with its users' hashes filled in, as an
//! operator would; Prometheus logs in with the password file.
//!
//! Everything is read back from Prometheus' own query API. Needs root (port
//! 53, and a private mount namespace for Prometheus' resolv.conf).

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 53, 1);
const REPLICA_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];
const SCRAPER_PASSWORD: &str = "deploy-scrape-pw-1";
const OPERATOR_PASSWORD: &str = "deploy-operator-pw-2";

/// `compose/web/web.yml.example` with real hashes in place of the placeholders.
fn web_yml_from_example() -> String {
    let example = read_repo_file("compose/web/web.yml.example");
    let filled = substitute(
        &example,
        "<bcrypt hash of the password in prometheus.password>",
        &bcrypt::hash(SCRAPER_PASSWORD, 4).unwrap(),
        "compose/web/web.yml.example",
    );
    substitute(
        &filled,
        "operator: <bcrypt hash>",
        &format!("operator: {}", bcrypt::hash(OPERATOR_PASSWORD, 4).unwrap()),
        "compose/web/web.yml.example",
    )
}

/// The `Authorization` header of Prometheus' user.
fn scraper_auth() -> String {
    basic_auth("prometheus", SCRAPER_PASSWORD)
}

/// compose/prometheus.yml's scrape and evaluation interval.
const SCRAPE: Duration = Duration::from_secs(15);

/// `text` with `from` replaced by `to`, asserting `from` occurs.
fn substitute(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(text.contains(from), "{file} no longer contains `{from}`");
    text.replace(from, to)
}

/// The replicas' environment from compose/.env.example: every promsnmp
/// setting with a value, Redis and the file replaced by the test's own.
fn replica_env_from_example() -> Vec<(String, String)> {
    let example = read_repo_file("compose/.env.example");
    let passed_to_replicas = read_repo_file("compose/docker-compose.yml");
    example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .filter(|(k, v)| {
            !v.is_empty()
                && k != "REDIS_URL"
                && passed_to_replicas.contains(&format!("      {k}: ${{{k}"))
        })
        .collect()
}

/// A replica with the deployment's environment, listening on `ip`, in `dir`
/// (a restart) or a fresh one.
fn start_replica_at(
    env: &[(String, String)],
    ip: Ipv4Addr,
    dir: Option<tempfile::TempDir>,
) -> Promsnmp {
    let bind = ip.to_string();
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("PROMSNMP_BIND_ADDRESS", &bind));
    match dir {
        Some(dir) => Promsnmp::start_in(dir, &pairs),
        None => Promsnmp::start(&pairs),
    }
}

struct Deployment {
    dns: DnsServer,
    redis: Redis,
    replicas: Vec<Option<Promsnmp>>,
    dirs: Vec<Option<tempfile::TempDir>>,
    env: Vec<(String, String)>,
    replica_port: u16,
    haproxy: Haproxy,
    haproxy_addr: String,
    stats_addr: String,
    prometheus: Prometheus,
    _shared: tempfile::TempDir,
    _agents: Vec<Snmpd>,
    /// Device targets as Prometheus names them (`instance`).
    devices: Vec<String>,
}

impl Deployment {
    fn start() -> Deployment {
        // SAFETY: getuid(2) has no preconditions.
        assert_eq!(
            unsafe { libc::getuid() },
            0,
            "the deployment test needs root: a DNS server on port 53 and a mount namespace for Prometheus' resolv.conf"
        );
        let dns = DnsServer::start(
            SocketAddr::from((DNS_IP, 53)),
            &[
                ("promsnmp", REPLICA_IPS.to_vec()),
                ("haproxy", vec![Ipv4Addr::LOCALHOST]),
            ],
        );
        let redis = Redis::start();
        let shared = tempfile::Builder::new()
            .prefix("psnmp-deploy")
            .tempdir()
            .expect("tempdir");
        let replica_port = free_tcp_port();
        let mut env = replica_env_from_example();
        assert!(
            env.iter().any(|(k, _)| k == "COLLECTION_INTERVAL"),
            "no settings read from .env.example: {env:?}"
        );
        env.push(("PROM_ENCRYPT_KEY".into(), "deploy-test-key!".into()));
        env.push(("REDIS_URL".into(), redis.url()));
        env.push((
            "PROM_INV_FILE".into(),
            shared
                .path()
                .join("promsnmp-inventory.json")
                .display()
                .to_string(),
        ));
        env.push(("SERVER_PORT".into(), replica_port.to_string()));
        let web_yml = shared.path().join("web.yml");
        std::fs::write(&web_yml, web_yml_from_example()).expect("write web.yml");
        env.push((
            "PROMSNMP_WEB_CONFIG_FILE".into(),
            web_yml.display().to_string(),
        ));

        let mut deployment_replicas = Vec::new();
        let mut dirs = Vec::new();
        for ip in REPLICA_IPS {
            deployment_replicas.push(Some(start_replica_at(&env, ip, None)));
            dirs.push(None);
        }

        let (haproxy_port, stats_port) = (free_tcp_port(), free_tcp_port());
        let haproxy_addr = format!("127.0.0.1:{haproxy_port}");
        let file = "haproxy.cfg";
        let mut cfg = read_repo_file(file);
        cfg = substitute(&cfg, "bind :8080", &format!("bind {haproxy_addr}"), file);
        cfg = substitute(
            &cfg,
            "bind :8404",
            &format!("bind 127.0.0.1:{stats_port}"),
            file,
        );
        cfg = substitute(
            &cfg,
            "promsnmp:8080",
            &format!("promsnmp:{replica_port}"),
            file,
        );
        cfg = substitute(&cfg, "127.0.0.11:53", &format!("{DNS_IP}:53"), file);
        let haproxy = Haproxy::start(&cfg, &haproxy_addr);

        let file = "compose/prometheus.yml";
        let mut prom = read_repo_file(file);
        prom = substitute(&prom, "port: 8080", &format!("port: {replica_port}"), file);
        prom = substitute(&prom, "haproxy:8080", &haproxy_addr, file);
        prom = substitute(&prom, "port: 8404", &format!("port: {stats_port}"), file);
        prom = substitute(&prom, "localhost:9090", "__PROMETHEUS_ADDR__", file);
        prom = substitute(
            &prom,
            "/etc/prometheus/promsnmp.password",
            "../promsnmp.password",
            file,
        );
        let rules = std::fs::read(repo_file("alerts/promsnmp.rules.yml")).expect("rules");
        let prometheus = Prometheus::start_with(&PrometheusSetup {
            config_yaml: &prom,
            files: vec![
                ("alerts/promsnmp.rules.yml".into(), rules),
                (
                    "promsnmp.password".into(),
                    SCRAPER_PASSWORD.as_bytes().to_vec(),
                ),
            ],
            nameserver: Some(DNS_IP),
            ..Default::default()
        });

        // Three agents, one device each, entered through HAProxy (the
        // admin ACL lets 127.0.0.1 through).
        let agents: Vec<Snmpd> = (0..3)
            .map(|_| Snmpd::start(&SnmpdConfig::default()))
            .collect();
        let names: Vec<String> = (0..agents.len()).map(|i| format!("edge-{i}")).collect();
        let inventory = json!({
            "devices": agents.iter().zip(&names).map(|(agent, name)| json!({
                "id": format!("id-{name}"),
                "sysName": name,
                "agents": [{
                    "type": "snmp-community",
                    "id": format!("agent-{name}"),
                    "endpoint": {"address": "127.0.0.1", "port": agent.port},
                    "version": 1,
                    "timeout": 1500,
                    "retries": 1,
                    "readCommunity": "public"
                }]
            })).collect::<Vec<_>>(),
            "discoverySeeds": []
        });
        let r = wait_for(
            "HAProxy to route the import to a replica",
            Duration::from_secs(20),
            Duration::from_millis(200),
            || {
                let r = try_http_request(
                    &haproxy_addr,
                    "POST",
                    "/promsnmp/inventory",
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &basic_auth("operator", OPERATOR_PASSWORD)),
                    ],
                    inventory.to_string().as_bytes(),
                )
                .ok()?;
                (r.status != 503).then_some(r)
            },
        );
        assert_eq!(r.status, 200, "import through HAProxy: {}", r.text());
        // Without credentials, or as the scrape user, through HAProxy: refused.
        let r = http_get(&haproxy_addr, "/targets");
        assert_eq!(r.status, 401, "{}", r.text());
        let r = http_request(
            &haproxy_addr,
            "POST",
            "/promsnmp/inventory",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &scraper_auth()),
            ],
            b"{\"devices\":[]}",
        );
        assert_eq!(r.status, 403, "{}", r.text());

        Deployment {
            dns,
            redis,
            replicas: deployment_replicas,
            dirs,
            env,
            replica_port,
            haproxy,
            haproxy_addr,
            stats_addr: format!("127.0.0.1:{stats_port}"),
            prometheus,
            _shared: shared,
            _agents: agents,
            devices: names,
        }
    }

    fn replica_addr(&self, i: usize) -> String {
        format!("{}:{}", REPLICA_IPS[i], self.replica_port)
    }

    /// A replica beyond the three, on `ip`, with the same environment.
    fn start_extra_replica(&self, ip: Ipv4Addr) -> Promsnmp {
        start_replica_at(&self.env, ip, None)
    }

    /// Waits (bounded 30 s) until exactly `n` servers of HAProxy's scrape
    /// backend are UP, as its stats CSV says.
    fn wait_haproxy_servers_up(&self, n: usize) {
        wait_for(
            &format!("{n} replicas UP in HAProxy"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let r = http_get(&self.stats_addr, "/stats;csv");
                assert_eq!(r.status, 200, "HAProxy stats: {}", r.text());
                let up = r
                    .text()
                    .lines()
                    .map(|l| l.split(',').collect::<Vec<_>>())
                    .filter(|f| f.len() > 17 && f[0] == "promsnmp" && f[1].starts_with("promsnmp"))
                    .filter(|f| f[17] == "UP")
                    .count();
                (up == n).then_some(())
            },
        );
    }

    fn start_replica(&mut self, i: usize) {
        let dir = self.dirs[i].take().expect("a stopped replica's dir");
        self.replicas[i] = Some(start_replica_at(&self.env, REPLICA_IPS[i], Some(dir)));
    }

    fn stop_replica(&mut self, i: usize, sigkill: bool) {
        let mut replica = self.replicas[i].take().expect("a running replica");
        if sigkill {
            replica.kill();
        }
        self.dirs[i] = Some(replica.into_dir());
    }

    fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..REPLICA_IPS.len())
            .filter(|i| self.replicas[*i].is_some())
            .filter(|i| {
                let r = try_http_request(
                    &self.replica_addr(*i),
                    "GET",
                    "/actuator/health",
                    &[("Authorization", &scraper_auth())],
                    &[],
                );
                r.ok()
                    .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                    .map(|h| h["components"]["redis"]["details"]["role"] == "leader")
                    .unwrap_or(false)
            })
            .collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Instant query: `(labels, value)` of each series of a vector result.
    fn vector(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let body = self.prometheus.query(promql);
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("`{promql}`: not a vector: {body}"))
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    /// Value per device target (`instance`) of `promql`.
    fn per_device(&self, promql: &str) -> BTreeMap<String, f64> {
        self.vector(promql)
            .into_iter()
            .map(|(labels, v)| (labels.get("instance").cloned().unwrap_or_default(), v))
            .collect()
    }

    /// Failed scrapes of each device target since `since` (seconds rounded up).
    fn failed_device_scrapes_since(&self, since: Instant) -> BTreeMap<String, f64> {
        let window = since.elapsed().as_secs() + 1;
        self.per_device(&format!(
            "count_over_time(up{{job=\"snmp\"}}[{window}s]) - sum_over_time(up{{job=\"snmp\"}}[{window}s])"
        ))
    }

    /// Asserts that no device target failed more than `max` scrapes since
    /// `since` (each target counted), printing the counts.
    fn assert_failed_scrapes_at_most(&self, since: Instant, max: f64, during: &str) {
        let failed = self.failed_device_scrapes_since(since);
        println!("failed device scrapes {during}: {failed:?}");
        assert_eq!(failed.len(), self.devices.len(), "{failed:?}");
        for (device, n) in &failed {
            assert!(
                *n <= max,
                "{device}: {n} failed scrapes {during}{}",
                self.logs()
            );
        }
    }

    fn wait_all_devices_up(&self, timeout: Duration) {
        let n = self.devices.len();
        wait_for(
            "every device target up in Prometheus",
            timeout,
            Duration::from_secs(1),
            || {
                let up = self.per_device("up{job=\"snmp\"}");
                (up.len() == n && up.values().all(|v| *v == 1.0)).then_some(())
            },
        );
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.replicas.iter().enumerate() {
            if let Some(r) = r {
                out += &format!("\n--- replica {i} ---\n{}", tail(&r.log(), 30));
            }
        }
        out += &format!("\n--- haproxy ---\n{}", tail(&self.haproxy.log(), 30));
        out += &format!("\n--- prometheus ---\n{}", tail(&self.prometheus.log(), 30));
        out += &format!("\n--- redis ---\n{}", tail(&self.redis.log(), 10));
        out
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn fleet_behind_haproxy_and_prometheus() {
    let run_started = Instant::now();
    let mut d = Deployment::start();

    // 1. Everything found by name and scraped. The device targets are what
    // /targets hands out (through HAProxy).
    // Every replica has the import within one version check (5 s).
    let n = d.devices.len();
    let served = wait_for(
        "/targets through HAProxy to list every device",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let r = try_http_request(
                &d.haproxy_addr,
                "GET",
                "/targets",
                &[("Authorization", &scraper_auth())],
                &[],
            )
            .ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            (r.status == 200 && v.as_array().map(Vec::len) == Some(n)).then_some(v)
        },
    );
    let groups = served.as_array().expect("target groups");
    d.devices = groups
        .iter()
        .map(|g| g["targets"][0].as_str().expect("a target").to_string())
        .collect();
    wait_for(
        "Prometheus to find the three replicas by DNS and scrape them",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            let up = d.vector("up{job=\"promsnmp\"} == 1");
            (up.len() == 3).then_some(())
        },
    );
    d.wait_all_devices_up(Duration::from_secs(90));
    let targets = d.per_device("up{job=\"snmp\"}");
    for device in &d.devices {
        assert!(
            targets.contains_key(device),
            "{device} not a target: {targets:?}"
        );
    }
    let interfaces = d.per_device("count by (instance) (ifHCInOctets{job=\"snmp\"})");
    for device in &d.devices {
        assert!(
            interfaces.get(device).copied().unwrap_or(0.0) >= 1.0,
            "no interface series of {device}"
        );
    }
    // Native histogram: histogram_count() answers, and no classic buckets
    // were stored.
    let histograms =
        d.per_device("count by (instance) (histogram_count(interface_utilization{job=\"snmp\"}))");
    for device in &d.devices {
        assert!(
            histograms.contains_key(device),
            "no native histogram for {device}: {histograms:?}"
        );
    }
    assert!(
        d.vector("interface_utilization_bucket").is_empty(),
        "classic buckets stored"
    );
    println!(
        "all {} device targets up, native histograms present, after {:.0?}",
        d.devices.len(),
        run_started.elapsed()
    );

    // 2. SIGKILL the leader: another leads; the devices stay up.
    let leader = wait_for(
        "one leader",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || d.leader(),
    );
    let epoch_before = d.vector("max(promsnmp_leader_epoch{job=\"promsnmp\"})")[0].1;
    let killed_at = Instant::now();
    d.stop_replica(leader, true);
    let new_leader = wait_for(
        "a new leader after SIGKILL",
        Duration::from_secs(40),
        Duration::from_millis(50),
        || d.leader(),
    );
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    println!("SIGKILL of leader {leader}: replica {new_leader} leads after {failover:.2?}");
    // Four scrapes of every device after the kill.
    thread::sleep(SCRAPE * 4);
    d.assert_failed_scrapes_at_most(killed_at, 1.0, "after the leader was killed");
    wait_for(
        "Prometheus to see the new leader's epoch",
        Duration::from_secs(40),
        Duration::from_secs(1),
        || {
            let leaders = d.vector("promsnmp_leader{job=\"promsnmp\"} == 1");
            let epoch = d.vector("max(promsnmp_leader_epoch{job=\"promsnmp\"})");
            (leaders.len() == 1
                && leaders[0].0.get("instance") == Some(&d.replica_addr(new_leader))
                && epoch.first().map(|e| e.1 > epoch_before).unwrap_or(false))
            .then_some(())
        },
    );
    d.start_replica(leader);

    // 3. Rolling restart, one replica at a time, each back and healthy in
    // HAProxy before the next (as an orchestrator's rolling update does).
    thread::sleep(SCRAPE);
    let rolling_at = Instant::now();
    for i in 0..REPLICA_IPS.len() {
        let stopped = Instant::now();
        d.stop_replica(i, false);
        d.start_replica(i);
        let back = stopped.elapsed();
        // HAProxy marks it up after two good checks (inter 2s, rise 2).
        thread::sleep(Duration::from_secs(5));
        println!("rolling restart: replica {i} stopped and serving again after {back:.2?}");
    }
    let rolling = rolling_at.elapsed();
    thread::sleep(SCRAPE * 2);
    println!("rolling restart took {rolling:.1?}");
    d.assert_failed_scrapes_at_most(rolling_at, 1.0, "in the rolling restart");
    wait_for(
        "one leader after the rolling restart",
        Duration::from_secs(40),
        Duration::from_millis(100),
        || d.leader(),
    );

    // Counters never went back over the whole run, whichever replica answered.
    let window = run_started.elapsed().as_secs() + 1;
    let mut counters = 0;
    for counter in [
        "ifHCInOctets",
        "ifHCOutOctets",
        "ifHCInUcastPkts",
        "ifHCOutUcastPkts",
        "ifHCInMulticastPkts",
        "ifHCOutMulticastPkts",
        "ifHCInBroadcastPkts",
        "ifHCOutBroadcastPkts",
    ] {
        let resets = d.vector(&format!("resets({counter}{{job=\"snmp\"}}[{window}s]) > 0"));
        assert!(
            resets.is_empty(),
            "{counter} reset during the run: {resets:?}"
        );
        counters += d.vector(&format!("{counter}{{job=\"snmp\"}}")).len();
    }
    assert!(
        counters >= 8 * d.devices.len(),
        "{counters} interface counter series"
    );
    println!("resets() over {window} s: 0 for each of {counters} interface counter series");

    // Scaling needs no edit: a fourth replica appears in DNS, HAProxy and
    // Prometheus pick it up; it leaves DNS and both let it go.
    let scaled_at = Instant::now();
    let extra_ip = Ipv4Addr::new(127, 0, 0, 5);
    let mut extra = d.start_extra_replica(extra_ip);
    let mut four = REPLICA_IPS.to_vec();
    four.push(extra_ip);
    d.dns.set("promsnmp", four);
    let extra_addr = format!("{extra_ip}:{}", d.replica_port);
    d.wait_haproxy_servers_up(4);
    wait_for(
        "Prometheus to scrape the fourth replica",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            let up = d.vector("up{job=\"promsnmp\"} == 1");
            (up.len() == 4
                && up
                    .iter()
                    .any(|(l, _)| l.get("instance") == Some(&extra_addr)))
            .then_some(())
        },
    );
    println!(
        "scaled to four replicas: in HAProxy and Prometheus after {:.0?}",
        scaled_at.elapsed()
    );
    d.dns.set("promsnmp", REPLICA_IPS.to_vec());
    d.wait_haproxy_servers_up(3);
    let terminated = extra.terminate();
    assert!(
        terminated.success(),
        "the fourth replica stopped with {terminated}"
    );
    wait_for(
        "Prometheus to drop the fourth replica's target",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            let targets = d.prometheus.targets();
            let listed = targets["data"]["activeTargets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .any(|t| t["labels"]["instance"] == extra_addr.as_str())
                })
                .unwrap_or(true);
            (!listed).then_some(())
        },
    );
    println!("scaled back to three after {:.0?}", scaled_at.elapsed());
    d.assert_failed_scrapes_at_most(scaled_at, 0.0, "while scaling out and in");

    // Through the failover, the restarts and the scaling no alert about the
    // fleet as a whole or about devices fired (a killed replica may have
    // raised PromsnmpReplicaDown: it was down for over a minute).
    let window = run_started.elapsed().as_secs() + 1;
    let fired = d.vector(&format!(
        "max_over_time(ALERTS{{alertstate=\"firing\"}}[{window}s])"
    ));
    let fired: Vec<&str> = fired
        .iter()
        .filter_map(|(labels, _)| labels.get("alertname").map(String::as_str))
        .collect();
    println!("alerts fired so far: {fired:?}");
    for quiet in [
        "PromsnmpNoLeader",
        "PromsnmpAllReplicasDown",
        "PromsnmpDeviceScrapesFailing",
        "PromsnmpLeadershipFlapping",
        "PromsnmpRedisUnreachable",
        "PromsnmpInventoryFileNotWritten",
    ] {
        assert!(!fired.contains(&quiet), "{quiet} fired: {fired:?}");
    }

    // 4. Every dashboard query runs against this Prometheus, and the core
    // panels have data.
    let dashboard: Value =
        serde_json::from_str(&read_repo_file("compose/grafana/dashboards/promsnmp.json"))
            .expect("json");
    let queries = dashboard_queries(&dashboard);
    let mut empty = Vec::new();
    for q in &queries {
        let result = d.prometheus.query(&q.expr); // asserts status success
        if result["data"]["result"]
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true)
        {
            empty.push(format!("{}: {}", q.panel, q.expr));
        }
    }
    println!(
        "dashboard: {} queries run, {} without data: {empty:#?}",
        queries.len(),
        empty.len()
    );
    for must_have_data in [
        "ifHCInOctets",
        "ifInErrors",
        "promsnmp_modules_info",
        "interface_utilization",
        "promsnmp_leader{",
        "promsnmp_fleet_members",
        "promsnmp_replica_polls_total",
        "promsnmp_redis_up",
        "cache_gets_total",
    ] {
        let uses: Vec<&PanelQuery> = queries
            .iter()
            .filter(|q| q.expr.contains(must_have_data))
            .collect();
        assert!(!uses.is_empty(), "no dashboard query uses {must_have_data}");
        for q in uses {
            assert!(
                !empty.iter().any(|e| e.ends_with(&q.expr)),
                "dashboard panel `{}` shows no data: {}",
                q.panel,
                q.expr
            );
        }
    }

    // 5. All replicas stopped: PromsnmpAllReplicasDown fires, and resolves
    // once they are back.
    let stopped_at = Instant::now();
    for i in 0..REPLICA_IPS.len() {
        d.stop_replica(i, false);
    }
    let firing = "ALERTS{alertname=\"PromsnmpAllReplicasDown\",alertstate=\"firing\"}";
    wait_for(
        "PromsnmpAllReplicasDown to fire",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || (!d.vector(firing).is_empty()).then_some(()),
    );
    let fired_after = stopped_at.elapsed();
    let started_at = Instant::now();
    for i in 0..REPLICA_IPS.len() {
        d.start_replica(i);
    }
    wait_for(
        "PromsnmpAllReplicasDown to resolve",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || {
            d.vector("ALERTS{alertname=\"PromsnmpAllReplicasDown\"}")
                .is_empty()
                .then_some(())
        },
    );
    println!(
        "all replicas stopped: PromsnmpAllReplicasDown firing after {fired_after:.0?}, resolved {:.0?} after they were back",
        started_at.elapsed()
    );
    println!("whole run: {:.0?}", run_started.elapsed());
}
