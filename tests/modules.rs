//! Modules end to end: snmp_exporter's generated files load completely, bad
//! files stop the start naming file, line and key, reload keeps the old
//! configuration on error, per-device and per-seed modules, module rules,
//! the scrape parameters `module` and `auth`, targets outside the
//! inventory, and modules a device names that are no longer loaded — against
//! a real `snmpd`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use promsnmp::modules::{ModuleSet, ModuleSources};

fn quiet_env() -> Vec<(&'static str, &'static str)> {
    vec![("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")]
}

/// Modules and metrics a module file defines, counted from its YAML.
fn counts(path: &Path) -> (BTreeMap<String, usize>, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let modules = doc.get("modules").unwrap_or(&doc).as_mapping().unwrap();
    let mut per_module = BTreeMap::new();
    for (name, module) in modules {
        let metrics = module
            .get("metrics")
            .and_then(|m| m.as_sequence())
            .map_or(0, |m| m.len());
        per_module.insert(name.as_str().unwrap().to_string(), metrics);
    }
    let total = per_module.values().sum();
    (per_module, total)
}

#[test]
fn reference_files_load_completely() {
    let dir = reference_modules_dir();
    let builtin = ModuleSet::builtin();
    for (file, expect_modules, legacy) in [("snmp.yml", 53, false), ("snmp-v0.21.yml", 22, true)] {
        let path = dir.join(file);
        let started = std::time::Instant::now();
        let set = ModuleSet::load(&ModuleSources {
            files: Some(path.display().to_string()),
            rules: None,
        })
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let (per_module, metrics) = counts(&path);
        assert_eq!(per_module.len(), expect_modules, "{file}");
        // Every module of the file is loaded, with every metric; built-ins the
        // file does not redefine stay.
        let mut expected_metrics = metrics;
        let mut expected_modules = per_module.len();
        for name in builtin.module_names() {
            if !per_module.contains_key(name) {
                expected_modules += 1;
                expected_metrics += builtin.module(name).unwrap().metrics.len();
            }
        }
        assert_eq!(set.module_count(), expected_modules, "{file}");
        assert_eq!(set.metric_count(), expected_metrics, "{file}");
        for (name, count) in &per_module {
            let module = set
                .module(name)
                .unwrap_or_else(|| panic!("{file}: {name} missing"));
            assert_eq!(module.metrics.len(), *count, "{file}: {name}");
            assert_eq!(module.source, path.display().to_string());
            // Each module plans a poll; the modules that walk something
            // plan columns or scalars to read.
            let resolved = set.resolve(Some(std::slice::from_ref(name)));
            assert!(resolved.unknown.is_empty());
            if !module.walk.is_empty() && !module.metrics.is_empty() {
                assert!(
                    !resolved.plan.columns.is_empty() || !resolved.plan.scalars.is_empty(),
                    "{file}: {name} plans nothing"
                );
            }
        }
        // Legacy layout: each module's auth under the module's name.
        if legacy {
            assert!(set.auth("if_mib").is_some(), "{file}");
        } else {
            assert!(set.auth("public_v2").is_some(), "{file}");
        }
        println!(
            "{file}: {} modules, {} metrics, loaded in {:.0} ms",
            per_module.len(),
            metrics,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    // The union of all modules of the current file plans each column once.
    let set = ModuleSet::load(&ModuleSources {
        files: Some(dir.join("snmp.yml").display().to_string()),
        rules: None,
    })
    .unwrap();
    let all: Vec<String> = set.module_names().map(str::to_string).collect();
    let plan = &set.resolve(Some(&all)).plan;
    let mut columns = plan.columns.clone();
    columns.dedup();
    assert_eq!(columns.len(), plan.columns.len());
    for pair in plan.columns.windows(2) {
        assert!(
            !pair[1].starts_with(&pair[0]),
            "{:?} inside {:?}",
            pair[1],
            pair[0]
        );
    }
}

/// A copy of the reference snmp.yml with `from` replaced by `to` once, in `dir`.
fn mangled_copy(dir: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(reference_modules_dir().join("snmp.yml")).unwrap();
    assert!(text.contains(from), "{from:?} not in snmp.yml");
    let path = dir.join("snmp.yml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn bad_module_files_stop_the_start_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let start = |files: &str| {
        let (status, output) = run_promsnmp_once(&[], &[("PROMSNMP_MODULES_FILE", files)]);
        assert_eq!(status.code(), Some(2), "{files}: {output}");
        assert!(!output.contains("promsnmp listening"), "{output}");
        output
    };
    // An unknown key, deep in the real file.
    let typo = mangled_copy(
        dir.path(),
        "      help: The type of interface",
        "      hepl: The type of interface",
    );
    let out = start(&typo.display().to_string());
    assert!(
        out.contains(&format!("{}:", typo.display()))
            && out.contains("modules.if_mib.metrics[2]")
            && out.contains("unknown field `hepl`"),
        "{out}"
    );
    let line = out
        .split(&format!("{}:", typo.display()))
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|l| l.parse::<usize>().ok())
        .expect("a line number");
    let text = std::fs::read_to_string(&typo).unwrap();
    assert!(
        text.lines().nth(line - 1).unwrap().contains("hepl"),
        "line {line}"
    );

    // A value of the wrong type.
    let bad_type = dir.path().join("bad-type.yml");
    std::fs::write(
        &bad_type,
        "modules:\n  m:\n    walk: [1.3.6.1.2.1.1]\n    max_repetitions: many\n",
    )
    .unwrap();
    let out = start(&bad_type.display().to_string());
    assert!(
        out.contains("bad-type.yml:4:") && out.contains("modules.m.max_repetitions"),
        "{out}"
    );

    // One module in two files.
    let a = dir.path().join("a.yml");
    let b = dir.path().join("b.yml");
    std::fs::write(&a, "modules:\n  twice:\n    metrics: []\n").unwrap();
    std::fs::write(&b, "modules:\n  twice:\n    metrics: []\n").unwrap();
    let out = start(&format!("{},{}", a.display(), b.display()));
    assert!(
        out.contains("module `twice`") && out.contains("a.yml") && out.contains("b.yml"),
        "{out}"
    );

    // A file that is not there, and a glob that matches nothing.
    let out = start("/nonexistent/snmp.yml");
    assert!(
        out.contains("/nonexistent/snmp.yml") && out.contains("matches no file"),
        "{out}"
    );
    let out = start(&format!("{}/*.yaml", dir.path().display()));
    assert!(out.contains("matches no file"), "{out}");

    // Rules naming a module that is not loaded.
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "- sys_descr: Linux\n  modules: [nope]\n").unwrap();
    let (status, out) = run_promsnmp_once(
        &[],
        &[("PROMSNMP_MODULE_RULES", &rules.display().to_string())],
    );
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("rules.yaml") && out.contains("`nope`"),
        "{out}"
    );
}

/// Imports one v2c device at 127.0.0.1:`port`; `modules` as JSON or `None`.
fn import(p: &Promsnmp, name: &str, port: u16, modules: Option<&str>) -> HttpResponse {
    let modules = modules
        .map(|m| format!(r#","modules":{m}"#))
        .unwrap_or_default();
    http_post_json(
        &p.addr(),
        "/promsnmp/inventory",
        &format!(
            r#"{{"devices":[{{"sysName":"{name}"{modules},"agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{port}}},"version":1,"timeout":2000,"retries":1,"readCommunity":"public"}}]}}]}}"#
        ),
    )
}

fn names(body: &str) -> std::collections::BTreeSet<String> {
    parse_text(body).into_iter().map(|(n, _, _)| n).collect()
}

fn requests(snmpd: &Snmpd) -> u64 {
    snmp_get_u64(&snmpd.addr(), "public", "1.3.6.1.2.1.11.1.0")
}

#[test]
fn scrape_parameters_select_modules_and_devices_keep_their_own() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let reference = reference_modules_dir()
        .join("snmp.yml")
        .display()
        .to_string();
    let mut env = quiet_env();
    env.push(("PROMSNMP_MODULES_FILE", &reference));
    let p = Promsnmp::start(&env);
    let r = import(&p, "host", snmpd.port, None);
    assert_eq!(r.status, 200, "{}", r.text());

    // The defaults: system + if_mib of the loaded file.
    let all = http_get(&p.addr(), "/snmp?target=host");
    assert_eq!(all.status, 200, "{}", all.text());
    let all_names = names(&all.text());
    for name in [
        "sysUpTime",
        "sysDescr",
        "ifOperStatus",
        "ifAdminStatus",
        "ifType_info",
        "ifHCInOctets",
        "ifInErrors",
        "ifPhysAddress",
        "interface_utilization_count",
    ] {
        assert!(
            all_names.contains(name),
            "{name} missing from {all_names:?}"
        );
    }
    let lo_up = parse_text(&all.text())
        .into_iter()
        .find(|(n, l, _)| n == "ifOperStatus" && l.get("ifDescr").map(String::as_str) == Some("lo"))
        .expect("ifOperStatus of lo");
    assert_eq!(lo_up.2, "1", "lo is up");
    assert!(lo_up.1.contains_key("ifName") && lo_up.1.contains_key("ifAlias"));

    // A module the device polls anyway: from the cached poll, no SNMP request.
    let before = requests(&snmpd);
    let only = http_get(&p.addr(), "/snmp?target=host&module=if_mib");
    assert_eq!(only.status, 200);
    assert_eq!(
        requests(&snmpd) - before,
        1,
        "only our own GET reached the agent"
    );
    let only_names = names(&only.text());
    assert!(
        only_names.contains("ifOperStatus") && !only_names.contains("sysDescr"),
        "{only_names:?}"
    );

    // Other modules: a poll of their own (then cached), with their series.
    let before = requests(&snmpd);
    let host = http_get(
        &p.addr(),
        "/snmp?target=host&module=hrStorage&module=ucd_memory,system",
    );
    assert_eq!(host.status, 200, "{}", host.text());
    assert!(requests(&snmpd) - before > 1, "walked");
    let host_names = names(&host.text());
    for name in [
        "hrStorageSize",
        "hrStorageUsed",
        "memTotalReal",
        "sysUpTime",
    ] {
        assert!(
            host_names.contains(name),
            "{name} missing from {host_names:?}"
        );
    }
    assert!(!host_names.contains("ifOperStatus"));
    let storage = parse_text(&host.text())
        .into_iter()
        .find(|(n, _, _)| n == "hrStorageSize")
        .unwrap();
    assert!(
        storage.1.contains_key("hrStorageDescr") && storage.1.contains_key("hrStorageIndex"),
        "{storage:?}"
    );
    let before = requests(&snmpd);
    let again = http_get(
        &p.addr(),
        "/snmp?target=host&module=hrStorage,ucd_memory&module=system",
    );
    assert_eq!(again.status, 200);
    assert_eq!(requests(&snmpd) - before, 1, "cached");

    // Unknown module or auth: 400 naming it. auth is accepted otherwise.
    let r = http_get(&p.addr(), "/snmp?target=host&module=does_not_exist");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("does_not_exist"), "{}", r.text());
    let r = http_get(&p.addr(), "/snmp?target=host&auth=nobody");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("nobody"), "{}", r.text());
    assert_eq!(
        http_get(&p.addr(), "/snmp?target=host&auth=public_v2&module=if_mib").status,
        200
    );

    // Not in the inventory: 404 without probing, and it says how to allow it.
    let r = http_get(
        &p.addr(),
        &format!("/snmp?target=127.0.0.1:{}&module=if_mib", snmpd.port + 1),
    );
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("PROMSNMP_SCRAPE_UNLISTED_TARGETS"),
        "{}",
        r.text()
    );

    // A device with its own modules; an import naming an unknown module
    // changes nothing.
    let before_export = http_get(&p.addr(), "/promsnmp/inventory").text();
    let r = import(&p, "host", snmpd.port, Some(r#"["if_mib","nope"]"#));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "devices[0].modules[1]", "{}", r.text());
    assert!(r.text().contains("nope"));
    assert_eq!(
        http_get(&p.addr(), "/promsnmp/inventory").text(),
        before_export
    );
    let r = import(&p, "host", snmpd.port, Some(r#"["hrSystem","if_mib"]"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let exported = http_get(&p.addr(), "/promsnmp/inventory").json();
    assert_eq!(
        exported["devices"][0]["modules"],
        serde_json::json!(["hrSystem", "if_mib"])
    );
    let own = http_get(&p.addr(), "/snmp?target=host&live=true");
    let own_names = names(&own.text());
    assert!(
        own_names.contains("hrSystemProcesses") && own_names.contains("ifOperStatus"),
        "{own_names:?}"
    );
    assert!(
        !own_names.contains("sysDescr"),
        "system is no longer one of its modules"
    );

    // Health shows what is loaded.
    let health = http_get(&p.addr(), "/actuator/health").json();
    let modules = &health["components"]["modules"]["details"];
    assert_eq!(modules["modules"], 53, "{health}");
    assert_eq!(modules["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(modules["files"][0], reference.as_str());
}

#[test]
fn unlisted_targets_are_polled_only_when_allowed() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let target = format!("127.0.0.1:{}", snmpd.port);
    let mut env = quiet_env();
    env.push(("PROMSNMP_SCRAPE_UNLISTED_TARGETS", "true"));
    let p = Promsnmp::start(&env);
    // snmp_exporter's defaults: module if_mib, auth public_v2.
    let before = requests(&snmpd);
    let r = http_get(&p.addr(), &format!("/snmp?target={target}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = names(&r.text());
    assert!(
        got.contains("ifOperStatus") && !got.contains("sysDescr"),
        "{got:?}"
    );
    assert!(requests(&snmpd) - before > 1);
    // Cached like any device, and concurrent scrapes share one walk.
    let before = requests(&snmpd);
    assert_eq!(
        http_get(&p.addr(), &format!("/snmp?target={target}")).status,
        200
    );
    assert_eq!(requests(&snmpd) - before, 1, "cached");
    let before = requests(&snmpd);
    let addr = p.addr();
    let path = format!("/snmp?target={target}&module=system&auth=public_v1");
    let scrapes: Vec<_> = (0..6)
        .map(|_| {
            let (addr, path) = (addr.clone(), path.clone());
            std::thread::spawn(move || http_get(&addr, &path))
        })
        .collect();
    for s in scrapes {
        let r = s.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("sysDescr{"), "{}", r.text());
    }
    let walked = requests(&snmpd) - before - 1;
    let before = requests(&snmpd);
    assert_eq!(
        http_get(&p.addr(), &format!("{path}&live=true")).status,
        200
    );
    let one_poll = requests(&snmpd) - before - 1;
    assert!(
        walked <= one_poll + 2,
        "six concurrent scrapes cost {walked} requests, one poll {one_poll} (v1: a GETNEXT per scalar and row)"
    );
    // Not in /targets: the inventory is unchanged.
    assert_eq!(
        http_get(&p.addr(), "/targets").json(),
        serde_json::json!([])
    );
    // A bad target or an unknown auth: 400.
    assert_eq!(
        http_get(&p.addr(), "/snmp?target=tcp://127.0.0.1:1").status,
        400
    );
    assert_eq!(
        http_get(&p.addr(), &format!("/snmp?target={target}&auth=none")).status,
        400
    );
}

#[test]
fn reload_replaces_the_modules_and_keeps_them_on_error() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.yml");
    let one = "modules:\n  sysname_only:\n    walk: [1.3.6.1.2.1.1.5]\n    metrics:\n    - {name: sysName, oid: 1.3.6.1.2.1.1.5, type: DisplayString, help: name}\n";
    std::fs::write(&file, one).unwrap();
    let path = file.display().to_string();
    let mut env = quiet_env();
    env.push(("PROMSNMP_MODULES_FILE", &path));
    let p = Promsnmp::start(&env);
    let fingerprint = |p: &Promsnmp| {
        http_get(&p.addr(), "/actuator/health").json()["components"]["modules"]["details"]
            ["fingerprint"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = fingerprint(&p);
    assert_eq!(
        import(&p, "host", snmpd.port, Some(r#"["sysname_only"]"#)).status,
        200
    );
    assert_eq!(
        import(&p, "host", snmpd.port, Some(r#"["later"]"#)).status,
        400
    );

    // A bad file: 400 with the reason; the old modules stay.
    std::fs::write(&file, format!("{one}    bogus: 1\n")).unwrap();
    let r = http_request(&p.addr(), "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("extra.yml") && r.text().contains("bogus"),
        "{}",
        r.text()
    );
    assert_eq!(fingerprint(&p), first);
    assert_eq!(
        self_metric(
            &p.addr(),
            r#"promsnmp_module_reloads_total{result="error"}"#
        ),
        1.0
    );
    let health = http_get(&p.addr(), "/actuator/health").json();
    assert!(
        health["components"]["modules"]["details"]["lastReloadError"]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{health}"
    );
    let r = http_get(&p.addr(), "/snmp?target=host");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("sysName{"),
        "still polled with the old module"
    );

    // SIGHUP with a good file: a new module, a new fingerprint.
    std::fs::write(&file, format!("{one}  later:\n    walk: [1.3.6.1.2.1.1.3]\n    metrics:\n    - {{name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge, help: up}}\n")).unwrap();
    // SAFETY-free: a signal to our own child process.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(
        "the reload",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (fingerprint(&p) != first).then_some(()),
    );
    assert_eq!(
        self_metric(&p.addr(), r#"promsnmp_module_reloads_total{result="ok"}"#),
        1.0
    );
    assert!(p.log().contains("modules reloaded"));
    assert_eq!(
        import(&p, "host", snmpd.port, Some(r#"["later"]"#)).status,
        200
    );
    let r = http_get(&p.addr(), "/snmp?target=host&live=true");
    assert!(r.text().contains("sysUpTime "), "{}", r.text());
}

#[test]
fn a_stored_module_that_is_gone_is_reported_not_fatal() {
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gone.yml");
    std::fs::write(&file, "modules:\n  gone:\n    walk: [1.3.6.1.2.1.1.5]\n    metrics:\n    - {name: sysName, oid: 1.3.6.1.2.1.1.5, type: DisplayString, help: name}\n").unwrap();
    let path = file.display().to_string();
    let mut env = quiet_env();
    env.push(("PROMSNMP_MODULES_FILE", &path));
    let p = Promsnmp::start(&env);
    assert_eq!(
        import(&p, "host", snmpd.port, Some(r#"["gone","if_mib"]"#)).status,
        200
    );
    let home = p.into_dir();
    // Restarted without the file: it starts, says so, and polls the rest.
    let p = Promsnmp::start_in(home, &quiet_env());
    assert!(
        p.log().contains("devices name a module that is not loaded"),
        "{}",
        p.log()
    );
    let r = http_get(&p.addr(), "/snmp?target=host");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("ifOperStatus{") && !r.text().contains("sysName{"));
    let health = http_get(&p.addr(), "/actuator/health").json();
    assert_eq!(health["status"], "UP");
    assert_eq!(
        health["components"]["modules"]["details"]["unknownModules"],
        serde_json::json!({"gone": ["host"]}),
        "{health}"
    );
    assert_eq!(
        self_metric(
            &p.addr(),
            r#"promsnmp_inventory_unknown_module_devices{module="gone"}"#
        ),
        1.0
    );
}

#[test]
fn discovery_gives_modules_by_seed_and_by_rules() {
    let snmpd = Snmpd::start(&SnmpdConfig {
        sys_name: "linux-host".into(),
        ..Default::default()
    });
    let reference = reference_modules_dir()
        .join("snmp.yml")
        .display()
        .to_string();
    let mut env = quiet_env();
    env.push(("PROMSNMP_MODULES_FILE", &reference));
    let p = Promsnmp::start(&env);
    let discover = |body: String| {
        let r = http_post_json(&p.addr(), "/promsnmp/discovery", &body);
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        wait_for(
            "discovery",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                let progress = http_get(&p.addr(), &format!("/promsnmp/discovery/{id}")).json();
                (progress["progress"]["state"] != "running").then_some(progress)
            },
        )
    };
    let seed = |extra: &str| {
        format!(
            r#"{{"potentialTargets":["127.0.0.1"],"port":{}{extra}}}"#,
            snmpd.port
        )
    };
    // net-snmp's sysObjectID: the built-in rule's host modules (those loaded).
    let progress = discover(seed(""));
    assert_eq!(progress["progress"]["found"], 1, "{progress}");
    let device = &http_get(&p.addr(), "/promsnmp/inventory").json()["devices"][0];
    assert_eq!(
        device["modules"],
        serde_json::json!([
            "system",
            "if_mib",
            "hrSystem",
            "hrStorage",
            "ucd_memory",
            "ucd_la_table",
            "ucd_system_stats"
        ]),
        "{device}"
    );
    let r = http_get(&p.addr(), "/snmp?target=linux-host");
    let got = names(&r.text());
    for name in [
        "hrStorageUsed",
        "memAvailReal",
        "laLoadInt",
        "ssCpuRawIdle",
        "hrSystemUptime",
        "ifOperStatus",
    ] {
        assert!(got.contains(name), "{name} missing: {got:?}");
    }
    // The seed's modules win; a seed naming an unknown module is refused.
    discover(seed(r#","modules":["if_mib"]"#));
    let device = &http_get(&p.addr(), "/promsnmp/inventory").json()["devices"][0];
    assert_eq!(device["modules"], serde_json::json!(["if_mib"]));
    let r = http_post_json(
        &p.addr(),
        "/promsnmp/discovery",
        &seed(r#","modules":["nope"]"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "modules[0]", "{}", r.text());
    // Rediscovery without seed modules keeps what the device has.
    discover(seed(""));
    let device = &http_get(&p.addr(), "/promsnmp/inventory").json()["devices"][0];
    assert_eq!(device["modules"], serde_json::json!(["if_mib"]));

    // Rules from a file replace the built-in ones.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "- sys_object_id: 1.3.6.1.4.1.9\n  modules: [if_mib]\n- sys_descr: '(?i)linux'\n  modules: [system, hrStorage]\n").unwrap();
    let rules_path = rules.display().to_string();
    let mut env = quiet_env();
    env.push(("PROMSNMP_MODULES_FILE", &reference));
    env.push(("PROMSNMP_MODULE_RULES", &rules_path));
    let q = Promsnmp::start(&env);
    let r = http_post_json(&q.addr(), "/promsnmp/discovery", &seed(""));
    assert_eq!(r.status, 202);
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_for(
        "discovery",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let progress = http_get(&q.addr(), &format!("/promsnmp/discovery/{id}")).json();
            (progress["progress"]["found"] == 1).then_some(())
        },
    );
    let device = &http_get(&q.addr(), "/promsnmp/inventory").json()["devices"][0];
    assert_eq!(
        device["modules"],
        serde_json::json!(["system", "hrStorage"])
    );
}
