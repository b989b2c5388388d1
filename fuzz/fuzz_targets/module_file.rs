//! Module files in snmp_exporter's snmp.yml format (both layouts), as
//! `PROMSNMP_MODULES_FILE` loads them: `modules::file::parse_bytes`, then each
//! auth and module compiled as `ModuleSet::load` does (compile errors must be
//! errors, not panics). A module that compiles is then planned and used: its
//! walk plan, the SNMP settings of its auths, and a decode of varbinds made
//! up for its metrics and lookups (the rest of the poll pipeline included).
//!
//! The input is the file; its trailing bytes after a NUL (if any) drive
//! the made-up varbinds, so the YAML text stays readable in the corpus.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use promsnmp::modules::decode::View;
use promsnmp::modules::definition::{compile_auth, compile_module};
use promsnmp::modules::file::parse_bytes;
use promsnmp::modules::plan::{combine_params, plan};
use promsnmp::modules::Module;

/// How strictly the expositions of fuzzed modules are checked: every text
/// and protobuf line must parse, and no series may carry a label name twice
/// (`FUZZ_UNIQUE_LABELS=0` turns that off while a finding is being fixed).
fn validation(_modules: &[Arc<Module>]) -> Option<bool> {
    static UNIQUE: OnceLock<bool> = OnceLock::new();
    Some(*UNIQUE.get_or_init(|| std::env::var_os("FUZZ_UNIQUE_LABELS").is_none_or(|v| v != "0")))
}

fuzz_target!(|data: &[u8]| {
    let (text, tail) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let parsed = match parse_bytes(Path::new("fuzz.yml"), text.to_vec()) {
        Ok(p) => p,
        Err(e) => {
            if common::debug() {
                eprintln!("refused: {e}");
            }
            return;
        }
    };
    assert_eq!(parsed.contents, text);
    for (name, raw) in &parsed.auths {
        let key = if parsed.legacy_layout {
            format!("{name}.auth")
        } else {
            format!("auths.{name}")
        };
        match compile_auth(name, raw, &key) {
            Ok(auth) => {
                let agent = auth.agent("192.0.2.1", 161);
                let _ = promsnmp::snmp::AgentParams::from_agent(&agent, 25);
                let _ = format!("{auth:?}");
            }
            Err(e) if common::debug() => eprintln!("auth refused: {e:?}"),
            Err(_) => {}
        }
    }
    let mut compiled: Vec<Arc<Module>> = Vec::new();
    for (name, raw) in &parsed.modules {
        let key = if parsed.legacy_layout {
            name.clone()
        } else {
            format!("modules.{name}")
        };
        match compile_module(name, raw, "fuzz.yml", &key) {
            Ok(module) => compiled.push(Arc::new(module)),
            Err(e) if common::debug() => eprintln!("module refused: {e:?}"),
            Err(_) => {}
        }
        if compiled.len() >= 8 {
            break;
        }
    }
    if compiled.is_empty() {
        return;
    }
    let views: Vec<View> = compiled.iter().map(|m| View::of(m)).collect();
    let pairs: Vec<(&Module, &View)> = compiled.iter().map(|m| &**m).zip(views.iter()).collect();
    let walk_plan = plan(&pairs);
    let _ = walk_plan.len();
    let _ = combine_params(compiled.iter().map(|m| &m.params));
    let bases = common::interesting_oids(&compiled);
    let mut u = Unstructured::new(tail);
    if let Ok(varbinds) = common::varbinds(&mut u, &bases) {
        if common::debug() {
            eprintln!("{} modules, {} varbinds", compiled.len(), varbinds.len());
        }
        common::pipeline(&compiled, &varbinds, Some(100), validation(&compiled));
    }
});
