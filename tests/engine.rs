//! The shipped deployment on a real Docker engine: `compose/docker-compose.yml`
//! with `docker-compose`, and `compose/docker-stack.yml` on a single-node
//! Swarm, with images built locally (see `common/images.rs`): the promsnmp
//! image from the repository's Dockerfile, stand-ins of Debian's packages
//! for Redis, HAProxy, Prometheus and the SNMP agents. Grafana has no Debian
//! package: every other service is started by name.
//!
//! The shipped files run unchanged from an operator's checkout (a copy of
//! `compose/`, `haproxy.cfg` and `alerts/` in a temporary directory), with
//! `.env` made from `.env.example` and the web configuration from
//! `web/web.yml.example` as the README tells. Everything is read back from
//! Prometheus' API, HAProxy's stats, the replicas' health and Docker itself.
//!
//! Needs root and Debian's docker.io, docker-compose, debootstrap and
//! iptables; reaches only the Debian mirror (debootstrap) and the engine's
//! own containers.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::engine::Engine;
use common::images::Images;
use common::*;
use serde_json::{json, Value};

const ENCRYPT_KEY: &str = "engine-test-key!";
const SCRAPER_PASSWORD: &str = "engine-scrape-pw-1";
const OPERATOR_PASSWORD: &str = "engine-operator-pw-2";
/// compose/prometheus.yml's scrape interval.
const SCRAPE: Duration = Duration::from_secs(15);
/// SNMP agents (containers named agent-0…), one device each.
const AGENTS: usize = 3;

fn scraper_auth() -> String {
    basic_auth("prometheus", SCRAPER_PASSWORD)
}

fn operator_auth() -> String {
    basic_auth("operator", OPERATOR_PASSWORD)
}

/// Copies `from` (file or directory) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).expect("mkdir");
        for e in fs::read_dir(from).expect("read_dir").flatten() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// An operator's checkout: the deployment files as shipped, `.env` from
/// `.env.example` with the key, the users, the stand-in images and
/// `settings` (each must be a line of the example), the web configuration
/// filled in.
fn operator_checkout(dir: &Path, images: &Images, settings: &[(&str, String)]) -> PathBuf {
    for part in ["compose", "haproxy.cfg", "alerts"] {
        copy_tree(&repo_file(part), &dir.join(part));
    }
    let compose = dir.join("compose");
    let example = read_repo_file("compose/.env.example");
    let mut env: Vec<String> = example.lines().map(str::to_string).collect();
    let common = [
        ("PROM_ENCRYPT_KEY", ENCRYPT_KEY.to_string()),
        ("GRAFANA_ADMIN_PASSWORD", "not-started-here".into()),
        (
            "PROMSNMP_WEB_CONFIG_FILE",
            "/etc/promsnmp/web/web.yml".into(),
        ),
        (
            "PROMSNMP_PROMETHEUS_PASSWORD_FILE",
            "./web/prometheus.password".into(),
        ),
        ("REDIS_IMAGE", images.redis.clone()),
        ("HAPROXY_IMAGE", images.haproxy.clone()),
        ("PROMETHEUS_IMAGE", images.prometheus.clone()),
    ];
    for (key, value) in common.iter().chain(settings) {
        let line = env
            .iter_mut()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("compose/.env.example has no {key}="));
        *line = format!("{key}={value}");
    }
    fs::write(compose.join(".env"), env.join("\n") + "\n").expect("write .env");
    fs::write(
        compose.join("web/web.yml"),
        web_yml_from_example(SCRAPER_PASSWORD, OPERATOR_PASSWORD),
    )
    .expect("write web.yml");
    fs::write(compose.join("web/prometheus.password"), SCRAPER_PASSWORD).expect("password");
    compose
}

/// Container id → IPv4 address on `network`, as `docker network inspect`
/// lists them; `None` while Docker cannot say (the network being made).
fn bridge_addresses(engine: &Engine, network: &str) -> Option<BTreeMap<String, String>> {
    let o = engine
        .try_docker(&["network", "inspect", "-f", "{{json .Containers}}", network])
        .ok()
        .filter(|o| o.status.success())?;
    let members: BTreeMap<String, Value> = serde_json::from_str(&o.stdout).ok()?;
    Some(
        members
            .into_iter()
            .filter_map(|(id, m)| {
                let ip = m["IPv4Address"].as_str()?.split('/').next()?.to_string();
                Some((id, ip))
            })
            .collect(),
    )
}

/// The promsnmp inventory keys in the Redis of `container`, once there are
/// any.
fn inventory_keys(engine: &Engine, container: &str) -> Option<String> {
    let o = engine
        .try_docker(&[
            "exec",
            container,
            "redis-cli",
            "--scan",
            "--pattern",
            "promsnmp:*inventory*",
        ])
        .ok()?;
    (o.status.success() && !o.stdout.trim().is_empty()).then_some(o.stdout)
}

/// Lease plus renew period from the checkout's `.env`: the bound on a
/// leader failover.
fn lease_and_renew(compose_dir: &Path) -> Duration {
    let env = fs::read_to_string(compose_dir.join(".env")).expect(".env");
    let setting = |key: &str| -> u64 {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in .env"))
    };
    Duration::from_millis(setting("PROMSNMP_LEASE_TTL_MS") + setting("PROMSNMP_LEASE_RENEW_MS"))
}

/// The inventory of the agents' devices, addressed by container name.
fn agents_inventory() -> Value {
    json!({
        "devices": (0..AGENTS).map(|i| json!({
            "id": format!("id-agent-{i}"),
            "sysName": format!("agent-{i}"),
            "agents": [{
                "type": "snmp-community",
                "id": format!("snmp-agent-{i}"),
                "endpoint": {"address": format!("agent-{i}"), "port": 161},
                "version": 1,
                "timeout": 1500,
                "retries": 1,
                "readCommunity": "public"
            }]
        })).collect::<Vec<_>>(),
        "discoverySeeds": []
    })
}

/// Device ids of an inventory export, sorted.
fn device_ids(inventory: &Value) -> Vec<String> {
    let mut ids: Vec<String> = inventory["devices"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|d| d["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// What both runs (Compose and Swarm) read back: the published ports of
/// HAProxy, its stats page and Prometheus, and the replicas' containers.
struct Fleet<'a> {
    engine: &'a Engine,
    haproxy: String,
    stats: String,
    prometheus: String,
    /// `docker ps` filter selecting the replicas' containers.
    replica_filter: String,
    /// The network the agents join.
    network: String,
    /// The bridge on which this host reaches the containers: the Compose
    /// network itself; in Swarm, docker_gwbridge (overlays are not routed
    /// to the host).
    host_bridge: String,
    swarm: bool,
}

impl Fleet<'_> {
    /// Running replica containers: (id, IP address the host reaches).
    /// (Empty while Docker cannot say, e.g. the network is being made.)
    fn replicas(&self) -> Vec<(String, String)> {
        let ids = self
            .engine
            .try_docker(&["ps", "-q", "--no-trunc", "--filter", &self.replica_filter])
            .ok()
            .filter(|o| o.status.success());
        let (Some(ids), Some(mut addresses)) =
            (ids, bridge_addresses(self.engine, &self.host_bridge))
        else {
            return Vec::new();
        };
        ids.stdout
            .split_whitespace()
            .filter_map(|id| Some((id.to_string(), addresses.remove(id)?)))
            .collect()
    }

    fn health_status(&self, id: &str) -> String {
        self.engine
            .try_docker(&["inspect", "-f", "{{.State.Health.Status}}", id])
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_default()
    }

    /// Waits until `n` replicas run, each healthy by its HEALTHCHECK and UP
    /// in HAProxy.
    fn wait_replicas_healthy(&self, n: usize, timeout: Duration) {
        wait_for(
            &format!("{n} replicas healthy and UP in HAProxy"),
            timeout,
            Duration::from_millis(500),
            || {
                let replicas = self.replicas();
                (replicas.len() == n
                    && replicas
                        .iter()
                        .all(|(id, _)| self.health_status(id) == "healthy")
                    && haproxy_servers_up(&self.stats, "promsnmp") == n)
                    .then_some(())
            },
        );
    }

    /// The replica that leads (by its health's role), if exactly one does.
    fn leader(&self) -> Option<String> {
        let leaders: Vec<String> = self
            .replicas()
            .into_iter()
            .filter(|(_, ip)| {
                try_http_request(
                    &format!("{ip}:8080"),
                    "GET",
                    "/actuator/health",
                    &[("Authorization", &scraper_auth())],
                    &[],
                )
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .map(|h| h["components"]["redis"]["details"]["role"] == "leader")
                .unwrap_or(false)
            })
            .map(|(id, _)| id)
            .collect();
        match leaders.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Waits until every device target was scraped successfully after this
    /// call (an older sample may predate a restart of Prometheus itself).
    fn wait_devices_up(&self, timeout: Duration) {
        let called_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        wait_for(
            "every device target up in Prometheus",
            timeout,
            Duration::from_secs(1),
            || {
                let up_at = try_prometheus_per_instance(
                    &self.prometheus,
                    "timestamp(up{job=\"snmp\"} == 1)",
                )?;
                (up_at.len() == AGENTS && up_at.values().all(|t| *t > called_at)).then_some(())
            },
        );
    }

    fn wait_promsnmp_targets_up(&self, n: usize, timeout: Duration) {
        wait_for(
            &format!("Prometheus to scrape {n} replicas"),
            timeout,
            Duration::from_secs(1),
            || {
                let targets =
                    try_prometheus_per_instance(&self.prometheus, "up{job=\"promsnmp\"}")?;
                (targets.len() == n && targets.values().all(|v| *v == 1.0)).then_some(())
            },
        );
    }

    /// Asserts no device target failed more than `max` scrapes since `since`.
    fn assert_failed_scrapes_at_most(&self, since: Instant, max: f64, during: &str) {
        let failed =
            prometheus_failed_scrapes(&self.prometheus, "snmp", since.elapsed().as_secs() + 1);
        println!("failed device scrapes {during}: {failed:?}");
        assert_eq!(failed.len(), AGENTS, "{failed:?}");
        for (device, n) in &failed {
            assert!(*n <= max, "{device}: {n} failed scrapes {during}");
        }
    }

    /// Starts the SNMP agents on the fleet's network: containers, or in
    /// Swarm services (a stack's overlay network is not attachable).
    fn start_agents(&self, image: &str) {
        for i in 0..AGENTS {
            let name = format!("agent-{i}");
            if self.swarm {
                self.engine.docker(&[
                    "service",
                    "create",
                    "--detach",
                    "--no-resolve-image",
                    "--name",
                    &name,
                    "--network",
                    &self.network,
                    "--endpoint-mode",
                    "dnsrr",
                    image,
                ]);
            } else {
                self.engine.docker(&[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--network",
                    &self.network,
                    "--network-alias",
                    &name,
                    image,
                ]);
            }
        }
    }

    /// Imports the agents' devices through HAProxy as the operator, after
    /// checking that no credentials and the scrape user are refused.
    fn import_devices(&self) {
        let body = agents_inventory().to_string();
        let r = wait_for(
            "HAProxy to route the import to a replica",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let r = try_http_request(
                    &self.haproxy,
                    "POST",
                    "/promsnmp/inventory",
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &operator_auth()),
                    ],
                    body.as_bytes(),
                )
                .ok()?;
                (r.status != 503).then_some(r)
            },
        );
        assert_eq!(r.status, 200, "import through HAProxy: {}", r.text());
        assert_eq!(http_get(&self.haproxy, "/targets").status, 401);
        let r = http_request(
            &self.haproxy,
            "POST",
            "/promsnmp/inventory",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &scraper_auth()),
            ],
            b"{\"devices\":[]}",
        );
        assert_eq!(r.status, 403, "{}", r.text());
    }

    /// The inventory as the operator exports it through HAProxy.
    fn inventory(&self) -> Option<Value> {
        let r = try_http_request(
            &self.haproxy,
            "GET",
            "/promsnmp/inventory",
            &[("Authorization", &operator_auth())],
            &[],
        )
        .ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// SIGKILLs the leader's container; returns it and how long until
    /// another replica led. Asserts at most one failed scrape per device.
    fn kill_leader(&self, lease: Duration) -> (String, Duration) {
        let leader = wait_for(
            "one leader",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || self.leader(),
        );
        let killed_at = Instant::now();
        self.engine.docker(&["kill", &leader]);
        let new_leader = wait_for(
            "a new leader after docker kill",
            lease + Duration::from_secs(30),
            Duration::from_millis(100),
            || self.leader(),
        );
        let failover = killed_at.elapsed();
        assert_ne!(new_leader, leader);
        thread::sleep(SCRAPE * 4);
        self.assert_failed_scrapes_at_most(killed_at, 1.0, "after the leader was killed");
        (leader, failover)
    }
}

/// Takes the Compose project and its agents down when the Compose run ends,
/// also when it fails: the Swarm run gets the engine (and both cores) to
/// itself.
struct ComposeDown<'a> {
    engine: &'a Engine,
    dir: PathBuf,
}

impl Drop for ComposeDown<'_> {
    fn drop(&mut self) {
        let agents: Vec<String> = (0..AGENTS).map(|i| format!("agent-{i}")).collect();
        let mut rm = vec!["rm", "-f"];
        rm.extend(agents.iter().map(String::as_str));
        let _ = self.engine.try_docker(&rm);
        let down = run_bounded(
            self.engine.compose_command().current_dir(&self.dir).args([
                "down",
                "-v",
                "--remove-orphans",
                "-t",
                "10",
            ]),
            Duration::from_secs(180),
        );
        if !matches!(&down, Ok(o) if o.status.success()) {
            eprintln!(
                "warning: docker-compose down failed: {:?}",
                down.map(|o| o.stderr)
            );
        }
    }
}

/// Runs `f`, turning a panic into an error naming `phase`, so one failed
/// phase does not hide the others.
fn phase(name: &str, f: impl FnOnce()) -> Result<(), String> {
    let started = Instant::now();
    println!("=== {name}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    println!("=== {name}: {:.0?}", started.elapsed());
    result.map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{name}: {msg}")
    })
}

#[test]
fn the_shipped_deployment_on_a_real_docker_engine() {
    let run_started = Instant::now();
    let engine = Engine::start();
    let images = Images::build(&engine);
    // PROMSNMP_ENGINE_PHASES=swarm (say) runs some phases only, while
    // working on one; the default is all of them.
    let only = std::env::var("PROMSNMP_ENGINE_PHASES").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);
    let mut failures = Vec::new();
    if wanted("image") {
        failures.extend(phase("the promsnmp image", || image_checks(&engine, &images)).err());
    }
    if wanted("compose") {
        failures.extend(phase("Docker Compose", || compose_run(&engine, &images)).err());
    }
    if wanted("swarm") {
        failures.extend(phase("Docker Swarm", || swarm_run(&engine, &images)).err());
    }
    println!("whole run: {:.0?}", run_started.elapsed());
    assert!(
        failures.is_empty(),
        "failed phases:\n{}",
        failures.join("\n\n")
    );
}

/// The image runs as 65532 with no shell and declares its health check.
fn image_checks(engine: &Engine, images: &Images) {
    let user = engine.docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.User}}",
        &images.promsnmp,
    ]);
    assert_eq!(user.trim(), "65532:65532");
    let health = engine.docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Healthcheck.Test}}",
        &images.promsnmp,
    ]);
    assert!(health.contains("healthcheck"), "{health}");
    for shell in ["/bin/sh", "/bin/bash", "/busybox/sh"] {
        let r = engine
            .try_docker(&[
                "run",
                "--rm",
                "--entrypoint",
                shell,
                &images.promsnmp,
                "-c",
                "true",
            ])
            .expect("docker run");
        assert!(
            !r.status.success() && r.stderr.contains("no such file"),
            "{shell} in the image: {} {}",
            r.stdout,
            r.stderr
        );
    }
    let size = engine.docker(&["image", "inspect", "-f", "{{.Size}}", &images.promsnmp]);
    println!(
        "promsnmp image: user 65532, no shell, {} MB",
        size.trim().parse::<u64>().unwrap_or(0) / 1_000_000
    );
}

fn compose_run(engine: &Engine, images: &Images) {
    let run_started = Instant::now();
    let (haproxy_port, stats_port, prometheus_port) =
        (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let checkout = engine.dir().join("checkout");
    let compose_dir = operator_checkout(
        &checkout,
        images,
        &[
            ("HAPROXY_PORT", haproxy_port.to_string()),
            ("HAPROXY_STATS_PORT", stats_port.to_string()),
            ("PROMETHEUS_PORT", prometheus_port.to_string()),
        ],
    );
    let lease = lease_and_renew(&compose_dir);
    let _down = ComposeDown {
        engine,
        dir: compose_dir.clone(),
    };
    // Grafana has no stand-in: the other services, by name.
    let services = ["redis", "promsnmp", "haproxy", "prometheus"];
    let compose = |args: &[&str]| {
        engine.run(
            engine
                .compose_command()
                .current_dir(&compose_dir)
                .args(args),
            Duration::from_secs(300),
            &format!("docker-compose {}", args.join(" ")),
        )
    };
    let up = |extra: &[&str]| {
        let mut args = vec!["up", "-d"];
        args.extend(extra);
        args.extend(services);
        compose(&args);
    };
    let fleet = Fleet {
        engine,
        haproxy: format!("127.0.0.1:{haproxy_port}"),
        stats: format!("127.0.0.1:{stats_port}"),
        prometheus: format!("127.0.0.1:{prometheus_port}"),
        replica_filter: "label=com.docker.compose.service=promsnmp".into(),
        network: "promsnmp_default".into(),
        host_bridge: "promsnmp_default".into(),
        swarm: false,
    };

    // 1. Up: every replica healthy, found by HAProxy and Prometheus.
    let started = Instant::now();
    up(&[]);
    fleet.wait_replicas_healthy(3, Duration::from_secs(120));
    let healthy_after = started.elapsed();
    fleet.wait_promsnmp_targets_up(3, Duration::from_secs(60));
    println!("compose up: 3 replicas healthy and UP in HAProxy after {healthy_after:.1?}, scraped by Prometheus after {:.1?}", started.elapsed());

    // 2. Devices through HAProxy; every device target up.
    fleet.start_agents(&images.snmpd);
    fleet.import_devices();
    fleet.wait_devices_up(Duration::from_secs(120));
    println!(
        "{AGENTS} devices imported through HAProxy, all up in Prometheus after {:.1?}",
        started.elapsed()
    );
    // The leader wrote the inventory file on the fresh named volume, as 65532.
    let stat = wait_for(
        "the inventory file on the volume",
        Duration::from_secs(30),
        Duration::from_secs(1),
        || {
            let o = engine
                .try_docker(&[
                    "run",
                    "--rm",
                    "-v",
                    "promsnmp_inventory:/data:ro",
                    &images.base,
                    "stat",
                    "-c",
                    "%u:%g %s",
                    "/data/promsnmp-inventory.json",
                ])
                .ok()?;
            o.status.success().then(|| o.stdout.trim().to_string())
        },
    );
    assert!(stat.starts_with("65532:65532 "), "inventory file: {stat}");
    println!("inventory file on the named volume: owner and size {stat}");

    // 3. Scale out to 5 and back to 3, no edit anywhere.
    let scaled_at = Instant::now();
    up(&["--scale", "promsnmp=5"]);
    fleet.wait_replicas_healthy(5, Duration::from_secs(120));
    fleet.wait_promsnmp_targets_up(5, Duration::from_secs(60));
    let out = scaled_at.elapsed();
    let scaled_in_at = Instant::now();
    up(&["--scale", "promsnmp=3"]);
    fleet.wait_replicas_healthy(3, Duration::from_secs(120));
    fleet.wait_promsnmp_targets_up(3, Duration::from_secs(90));
    println!(
        "--scale promsnmp=5: in HAProxy and Prometheus after {out:.1?}; back to 3 after {:.1?}",
        scaled_in_at.elapsed()
    );
    fleet.assert_failed_scrapes_at_most(scaled_at, 0.0, "while scaling out and in");

    // 4. docker kill of the leader: another leads within lease + renew.
    let (killed, failover) = fleet.kill_leader(lease);
    println!(
        "docker kill of the leader: a new leader after {failover:.2?} (lease + renew {lease:?})"
    );
    assert!(
        failover <= lease + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    engine.docker(&["start", &killed]);
    fleet.wait_replicas_healthy(3, Duration::from_secs(120));

    // 5. Restart the replicas one at a time: no failed device scrape.
    thread::sleep(SCRAPE);
    let rolling_at = Instant::now();
    for (id, _) in fleet.replicas() {
        let restarted = Instant::now();
        engine.docker(&["restart", &id]);
        fleet.wait_replicas_healthy(3, Duration::from_secs(120));
        println!(
            "docker restart {}: healthy and UP again after {:.1?}",
            &id[..12],
            restarted.elapsed()
        );
    }
    thread::sleep(SCRAPE * 2);
    fleet.assert_failed_scrapes_at_most(rolling_at, 0.0, "restarting the replicas one at a time");

    // What Prometheus made of it all: native histograms, counters that never
    // went back whichever replica answered, no alert about the fleet, data
    // on the dashboard's panels.
    prometheus_checks(&fleet.prometheus, run_started);

    // Every replica stopped: PromsnmpAllReplicasDown fires, and resolves
    // once they are back.
    let stopped_at = Instant::now();
    compose(&["stop", "promsnmp"]);
    let firing = "ALERTS{alertname=\"PromsnmpAllReplicasDown\",alertstate=\"firing\"}";
    wait_for(
        "PromsnmpAllReplicasDown to fire",
        Duration::from_secs(240),
        Duration::from_secs(2),
        || (!try_prometheus_vector(&fleet.prometheus, firing)?.is_empty()).then_some(()),
    );
    let fired_after = stopped_at.elapsed();
    let back_at = Instant::now();
    compose(&["start", "promsnmp"]);
    fleet.wait_replicas_healthy(3, Duration::from_secs(120));
    wait_for(
        "PromsnmpAllReplicasDown to resolve",
        Duration::from_secs(180),
        Duration::from_secs(2),
        || {
            try_prometheus_vector(
                &fleet.prometheus,
                "ALERTS{alertname=\"PromsnmpAllReplicasDown\"}",
            )?
            .is_empty()
            .then_some(())
        },
    );
    println!(
        "docker-compose stop promsnmp: PromsnmpAllReplicasDown firing after {fired_after:.0?}, resolved {:.0?} after start",
        back_at.elapsed()
    );
    fleet.wait_devices_up(Duration::from_secs(120));

    // 6. down and up: the inventory survives on the volumes.
    let before = fleet.inventory().expect("inventory export");
    assert_eq!(device_ids(&before).len(), AGENTS, "{before}");
    for i in 0..AGENTS {
        engine.docker(&[
            "network",
            "disconnect",
            &fleet.network,
            &format!("agent-{i}"),
        ]);
    }
    compose(&["down"]);
    up(&[]);
    for i in 0..AGENTS {
        let name = format!("agent-{i}");
        engine.docker(&[
            "network",
            "connect",
            "--alias",
            &name,
            &fleet.network,
            &name,
        ]);
    }
    fleet.wait_replicas_healthy(3, Duration::from_secs(120));
    let after = wait_for(
        "the inventory after down and up",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || fleet.inventory(),
    );
    assert_eq!(device_ids(&after), device_ids(&before));
    fleet.wait_devices_up(Duration::from_secs(120));
    println!("down and up: the {AGENTS} devices are still there and up");

    // 7. Redis killed and its volume removed: the leader restores the
    // inventory into the new Redis from the file.
    compose(&["kill", "redis"]);
    compose(&["rm", "-f", "redis"]);
    engine.docker(&["volume", "rm", "promsnmp_redis-data"]);
    let restarted = Instant::now();
    compose(&["up", "-d", "redis"]);
    let redis = compose(&["ps", "-q", "redis"]).trim().to_string();
    let keys = wait_for(
        "the inventory back in the new Redis",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || inventory_keys(engine, &redis),
    );
    let restored = fleet.inventory().expect("inventory export");
    assert_eq!(device_ids(&restored), device_ids(&before));
    println!(
        "Redis and its volume gone: inventory restored into the new Redis ({}) after {:.1?}",
        keys.split_whitespace().collect::<Vec<_>>().join(" "),
        restarted.elapsed()
    );
    fleet.wait_devices_up(Duration::from_secs(120));
}

/// Checks on Prometheus' data since `since`: interface_utilization is a
/// native histogram (no classic buckets stored), no interface counter of any
/// device went back, no alert about the fleet or the devices fired, and every
/// dashboard query runs, the core panels with data.
fn prometheus_checks(prometheus: &str, since: Instant) {
    let vector = |q: &str| prometheus_vector(prometheus, q);
    let histograms =
        vector("count by (instance) (histogram_count(interface_utilization{job=\"snmp\"}))");
    assert_eq!(
        histograms.len(),
        AGENTS,
        "native histograms: {histograms:?}"
    );
    assert!(
        vector("interface_utilization_bucket").is_empty(),
        "classic buckets stored"
    );
    let window = since.elapsed().as_secs() + 1;
    let mut counters = 0;
    for counter in [
        "ifHCInOctets",
        "ifHCOutOctets",
        "ifHCInUcastPkts",
        "ifHCOutUcastPkts",
    ] {
        let resets = vector(&format!("resets({counter}{{job=\"snmp\"}}[{window}s]) > 0"));
        assert!(
            resets.is_empty(),
            "{counter} went back during the run: {resets:?}"
        );
        counters += vector(&format!("{counter}{{job=\"snmp\"}}")).len();
    }
    assert!(
        counters >= 4 * AGENTS,
        "{counters} interface counter series"
    );
    println!("resets() over {window} s: 0 for each of {counters} interface counter series");
    let fired: Vec<String> = vector(&format!(
        "max_over_time(ALERTS{{alertstate=\"firing\"}}[{window}s])"
    ))
    .into_iter()
    .filter_map(|(labels, _)| labels.get("alertname").cloned())
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
        assert!(
            !fired.iter().any(|f| f == quiet),
            "{quiet} fired: {fired:?}"
        );
    }
    let dashboard: Value =
        serde_json::from_str(&read_repo_file("compose/grafana/dashboards/promsnmp.json"))
            .expect("json");
    let queries = dashboard_queries(&dashboard);
    let empty: Vec<&PanelQuery> = queries
        .iter()
        .filter(|q| {
            prometheus_query(prometheus, &q.expr)["data"]["result"]
                .as_array()
                .map(Vec::is_empty)
                .unwrap_or(true)
        })
        .collect();
    println!(
        "dashboard: {} queries run, {} without data: {:?}",
        queries.len(),
        empty.len(),
        empty.iter().map(|q| &q.panel).collect::<Vec<_>>()
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
        assert!(
            queries.iter().any(|q| q.expr.contains(must_have_data)),
            "no dashboard query uses {must_have_data}"
        );
        for q in queries.iter().filter(|q| q.expr.contains(must_have_data)) {
            assert!(
                !empty.iter().any(|e| e.expr == q.expr),
                "dashboard panel `{}` shows no data: {}",
                q.panel,
                q.expr
            );
        }
    }
}

/// `docker service update --image image` of the replicas; waits (bounded
/// 10 min) until Swarm ends it and returns how: `completed`, or
/// `rollback_completed` after a rollback (`paused`, `rollback_paused` when
/// it gave up).
fn update_image(engine: &Engine, image: &str) -> String {
    let service = "promsnmp_promsnmp";
    engine.docker(&[
        "service",
        "update",
        "--detach",
        "--no-resolve-image",
        "--image",
        image,
        service,
    ]);
    wait_for(
        &format!("the update to {image} to end"),
        Duration::from_secs(600),
        Duration::from_secs(1),
        || {
            let state = engine.docker(&[
                "service",
                "inspect",
                "-f",
                "{{.UpdateStatus.State}}",
                service,
            ]);
            let state = state.trim();
            matches!(
                state,
                "completed" | "paused" | "rollback_completed" | "rollback_paused"
            )
            .then(|| state.to_string())
        },
    )
}

/// Asserts three healthy replicas, every one running `image`.
fn assert_replicas_run(fleet: &Fleet, image: &str) {
    fleet.wait_replicas_healthy(3, Duration::from_secs(120));
    for (id, _) in fleet.replicas() {
        let running = fleet
            .engine
            .docker(&["inspect", "-f", "{{.Config.Image}}", &id]);
        assert!(
            running.trim().starts_with(image),
            "{id} runs {running}, not {image}"
        );
    }
}

/// The stack on a single-node Swarm: deploy with swarm_deploy.sh, the
/// checks of the Compose run where Swarm allows, a rolling update, a broken
/// image rolled back, an edited config redeployed.
fn swarm_run(engine: &Engine, images: &Images) {
    engine.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    let node = engine.docker(&["info", "-f", "{{.Swarm.NodeID}}"]);
    engine.docker(&[
        "node",
        "update",
        "--label-add",
        "promsnmp.data=true",
        "--label-add",
        "promsnmp.lb=true",
        node.trim(),
    ]);
    let (haproxy_port, prometheus_port) = (free_tcp_port(), free_tcp_port());
    let checkout = engine.dir().join("checkout-swarm");
    let compose_dir = operator_checkout(
        &checkout,
        images,
        &[
            ("PROMSNMP_WEB_CONFIG_SOURCE", "./web/web.yml".into()),
            ("PROMSNMP_IMAGE", images.promsnmp.clone()),
            ("HAPROXY_PORT", haproxy_port.to_string()),
            ("PROMETHEUS_PORT", prometheus_port.to_string()),
            ("NFS_SERVER", "replaced.by.the.override".into()),
        ],
    );
    let inventory_dir = checkout.join("inventory");
    fs::create_dir_all(&inventory_dir).expect("inventory dir");
    std::os::unix::fs::chown(&inventory_dir, Some(65532), Some(65532)).expect("chown");
    fs::copy(
        repo_file("tests/engine/stack-override.yml"),
        checkout.join("stack-override.yml"),
    )
    .expect("override");
    // swarm_deploy.sh calls `docker`: the engine's own client.
    let bin = checkout.join("bin");
    fs::create_dir_all(&bin).expect("bin");
    std::os::unix::fs::symlink(engine.docker_path(), bin.join("docker")).expect("symlink");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let deploy = || {
        // As the stack's header says: the shell's environment from .env.
        engine.run(
            engine
                .command(Path::new("/bin/sh"))
                .current_dir(&compose_dir)
                .env("PATH", &path)
                .env("ENGINE_INVENTORY_DIR", &inventory_dir)
                .args([
                    "-c",
                    "set -a; . ./.env; set +a; exec ./swarm_deploy.sh -c ../stack-override.yml --resolve-image never promsnmp",
                ]),
            Duration::from_secs(300),
            "swarm_deploy.sh",
        )
    };
    let service_tasks = |service: &str| -> Vec<String> {
        engine
            .docker(&[
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.swarm.service.name=promsnmp_{service}"),
            ])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let gwbridge_ip = |container: &str| -> Option<String> {
        bridge_addresses(engine, "docker_gwbridge")?.remove(container)
    };

    let started = Instant::now();
    deploy();
    // HAProxy's stats page is not published by the stack: read it on the
    // task's docker_gwbridge address.
    let stats_addr = || {
        let task = wait_for(
            "the HAProxy task",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || service_tasks("haproxy").into_iter().next(),
        );
        let ip = wait_for(
            "HAProxy's gateway address",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || gwbridge_ip(&task),
        );
        format!("{ip}:8404")
    };
    let mut fleet = Fleet {
        engine,
        haproxy: format!("127.0.0.1:{haproxy_port}"),
        stats: stats_addr(),
        prometheus: format!("127.0.0.1:{prometheus_port}"),
        replica_filter: "label=com.docker.swarm.service.name=promsnmp_promsnmp".into(),
        network: "promsnmp_promsnmp".into(),
        host_bridge: "docker_gwbridge".into(),
        swarm: true,
    };
    fleet.wait_replicas_healthy(3, Duration::from_secs(180));
    let healthy_after = started.elapsed();
    fleet.wait_promsnmp_targets_up(3, Duration::from_secs(90));
    println!(
        "stack deploy: 3 replicas healthy and UP in HAProxy after {healthy_after:.1?}, scraped by Prometheus after {:.1?}",
        started.elapsed()
    );
    let volume = engine.docker(&[
        "volume",
        "inspect",
        "-f",
        "{{json .Options}}",
        "promsnmp_inventory",
    ]);
    assert!(
        volume.contains("\"o\":\"bind\"") && !volume.contains("nfs"),
        "inventory volume: {volume}"
    );

    // Devices through HAProxy, every target up; the inventory file lands in
    // the shared directory.
    fleet.start_agents(&images.snmpd);
    fleet.import_devices();
    fleet.wait_devices_up(Duration::from_secs(120));
    wait_for(
        "the inventory file in the shared directory",
        Duration::from_secs(30),
        Duration::from_secs(1),
        || {
            inventory_dir
                .join("promsnmp-inventory.json")
                .exists()
                .then_some(())
        },
    );
    println!(
        "{AGENTS} devices imported through HAProxy, all up after {:.1?}",
        started.elapsed()
    );

    // Scale out and in.
    let scaled_at = Instant::now();
    engine.docker(&["service", "scale", "--detach", "promsnmp_promsnmp=5"]);
    fleet.wait_replicas_healthy(5, Duration::from_secs(180));
    fleet.wait_promsnmp_targets_up(5, Duration::from_secs(60));
    let out = scaled_at.elapsed();
    let scaled_in_at = Instant::now();
    engine.docker(&["service", "scale", "--detach", "promsnmp_promsnmp=3"]);
    fleet.wait_replicas_healthy(3, Duration::from_secs(180));
    fleet.wait_promsnmp_targets_up(3, Duration::from_secs(90));
    println!(
        "service scale promsnmp_promsnmp=5: in HAProxy and Prometheus after {out:.1?}; back to 3 after {:.1?}",
        scaled_in_at.elapsed()
    );
    fleet.assert_failed_scrapes_at_most(scaled_at, 0.0, "while scaling out and in");

    // docker kill of the leader: Swarm replaces the task, another replica
    // leads within lease + renew.
    let lease = lease_and_renew(&compose_dir);
    let (_, failover) = fleet.kill_leader(lease);
    println!("docker kill of the leader's task: a new leader after {failover:.2?}");
    assert!(
        failover <= lease + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    fleet.wait_replicas_healthy(3, Duration::from_secs(180));

    // Rolling update to a rebuilt image: replica by replica, no failed scrape.
    images.build_promsnmp(
        engine,
        "promsnmp:rebuilt",
        &["--label", "promsnmp.test.rebuild=1"],
    );
    thread::sleep(SCRAPE);
    let update_at = Instant::now();
    let state = update_image(engine, "promsnmp:rebuilt");
    assert_eq!(state, "completed");
    let rolled = update_at.elapsed();
    assert_replicas_run(&fleet, "promsnmp:rebuilt");
    thread::sleep(SCRAPE * 2);
    println!("rolling update to a rebuilt image: {rolled:.1?}");
    fleet.assert_failed_scrapes_at_most(update_at, 0.0, "in the rolling update");

    // A broken image: it starts and runs but never serves (as a build that
    // hangs at start would), so its health check fails. The update rolls
    // back by itself.
    let broken_context = checkout.join("broken-image");
    fs::create_dir_all(&broken_context).expect("dir");
    fs::write(
        broken_context.join("Dockerfile"),
        format!(
            "FROM {base} AS tools\nFROM promsnmp:rebuilt\nCOPY --from=tools /usr/bin/sleep /usr/bin/sleep\nENTRYPOINT [\"/usr/bin/sleep\", \"infinity\"]\n",
            base = images.base
        ),
    )
    .expect("Dockerfile");
    engine.run(
        engine
            .docker_command()
            .args(["build", "-q", "-t", "promsnmp:broken"])
            .arg(&broken_context),
        Duration::from_secs(120),
        "docker build of the broken image",
    );
    let broken_at = Instant::now();
    let state = update_image(engine, "promsnmp:broken");
    assert_eq!(
        state, "rollback_completed",
        "the broken update ended as {state}"
    );
    let rolled_back = broken_at.elapsed();
    assert_replicas_run(&fleet, "promsnmp:rebuilt");
    thread::sleep(SCRAPE * 2);
    println!("broken image: rolled back by itself after {rolled_back:.1?}");
    fleet.assert_failed_scrapes_at_most(broken_at, 1.0, "in the broken update and its rollback");

    // An edited haproxy.cfg: the next deploy makes a new config and HAProxy
    // rolls over to it.
    let cfg_path = checkout.join("haproxy.cfg");
    let cfg = fs::read_to_string(&cfg_path).expect("haproxy.cfg");
    fs::write(
        &cfg_path,
        substitute(&cfg, "stats refresh 10s", "stats refresh 7s", "haproxy.cfg"),
    )
    .expect("edit haproxy.cfg");
    let configs_before = engine.docker(&["config", "ls", "--format", "{{.Name}}"]);
    deploy();
    let configs_after = engine.docker(&["config", "ls", "--format", "{{.Name}}"]);
    let new_configs: Vec<&str> = configs_after
        .lines()
        .filter(|c| !configs_before.lines().any(|b| b == *c))
        .collect();
    let digest = engine.run(
        std::process::Command::new("sha256sum").arg(&cfg_path),
        Duration::from_secs(10),
        "sha256sum haproxy.cfg",
    );
    assert_eq!(
        new_configs,
        [format!("promsnmp_haproxy_cfg_{}", &digest[..16])],
        "configs the redeploy made (the edited haproxy.cfg only, named by its digest)"
    );
    let served = wait_for(
        "HAProxy to serve the edited configuration",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || {
            let task = service_tasks("haproxy").into_iter().next()?;
            let ip = gwbridge_ip(&task)?;
            let r = try_http_request(&format!("{ip}:8404"), "GET", "/stats", &[], &[]).ok()?;
            // The stats page sends its refresh period as a header.
            let refresh = r
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("refresh"))
                .map(|(_, v)| v.trim().to_string());
            (r.status == 200 && refresh.as_deref() == Some("7")).then_some(ip)
        },
    );
    println!(
        "edited haproxy.cfg redeployed as config {}; HAProxy at {served} serves it",
        new_configs[0]
    );
    fleet.stats = format!("{served}:8404");
    fleet.wait_devices_up(Duration::from_secs(120));

    // docker stack rm and deploy again: the inventory survives on the volume.
    let before = fleet.inventory().expect("inventory export");
    assert_eq!(device_ids(&before).len(), AGENTS, "{before}");
    // The agents' services hold the stack's network: out of the way first.
    for i in 0..AGENTS {
        engine.docker(&["service", "rm", &format!("agent-{i}")]);
    }
    engine.docker(&["stack", "rm", "promsnmp"]);
    wait_for(
        "the stack's containers and network to be gone",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || {
            let containers = engine.docker(&[
                "ps",
                "-aq",
                "--filter",
                "label=com.docker.stack.namespace=promsnmp",
            ]);
            let networks = engine.docker(&[
                "network",
                "ls",
                "-q",
                "--filter",
                "label=com.docker.stack.namespace=promsnmp",
            ]);
            (containers.trim().is_empty() && networks.trim().is_empty()).then_some(())
        },
    );
    let redeployed_at = Instant::now();
    deploy();
    fleet.stats = stats_addr();
    fleet.start_agents(&images.snmpd);
    fleet.wait_replicas_healthy(3, Duration::from_secs(180));
    let after = wait_for(
        "the inventory after stack rm and deploy",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || fleet.inventory(),
    );
    assert_eq!(device_ids(&after), device_ids(&before));
    fleet.wait_devices_up(Duration::from_secs(180));
    println!(
        "stack rm and deploy: the {AGENTS} devices are still there and up after {:.1?}",
        redeployed_at.elapsed()
    );

    // Redis' task gone with its volume: the inventory comes back from the file.
    engine.docker(&["service", "scale", "--detach", "promsnmp_redis=0"]);
    wait_for(
        "Redis' task to stop",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || service_tasks("redis").is_empty().then_some(()),
    );
    // Its stopped container still holds the volume.
    let stopped = engine.docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=com.docker.swarm.service.name=promsnmp_redis",
    ]);
    for id in stopped.split_whitespace() {
        engine.docker(&["rm", "-f", id]);
    }
    engine.docker(&["volume", "rm", "promsnmp_redis-data"]);
    let restarted = Instant::now();
    engine.docker(&["service", "scale", "--detach", "promsnmp_redis=1"]);
    wait_for(
        "the inventory back in the new Redis",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || {
            let task = service_tasks("redis").into_iter().next()?;
            inventory_keys(engine, &task).map(|_| ())
        },
    );
    assert_eq!(
        device_ids(&fleet.inventory().expect("inventory export")),
        device_ids(&before)
    );
    println!(
        "Redis' task and volume gone: inventory back in the new Redis after {:.1?}",
        restarted.elapsed()
    );
    fleet.wait_devices_up(Duration::from_secs(120));
}
