//! Side by side with snmp_exporter: module files in the layout its Debian
//! package (0.21) reads, the exporter itself, and the comparison of two
//! scrapes series by series.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Modules of the current snmp.yml that use only keys 0.21 knows (compared
/// by converting them to its layout).
pub const CURRENT_HOST_MODULES: [&str; 8] = [
    "system",
    "hrStorage",
    "hrSystem",
    "hrSWRun",
    "ucd_memory",
    "ucd_la_table",
    "ucd_system_stats",
    "ip_mib",
];

/// Writes, in the 0.21 layout (auth inside each module), `modules` taken from
/// the reference files: names found in snmp-v0.21.yml from there, the others
/// converted from snmp.yml. Every module gets `community`.
pub fn write_v021_modules(dir: &Path, modules: &[&str], community: &str) -> PathBuf {
    let reference = reference_modules_dir();
    let read = |file: &str| -> serde_yaml_ng::Value {
        let text = fs::read_to_string(reference.join(file)).expect("reference file");
        serde_yaml_ng::from_str(&text).expect("reference YAML")
    };
    let v021 = read("snmp-v0.21.yml");
    let current = read("snmp.yml");
    let mut out = serde_yaml_ng::Mapping::new();
    for name in modules {
        let mut module = match v021.get(*name) {
            Some(m) => m.clone(),
            None => current["modules"]
                .get(*name)
                .unwrap_or_else(|| panic!("module {name} in neither reference file"))
                .clone(),
        };
        let map = module.as_mapping_mut().expect("a module is a mapping");
        map.insert("version".into(), 2.into());
        let mut auth = serde_yaml_ng::Mapping::new();
        auth.insert("community".into(), community.into());
        map.insert("auth".into(), auth.into());
        out.insert((*name).into(), module);
    }
    let path = dir.join("modules-v021.yml");
    fs::write(&path, serde_yaml_ng::to_string(&out).expect("YAML")).expect("write modules");
    path
}

/// Debian's `prometheus-snmp-exporter` on 127.0.0.1, killed on drop.
pub struct SnmpExporter {
    _child: ProcGuard,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl SnmpExporter {
    pub fn start(config: &Path) -> SnmpExporter {
        let bin = require_program("prometheus-snmp-exporter", "prometheus-snmp-exporter");
        let dir = tempfile::Builder::new()
            .prefix("psnmp-exporter")
            .tempdir()
            .expect("tempdir");
        let port = free_tcp_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut child = ProcGuard::spawn(cmd, "snmp_exporter", &dir.path().join("exporter.log"));
        let addr = format!("127.0.0.1:{port}");
        wait_for(
            "snmp_exporter to answer",
            Duration::from_secs(15),
            Duration::from_millis(100),
            || {
                if let Some(status) = child.try_wait() {
                    panic!("snmp_exporter exited ({status}):\n{}", child.log_tail());
                }
                try_http_request(&addr, "GET", "/metrics", &[], &[])
                    .ok()
                    .filter(|r| r.status == 200)
            },
        );
        SnmpExporter {
            _child: child,
            port,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `/snmp?target=…&module=…` (panics unless 200).
    pub fn scrape(&self, target: &str, module: &str) -> String {
        let r = http_request_timeout_long(
            &self.addr(),
            &format!(
                "/snmp?target={}&module={}",
                urlencode(target),
                urlencode(module)
            ),
        );
        assert_eq!(r.status, 200, "snmp_exporter {module}: {}", r.text());
        r.text()
    }
}

fn http_request_timeout_long(addr: &str, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, &[], &[])
}

/// One exposition: `(name, labels) -> value`, and each family's type.
#[derive(Debug, Default)]
pub struct Exposition {
    pub series: BTreeMap<(String, Vec<(String, String)>), f64>,
    pub types: BTreeMap<String, String>,
}

/// Reads Prometheus text, leaving out the exporters' own `snmp_*` series and
/// promsnmp's derived `interface_utilization`. Empty label values are
/// dropped (Prometheus treats them as absent).
pub fn exposition(body: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            out.types.insert(name.to_string(), kind.to_string());
        }
    }
    for (name, labels, value) in parse_text(body) {
        if name.starts_with("snmp_") || name.starts_with("interface_utilization") {
            continue;
        }
        let labels: Vec<(String, String)> =
            labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value {value} of {name}"));
        out.series.insert((name, labels), value);
    }
    out.types
        .retain(|n, _| !n.starts_with("snmp_") && n != "interface_utilization");
    out
}

/// How promsnmp's scrape compares with snmp_exporter's.
#[derive(Debug, Default)]
pub struct Comparison {
    pub matched: usize,
    /// In snmp_exporter's output only.
    pub missing: Vec<String>,
    /// In promsnmp's output only.
    pub extra: Vec<String>,
    /// In both, with values too far apart (or a different type).
    pub differing: Vec<String>,
}

impl Comparison {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differing.is_empty()
    }
}

fn show(key: &(String, Vec<(String, String)>)) -> String {
    let labels: Vec<String> = key.1.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}{{{}}}", key.0, labels.join(","))
}

/// Compares promsnmp's scrape with snmp_exporter's scrapes taken just before
/// and just after it: a value matches when it equals either, lies between
/// them (a moving counter), or is within `tolerance` (relative) of either
/// (a gauge that moved).
pub fn compare(
    before: &Exposition,
    promsnmp: &Exposition,
    after: &Exposition,
    tolerance: f64,
) -> Comparison {
    let mut c = Comparison::default();
    let keys: BTreeSet<&(String, Vec<(String, String)>)> =
        before.series.keys().chain(after.series.keys()).collect();
    for key in &keys {
        let reference: Vec<f64> = [before.series.get(*key), after.series.get(*key)]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        match promsnmp.series.get(*key) {
            None => {
                // Gone or new between the two snmp_exporter scrapes: either is fine.
                if before.series.contains_key(*key) && after.series.contains_key(*key) {
                    c.missing.push(show(key));
                }
            }
            Some(&p) => {
                let close = |a: f64| a == p || (a - p).abs() <= tolerance * a.abs().max(p.abs());
                let lo = reference.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = reference.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if reference.iter().any(|a| close(*a)) || (lo <= p && p <= hi) {
                    c.matched += 1;
                } else {
                    c.differing
                        .push(format!("{} = {p} (snmp_exporter {reference:?})", show(key)));
                }
            }
        }
    }
    for key in promsnmp.series.keys() {
        if !before.series.contains_key(key) && !after.series.contains_key(key) {
            c.extra.push(show(key));
        }
    }
    for (name, kind) in &before.types {
        if let Some(ours) = promsnmp.types.get(name) {
            if ours != kind {
                c.differing
                    .push(format!("{name}: type {ours}, snmp_exporter {kind}"));
            }
        }
    }
    c
}
