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

use serde_json::json;

/// A device name that is markup: shown as text, it runs nothing.
const XSS_NAME: &str = "<img src=x onerror=\"window.__xss=1\">sw<b>1</b>";

fn screenshot_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the browser run must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Everything works; the fleet page lists this many replicas.
    Members(usize),
    /// The user is no admin: the API behind the pages refuses.
    Forbidden,
}

fn run_e2e(
    promsnmp: &Promsnmp,
    snmpd: &Snmpd,
    shots: &std::path::Path,
    user: Option<(&str, &str)>,
    expect: Expect,
    extra_env: &[(&str, &str)],
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
        .envs(extra_env.iter().copied())
        .env(
            "EXPECT_MEMBERS",
            match expect {
                Expect::Members(n) => n.to_string(),
                Expect::Forbidden => "1".into(),
            },
        );
    if expect == Expect::Forbidden {
        cmd.env("EXPECT_FORBIDDEN", "1");
    }
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
    // A device whose name is markup (sysName comes from the agent): the
    // console must show it as text.
    let xss = json!({"sysName": XSS_NAME, "agents": [{"type": "snmp-community",
        "endpoint": {"address": "127.0.0.1", "port": free_udp_port()}, "version": 1,
        "readCommunity": "public", "timeout": 200, "retries": 0}]});
    let r = http_post_json(
        &promsnmp.addr(),
        "/promsnmp/inventory/devices",
        &xss.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let shots = screenshot_dir("standalone");
    let out = run_e2e(
        &promsnmp,
        &snmpd,
        &shots,
        None,
        Expect::Members(1),
        &[("XSS_NAME", XSS_NAME)],
    );
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
        "5b-api",
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
    // The API agrees with what the browser did: only the markup-named device is left.
    let inventory = http_get(&promsnmp.addr(), "/promsnmp/inventory").json();
    let names: Vec<&str> = inventory["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sysName"].as_str().unwrap())
        .collect();
    assert_eq!(names, [XSS_NAME], "{inventory}");
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
    // behind it refuses (403), and the page says so.
    let shots = screenshot_dir("viewer");
    let out = run_e2e(
        &promsnmp,
        &snmpd,
        &shots,
        Some(("viewer", "view-secret")),
        Expect::Forbidden,
        &[],
    );
    assert!(
        out.status.success() && out.stdout.contains("refused as expected"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let inventory = http_request(
        &promsnmp.addr(),
        "GET",
        "/promsnmp/inventory",
        &[("Authorization", &basic_auth("operator", "op-secret"))],
        &[],
    )
    .json();
    assert_eq!(
        inventory["devices"].as_array().map(Vec::len),
        Some(0),
        "the viewer changed the inventory"
    );
    // The admin does everything.
    let shots = screenshot_dir("operator");
    let out = run_e2e(
        &promsnmp,
        &snmpd,
        &shots,
        Some(("operator", "op-secret")),
        Expect::Members(1),
        &[],
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
    let b = replica();
    wait_for_fleet_leader(&[a.addr(), b.addr()], &[]);
    let shots = screenshot_dir("fleet");
    let out = run_e2e(&a, &snmpd, &shots, None, Expect::Members(2), &[]);
    assert!(
        out.status.success(),
        "{}\n{}\npromsnmp log:\n{}",
        out.stdout,
        out.stderr,
        a.log()
    );
}
