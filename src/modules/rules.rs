//! Module rules: which modules a device newly found by discovery gets, from
//! its sysObjectID and sysDescr, when the discovery seed names none.
//!
//! `PROMSNMP_MODULE_RULES` names a YAML file holding an ordered list; the
//! first rule that matches decides. Without the variable, built-in rules
//! apply, each keeping only the modules that are loaded.

use std::path::Path;

use serde::Deserialize;

use super::file::{RawOid, SearchRegex};

/// One rule as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Matches a sysObjectID equal to it or under it.
    #[serde(default)]
    sys_object_id: Option<RawOid>,
    /// Matches a sysDescr in which the regex finds a match (anchor it with `^…$`).
    #[serde(default)]
    sys_descr: Option<SearchRegex>,
    modules: Vec<String>,
}

/// A rule: every condition given must hold.
#[derive(Debug, Clone)]
pub struct Rule {
    pub sys_object_id: Option<Vec<u64>>,
    pub sys_descr: Option<regex::Regex>,
    pub modules: Vec<String>,
    /// Built-in rules drop the modules that are not loaded; a rule from the
    /// file must name loaded modules only.
    pub builtin: bool,
}

impl Rule {
    fn matches(&self, sys_object_id: &[u64], sys_descr: &str) -> bool {
        self.sys_object_id
            .as_ref()
            .is_none_or(|prefix| sys_object_id.starts_with(prefix))
            && self
                .sys_descr
                .as_ref()
                .is_none_or(|r| r.is_match(sys_descr))
    }
}

/// The ordered rules in force.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// The file they came from (`None`: built-in).
    pub source: Option<String>,
}

/// Net-SNMP's enterprise (Linux and BSD hosts, many appliances).
const NET_SNMP: [u64; 7] = [1, 3, 6, 1, 4, 1, 8072];
/// American Power Conversion (APC UPSes and PDUs).
const APC: [u64; 7] = [1, 3, 6, 1, 4, 1, 318];

impl Rules {
    /// The rules used without `PROMSNMP_MODULE_RULES`.
    pub fn builtin() -> Rules {
        let rule = |oid: &[u64], modules: &[&str]| Rule {
            sys_object_id: Some(oid.to_vec()),
            sys_descr: None,
            modules: modules.iter().map(|m| m.to_string()).collect(),
            builtin: true,
        };
        Rules {
            rules: vec![
                rule(&APC, &["system", "if_mib", "apcups"]),
                rule(
                    &NET_SNMP,
                    &[
                        "system",
                        "if_mib",
                        "hrSystem",
                        "hrStorage",
                        "ucd_memory",
                        "ucd_la_table",
                        "ucd_system_stats",
                    ],
                ),
            ],
            source: None,
        }
    }

    /// Reads a rules file; `known` says whether a module name is loaded.
    pub fn from_file(path: &Path, known: impl Fn(&str) -> bool) -> Result<Rules, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{shown}: cannot read the module rules: {e}"))?;
        let raw: Vec<RawRule> = serde_yaml_ng::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            format!("{shown}{at}: {e}")
        })?;
        let mut rules = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            if r.sys_object_id.is_none() && r.sys_descr.is_none() {
                return Err(format!(
                    "{shown}: rule {i}: give sys_object_id, sys_descr or both"
                ));
            }
            if r.modules.is_empty() {
                return Err(format!("{shown}: rule {i}: modules: at least one module"));
            }
            if let Some(unknown) = r.modules.iter().find(|m| !known(m)) {
                return Err(format!(
                    "{shown}: rule {i}: modules: `{unknown}` is not a loaded module"
                ));
            }
            rules.push(Rule {
                sys_object_id: r.sys_object_id.map(|o| o.0),
                sys_descr: r.sys_descr.map(|r| r.0),
                modules: r.modules,
                builtin: false,
            });
        }
        Ok(Rules {
            rules,
            source: Some(shown),
        })
    }

    /// The modules for a device with this sysObjectID and sysDescr, if a
    /// rule matches (built-in rules keep only loaded modules).
    pub fn choose(
        &self,
        sys_object_id: &[u64],
        sys_descr: &str,
        known: impl Fn(&str) -> bool,
    ) -> Option<Vec<String>> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(sys_object_id, sys_descr))?;
        Some(
            rule.modules
                .iter()
                .filter(|m| !rule.builtin || known(m))
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_decides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        std::fs::write(
            &path,
            "- sys_object_id: 1.3.6.1.4.1.9\n  sys_descr: '(?i)nexus'\n  modules: [if_mib, nexus]\n- sys_object_id: 1.3.6.1.4.1.9\n  modules: [if_mib]\n- sys_descr: Linux\n  modules: [system]\n",
        )
        .unwrap();
        let known = |m: &str| ["if_mib", "nexus", "system"].contains(&m);
        let rules = Rules::from_file(&path, known).unwrap();
        let cisco = [1, 3, 6, 1, 4, 1, 9, 1, 1000];
        assert_eq!(
            rules.choose(&cisco, "Cisco NX-OS Nexus", known),
            Some(vec!["if_mib".into(), "nexus".into()])
        );
        assert_eq!(
            rules.choose(&cisco, "IOS", known),
            Some(vec!["if_mib".into()])
        );
        assert_eq!(
            rules.choose(&[1, 3, 6, 1, 4, 1, 99], "Linux h", known),
            Some(vec!["system".into()])
        );
        assert_eq!(rules.choose(&[1, 3, 6, 1, 4, 1, 99], "other", known), None);
        // A prefix matches on whole sub-identifiers: .9 is not .99.
        assert_eq!(rules.choose(&[1, 3, 6, 1, 4, 1, 99], "IOS", known), None);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        for (text, expect) in [
            ("- modules: [a]\n", "give sys_object_id"),
            (
                "- sys_descr: x\n  modules: [missing]\n",
                "`missing` is not a loaded module",
            ),
            (
                "- sys_descr: x\n  modules: [a]\n  color: red\n",
                "unknown field `color`",
            ),
            ("- sys_descr: '('\n  modules: [a]\n", "invalid regex"),
            (
                "- sys_object_id: enterprises.9\n  modules: [a]\n",
                "not a numeric OID",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Rules::from_file(&path, |m| m == "a").unwrap_err();
            assert!(e.contains(expect) && e.contains("rules.yml"), "{text}: {e}");
        }
    }

    #[test]
    fn builtin_rules_keep_loaded_modules_only() {
        let rules = Rules::builtin();
        let apc = [1, 3, 6, 1, 4, 1, 318, 1, 3, 27];
        let without = |m: &str| m == "system" || m == "if_mib";
        assert_eq!(
            rules.choose(&apc, "", without),
            Some(vec!["system".into(), "if_mib".into()])
        );
        let with = |m: &str| without(m) || m == "apcups";
        assert_eq!(rules.choose(&apc, "", with).unwrap().len(), 3);
    }
}
