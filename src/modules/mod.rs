//! What promsnmp polls and serves, described by snmp_exporter's module format.
//!
//! - [`file`]       — the `snmp.yml` text, both layouts, read strictly.
//! - [`definition`] — modules and auths ready for polls: OIDs, typed metrics, shared families.
//! - [`plan`]       — the walk plan of a device: the union of its modules' OIDs, de-duplicated.
//! - [`decode`]     — polled varbinds → families, module by module.
//! - [`value`]      — one value or index as snmp_exporter reads it.
//! - [`datetime`]   — DateAndTime, NTP timestamps, `datetime_pattern`.
//! - [`rules`]      — sysObjectID / sysDescr → modules, for discovery.
//!
//! [`ModuleSet`] is one loaded configuration (built-in modules, the files of
//! `PROMSNMP_MODULES_FILE`, the rules); [`Modules`] holds the one in force
//! and replaces it on reload, keeping the old one when the new one is bad.

pub mod datetime;
pub mod decode;
pub mod definition;
pub mod file;
pub mod plan;
pub mod rules;
pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use decode::{decode_module, Skipped, Varbinds, View};
pub use definition::{Auth, Module, Oid};
pub use plan::WalkPlan;
pub use rules::Rules;

use crate::inventory::{InvalidInventory, Inventory};
use file::ModuleFileError;

/// The modules of a device that names none.
pub const DEFAULT_MODULES: [&str; 2] = ["system", "if_mib"];
/// The auth of an unlisted target when the scrape names none (snmp_exporter's default).
pub const DEFAULT_AUTH: &str = "public_v2";
/// The module of an unlisted target when the scrape names none (snmp_exporter's default).
pub const DEFAULT_UNLISTED_MODULE: &str = "if_mib";
/// Where built-in definitions say they come from.
pub const BUILTIN_SOURCE: &str = "built-in";
/// Most modules one device may have (a scrape may name).
pub const MAX_MODULES_PER_DEVICE: usize = 64;

const BUILTIN_YAML: &str = include_str!("builtin.yml");

/// Why a configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleLoadError {
    #[error(transparent)]
    File(#[from] ModuleFileError),
    #[error("{path}: {key}: {message}")]
    Definition {
        path: String,
        key: String,
        message: String,
    },
    #[error("PROMSNMP_MODULE_RULES: {0}")]
    Rules(String),
}

impl ModuleLoadError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ModuleLoadError::File(f) => f.label(),
            ModuleLoadError::Definition { .. } => "invalid",
            ModuleLoadError::Rules(_) => "rules",
        }
    }
}

/// Where a configuration comes from (the environment, read once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleSources {
    /// `PROMSNMP_MODULES_FILE`: comma-separated paths or globs.
    pub files: Option<String>,
    /// `PROMSNMP_MODULE_RULES`: a YAML file.
    pub rules: Option<PathBuf>,
}

/// The device's modules as polled: the modules found, their walk plan, and
/// the names asked for that are not loaded.
#[derive(Debug)]
pub struct Resolved {
    pub modules: Vec<Arc<Module>>,
    pub views: Vec<View>,
    pub plan: WalkPlan,
    pub unknown: Vec<String>,
    /// Some module has dynamic filters: the plan depends on a first walk.
    pub filtered: bool,
}

/// One loaded configuration.
#[derive(Debug)]
pub struct ModuleSet {
    modules: BTreeMap<String, Arc<Module>>,
    auths: BTreeMap<String, Arc<Auth>>,
    rules: Rules,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// A hash of everything read (files and rules, not paths): replicas
    /// with equal fingerprints poll alike.
    pub fingerprint: String,
    /// Plans by module list, computed once.
    resolved: Mutex<HashMap<Vec<String>, Arc<Resolved>>>,
}

/// FNV-1a, 64 bits: a stable fingerprint (not a security measure).
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

impl ModuleSet {
    /// Only the built-in modules and auths, and the built-in rules.
    pub fn builtin() -> ModuleSet {
        ModuleSet::load(&ModuleSources::default()).expect("the built-in modules are valid")
    }

    /// Loads the built-ins, then every file of `sources` (a module of a file
    /// replaces the built-in of the same name; two files defining one module
    /// or auth is an error naming both), then the rules.
    pub fn load(sources: &ModuleSources) -> Result<ModuleSet, ModuleLoadError> {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let builtin =
            file::parse_bytes(Path::new(BUILTIN_SOURCE), BUILTIN_YAML.as_bytes().to_vec())?;
        let mut parsed = vec![builtin];
        let files = match &sources.files {
            Some(patterns) => file::expand_patterns(patterns)?,
            None => Vec::new(),
        };
        for path in &files {
            parsed.push(file::parse_file(path)?);
        }
        let mut modules: BTreeMap<String, Arc<Module>> = BTreeMap::new();
        let mut auths: BTreeMap<String, Arc<Auth>> = BTreeMap::new();
        for f in &parsed {
            let shown = f.path.display().to_string();
            fnv(&mut hash, &f.contents);
            fnv(&mut hash, &[0xff]);
            if f.legacy_layout {
                tracing::warn!(file = %shown, "module file in the layout before snmp_exporter 0.23 (auth inside each module): accepted; each module's auth is available under the module's name. Regenerate it with a current generator to split auths from modules");
            }
            for (name, raw) in &f.auths {
                let key = if f.legacy_layout {
                    format!("{name}.auth")
                } else {
                    format!("auths.{name}")
                };
                let auth = definition::compile_auth(name, raw, &key).map_err(|e| {
                    ModuleLoadError::Definition {
                        path: shown.clone(),
                        key: e.key,
                        message: e.message,
                    }
                })?;
                if let Some(previous) = auths.get(name) {
                    let first = auth_source(&parsed, name);
                    if first != BUILTIN_SOURCE {
                        return Err(ModuleFileError::Duplicate {
                            what: "auth",
                            name: name.clone(),
                            first,
                            second: shown,
                        }
                        .into());
                    }
                    tracing::debug!(auth = %previous.name, file = %shown, "a file's auth replaces the built-in one");
                }
                auths.insert(name.clone(), Arc::new(auth));
            }
            for (name, raw) in &f.modules {
                let key = if f.legacy_layout {
                    name.clone()
                } else {
                    format!("modules.{name}")
                };
                let module = definition::compile_module(name, raw, &shown, &key).map_err(|e| {
                    ModuleLoadError::Definition {
                        path: shown.clone(),
                        key: e.key,
                        message: e.message,
                    }
                })?;
                if let Some(previous) = modules.get(name) {
                    if previous.source != BUILTIN_SOURCE {
                        return Err(ModuleFileError::Duplicate {
                            what: "module",
                            name: name.clone(),
                            first: previous.source.clone(),
                            second: shown,
                        }
                        .into());
                    }
                    tracing::info!(module = %name, file = %shown, "the file's module replaces the built-in one");
                }
                modules.insert(name.clone(), Arc::new(module));
            }
        }
        let rules = match &sources.rules {
            Some(path) => {
                let rules = Rules::from_file(path, |m| modules.contains_key(m))
                    .map_err(ModuleLoadError::Rules)?;
                if let Ok(bytes) = std::fs::read(path) {
                    fnv(&mut hash, &bytes);
                }
                rules
            }
            None => Rules::builtin(),
        };
        Ok(ModuleSet {
            modules,
            auths,
            rules,
            files,
            fingerprint: format!("{hash:016x}"),
            resolved: Mutex::new(HashMap::new()),
        })
    }

    pub fn module(&self, name: &str) -> Option<&Arc<Module>> {
        self.modules.get(name)
    }

    pub fn auth(&self, name: &str) -> Option<&Arc<Auth>> {
        self.auths.get(name)
    }

    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    pub fn auth_count(&self) -> usize {
        self.auths.len()
    }

    pub fn metric_count(&self) -> usize {
        self.modules.values().map(|m| m.metrics.len()).sum()
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The names of `names` that are not loaded.
    pub fn unknown<'a>(&self, names: &'a [String]) -> Vec<&'a str> {
        names
            .iter()
            .map(String::as_str)
            .filter(|n| !self.modules.contains_key(*n))
            .collect()
    }

    /// Refuses a list naming a module that is not loaded; `field` names the list.
    pub fn check_names(&self, field: &str, names: &[String]) -> Result<(), InvalidInventory> {
        match names.iter().position(|n| !self.modules.contains_key(n)) {
            None => Ok(()),
            Some(i) => Err(InvalidInventory::new(
                format!("{field}[{i}]"),
                format!(
                    "unknown module `{}` (not built in and not in PROMSNMP_MODULES_FILE)",
                    names[i]
                ),
            )),
        }
    }

    /// Refuses an inventory whose devices or seeds name a module that is not loaded.
    pub fn check_inventory(&self, inventory: &Inventory) -> Result<(), InvalidInventory> {
        for (i, device) in inventory.devices.iter().enumerate() {
            if let Some(names) = &device.modules {
                self.check_names(&format!("devices[{i}].modules"), names)?;
            }
        }
        for (i, seed) in inventory.discovery_seeds.iter().enumerate() {
            if let Some(names) = &seed.modules {
                self.check_names(&format!("discoverySeeds[{i}].modules"), names)?;
            }
        }
        Ok(())
    }

    /// Modules the inventory's devices name that are not loaded, with the
    /// devices (by sysName) naming each.
    pub fn unknown_in(&self, inventory: &Inventory) -> BTreeMap<String, Vec<String>> {
        let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for device in &inventory.devices {
            for name in device.modules.iter().flatten() {
                if !self.modules.contains_key(name) {
                    unknown
                        .entry(name.clone())
                        .or_default()
                        .push(device.sys_name.clone());
                }
            }
        }
        unknown
    }

    /// The modules a rule gives a device found by discovery (`None`: the
    /// defaults; a rule that picks exactly the defaults also says `None`).
    pub fn choose_by_rules(&self, sys_object_id: &[u64], sys_descr: &str) -> Option<Vec<String>> {
        let chosen = self
            .rules
            .choose(sys_object_id, sys_descr, |m| self.modules.contains_key(m))?;
        (chosen != DEFAULT_MODULES).then_some(chosen)
    }

    /// Modules, views and walk plan for `names` (the defaults when `None`),
    /// skipping names that are not loaded. Computed once per list.
    pub fn resolve(&self, names: Option<&[String]>) -> Arc<Resolved> {
        let names: Vec<String> = match names {
            Some(n) if !n.is_empty() => n.to_vec(),
            _ => DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
        };
        if let Some(found) = self.resolved.lock().expect("resolved lock").get(&names) {
            return found.clone();
        }
        let mut modules = Vec::new();
        let mut unknown = Vec::new();
        for name in &names {
            match self.modules.get(name) {
                Some(m) if !modules.iter().any(|x: &Arc<Module>| Arc::ptr_eq(x, m)) => {
                    modules.push(m.clone())
                }
                Some(_) => {}
                None => unknown.push(name.clone()),
            }
        }
        let views: Vec<View> = modules.iter().map(|m| View::of(m)).collect();
        let pairs: Vec<(&Module, &View)> = modules.iter().map(|m| &**m).zip(views.iter()).collect();
        let plan = plan::plan(&pairs);
        let filtered = modules.iter().any(|m| !m.filters.is_empty());
        let resolved = Arc::new(Resolved {
            modules,
            views,
            plan,
            unknown,
            filtered,
        });
        let mut cache = self.resolved.lock().expect("resolved lock");
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(names, resolved.clone());
        resolved
    }
}

/// The file that defined `auth` first (for the duplicate message).
fn auth_source(parsed: &[file::ParsedFile], name: &str) -> String {
    parsed
        .iter()
        .find(|f| f.auths.contains_key(name))
        .map(|f| f.path.display().to_string())
        .unwrap_or_default()
}

/// The configuration in force, replaced as a whole on reload.
pub struct Modules {
    sources: ModuleSources,
    current: RwLock<Arc<ModuleSet>>,
    last_error: Mutex<Option<String>>,
}

impl Modules {
    /// Loads `sources` (refusing a bad configuration: the caller stops).
    pub fn load(sources: ModuleSources) -> Result<Modules, ModuleLoadError> {
        let set = ModuleSet::load(&sources);
        // Parsing a generated snmp.yml (2 MB) allocates ~45 MB it then frees.
        crate::heap::release_free_memory();
        Ok(Modules::with(sources, set?))
    }

    pub fn with(sources: ModuleSources, set: ModuleSet) -> Modules {
        Modules {
            sources,
            current: RwLock::new(Arc::new(set)),
            last_error: Mutex::new(None),
        }
    }

    pub fn current(&self) -> Arc<ModuleSet> {
        self.current.read().expect("modules lock").clone()
    }

    pub fn sources(&self) -> &ModuleSources {
        &self.sources
    }

    /// Reads the sources again. On success the new set is in force; on
    /// failure the old one stays and the error is kept for health.
    pub fn reload(&self) -> Result<Arc<ModuleSet>, ModuleLoadError> {
        let loaded = ModuleSet::load(&self.sources);
        crate::heap::release_free_memory();
        match loaded {
            Ok(set) => {
                let set = Arc::new(set);
                *self.current.write().expect("modules lock") = set.clone();
                *self.last_error.lock().expect("error lock") = None;
                Ok(set)
            }
            Err(e) => {
                *self.last_error.lock().expect("error lock") = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The last reload's error, while the old configuration is in force.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("error lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_plan_the_default_modules() {
        let set = ModuleSet::builtin();
        assert!(set.module("system").is_some() && set.module("if_mib").is_some());
        assert!(set.auth("public_v2").is_some() && set.auth("public_v1").is_some());
        let resolved = set.resolve(None);
        assert_eq!(resolved.modules.len(), 2);
        assert!(resolved.unknown.is_empty());
        // The plan walks the metric and lookup columns, not whole tables.
        let plan = &resolved.plan;
        let if_descr: Vec<u64> = vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
        assert!(plan.columns.iter().any(|c| **c == if_descr[..]));
        assert!(!plan
            .columns
            .iter()
            .any(|c| **c == [1, 3, 6, 1, 2, 1, 2, 2][..]));
        // sysUpTime is a scalar of the system module; sysUpTime.0 needs no GET of its own.
        assert!(plan
            .scalars
            .iter()
            .any(|s| **s == [1, 3, 6, 1, 2, 1, 1, 3][..]));
        assert!(plan.gets.is_empty(), "{:?}", plan.gets);
        let again = set.resolve(Some(&["system".to_string(), "if_mib".to_string()]));
        assert!(Arc::ptr_eq(&resolved, &again), "computed once per list");
        let partial = set.resolve(Some(&["if_mib".to_string(), "nope".to_string()]));
        assert_eq!(partial.unknown, vec!["nope".to_string()]);
        assert_eq!(partial.modules.len(), 1);
        assert_eq!(
            partial.plan.gets.len(),
            1,
            "sysUpTime.0 is read by every poll"
        );
    }

    #[test]
    fn files_override_builtins_and_duplicates_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, "modules:\n  if_mib:\n    walk: [1.3.6.1.2.1.2]\n    metrics: []\n  x:\n    metrics: []\n").unwrap();
        std::fs::write(&b, "modules:\n  x:\n    metrics: []\n").unwrap();
        let only_a = ModuleSet::load(&ModuleSources {
            files: Some(a.display().to_string()),
            rules: None,
        })
        .unwrap();
        assert_eq!(
            only_a.module("if_mib").unwrap().source,
            a.display().to_string()
        );
        assert!(only_a.module("system").is_some());
        let e = ModuleSet::load(&ModuleSources {
            files: Some(format!("{}/*.yml", dir.path().display())),
            rules: None,
        })
        .unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("module `x`")
                && message.contains("a.yml")
                && message.contains("b.yml"),
            "{message}"
        );
        let e = ModuleSet::load(&ModuleSources {
            files: Some(format!("{}/missing-*.yml", dir.path().display())),
            rules: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("matches no file"), "{e}");
    }

    #[test]
    fn reload_keeps_the_old_set_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        std::fs::write(&a, "modules:\n  x:\n    metrics: []\n").unwrap();
        let modules = Modules::load(ModuleSources {
            files: Some(a.display().to_string()),
            rules: None,
        })
        .unwrap();
        let before = modules.current();
        std::fs::write(&a, "modules:\n  x:\n    metrics: []\n    bogus: 1\n").unwrap();
        let e = modules.reload().unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(Arc::ptr_eq(&before, &modules.current()));
        assert!(modules.last_error().unwrap().contains("bogus"));
        std::fs::write(
            &a,
            "modules:\n  x:\n    metrics: []\n  y:\n    metrics: []\n",
        )
        .unwrap();
        let after = modules.reload().unwrap();
        assert!(after.module("y").is_some());
        assert_ne!(after.fingerprint, before.fingerprint);
        assert!(modules.last_error().is_none());
    }

    #[test]
    fn a_colon_in_the_name_of_a_metric_whose_value_is_a_label_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let load = |metric: &str| {
            std::fs::write(&a, format!("modules:\n  lab:\n    walk: [1.3.6.1.4.1.9999.1]\n    metrics:\n    - {{{metric}, oid: 1.3.6.1.4.1.9999.1, help: h}}\n")).unwrap();
            Modules::load(ModuleSources {
                files: Some(a.display().to_string()),
                rules: None,
            })
        };
        assert!(
            load("name: 'lab:gauge', type: gauge").is_ok(),
            "a gauge may have `:`"
        );
        let e = load("name: 'lab:temp', type: DisplayString")
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("lab:temp") && e.contains("cannot contain `:`"),
            "{e}"
        );
    }
}
