//! The module file format of snmp_exporter (`snmp.yml`), read strictly: an
//! unknown key or a bad value is an error naming the file, the line and the
//! key. Both layouts are read: the current one (`auths:` + `modules:`) and the
//! one before snmp_exporter 0.23 (one map of modules, each carrying its own
//! auth and version), which becomes one module plus one auth of the same name.
//!
//! This file only describes and checks the text; [`super::definition`] turns
//! the result into what polls and decoding use.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::inventory::Secret;

/// A module file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleFileError {
    #[error("{path}: cannot read the module file: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        /// Where in the document, e.g. `modules.if_mib.metrics[2]`.
        key: String,
        message: String,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("{what} `{name}` is defined in {first} and again in {second}")]
    Duplicate {
        what: &'static str,
        name: String,
        first: String,
        second: String,
    },
    #[error("PROMSNMP_MODULES_FILE: `{pattern}` matches no file")]
    NoMatch { pattern: String },
    #[error("PROMSNMP_MODULES_FILE: `{pattern}` is not a valid glob: {reason}")]
    Pattern { pattern: String, reason: String },
}

impl ModuleFileError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ModuleFileError::Read { .. } | ModuleFileError::NoMatch { .. } => "read",
            ModuleFileError::Syntax { .. } => "syntax",
            ModuleFileError::Invalid { .. } | ModuleFileError::Pattern { .. } => "invalid",
            ModuleFileError::Duplicate { .. } => "duplicate",
        }
    }
}

/// One parsed file: its auths and modules, in the current layout's terms.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub path: PathBuf,
    /// The layout before snmp_exporter 0.23 (each module with its own auth).
    pub legacy_layout: bool,
    pub auths: BTreeMap<String, RawAuth>,
    pub modules: BTreeMap<String, RawModule>,
    /// The file's bytes, for the fingerprint of the loaded configuration.
    pub contents: Vec<u8>,
}

/// The current layout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CurrentLayout {
    #[serde(default)]
    auths: Option<BTreeMap<String, RawAuth>>,
    #[serde(default)]
    modules: Option<BTreeMap<String, RawModule>>,
    /// Written by the generator; not used.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<i64>,
}

/// SNMP credentials of snmp_exporter's `auths:` (or a legacy module's `auth:`
/// plus `version:`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub community: Option<Secret>,
    #[serde(default)]
    pub security_level: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub auth_protocol: Option<String>,
    #[serde(default)]
    pub priv_protocol: Option<String>,
    #[serde(default)]
    pub priv_password: Option<Secret>,
    #[serde(default)]
    pub context_name: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
}

impl fmt::Debug for RawAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAuth")
            .field("security_level", &self.security_level)
            .field("username", &self.username)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The credential part of a legacy module (`auth:`), without the version.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyAuth {
    #[serde(default)]
    community: Option<Secret>,
    #[serde(default)]
    security_level: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    auth_protocol: Option<String>,
    #[serde(default)]
    priv_protocol: Option<String>,
    #[serde(default)]
    priv_password: Option<Secret>,
    #[serde(default)]
    context_name: Option<String>,
}

/// A module of the current layout.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    #[serde(default)]
    pub walk: Vec<RawOid>,
    #[serde(default)]
    pub get: Vec<RawOid>,
    #[serde(default)]
    pub metrics: Vec<RawMetric>,
    #[serde(default)]
    pub max_repetitions: Option<u32>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub timeout: Option<GoDuration>,
    /// Accepted for compatibility: every poll uses its own socket anyway.
    #[serde(default)]
    pub use_unconnected_udp_socket: Option<bool>,
    #[serde(default)]
    pub allow_nonincreasing_oids: Option<bool>,
    #[serde(default)]
    pub filters: Vec<RawFilter>,
    /// Legacy layout only: the auth named after the module.
    #[serde(skip)]
    pub own_auth: bool,
}

/// A module of the legacy layout: walk parameters, `version` and `auth` inline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyModule {
    #[serde(default)]
    walk: Vec<RawOid>,
    #[serde(default)]
    get: Vec<RawOid>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    max_repetitions: Option<u32>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    timeout: Option<GoDuration>,
    #[serde(default)]
    auth: Option<LegacyAuth>,
    #[serde(default)]
    use_unconnected_udp_socket: Option<bool>,
    #[serde(default)]
    allow_nonincreasing_oids: Option<bool>,
}

/// A dynamic filter: walk `oid`, keep the indexes whose value matches one of
/// `values`, and poll `targets` only for those.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub oid: RawOid,
    #[serde(default)]
    pub targets: Vec<RawOid>,
    #[serde(default)]
    pub values: Vec<SearchRegex>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetric {
    pub name: MetricName,
    pub oid: RawOid,
    #[serde(rename = "type")]
    pub value_type: MetricType,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub indexes: Vec<RawIndex>,
    #[serde(default)]
    pub lookups: Vec<RawLookup>,
    #[serde(default)]
    pub regex_extracts: BTreeMap<String, Vec<RawRegexExtract>>,
    #[serde(default)]
    pub datetime_pattern: Option<DateTimePattern>,
    #[serde(default)]
    pub enum_values: BTreeMap<i64, String>,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub scale: f64,
    #[serde(default)]
    pub display_hint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    pub labelname: LabelName,
    #[serde(rename = "type")]
    pub value_type: IndexType,
    #[serde(default)]
    pub fixed_size: usize,
    #[serde(default)]
    pub implied: bool,
    #[serde(default)]
    pub enum_values: BTreeMap<i64, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub labels: Vec<LabelName>,
    pub labelname: LabelName,
    #[serde(default)]
    pub oid: Option<RawOid>,
    #[serde(rename = "type", default)]
    pub value_type: Option<MetricType>,
    #[serde(default)]
    pub display_hint: Option<String>,
    #[serde(default)]
    pub enum_values: BTreeMap<i64, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegexExtract {
    /// The replacement template; `$1` unless given.
    #[serde(default = "default_extract_value")]
    pub value: String,
    pub regex: AnchoredRegex,
}

fn default_extract_value() -> String {
    "$1".into()
}

/// A numeric OID (`1.3.6.1.2.1.2`; a leading dot is allowed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawOid(pub Vec<u64>);

impl<'de> Deserialize<'de> for RawOid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_numeric_oid(&text)
            .map(RawOid)
            .map_err(de::Error::custom)
    }
}

/// Parses a numeric OID, refusing names and empty parts.
pub fn parse_numeric_oid(text: &str) -> Result<Vec<u64>, String> {
    let trimmed = text.trim().trim_start_matches('.');
    let parts: Result<Vec<u64>, _> = trimmed.split('.').map(str::parse::<u64>).collect();
    match parts {
        Ok(parts) if !parts.is_empty() && parts.iter().all(|p| *p <= u64::from(u32::MAX)) => {
            Ok(parts)
        }
        _ => Err(format!(
            "`{text}` is not a numeric OID (expected digits separated by dots, e.g. 1.3.6.1.2.1.2; object names must be resolved by snmp_exporter's generator)"
        )),
    }
}

/// How a metric's value is turned into series (snmp_exporter's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum MetricType {
    Counter,
    Gauge,
    Float,
    Double,
    DateAndTime,
    ParseDateAndTime,
    NtpTimeStamp,
    EnumAsInfo,
    EnumAsStateSet,
    Bits,
    DisplayString,
    OctetString,
    PhysAddress48,
    InetAddressIPv4,
    InetAddressIPv6,
    InetAddress,
    InetAddressMissingSize,
    LldpPortId,
    /// Index-only names, accepted for lookups too.
    Integer32,
    Integer,
}

impl MetricType {
    /// Every name, as snmp_exporter spells it.
    pub const ALL: [(&'static str, MetricType); 20] = [
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("Float", MetricType::Float),
        ("Double", MetricType::Double),
        ("DateAndTime", MetricType::DateAndTime),
        ("ParseDateAndTime", MetricType::ParseDateAndTime),
        ("NTPTimeStamp", MetricType::NtpTimeStamp),
        ("EnumAsInfo", MetricType::EnumAsInfo),
        ("EnumAsStateSet", MetricType::EnumAsStateSet),
        ("Bits", MetricType::Bits),
        ("DisplayString", MetricType::DisplayString),
        ("OctetString", MetricType::OctetString),
        ("PhysAddress48", MetricType::PhysAddress48),
        ("InetAddressIPv4", MetricType::InetAddressIPv4),
        ("InetAddressIPv6", MetricType::InetAddressIPv6),
        ("InetAddress", MetricType::InetAddress),
        ("InetAddressMissingSize", MetricType::InetAddressMissingSize),
        ("LldpPortId", MetricType::LldpPortId),
        ("Integer32", MetricType::Integer32),
        ("Integer", MetricType::Integer),
    ];

    pub fn name(self) -> &'static str {
        MetricType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    pub fn parse(text: &str) -> Option<MetricType> {
        MetricType::ALL
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, t)| *t)
    }

    /// The types whose value is preceded by an address- or id-type column,
    /// which decides how the value reads (snmp_exporter's combined types).
    pub fn is_combined(self) -> bool {
        matches!(
            self,
            MetricType::InetAddress | MetricType::InetAddressMissingSize | MetricType::LldpPortId
        )
    }
}

impl<'de> Deserialize<'de> for MetricType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MetricType::parse(&text).ok_or_else(|| {
            let names: Vec<&str> = MetricType::ALL[..18].iter().map(|(n, _)| *n).collect();
            de::Error::custom(format!(
                "unknown type `{text}` (expected one of {})",
                names.join(", ")
            ))
        })
    }
}

/// The types an index can have (those snmp_exporter can render as a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexType(pub MetricType);

impl IndexType {
    pub(crate) const ALLOWED: [MetricType; 13] = [
        MetricType::Integer32,
        MetricType::Integer,
        MetricType::Gauge,
        MetricType::Counter,
        MetricType::PhysAddress48,
        MetricType::OctetString,
        MetricType::DisplayString,
        MetricType::InetAddressIPv4,
        MetricType::InetAddressIPv6,
        MetricType::InetAddress,
        MetricType::InetAddressMissingSize,
        MetricType::LldpPortId,
        MetricType::EnumAsInfo,
    ];
}

impl<'de> Deserialize<'de> for IndexType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match MetricType::parse(&text) {
            Some(t) if IndexType::ALLOWED.contains(&t) => Ok(IndexType(t)),
            _ => {
                let names: Vec<&str> = IndexType::ALLOWED.iter().map(|t| t.name()).collect();
                Err(de::Error::custom(format!(
                    "invalid index type `{text}` (expected one of {})",
                    names.join(", ")
                )))
            }
        }
    }
}

/// A Prometheus metric name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricName(pub String);

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if is_metric_name(&text) {
            Ok(MetricName(text))
        } else {
            Err(de::Error::custom(format!(
                "`{text}` is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
            )))
        }
    }
}

/// A Prometheus label name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelName(pub String);

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if is_label_name(&text) {
            Ok(LabelName(text))
        } else {
            Err(de::Error::custom(format!(
                "`{text}` is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            )))
        }
    }
}

pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A regex matched against the whole value (snmp_exporter wraps it in `^(?:…)$`).
#[derive(Debug, Clone)]
pub struct AnchoredRegex(pub regex::Regex);

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        regex::Regex::new(&format!("^(?:{text})$"))
            .map(AnchoredRegex)
            .map_err(|e| de::Error::custom(format!("invalid regex `{text}`: {e}")))
    }
}

/// A regex that may match anywhere in the value (filters' `values`).
#[derive(Debug, Clone)]
pub struct SearchRegex(pub regex::Regex);

impl<'de> Deserialize<'de> for SearchRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        regex::Regex::new(&text)
            .map(SearchRegex)
            .map_err(|e| de::Error::custom(format!("invalid regex `{text}`: {e}")))
    }
}

/// A strptime-style pattern, checked when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTimePattern(pub String);

impl<'de> Deserialize<'de> for DateTimePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        super::datetime::check_pattern(&text)
            .map(|()| DateTimePattern(text))
            .map_err(de::Error::custom)
    }
}

/// A Go duration (`5s`, `1m30s`, `500ms`) or a number of nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Nanos(u64),
            Text(String),
        }
        match Form::deserialize(d)? {
            Form::Nanos(n) => Ok(GoDuration(Duration::from_nanos(n))),
            Form::Text(t) => parse_go_duration(&t).map(GoDuration).ok_or_else(|| {
                de::Error::custom(format!("`{t}` is not a duration (e.g. 5s, 500ms, 1m30s)"))
            }),
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax (non-negative only).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Reads one module file, in either layout.
pub fn parse_file(path: &Path) -> Result<ParsedFile, ModuleFileError> {
    let contents = std::fs::read(path).map_err(|e| ModuleFileError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_bytes(path, contents)
}

/// Parses the bytes of a module file (`path` names it in errors).
pub fn parse_bytes(path: &Path, contents: Vec<u8>) -> Result<ParsedFile, ModuleFileError> {
    let shown = path.display().to_string();
    let text = std::str::from_utf8(&contents).map_err(|e| ModuleFileError::Read {
        path: shown.clone(),
        reason: format!("not UTF-8 text: {e}"),
    })?;
    let syntax = |e: serde_yaml_ng::Error| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = e.to_string();
        // serde_yaml_ng writes `path: message at line L column C`.
        let message = message
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(message);
        let (key, message) = match message.split_once(": ") {
            Some((key, rest)) if !key.contains(' ') => (key.to_string(), rest.to_string()),
            _ => ("(document)".to_string(), message),
        };
        ModuleFileError::Syntax {
            path: shown.clone(),
            line,
            column,
            key,
            message,
        }
    };
    // Which layout: the current one has only `auths`, `modules` and `version`
    // at the top; the legacy one is a map of module names.
    let top: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(syntax)?;
    let mut parsed = ParsedFile {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let top_keys: Vec<String> = match &top {
        serde_yaml_ng::Value::Null => Vec::new(),
        serde_yaml_ng::Value::Mapping(m) => m
            .keys()
            .map(|k| k.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => {
            return Err(ModuleFileError::Invalid {
                path: shown,
                key: "(document)".into(),
                message: "expected a mapping of `auths:` and `modules:` (or, in the layout before snmp_exporter 0.23, of module names)".into(),
            })
        }
    };
    let current = top_keys
        .iter()
        .any(|k| k == "auths" || k == "modules" || k == "version");
    if current || top_keys.is_empty() {
        let layout: CurrentLayout = if top_keys.is_empty() {
            CurrentLayout {
                auths: None,
                modules: None,
                version: None,
            }
        } else {
            serde_yaml_ng::from_str(text).map_err(syntax)?
        };
        parsed.auths = layout.auths.unwrap_or_default();
        parsed.modules = layout.modules.unwrap_or_default();
    } else {
        let legacy: BTreeMap<String, LegacyModule> =
            serde_yaml_ng::from_str(text).map_err(syntax)?;
        parsed.legacy_layout = true;
        for (name, module) in legacy {
            let auth = module.auth.unwrap_or(LegacyAuth {
                community: None,
                security_level: None,
                username: None,
                password: None,
                auth_protocol: None,
                priv_protocol: None,
                priv_password: None,
                context_name: None,
            });
            parsed.auths.insert(
                name.clone(),
                RawAuth {
                    community: auth.community,
                    security_level: auth.security_level,
                    username: auth.username,
                    password: auth.password,
                    auth_protocol: auth.auth_protocol,
                    priv_protocol: auth.priv_protocol,
                    priv_password: auth.priv_password,
                    context_name: auth.context_name,
                    version: module.version,
                },
            );
            parsed.modules.insert(
                name,
                RawModule {
                    walk: module.walk,
                    get: module.get,
                    metrics: module.metrics,
                    max_repetitions: module.max_repetitions,
                    retries: module.retries,
                    timeout: module.timeout,
                    use_unconnected_udp_socket: module.use_unconnected_udp_socket,
                    allow_nonincreasing_oids: module.allow_nonincreasing_oids,
                    filters: Vec::new(),
                    own_auth: true,
                },
            );
        }
    }
    parsed.contents = contents;
    Ok(parsed)
}

/// Expands `PROMSNMP_MODULES_FILE`: comma-separated paths or globs, each of
/// which must match at least one file. Files come in the order given, each
/// glob's matches sorted; a file named twice is read once.
pub fn expand_patterns(patterns: &str) -> Result<Vec<PathBuf>, ModuleFileError> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let matches = glob::glob(pattern).map_err(|e| ModuleFileError::Pattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        let mut found: Vec<PathBuf> = matches
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if found.is_empty() {
            return Err(ModuleFileError::NoMatch {
                pattern: pattern.to_string(),
            });
        }
        found.sort();
        for path in found {
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedFile, ModuleFileError> {
        parse_bytes(Path::new("test.yml"), text.as_bytes().to_vec())
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_go_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "5 s", "-1s", "1d", "s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_keys_name_the_line_and_the_key() {
        let e = parse(
            "modules:\n  m:\n    walk: [1.3.6.1.2.1.2]\n    metrics:\n    - name: x\n      oid: 1.3.6.1.2.1.2.1\n      type: gauge\n      hlep: typo\n",
        )
        .unwrap_err();
        match &e {
            ModuleFileError::Syntax {
                line, key, message, ..
            } => {
                assert_eq!(*line, 8, "{e}");
                assert_eq!(key, "modules.m.metrics[0]", "{e}");
                assert!(message.contains("unknown field `hlep`"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("test.yml:8:"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_where_they_stand() {
        for (text, expect) in [
            ("modules:\n  m:\n    walk: [1.3.x]\n", "not a numeric OID"),
            (
                "modules:\n  m:\n    metrics:\n    - {name: x, oid: 1.3, type: Gauge32}\n",
                "unknown type `Gauge32`",
            ),
            (
                "modules:\n  m:\n    metrics:\n    - {name: 9x, oid: 1.3, type: gauge}\n",
                "not a valid Prometheus metric name",
            ),
            (
                "modules:\n  m:\n    metrics:\n    - {name: x, oid: 1.3, type: gauge, indexes: [{labelname: i, type: Float}]}\n",
                "invalid index type `Float`",
            ),
            (
                "modules:\n  m:\n    metrics:\n    - name: x\n      oid: 1.3\n      type: DisplayString\n      regex_extracts: {'': [{regex: '(unclosed'}]}\n",
                "invalid regex",
            ),
            ("modules:\n  m:\n    timeout: soon\n", "not a duration"),
            ("modules:\n  m:\n    max_repetitions: -3\n", "expected u32"),
            ("modules:\n  m: {}\n  m: {}\n", "duplicate"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(expect), "{text:?}: {e}");
            assert!(matches!(e, ModuleFileError::Syntax { line, .. } if line > 0), "{e}");
        }
    }

    #[test]
    fn both_layouts() {
        let current = parse(
            "auths:\n  a: {community: c}\nmodules:\n  m:\n    walk: [1.3.6.1.2.1.1]\n    max_repetitions: 7\n",
        )
        .unwrap();
        assert!(!current.legacy_layout);
        assert_eq!(current.modules["m"].max_repetitions, Some(7));
        assert_eq!(current.auths["a"].community.as_ref().unwrap().expose(), "c");
        let legacy = parse(
            "m:\n  walk: [1.3.6.1.2.1.1]\n  version: 1\n  auth: {community: secret}\n  timeout: 2s\n",
        )
        .unwrap();
        assert!(legacy.legacy_layout);
        assert!(legacy.modules["m"].own_auth);
        assert_eq!(legacy.auths["m"].version, Some(1));
        assert_eq!(
            legacy.modules["m"].timeout,
            Some(GoDuration(Duration::from_secs(2)))
        );
        assert!(!format!("{:?}", legacy.auths["m"]).contains("secret"));
        let e = parse("m:\n  walk: [1.3]\n  filters: []\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `filters`"), "{e}");
        assert!(parse("").unwrap().modules.is_empty());
        assert!(parse("- a\n").is_err());
    }
}
