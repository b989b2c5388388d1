//! The web console end to end in a real browser: Debian's Chromium driven
//! by playwright-core (`tests/console/e2e.mjs`) against promsnmp and a real
//! snmpd — a device added through the discovery form, seen polled, its
//! modules changed, deleted; the fleet and settings pages; with users, the
//! console asks for credentials and honours them. Screenshots of every
//! step are kept in `<target>/tmp/console-screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` (Debian's `chromium`) and
//! `tests/console/node_modules` (`npm ci --prefix tests/console`;
//! `scripts/test` does both).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn screenshot_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_e2e(
    promsnmp: &Promsnmp,
    snmpd: &Snmpd,
    shots: &std::path::Path,
    user: Option<(&str, &str)>,
    members: usize,
) -> CmdOutput {
    let node = require_program("node", "nodejs");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} missing: install Debian's chromium (scripts/test does)"
    );
    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    assert!(
        suite.join("node_modules/playwright-core").is_dir(),
        "playwright-core missing: run `npm ci --prefix tests/console` (scripts/test does)"
    );
    let mut cmd = Command::new(node);
    cmd.arg(suite.join("e2e.mjs"))
        .current_dir(&suite)
        .env("PROMSNMP_URL", format!("http://{}", promsnmp.addr()))
        .env("SNMP_PORT", snmpd.port.to_string())
        .env("DEVICE_NAME", "console-dev")
        .env("SCREENSHOT_DIR", shots)
        .env("CHROMIUM", &chromium)
        .env("EXPECT_MEMBERS", members.to_string());
    if let Some((name, password)) = user {
        cmd.env("CONSOLE_USER", name)
            .env("CONSOLE_PASSWORD", password);
    }
    run_bounded(&mut cmd, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"))
}

fn agent() -> Snmpd {
    Snmpd::start(&SnmpdConfig {
        sys_name: "console-dev".into(),
        ..Default::default()
    })
}

#[test]
fn the_console_adds_polls_edits_and_deletes_a_device() {
    let snmpd = agent();
    let promsnmp = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "1000")]);
    let shots = screenshot_dir("standalone");
    let out = run_e2e(&promsnmp, &snmpd, &shots, None, 1);
    assert!(
        out.status.success() && out.stdout.contains("console e2e: all steps passed"),
        "{}\n{}\npromsnmp log:\n{}",
        out.stdout,
        out.stderr,
        promsnmp.log()
    );
    for step in [
        "1-discovery",
        "2-devices",
        "3-device",
        "4-fleet",
        "5-settings",
        "6-deleted",
    ] {
        let png = shots.join(format!("{step}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is no screenshot",
            png.display()
        );
    }
    // The API agrees with what the browser did.
    let inventory = http_get(&promsnmp.addr(), "/promsnmp/inventory").json();
    assert_eq!(
        inventory["devices"].as_array().map(Vec::len),
        Some(0),
        "{inventory}"
    );
    println!("console screenshots: {}", shots.display());
}

#[test]
fn the_console_honours_users() {
    let snmpd = agent();
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  operator: {}\n  viewer: {}\npromsnmp_admin_users: [operator]\n",
            bcrypt::hash("op-secret", 4).unwrap(),
            bcrypt::hash("view-secret", 4).unwrap()
        ),
    )
    .unwrap();
    let promsnmp = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "1000"),
        ("PROMSNMP_WEB_CONFIG_FILE", web.to_str().unwrap()),
    ]);
    // Without credentials the page is refused; the browser would ask.
    let r = http_get(&promsnmp.addr(), "/");
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Basic")));
    // A user who may scrape but not administer: the console loads, the API
    // behind it refuses, and the e2e run fails at its first change.
    let shots = screenshot_dir("viewer");
    let out = run_e2e(
        &promsnmp,
        &snmpd,
        &shots,
        Some(("viewer", "view-secret")),
        1,
    );
    assert!(
        !out.status.success(),
        "a viewer changed the inventory:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("#outcomes") || out.stderr.contains("403"),
        "{}",
        out.stderr
    );
    // The admin does everything.
    let shots = screenshot_dir("operator");
    let out = run_e2e(
        &promsnmp,
        &snmpd,
        &shots,
        Some(("operator", "op-secret")),
        1,
    );
    assert!(
        out.status.success(),
        "{}\n{}\npromsnmp log:\n{}",
        out.stdout,
        out.stderr,
        promsnmp.log()
    );
}

#[test]
fn the_console_of_a_fleet_replica() {
    let snmpd = agent();
    let redis = Redis::start();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("inventory.json");
    let url = redis.url();
    let replica = || {
        Promsnmp::start(&[
            ("REDIS_URL", url.as_str()),
            ("PROM_INV_FILE", file.to_str().unwrap()),
            ("PROMSNMP_BIND_ADDRESS", "127.0.0.1"),
            ("PROMSNMP_LEASE_TTL_MS", "3000"),
            ("PROMSNMP_LEASE_RENEW_MS", "1000"),
            ("DISCOVERY_CRON", "-"),
            ("COLLECTION_INTERVAL", "1000"),
        ])
    };
    let a = replica();
    let _b = replica();
    let shots = screenshot_dir("fleet");
    let out = run_e2e(&a, &snmpd, &shots, None, 2);
    assert!(
        out.status.success(),
        "{}\n{}\npromsnmp log:\n{}",
        out.stdout,
        out.stderr,
        a.log()
    );
}
