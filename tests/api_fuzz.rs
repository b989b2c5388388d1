//! The OpenAPI document against the running server: `/v3/api-docs` passes
//! openapi-spec-validator, and schemathesis fuzzes every operation of it —
//! first with schema-violating requests only (each is refused, and the
//! stored inventory is unchanged afterwards), then with valid and invalid
//! ones and the stateful links between operations. No answer is a 5xx (by
//! schemathesis and by the server's own request counter) and the process
//! is alive and healthy at the end.
//!
//! promsnmp runs in a network namespace of its own with only a loopback:
//! the fuzzer's addresses (devices, seeds, probes) reach nothing outside.
//! Needs root, `ip` (iproute2), `curl`, and schemathesis with
//! openapi-spec-validator in the virtualenv `PROMSNMP_API_VENV` names
//! (default `/opt/promsnmp-api-venv`; `scripts/test` makes it).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 8080;

/// A network namespace with only `lo` up; deleted (its processes killed) on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        require_program("ip", "iproute2");
        let name = format!("psn-fuzz-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        let netns = Netns { name };
        netns.ip(&["netns", "add", &netns.name]);
        netns.ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip {args:?} (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `program args` inside the namespace.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        cmd
    }

    /// `curl` inside the namespace: (status, body), bounded 10 s.
    fn curl(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{PORT}{path}");
        let out = run_bounded(
            &mut self.command(
                Path::new("/usr/bin/curl"),
                &["-s", "-w", "\n%{http_code}", &url],
            ),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("curl {url}: {e}"));
        let (body, status) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

fn api_venv() -> PathBuf {
    let venv = PathBuf::from(
        std::env::var("PROMSNMP_API_VENV").unwrap_or_else(|_| "/opt/promsnmp-api-venv".into()),
    );
    for tool in ["schemathesis", "openapi-spec-validator"] {
        assert!(
            venv.join("bin").join(tool).is_file(),
            "{tool} missing from {} (scripts/test installs schemathesis==4.32.5 and openapi-spec-validator==0.9.0 there; PROMSNMP_API_VENV names another)",
            venv.display()
        );
    }
    venv
}

/// `(requests, 5xx answers)` by the server's own counter.
fn served(netns: &Netns) -> (u64, u64) {
    let (_, metrics) = netns.curl("/actuator/prometheus");
    let mut totals = (0, 0);
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("promsnmp_http_requests_total{"))
    {
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        totals.0 += count;
        if line.contains("status=\"5") {
            totals.1 += count;
        }
    }
    totals
}

#[test]
fn the_api_document_holds_against_the_running_server() {
    let venv = api_venv();
    let netns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    // Something to read, change and delete: a device and a seed.
    std::fs::write(
        dir.path().join("inventory.json"),
        r#"{"devices":[{"id":"dev-1","sysName":"core-1","agents":[{"type":"snmp-community","id":"a1",
            "endpoint":{"address":"127.0.0.1","port":1161},"version":1,"readCommunity":"public","timeout":200,"retries":0}]}],
           "discoverySeeds":[{"id":"seed-1","potentialTargets":["127.0.0.1"],"port":1161,"version":"v2c","readCommunity":"public"}]}"#,
    )
    .unwrap();
    let mut server = netns.command(&promsnmp_bin(), &[]);
    server
        .current_dir(dir.path())
        .env("SERVER_PORT", PORT.to_string())
        .env("PROM_INV_FILE", dir.path().join("inventory.json"))
        .env("DISCOVERY_CRON", "-")
        .env("COLLECTION_INTERVAL", "600000")
        .env("RUST_LOG", "info");
    let mut server = ProcGuard::spawn(server, "promsnmp (netns)", &dir.path().join("promsnmp.log"));
    let started = Instant::now();
    while netns.curl("/actuator/health/readiness").0 != 200 {
        assert!(
            server.try_wait().is_none(),
            "promsnmp exited:\n{}",
            server.log_tail()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not ready:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let url = format!("http://127.0.0.1:{PORT}/v3/api-docs");
    let (status, document) = netns.curl("/v3/api-docs");
    assert_eq!(status, 200, "{document}");
    let saved = dir.path().join("api-docs.json");
    std::fs::write(&saved, &document).unwrap();
    let validator = run_bounded(
        Command::new(venv.join("bin/openapi-spec-validator")).arg(&saved),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        validator.status.success(),
        "openapi-spec-validator: {}{}",
        validator.stdout,
        validator.stderr
    );
    let document: Value = serde_json::from_str(&document).unwrap();
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            ["get", "put", "post", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();

    let schemathesis = |args: &[&str]| {
        let mut all = vec![
            url.as_str(),
            "--workers",
            "1",
            "--no-color",
            "--seed",
            "20261130",
            // A loaded CI machine answers slowly; slowness is not what this tests.
            "--request-timeout",
            "60",
        ];
        all.extend_from_slice(args);
        let mut cmd = netns.command(&venv.join("bin/schemathesis"), &["run"]);
        // Its example database goes to the working directory.
        cmd.args(&all).current_dir(dir.path());
        let out = run_bounded(&mut cmd, Duration::from_secs(900)).unwrap();
        let tested = out
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("Tested: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        (out, tested)
    };

    // Schema-violating requests only, no stateful links (those send valid
    // requests): every one refused, nothing stored changed.
    let (_, before) = netns.curl("/promsnmp/inventory");
    let (negative, negative_tested) = schemathesis(&[
        "--mode", "negative", "--phases", "coverage,fuzzing", "--max-examples", "20",
        "--checks", "not_a_server_error,negative_data_rejection,status_code_conformance,content_type_conformance",
    ]);
    assert!(
        negative.status.success(),
        "negative run:\n{}\n{}",
        negative.stdout,
        negative.stderr
    );
    let (_, after) = netns.curl("/promsnmp/inventory");
    assert_eq!(
        serde_json::from_str::<Value>(&before).unwrap(),
        serde_json::from_str::<Value>(&after).unwrap(),
        "a refused request changed the inventory"
    );
    let (after_negative, _) = served(&netns);

    // Everything: valid and invalid requests and the links between
    // operations. Not checked: whether every schema-valid request is
    // accepted — targets, modules and credentials must exist and answer,
    // which a schema cannot say.
    let (full, full_tested) = schemathesis(&[
        "--max-examples",
        "25",
        "--exclude-checks",
        "positive_data_acceptance",
    ]);
    assert!(
        full.status.success(),
        "full run:\n{}\n{}",
        full.stdout,
        full.stderr
    );

    assert!(
        server.try_wait().is_none(),
        "promsnmp died:\n{}",
        server.log_tail()
    );
    assert_eq!(
        netns.curl("/actuator/health").0,
        200,
        "{}",
        server.log_tail()
    );
    let (requests, server_errors) = served(&netns);
    assert_eq!(server_errors, 0, "5xx answers:\n{}", server.log_tail());
    // Schemathesis leaves out the operation serving the document it reads
    // (GET /v3/api-docs, fetched above); every other one is tested.
    assert!(
        negative_tested + 1 == operations && full_tested + 1 == operations,
        "operations tested: {negative_tested} and {full_tested} of {operations}"
    );
    println!(
        "api fuzz: {operations} operations in the document, {full_tested} fuzzed (all but GET /v3/api-docs); {after_negative} requests in the schema-violating run (inventory unchanged), {} in the full run; 0 answers >= 500; promsnmp alive and healthy",
        requests - after_negative
    );
}
