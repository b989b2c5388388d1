//! The service around the polls: background collection and the cache,
//! single-flight scrapes, format negotiation on `/metrics`, actuator and
//! management endpoints, scheduled and on-start discovery, graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Imports one community device named `name` at 127.0.0.1:`port`.
fn add_device(p: &Promsnmp, name: &str, port: u16, timeout_ms: u64) {
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &device_doc(name, port, timeout_ms),
    );
    assert_eq!(r.status, 200, "import: {}", r.text());
}

fn device_doc(name: &str, port: u16, timeout_ms: u64) -> String {
    inventory_doc(&[community_device(name, port, timeout_ms, 0)])
}

#[test]
fn background_collection_fills_the_cache() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "1000")]);
    add_device(&p, "bg", snmpd.port, 1000);
    wait_for(
        "a background poll",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            (try_self_metric(&p.addr(), r#"promsnmp_snmp_requests_total{device="bg"}"#)
                .unwrap_or(0.0)
                > 0.0)
                .then_some(())
        },
    );
    let r = http_get(&p.addr(), "/snmp?target=bg");
    assert_eq!(r.status, 200);
    assert_eq!(
        self_metric(
            &p.addr(),
            r#"cache_gets_total{cache="metrics",result="hit"}"#
        ),
        1.0
    );
    assert_eq!(
        self_metric(
            &p.addr(),
            r#"cache_gets_total{cache="metrics",result="miss"}"#
        ),
        0.0
    );
    assert_eq!(
        self_metric(&p.addr(), "promsnmp_inventory_device_count"),
        1.0
    );
    // /metrics serves every cached device with a device_name label.
    let m = http_get(&p.addr(), "/metrics").text();
    assert!(
        m.contains(r#"sysUpTime{device_name="bg",device_id="#),
        "{m}"
    );
}

#[test]
fn concurrent_scrapes_share_one_poll() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    add_device(&p, "shared", snmpd.port, 1000);
    let series = r#"promsnmp_snmp_requests_total{device="shared"}"#;
    assert_eq!(
        http_get(&p.addr(), "/snmp?target=shared&live=true").status,
        200
    );
    let one_poll = self_metric(&p.addr(), series);
    assert!(one_poll >= 1.0);
    assert_eq!(
        http_request(&p.addr(), "POST", "/promsnmp/evictCache", &[], b"").json()["evicted"],
        1
    );

    let addr = p.addr();
    let scrapes: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http_get(&addr, "/snmp?target=shared").status)
        })
        .collect();
    for s in scrapes {
        assert_eq!(s.join().unwrap(), 200);
    }
    // Eight scrapes of an empty cache cost one poll, not eight.
    assert_eq!(self_metric(&p.addr(), series), 2.0 * one_poll);
}

#[test]
fn metrics_endpoint_negotiates_formats() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    add_device(&p, "fmt", snmpd.port, 1000);
    assert_eq!(http_get(&p.addr(), "/snmp?target=fmt").status, 200);

    let om = http_get(&p.addr(), "/metrics");
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.text().ends_with("# EOF\n"));
    assert!(om.text().contains("# TYPE interface_utilization histogram"));

    let text = http_request(
        &p.addr(),
        "GET",
        "/metrics?target=fmt",
        &[("Accept", "text/plain;version=0.0.4")],
        b"",
    );
    assert!(text
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(text.text().contains("# TYPE ifHCInOctets counter"));

    let proto_accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3";
    for path in ["/metrics", "/snmp?target=fmt"] {
        let pb = http_request(&p.addr(), "GET", path, &[("Accept", proto_accept)], b"");
        assert_eq!(pb.status, 200);
        assert!(
            pb.header("content-type")
                .unwrap()
                .contains("encoding=delimited"),
            "{path}"
        );
        // A length-delimited MetricFamily starts with a varint length, then field 1 (name).
        assert!(
            pb.body.len() > 10 && pb.body.windows(9).any(|w| w == b"sysUpTime"),
            "{path}"
        );
    }
}

#[test]
fn actuator_and_management_endpoints() {
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    let h = http_get(&p.addr(), "/actuator/health");
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "UP");
    for c in ["inventory", "store", "livenessState", "readinessState"] {
        assert_eq!(h["components"][c]["status"], "UP", "{c}: {h}");
    }
    assert_eq!(
        http_get(&p.addr(), "/actuator/health/liveness").json()["status"],
        "UP"
    );
    assert_eq!(
        http_get(&p.addr(), "/actuator/health/readiness").json()["status"],
        "UP"
    );
    let own = http_get(&p.addr(), "/actuator/prometheus").text();
    for name in [
        "cache_gets_total",
        "promsnmp_inventory_device_count",
        "promsnmp_scrape_duration_seconds",
        "promsnmp_http_requests_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(own.contains(name), "missing {name}");
    }
    assert_eq!(http_get(&p.addr(), "/promsnmp/hello").status, 200);
    assert_eq!(
        http_get(&p.addr(), "/promsnmp/authProtocols")
            .json()
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let privs = http_get(&p.addr(), "/promsnmp/privProtocols").json();
    assert_eq!(
        privs,
        serde_json::json!(["DES", "AES128", "AES192", "AES256"])
    );
    let pools = http_get(&p.addr(), "/promsnmp/threadPools").json();
    assert!(
        pools["runtime"]["workers"].as_u64().unwrap() >= 1,
        "{pools}"
    );
    assert_eq!(pools["collector"]["concurrency"], 32);
    assert_eq!(http_get(&p.addr(), "/nope").status, 404);
    assert_eq!(
        http_request(
            &p.addr(),
            "PUT",
            "/promsnmp/inventory",
            &[("Content-Type", "application/json")],
            b"{}"
        )
        .status,
        405
    );
}

/// Waits (bounded) until the inventory's first device is `sys_name`.
fn wait_for_device(p: &Promsnmp, sys_name: &str, what: &str) {
    wait_for(
        what,
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let inv = http_get(&p.addr(), "/promsnmp/inventory").json();
            (inv["devices"][0]["sysName"] == sys_name).then_some(())
        },
    );
}

fn seed_file(dir: &std::path::Path, port: u16) {
    // A plaintext file is accepted and encrypted on the next write.
    let doc = format!(
        r#"{{"devices":[],"discoverySeeds":[{{"id":"seed-1","potentialTargets":["127.0.0.1"],"port":{port},"version":"v2c","agentType":"snmp-community","readCommunity":"public"}}]}}"#
    );
    std::fs::write(dir.join("inventory.json"), doc).unwrap();
}

#[test]
fn discovery_on_start_and_on_schedule() {
    let snmpd = Snmpd::start(&SnmpdConfig {
        sys_name: "sched".into(),
        ..Default::default()
    });

    let dir = tempfile::tempdir().unwrap();
    seed_file(dir.path(), snmpd.port);
    let p = Promsnmp::start_in(
        dir,
        &[("DISCOVERY_CRON", "-"), ("DISCOVERY_ON_START", "true")],
    );
    wait_for_device(&p, "sched", "on-start discovery");
    drop(p);

    let dir = tempfile::tempdir().unwrap();
    seed_file(dir.path(), snmpd.port);
    let p = Promsnmp::start_in(
        dir,
        &[("DISCOVERY_CRON", "*/2 * * * * *"), ("DISCOVERY_TZ", "UTC")],
    );

    wait_for_device(&p, "sched", "scheduled discovery");
    // Not on start (DISCOVERY_ON_START is false): the schedule ran the seed.
    let log = p.log();
    assert!(
        log.contains("running saved discovery seeds") && log.contains("schedule"),
        "{log}"
    );
    assert!(
        !log.lines().any(
            |l| l.contains("running saved discovery seeds") && l.contains("DISCOVERY_ON_START")
        ),
        "{log}"
    );
    let seed = http_get(&p.addr(), "/promsnmp/discovery/seed-1").json();
    assert_eq!(seed["progress"]["found"], 1, "{seed}");
}

#[test]
fn sigterm_finishes_in_flight_requests() {
    // An agent that never answers: the scrape waits its full timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    add_device(&p, "slow", port, 1500);
    let addr = p.addr();
    let started = Instant::now();
    let scrape = std::thread::spawn(move || http_get(&addr, "/snmp?target=slow"));
    std::thread::sleep(Duration::from_millis(400));
    let status = p.terminate();
    let r = scrape.join().unwrap();
    assert_eq!(
        r.status,
        503,
        "the in-flight scrape got its answer: {}",
        r.text()
    );
    assert!(r.text().contains("no answer"), "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(status.success(), "exit status {status:?}\n{}", p.log());
    assert!(p.log().contains("promsnmp stopped"), "{}", p.log());
}

#[test]
fn failed_polls_are_shared_and_scrape_timeouts_honoured() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    add_device(&p, "mute", port, 1000);

    // Six scrapes of a silent device wait for one poll's timeout, not six in a row.
    let started = Instant::now();
    let addr = p.addr();
    let scrapes: Vec<_> = (0..6)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http_get(&addr, "/snmp?target=mute").status)
        })
        .collect();
    for s in scrapes {
        assert_eq!(s.join().unwrap(), 503);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2900),
        "six scrapes took {elapsed:?}"
    );

    // Prometheus' scrape timeout bounds the wait for a slow poll.
    let started = Instant::now();
    let r = http_request(
        &p.addr(),
        "GET",
        "/snmp?target=mute&live=true",
        &[("X-Prometheus-Scrape-Timeout-Seconds", "0.5")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert!(r.text().contains("scrape timeout"), "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn metrics_keeps_devices_with_one_sysname_apart() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "1000")]);
    let agent = format!(
        r#"{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{}}},"version":1,"readCommunity":"public"}}"#,
        snmpd.port
    );
    let doc = format!(
        r#"{{"devices":[{{"id":"twin-a","sysName":"twin","agents":[{agent}]}},{{"id":"twin-b","sysName":"twin","agents":[{agent}]}}]}}"#
    );
    assert_eq!(
        http_post_json(&p.addr(), "/promsnmp/inventory", &doc).status,
        200
    );
    // The background round polls both devices.
    let body = wait_for(
        "both twins in /metrics",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let body = http_request(
                &p.addr(),
                "GET",
                "/metrics",
                &[("Accept", "text/plain")],
                b"",
            )
            .text();
            (body.contains(r#"device_id="twin-a""#) && body.contains(r#"device_id="twin-b""#))
                .then_some(body)
        },
    );
    let series: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    let unique: std::collections::HashSet<&&str> = series.iter().collect();
    assert_eq!(
        unique.len(),
        series.len(),
        "duplicate series in /metrics:\n{body}"
    );
}

#[test]
fn import_keeps_seeds_unless_given_and_refuses_empty_documents() {
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/discovery?scheduleNow=false&saveSeed=true",
        r#"{"id":"keep-me","potentialTargets":["127.0.0.1"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = http_post_json(&p.addr(), "/promsnmp/inventory", "{}");
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("devices")),
        "{}",
        r.text()
    );
    let r = http_post_json(&p.addr(), "/promsnmp/inventory", r#"{"devices":[]}"#);
    assert_eq!(r.status, 200);
    assert_eq!(
        http_get(&p.addr(), "/promsnmp/discovery").json()[0]["id"],
        "keep-me"
    );
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        r#"{"devices":[],"discoverySeeds":[{"potentialTargets":["10.0.0.0/8"]}]}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "discoverySeeds[0].potentialTargets[0]");
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/discovery",
        r#"{"id":"a b","potentialTargets":["127.0.0.1"]}"#,
    );
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("id")),
        "{}",
        r.text()
    );
    assert_eq!(http_get(&p.addr(), "/promsnmp/nosuch").status, 404);
    assert_eq!(
        http_get(&p.addr(), "/promsnmp/discovery/keep-me").json()["id"],
        "keep-me"
    );
    assert_eq!(
        http_get(&p.addr(), "/promsnmp/discovery/keep%2Dme").json()["id"],
        "keep-me"
    );
}

/// Once a background poll of a device has failed, its scrape says so (503
/// with the reason) instead of serving the older values from the cache, and
/// `/metrics` leaves it out; the next successful poll brings it back.
#[test]
fn a_dead_device_is_not_served_from_the_cache() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "1000"),
        ("CACHE_EXP_MILLIS", "300000"),
    ]);
    add_device(&p, "dies", snmpd.port, 300);
    let r = wait_for(
        "the first poll",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let r = http_get(&p.addr(), "/snmp?target=dies");
            (r.status == 200).then_some(r)
        },
    );
    assert!(r.text().contains("ifOperStatus"), "{}", r.text());
    let errors = |p: &Promsnmp| {
        try_self_metric(
            &p.addr(),
            r#"promsnmp_snmp_poll_errors_total{device="dies"}"#,
        )
        .unwrap_or(0.0)
    };

    send_signal(snmpd.pid(), libc::SIGSTOP);
    wait_for(
        "a failed background poll",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (errors(&p) >= 1.0).then_some(()),
    );
    let r = http_get(&p.addr(), "/snmp?target=dies");
    assert_eq!(r.status, 503, "the old values were served: {}", r.text());
    assert!(r.text().contains("no answer"), "{}", r.text());
    let all = http_get(&p.addr(), "/metrics");
    assert_eq!(all.status, 200);
    assert!(!all.text().contains("ifOperStatus"), "{}", all.text());

    send_signal(snmpd.pid(), libc::SIGCONT);
    wait_for(
        "the device back after the agent resumed",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (http_get(&p.addr(), "/snmp?target=dies").status == 200).then_some(()),
    );
}

/// 200 concurrent `live=true` scrapes of 20 devices: each device is walked
/// one at a time and a walk answers every scrape that was waiting for it,
/// so the storm costs a few walks per device, not one per scrape.
#[test]
fn a_storm_of_live_scrapes_costs_few_walks() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
        ("PROMSNMP_POLL_CONCURRENCY", "4"),
    ]);
    let devices: Vec<String> = (0..20)
        .map(|i| community_device(&format!("storm-{i:02}"), snmpd.port, 2000, 0))
        .collect();
    let r = http_post_json(&p.addr(), "/promsnmp/inventory", &inventory_doc(&devices));
    assert_eq!(r.status, 200, "{}", r.text());
    // The import's first round, then a quiet start.
    wait_for(
        "the first round",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || (self_metric(&p.addr(), "promsnmp_replica_polls_total") >= 20.0).then_some(()),
    );
    let before = self_metric(&p.addr(), "promsnmp_replica_polls_total");
    let addr = p.addr();
    let scrapes: Vec<_> = (0..200)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                http_get(
                    &addr,
                    &format!("/snmp?target=storm-{:02}&live=true", i % 20),
                )
                .status
            })
        })
        .collect();
    for s in scrapes {
        assert_eq!(s.join().unwrap(), 200);
    }
    let walks = self_metric(&p.addr(), "promsnmp_replica_polls_total") - before;
    println!("200 live scrapes of 20 devices: {walks} walks");
    assert!(walks >= 20.0, "every device walked: {walks}");
    assert!(walks <= 60.0, "{walks} walks for 200 scrapes of 20 devices");
}
