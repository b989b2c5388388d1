//! Side by side with snmp_exporter (Debian's 0.21): for every module the
//! test agent answers, promsnmp's series equal snmp_exporter's — names,
//! label sets, types and values. The agent is net-snmp's `snmpd`; the
//! modules are 0.21's `if_mib` and the current snmp.yml's host modules,
//! converted to the layout 0.21 reads (which promsnmp reads too).

mod common;

use common::*;

#[test]
fn host_modules_match_snmp_exporter() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut modules: Vec<&str> = vec!["if_mib"];
    modules.extend(CURRENT_HOST_MODULES);
    let file = write_v021_modules(dir.path(), &modules, "public");
    let exporter = SnmpExporter::start(&file);
    let path = file.display().to_string();
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
        ("PROMSNMP_MODULES_FILE", &path),
    ]);
    // The 0.21 layout is read, with a warning to regenerate.
    assert!(
        p.log().contains("layout before snmp_exporter 0.23"),
        "{}",
        p.log()
    );
    let list: Vec<String> = modules.iter().map(|m| format!("\"{m}\"")).collect();
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &format!(
            r#"{{"devices":[{{"sysName":"host","modules":[{}],"agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{}}},"version":1,"timeout":3000,"retries":1,"readCommunity":"public"}}]}}]}}"#,
            list.join(","),
            snmpd.port
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let target = snmpd.addr();
    let mut failures = Vec::new();
    for module in &modules {
        let before = exposition(&exporter.scrape(&target, module));
        let ours = http_get(
            &p.addr(),
            &format!("/snmp?target=host&module={module}&live=true"),
        );
        assert_eq!(ours.status, 200, "{module}: {}", ours.text());
        let ours = exposition(&ours.text());
        let after = exposition(&exporter.scrape(&target, module));
        let c = compare(&before, &ours, &after, 0.05);
        println!(
            "{module:<18} matched {:>5}  missing {:>3}  extra {:>3}  differing {:>3}",
            c.matched,
            c.missing.len(),
            c.extra.len(),
            c.differing.len()
        );
        assert!(
            c.matched > 0 || before.series.is_empty(),
            "{module}: nothing to compare"
        );
        if !c.is_exact() {
            failures.push(format!(
                "{module}: missing {:?}\nextra {:?}\ndiffering {:?}",
                &c.missing[..c.missing.len().min(10)],
                &c.extra[..c.extra.len().min(10)],
                &c.differing[..c.differing.len().min(10)]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The built-in `system` and `if_mib` give a subset of snmp_exporter's
/// modules of those names: every series they give is one of its series,
/// with its name, labels, type and value.
#[test]
fn builtin_modules_are_a_subset_of_snmp_exporters() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let file = write_v021_modules(dir.path(), &["if_mib", "system"], "public");
    let exporter = SnmpExporter::start(&file);
    let p = Promsnmp::start(&[("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]);
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &format!(
            r#"{{"devices":[{{"sysName":"host","agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{}}},"version":1,"readCommunity":"public"}}]}}]}}"#,
            snmpd.port
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for module in ["if_mib", "system"] {
        let before = exposition(&exporter.scrape(&snmpd.addr(), module));
        let ours = http_get(
            &p.addr(),
            &format!("/snmp?target=host&module={module}&live=true"),
        );
        let ours = exposition(&ours.text());
        let after = exposition(&exporter.scrape(&snmpd.addr(), module));
        let c = compare(&before, &ours, &after, 0.05);
        println!(
            "built-in {module:<8} matched {:>4}  not built in {:>4}  extra {}  differing {}",
            c.matched,
            c.missing.len(),
            c.extra.len(),
            c.differing.len()
        );
        assert!(c.matched > 0);
        assert!(c.extra.is_empty(), "{module}: {:?}", c.extra);
        assert!(c.differing.is_empty(), "{module}: {:?}", c.differing);
    }
}
