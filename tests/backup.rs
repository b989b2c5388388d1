//! `promsnmp inventory export|import|decrypt|encrypt`: backups written
//! encrypted and owner-only, never over an existing file; a wrong key or a
//! bad document refused with the reason; and an encrypted backup restored
//! into a running fleet (two replicas, a real redis-server) through the
//! HTTP API, with users, reaching every replica and the shared file.

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "BackupTestKey-16";
const OTHER_KEY: &str = "AnotherKey-16byt";

/// Runs `promsnmp inventory …` (bounded 60 s) with PROM_ENCRYPT_KEY=`key`.
fn inventory(args: &[&str], key: &str, env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new(promsnmp_bin());
    cmd.arg("inventory")
        .args(args)
        .env("PROM_ENCRYPT_KEY", key)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    run_bounded(&mut cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
}

fn ok(out: CmdOutput, what: &str) -> CmdOutput {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

fn document(devices: &[(&str, &str)]) -> Value {
    let devices: Vec<Value> = devices
        .iter()
        .map(|(name, addr)| {
            json!({"sysName": name, "agents": [{"type": "snmp-community", "endpoint": {"address": addr, "port": 161},
                   "version": 1, "readCommunity": "s3cret-community", "timeout": 1000, "retries": 0}]})
        })
        .collect();
    json!({"devices": devices, "discoverySeeds": [
        {"id": "seed-1", "potentialTargets": ["192.0.2.0/30"], "port": 161, "version": "v2c", "readCommunity": "public"}
    ]})
}

fn names(inventory: &Value) -> Vec<String> {
    let mut names: Vec<String> = inventory["devices"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|d| d["sysName"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_are_encrypted_decrypted_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.json");
    let sealed = dir.path().join("sealed.json");
    let opened = dir.path().join("opened.json");
    std::fs::write(
        &plain,
        document(&[("core-1", "192.0.2.1"), ("edge-2", "192.0.2.2")]).to_string(),
    )
    .unwrap();

    let p = plain.to_str().unwrap();
    let s = sealed.to_str().unwrap();
    ok(inventory(&["encrypt", p, "-o", s], KEY, &[]), "encrypt");
    let envelope = std::fs::read_to_string(&sealed).unwrap();
    assert!(
        !envelope.contains("s3cret-community") && !envelope.contains("core-1"),
        "plaintext in {envelope}"
    );
    assert_eq!(mode(&sealed), 0o600);

    // promsnmp itself starts from the encrypted file.
    let mut server = Promsnmp::start(&[
        ("PROM_ENCRYPT_KEY", KEY),
        ("PROM_INV_FILE", s),
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
    ]);
    let served = http_get(&server.addr(), "/promsnmp/inventory").json();
    assert_eq!(names(&served), ["core-1", "edge-2"]);
    assert_eq!(served["discoverySeeds"][0]["id"], "seed-1");
    server.terminate();

    let out = ok(
        inventory(&["decrypt", s, "-o", opened.to_str().unwrap()], KEY, &[]),
        "decrypt",
    );
    assert!(out.stderr.contains("decrypted"), "{}", out.stderr);
    let decrypted: Value =
        serde_json::from_str(&std::fs::read_to_string(&opened).unwrap()).unwrap();
    assert_eq!(names(&decrypted), ["core-1", "edge-2"]);
    assert_eq!(
        decrypted["devices"][0]["agents"][0]["readCommunity"],
        "s3cret-community"
    );
    assert_eq!(mode(&opened), 0o600);
    // To standard output, for a pipe into jq.
    let out = ok(inventory(&["decrypt", s], KEY, &[]), "decrypt to stdout");
    assert_eq!(
        names(&serde_json::from_str(&out.stdout).unwrap()),
        ["core-1", "edge-2"]
    );

    // A wrong key is refused and names the key; nothing is written.
    let out = inventory(&["decrypt", s], OTHER_KEY, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("PROM_ENCRYPT_KEY") && out.stdout.is_empty(),
        "{}",
        out.stderr
    );

    // An existing output file is never replaced.
    let before = std::fs::read(&sealed).unwrap();
    let out = inventory(&["encrypt", p, "-o", s], KEY, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("exists"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(&sealed).unwrap(),
        before,
        "the file was changed"
    );

    // A bad document names the field; no file appears.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"devices":[{"sysName":"x","agents":[{"type":"snmp-community","endpoint":{"address":"192.0.2.9","port":99999}}]}]}"#).unwrap();
    let out = inventory(
        &[
            "encrypt",
            bad.to_str().unwrap(),
            "-o",
            dir.path().join("never.json").to_str().unwrap(),
        ],
        KEY,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("port"), "{}", out.stderr);
    assert!(!dir.path().join("never.json").exists());
}

/// A replica of a two-replica fleet (shared Redis and file), with users.
fn replica(redis: &Redis, file: &Path, web: &Path) -> Promsnmp {
    let url = redis.url();
    Promsnmp::start(&[
        ("REDIS_URL", &url),
        ("PROM_INV_FILE", file.to_str().unwrap()),
        ("PROM_ENCRYPT_KEY", KEY),
        ("PROMSNMP_BIND_ADDRESS", "127.0.0.1"),
        ("PROMSNMP_WEB_CONFIG_FILE", web.to_str().unwrap()),
        ("PROMSNMP_LEASE_TTL_MS", "3000"),
        ("PROMSNMP_LEASE_RENEW_MS", "1000"),
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
    ])
}

#[test]
fn an_encrypted_backup_is_restored_into_a_running_fleet() {
    let redis = Redis::start();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("inventory.json");
    let web = shared.path().join("web.yml");
    let password = shared.path().join("operator.password");
    std::fs::write(&password, "restore-me\n").unwrap();
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  operator: {}\npromsnmp_admin_users: [operator]\n",
            bcrypt::hash("restore-me", 4).unwrap()
        ),
    )
    .unwrap();
    let a = replica(&redis, &file, &web);
    let b = replica(&redis, &file, &web);
    let auth = [("Authorization", basic_auth("operator", "restore-me"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    wait_for_fleet_leader(&[a.addr(), b.addr()], &auth);
    let post = |addr: &str, doc: &Value| {
        let mut headers = auth.clone();
        headers.push(("Content-Type", "application/json"));
        let r = http_request(
            addr,
            "POST",
            "/promsnmp/inventory",
            &headers,
            doc.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let inventory_on = |addr: &str| {
        let r = http_request(addr, "GET", "/promsnmp/inventory", &auth, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    post(
        &a.addr(),
        &document(&[("core-1", "192.0.2.1"), ("edge-2", "192.0.2.2")]),
    );

    let backup = shared.path().join("backup.json");
    let user_args = [
        "--user",
        "operator",
        "--password-file",
        password.to_str().unwrap(),
    ];
    let url_a = format!("http://{}", a.addr());
    let url_b = format!("http://{}", b.addr());
    let mut args = vec!["export", "-o", backup.to_str().unwrap(), "--url", &url_a];
    args.extend(user_args);
    let out = ok(inventory(&args, KEY, &[]), "export");
    assert!(
        out.stderr.contains("exported 2 devices and 1 seeds"),
        "{}",
        out.stderr
    );
    assert_eq!(mode(&backup), 0o600);
    assert!(!std::fs::read_to_string(&backup)
        .unwrap()
        .contains("s3cret-community"));

    // Without the password the replica refuses, and the message says so.
    let out = inventory(
        &[
            "export",
            "-o",
            shared.path().join("x.json").to_str().unwrap(),
            "--url",
            &url_a,
        ],
        KEY,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("401"), "{}", out.stderr);

    // The loss: someone imports the wrong document.
    post(&b.addr(), &document(&[("wrong-9", "192.0.2.9")]));
    wait_for(
        "the wrong document on the other replica",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (names(&inventory_on(&a.addr())) == ["wrong-9"]).then_some(()),
    );

    // The restore, through the other replica, with a password from the environment.
    let mut args = vec![
        "import",
        backup.to_str().unwrap(),
        "--url",
        &url_b,
        "--user",
        "operator",
    ];
    let out = ok(
        inventory(&args, KEY, &[("PROMSNMP_PASSWORD", "restore-me")]),
        "import",
    );
    assert!(
        out.stderr.contains("imported 2 devices and 1 seeds"),
        "{}",
        out.stderr
    );
    for r in [&a, &b] {
        let restored = wait_for(
            "the restored inventory on every replica",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || Some(inventory_on(&r.addr())).filter(|inv| names(inv) == ["core-1", "edge-2"]),
        );
        assert_eq!(restored["discoverySeeds"][0]["id"], "seed-1");
    }
    // And the leader writes it through to the shared file.
    wait_for(
        "the restored inventory in the shared file",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let out = inventory(&["decrypt", file.to_str().unwrap()], KEY, &[]);
            serde_json::from_str::<Value>(&out.stdout)
                .ok()
                .filter(|inv| names(inv) == ["core-1", "edge-2"])
        },
    );

    // A backup made with another key is refused before anything is sent.
    args[1] = file.to_str().unwrap();
    let out = inventory(&args, OTHER_KEY, &[("PROMSNMP_PASSWORD", "restore-me")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("PROM_ENCRYPT_KEY"), "{}", out.stderr);
    assert_eq!(names(&inventory_on(&b.addr())), ["core-1", "edge-2"]);
}
