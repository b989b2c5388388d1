//! Polling real agents: `snmpd` on 127.0.0.1 (v2c and every v3 protocol pair
//! it supports) and a network namespace with hundreds of veth interfaces.
//! Values are compared with what `snmpbulkwalk -On` reports.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;

/// Series of one metric keyed by ifIndex.
fn by_if_index(
    samples: &[(String, BTreeMap<String, String>, String)],
    name: &str,
) -> HashMap<String, (BTreeMap<String, String>, String)> {
    samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, l, v)| (l["ifIndex"].clone(), (l.clone(), v.clone())))
        .collect()
}

/// `snmpbulkwalk` of one column keyed by the row index.
fn walk(addr: &str, column: &str) -> HashMap<String, String> {
    snmpbulkwalk(addr, "public", column)
        .into_iter()
        .map(|(oid, _, value)| (oid.rsplit('.').next().unwrap().to_string(), value))
        .collect()
}

fn quiet_env() -> Vec<(&'static str, &'static str)> {
    vec![("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]
}

/// Discovers the agent at 127.0.0.1:`port` with the default v2c seed.
fn discover_local(p: &Promsnmp, port: u16) -> serde_json::Value {
    discover(
        p,
        &format!(r#"{{"potentialTargets":["127.0.0.1"],"port":{port}}}"#),
    )
}

fn discover(p: &Promsnmp, body: &str) -> serde_json::Value {
    let r = http_post_json(&p.addr(), "/promsnmp/discovery?scheduleNow=true", body);
    assert_eq!(r.status, 202, "discovery refused: {}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_for(
        "discovery to finish",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let p = http_get(&p.addr(), &format!("/promsnmp/discovery/{id}")).json()["progress"]
                .clone();
            (p["state"] == "finished").then_some(p)
        },
    )
}

#[test]
fn v2c_discovery_and_values_match_snmpbulkwalk() {
    let snmpd = Snmpd::start(&SnmpdConfig {
        sys_name: "edge-r1".into(),
        ..Default::default()
    });
    let p = Promsnmp::start(&quiet_env());
    let progress = discover(
        &p,
        &format!(
            r#"{{"potentialTargets":["127.0.0.1"],"port":{},"version":"v2c","agentType":"snmp-community","readCommunity":"public"}}"#,
            snmpd.port
        ),
    );
    assert_eq!(
        (progress["probed"].as_u64(), progress["found"].as_u64()),
        (Some(1), Some(1)),
        "{progress}"
    );

    let inventory = http_get(&p.addr(), "/promsnmp/inventory").json();
    let device = &inventory["devices"][0];
    assert_eq!(device["sysName"], "edge-r1");
    assert_eq!(device["sysContact"], "noc@example.org");
    assert_eq!(device["sysLocation"], "rack 1");

    // Every form /targets hands out, and the sysName, scrapes.
    let targets = http_get(&p.addr(), "/targets").json();
    let group = &targets[0];
    assert_eq!(group["labels"]["device_name"], "edge-r1");
    assert_eq!(group["labels"]["agent_type"], "snmp-community");
    assert_eq!(group["labels"]["site_id"], "0123456789");
    assert_eq!(group["labels"]["tenant_id"], "0123456789");
    let target = group["targets"][0].as_str().unwrap().to_string();
    assert_eq!(target, snmpd.addr());
    for t in [target.as_str(), "edge-r1", "127.0.0.1"] {
        let r = http_get(&p.addr(), &format!("/snmp?target={}", urlencode(t)));
        assert_eq!(r.status, 200, "{t}: {}", r.text());
    }

    let before_in = walk(&snmpd.addr(), "1.3.6.1.2.1.31.1.1.1.6");
    let body = http_get(
        &p.addr(),
        &format!("/snmp?target={}&live=true", urlencode(&target)),
    )
    .text();
    let after_in = walk(&snmpd.addr(), "1.3.6.1.2.1.31.1.1.1.6");
    let samples = parse_text(&body);

    // Labels equal the agent's own tables.
    let descr = walk(&snmpd.addr(), "1.3.6.1.2.1.2.2.1.2");
    let names = walk(&snmpd.addr(), "1.3.6.1.2.1.31.1.1.1.1");
    let speeds = walk(&snmpd.addr(), "1.3.6.1.2.1.31.1.1.1.15");
    let in_octets = by_if_index(&samples, "ifHCInOctets");
    assert!(!descr.is_empty());
    assert_eq!(
        in_octets.len(),
        descr.len(),
        "one series per interface:\n{body}"
    );
    for (index, (labels, value)) in &in_octets {
        assert_eq!(&labels["ifDescr"], &descr[index]);
        assert_eq!(&labels["ifName"], &names[index]);
        // The counter moved between the two walks at most as much as it did around our poll.
        let v: u64 = value.parse().unwrap();
        let lo: u64 = before_in[index].parse().unwrap();
        let hi: u64 = after_in[index].parse().unwrap();
        assert!(
            lo <= v && v <= hi,
            "ifHCInOctets[{index}] = {v}, walk said {lo}..{hi}"
        );
    }
    for (index, (_, value)) in by_if_index(&samples, "ifHighSpeed") {
        assert_eq!(value, speeds[&index]);
    }
    let uptime: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "sysUpTime")
        .collect();
    assert_eq!(uptime.len(), 1);
    assert!(uptime[0].2.parse::<u64>().unwrap() > 0);
}

/// Every auth × privacy pair net-snmp supports, plus noAuthNoPriv and authNoPriv.
#[test]
fn v3_every_protocol_pair() {
    let auths = ["MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"];
    let privs = ["DES", "AES", "AES-192", "AES-256"];
    let mut users = vec![V3User::no_auth("u-none")];
    for a in auths {
        users.push(V3User::auth(&format!("u-{a}"), a, "authpass123"));
        for x in privs {
            users.push(V3User::auth_priv(
                &format!("u-{a}-{x}"),
                a,
                "authpass123",
                x,
                "privpass123",
            ));
        }
    }
    let snmpd = Snmpd::start(&SnmpdConfig {
        users: users.clone(),
        ..Default::default()
    });
    let devices: Vec<serde_json::Value> = users
        .iter()
        .map(|u| {
            let level = match u.level() {
                "noauth" => 1,
                "auth" => 2,
                _ => 3,
            };
            let mut agent = serde_json::json!({
                "type": "snmp-user", "endpoint": {"address": "127.0.0.1", "port": snmpd.port},
                "version": 3, "timeout": 2000, "retries": 1,
                "securityName": u.name, "securityLevel": level,
            });
            if let Some((a, pass)) = &u.auth {
                agent["authProtocol"] = a.as_str().into();
                agent["authPassphrase"] = pass.as_str().into();
            }
            if let Some((x, pass)) = &u.privacy {
                agent["privProtocol"] = x.as_str().into();
                agent["privPassphrase"] = pass.as_str().into();
            }
            serde_json::json!({"sysName": u.name, "agents": [agent]})
        })
        .collect();
    let p = Promsnmp::start(&quiet_env());
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &serde_json::json!({"devices": devices}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let mut failures = Vec::new();
    for u in &users {
        let r = http_get(&p.addr(), &format!("/snmp?target={}", urlencode(&u.name)));
        let ok = r.status == 200 && r.text().contains("ifHCInOctets{");
        if !ok {
            failures.push(format!(
                "{}: {} {}",
                u.name,
                r.status,
                r.text().lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} users failed:\n{}",
        failures.len(),
        users.len(),
        failures.join("\n")
    );
}

#[test]
fn v3_discovery_with_sha256_aes() {
    let user = V3User::auth_priv("monitor", "SHA-256", "authpass123", "AES", "privpass123");
    let snmpd = Snmpd::start(&SnmpdConfig {
        sys_name: "v3-core".into(),
        users: vec![user],
        ..Default::default()
    });
    let p = Promsnmp::start(&quiet_env());
    let progress = discover(
        &p,
        &format!(
            r#"{{"potentialTargets":["localhost"],"port":{},"version":"v3","agentType":"snmp-user","securityName":"monitor","securityLevel":3,"authProtocol":"SHA256","authPassphrase":"authpass123","privProtocol":"AES128","privPassphrase":"privpass123"}}"#,
            snmpd.port
        ),
    );
    assert_eq!(progress["found"], 1, "{progress}");
    let r = http_get(&p.addr(), "/snmp?target=v3-core");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("ifHCOutOctets{"));
    // A wrong passphrase finds nothing.
    let progress = discover(
        &p,
        &format!(
            r#"{{"potentialTargets":["127.0.0.1"],"port":{},"version":"v3","agentType":"snmp-user","securityName":"monitor","securityLevel":3,"authProtocol":"SHA256","authPassphrase":"wrongpass123","privProtocol":"AES128","privPassphrase":"privpass123","timeout":500,"retries":0}}"#,
            snmpd.port
        ),
    );
    assert_eq!(progress["found"], 0, "{progress}");
}

#[test]
fn cidr_discovery_reports_progress() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&quiet_env());
    // Only 127.0.0.1 answers; the other five addresses of the block time out.
    let progress = discover(
        &p,
        &format!(
            r#"{{"potentialTargets":["127.0.0.0/29"],"port":{},"timeout":300,"retries":0}}"#,
            snmpd.port
        ),
    );
    assert_eq!(progress["total"], 6, "{progress}");
    assert_eq!(progress["probed"], 6, "{progress}");
    assert_eq!(progress["found"], 1, "{progress}");
}

#[test]
fn unreachable_device_is_503_and_unknown_target_404() {
    let silent_port = free_udp_port();
    let p = Promsnmp::start(&quiet_env());
    let doc = format!(
        r#"{{"devices":[{{"sysName":"ghost","agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{silent_port}}},"version":1,"timeout":200,"retries":1,"readCommunity":"public"}}]}}]}}"#
    );
    assert_eq!(
        http_post_json(&p.addr(), "/promsnmp/inventory", &doc).status,
        200
    );
    let r = http_get(&p.addr(), "/snmp?target=ghost");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("no answer") && r.text().lines().count() == 1,
        "{}",
        r.text()
    );
    let r = http_get(&p.addr(), "/snmp?target=10.9.9.9");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("unknown target"));
    let r = http_get(&p.addr(), "/snmp");
    assert_eq!(r.status, 400);
}

#[test]
fn namespace_device_with_200_interfaces() {
    let dev = NetnsDevice::start(
        100,
        &SnmpdConfig {
            sys_name: "big-sw".into(),
            ..Default::default()
        },
    );
    assert!(dev.interfaces >= 200);
    let p = Promsnmp::start(&quiet_env());
    let progress = discover(
        &p,
        &format!(
            r#"{{"potentialTargets":["127.0.0.1"],"port":{}}}"#,
            dev.port
        ),
    );
    assert_eq!(progress["found"], 1, "{progress}");

    let names = walk(&dev.addr(), "1.3.6.1.2.1.31.1.1.1.1");
    let descr = walk(&dev.addr(), "1.3.6.1.2.1.2.2.1.2");
    assert_eq!(names.len(), dev.interfaces);

    let in_pkts = |dev: &NetnsDevice| snmp_get_u64(&dev.addr(), "public", "1.3.6.1.2.1.11.1.0");
    let pkts_before = in_pkts(&dev);
    let started = std::time::Instant::now();
    let live = http_get(&p.addr(), "/snmp?target=big-sw&live=true");
    let live_ms = started.elapsed().as_secs_f64() * 1e3;
    // Less the one request of our own snmpget.
    let poll_requests = in_pkts(&dev) - pkts_before - 1;
    assert_eq!(live.status, 200, "{}", live.text());
    let started = std::time::Instant::now();
    let cached = http_get(&p.addr(), "/snmp?target=big-sw");
    let cached_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(cached.status, 200);
    println!(
        "{} interfaces: live scrape {live_ms:.1} ms in {poll_requests} SNMP requests, cached scrape {cached_ms:.1} ms",
        dev.interfaces
    );
    // net-snmp answers at most 100 varbinds per GETBULK (maxGetbulkResponses):
    // the default modules' interface columns × N rows need ceil(C × N / 100)
    // requests, plus the system group and the requests that find the
    // columns' ends. One column per request, as snmp_exporter walks, would
    // need about C × N / 25.
    let plan = &promsnmp::modules::ModuleSet::builtin().resolve(None).plan;
    let interface_columns = plan
        .columns
        .iter()
        .filter(|c| c.starts_with(&[1, 3, 6, 1, 2, 1, 2]) || c.starts_with(&[1, 3, 6, 1, 2, 1, 31]))
        .count() as u64;
    let floor = (interface_columns * dev.interfaces as u64).div_ceil(100);
    assert!(
        poll_requests <= floor + 8,
        "{poll_requests} requests for one poll (floor {floor} for {interface_columns} interface columns)"
    );

    let samples = parse_text(&live.text());
    for metric in [
        "ifHCInOctets",
        "ifHCOutOctets",
        "ifHighSpeed",
        "interface_utilization_count",
    ] {
        let series = by_if_index(&samples, metric);
        assert_eq!(series.len(), dev.interfaces, "{metric}");
        for (index, (labels, _)) in &series {
            assert_eq!(
                &labels["ifName"], &names[index],
                "{metric} ifName of {index}"
            );
            assert_eq!(
                &labels["ifDescr"], &descr[index],
                "{metric} ifDescr of {index}"
            );
        }
    }
}

#[test]
fn utilization_histogram_only_grows() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&quiet_env());
    discover_local(&p, snmpd.port);
    let mut last: HashMap<(String, String, String), f64> = HashMap::new();
    let mut counts = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(1100)); // sysUpTime must move
        let body = http_get(&p.addr(), "/snmp?target=testdev&live=true").text();
        for (name, labels, value) in parse_text(&body) {
            if !name.starts_with("interface_utilization") {
                continue;
            }
            let v: f64 = value.parse().unwrap();
            let key = (
                name.clone(),
                labels["ifIndex"].clone(),
                labels.get("le").cloned().unwrap_or_default(),
            );
            if let Some(prev) = last.insert(key.clone(), v) {
                assert!(v >= prev, "{key:?} went from {prev} to {v}");
            }
            if name == "interface_utilization_count" && labels["ifDescr"] == "lo" {
                counts.push(v);
            }
        }
    }
    // First poll is a baseline; each later poll observes once. Background
    // polls (the device is polled within one check period of its discovery)
    // count too, so compare with the number of polls made.
    assert_eq!(counts.len(), 5, "lo observation counts {counts:?}");
    assert!(
        counts.windows(2).all(|w| w[1] >= w[0] + 1.0),
        "each live poll observes: {counts:?}"
    );
    let polls = self_metric(&p.addr(), "promsnmp_replica_polls_total");
    assert_eq!(
        counts.last().copied(),
        Some(polls - 1.0),
        "every poll but the first observed once: {counts:?} after {polls} polls"
    );
}

/// An agent that answers GETBULK with far fewer rows than asked, and a v1
/// agent walked with GETNEXT: both yield every interface.
#[test]
fn short_bulk_responses_and_v1_walks() {
    let stingy = Snmpd::start(&SnmpdConfig {
        sys_name: "stingy".into(),
        extra_config: vec!["maxGetbulkResponses 7".into(), "maxGetbulkRepeats 2".into()],
        ..Default::default()
    });
    let p = Promsnmp::start(&quiet_env());
    let doc = format!(
        r#"{{"devices":[
          {{"sysName":"stingy","agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{port}}},"version":1,"readCommunity":"public"}}]}},
          {{"sysName":"old-v1","agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{port}}},"version":0,"readCommunity":"public"}}]}}
        ]}}"#,
        port = stingy.port
    );
    assert_eq!(
        http_post_json(&p.addr(), "/promsnmp/inventory", &doc).status,
        200
    );
    let descr = walk(&stingy.addr(), "1.3.6.1.2.1.2.2.1.2");

    let body = http_get(&p.addr(), "/snmp?target=stingy").text();
    let samples = parse_text(&body);
    assert_eq!(
        by_if_index(&samples, "ifHCInOctets").len(),
        descr.len(),
        "{body}"
    );
    assert_eq!(
        by_if_index(&samples, "ifHCOutBroadcastPkts").len(),
        descr.len(),
        "{body}"
    );

    // SNMPv1 has no Counter64: the 64-bit columns are absent, the rest is there.
    let r = http_get(&p.addr(), "/snmp?target=old-v1");
    assert_eq!(r.status, 200, "{}", r.text());
    let samples = parse_text(&r.text());
    assert_eq!(
        by_if_index(&samples, "ifSpeed").len(),
        descr.len(),
        "{}",
        r.text()
    );
    for (index, (labels, _)) in by_if_index(&samples, "ifSpeed") {
        assert_eq!(labels["ifDescr"], descr[&index]);
    }
}

/// A stored engineId is used as is; a stale one falls back to discovery.
#[test]
fn v3_stored_engine_id_is_honoured_and_a_stale_one_recovers() {
    let user = V3User::auth_priv("eng", "SHA-256", "authpass123", "AES", "privpass123");
    let snmpd = Snmpd::start(&SnmpdConfig {
        users: vec![user.clone()],
        ..Default::default()
    });
    let args: Vec<String> = user.snmp_args();
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let addr = snmpd.addr();
    argv.extend([addr.as_str(), "1.3.6.1.6.3.10.2.1.1.0"]);
    let engine = snmp_cmd("snmpget", &argv);
    let engine_hex: String = engine[0]
        .2
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    assert!(engine_hex.len() >= 10, "engine id {engine:?}");

    let agent = |engine_id: &str| {
        format!(
            r#"{{"type":"snmp-user","endpoint":{{"address":"127.0.0.1","port":{}}},"version":3,"securityName":"eng","securityLevel":3,"authProtocol":"SHA256","authPassphrase":"authpass123","privProtocol":"AES128","privPassphrase":"privpass123","engineId":"{engine_id}"}}"#,
            snmpd.port
        )
    };
    let doc = format!(
        r#"{{"devices":[{{"sysName":"known","agents":[{}]}},{{"sysName":"stale","agents":[{}]}}]}}"#,
        agent(&engine_hex),
        agent("8000000001020304")
    );
    let p = Promsnmp::start(&quiet_env());
    let r = http_post_json(&p.addr(), "/promsnmp/inventory", &doc);
    assert_eq!(r.status, 200, "{}", r.text());
    for name in ["known", "stale", "stale"] {
        let r = http_get(&p.addr(), &format!("/snmp?target={name}&live=true"));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(r.text().contains("ifHCInOctets{"), "{name}");
    }
    assert!(
        p.log().contains("stored SNMPv3 engineId does not match"),
        "the stale id was noticed"
    );
    // The stored engineId survives export (it is the operator's setting).
    let inv = http_get(&p.addr(), "/promsnmp/inventory").json();
    assert_eq!(
        inv["devices"][0]["agents"][0]["engineId"],
        engine_hex.to_ascii_lowercase()
    );
}

#[test]
fn gzip_bodies_match_and_a_poll_is_rendered_once() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = Promsnmp::start(&quiet_env());
    discover_local(&p, snmpd.port);
    let plain = http_get(&p.addr(), "/snmp?target=testdev");
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.header("content-encoding"), None);
    let again = http_get(&p.addr(), "/snmp?target=testdev");
    assert_eq!(again.body, plain.body, "the same poll, the same bytes");
    let packed = http_request(
        &p.addr(),
        "GET",
        "/snmp?target=testdev",
        &[("Accept-Encoding", "gzip")],
        &[],
    );
    assert_eq!(packed.status, 200);
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    assert!(packed.body.len() * 3 < plain.body.len(), "compressed");
    let mut unpacked = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&packed.body[..])
        .read_to_end(&mut unpacked)
        .expect("valid gzip");
    assert_eq!(unpacked, plain.body, "gzip carries the same exposition");
    // `q=0` refuses gzip.
    let refused = http_request(
        &p.addr(),
        "GET",
        "/snmp?target=testdev",
        &[("Accept-Encoding", "gzip;q=0")],
        &[],
    );
    assert_eq!(refused.header("content-encoding"), None);
    assert_eq!(refused.body, plain.body);
    // /metrics (every device) gzips too.
    let all = http_request(
        &p.addr(),
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
        &[],
    );
    assert_eq!(all.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&all.body[..])
        .read_to_string(&mut text)
        .expect("valid gzip");
    assert!(text.contains("ifHCInOctets"), "{text}");
}
