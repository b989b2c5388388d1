//! snmpsim serving recordings of real devices (snmpsim-data), prepared for a
//! side-by-side comparison, and the module files that compare promsnmp with
//! snmp_exporter 0.21 on them.
//!
//! snmpsim comes from a virtualenv: `$SNMPSIM_VENV`, else `/opt/snmpsim-venv`
//! (`python3 -m venv /opt/snmpsim-venv && /opt/snmpsim-venv/bin/pip install
//! snmpsim==1.2.2 snmpsim-data==1.0.1`; `scripts/test` does it). The recordings
//! are copied to a temp dir first: decompressed (snmpsim decompresses a
//! `.bz2` again on every backward seek), sorted by OID with repeated OIDs
//! dropped (snmpsim answers in file order), and the values snmpsim varies on
//! every request frozen (its `numeric` and `writecache` variations), so two
//! scrapes of one device are identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The snmpsim virtualenv: `$SNMPSIM_VENV`, else `/opt/snmpsim-venv`.
/// Panics naming what to install when snmpsim is not there.
pub fn snmpsim_venv() -> PathBuf {
    let venv = std::env::var_os("SNMPSIM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/snmpsim-venv"));
    let python = venv.join("bin").join("python3");
    let responder = venv.join("bin").join("snmpsim-command-responder");
    if !python.is_file() || !responder.is_file() || snmpsim_data_dir(&venv).is_none() {
        panic!(
            "snmpsim not found in {} (set SNMPSIM_VENV to its virtualenv): install it with \
             `apt-get install python3-venv python3-gdbm && /usr/bin/python3 -m venv {0} && \
             {0}/bin/pip install snmpsim==1.2.2 snmpsim-data==1.0.1`",
            venv.display()
        );
    }
    venv
}

/// snmpsim-data's recordings inside the virtualenv.
fn snmpsim_data_dir(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/snmpsim_data/data"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// Copies the named recordings (`UPS/apc-8641`, = the v2c community) from
/// `src` into `dst` as `<name>.snmprec`: decompressed, sorted, repeated OIDs
/// dropped, changing values frozen. Run by Debian's /usr/bin/python3.
const PREPARE: &str = r##"
import bz2, os, re, sys
src, dst, names = sys.argv[1], sys.argv[2], sys.argv[3:]
HEX = re.compile(rb"(?:[0-9a-fA-F]{2})*")
def freeze(tag, value):
    if b":" in tag:
        base, variation = tag.split(b":", 1)
        if variation == b"numeric":
            params = dict(p.split(b"=", 1) for p in value.split(b",") if b"=" in p)
            return base, str(int(float(params.get(b"initial", params.get(b"min", b"0"))))).encode()
        if variation == b"writecache":
            m = re.search(rb"(?:^|,)value=(.*)$", value)
            return base, m.group(1) if m else b""
        return tag, value
    if tag.endswith(b"x") and not HEX.fullmatch(value):
        return tag[:-1], value
    return tag, value
for name in names:
    path = os.path.join(src, name + ".snmprec")
    if not os.path.exists(path):
        path += ".bz2"
    if not os.path.exists(path):
        sys.exit(f"recording {name} not in {src}")
    records = {}
    with (bz2.open if path.endswith(".bz2") else open)(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            parts = line.split(b"|", 2)
            if len(parts) != 3 or line.lstrip().startswith(b"#"):
                continue
            try:
                key = tuple(int(x) for x in parts[0].strip(b".").split(b"."))
            except ValueError:
                continue
            if key not in records:
                tag, value = freeze(parts[1], parts[2])
                records[key] = parts[0] + b"|" + tag + b"|" + value
    out = os.path.join(dst, name + ".snmprec")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        for key in sorted(records):
            f.write(records[key] + b"\n")
"##;

/// Starts snmpsim's command responder with pysnmp's GETBULK answer limit
/// raised: snmpsim 1.2.2's `--max-var-binds` sets an attribute pysnmp 7 no
/// longer reads, and with pysnmp's own 64 a GETBULK for more than 64 columns
/// (and no non-repeaters) is never answered.
const BOOT: &str = r#"
import sys
from pysnmp.entity.rfc3413 import cmdrsp
assert hasattr(cmdrsp.BulkCommandResponder, "max_varbinds"), "pysnmp without BulkCommandResponder.max_varbinds"
cmdrsp.BulkCommandResponder.max_varbinds = int(sys.argv.pop(1))
from snmpsim.commands.responder import main
sys.argv[0] = "snmpsim-command-responder"
sys.exit(main())
"#;

/// Varbinds snmpsim puts in one GETBULK answer at most.
const MAX_VARBINDS: u32 = 10_000;

/// snmpsim on udp:127.0.0.1:<port> serving prepared copies of recordings;
/// each recording answers to its name as the v2c community. Killed on drop.
pub struct Snmpsim {
    _child: ProcGuard,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Snmpsim {
    /// Prepares `recordings` and starts snmpsim; waits (bounded 60 s) until
    /// the first one answers.
    pub fn start(recordings: &[&str]) -> Snmpsim {
        Snmpsim::start_with_answer_limit(recordings, MAX_VARBINDS)
    }

    /// [`Snmpsim::start`] with pysnmp's GETBULK answer limit at
    /// `max_varbinds` (pysnmp's own default is 64).
    pub fn start_with_answer_limit(recordings: &[&str], max_varbinds: u32) -> Snmpsim {
        assert!(!recordings.is_empty(), "snmpsim needs a recording");
        let venv = snmpsim_venv();
        let source = snmpsim_data_dir(&venv).expect("snmpsim-data");
        let python = Path::new("/usr/bin/python3");
        assert!(
            python.is_file(),
            "/usr/bin/python3 not found (Debian package `python3`): it prepares the recordings"
        );
        require_program("snmpgetnext", "snmp");
        let dir = tempfile::Builder::new()
            .prefix("psnmp-snmpsim")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let mut cmd = Command::new(python);
        cmd.arg("-c")
            .arg(PREPARE)
            .arg(&source)
            .arg(&data)
            .args(recordings);
        let out = run_bounded(&mut cmd, Duration::from_secs(120)).expect("preparing recordings");
        assert!(
            out.status.success(),
            "preparing the recordings failed:\n{}{}",
            out.stdout,
            out.stderr
        );
        for attempt in 1..=3 {
            let port = free_udp_port();
            let mut cmd = Command::new(venv.join("bin").join("python3"));
            cmd.arg("-c")
                .arg(BOOT)
                .arg(max_varbinds.to_string())
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!(
                    "--cache-dir={}",
                    dir.path().join("cache").display()
                ))
                .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
                .arg("--log-level=error")
                .arg(format!(
                    "--logging-method=file:{}",
                    dir.path().join("snmpsim.log").display()
                ))
                // It refuses to run as root unless told.
                .env("SNMPSIM_ALLOW_ROOT", "true");
            let mut child = ProcGuard::spawn(cmd, "snmpsim", &dir.path().join("snmpsim.out"));
            let addr = format!("127.0.0.1:{port}");
            let started = Instant::now();
            loop {
                if let Some(status) = child.try_wait() {
                    let tail = child.log_tail();
                    if tail.contains("Address already in use") && attempt < 3 {
                        eprintln!("snmpsim could not bind {addr} (attempt {attempt}), retrying");
                        break;
                    }
                    panic!("snmpsim exited during startup ({status}):\n{tail}");
                }
                let probe = try_snmp_cmd(
                    "snmpgetnext",
                    &[
                        "-v2c",
                        "-c",
                        recordings[0],
                        "-r0",
                        "-t1",
                        &addr,
                        "1.3.6.1.2.1",
                    ],
                );
                if probe.map(|rows| !rows.is_empty()).unwrap_or(false) {
                    return Snmpsim {
                        _child: child,
                        port,
                        _dir: dir,
                    };
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "snmpsim did not answer on {addr} within 60 s:\n{}",
                    child.log_tail()
                );
                thread::sleep(Duration::from_millis(200));
            }
        }
        panic!("snmpsim could not bind a free UDP port in 3 attempts");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Where a module comes from: snmp_exporter 0.21's own file, or the current
/// snmp.yml (its module given to 0.21 without the keys 0.21 lacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    V021,
    Current,
}

/// Keys of the current layout snmp_exporter 0.21 does not read (it refuses
/// a file holding them): metric and lookup keys.
const NEWER_METRIC_KEYS: [&str; 4] = ["scale", "offset", "datetime_pattern", "display_hint"];
const NEWER_LOOKUP_KEYS: [&str; 2] = ["enum_values", "display_hint"];

/// A module for the comparison: the full definition (promsnmp reads it),
/// the one 0.21 reads, and what the removed `scale`/`offset` do to each
/// series name, as snmp_exporter applies them (value × scale when scale is
/// not 0, then + offset).
pub struct RecordedModule {
    pub name: String,
    pub full: serde_yaml_ng::Value,
    pub for_v021: serde_yaml_ng::Value,
    pub scaled: BTreeMap<String, (f64, f64)>,
}

/// Reads `name` from the reference file of `source`. Panics when the module
/// uses a newer key this comparison cannot check (only scale and offset are
/// checked).
pub fn recorded_module(source: Source, name: &str) -> RecordedModule {
    let reference = reference_modules_dir();
    let file = match source {
        Source::V021 => "snmp-v0.21.yml",
        Source::Current => "snmp.yml",
    };
    let text = fs::read_to_string(reference.join(file)).expect("reference file");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("reference YAML");
    let modules = match source {
        Source::V021 => &doc,
        Source::Current => &doc["modules"],
    };
    let mut full = modules
        .get(name)
        .unwrap_or_else(|| panic!("module {name} not in {file}"))
        .clone();
    let map = full.as_mapping_mut().expect("a module is a mapping");
    map.remove("auth");
    map.remove("version");
    let mut for_v021 = full.clone();
    let mut scaled = BTreeMap::new();
    let metrics = for_v021
        .get_mut("metrics")
        .and_then(|m| m.as_sequence_mut())
        .expect("metrics");
    for metric in metrics {
        let m = metric.as_mapping_mut().expect("a metric is a mapping");
        let metric_name = m["name"].as_str().expect("name").to_string();
        let kind = m["type"].as_str().unwrap_or("").to_string();
        for key in NEWER_METRIC_KEYS {
            let Some(value) = m.remove(key) else { continue };
            match key {
                "scale" | "offset" => {
                    assert!(
                        !matches!(kind.as_str(), "EnumAsInfo" | "EnumAsStateSet" | "Bits"),
                        "{name}.{metric_name}: {key} on a {kind}"
                    );
                    let v = value.as_f64().expect("a number");
                    let entry = scaled.entry(metric_name.clone()).or_insert((0.0, 0.0));
                    if key == "scale" {
                        entry.0 = v;
                    } else {
                        entry.1 = v;
                    }
                }
                _ => panic!("{name}.{metric_name}: `{key}` is not checked by this comparison"),
            }
        }
        if let Some(lookups) = m.get_mut("lookups").and_then(|l| l.as_sequence_mut()) {
            for lookup in lookups {
                let l = lookup.as_mapping_mut().expect("a lookup is a mapping");
                for key in NEWER_LOOKUP_KEYS {
                    assert!(
                        !l.contains_key(key),
                        "{name}.{metric_name}: lookup `{key}` is not checked by this comparison"
                    );
                }
            }
        }
        assert!(
            m.get("regex_extracts").is_none() || !scaled.contains_key(&metric_name),
            "{name}.{metric_name}: scale with regex_extracts is not checked"
        );
    }
    RecordedModule {
        name: name.to_string(),
        full,
        for_v021,
        scaled,
    }
}

/// The module name snmp_exporter is asked for: one copy per community.
pub fn exporter_module_name(module: &str, community: &str) -> String {
    let slug: String = community
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{module}__{slug}")
}

/// snmp_exporter 0.21's file: one full copy of each module per community it
/// is compared on (0.21 keeps the auth inside the module), v2c.
pub fn write_exporter_modules(dir: &Path, pairs: &[(&RecordedModule, &str)]) -> std::path::PathBuf {
    let mut out = serde_yaml_ng::Mapping::new();
    for (module, community) in pairs {
        let mut m = module.for_v021.clone();
        let map = m.as_mapping_mut().expect("mapping");
        map.insert("version".into(), 2.into());
        let mut auth = serde_yaml_ng::Mapping::new();
        auth.insert("community".into(), (*community).into());
        map.insert("auth".into(), auth.into());
        out.insert(exporter_module_name(&module.name, community).into(), m);
    }
    let path = dir.join("exporter-v021.yml");
    fs::write(&path, serde_yaml_ng::to_string(&out).expect("YAML")).expect("write modules");
    path
}

/// promsnmp's file: the full modules under their own names, in the 0.21
/// layout (which promsnmp reads too).
pub fn write_promsnmp_modules(dir: &Path, modules: &[&RecordedModule]) -> std::path::PathBuf {
    let mut out = serde_yaml_ng::Mapping::new();
    for module in modules {
        let mut m = module.full.clone();
        let map = m.as_mapping_mut().expect("mapping");
        map.insert("version".into(), 2.into());
        let mut auth = serde_yaml_ng::Mapping::new();
        auth.insert("community".into(), "public".into());
        map.insert("auth".into(), auth.into());
        out.insert(module.name.clone().into(), m);
    }
    let path = dir.join("promsnmp-modules.yml");
    fs::write(&path, serde_yaml_ng::to_string(&out).expect("YAML")).expect("write modules");
    path
}

impl RecordedModule {
    /// snmp_exporter 0.21's series as the full module gives them: the
    /// removed `scale`/`offset` applied to the series of their metrics.
    pub fn apply(&self, mut e: Exposition) -> Exposition {
        for ((name, _), value) in e.series.iter_mut() {
            if let Some(&(scale, offset)) = self.scaled.get(name) {
                if scale != 0.0 {
                    *value *= scale;
                }
                *value += offset;
            }
        }
        e
    }
}
