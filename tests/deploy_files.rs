//! The deployment files checked by the tools that read them: `haproxy -c`,
//! `promtool check config|rules`, `promtool test rules`, `docker-compose
//! config` (Debian's `docker-compose`) on the Compose file and the Swarm
//! stack, a lint of the Grafana dashboard, and the Dockerfile's shape. The
//! files run for real, and the dashboard's queries against a real
//! Prometheus, in tests/engine.rs.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;

fn run_ok(program: &str, package: &str, args: &[&str], cwd: &str, env: &[(&str, &str)]) -> String {
    let exe = require_program(program, package);
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(repo_file(cwd))
        .envs(env.iter().copied());
    let out = run_bounded(&mut cmd, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn haproxy_config_is_valid() {
    let out = run_ok("haproxy", "haproxy", &["-c", "-f", "haproxy.cfg"], ".", &[]);
    assert!(out.contains("valid"), "{out}");
    let cfg = read_repo_file("haproxy.cfg");
    // Replicas by DNS, health-checked, admin paths separable.
    for needle in [
        "server-template promsnmp",
        "resolvers docker",
        "option httpchk GET /actuator/health/readiness",
        "acl admin_path path_reg ^/+promsnmp(/|$)",
        "stats uri",
    ] {
        assert!(cfg.contains(needle), "haproxy.cfg lacks `{needle}`");
    }
}

#[test]
fn prometheus_config_and_rules_are_valid() {
    let out = run_ok(
        "promtool",
        "prometheus",
        &["check", "config", "prometheus.yml"],
        "compose",
        &[],
    );
    // The config loads the alert rules from ../alerts.
    assert!(out.contains("promsnmp.rules.yml"), "{out}");
    run_ok(
        "promtool",
        "prometheus",
        &["check", "rules", "promsnmp.rules.yml"],
        "alerts",
        &[],
    );
    let out = run_ok(
        "promtool",
        "prometheus",
        &["test", "rules", "promsnmp.rules.test.yml"],
        "alerts",
        &[],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_test() {
    let rules = read_repo_file("alerts/promsnmp.rules.yml");
    let tests = read_repo_file("alerts/promsnmp.rules.test.yml");
    let names: BTreeSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    for required in [
        "PromsnmpReplicaDown",
        "PromsnmpAllReplicasDown",
        "PromsnmpNoLeader",
        "PromsnmpLeadershipFlapping",
        "PromsnmpRedisUnreachable",
        "PromsnmpDeviceScrapesFailing",
        "PromsnmpCacheHitRateLow",
        "PromsnmpHighMemory",
        "PromsnmpInventoryFileNotWritten",
        "PromsnmpReplicaCannotReadInventory",
    ] {
        assert!(names.contains(required), "no alert {required}");
    }
    for name in names {
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "alert {name} has no promtool test"
        );
    }
}

const COMPOSE_ENV: [(&str, &str); 4] = [
    ("PROM_ENCRYPT_KEY", "0123456789abcdef"),
    ("GRAFANA_ADMIN_PASSWORD", "test"),
    ("NFS_SERVER", "192.0.2.1"),
    ("PROMSNMP_IMAGE", "registry.example/promsnmp:1"),
];

#[test]
fn compose_file_is_valid_and_scales_without_edits() {
    let out = run_ok(
        "docker-compose",
        "docker-compose",
        &["-f", "docker-compose.yml", "config"],
        "compose",
        &COMPOSE_ENV,
    );
    for needle in [
        "replicas: 3",
        "appendonly",
        "- /usr/local/bin/promsnmp\n      - healthcheck",
        "inventory:/app/data",
        "--enable-feature=native-histograms",
        "/etc/grafana/provisioning",
    ] {
        assert!(
            out.contains(needle),
            "compose config lacks `{needle}`:\n{out}"
        );
    }
    let raw = read_repo_file("compose/docker-compose.yml");
    // Scaling and identical replicas: no fixed names, no per-replica roles.
    assert!(
        !raw.contains("container_name"),
        "container_name blocks --scale"
    );
    for role in ["LEADER", "FOLLOWER", "PROMSNMP_REPLICA_ID"] {
        assert!(
            !raw.contains(role),
            "per-replica setting {role} in the compose file"
        );
    }
    // The replicas publish no port (HAProxy does): --scale would clash.
    let promsnmp_service = raw
        .split("\n  promsnmp:")
        .nth(1)
        .and_then(|rest| rest.split("\n  haproxy:").next())
        .expect("the promsnmp service");
    assert!(
        !promsnmp_service.contains("ports:"),
        "promsnmp publishes a port"
    );

    // Without the key the file refuses to start, naming the variable.
    let exe = require_program("docker-compose", "docker-compose");
    let mut cmd = Command::new(exe);
    cmd.args(["-f", "docker-compose.yml", "config"])
        .current_dir(repo_file("compose"))
        .env_remove("PROM_ENCRYPT_KEY")
        .env("GRAFANA_ADMIN_PASSWORD", "test");
    let out = run_bounded(&mut cmd, Duration::from_secs(60)).expect("docker-compose");
    assert!(!out.status.success());
    assert!(out.stderr.contains("PROM_ENCRYPT_KEY"), "{}", out.stderr);
}

/// The variables compose/swarm_deploy.sh computes and exports (the
/// digests that name configs and secrets by content).
fn stack_deploy_variables() -> Vec<String> {
    let script = read_repo_file("compose/swarm_deploy.sh");
    let exported: Vec<String> = script
        .lines()
        .filter_map(|l| {
            l.split_once("=$(digest ")
                .map(|(name, _)| name.trim().to_string())
        })
        .collect();
    assert!(exported.len() >= 8, "{exported:?}");
    for name in &exported {
        assert!(
            script.contains(&format!(" {name}")),
            "{name} is not exported"
        );
    }
    exported
}

#[test]
fn swarm_stack_is_valid() {
    let digests: Vec<(String, String)> = stack_deploy_variables()
        .into_iter()
        .map(|name| {
            let value = format!("d{}", name.len());
            (name, value)
        })
        .collect();
    let mut env: Vec<(&str, &str)> = COMPOSE_ENV.to_vec();
    env.extend(digests.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = run_ok(
        "docker-compose",
        "docker-compose",
        &["-f", "docker-stack.yml", "config"],
        "compose",
        &env,
    );
    // Every config and secret is named by its digest.
    for name in [
        "haproxy_cfg",
        "prometheus_yml",
        "rules",
        "grafana_datasource",
        "grafana_dashboards",
        "grafana_dashboard",
        "web_yml",
        "prometheus_password",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("name: promsnmp_{name}_d"))),
            "{name} not named by content:\n{out}"
        );
    }
    for needle in [
        "driver: overlay",
        "endpoint_mode: dnsrr",
        "mode: host",
        "failure_action: rollback",
        "update_config:",
        "restart_policy:",
        "memory: 256M",
        "type: nfs",
        "addr=192.0.2.1",
    ] {
        assert!(
            out.contains(needle),
            "stack config lacks `{needle}`:\n{out}"
        );
    }
}

/// `.env.example` documents every variable the Compose files read, and every
/// setting of the binary that the files pass through.
#[test]
fn env_example_documents_every_variable() {
    let example = read_repo_file("compose/.env.example");
    let documented: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect();
    let set_by_stack_deploy = stack_deploy_variables();
    for file in ["compose/docker-compose.yml", "compose/docker-stack.yml"] {
        let text = read_repo_file(file);
        for piece in text.split("${").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                documented.contains(&name) || set_by_stack_deploy.contains(&name),
                "{file} reads ${{{name}}}, which .env.example does not document"
            );
        }
    }
    // Settings of the binary (every variable it reads) that an operator may change.
    let fixed_by_the_files = [
        "PROM_INV_FILE",
        "SERVER_PORT",
        "PROMSNMP_BIND_ADDRESS",
        "PROMSNMP_REPLICA_ID",
    ];
    for (name, _) in promsnmp::config::VARIABLES {
        if !fixed_by_the_files.contains(name) {
            assert!(
                documented.contains(*name),
                "the binary reads {name}, which .env.example does not document"
            );
        }
    }
}

#[test]
fn grafana_dashboard_lints() {
    let text = read_repo_file("compose/grafana/dashboards/promsnmp.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("the dashboard is valid JSON");
    assert_eq!(dashboard["uid"], "promsnmp");
    let mut ids = BTreeSet::new();
    let mut panels = 0;
    for p in dashboard["panels"].as_array().expect("panels") {
        let id = p["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(p["gridPos"].is_object(), "panel {id} has no gridPos");
        if p["type"] != "row" {
            panels += 1;
            assert!(
                !p["targets"].as_array().map(Vec::is_empty).unwrap_or(true),
                "panel {id} ({}) has no query",
                p["title"]
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
        }
    }
    let queries = dashboard_queries(&dashboard);
    assert!(
        panels >= 10 && queries.len() >= panels,
        "{panels} panels, {} queries",
        queries.len()
    );
    let all: String = queries
        .iter()
        .map(|q| q.expr.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    // The panels the issue asks for.
    for needle in [
        "ifHCInOctets",
        "histogram_quantile(0.9, sum by (device_name, ifName) (rate(interface_utilization",
        "promsnmp_snmp_poll_errors_total",
        "promsnmp_leader",
        "promsnmp_leader_epoch",
        "promsnmp_fleet_members",
        "promsnmp_replica_polls_total",
        "cache_gets_total",
        "promsnmp_redis_up",
    ] {
        assert!(all.contains(needle), "no dashboard query uses `{needle}`");
    }
    assert!(
        dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "heatmap"),
        "no heatmap panel"
    );
    // Provisioning points where the compose file mounts the dashboard.
    let provider = read_repo_file("compose/grafana/provisioning/dashboards/promsnmp.yml");
    assert!(
        provider.contains("/var/lib/grafana/dashboards"),
        "{provider}"
    );
    let datasource = read_repo_file("compose/grafana/provisioning/datasources/prometheus.yml");
    assert!(
        datasource.contains("http://prometheus:9090"),
        "{datasource}"
    );
}

#[test]
fn dockerfile_builds_small_and_runs_as_non_root() {
    let dockerfile = read_repo_file("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage build expected");
    assert!(dockerfile.contains("cargo build --release --locked"));
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(runtime.contains("USER 65532"), "runtime stage runs as root");
    assert!(runtime.contains(r#"HEALTHCHECK"#) && runtime.contains(r#""healthcheck"]"#));
    assert!(
        dockerfile.contains("COPY Cargo.toml Cargo.lock build.rs ./")
            && dockerfile.contains("ARG PROMSNMP_GIT_COMMIT"),
        "the build script and the commit argument reach the build stage"
    );
    // The build context holds Cargo.*, build.rs, src/ and lua/ only: every file the
    // sources include at compile time must be inside them.
    let ignore = read_repo_file(".dockerignore");
    for kept in ["!Cargo.toml", "!Cargo.lock", "!build.rs", "!src/", "!lua/"] {
        assert!(ignore.contains(kept), ".dockerignore drops {kept}");
    }
    for entry in walk(&repo_file("src")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        for piece in text.split("include_str!(\"").skip(1) {
            let rel = piece.split('"').next().unwrap();
            let target = entry.parent().unwrap().join(rel);
            let target = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
            let root = repo_file(".").canonicalize().unwrap();
            let inside = target.strip_prefix(&root).unwrap();
            assert!(
                inside.starts_with("src") || inside.starts_with("lua"),
                "{} includes {}, which the image build does not copy",
                entry.display(),
                inside.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The shipped admin ACL, run: with loopback taken out of `admin_source`,
/// every spelling of an admin path is refused with 403 (the replicas are not
/// even asked), while scrapes pass on to the (empty) backend.
#[test]
fn haproxy_refuses_admin_paths_from_other_networks() {
    let file = "haproxy.cfg";
    let cfg = read_repo_file(file);
    let (port, stats) = (free_tcp_port(), free_tcp_port());
    let addr = format!("127.0.0.1:{port}");
    let allowed = "acl admin_source src 127.0.0.0/8 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16";
    for needle in ["bind :8080", "bind :8404", allowed] {
        assert!(cfg.contains(needle), "{file} no longer contains `{needle}`");
    }
    let cfg = cfg
        .replace("bind :8080", &format!("bind {addr}"))
        .replace("bind :8404", &format!("bind 127.0.0.1:{stats}"))
        .replace(allowed, "acl admin_source src 192.0.2.0/24");
    let haproxy = Haproxy::start(&cfg, &addr);
    for path in [
        "/promsnmp/inventory",
        "//promsnmp/inventory",
        "///promsnmp/discovery",
        "/promsnmp",
        "/promsnmp/evictCache",
    ] {
        let r = http_get(&addr, path);
        assert_eq!(r.status, 403, "{path}: {}\n{}", r.text(), haproxy.log());
    }
    for path in ["/targets", "/snmp?target=x", "/promsnmpx"] {
        let r = http_get(&addr, path);
        assert_eq!(r.status, 503, "{path} is not an admin path: {}", r.text());
    }
}

/// `docker stack deploy` (the docker CLI's interpolation, 20.10) looks for
/// `-` before `:?` in `${NAME:?message}`: a `-` in the message turns the
/// whole into a default value, and the variable is never required (a config
/// named `…_deploy.sh` instead of by its digest, found on a real engine).
#[test]
fn required_variable_messages_have_no_dash() {
    for file in [
        "compose/docker-compose.yml",
        "compose/docker-stack.yml",
        "tests/engine/stack-override.yml",
    ] {
        let text = read_repo_file(file);
        for piece in text.split("${").skip(1) {
            let expr = piece.split('}').next().unwrap_or_default();
            if let Some((name, message)) = expr.split_once('?') {
                assert!(
                    !message.contains('-'),
                    "{file}: `${{{expr}}}`: a `-` in the message of {name} makes the docker CLI read a default"
                );
            }
        }
    }
}
