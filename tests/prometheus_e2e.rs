//! A real `prometheus` (native histograms on) discovers devices through
//! `/targets`, scrapes them through `/snmp` with the README's relabelling, and
//! answers a quantile query from the native `interface_utilization` histogram.
//! The devices poll `if_mib` and host modules of snmp_exporter's snmp.yml
//! (picked by the module rules), and a job written for snmp_exporter
//! (`params: module`) scrapes promsnmp unchanged but for the address.

mod common;

use std::time::Duration;

use common::*;

/// The scrape configuration the README documents, with addresses substituted.
fn scrape_config(promsnmp: &str, agent: &str) -> String {
    format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: snmp
    http_sd_configs:
      - url: http://{promsnmp}/targets
        refresh_interval: 2s
    metrics_path: /snmp
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {promsnmp}
  - job_name: promsnmp
    static_configs:
      - targets: ['{promsnmp}']
    metrics_path: /actuator/prometheus
  - job_name: snmp_exporter_style
    static_configs:
      - targets: ['{agent}']
    metrics_path: /snmp
    params:
      module: [if_mib]
      auth: [public_v2]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {promsnmp}
"#
    )
}

#[test]
fn prometheus_scrapes_every_target_and_reads_native_histograms() {
    let a = Snmpd::start(&SnmpdConfig {
        sys_name: "agent-a".into(),
        ..Default::default()
    });
    let b = Snmpd::start(&SnmpdConfig {
        sys_name: "agent-b".into(),
        ..Default::default()
    });
    let reference = reference_modules_dir()
        .join("snmp.yml")
        .display()
        .to_string();
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "1000"),
        ("CACHE_EXP_MILLIS", "1000"),
        ("PROMSNMP_MODULES_FILE", &reference),
    ]);
    for port in [a.port, b.port] {
        let r = http_post_json(
            &p.addr(),
            "/promsnmp/discovery",
            &format!(r#"{{"potentialTargets":["127.0.0.1"],"port":{port}}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    wait_for(
        "two devices",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let t = http_get(&p.addr(), "/targets").json();
            (t.as_array().map_or(0, |a| a.len()) == 2).then_some(())
        },
    );

    let prom = Prometheus::start(&scrape_config(&p.addr(), &a.addr()), &[]);
    // Every SNMP target up.
    wait_for(
        "both SNMP targets up",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let r = prom.query(r#"up{job="snmp"}"#);
            let results = r["data"]["result"].as_array().cloned().unwrap_or_default();
            let up = results.iter().filter(|s| s["value"][1] == "1").count();
            (results.len() == 2 && up == 2).then_some(())
        },
    );
    let r = prom.query(r#"count(ifHCInOctets{job="snmp"}) by (instance)"#);
    assert_eq!(r["data"]["result"].as_array().unwrap().len(), 2, "{r}");
    // An operator can alert on an interface going down, and sees the host
    // modules the rules gave net-snmp.
    let r = prom.query(r#"ifOperStatus{job="snmp",ifDescr="lo"}"#);
    let results = r["data"]["result"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    assert!(
        results.iter().all(|s| s["value"][1] == "1"),
        "lo is up: {r}"
    );
    let r = prom.query(r#"count(hrStorageSize{job="snmp"}) by (instance)"#);
    assert_eq!(r["data"]["result"].as_array().unwrap().len(), 2, "{r}");
    // The job written for snmp_exporter: up, only its module's series.
    wait_for(
        "the snmp_exporter-style job up",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || {
            let r = prom.query(r#"up{job="snmp_exporter_style"} == 1"#);
            (!r["data"]["result"].as_array()?.is_empty()).then_some(())
        },
    );
    let r = prom.query(r#"count(ifOperStatus{job="snmp_exporter_style"})"#);
    assert!(
        r["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1,
        "{r}"
    );
    let r = prom.query(r#"sysDescr{job="snmp_exporter_style"}"#);
    assert!(r["data"]["result"].as_array().unwrap().is_empty(), "{r}");

    // The native histogram: no classic _bucket series were ingested, and the
    // quantile comes from the sparse buckets.
    let quantile = wait_for(
        "a quantile from the native histogram",
        Duration::from_secs(40),
        Duration::from_secs(1),
        || {
            let r = prom.query("histogram_quantile(0.9, rate(interface_utilization[5m]))");
            let results = r["data"]["result"].as_array().cloned().unwrap_or_default();
            results
                .iter()
                .find(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"))
                .cloned()
        },
    );
    println!("native quantile sample: {quantile}");
    let classic = prom.query("interface_utilization_bucket");
    assert!(
        classic["data"]["result"].as_array().unwrap().is_empty(),
        "classic buckets ingested: {classic}"
    );
    let count = prom.query(r#"histogram_count(interface_utilization{ifDescr="lo"})"#);
    assert!(
        !count["data"]["result"].as_array().unwrap().is_empty(),
        "histogram_count needs a native histogram: {count}"
    );

    // No failed scrapes at all.
    let failed = prom.query(
        r#"sum(count_over_time(up{job=~"snmp|snmp_exporter_style"}[5m])) - sum(sum_over_time(up{job=~"snmp|snmp_exporter_style"}[5m]))"#,
    );
    assert_eq!(failed["data"]["result"][0]["value"][1], "0", "{failed}");
    // The exporter's own metrics were scraped too.
    let own = prom.query(r#"promsnmp_inventory_device_count"#);
    assert_eq!(own["data"]["result"][0]["value"][1], "2", "{own}");
}
