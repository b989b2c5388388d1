//! Self-tests of the integration-test harness (tests/common); they don't need
//! the promsnmp binary. Run with `cargo test --test harness`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";
const IF_INDEX: &str = "1.3.6.1.2.1.2.2.1.1";
const IF_DESCR: &str = "1.3.6.1.2.1.2.2.1.2";

#[test]
fn parses_net_snmp_output() {
    let out = ".1.3.6.1.2.1.1.3.0 = Timeticks: (369) 0:00:03.69\n\
               .1.3.6.1.2.1.1.5.0 = STRING: \"a \\\"quoted\\\" name\"\n\
               .1.3.6.1.2.1.2.2.1.6.1 = \"\"\n\
               .1.3.6.1.2.1.2.2.1.6.2 = Hex-STRING: E6 E8 52 62 A2 D5 00 01 02 03 04 05 06 07 08 09\n\
               0A 0B \n\
               .1.3.6.1.2.1.1.1.0 = STRING: \"line one\n\
               line two\"\n\
               .1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: 18446744073709551615\n\
               .1.3.6.1.2.1.1.3.0 = 4242\n\
               .1.3.6.1.2.1.1.99.0 = No Such Object available on this agent at this OID\n";
    let rows = parse_snmp_output(out);
    let want: Vec<(&str, &str, &str)> = vec![
        ("1.3.6.1.2.1.1.3.0", "Timeticks", "369"),
        ("1.3.6.1.2.1.1.5.0", "STRING", "a \"quoted\" name"),
        ("1.3.6.1.2.1.2.2.1.6.1", "STRING", ""),
        (
            "1.3.6.1.2.1.2.2.1.6.2",
            "Hex-STRING",
            "E6 E8 52 62 A2 D5 00 01 02 03 04 05 06 07 08 09 0A 0B",
        ),
        ("1.3.6.1.2.1.1.1.0", "STRING", "line one\nline two"),
        (
            "1.3.6.1.2.1.31.1.1.1.6.1",
            "Counter64",
            "18446744073709551615",
        ),
        ("1.3.6.1.2.1.1.3.0", "Timeticks", "4242"),
        ("1.3.6.1.2.1.1.99.0", "NoSuchObject", ""),
    ];
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn snmpd_v2c_and_v3() {
    let mut cfg = SnmpdConfig::default();
    let user = V3User::auth_priv("harness", "SHA-256", "authpass123", "AES", "privpass123");
    cfg.users.push(user.clone());
    let snmpd = Snmpd::start(&cfg);
    let addr = snmpd.addr();

    let mut args: Vec<String> = user.snmp_args();
    args.extend([addr.clone(), SYS_NAME.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rows = snmp_cmd("snmpget", &args);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0],
        (SYS_NAME.into(), "STRING".into(), cfg.sys_name.clone())
    );

    let system = snmpbulkwalk(&addr, "public", "1.3.6.1.2.1.1");
    let get = |oid: &str| {
        system
            .iter()
            .find(|(o, _, _)| o == oid)
            .map(|(_, t, v)| (t.as_str(), v.as_str()))
    };
    assert_eq!(
        get("1.3.6.1.2.1.1.4.0"),
        Some(("STRING", "noc@example.org"))
    );
    assert_eq!(get("1.3.6.1.2.1.1.6.0"), Some(("STRING", "rack 1")));
    assert!(matches!(get("1.3.6.1.2.1.1.3.0"), Some(("Timeticks", v)) if v.parse::<u64>().is_ok()));

    let descr = snmpbulkwalk(&addr, "public", IF_DESCR);
    assert!(!descr.is_empty(), "no ifDescr rows");
    assert!(descr
        .iter()
        .all(|(o, t, _)| o.starts_with(IF_DESCR) && t == "STRING"));
    assert!(snmp_get_u64(&addr, "public", "1.3.6.1.2.1.11.1.0") > 0);
    let pid = snmpd.pid();
    drop(snmpd);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "snmpd survived drop"
    );
}

/// Which v3 auth x priv combinations (and spellings) net-snmp supports, both
/// in snmpd's `createUser` and in the tools' `-a` / `-x`.
#[test]
fn snmpd_v3_protocol_matrix() {
    let auths = ["MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"];
    // (createUser spelling, -x spelling, must work)
    let privs = [
        ("DES", "DES", true),
        ("AES", "AES", true),
        ("AES-192", "AES-192", true),
        ("AES-256", "AES-256", true),
        ("AES192", "AES192", false),
        ("AES256", "AES256", false),
        ("AES-256", "AES256", false),
        ("AES192C", "AES192C", false),
        ("AES256C", "AES256C", false),
        ("AES-256", "AES256C", false),
    ];
    let mut cfg = SnmpdConfig::default();
    // (user, snmp args, must work, label)
    let mut cases: Vec<(V3User, bool, String)> = Vec::new();
    cases.push((V3User::no_auth("noauth"), true, "noAuthNoPriv".into()));
    for (ai, a) in auths.iter().enumerate() {
        let u = V3User::auth(&format!("a{ai}"), a, "authpass123");
        cases.push((u, true, format!("{a} / -")));
        for (pi, (create, query, must)) in privs.iter().enumerate() {
            let u = V3User::auth_priv(
                &format!("a{ai}p{pi}"),
                a,
                "authpass123",
                create,
                "privpass123",
            );
            let mut q = u.clone();
            q.privacy = Some((query.to_string(), "privpass123".into()));
            cfg.users.push(u);
            cases.push((q, *must, format!("{a} / createUser {create}, -x {query}")));
        }
    }
    cfg.users.push(V3User::no_auth("noauth"));
    for (ai, a) in auths.iter().enumerate() {
        cfg.users
            .push(V3User::auth(&format!("a{ai}"), a, "authpass123"));
    }
    let snmpd = Snmpd::start(&cfg);
    let addr = snmpd.addr();
    let started = Instant::now();
    let results: Vec<(String, bool, Result<String, String>)> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(u, must, label)| {
                let addr = addr.clone();
                s.spawn(move || {
                    let mut args = u.snmp_args();
                    args.extend(["-r0".into(), "-t2".into(), addr, SYS_NAME.into()]);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let r = try_snmp_cmd("snmpget", &args).and_then(|rows| match rows.first() {
                        Some((_, t, v)) if t == "STRING" => Ok(v.clone()),
                        _ => Err(format!("{rows:?}")),
                    });
                    (label.clone(), *must, r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut failures = Vec::new();
    for (label, must, r) in &results {
        let verdict = match r {
            Ok(v) if v == "testdev" => "answers",
            Ok(_) => "wrong value",
            Err(_) => "NO ANSWER",
        };
        println!("{label:50} {verdict}");
        if *must && verdict != "answers" {
            failures.push(format!("{label}: {r:?}"));
        }
    }
    println!("matrix took {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "required combinations failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn netns_device_with_100_veth_pairs() {
    let started = Instant::now();
    let dev = NetnsDevice::start(100, &SnmpdConfig::default());
    println!("netns device up in {:?}", started.elapsed());
    assert_eq!(dev.interfaces, 201);
    let ns = dev.namespace().to_string();
    let rows = snmpbulkwalk(&dev.addr(), "public", IF_INDEX);
    assert_eq!(rows.len(), 201, "ifIndex rows: {rows:?}");
    assert!(rows.iter().all(|(_, t, _)| t == "INTEGER"));

    // several concurrent clients through the relay
    let addr = dev.addr();
    thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| snmpbulkwalk(&addr, "public", IF_DESCR).len()))
            .collect();
        for h in hs {
            assert_eq!(h.join().expect("thread"), 201);
        }
    });
    let name = snmp_cmd("snmpget", &["-v2c", "-c", "public", &addr, SYS_NAME]);
    assert_eq!(name[0].2, "testdev");

    let t = Instant::now();
    drop(dev);
    println!("netns device dropped in {:?}", t.elapsed());
    let ip = require_program("ip", "iproute2");
    let list = Command::new(ip)
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.split_whitespace().any(|w| w == ns),
        "namespace {ns} still exists:\n{list}"
    );
}

#[test]
fn prometheus_scrapes_itself() {
    let cfg = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
               scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['__PROMETHEUS_ADDR__']\n";
    let prom = Prometheus::start(cfg, &[]);
    let v = prom.query("up");
    assert_eq!(v["status"], "success");
    let up = wait_for(
        "up{job=\"self\"} == 1",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            let v = prom.query("up{job=\"self\"}");
            let r = v["data"]["result"].as_array()?.first()?.clone();
            (r["value"][1] == "1").then_some(r)
        },
    );
    assert_eq!(up["metric"]["instance"], prom.addr());
    let t = prom.targets();
    assert_eq!(t["data"]["activeTargets"][0]["health"], "up", "{t}");
}

#[test]
fn http_client_decodes_chunked_and_content_length() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = thread::spawn(move || {
        let mut requests = Vec::new();
        for i in 0..2 {
            let (mut c, _) = listener.accept().expect("accept");
            c.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = vec![0u8; 4096];
            let mut req = Vec::new();
            while !String::from_utf8_lossy(&req).contains("\r\n\r\n") {
                let n = c.read(&mut buf).expect("read");
                assert!(n > 0, "client closed early");
                req.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            if let Some(cl) = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                let head = text.find("\r\n\r\n").expect("head") + 4;
                while req.len() < head + cl {
                    let n = c.read(&mut buf).expect("read body");
                    assert!(n > 0);
                    req.extend_from_slice(&buf[..n]);
                }
            }
            requests.push(String::from_utf8_lossy(&req).into_owned());
            let resp: &[u8] = if i == 0 {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: yes\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
            } else {
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
            };
            c.write_all(resp).expect("write");
        }
        requests
    });
    let r = http_get(&addr, "/x?q=1");
    assert_eq!((r.status, r.text().as_str()), (200, "hello, world"));
    assert_eq!(r.header("x-TEST"), Some("yes"));
    let r = http_post_json(&addr, "/api", "{\"a\":1}");
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["ok"], true);
    let reqs = server.join().expect("server");
    assert!(
        reqs[0].starts_with("GET /x?q=1 HTTP/1.1\r\n"),
        "{}",
        reqs[0]
    );
    assert!(reqs[1].starts_with("POST /api HTTP/1.1\r\n"));
    assert!(reqs[1].contains("Content-Type: application/json\r\n"));
    assert!(reqs[1].ends_with("\r\n\r\n{\"a\":1}"), "{}", reqs[1]);
    assert_eq!(urlencode("up{job=\"a b\"}"), "up%7Bjob%3D%22a%20b%22%7D");
}

#[test]
#[should_panic(
    expected = "required program `no-such-program-xyz` not found on PATH (Debian package `nothing`)"
)]
fn require_program_names_the_package() {
    require_program("no-such-program-xyz", "nothing");
}
