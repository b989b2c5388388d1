//! Modules as polls and decoding use them: numeric OIDs, typed metrics with
//! their families described once (shared by every sample), label recipes,
//! compiled regexes, walk parameters, and the credentials of `auths:`.
//! Built from [`super::file`]'s parsed text by [`compile_module`] and
//! [`compile_auth`], which check what spans several keys.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::file::{MetricType, RawAuth, RawMetric, RawModule};
use crate::inventory::{Agent, AgentType, Endpoint, Secret, SnmpVersion};
use crate::sample::{FamilyMeta, Kind};

/// A numeric OID.
pub type Oid = Box<[u64]>;

/// A module, ready to plan walks and decode their results.
#[derive(Debug)]
pub struct Module {
    pub name: Arc<str>,
    /// Where it was defined: a file path, or `built-in`.
    pub source: String,
    /// Subtrees walked, sorted, none inside another.
    pub walk: Vec<Oid>,
    /// Instances fetched with GET, sorted, none inside a walked subtree.
    pub get: Vec<Oid>,
    pub metrics: Vec<Metric>,
    pub params: WalkParams,
    pub filters: Vec<Filter>,
    /// Legacy layout: the module carries its own auth (of the same name).
    pub own_auth: bool,
    /// Metric OID → position in `metrics`.
    by_oid: HashMap<Oid, usize>,
    /// The distinct lengths of metric OIDs, ascending.
    oid_lengths: Vec<usize>,
}

impl Module {
    /// The metric a varbind belongs to: the one whose OID is the shortest
    /// prefix of `oid` (as snmp_exporter's metric tree finds it), with the
    /// position where the index begins.
    pub fn metric_for(&self, oid: &[u64]) -> Option<(&Metric, usize)> {
        self.oid_lengths
            .iter()
            .take_while(|len| **len < oid.len())
            .find_map(|len| {
                self.by_oid
                    .get(&oid[..*len])
                    .map(|i| (&self.metrics[*i], *len))
            })
    }
}

/// snmp_exporter's walk parameters; `None` where the file does not set them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalkParams {
    pub max_repetitions: Option<u32>,
    pub retries: Option<u32>,
    pub timeout: Option<Duration>,
    pub allow_nonincreasing_oids: bool,
}

#[derive(Debug)]
pub struct Metric {
    pub name: Arc<str>,
    pub oid: Oid,
    pub value_type: MetricType,
    pub indexes: Vec<Index>,
    pub lookups: Vec<Lookup>,
    /// Regex extracts by name suffix (sorted); when present the metric
    /// itself yields no series, only its extracts.
    pub extracts: Vec<Extract>,
    pub datetime_pattern: Option<String>,
    pub enum_values: BTreeMap<i64, String>,
    /// Applied as `value * scale + offset` (scale 0 means 1).
    pub scale: f64,
    pub offset: f64,
    pub display_hint: Option<String>,
    /// The family the metric's series go to (`<name>_info` for EnumAsInfo).
    pub family: Arc<FamilyMeta>,
    /// Metrics of one module with equal indexes and lookups share a recipe,
    /// so one row's labels are built once.
    pub recipe: usize,
    /// Combined types: the column whose value selects how this one reads.
    pub type_oid: Option<Oid>,
    /// No indexes: a scalar, read at `<oid>.0`.
    pub scalar: bool,
}

#[derive(Debug)]
pub struct Index {
    pub label: Arc<str>,
    pub value_type: MetricType,
    pub fixed_size: usize,
    pub implied: bool,
    pub enum_values: BTreeMap<i64, String>,
}

#[derive(Debug)]
pub struct Lookup {
    /// Labels whose sub-identifiers complete the lookup OID; empty: drop `label`.
    pub labels: Vec<Arc<str>>,
    pub label: Arc<str>,
    pub oid: Option<Oid>,
    pub type_oid: Option<Oid>,
    pub value_type: Option<MetricType>,
    pub display_hint: Option<String>,
    pub enum_values: BTreeMap<i64, String>,
}

#[derive(Debug)]
pub struct Extract {
    pub family: Arc<FamilyMeta>,
    /// (regex, replacement template): the first that matches wins.
    pub rules: Vec<(regex::Regex, String)>,
}

#[derive(Debug)]
pub struct Filter {
    pub oid: Oid,
    pub targets: Vec<Oid>,
    pub values: Vec<regex::Regex>,
}

/// Why a module or auth cannot be used (the file parsed, but keys disagree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub key: String,
    pub message: String,
}

fn oid(parts: &[u64]) -> Oid {
    parts.to_vec().into_boxed_slice()
}

/// The OID one before `oid` in its last sub-identifier (the type column of
/// InetAddress-like columns), if there is one.
fn preceding(oid: &[u64]) -> Option<Oid> {
    let (last, head) = oid.split_last()?;
    let previous = last.checked_sub(1)?;
    let mut v = head.to_vec();
    v.push(previous);
    Some(v.into_boxed_slice())
}

/// Sorts and drops OIDs inside another of the list.
pub fn normalize_subtrees(mut oids: Vec<Oid>) -> Vec<Oid> {
    oids.sort();
    oids.dedup();
    let mut out: Vec<Oid> = Vec::with_capacity(oids.len());
    for o in oids {
        if !out.last().is_some_and(|p| o.starts_with(p)) {
            out.push(o);
        }
    }
    out
}

/// Whether a sorted, prefix-free list of subtrees covers `oid`.
pub fn covered(subtrees: &[Oid], oid: &[u64]) -> bool {
    let at = subtrees.partition_point(|s| &**s <= oid);
    at > 0 && oid.starts_with(&subtrees[at - 1])
}

/// Compiles one module; `key` names it in errors (`modules.<name>`).
pub fn compile_module(
    name: &str,
    raw: &RawModule,
    source: &str,
    key: &str,
) -> Result<Module, DefinitionError> {
    let err = |sub: String, message: String| DefinitionError {
        key: format!("{key}{sub}"),
        message,
    };
    let walk = normalize_subtrees(raw.walk.iter().map(|o| oid(&o.0)).collect());
    let mut get: Vec<Oid> = raw
        .get
        .iter()
        .map(|o| oid(&o.0))
        .filter(|o| !covered(&walk, o))
        .collect();
    get.sort();
    get.dedup();
    if raw.max_repetitions == Some(0) {
        return Err(err(".max_repetitions".into(), "must be at least 1".into()));
    }
    let mut metrics = Vec::with_capacity(raw.metrics.len());
    let mut by_oid: HashMap<Oid, usize> = HashMap::with_capacity(raw.metrics.len());
    let mut recipes: HashMap<String, usize> = HashMap::new();
    let mut names: HashMap<Arc<str>, Arc<str>> = HashMap::new();
    let mut shared = |s: &str| -> Arc<str> {
        names
            .entry(Arc::from(s))
            .or_insert_with(|| Arc::from(s))
            .clone()
    };
    for (i, m) in raw.metrics.iter().enumerate() {
        let path = format!(".metrics[{i}]");
        let metric = compile_metric(m, &mut shared, &mut recipes)
            .map_err(|message| err(path.clone(), message))?;
        // A later metric at the same OID replaces an earlier one, as in
        // snmp_exporter's metric tree.
        if let Some(previous) = by_oid.insert(metric.oid.clone(), metrics.len()) {
            tracing::debug!(module = name, metric = %metric.name, replaced = %raw.metrics[previous].name.0, "two metrics at one OID: the later one is used");
        }
        metrics.push(metric);
    }
    let mut oid_lengths: Vec<usize> = by_oid.keys().map(|o| o.len()).collect();
    oid_lengths.sort_unstable();
    oid_lengths.dedup();
    let filters = raw
        .filters
        .iter()
        .map(|f| Filter {
            oid: oid(&f.oid.0),
            targets: f.targets.iter().map(|t| oid(&t.0)).collect(),
            values: f.values.iter().map(|v| v.0.clone()).collect(),
        })
        .collect();
    Ok(Module {
        name: Arc::from(name),
        source: source.to_string(),
        walk,
        get,
        metrics,
        params: WalkParams {
            max_repetitions: raw.max_repetitions,
            retries: raw.retries,
            timeout: raw.timeout.map(|t| t.0),
            allow_nonincreasing_oids: raw.allow_nonincreasing_oids.unwrap_or(false),
        },
        filters,
        own_auth: raw.own_auth,
        by_oid,
        oid_lengths,
    })
}

fn compile_metric(
    m: &RawMetric,
    shared: &mut impl FnMut(&str) -> Arc<str>,
    recipes: &mut HashMap<String, usize>,
) -> Result<Metric, String> {
    let name = m.name.0.as_str();
    let help = m.help.as_str();
    let meta = |name: String, help: String, kind: Kind| {
        Arc::new(FamilyMeta {
            name: name.into(),
            help: help.into(),
            kind,
        })
    };
    let family = match m.value_type {
        MetricType::Counter => meta(name.into(), help.into(), Kind::Counter),
        MetricType::EnumAsInfo => meta(
            format!("{name}_info"),
            format!("{help} (EnumAsInfo)"),
            Kind::Gauge,
        ),
        MetricType::EnumAsStateSet => {
            meta(name.into(), format!("{help} (EnumAsStateSet)"), Kind::Gauge)
        }
        MetricType::Bits => meta(name.into(), format!("{help} (Bits)"), Kind::Gauge),
        _ => meta(name.into(), help.into(), Kind::Gauge),
    };
    // These types carry their value in a label named after the metric, and
    // a label name may not hold the `:` a metric name may (Prometheus would
    // refuse the device's whole scrape).
    let value_in_label = !matches!(
        m.value_type,
        MetricType::Counter
            | MetricType::Gauge
            | MetricType::Float
            | MetricType::Double
            | MetricType::DateAndTime
            | MetricType::ParseDateAndTime
            | MetricType::NtpTimeStamp
            | MetricType::Integer32
            | MetricType::Integer
    );
    if value_in_label && name.contains(':') {
        return Err(format!(
            "metric `{name}`: a {:?} metric's value is a label named after it, and a label name cannot contain `:`",
            m.value_type
        ));
    }
    if m.value_type == MetricType::ParseDateAndTime && m.datetime_pattern.is_none() {
        return Err("type ParseDateAndTime needs a datetime_pattern".into());
    }
    let mut extracts = Vec::with_capacity(m.regex_extracts.len());
    for (suffix, rules) in &m.regex_extracts {
        let full = format!("{name}{suffix}");
        if !super::file::is_metric_name(&full) {
            return Err(format!(
                "regex_extracts `{suffix}`: `{full}` is not a valid metric name"
            ));
        }
        extracts.push(Extract {
            family: meta(full, format!("{help} (regex extracted)"), Kind::Gauge),
            rules: rules
                .iter()
                .map(|r| (r.regex.0.clone(), r.value.clone()))
                .collect(),
        });
    }
    let indexes: Vec<Index> = m
        .indexes
        .iter()
        .map(|i| Index {
            label: shared(&i.labelname.0),
            value_type: i.value_type.0,
            fixed_size: i.fixed_size,
            implied: i.implied,
            enum_values: i.enum_values.clone(),
        })
        .collect();
    let lookups: Vec<Lookup> = m
        .lookups
        .iter()
        .map(|l| {
            let lookup_oid = l.oid.as_ref().map(|o| oid(&o.0));
            let type_oid = match (&lookup_oid, l.value_type) {
                (Some(o), Some(t)) if t.is_combined() => preceding(o),
                _ => None,
            };
            Lookup {
                labels: l.labels.iter().map(|n| shared(&n.0)).collect(),
                label: shared(&l.labelname.0),
                oid: lookup_oid,
                type_oid,
                value_type: l.value_type,
                display_hint: l.display_hint.clone().filter(|h| !h.is_empty()),
                enum_values: l.enum_values.clone(),
            }
        })
        .collect();
    for l in &lookups {
        if !l.labels.is_empty() && l.oid.is_none() {
            return Err(format!("lookup `{}` needs an oid", l.label));
        }
    }
    let signature = format!("{:?}|{:?}", m.indexes, m.lookups);
    let next = recipes.len();
    let recipe = *recipes.entry(signature).or_insert(next);
    let metric_oid = oid(&m.oid.0);
    Ok(Metric {
        name: shared(name),
        type_oid: m
            .value_type
            .is_combined()
            .then(|| preceding(&metric_oid))
            .flatten(),
        scalar: indexes.is_empty(),
        oid: metric_oid,
        value_type: m.value_type,
        indexes,
        lookups,
        extracts,
        datetime_pattern: m.datetime_pattern.as_ref().map(|p| p.0.clone()),
        enum_values: m.enum_values.clone(),
        scale: m.scale,
        offset: m.offset,
        display_hint: m.display_hint.clone().filter(|h| !h.is_empty()),
        family,
        recipe,
    })
}

/// Credentials for targets outside the inventory (`auths:` of a module file).
#[derive(Clone)]
pub struct Auth {
    pub name: String,
    pub version: SnmpVersion,
    pub community: Secret,
    /// 1 noAuthNoPriv, 2 authNoPriv, 3 authPriv.
    pub security_level: u8,
    pub username: String,
    pub password: Secret,
    pub auth_protocol: String,
    pub priv_protocol: String,
    pub priv_password: Secret,
    pub context_name: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("security_level", &self.security_level)
            .field("username", &self.username)
            .field("auth_protocol", &self.auth_protocol)
            .field("priv_protocol", &self.priv_protocol)
            .finish_non_exhaustive()
    }
}

/// Checks an auth as snmp_exporter does and fills its defaults (community
/// `public`, version 2, noAuthNoPriv, MD5, DES).
pub fn compile_auth(name: &str, raw: &RawAuth, key: &str) -> Result<Auth, DefinitionError> {
    let err = |sub: &str, message: String| DefinitionError {
        key: format!("{key}{sub}"),
        message,
    };
    let version = match raw.version.unwrap_or(2) {
        1 => SnmpVersion::V1,
        2 => SnmpVersion::V2c,
        3 => SnmpVersion::V3,
        other => {
            return Err(err(
                ".version",
                format!("SNMP version must be 1, 2 or 3, not {other}"),
            ))
        }
    };
    let level_name = raw.security_level.as_deref().unwrap_or("noAuthNoPriv");
    let security_level = match level_name {
        "noAuthNoPriv" => 1,
        "authNoPriv" => 2,
        "authPriv" => 3,
        other if version == SnmpVersion::V3 => {
            return Err(err(
                ".security_level",
                format!("`{other}` is not one of authPriv, authNoPriv or noAuthNoPriv"),
            ))
        }
        _ => 1,
    };
    let auth_protocol = raw.auth_protocol.clone().unwrap_or_else(|| "MD5".into());
    let priv_protocol = raw.priv_protocol.clone().unwrap_or_else(|| "DES".into());
    let password = raw.password.clone().unwrap_or_default();
    let priv_password = raw.priv_password.clone().unwrap_or_default();
    let username = raw.username.clone().unwrap_or_default();
    if version == SnmpVersion::V3 {
        if security_level == 3 {
            if priv_password.expose().is_empty() {
                return Err(err(
                    ".priv_password",
                    "required for SNMPv3 with authPriv".into(),
                ));
            }
            if !["DES", "AES", "AES192", "AES192C", "AES256", "AES256C"]
                .contains(&priv_protocol.as_str())
            {
                return Err(err(
                    ".priv_protocol",
                    format!("`{priv_protocol}` is not one of DES, AES, AES192, AES192C, AES256, AES256C"),
                ));
            }
        }
        if security_level >= 2 {
            if password.expose().is_empty() {
                return Err(err(".password", "required for SNMPv3 with auth".into()));
            }
            if !["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
                .contains(&auth_protocol.as_str())
            {
                return Err(err(
                    ".auth_protocol",
                    format!(
                        "`{auth_protocol}` is not one of MD5, SHA, SHA224, SHA256, SHA384, SHA512"
                    ),
                ));
            }
        }
        if username.is_empty() {
            return Err(err(".username", "required for SNMPv3".into()));
        }
    }
    Ok(Auth {
        name: name.to_string(),
        version,
        community: raw
            .community
            .clone()
            .unwrap_or_else(|| Secret("public".into())),
        security_level,
        username,
        password,
        auth_protocol,
        priv_protocol,
        priv_password,
        context_name: raw.context_name.clone().unwrap_or_default(),
    })
}

/// snmp_exporter's defaults for a target it was not told about.
pub const UNLISTED_TIMEOUT: Duration = Duration::from_secs(5);
pub const UNLISTED_RETRIES: u32 = 3;

impl Auth {
    /// The agent a target outside the inventory is polled through.
    pub fn agent(&self, address: &str, port: u16) -> Agent {
        let v3 = self.version == SnmpVersion::V3;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Agent {
            agent_type: if v3 {
                AgentType::User
            } else {
                AgentType::Community
            },
            id: format!("auth:{}", self.name),
            endpoint: Endpoint {
                address: address.to_string(),
                port,
            },
            version: self.version,
            timeout_ms: UNLISTED_TIMEOUT.as_millis() as u64,
            retries: UNLISTED_RETRIES,
            discovered_at: None,
            read_community: (!v3).then(|| self.community.clone()),
            write_community: None,
            security_name: v3.then(|| self.username.clone()),
            security_level: v3.then_some(self.security_level),
            auth_protocol: (v3 && self.security_level >= 2)
                .then(|| some(&self.auth_protocol))
                .flatten(),
            auth_passphrase: (v3 && self.security_level >= 2).then(|| self.password.clone()),
            priv_protocol: (v3 && self.security_level == 3)
                .then(|| some(&self.priv_protocol))
                .flatten(),
            priv_passphrase: (v3 && self.security_level == 3).then(|| self.priv_password.clone()),
            engine_id: None,
            context_name: some(&self.context_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtrees_are_normalised_and_cover() {
        let n = normalize_subtrees(vec![
            oid(&[1, 3, 6, 1, 2, 1, 2]),
            oid(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2]),
            oid(&[1, 3, 6, 1, 2, 1, 1]),
            oid(&[1, 3, 6, 1, 2, 1, 2]),
            oid(&[1, 3, 6, 1, 2, 1, 25]),
        ]);
        assert_eq!(
            n,
            vec![
                oid(&[1, 3, 6, 1, 2, 1, 1]),
                oid(&[1, 3, 6, 1, 2, 1, 2]),
                oid(&[1, 3, 6, 1, 2, 1, 25])
            ]
        );
        assert!(covered(&n, &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 3]));
        assert!(covered(&n, &[1, 3, 6, 1, 2, 1, 1]));
        assert!(!covered(&n, &[1, 3, 6, 1, 2, 1, 3]));
        assert!(!covered(&n, &[1, 3, 6, 1, 2, 1]));
        assert!(!covered(&[], &[1]));
        assert_eq!(preceding(&[1, 3, 5]), Some(oid(&[1, 3, 4])));
        assert_eq!(preceding(&[1, 0]), None);
    }
}
