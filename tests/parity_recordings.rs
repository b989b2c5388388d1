//! Side by side with snmp_exporter (Debian's 0.21) on recordings of real
//! devices served by snmpsim: a UPS's and a Wi-Fi radio's vendor modules,
//! `if_mib` and `system` on switches of three vendors, the host modules on a
//! Linux server and `ups_mib` on a UPS. promsnmp's series equal
//! snmp_exporter's — names, label sets, types and values, exactly (the
//! recordings' changing values are frozen) — except for the intentional
//! differences named below. Modules of the current snmp.yml are given to
//! 0.21 converted to its layout; `ups_mib`'s `scale` (a key 0.21 lacks) is
//! checked against its definition: promsnmp's value is 0.21's × scale.
//! `compat/run.py` runs the same comparison on many more recordings.

mod common;

use common::snmpsim::*;
use common::*;

/// (module, where it comes from, recordings it is compared on)
const PLAN: [(&str, Source, &[&str]); 11] = [
    ("apcups", Source::V021, &["UPS/apc-8641"]),
    (
        "ubiquiti_airmax",
        Source::V021,
        &["network/wifi/ubiquiti-m5"],
    ),
    ("if_mib", Source::V021, &SWITCHES),
    ("system", Source::Current, &SWITCHES),
    ("hrStorage", Source::Current, &[LINUX]),
    ("hrSystem", Source::Current, &[LINUX]),
    ("hrSWRun", Source::Current, &[LINUX]),
    ("ucd_memory", Source::Current, &[LINUX]),
    ("ucd_la_table", Source::Current, &[LINUX]),
    ("ucd_system_stats", Source::Current, &[LINUX]),
    ("ups_mib", Source::Current, &["UPS/eaton-93e-80"]),
];

/// Switches and appliances of three vendors (Cisco, Brocade, Metel).
const SWITCHES: [&str; 3] = [
    "network/switch/cisco-c3560",
    "network/switch/brocade-icx6430-24",
    "network/switch/metel-poe-box",
];
/// A Linux server with net-snmp (HOST-RESOURCES and UCD).
const LINUX: &str = "os/linux/unknown-006";

/// An intentional difference (README, "Differences from snmp_exporter"):
/// promsnmp drops trailing NUL bytes of DisplayStrings, snmp_exporter keeps
/// them in the label value. (module, recording, metric, label) where the
/// recording has such a value; the test expects to see it.
const TRAILING_NUL: [(&str, &str, &str, &str); 1] = [(
    "ubiquiti_airmax",
    "network/wifi/ubiquiti-m5",
    "ubntStaName",
    "ubntStaName",
)];

/// snmp_exporter's series with the trailing NULs of `label` dropped (where
/// `metric` has them), and how many it changed.
fn drop_trailing_nul(e: Exposition, metric: &str, label: &str) -> (Exposition, usize) {
    let mut out = Exposition {
        types: e.types,
        ..Default::default()
    };
    let mut changed = 0;
    for ((name, labels), value) in e.series {
        let labels: Vec<(String, String)> = labels
            .into_iter()
            .filter_map(|(k, v)| {
                if name == metric && k == label && v.ends_with('\0') {
                    changed += 1;
                    let v = v.trim_end_matches('\0').to_string();
                    (!v.is_empty()).then_some((k, v))
                } else {
                    Some((k, v))
                }
            })
            .collect();
        out.series.insert((name, labels), value);
    }
    (out, changed)
}

#[test]
fn recorded_devices_match_snmp_exporter() {
    let p = compare_on_snmpsim(&PLAN, None);
    assert_eq!(
        self_metric(&p.addr(), "promsnmp_snmp_request_size_lowered_total"),
        0.0
    );
}

/// pysnmp's own GETBULK answer limit is 64 varbinds; with a lower one a
/// request for more columns than the limit gets only its non-repeaters
/// back, or no answer at all. promsnmp asks for fewer columns and walks the
/// tables whole, without waiting for timeouts.
#[test]
fn an_agent_with_a_small_answer_limit_is_walked_whole() {
    let plan: [(&str, Source, &[&str]); 1] = [("if_mib", Source::V021, &SWITCHES[..1])];
    let p = compare_on_snmpsim(&plan, Some(16));
    assert_eq!(
        self_metric(&p.addr(), "promsnmp_snmp_request_size_lowered_total"),
        0.0,
        "the smaller requests came after a timeout"
    );
}

/// Serves the recordings of `plan` by snmpsim (pysnmp's answer limit at
/// `answer_limit`, else unlimited) and compares promsnmp's series of each
/// (module, recording) pair with snmp_exporter's; returns promsnmp.
fn compare_on_snmpsim(plan: &[(&str, Source, &[&str])], answer_limit: Option<u32>) -> Promsnmp {
    let mut recordings: Vec<&str> = plan
        .iter()
        .flat_map(|(_, _, r)| r.iter().copied())
        .collect();
    recordings.sort();
    recordings.dedup();
    let sim = match answer_limit {
        Some(limit) => Snmpsim::start_with_answer_limit(&recordings, limit),
        None => Snmpsim::start(&recordings),
    };

    let modules: Vec<RecordedModule> = plan
        .iter()
        .map(|(name, source, _)| recorded_module(*source, name))
        .collect();
    let module = |name: &str| modules.iter().find(|m| m.name == name).unwrap();
    let pairs: Vec<(&RecordedModule, &str)> = plan
        .iter()
        .flat_map(|(name, _, recs)| recs.iter().map(move |r| (*name, *r)))
        .map(|(name, r)| (module(name), r))
        .collect();
    if let Some(ups) = modules.iter().find(|m| m.name == "ups_mib") {
        assert!(
            ups.scaled.len() >= 4,
            "ups_mib's scaled metrics: {:?}",
            ups.scaled
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let exporter = SnmpExporter::start(&write_exporter_modules(dir.path(), &pairs));
    let all: Vec<&RecordedModule> = modules.iter().collect();
    let path = write_promsnmp_modules(dir.path(), &all)
        .display()
        .to_string();
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
        ("PROMSNMP_MODULES_FILE", &path),
    ]);
    // One device per recording, its community as credentials, the modules
    // compared on it as its modules.
    let devices: Vec<String> = recordings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let names: Vec<String> = plan
                .iter()
                .filter(|(_, _, recs)| recs.contains(r))
                .map(|(n, _, _)| format!("\"{n}\""))
                .collect();
            format!(
                r#"{{"sysName":"dev{i}","modules":[{}],"agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{}}},"version":1,"timeout":5000,"retries":2,"readCommunity":"{r}"}}]}}"#,
                names.join(","),
                sim.port
            )
        })
        .collect();
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &format!(r#"{{"devices":[{}]}}"#, devices.join(",")),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let target = sim.addr();
    let mut failures = Vec::new();
    let mut nul_seen = vec![0usize; TRAILING_NUL.len()];
    for (m, recording) in &pairs {
        let device = format!(
            "dev{}",
            recordings.iter().position(|r| r == recording).unwrap()
        );
        let name = exporter_module_name(&m.name, recording);
        let before = m.apply(exposition(&exporter.scrape(&target, &name)));
        let ours = http_get(
            &p.addr(),
            &format!("/snmp?target={device}&module={}&live=true", m.name),
        );
        assert_eq!(
            ours.status,
            200,
            "{} on {recording}: {}",
            m.name,
            ours.text()
        );
        let ours = exposition(&ours.text());
        let mut after = m.apply(exposition(&exporter.scrape(&target, &name)));
        let mut before = before;
        for (i, (module, rec, metric, label)) in TRAILING_NUL.iter().enumerate() {
            if *module == m.name && rec == recording {
                let (b, n) = drop_trailing_nul(before, metric, label);
                let (a, _) = drop_trailing_nul(after, metric, label);
                (before, after) = (b, a);
                nul_seen[i] += n;
            }
        }
        // Frozen recordings: no tolerance.
        let c = compare(&before, &ours, &after, 0.0);
        println!(
            "{:<18} {recording:<36} matched {:>5}  missing {:>3}  extra {:>3}  differing {:>3}",
            m.name,
            c.matched,
            c.missing.len(),
            c.extra.len(),
            c.differing.len()
        );
        if c.matched == 0 {
            failures.push(format!("{} on {recording}: nothing to compare", m.name));
        }
        if !c.is_exact() {
            failures.push(format!(
                "{} on {recording}: missing {:?}\nextra {:?}\ndiffering {:?}",
                m.name,
                &c.missing[..c.missing.len().min(5)],
                &c.extra[..c.extra.len().min(5)],
                &c.differing[..c.differing.len().min(5)]
            ));
        }
    }
    for (i, (module, rec, metric, label)) in TRAILING_NUL.iter().enumerate() {
        let compared = pairs.iter().any(|(m, r)| m.name == *module && r == rec);
        assert!(
            !compared || nul_seen[i] > 0,
            "{module} on {rec}: expected {metric}'s label {label} with trailing NULs from snmp_exporter"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    p
}
