//! Inventory API, inventory file and start-up configuration of the promsnmp
//! binary: export/import, the Java AES-GCM file envelope (checked with an
//! independent implementation, Python `cryptography`), all-or-nothing
//! validation, refusing bad files and bad environment, restarts, crash safety
//! of the file writes and the `healthcheck` subcommand.
//!
//! Run with `cargo test --test inventory_api -- --test-threads=2`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nothing polls or discovers in the background during these tests.
const QUIET: [(&str, &str); 2] = [("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")];

const DEFAULT_KEY: &str = "0123456789ABCDEF";
const KEY_32: &str = "0123456789ABCDEF0123456789ABCDEF";
const KEY_24: &str = "0123456789ABCDEF01234567";

const INVENTORY: &str = "/promsnmp/inventory";
const SAVE_SEED: &str = "/promsnmp/discovery?scheduleNow=false&saveSeed=true";

/// `QUIET` plus `extra` (later entries win).
fn env_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = QUIET.to_vec();
    env.extend_from_slice(extra);
    env
}

// ---------------------------------------------------------------------------
// Independent AES-GCM (Python `cryptography`)
// ---------------------------------------------------------------------------

const PY_DECRYPT: &str = r#"
import base64, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = sys.argv[1].encode()
text = open(sys.argv[2], "rb").read()
raw = base64.b64decode(text.strip(), validate=True)
plain = AESGCM(key).decrypt(raw[:12], raw[12:], None)
assert len(raw) == 12 + len(plain) + 16, "envelope is not iv[12] || ciphertext || tag[16]"
sys.stdout.buffer.write(plain)
"#;

const PY_ENCRYPT: &str = r#"
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = sys.argv[1].encode()
plain = open(sys.argv[2], "rb").read()
iv = os.urandom(12)
sealed = AESGCM(key).encrypt(iv, plain, None)
open(sys.argv[3], "wb").write(base64.b64encode(iv + sealed))
"#;

/// Runs `/usr/bin/python3 -c script args...` (bounded to 30 s); returns
/// stdout, or the exit status and stderr.
fn python(script: &str, args: &[&str]) -> Result<Vec<u8>, String> {
    let exe = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3".into()
    } else {
        require_program("python3", "python3-cryptography")
    };
    let out = run_bounded(
        Command::new(exe).arg("-c").arg(script).args(args),
        Duration::from_secs(30),
    )?;
    if out.status.success() {
        Ok(out.stdout.into_bytes())
    } else {
        Err(format!("python3 failed ({}):\n{}", out.status, out.stderr))
    }
}

/// Decrypts the inventory file with Python's AESGCM and parses the JSON.
fn decrypt_file(path: &Path, key: &str) -> Value {
    let plain = python(PY_DECRYPT, &[key, &path.display().to_string()]).unwrap_or_else(|e| {
        panic!(
            "independent decryption of {} failed: {e}\nfile starts with: {:?}",
            path.display(),
            fs::read(path)
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned())
                .unwrap_or_default()
        )
    });
    serde_json::from_slice(&plain).unwrap_or_else(|e| {
        panic!(
            "decrypted {} is not JSON: {e}\n{}",
            path.display(),
            String::from_utf8_lossy(&plain)
        )
    })
}

/// Writes `plaintext` to `out` in the Java envelope, encrypted by Python.
fn encrypt_to_file(plaintext: &[u8], key: &str, out: &Path) {
    let plain_path = out.with_extension("plain.tmp");
    fs::write(&plain_path, plaintext).expect("write plaintext");
    let r = python(
        PY_ENCRYPT,
        &[
            key,
            &plain_path.display().to_string(),
            &out.display().to_string(),
        ],
    );
    let _ = fs::remove_file(&plain_path);
    r.unwrap_or_else(|e| panic!("independent encryption failed: {e}"));
}

// ---------------------------------------------------------------------------
// Documents and comparisons
// ---------------------------------------------------------------------------

/// Two devices (v2c community, v3 SHA256/AES128 user) and one seed, in the
/// canonical form promsnmp writes, so an export must contain all of it.
fn sample_inventory(port_a: u16, port_b: u16) -> Value {
    json!({
        "devices": [
            {
                "id": "dev-community",
                "sysName": "edge-router",
                "sysDescr": "Linux edge-router 6.1.0",
                "sysContact": "noc@example.net",
                "sysLocation": "Rack 1",
                "discoveredAt": "2024-06-10T06:13:20Z",
                "agents": [{
                    "type": "snmp-community",
                    "id": "agent-c1",
                    "endpoint": {"address": "127.0.0.1", "port": port_a},
                    "version": 1,
                    "timeout": 1500,
                    "retries": 2,
                    "discoveredAt": "2024-06-10T06:13:20Z",
                    "readCommunity": "public",
                    "writeCommunity": "private"
                }],
                "primaryAgent": null
            },
            {
                "id": "dev-user",
                "sysName": "core-switch",
                "sysDescr": "Cisco IOS",
                "sysContact": "",
                "sysLocation": "Rack 2",
                "discoveredAt": null,
                "agents": [{
                    "type": "snmp-user",
                    "id": "agent-u1",
                    "endpoint": {"address": "127.0.0.1", "port": port_b},
                    "version": 3,
                    "timeout": 2000,
                    "retries": 1,
                    "discoveredAt": null,
                    "securityName": "monitor",
                    "securityLevel": 3,
                    "authProtocol": "SHA256",
                    "authPassphrase": "authpass123",
                    "privProtocol": "AES128",
                    "privPassphrase": "privpass123",
                    "engineId": "80001f8880"
                }],
                "primaryAgent": null
            }
        ],
        "discoverySeeds": [{
            "id": "seed-1",
            "potentialTargets": ["127.0.0.1"],
            "port": 161,
            "version": "v2c",
            "agentType": "snmp-community",
            "readCommunity": "public",
            "timeout": 2000,
            "retries": 1
        }]
    })
}

fn seed_body() -> Value {
    json!({
        "potentialTargets": ["127.0.0.1"],
        "port": 161,
        "version": "v2c",
        "agentType": "snmp-community",
        "readCommunity": "public"
    })
}

/// Every field of `want` is in `got` with the same value (arrays: same length).
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{p} missing in export: {got}"));
                assert_subset(wv, gv, &p);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path}: array length differs: {got}");
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                assert_subset(wv, gv, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{path} differs"),
    }
}

fn get_inventory(p: &Promsnmp) -> (Vec<u8>, Value) {
    let r = http_get(&p.addr(), INVENTORY);
    assert_eq!(r.status, 200, "GET {INVENTORY}: {}", r.text());
    let v = r.json();
    (r.body, v)
}

fn post_inventory_ok(p: &Promsnmp, doc: &Value) -> Value {
    let r = http_post_json(&p.addr(), INVENTORY, &doc.to_string());
    assert_eq!(
        r.status,
        200,
        "POST {INVENTORY}: {}\nlog:\n{}",
        r.text(),
        p.log()
    );
    let v = r.json();
    assert_eq!(
        v["devices"].as_u64(),
        Some(doc["devices"].as_array().map_or(0, |a| a.len()) as u64),
        "{v}"
    );
    assert_eq!(
        v["discoverySeeds"].as_u64(),
        Some(doc["discoverySeeds"].as_array().map_or(0, |a| a.len()) as u64),
        "{v}"
    );
    assert!(v["version"].is_u64(), "no version in {v}");
    v
}

/// Asserts a 400 JSON error naming `field` (when given).
fn assert_bad_request(r: &HttpResponse, field: Option<&str>, what: &str) {
    assert_eq!(r.status, 400, "{what}: expected 400, got: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], 400, "{what}: {v}");
    assert_eq!(v["error"], "Bad Request", "{what}: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message in {v}"
    );
    if let Some(field) = field {
        assert_eq!(v["field"], field, "{what}: wrong field in {v}");
    }
}

fn jitter_ms(modulo: u64) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 / 1_000)
        .unwrap_or(0)
        % modulo.max(1)
}

// ---------------------------------------------------------------------------
// 1. export / import
// ---------------------------------------------------------------------------

#[test]
fn export_import_round_trip() {
    let p = Promsnmp::start(&env_with(&[("PROM_ENCRYPT_KEY", KEY_32)]));
    let (_, empty) = get_inventory(&p);
    assert_eq!(empty, json!({"devices": [], "discoverySeeds": []}));

    let doc = sample_inventory(free_udp_port(), free_udp_port());
    let first = post_inventory_ok(&p, &doc);

    let (export1_bytes, export1) = get_inventory(&p);
    assert_subset(&doc, &export1, "$");
    // The canonical writer keeps the same shape: exactly these top-level keys.
    let keys: Vec<&String> = export1.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{export1}");

    // Importing the export gives the same export, byte for byte.
    let second = post_inventory_ok(&p, &export1);
    assert!(
        second["version"].as_u64() > first["version"].as_u64(),
        "version did not grow: {first} then {second}"
    );
    let (export2_bytes, export2) = get_inventory(&p);
    assert_eq!(export2, export1);
    assert_eq!(
        String::from_utf8_lossy(&export2_bytes),
        String::from_utf8_lossy(&export1_bytes)
    );

    // The saved seed is visible through the discovery API as well.
    let seeds = http_get(&p.addr(), "/promsnmp/discovery");
    assert_eq!(seeds.status, 200, "{}", seeds.text());
    assert_eq!(seeds.json(), export1["discoverySeeds"]);
    let one = http_get(&p.addr(), "/promsnmp/discovery/seed-1");
    assert_eq!(one.status, 200, "{}", one.text());
    assert_subset(&doc["discoverySeeds"][0], &one.json(), "seed-1");
}

// ---------------------------------------------------------------------------
// 2. a file written by "the Java version"
// ---------------------------------------------------------------------------

#[test]
fn java_envelope_file_loads() {
    let dir = tempfile::Builder::new()
        .prefix("psnmp-java")
        .tempdir()
        .expect("tempdir");
    let port = free_udp_port();
    let java_doc = json!({
        "devices": [{
            "id": "2f1c1b7e-1111-4c1e-9a57-0b1c2d3e4f50",
            "sysName": "core-sw1",
            "sysDescr": "Linux core-sw1 5.15",
            "sysContact": null,
            "sysLocation": "DC1",
            "discoveredAt": 1_718_000_000.123_456_7_f64, // Jackson writes Instant as fractional seconds
            "someNewJavaField": {"x": 1, "y": [1, 2]},
            "agents": [{
                "type": "snmp-community",
                "id": "7d3c0f5e-2222-4b8a-8c11-aa00bb11cc22",
                "endpoint": {"address": "core-sw1/127.0.0.1", "port": port, "hostName": "core-sw1"},
                "version": 1,
                "timeout": 1500,
                "retries": 2,
                "discoveredAt": 1718000000.5_f64,
                "readCommunity": "public",
                "writeCommunity": null,
                "javaOnly": true
            }],
            "primaryAgent": null
        }],
        "discoverySeeds": [{
            "id": "9e8d7c6b-3333-4a5b-9c0d-112233445566",
            "potentialTargets": ["127.0.0.1"],
            "port": 161,
            "version": "v2c",
            "agentType": "snmp-community",
            "readCommunity": "public",
            "createdBy": "java"
        }],
        "exportedBy": "PromSNMP 0.9 (Java)"
    });
    let inv_path = dir.path().join("inventory.json");
    encrypt_to_file(
        serde_json::to_string_pretty(&java_doc).unwrap().as_bytes(),
        KEY_32,
        &inv_path,
    );
    let original = fs::read(&inv_path).unwrap();
    assert!(original
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')));

    let p = Promsnmp::start_in(dir, &env_with(&[("PROM_ENCRYPT_KEY", KEY_32)]));
    assert_eq!(
        fs::read(p.inventory_path()).unwrap(),
        original,
        "start alone must not rewrite the file"
    );

    let (_, inv) = get_inventory(&p);
    let devices = inv["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{inv}");
    let d = &devices[0];
    assert_eq!(d["id"], "2f1c1b7e-1111-4c1e-9a57-0b1c2d3e4f50", "{d}");
    assert_eq!(d["sysName"], "core-sw1");
    assert_eq!(d["sysContact"], "", "null sysContact reads as empty: {d}");
    assert_eq!(d["sysLocation"], "DC1");
    let at = d["discoveredAt"].as_str().unwrap_or_default();
    assert!(
        at.starts_with("2024-06-10T06:13:20.12"),
        "epoch seconds with fraction not kept: {at}"
    );
    let a = &d["agents"][0];
    assert_eq!(a["endpoint"]["address"], "127.0.0.1", "{a}");
    assert_eq!(a["endpoint"]["port"], port);
    assert_eq!(a["type"], "snmp-community");
    assert_eq!(a["version"], 1);
    assert_eq!(a["timeout"], 1500);
    assert_eq!(a["retries"], 2);
    assert_eq!(a["readCommunity"], "public");
    assert!(
        a["discoveredAt"]
            .as_str()
            .is_some_and(|s| s.starts_with("2024-06-10T06:13:20.5")),
        "{a}"
    );
    let seeds = inv["discoverySeeds"].as_array().expect("seeds");
    assert_eq!(seeds.len(), 1, "{inv}");
    assert_eq!(seeds[0]["id"], "9e8d7c6b-3333-4a5b-9c0d-112233445566");
    assert_eq!(seeds[0]["potentialTargets"], json!(["127.0.0.1"]));

    let t = http_get(&p.addr(), "/targets");
    assert_eq!(t.status, 200, "{}", t.text());
    let groups = t.json();
    let all: Vec<String> = groups
        .as_array()
        .expect("targets array")
        .iter()
        .flat_map(|g| {
            g["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.as_str().map(str::to_string))
        })
        .collect();
    assert_eq!(all, vec![format!("127.0.0.1:{port}")], "{groups}");
    assert_eq!(groups[0]["labels"]["device_name"], "core-sw1", "{groups}");
}

// ---------------------------------------------------------------------------
// 3. the file is the documented envelope
// ---------------------------------------------------------------------------

#[test]
fn file_decrypts_independently() {
    let p = Promsnmp::start(&env_with(&[("PROM_ENCRYPT_KEY", KEY_24)]));
    let doc = sample_inventory(free_udp_port(), free_udp_port());
    post_inventory_ok(&p, &doc);
    // The API returns after the file is written: read it right away.
    let raw = fs::read(p.inventory_path()).expect("inventory file written");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains("devices") && !text.contains("authpass123"),
        "file is not encrypted: {text}"
    );
    let from_file = decrypt_file(&p.inventory_path(), KEY_24);
    let (_, exported) = get_inventory(&p);
    assert_eq!(from_file, exported);
    assert_subset(&doc, &from_file, "file");

    // A change through the discovery API is on disk when the call returns.
    let r = http_post_json(&p.addr(), SAVE_SEED, &seed_body().to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let from_file = decrypt_file(&p.inventory_path(), KEY_24);
    let (_, exported) = get_inventory(&p);
    assert_eq!(from_file, exported);
    assert_eq!(
        from_file["discoverySeeds"].as_array().map(Vec::len),
        Some(2)
    );
}

// ---------------------------------------------------------------------------
// 4. invalid input is refused and changes nothing
// ---------------------------------------------------------------------------

#[test]
fn bad_input_changes_nothing() {
    let p = Promsnmp::start(&env_with(&[("PROM_ENCRYPT_KEY", KEY_32)]));
    let doc = sample_inventory(free_udp_port(), free_udp_port());
    post_inventory_ok(&p, &doc);
    let file_before = fs::read(p.inventory_path()).expect("inventory file");
    let (body_before, _) = get_inventory(&p);

    let addr = p.addr();
    let r = http_post_json(&addr, INVENTORY, r#"{"devices": ["#);
    assert_bad_request(&r, None, "malformed JSON");

    let mutations: Vec<(&str, &str, Value, &str)> = vec![
        (
            "unknown agent type",
            "/devices/0/agents/0/type",
            json!("telnet"),
            "devices[0].agents[0].type",
        ),
        (
            "agent version 2",
            "/devices/0/agents/0/version",
            json!(2),
            "devices[0].agents[0].version",
        ),
        (
            "port 0",
            "/devices/0/agents/0/endpoint/port",
            json!(0),
            "devices[0].agents[0].endpoint.port",
        ),
        (
            "port 70000",
            "/devices/0/agents/0/endpoint/port",
            json!(70000),
            "devices[0].agents[0].endpoint.port",
        ),
        (
            "device without agents",
            "/devices/1/agents",
            json!([]),
            "devices[1].agents",
        ),
        (
            "auth protocol SHA-3",
            "/devices/1/agents/0/authProtocol",
            json!("SHA-3"),
            "devices[1].agents[0].authProtocol",
        ),
    ];
    for (what, pointer, value, field) in mutations {
        let mut bad = doc.clone();
        *bad.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} not in the sample")) = value;
        let r = http_post_json(&addr, INVENTORY, &bad.to_string());
        assert_bad_request(&r, Some(field), what);
    }

    let seed_mutations: Vec<(&str, &str, Value, &str)> = vec![
        (
            "seed agent type",
            "agentType",
            json!("snmp-telnet"),
            "agentType",
        ),
        ("seed version v4", "version", json!("v4"), "version"),
        ("seed port 0", "port", json!(0), "port"),
        ("seed port 70000", "port", json!(70000), "port"),
        (
            "seed without targets",
            "potentialTargets",
            json!([]),
            "potentialTargets",
        ),
        (
            "seed /8 block",
            "potentialTargets",
            json!(["10.0.0.0/8"]),
            "potentialTargets[0]",
        ),
        (
            "seed bad host",
            "potentialTargets",
            json!(["not a host!"]),
            "potentialTargets[0]",
        ),
    ];
    for (what, key, value, field) in seed_mutations {
        let mut bad = seed_body();
        bad[key] = value;
        let r = http_post_json(&addr, SAVE_SEED, &bad.to_string());
        assert_bad_request(&r, Some(field), what);
    }
    let r = http_post_json(
        &addr,
        "/promsnmp/discovery?scheduleNow=maybe",
        &seed_body().to_string(),
    );
    assert_bad_request(&r, None, "scheduleNow=maybe");

    let (body_after, _) = get_inventory(&p);
    assert_eq!(
        String::from_utf8_lossy(&body_after),
        String::from_utf8_lossy(&body_before),
        "a refused request changed the inventory"
    );
    assert!(
        fs::read(p.inventory_path()).unwrap() == file_before,
        "a refused request rewrote the inventory file"
    );
}

// ---------------------------------------------------------------------------
// 5. bad files: refuse to start, leave the file alone
// ---------------------------------------------------------------------------

#[test]
fn bad_files_refuse_to_start() {
    const KEY_A: &str = "AAAAAAAAAAAAAAAA";
    const KEY_B: &str = "BBBBBBBBBBBBBBBB";
    // A real file, written by promsnmp with key A.
    let writer = Promsnmp::start(&env_with(&[("PROM_ENCRYPT_KEY", KEY_A)]));
    post_inventory_ok(&writer, &sample_inventory(free_udp_port(), free_udp_port()));
    let good = fs::read(writer.inventory_path()).expect("inventory file");
    drop(writer);

    let dir = tempfile::Builder::new()
        .prefix("psnmp-badfiles")
        .tempdir()
        .expect("tempdir");
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("wrong key", good.clone(), KEY_B),
        ("truncated", good[..good.len() / 2].to_vec(), KEY_A),
        ("garbage", garbage, KEY_A),
        ("invalid plaintext", br#"{"devices": 3}"#.to_vec(), KEY_A),
        ("empty", Vec::new(), KEY_A),
    ];
    for (i, (what, bytes, key)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("inventory-{i}.json"));
        fs::write(&path, &bytes).unwrap();
        let path_s = path.display().to_string();
        let started = Instant::now();
        let (status, out) = run_promsnmp_once(
            &[],
            &env_with(&[("PROM_INV_FILE", &path_s), ("PROM_ENCRYPT_KEY", key)]),
        );
        assert!(!status.success(), "{what}: promsnmp started:\n{out}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert!(
            out.contains(&path_s),
            "{what}: output does not name {path_s}:\n{out}"
        );
        assert!(
            !out.contains("promsnmp listening"),
            "{what}: bound a port:\n{out}"
        );
        assert!(
            fs::read(&path).unwrap() == bytes,
            "{what}: the file was changed"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. bad environment: exit 2 before binding
// ---------------------------------------------------------------------------

#[test]
fn bad_env_exits_before_binding() {
    let cases: [(&str, &str); 8] = [
        ("SERVER_PORT", "70000"),
        ("COLLECTION_INTERVAL", "abc"),
        ("DISCOVERY_CRON", "0 2 * * *"),
        ("DISCOVERY_TZ", "Mars/Base"),
        ("PROM_ENCRYPT_KEY", "short"),
        ("PROM_ENCRYPT_KEY", "Sup3rS3cr3t-NotValid!!"),
        ("DISCOVERY_ON_START", "maybe"),
        ("PROMSNMP_ALLOWED_HOSTS", "https://promsnmp.example/"),
    ];
    for (var, value) in cases {
        let (status, out) = run_promsnmp_once(&[], &env_with(&[(var, value)]));
        assert_eq!(
            status.code(),
            Some(2),
            "{var}={value}: expected exit code 2 ({status}):\n{out}"
        );
        assert!(out.contains(var), "{var}={value}: not named:\n{out}");
        assert!(
            !out.contains("listening") && !out.contains("inventory loaded"),
            "{var}={value}: got past configuration:\n{out}"
        );
        if var == "PROM_ENCRYPT_KEY" {
            assert!(!out.contains(value), "the key was echoed:\n{out}");
        } else {
            assert!(out.contains(value), "{var}: value not shown:\n{out}");
        }
    }
}

// ---------------------------------------------------------------------------
// 7. restart
// ---------------------------------------------------------------------------

#[test]
fn restart_keeps_devices_and_seeds() {
    // Default key (PROM_ENCRYPT_KEY unset).
    let env = env_with(&[]);
    let mut p = Promsnmp::start(&env);
    assert!(
        p.log().contains("well-known"),
        "no warning about the default key:\n{}",
        p.log()
    );
    post_inventory_ok(&p, &sample_inventory(free_udp_port(), free_udp_port()));
    let r = http_post_json(&p.addr(), SAVE_SEED, &seed_body().to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let saved = r.json();
    let id = saved["id"].as_str().expect("seed id").to_string();
    assert!(!id.is_empty());
    assert_subset(&seed_body(), &saved, "saved seed");
    let list = http_get(&p.addr(), "/promsnmp/discovery").json();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let (_, before) = get_inventory(&p);

    let status = p.terminate();
    assert!(status.success(), "SIGTERM exit: {status}\n{}", p.log());
    let dir = p.into_dir();
    let mut p = Promsnmp::start_in(dir, &env);
    assert!(p.log().contains("well-known"));
    let (_, after) = get_inventory(&p);
    assert_eq!(after, before);
    assert_eq!(decrypt_file(&p.inventory_path(), DEFAULT_KEY), before);

    // Seeds by id, then all.
    let one = http_get(&p.addr(), &format!("/promsnmp/discovery/{id}"));
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["id"], id.as_str());
    let del = http_request(
        &p.addr(),
        "DELETE",
        &format!("/promsnmp/discovery/{id}"),
        &[],
        &[],
    );
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(del.json()["deleted"], 1);
    let gone = http_get(&p.addr(), &format!("/promsnmp/discovery/{id}"));
    assert_eq!(gone.status, 404, "{}", gone.text());
    let del_all = http_request(&p.addr(), "DELETE", "/promsnmp/discovery", &[], &[]);
    assert_eq!(del_all.status, 200, "{}", del_all.text());
    assert_eq!(del_all.json()["deleted"], 1);
    let file = decrypt_file(&p.inventory_path(), DEFAULT_KEY);
    assert_eq!(file["discoverySeeds"], json!([]));
    assert_eq!(file["devices"], before["devices"]);
    assert!(p.terminate().success());
}

// ---------------------------------------------------------------------------
// 8. SIGKILL while writing
// ---------------------------------------------------------------------------

/// Generation `g` of the writer's documents: 1..40 devices, each tagged `gen-g`.
fn generation_doc(g: u64, port: u16) -> Value {
    let n = 1 + (g * 13 % 40) as usize;
    let devices: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("g{g}-d{i}"),
                "sysName": format!("g{g}-d{i}"),
                "sysDescr": "x".repeat(64 + i),
                "sysLocation": format!("gen-{g}"),
                "agents": [{
                    "type": "snmp-community",
                    "id": format!("g{g}-a{i}"),
                    "endpoint": {"address": "127.0.0.1", "port": port},
                    "version": 1,
                    "readCommunity": "public"
                }]
            })
        })
        .collect();
    json!({"devices": devices, "discoverySeeds": []})
}

#[test]
fn sigkill_during_writes_never_tears_the_file() {
    let env = env_with(&[("PROM_ENCRYPT_KEY", KEY_32)]);
    let port = free_udp_port();
    for round in 0..3u64 {
        let p = Promsnmp::start(&env);
        post_inventory_ok(&p, &generation_doc(0, port));

        let acked = Arc::new(AtomicU64::new(0));
        let attempting = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (addr, acked, attempting, stop) =
                (p.addr(), acked.clone(), attempting.clone(), stop.clone());
            thread::spawn(move || -> Result<u64, String> {
                let start = Instant::now();
                let mut posts = 0;
                for g in 1..=5_000u64 {
                    if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                    let body = generation_doc(g, port).to_string();
                    attempting.store(g, Ordering::SeqCst);
                    match try_http_request(
                        &addr,
                        "POST",
                        INVENTORY,
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    ) {
                        Ok(r) if r.status == 200 => {
                            acked.store(g, Ordering::SeqCst);
                            posts += 1;
                        }
                        Ok(r) => return Err(format!("gen {g}: status {}: {}", r.status, r.text())),
                        Err(_) => break, // killed
                    }
                }
                Ok(posts)
            })
        };
        thread::sleep(Duration::from_millis(1_200 + jitter_ms(600)));
        let mut p = p;
        p.kill();
        stop.store(true, Ordering::SeqCst);
        let posts = writer
            .join()
            .expect("writer thread panicked")
            .unwrap_or_else(|e| panic!("round {round}: {e}\nlog:\n{}", p.log()));
        let acked = acked.load(Ordering::SeqCst);
        let attempting = attempting.load(Ordering::SeqCst);
        assert!(
            posts > 0,
            "round {round}: no write completed before the kill"
        );

        let file = decrypt_file(&p.inventory_path(), KEY_32);
        let devices = file["devices"].as_array().expect("devices in file");
        let gen: u64 = devices[0]["sysLocation"]
            .as_str()
            .and_then(|s| s.strip_prefix("gen-"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("untagged file: {file}"));
        assert!(
            gen == acked || gen == attempting,
            "round {round}: file holds generation {gen}, but the last acknowledged write was {acked} (in flight: {attempting})"
        );
        let expected = generation_doc(gen, port);
        assert_eq!(devices.len(), expected["devices"].as_array().unwrap().len());
        assert_subset(&expected, &file, "file");
        eprintln!(
            "round {round}: {posts} writes acknowledged, killed during {attempting}, file holds {gen}"
        );

        let dir = p.into_dir();
        let leftovers: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        if !leftovers.is_empty() {
            eprintln!("round {round}: temporary files left by the kill: {leftovers:?}");
        }
        let p = Promsnmp::start_in(dir, &env);
        let (_, served) = get_inventory(&p);
        assert_eq!(served, file, "round {round}: restart serves something else");
    }
}

// ---------------------------------------------------------------------------
// 9. healthcheck subcommand
// ---------------------------------------------------------------------------

#[test]
fn healthcheck_subcommand() {
    let p = Promsnmp::start(&env_with(&[]));
    let port = p.port.to_string();
    let (status, out) = run_promsnmp_once(&["healthcheck"], &env_with(&[("SERVER_PORT", &port)]));
    assert!(
        status.success(),
        "healthcheck against a running instance: {status}\n{out}"
    );

    let free = free_tcp_port().to_string();
    let (status, out) = run_promsnmp_once(&["healthcheck"], &env_with(&[("SERVER_PORT", &free)]));
    assert_eq!(
        status.code(),
        Some(1),
        "healthcheck against nothing: {status}\n{out}"
    );
    drop(p);

    // A replica bound to one address is asked there, not on 127.0.0.1.
    let bound = [("PROMSNMP_BIND_ADDRESS", "127.0.0.7")];
    let p = Promsnmp::start(&env_with(&bound));
    let port = p.port.to_string();
    let (status, out) = run_promsnmp_once(
        &["healthcheck"],
        &env_with(&[("SERVER_PORT", &port), bound[0]]),
    );
    assert!(
        status.success(),
        "healthcheck of a replica bound to 127.0.0.7: {status}\n{out}"
    );
}

/// Only one leading slash is accepted: `//promsnmp/inventory` must not reach
/// the export (a proxy that guards `/promsnmp/` by prefix would let it by).
#[test]
fn doubled_slashes_do_not_reach_admin_paths() {
    let p = Promsnmp::start(&env_with(&[("PROM_ENCRYPT_KEY", KEY_32)]));
    post_inventory_ok(&p, &sample_inventory(free_udp_port(), free_udp_port()));
    for path in ["//promsnmp/inventory", "///promsnmp/inventory"] {
        let r = http_get(&p.addr(), path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(
            !r.text().contains("public"),
            "{path} exported the inventory"
        );
    }
    assert_eq!(http_get(&p.addr(), "/promsnmp/inventory").status, 200);
}

/// Discovery jobs started through the API are capped: with the cap of
/// running jobs reached (each probing a silent agent), another request gets
/// 429 with the reason and saves nothing.
#[test]
fn discovery_jobs_are_capped() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = Promsnmp::start(&env_with(&[]));
    let seed = |i: usize| {
        json!({
            "id": format!("slow-{i}"),
            "potentialTargets": ["127.0.0.1"],
            "port": port,
            "version": "v2c",
            "agentType": "snmp-community",
            "readCommunity": "public",
            "timeout": 5000,
            "retries": 1
        })
        .to_string()
    };
    for i in 0..8 {
        let r = http_post_json(&p.addr(), "/promsnmp/discovery", &seed(i));
        assert_eq!(r.status, 202, "job {i}: {}", r.text());
    }
    let r = http_post_json(&p.addr(), "/promsnmp/discovery?saveSeed=true", &seed(8));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("retry when one has finished"),
        "{}",
        r.text()
    );
    let seeds = http_get(&p.addr(), "/promsnmp/discovery").json();
    assert!(
        !seeds.to_string().contains("slow-8"),
        "the refused seed was saved: {seeds}"
    );
    // Saving a seed without running it is not a job.
    let r = http_post_json(&p.addr(), SAVE_SEED, &seed(9));
    assert_eq!(r.status, 201, "{}", r.text());
}

// ---------------------------------------------------------------------------
// Per-device and per-seed API, ETag / If-Match
// ---------------------------------------------------------------------------

const DEVICES: &str = "/promsnmp/inventory/devices";
const SEEDS: &str = "/promsnmp/inventory/seeds";

/// A request to `p` with extra headers and a JSON body (none when empty).
fn call(
    p: &Promsnmp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    http_json(&p.addr(), method, path, headers, body)
}

/// The ETag of a response, which every inventory read and write carries.
fn etag(r: &HttpResponse) -> String {
    let tag = r
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag (status {}): {}", r.status, r.text()));
    assert!(
        tag.starts_with("\"v") && tag.ends_with('"'),
        "not a strong tag: {tag}"
    );
    tag.to_string()
}

/// One v2c device: `id`, `sys_name`, agent `a-<id>` at 127.0.0.1:`port`.
fn api_device(id: &str, sys_name: &str, port: u16) -> Value {
    json!({
        "id": id,
        "sysName": sys_name,
        "agents": [{
            "type": "snmp-community", "id": format!("a-{id}"),
            "endpoint": {"address": "127.0.0.1", "port": port},
            "version": 1, "timeout": 500, "retries": 0, "readCommunity": "public"
        }]
    })
}

#[test]
fn devices_and_seeds_one_at_a_time() {
    let p = Promsnmp::start(&env_with(&[]));
    let doc = json!({"devices": [
        api_device("d1", "twin", free_udp_port()),
        api_device("d2", "twin", free_udp_port()),
        api_device("d3", "rack 1/sw+a", free_udp_port()),
    ]});
    post_inventory_ok(&p, &doc);

    // Lists and reads, by id and by (percent-encoded) sysName, all tagged.
    let list = call(&p, "GET", DEVICES, &[], "");
    assert_eq!(list.status, 200, "{}", list.text());
    let tag = etag(&list);
    assert_eq!(list.json().as_array().map(Vec::len), Some(3));
    assert_eq!(etag(&http_get(&p.addr(), INVENTORY)), tag);
    let one = call(&p, "GET", &format!("{DEVICES}/d1"), &[], "");
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["sysName"], "twin");
    assert_eq!(etag(&one), tag);
    let named = call(&p, "GET", &format!("{DEVICES}/rack%201%2Fsw+a"), &[], "");
    assert_eq!(named.status, 200, "{}", named.text());
    assert_eq!(named.json()["id"], "d3");
    // An ambiguous sysName lists the devices it names; an unknown one is 404.
    let twin = call(&p, "GET", &format!("{DEVICES}/twin"), &[], "");
    assert_eq!(twin.status, 409, "{}", twin.text());
    assert_eq!(twin.json()["ids"], json!(["d1", "d2"]));
    assert_eq!(
        call(
            &p,
            "PATCH",
            &format!("{DEVICES}/twin"),
            &[],
            r#"{"sysLocation":"x"}"#
        )
        .status,
        409
    );
    let missing = call(&p, "GET", &format!("{DEVICES}/nope"), &[], "");
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(
        call(&p, "DELETE", &format!("{DEVICES}/nope"), &[], "").status,
        404
    );

    // PUT by sysName replaces the device; the id stays; another id is refused.
    let mut replaced = api_device("", "rack 1/sw+a", free_udp_port());
    replaced.as_object_mut().unwrap().remove("id");
    replaced["sysLocation"] = json!("Rack 9");
    let put = call(
        &p,
        "PUT",
        &format!("{DEVICES}/rack%201%2Fsw+a"),
        &[],
        &replaced.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["id"], "d3");
    assert_eq!(put.json()["sysLocation"], "Rack 9");
    assert_ne!(etag(&put), tag);
    replaced["id"] = json!("other");
    let r = call(
        &p,
        "PUT",
        &format!("{DEVICES}/d3"),
        &[],
        &replaced.to_string(),
    );
    assert_bad_request(&r, Some("id"), "PUT with another id");
    // PATCH merges; a field set to null goes back to its default.
    let r = call(
        &p,
        "PATCH",
        &format!("{DEVICES}/d3"),
        &[],
        r#"{"sysContact":"noc","modules":["system"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (
            r.json()["sysContact"].clone(),
            r.json()["sysLocation"].clone()
        ),
        (json!("noc"), json!("Rack 9"))
    );
    assert_eq!(r.json()["modules"], json!(["system"]));
    let r = call(
        &p,
        "PATCH",
        &format!("{DEVICES}/d3"),
        &[],
        r#"{"modules":null}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("modules").is_none(), "{}", r.text());
    // Bad input changes nothing: malformed JSON, wrong types, unknown modules, an id change.
    let (before, _) = get_inventory(&p);
    let d3 = format!("{DEVICES}/d3");
    assert_bad_request(
        &call(&p, "PATCH", &d3, &[], "{\"sysName\":"),
        Some("body"),
        "malformed",
    );
    assert_bad_request(
        &call(&p, "PATCH", &d3, &[], r#"{"agents":7}"#),
        Some("agents"),
        "agents not a list",
    );
    assert_bad_request(
        &call(&p, "PATCH", &d3, &[], r#"{"modules":["nope"]}"#),
        Some("modules[0]"),
        "unknown module",
    );
    assert_bad_request(
        &call(&p, "PATCH", &d3, &[], r#"{"id":"d9"}"#),
        Some("id"),
        "id change",
    );
    assert_bad_request(
        &call(&p, "PATCH", &d3, &[], "[1]"),
        Some("body"),
        "not an object",
    );
    assert_bad_request(&call(&p, "PUT", &d3, &[], ""), Some("body"), "no body");
    assert_eq!(
        get_inventory(&p).0,
        before,
        "a refused write changed the inventory"
    );
    // DELETE answers the id it removed.
    let r = call(&p, "DELETE", &format!("{DEVICES}/rack%201%2Fsw+a"), &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], "d3");
    etag(&r);
    assert_eq!(call(&p, "GET", &d3, &[], "").status, 404);
    assert!(p.log().contains("inventory entry changed"), "no INFO line");

    // Seeds: add (201 + Location, id generated), read, patch, replace, delete.
    let r = call(&p, "POST", SEEDS, &[], &seed_body().to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().expect("generated id").to_string();
    assert_eq!(r.header("location"), Some(format!("{SEEDS}/{id}").as_str()));
    let seed = format!("{SEEDS}/{id}");
    assert_eq!(call(&p, "GET", &seed, &[], "").json()["port"], 161);
    let mut dup = seed_body();
    dup["id"] = json!(id);
    assert_eq!(call(&p, "POST", SEEDS, &[], &dup.to_string()).status, 409);
    let r = call(&p, "PATCH", &seed, &[], r#"{"port":1161}"#);
    assert_eq!(
        (r.status, r.json()["port"].clone()),
        (200, json!(1161)),
        "{}",
        r.text()
    );
    let bad_targets = json!({"potentialTargets": ["10.0.0.0/8"]}).to_string();
    assert_eq!(call(&p, "PATCH", &seed, &[], &bad_targets).status, 400);
    let r = call(&p, "PUT", &seed, &[], &seed_body().to_string());
    assert_eq!(
        (r.status, r.json()["port"].clone()),
        (200, json!(161)),
        "{}",
        r.text()
    );
    let list = call(&p, "GET", SEEDS, &[], "");
    assert_eq!(
        list.json(),
        http_get(&p.addr(), "/promsnmp/discovery").json()
    );
    assert_eq!(
        call(&p, "DELETE", &seed, &[], "").json()["deleted"],
        id.as_str()
    );
    assert_eq!(call(&p, "GET", &seed, &[], "").status, 404);
    // Each route is counted under its template.
    let counted = |route: &str, method: &str, status: u16| {
        self_metric(
            &p.addr(),
            &format!("promsnmp_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(counted("/promsnmp/inventory/devices/{id}", "GET", 409), 1.0);
    assert_eq!(
        counted("/promsnmp/inventory/seeds/{id}", "DELETE", 200),
        1.0
    );
    assert_eq!(counted("/promsnmp/inventory/seeds", "POST", 201), 1.0);
}

#[test]
fn stale_if_match_is_refused_and_changes_nothing() {
    let p = Promsnmp::start(&env_with(&[]));
    post_inventory_ok(
        &p,
        &json!({"devices": [api_device("d1", "one", free_udp_port())]}),
    );
    let read = http_get(&p.addr(), INVENTORY);
    let tag = etag(&read);
    // Writes with the current tag pass and answer the new one.
    let r = call(
        &p,
        "PATCH",
        &format!("{DEVICES}/d1"),
        &[("If-Match", &tag)],
        r#"{"sysLocation":"A"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let newer = etag(&r);
    assert_ne!(newer, tag);
    assert_eq!(etag(&http_get(&p.addr(), INVENTORY)), newer);
    // The old tag is stale now, for every kind of write: 412, nothing changes.
    let (before, _) = get_inventory(&p);
    let stale = [("If-Match", tag.as_str())];
    let d2 = api_device("d2", "two", free_udp_port()).to_string();
    for (method, path, body) in [
        (
            "PATCH",
            format!("{DEVICES}/d1"),
            r#"{"sysLocation":"B"}"#.to_string(),
        ),
        (
            "PUT",
            format!("{DEVICES}/d1"),
            api_device("d1", "one", 9).to_string(),
        ),
        ("DELETE", format!("{DEVICES}/d1"), String::new()),
        ("POST", DEVICES.to_string(), d2.clone()),
        ("POST", SEEDS.to_string(), seed_body().to_string()),
        (
            "POST",
            INVENTORY.to_string(),
            json!({"devices": []}).to_string(),
        ),
    ] {
        let r = call(&p, method, &path, &stale, &body);
        assert_eq!(r.status, 412, "{method} {path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["etag"], newer.as_str(), "{v}");
        assert!(
            v["version"].is_u64() && v["message"].as_str().unwrap().contains("version"),
            "{v}"
        );
    }
    assert_eq!(
        get_inventory(&p).0,
        before,
        "a refused write changed the inventory"
    );
    // A tag list naming the current one, `*`, and no If-Match all pass.
    let list = format!("\"v0-000000000000\", {newer}");
    let r = call(&p, "POST", DEVICES, &[("If-Match", &list)], &d2);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = call(
        &p,
        "PATCH",
        &format!("{DEVICES}/d2"),
        &[("If-Match", "*")],
        r#"{"sysLocation":"C"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        &p,
        "POST",
        INVENTORY,
        &[("If-Match", &etag(&r))],
        &get_inventory(&p).1.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    etag(&r);
    // A malformed If-Match is a 400 and changes nothing either.
    let (before, _) = get_inventory(&p);
    for bad in ["v17", "\"v1", "W/", "\"a\" \"b\""] {
        let r = call(
            &p,
            "DELETE",
            &format!("{DEVICES}/d1"),
            &[("If-Match", bad)],
            "",
        );
        assert_bad_request(&r, None, bad);
    }
    assert_eq!(get_inventory(&p).0, before);
}

/// Two clients patching two devices at once, without If-Match: each write
/// changes only its own device, so both end with their last values.
#[test]
fn concurrent_changes_to_two_devices_are_both_kept() {
    let p = Arc::new(Promsnmp::start(&env_with(&[])));
    post_inventory_ok(
        &p,
        &json!({"devices": [api_device("d1", "one", free_udp_port()), api_device("d2", "two", free_udp_port())]}),
    );
    const ROUNDS: usize = 25;
    let writers: Vec<_> = ["d1", "d2"]
        .into_iter()
        .map(|id| {
            let p = p.clone();
            thread::spawn(move || {
                for i in 0..ROUNDS {
                    let body = json!({"sysLocation": format!("{id}-{i}")}).to_string();
                    let r = call(&p, "PATCH", &format!("{DEVICES}/{id}"), &[], &body);
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let (_, inv) = get_inventory(&p);
    for (i, id) in ["d1", "d2"].iter().enumerate() {
        assert_eq!(
            inv["devices"][i]["sysLocation"],
            format!("{id}-{}", ROUNDS - 1),
            "{inv}"
        );
    }
}

#[test]
fn adding_a_device_with_and_without_a_probe() {
    let snmpd = Snmpd::start(&SnmpdConfig {
        sys_name: "probed-sw".into(),
        sys_location: "hall-3".into(),
        ..SnmpdConfig::default()
    });
    let p = Promsnmp::start(&env_with(&[]));
    // Without a probe: stored as sent, id generated, sysName from the address.
    let mut plain = api_device("", "", free_udp_port());
    plain.as_object_mut().unwrap().remove("id");
    let r = call(&p, "POST", DEVICES, &[], &plain.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("{DEVICES}/{id}").as_str())
    );
    assert_eq!(r.json()["sysName"], "127.0.0.1");
    assert_eq!(
        call(&p, "GET", &format!("{DEVICES}/{id}"), &[], "").status,
        200
    );
    // The same endpoint again, or the same id: 409 naming the device.
    let r = call(&p, "POST", DEVICES, &[], &plain.to_string());
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["ids"], json!([id]));
    let mut same_id = api_device(&id, "x", free_udp_port());
    same_id["id"] = json!(id);
    assert_eq!(
        call(&p, "POST", DEVICES, &[], &same_id.to_string()).status,
        409
    );
    // Moving another device's agent onto that endpoint is refused as well
    // (it would be polled twice), and nothing changes.
    let other = api_device("other", "other", free_udp_port());
    assert_eq!(
        call(&p, "POST", DEVICES, &[], &other.to_string()).status,
        201
    );
    let mut moved = other["agents"].clone();
    moved[0]["endpoint"] = plain["agents"][0]["endpoint"].clone();
    let r = call(
        &p,
        "PATCH",
        &format!("{DEVICES}/other"),
        &[],
        &json!({ "agents": moved }).to_string(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["ids"], json!([id]));
    let kept = call(&p, "GET", &format!("{DEVICES}/other"), &[], "").json();
    assert_eq!(
        kept["agents"][0]["endpoint"],
        other["agents"][0]["endpoint"]
    );
    assert_eq!(
        call(&p, "DELETE", &format!("{DEVICES}/other"), &[], "").status,
        200
    );

    // With a probe of an agent that answers: the system group fills in.
    let mut live = api_device("live", "", snmpd.port);
    live["sysContact"] = json!("given@example.org");
    let r = call(
        &p,
        "POST",
        &format!("{DEVICES}?probe=true"),
        &[],
        &live.to_string(),
    );
    assert_eq!(r.status, 201, "{}\n{}", r.text(), p.log());
    let v = r.json();
    assert_eq!(v["sysName"], "probed-sw", "{v}");
    assert_eq!(v["sysLocation"], "hall-3", "{v}");
    assert_eq!(
        v["sysContact"], "given@example.org",
        "what the body gave stays: {v}"
    );
    assert!(v["sysDescr"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert!(v["discoveredAt"].is_string(), "{v}");
    // Agents that do not answer (nothing there; a wrong community): 422
    // naming the agent and the cause, nothing stored.
    let (before, _) = get_inventory(&p);
    let silent = api_device("silent", "", free_udp_port());
    let mut wrong = api_device("wrong", "", snmpd.port);
    wrong["agents"][0]["readCommunity"] = json!("not-public");
    for body in [silent, wrong] {
        let r = call(
            &p,
            "POST",
            &format!("{DEVICES}?probe=true"),
            &[],
            &body.to_string(),
        );
        assert_eq!(r.status, 422, "{}", r.text());
        let port = body["agents"][0]["endpoint"]["port"].as_u64().unwrap();
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains(&format!("127.0.0.1:{port} did not answer"))
                && message.contains("no answer")
                && message.contains("nothing was stored"),
            "{message}"
        );
    }
    assert_eq!(get_inventory(&p).0, before, "a refused device was stored");
}

/// The issue's case: the community of agents[0] is what polls use, also
/// when the document carries a primaryAgent copy; the export keeps the
/// Java shape.
#[test]
fn editing_an_agent_changes_what_is_polled() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&env_with(&[]));
    let mut device = api_device("d1", "polled", snmpd.port);
    device["primaryAgent"] = device["agents"][0].clone();
    post_inventory_ok(&p, &json!({"devices": [device.clone()]}));
    let scrape = || http_get(&p.addr(), "/snmp?target=polled&live=true");
    assert_eq!(scrape().status, 200, "{}", scrape().text());

    // Edit the agent alone (arrays are replaced whole by a merge patch):
    // polls use it at once.
    for (community, polled) in [("wrong", 503), ("public", 200)] {
        let mut agents = device["agents"].clone();
        agents[0]["readCommunity"] = json!(community);
        let patch = json!({ "agents": agents }).to_string();
        let r = call(&p, "PATCH", &format!("{DEVICES}/d1"), &[], &patch);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["primaryAgent"]["readCommunity"], community);
        let scraped = scrape();
        assert_eq!(scraped.status, polled, "{community}: {}", scraped.text());
    }

    // An import whose copy differs from its agent is refused, naming both.
    let mut divergent = device.clone();
    divergent["agents"][0]["readCommunity"] = json!("wrong");
    let r = http_post_json(
        &p.addr(),
        INVENTORY,
        &json!({"devices": [divergent]}).to_string(),
    );
    assert_bad_request(
        &r,
        Some("devices[0].primaryAgent"),
        "divergent primaryAgent",
    );
    assert!(r.text().contains("agents[0]"), "{}", r.text());
    // By reference it is accepted, and the agent is what polls use.
    let mut by_id = device.clone();
    by_id["agents"][0]["readCommunity"] = json!("wrong");
    by_id["primaryAgent"] = json!({"id": "a-d1"});
    post_inventory_ok(&p, &json!({"devices": [by_id]}));
    assert_eq!(scrape().status, 503, "{}", scrape().text());

    // The export keeps the Java shape: primaryAgent is the agent itself.
    let (_, inv) = get_inventory(&p);
    let d = &inv["devices"][0];
    assert!(d["primaryAgent"].is_object(), "{d}");
    assert_eq!(d["primaryAgent"], d["agents"][0], "{d}");
}
