//! Agents that misbehave: a real `snmpd` whose `pass` script answers with
//! OIDs that do not increase, values of the wrong type, truncated and
//! NUL-padded strings, and a table without end. Each gives a clear poll
//! error or a clear decision about the value — never a panic, never a loop.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A `pass` script for subtree .1.3.6.1.4.1.99999 serving `rows`
/// (`oid|type|value`, in the order GETNEXT walks them; `next_after` maps a
/// requested OID to the row answered, so the order can be made wrong).
fn pass_script(dir: &Path, body: &str) -> String {
    let path = dir.join("pass.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path.display().to_string()
}

fn agent(dir: &Path, script_body: &str) -> Snmpd {
    let script = pass_script(dir, script_body);
    Snmpd::start(&SnmpdConfig {
        extra_config: vec![format!("pass .1.3.6.1.4.1.99999 {script}")],
        ..Default::default()
    })
}

const MODULES: &str = "modules:
  faulty:
    walk: [1.3.6.1.4.1.99999.1]
    metrics:
    - name: faultyValue
      oid: 1.3.6.1.4.1.99999.1
      type: gauge
      help: a column
      indexes: [{labelname: row, type: gauge}]
  faulty_lenient:
    walk: [1.3.6.1.4.1.99999.1]
    allow_nonincreasing_oids: true
    metrics:
    - name: faultyValue
      oid: 1.3.6.1.4.1.99999.1
      type: gauge
      help: a column
      indexes: [{labelname: row, type: gauge}]
  typed:
    walk: [1.3.6.1.4.1.99999.2]
    metrics:
    - {name: typedBits, oid: 1.3.6.1.4.1.99999.2.1, type: Bits, help: bits, enum_values: {0: a, 1: b}}
    - {name: typedDate, oid: 1.3.6.1.4.1.99999.2.2, type: DateAndTime, help: date}
    - {name: typedMac, oid: 1.3.6.1.4.1.99999.2.3, type: PhysAddress48, help: mac}
    - {name: typedName, oid: 1.3.6.1.4.1.99999.2.4, type: DisplayString, help: name}
    - {name: typedGauge, oid: 1.3.6.1.4.1.99999.2.5, type: gauge, help: number}
";

fn promsnmp(dir: &Path, extra: &[(&str, &str)]) -> Promsnmp {
    let file = dir.join("faulty.yml");
    std::fs::write(&file, MODULES).unwrap();
    let path = file.display().to_string();
    let mut env = vec![
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
        ("PROMSNMP_MODULES_FILE", path.as_str()),
    ];
    env.extend_from_slice(extra);
    Promsnmp::start(&env)
}

fn import(p: &Promsnmp, port: u16, modules: &str) {
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &format!(
            r#"{{"devices":[{{"sysName":"agent","modules":{modules},"agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{port}}},"version":1,"timeout":2000,"retries":0,"readCommunity":"public"}}]}}]}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn non_increasing_oids_are_a_clear_error_or_end_the_walk() {
    let dir = tempfile::tempdir().unwrap();
    // GETNEXT walks .1.5, .1.6, then .1.3 for ever: back, then stuck.
    let snmpd = agent(
        dir.path(),
        r#"case "$1" in
  -g) echo "$2"; echo integer; echo 0;;
  -n) case "$2" in
        .1.3.6.1.4.1.99999|.1.3.6.1.4.1.99999.1) echo .1.3.6.1.4.1.99999.1.5; echo integer; echo 5;;
        .1.3.6.1.4.1.99999.1.5) echo .1.3.6.1.4.1.99999.1.6; echo integer; echo 6;;
        *) echo .1.3.6.1.4.1.99999.1.3; echo integer; echo 3;;
      esac;;
esac"#,
    );
    let p = promsnmp(dir.path(), &[]);
    import(&p, snmpd.port, r#"["faulty"]"#);
    let started = Instant::now();
    let r = http_get(&p.addr(), "/snmp?target=agent");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text()
            .contains("non-increasing OID 1.3.6.1.4.1.99999.1.3 after 1.3.6.1.4.1.99999.1.6")
            && r.text().contains("allow_nonincreasing_oids"),
        "{}",
        r.text()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Allowed: the step back is kept, the repeat ends the walk.
    import(&p, snmpd.port, r#"["faulty_lenient"]"#);
    let r = http_get(&p.addr(), "/snmp?target=agent");
    assert_eq!(r.status, 200, "{}", r.text());
    for row in ["5", "6", "3"] {
        assert!(
            r.text()
                .contains(&format!("faultyValue{{row=\"{row}\"}} {row}\n")),
            "{}",
            r.text()
        );
    }
}

#[test]
fn a_table_without_end_stops_at_the_varbind_cap() {
    let dir = tempfile::tempdir().unwrap();
    // Every GETNEXT answers the next row: the table never ends.
    let snmpd = agent(
        dir.path(),
        r#"case "$1" in
  -g) echo "$2"; echo integer; echo 0;;
  -n) last=${2##*.}
      case "$2" in
        .1.3.6.1.4.1.99999|.1.3.6.1.4.1.99999.1) last=0;;
      esac
      echo .1.3.6.1.4.1.99999.1.$((last + 1)); echo integer; echo 1;;
esac"#,
    );
    let p = promsnmp(
        dir.path(),
        &[("PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL", "300")],
    );
    import(&p, snmpd.port, r#"["faulty"]"#);
    let r = http_get(&p.addr(), "/snmp?target=agent");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("stopped after 300 varbinds")
            && r.text().contains("PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL"),
        "{}",
        r.text()
    );
}

#[test]
fn wrong_types_truncated_and_padded_strings_are_read_or_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let snmpd = agent(
        dir.path(),
        r#"row() {
  case "$1" in
    .1.3.6.1.4.1.99999.2.1.0) echo "$1"; echo integer; echo 7;;
    .1.3.6.1.4.1.99999.2.2.0) echo "$1"; echo string; echo "yesterday";;
    .1.3.6.1.4.1.99999.2.3.0) echo "$1"; echo octet; echo "00 1a 2b";;
    .1.3.6.1.4.1.99999.2.4.0) echo "$1"; echo octet; echo "65 74 68 30 00 00 00";;
    .1.3.6.1.4.1.99999.2.5.0) echo "$1"; echo string; echo "12";;
  esac
}
case "$1" in
  -g) row "$2";;
  -n) case "$2" in
        .1.3.6.1.4.1.99999|.1.3.6.1.4.1.99999.2|.1.3.6.1.4.1.99999.2.1) row .1.3.6.1.4.1.99999.2.1.0;;
        .1.3.6.1.4.1.99999.2.1.0|.1.3.6.1.4.1.99999.2.2) row .1.3.6.1.4.1.99999.2.2.0;;
        .1.3.6.1.4.1.99999.2.2.0|.1.3.6.1.4.1.99999.2.3) row .1.3.6.1.4.1.99999.2.3.0;;
        .1.3.6.1.4.1.99999.2.3.0|.1.3.6.1.4.1.99999.2.4) row .1.3.6.1.4.1.99999.2.4.0;;
        .1.3.6.1.4.1.99999.2.4.0|.1.3.6.1.4.1.99999.2.5) row .1.3.6.1.4.1.99999.2.5.0;;
      esac;;
esac"#,
    );
    let p = promsnmp(dir.path(), &[]);
    import(&p, snmpd.port, r#"["typed"]"#);
    let r = http_get(&p.addr(), "/snmp?target=agent");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    // Bits from an INTEGER and a date from a 9-octet string cannot be read: left out, counted.
    assert!(
        !body.contains("typedBits") && !body.contains("typedDate"),
        "{body}"
    );
    assert_eq!(
        self_metric(&p.addr(), "promsnmp_decode_skipped_values_total"),
        2.0
    );
    // A 3-octet MAC is padded as snmp_exporter pads it; trailing NULs are dropped.
    assert!(
        body.contains(r#"typedMac{typedMac="00:1A:2B:00:00:00"} 1"#),
        "{body}"
    );
    assert!(body.contains(r#"typedName{typedName="eth0"} 1"#), "{body}");
    // A gauge sent as a string reads 0, as snmp_exporter reads it.
    assert!(body.contains("typedGauge 0\n"), "{body}");
}

/// The series of a scrape: names and label sets of the modules' series.
fn series_keys(body: &str) -> std::collections::BTreeSet<String> {
    parse_text(body)
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("if") || name.starts_with("sys"))
        .map(|(name, labels, _)| format!("{name}{labels:?}"))
        .collect()
}

fn lowered_total(p: &Promsnmp) -> f64 {
    self_metric(&p.addr(), "promsnmp_snmp_request_size_lowered_total")
}

#[test]
fn answers_lost_for_their_size_are_asked_for_in_smaller_requests() {
    // net-snmp answers a GETBULK for the default modules with hundreds of
    // varbinds (~20 KB); on this path every answer over 1,400 bytes is lost.
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let path = LossyPath::start(snmpd.port, 1400);
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &inventory_doc(&[
            community_device("direct", snmpd.port, 1000, 1),
            community_device("lossy", path.port, 1000, 1),
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(lowered_total(&p), 0.0);

    let direct = http_get(&p.addr(), "/snmp?target=direct&live=true");
    assert_eq!(direct.status, 200, "{}", direct.text());
    let lossy = http_get(&p.addr(), "/snmp?target=lossy&live=true");
    assert_eq!(lossy.status, 200, "{}", lossy.text());
    assert!(path.answers_dropped() > 0, "the path lost no answer");
    let expected = series_keys(&direct.text());
    assert!(
        expected.iter().any(|k| k.starts_with("ifOperStatus")),
        "{}",
        direct.text()
    );
    assert_eq!(series_keys(&lossy.text()), expected);
    assert_eq!(lowered_total(&p), 1.0);
    assert!(
        p.log().contains("left a large GETBULK request unanswered"),
        "no log line for the smaller requests"
    );

    // The next poll starts with the size the agent answered: nothing lost.
    let dropped = path.answers_dropped();
    let again = http_get(&p.addr(), "/snmp?target=lossy&live=true");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(series_keys(&again.text()), expected);
    assert_eq!(path.answers_dropped(), dropped, "a large request again");
    assert_eq!(lowered_total(&p), 1.0);
}

#[test]
fn a_dead_agent_costs_one_more_try_not_a_series_of_smaller_ones() {
    // Nothing answers on this path at all (every answer is "too long").
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let path = LossyPath::start(snmpd.port, 0);
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &inventory_doc(&[community_device("dead", path.port, 500, 1)]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http_get(&p.addr(), "/snmp?target=dead&live=true");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("(3 attempts)"), "{}", r.text());
    // The agent's two attempts, then one of a smaller request.
    assert_eq!(path.answers_dropped(), 3);
    assert_eq!(lowered_total(&p), 0.0);
}
