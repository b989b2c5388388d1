//! The inventory: devices, their SNMP agents and the saved discovery seeds, in
//! the JSON shape of the Java PromSNMP (DESIGN.md §1).
//!
//! Reading is lenient (unknown fields ignored, `null` for missing strings,
//! timestamps as ISO-8601 or epoch seconds, `host/` address prefixes), writing
//! is canonical. [`Inventory::from_json`] parses *and* validates, naming the
//! offending field, so an import is all-or-nothing. Storage and the file live
//! elsewhere (`store`, `persistence`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// Default SNMP timeout when a document omits it (ms).
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Default SNMP retries when a document omits it.
pub const DEFAULT_RETRIES: u32 = 1;

/// Why a document was refused. `field` is a path such as `devices[2].agents[0].endpoint.port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInventory {
    pub field: String,
    pub message: String,
}

impl InvalidInventory {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidInventory {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A credential string: serialised as is, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    #[serde(default, deserialize_with = "null_default")]
    pub devices: Vec<Device>,
    #[serde(default, deserialize_with = "null_default")]
    pub discovery_seeds: Vec<DiscoverySeed>,
}

/// Written by hand (below): `primaryAgent` is written as the agent it names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sys_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sys_descr: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sys_contact: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sys_location: String,
    #[serde(default, with = "timestamp")]
    pub discovered_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_default")]
    pub agents: Vec<Agent>,
    /// Which of `agents` polls use; `None`: the first.
    #[serde(default)]
    pub primary_agent: Option<PrimaryAgent>,
    /// The modules polled for this device, in order; absent: the defaults.
    /// (The Java PromSNMP reads the file with Spring's ObjectMapper, which
    /// ignores properties it does not know, so the field is safe there.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Timestamp<'a>(&'a Option<DateTime<Utc>>);
        impl Serialize for Timestamp<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                timestamp::serialize(self.0, s)
            }
        }
        let mut st = s.serialize_struct("Device", 9)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("sysName", &self.sys_name)?;
        st.serialize_field("sysDescr", &self.sys_descr)?;
        st.serialize_field("sysContact", &self.sys_contact)?;
        st.serialize_field("sysLocation", &self.sys_location)?;
        st.serialize_field("discoveredAt", &Timestamp(&self.discovered_at))?;
        st.serialize_field("agents", &self.agents)?;
        // The Java shape: the agent itself, not a reference.
        st.serialize_field("primaryAgent", &self.primary())?;
        match &self.modules {
            Some(modules) => st.serialize_field("modules", modules)?,
            None => st.skip_field("modules")?,
        }
        st.end()
    }
}

/// A device's `primaryAgent`: the agent polls use, one of `agents`.
///
/// The Java shape writes it as a copy of that agent, which let an edit of
/// the copy in `agents` go unused. Here it is a reference by agent id once
/// validated ([`PrimaryAgent::Id`]), so an agent's settings live in `agents`
/// only. Read as the agent itself (the Java shape: [`PrimaryAgent::Copy`])
/// or as `{"id": "…"}`. Validation resolves a copy: one whose id is not in
/// `agents` joins them (old files); one equal to the agent with its id is
/// that agent; one that differs is refused by the API and, in a stored
/// inventory (file, Redis), replaces that agent, since it is what polls used.
#[derive(Debug, Clone, PartialEq)]
pub enum PrimaryAgent {
    Id(String),
    Copy(Box<Agent>),
}

impl<'de> Deserialize<'de> for PrimaryAgent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let reference = v.as_object().filter(|o| !o.contains_key("type"));
        match reference {
            Some(o) => match (o.get("id").and_then(|id| id.as_str()), o.len()) {
                (Some(id), 1) => Ok(PrimaryAgent::Id(id.to_string())),
                _ => Err(de::Error::custom(
                    "expected the agent polls use (an agent with `type`) or `{\"id\": …}` naming one of `agents`; edit an agent's settings in `agents`",
                )),
            },
            None => serde_json::from_value(v)
                .map(|a| PrimaryAgent::Copy(Box::new(a)))
                .map_err(de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentType {
    Community,
    User,
}

impl AgentType {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentType::Community => "snmp-community",
            AgentType::User => "snmp-user",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "snmp-community" | "community" => Some(AgentType::Community),
            "snmp-user" | "user" => Some(AgentType::User),
            _ => None,
        }
    }
}

impl Serialize for AgentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AgentType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AgentType::parse(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown agent type `{s}` (expected snmp-community or snmp-user)"
            ))
        })
    }
}

/// SNMP protocol version. In agents it is written as the wire number
/// (0 = v1, 1 = v2c, 3 = v3), in seeds as `v1`/`v2c`/`v3`; both forms are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnmpVersion {
    V1,
    V2c,
    V3,
}

impl SnmpVersion {
    pub fn wire(self) -> u8 {
        match self {
            SnmpVersion::V1 => 0,
            SnmpVersion::V2c => 1,
            SnmpVersion::V3 => 3,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SnmpVersion::V1 => "v1",
            SnmpVersion::V2c => "v2c",
            SnmpVersion::V3 => "v3",
        }
    }
    fn parse_value(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Number(n) => match n.as_u64()? {
                0 => Some(SnmpVersion::V1),
                1 => Some(SnmpVersion::V2c),
                3 => Some(SnmpVersion::V3),
                _ => None,
            },
            serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "v1" | "1" | "0" | "snmpv1" => Some(SnmpVersion::V1),
                "v2c" | "v2" | "2c" | "snmpv2c" => Some(SnmpVersion::V2c),
                "v3" | "3" | "snmpv3" => Some(SnmpVersion::V3),
                _ => None,
            },
            _ => None,
        }
    }
}

fn version_de<'de, D: Deserializer<'de>>(d: D) -> Result<SnmpVersion, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    SnmpVersion::parse_value(&v).ok_or_else(|| {
        de::Error::custom(format!(
            "unsupported SNMP version {v} (expected v1, v2c or v3 / 0, 1 or 3)"
        ))
    })
}

fn version_wire_ser<S: Serializer>(v: &SnmpVersion, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(v.wire())
}

fn version_name_ser<S: Serializer>(v: &SnmpVersion, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(deserialize_with = "address_de")]
    pub address: String,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    161
}

impl Endpoint {
    /// `ip:port` (IPv6 in brackets), the form `/targets` hands out.
    pub fn target(&self) -> String {
        match self.address.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port).to_string(),
            Err(_) => format!("{}:{}", self.address, self.port),
        }
    }
}

/// Java's `InetAddress.toString()` writes `host/1.2.3.4` or `/1.2.3.4`: keep the address.
fn address_de<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    Ok(normalize_address(&s))
}

pub fn normalize_address(s: &str) -> String {
    let s = s.trim();
    match s.rsplit_once('/') {
        Some((_, addr)) if !addr.is_empty() => addr.to_string(),
        Some((host, _)) => host.to_string(),
        None => s.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    pub endpoint: Endpoint,
    #[serde(deserialize_with = "version_de", serialize_with = "version_wire_ser")]
    pub version: SnmpVersion,
    /// Per-request timeout in milliseconds.
    #[serde(rename = "timeout", default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default, with = "timestamp")]
    pub discovered_at: Option<DateTime<Utc>>,
    // snmp-community
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_community: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_community: Option<Secret>,
    // snmp-user
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_passphrase: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_passphrase: Option<Secret>,
    /// Authoritative engine id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_id: Option<String>,
    /// SNMPv3 context name (empty: the default context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_name: Option<String>,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverySeed {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub potential_targets: Vec<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(
        default = "default_seed_version",
        deserialize_with = "version_de",
        serialize_with = "version_name_ser"
    )]
    pub version: SnmpVersion,
    #[serde(default = "default_seed_agent_type")]
    pub agent_type: AgentType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_community: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_passphrase: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_passphrase: Option<Secret>,
    /// Per-request timeout (ms) used when probing and stored on found agents.
    #[serde(rename = "timeout", default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Modules for the devices this seed finds; absent: the module rules
    /// decide (then the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
}

fn default_seed_version() -> SnmpVersion {
    SnmpVersion::V2c
}
fn default_seed_agent_type() -> AgentType {
    AgentType::Community
}

/// Canonical auth protocol name, or `None` if unknown.
pub fn canonical_auth_protocol(s: &str) -> Option<&'static str> {
    let n: String = s
        .trim()
        .to_ascii_uppercase()
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect();
    Some(match n.as_str() {
        "MD5" | "HMACMD5" => "MD5",
        "SHA" | "SHA1" | "HMACSHA" => "SHA",
        "SHA224" => "SHA224",
        "SHA256" => "SHA256",
        "SHA384" => "SHA384",
        "SHA512" => "SHA512",
        _ => return None,
    })
}

/// Canonical privacy protocol name (`AES` is `AES128`), or `None` if unknown.
pub fn canonical_priv_protocol(s: &str) -> Option<&'static str> {
    let n: String = s
        .trim()
        .to_ascii_uppercase()
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect();
    Some(match n.as_str() {
        "DES" | "CBCDES" => "DES",
        "AES" | "AES128" | "CFBAES128" => "AES128",
        "AES192" => "AES192",
        "AES256" => "AES256",
        // Cisco's key extension (snmp_exporter's names).
        "AES192C" => "AES192C",
        "AES256C" => "AES256C",
        _ => return None,
    })
}

pub const AUTH_PROTOCOLS: [&str; 6] = ["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"];
pub const PRIV_PROTOCOLS: [&str; 4] = ["DES", "AES128", "AES192", "AES256"];

/// v3 credential fields shared by agents and seeds, validated together.
struct UserFields<'a> {
    security_name: &'a mut Option<String>,
    security_level: &'a mut Option<u8>,
    auth_protocol: &'a mut Option<String>,
    auth_passphrase: &'a Option<Secret>,
    priv_protocol: &'a mut Option<String>,
    priv_passphrase: &'a Option<Secret>,
}

impl UserFields<'_> {
    /// Checks and canonicalises; infers the level from the fields when absent.
    fn validate(self, path: &str) -> Result<(), InvalidInventory> {
        if self.security_name.as_deref().unwrap_or("").is_empty() {
            return Err(InvalidInventory::new(
                format!("{path}.securityName"),
                "required for SNMPv3",
            ));
        }
        for (field, value, canon) in [
            (
                "authProtocol",
                &mut *self.auth_protocol,
                canonical_auth_protocol as fn(&str) -> _,
            ),
            (
                "privProtocol",
                &mut *self.priv_protocol,
                canonical_priv_protocol,
            ),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                let c = canon(v).ok_or_else(|| {
                    let allowed = if field == "authProtocol" {
                        AUTH_PROTOCOLS.join(", ")
                    } else {
                        PRIV_PROTOCOLS.join(", ")
                    };
                    InvalidInventory::new(
                        format!("{path}.{field}"),
                        format!("unknown protocol `{v}` (expected one of {allowed})"),
                    )
                })?;
                *value = Some(c.to_string());
            } else {
                *value = None;
            }
        }
        let has_auth = self.auth_protocol.is_some();
        let has_priv = self.priv_protocol.is_some();
        let level = match *self.security_level {
            Some(l @ 1..=3) => l,
            Some(l) => {
                return Err(InvalidInventory::new(
                    format!("{path}.securityLevel"),
                    format!(
                        "{l} is not a security level (1 noAuthNoPriv, 2 authNoPriv, 3 authPriv)"
                    ),
                ))
            }
            None => 1 + u8::from(has_auth) + u8::from(has_auth && has_priv),
        };
        *self.security_level = Some(level);
        if level >= 2 {
            if !has_auth {
                return Err(InvalidInventory::new(
                    format!("{path}.authProtocol"),
                    "required for securityLevel 2 and 3",
                ));
            }
            if self.auth_passphrase.as_ref().map_or(0, |p| p.0.len()) < 8 {
                return Err(InvalidInventory::new(
                    format!("{path}.authPassphrase"),
                    "required, at least 8 characters",
                ));
            }
        }
        if level == 3 {
            if !has_priv {
                return Err(InvalidInventory::new(
                    format!("{path}.privProtocol"),
                    "required for securityLevel 3",
                ));
            }
            if self.priv_passphrase.as_ref().map_or(0, |p| p.0.len()) < 8 {
                return Err(InvalidInventory::new(
                    format!("{path}.privPassphrase"),
                    "required, at least 8 characters",
                ));
            }
        }
        Ok(())
    }
}

/// Port, timeout, retries and the version that fits the agent type, for
/// agents and seeds alike; `port_field` names where the port sits.
fn check_session(
    path: &str,
    port_field: &str,
    port: u16,
    agent_type: AgentType,
    version: SnmpVersion,
    timeout_ms: u64,
    retries: u32,
) -> Result<(), InvalidInventory> {
    if port == 0 {
        return Err(InvalidInventory::new(
            format!("{path}.{port_field}"),
            "0 is not a valid port (expected 1-65535)",
        ));
    }
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(InvalidInventory::new(
            format!("{path}.timeout"),
            "expected 1-60000 ms",
        ));
    }
    if retries > 10 {
        return Err(InvalidInventory::new(
            format!("{path}.retries"),
            "expected 0-10",
        ));
    }
    match (agent_type, version) {
        (AgentType::Community, SnmpVersion::V3) => Err(InvalidInventory::new(
            format!("{path}.version"),
            "snmp-community uses v1 or v2c",
        )),
        (AgentType::User, SnmpVersion::V1 | SnmpVersion::V2c) => Err(InvalidInventory::new(
            format!("{path}.version"),
            "snmp-user uses v3",
        )),
        _ => Ok(()),
    }
}

/// Most modules one device may name.
pub const MAX_MODULES: usize = 64;

/// Checks a `modules` list's shape (whether each is loaded is checked where
/// the modules are known): non-empty, plain names, no repeats.
fn check_modules(path: &str, modules: &mut Option<Vec<String>>) -> Result<(), InvalidInventory> {
    let Some(list) = modules else {
        return Ok(());
    };
    if list.is_empty() {
        return Err(InvalidInventory::new(
            format!("{path}.modules"),
            "empty: name at least one module, or leave the field out for the defaults",
        ));
    }
    if list.len() > MAX_MODULES {
        return Err(InvalidInventory::new(
            format!("{path}.modules"),
            format!("at most {MAX_MODULES} modules"),
        ));
    }
    for (i, name) in list.iter_mut().enumerate() {
        *name = name.trim().to_string();
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
        if !ok {
            return Err(InvalidInventory::new(
                format!("{path}.modules[{i}]"),
                "expected a module name (letters, digits, `.`, `_`, `:` or `-`)",
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|m| seen.insert(m.clone()));
    Ok(())
}

/// Fills an empty id, or checks that a given one is safe in URLs, headers and logs.
fn check_id(path: &str, id: &mut String) -> Result<(), InvalidInventory> {
    if id.is_empty() {
        *id = new_id();
        return Ok(());
    }
    let ok = id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    if !ok {
        return Err(InvalidInventory::new(
            format!("{path}.id"),
            "expected at most 128 letters, digits, `.`, `_`, `:` or `-` (or leave it out to get a UUID)",
        ));
    }
    Ok(())
}

/// Whether `s` is a syntactically valid DNS host name.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Agent {
    /// Checks an agent and fills what can be inferred. `path` names it in errors.
    pub fn validate(&mut self, path: &str) -> Result<(), InvalidInventory> {
        check_id(path, &mut self.id)?;
        let address = &self.endpoint.address;
        if !address.is_empty() && address.parse::<IpAddr>().is_err() && !is_host_name(address) {
            return Err(InvalidInventory::new(
                format!("{path}.endpoint.address"),
                format!(
                    "`{address}` is not an IP address or host name (put the port in endpoint.port)"
                ),
            ));
        }
        if self.endpoint.address.is_empty() {
            return Err(InvalidInventory::new(
                format!("{path}.endpoint.address"),
                "required",
            ));
        }
        check_session(
            path,
            "endpoint.port",
            self.endpoint.port,
            self.agent_type,
            self.version,
            self.timeout_ms,
            self.retries,
        )?;
        match self.agent_type {
            AgentType::Community => {
                if self.read_community.as_ref().is_none_or(|c| c.0.is_empty()) {
                    return Err(InvalidInventory::new(
                        format!("{path}.readCommunity"),
                        "required for snmp-community",
                    ));
                }
            }
            AgentType::User => {
                UserFields {
                    security_name: &mut self.security_name,
                    security_level: &mut self.security_level,
                    auth_protocol: &mut self.auth_protocol,
                    auth_passphrase: &self.auth_passphrase,
                    priv_protocol: &mut self.priv_protocol,
                    priv_passphrase: &self.priv_passphrase,
                }
                .validate(path)?;
                if let Some(e) = self.engine_id.as_deref().filter(|e| !e.is_empty()) {
                    let hex = e.trim_start_matches("0x").replace(':', "");
                    if hex::decode(&hex).is_err() {
                        return Err(InvalidInventory::new(
                            format!("{path}.engineId"),
                            "expected hex",
                        ));
                    }
                    self.engine_id = Some(hex.to_ascii_lowercase());
                } else {
                    self.engine_id = None;
                }
            }
        }
        Ok(())
    }

    /// Decoded engine id, if stored.
    pub fn engine_id_bytes(&self) -> Option<Vec<u8>> {
        self.engine_id
            .as_deref()
            .and_then(|e| hex::decode(e).ok())
            .filter(|e| !e.is_empty())
    }
}

impl DiscoverySeed {
    pub fn validate(&mut self, path: &str) -> Result<(), InvalidInventory> {
        check_id(path, &mut self.id)?;
        check_modules(path, &mut self.modules)?;
        self.potential_targets = self
            .potential_targets
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if self.potential_targets.is_empty() {
            return Err(InvalidInventory::new(
                format!("{path}.potentialTargets"),
                "at least one target is required",
            ));
        }
        check_session(
            path,
            "port",
            self.port,
            self.agent_type,
            self.version,
            self.timeout_ms,
            self.retries,
        )?;
        match self.agent_type {
            AgentType::Community => {
                if self.read_community.as_ref().is_none_or(|c| c.0.is_empty()) {
                    self.read_community = Some(Secret("public".into()));
                }
            }
            AgentType::User => UserFields {
                security_name: &mut self.security_name,
                security_level: &mut self.security_level,
                auth_protocol: &mut self.auth_protocol,
                auth_passphrase: &self.auth_passphrase,
                priv_protocol: &mut self.priv_protocol,
                priv_passphrase: &self.priv_passphrase,
            }
            .validate(path)?,
        }
        Ok(())
    }

    /// Parses and validates one seed (a discovery request body).
    pub fn from_json(bytes: &[u8]) -> Result<DiscoverySeed, InvalidInventory> {
        let mut seed: DiscoverySeed = parse_json(bytes)?;
        seed.validate("")
            .map_err(|e| InvalidInventory::new(e.field.trim_start_matches('.'), e.message))?;
        Ok(seed)
    }

    /// The agent a successful probe of `address` with this seed becomes.
    pub fn agent_for(&self, address: IpAddr, port: u16) -> Agent {
        Agent {
            agent_type: self.agent_type,
            id: new_id(),
            endpoint: Endpoint {
                address: address.to_string(),
                port,
            },
            version: self.version,
            timeout_ms: self.timeout_ms,
            retries: self.retries,
            discovered_at: Some(now_seconds()),
            read_community: self.read_community.clone(),
            write_community: None,
            security_name: self.security_name.clone(),
            security_level: self.security_level,
            auth_protocol: self.auth_protocol.clone(),
            auth_passphrase: self.auth_passphrase.clone(),
            priv_protocol: self.priv_protocol.clone(),
            priv_passphrase: self.priv_passphrase.clone(),
            engine_id: None,
            context_name: None,
        }
    }
}

impl Device {
    /// The agent polls go to: the primary agent, else the first one.
    pub fn poll_agent(&self) -> Option<&Agent> {
        self.primary().or_else(|| self.agents.first())
    }

    /// The agent `primaryAgent` names, if any (and found).
    fn primary(&self) -> Option<&Agent> {
        match self.primary_agent.as_ref()? {
            PrimaryAgent::Id(id) => self.agents.iter().find(|a| &a.id == id),
            PrimaryAgent::Copy(agent) => Some(agent),
        }
    }

    /// Every agent: `agents`, and a primary copy not resolved yet.
    fn all_agents(&self) -> impl Iterator<Item = &Agent> {
        let copy = match &self.primary_agent {
            Some(PrimaryAgent::Copy(a)) => Some(&**a),
            _ => None,
        };
        self.agents.iter().chain(copy)
    }

    /// Parses and validates one device (a request body of the device API).
    /// A `primaryAgent` that differs from the agent with its id is refused.
    pub fn from_json(bytes: &[u8]) -> Result<Device, InvalidInventory> {
        let mut device: Device = parse_json(bytes)?;
        device
            .validate("", true)
            .map_err(|e| InvalidInventory::new(e.field.trim_start_matches('.'), e.message))?;
        Ok(device)
    }

    /// Makes `primaryAgent` a reference into `agents` (see [`PrimaryAgent`]);
    /// `refuse_divergent`: a copy that differs from its agent is an error
    /// rather than the agent's new settings. Agents are validated already.
    fn resolve_primary(
        &mut self,
        path: &str,
        refuse_divergent: bool,
    ) -> Result<(), InvalidInventory> {
        let field = format!("{path}.primaryAgent");
        let id = match self.primary_agent.take() {
            None => return Ok(()),
            Some(PrimaryAgent::Id(id)) => {
                if !self.agents.iter().any(|a| a.id == id) {
                    return Err(InvalidInventory::new(
                        field,
                        format!("no agent with id `{id}` in agents"),
                    ));
                }
                id
            }
            Some(PrimaryAgent::Copy(mut copy)) => {
                let had_id = !copy.id.is_empty();
                copy.validate(&field)?;
                if !had_id {
                    // A copy without id is the agent it equals, if any.
                    let blank = |a: &Agent| Agent {
                        id: String::new(),
                        ..a.clone()
                    };
                    if let Some(a) = self.agents.iter().find(|a| blank(a) == blank(&copy)) {
                        copy.id = a.id.clone();
                    }
                }
                let id = copy.id.clone();
                match self.agents.iter().position(|a| a.id == id) {
                    None => self.agents.push(*copy),
                    Some(i) if self.agents[i] == *copy => {}
                    Some(i) if refuse_divergent => {
                        return Err(InvalidInventory::new(
                            field,
                            format!(
                                "differs from agents[{i}], which has the same id `{id}`: primaryAgent only names the agent polls use; change the agent in agents[{i}] and send primaryAgent equal to it, or as {{\"id\": \"{id}\"}}"
                            ),
                        ));
                    }
                    Some(i) => {
                        tracing::warn!(device = %self.id, agent = %id, "primaryAgent differs from the agent with its id in agents: the primaryAgent copy, which polls used, replaces it");
                        self.agents[i] = *copy;
                    }
                }
                id
            }
        };
        self.primary_agent = Some(PrimaryAgent::Id(id));
        Ok(())
    }

    /// Whether `target` (sysName, IP, or IP:port) names this device.
    pub fn matches_target(&self, target: &str) -> bool {
        let target = target.trim();
        if !self.sys_name.is_empty() && self.sys_name == target {
            return true;
        }
        let mut agents = self.all_agents();
        if let Ok(sa) = target.parse::<SocketAddr>() {
            return agents.any(|a| {
                a.endpoint.port == sa.port()
                    && a.endpoint.address.parse::<IpAddr>().ok() == Some(sa.ip())
            });
        }
        let bare = target.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return agents.any(|a| a.endpoint.address.parse::<IpAddr>().ok() == Some(ip));
        }
        // host name (or host:port) stored verbatim as an address
        agents.any(|a| a.endpoint.address == target || a.endpoint.target() == target)
    }

    fn validate(&mut self, path: &str, refuse_divergent: bool) -> Result<(), InvalidInventory> {
        check_id(path, &mut self.id)?;
        check_modules(path, &mut self.modules)?;
        for (i, agent) in self.agents.iter_mut().enumerate() {
            agent.validate(&format!("{path}.agents[{i}]"))?;
        }
        let mut agent_ids = std::collections::HashSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            // primaryAgent names an agent by id: two with one id would be
            // ambiguous (a stored inventory that has them still loads).
            if !agent_ids.insert(agent.id.as_str()) && refuse_divergent {
                return Err(InvalidInventory::new(
                    format!("{path}.agents[{i}].id"),
                    format!("duplicate agent id `{}`", agent.id),
                ));
            }
        }
        self.resolve_primary(path, refuse_divergent)?;
        if self.poll_agent().is_none() {
            return Err(InvalidInventory::new(
                format!("{path}.agents"),
                "a device needs at least one agent",
            ));
        }
        if self.sys_name.is_empty() {
            // Keep every device addressable by name.
            self.sys_name = self
                .poll_agent()
                .map(|a| a.endpoint.address.clone())
                .unwrap_or_default();
        }
        Ok(())
    }
}

impl Inventory {
    /// Parses and validates a whole document. Nothing is stored here: the
    /// caller replaces its inventory only when this returns `Ok`.
    pub fn from_json(bytes: &[u8]) -> Result<Inventory, InvalidInventory> {
        let mut inv: Inventory = parse_json(bytes)?;
        inv.validate()?;
        Ok(inv)
    }

    /// Parses an import document (`POST /promsnmp/inventory`). `devices` must
    /// be present — an empty list is an explicit wipe, a missing key (`{}`, or a
    /// typo such as `device`) is refused. Also says whether `discoverySeeds`
    /// was given, so a devices-only document keeps the saved seeds.
    pub fn from_import_json(bytes: &[u8]) -> Result<(Inventory, bool), InvalidInventory> {
        /// The import body: like [`Inventory`], but a missing list stays visible.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ImportDocument {
            devices: Option<Vec<Device>>,
            discovery_seeds: Option<Vec<DiscoverySeed>>,
        }
        let doc: ImportDocument = parse_json(bytes)?;
        let Some(devices) = doc.devices else {
            return Err(InvalidInventory::new(
                "devices",
                "required (send `\"devices\": []` to remove every device)",
            ));
        };
        let seeds_given = doc.discovery_seeds.is_some();
        let mut inv = Inventory {
            devices,
            discovery_seeds: doc.discovery_seeds.unwrap_or_default(),
        };
        inv.validate_with(true)?;
        Ok((inv, seeds_given))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("inventory serialises")
    }

    /// Checks a stored inventory (file, Redis, each change) and fills what
    /// can be inferred; a divergent `primaryAgent` copy is resolved, not
    /// refused (see [`PrimaryAgent`]).
    pub fn validate(&mut self) -> Result<(), InvalidInventory> {
        self.validate_with(false)
    }

    fn validate_with(&mut self, refuse_divergent: bool) -> Result<(), InvalidInventory> {
        let mut ids = std::collections::HashSet::new();
        for (i, device) in self.devices.iter_mut().enumerate() {
            let path = format!("devices[{i}]");
            device.validate(&path, refuse_divergent)?;
            if !ids.insert(device.id.clone()) {
                return Err(InvalidInventory::new(
                    format!("{path}.id"),
                    format!("duplicate device id `{}`", device.id),
                ));
            }
        }
        let mut seed_ids = std::collections::HashSet::new();
        for (i, seed) in self.discovery_seeds.iter_mut().enumerate() {
            let path = format!("discoverySeeds[{i}]");
            seed.validate(&path)?;
            if !seed_ids.insert(seed.id.clone()) {
                return Err(InvalidInventory::new(
                    format!("{path}.id"),
                    format!("duplicate seed id `{}`", seed.id),
                ));
            }
        }
        Ok(())
    }

    /// The positions of the devices `key` names in the device API: the
    /// device with that id, else every device with that sysName.
    pub fn devices_named(&self, key: &str) -> Vec<usize> {
        if let Some(i) = self.devices.iter().position(|d| d.id == key) {
            return vec![i];
        }
        (0..self.devices.len())
            .filter(|i| !key.is_empty() && self.devices[*i].sys_name == key)
            .collect()
    }

    /// Every device's id, in inventory order.
    pub fn device_ids(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.id.clone()).collect()
    }

    /// The device `target` (sysName, IP or IP:port) names, if any.
    pub fn find_device(&self, target: &str) -> Option<&Device> {
        self.devices
            .iter()
            .find(|d| d.sys_name == target.trim())
            .or_else(|| self.devices.iter().find(|d| d.matches_target(target)))
    }

    /// Adds a discovered device, or refreshes the one already polled at the same
    /// endpoint (keeping its id). Its modules change when the seed named them
    /// (`seed_modules`), or when it had none and a module rule chose some.
    /// Returns the device id.
    pub fn upsert_discovered(&mut self, mut found: Device, seed_modules: bool) -> String {
        let Some(agent) = found.poll_agent().cloned() else {
            return String::new();
        };
        let existing = self
            .devices
            .iter_mut()
            .find(|d| d.all_agents().any(|a| a.endpoint == agent.endpoint));
        match existing {
            Some(d) => {
                if seed_modules || d.modules.is_none() {
                    d.modules = found.modules;
                }
                d.sys_name = found.sys_name;
                d.sys_descr = found.sys_descr;
                d.sys_contact = found.sys_contact;
                d.sys_location = found.sys_location;
                // An agent of the same kind at this endpoint gets the credentials
                // that just worked; its id, engineId, write community, timeout and
                // retries stay. A different kind of agent is added beside the
                // stored ones, which keep polling as before.
                let same_kind = |a: &Agent| {
                    a.endpoint == agent.endpoint
                        && a.agent_type == agent.agent_type
                        && a.version == agent.version
                        && a.security_name == agent.security_name
                };
                let refresh = |a: &mut Agent| {
                    a.read_community = agent.read_community.clone();
                    a.security_level = agent.security_level;
                    a.auth_protocol = agent.auth_protocol.clone();
                    a.auth_passphrase = agent.auth_passphrase.clone();
                    a.priv_protocol = agent.priv_protocol.clone();
                    a.priv_passphrase = agent.priv_passphrase.clone();
                };
                let mut matched = false;
                for a in d.agents.iter_mut().filter(|a| same_kind(a)) {
                    refresh(a);
                    matched = true;
                }
                if !matched {
                    d.agents.push(agent);
                }
                d.id.clone()
            }
            None => {
                if found.id.is_empty() {
                    found.id = new_id();
                }
                let id = found.id.clone();
                self.devices.push(found);
                id
            }
        }
    }

    /// Adds or replaces (same id) a seed.
    pub fn upsert_seed(&mut self, seed: DiscoverySeed) {
        match self.discovery_seeds.iter_mut().find(|s| s.id == seed.id) {
            Some(s) => *s = seed,
            None => self.discovery_seeds.push(seed),
        }
    }
}

/// Parses JSON, naming the field that failed.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, InvalidInventory> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        InvalidInventory::new(field, inner.to_string())
    })
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now_seconds() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_opt(now.timestamp(), 0)
        .single()
        .unwrap_or(now)
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Timestamps: written as ISO-8601 (UTC); read as ISO-8601 (with or without
/// offset), epoch seconds (integer or fractional, as Jackson writes `Instant`),
/// or epoch milliseconds when the number is too large to be seconds.
mod timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse(&v).map_err(de::Error::custom)
    }

    pub fn parse(v: &serde_json::Value) -> Result<Option<DateTime<Utc>>, String> {
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => {
                let secs = n.as_f64().ok_or("not a number")?;
                let secs = if secs.abs() > 1e11 {
                    secs / 1000.0
                } else {
                    secs
                };
                let whole = secs.floor();
                let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
                Utc.timestamp_opt(whole as i64, nanos)
                    .single()
                    .map(Some)
                    .ok_or_else(|| format!("timestamp {n} out of range"))
            }
            serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
            serde_json::Value::String(s) => {
                let s = s.trim();
                if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                    return Ok(Some(t.with_timezone(&Utc)));
                }
                if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
                    return Ok(Some(t.and_utc()));
                }
                if let Ok(secs) = s.parse::<f64>() {
                    return parse(&serde_json::json!(secs));
                }
                Err(format!(
                    "`{s}` is not an ISO-8601 timestamp or epoch seconds"
                ))
            }
            other => Err(format!("{other} is not a timestamp")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAVA_DOC: &str = r#"{
      "devices": [{
        "id": "2f1c1b7e-1111-4c1e-9a57-0b1c2d3e4f50",
        "sysName": "core-sw1", "sysDescr": "Linux core-sw1", "sysContact": null,
        "sysLocation": "DC1", "discoveredAt": 1718000000.123456789,
        "someNewJavaField": {"x": 1},
        "agents": [{
          "type": "snmp-user", "id": "a1", "endpoint": {"address": "core-sw1/10.0.0.1", "port": 161},
          "version": 3, "timeout": 1500, "retries": 2, "discoveredAt": "2024-06-10T06:13:20Z",
          "securityName": "monitor", "securityLevel": 3, "authProtocol": "SHA-256",
          "authPassphrase": "authpass123", "privProtocol": "AES", "privPassphrase": "privpass123",
          "engineId": "80001f8880"
        }],
        "primaryAgent": null
      }],
      "discoverySeeds": [{"id": "s1", "potentialTargets": ["10.0.0.0/30"], "port": 161,
        "version": "v2c", "agentType": "snmp-community", "readCommunity": "public"}]
    }"#;

    #[test]
    fn reads_java_document_leniently() {
        let inv = Inventory::from_json(JAVA_DOC.as_bytes()).unwrap();
        let d = &inv.devices[0];
        assert_eq!(d.sys_contact, "");
        assert_eq!(d.discovered_at.unwrap().timestamp(), 1718000000);
        let a = &d.agents[0];
        assert_eq!(a.endpoint.address, "10.0.0.1");
        assert_eq!(a.auth_protocol.as_deref(), Some("SHA256"));
        assert_eq!(a.priv_protocol.as_deref(), Some("AES128"));
        assert_eq!(
            a.engine_id_bytes(),
            Some(vec![0x80, 0x00, 0x1f, 0x88, 0x80])
        );
        assert_eq!(inv.discovery_seeds[0].version, SnmpVersion::V2c);
        // Round trip through our own writer is stable.
        let again = Inventory::from_json(&inv.to_json()).unwrap();
        assert_eq!(again, inv);
    }

    #[test]
    fn errors_name_the_field() {
        let bad_port = JAVA_DOC.replace("\"port\": 161}", "\"port\": 70000}");
        let e = Inventory::from_json(bad_port.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].agents[0].endpoint.port", "{e}");
        let zero_port = JAVA_DOC.replace("\"port\": 161}", "\"port\": 0}");
        let e = Inventory::from_json(zero_port.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].agents[0].endpoint.port", "{e}");
        let bad_type = JAVA_DOC.replace(
            "\"agentType\": \"snmp-community\"",
            "\"agentType\": \"telnet\"",
        );
        let e = Inventory::from_json(bad_type.as_bytes()).unwrap_err();
        assert_eq!(e.field, "discoverySeeds[0].agentType", "{e}");
        let bad_version = JAVA_DOC.replace("\"version\": 3,", "\"version\": 2,");
        let e = Inventory::from_json(bad_version.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].agents[0].version", "{e}");
        let bad_auth = JAVA_DOC.replace("SHA-256", "SHA-3");
        let e = Inventory::from_json(bad_auth.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].agents[0].authProtocol", "{e}");
        let e = Inventory::from_json(b"{\"devices\": [").unwrap_err();
        assert!(e.message.contains("EOF"), "{e}");
    }

    #[test]
    fn debug_hides_secrets() {
        let inv = Inventory::from_json(JAVA_DOC.as_bytes()).unwrap();
        let dbg = format!("{inv:?}");
        assert!(
            !dbg.contains("authpass123")
                && !dbg.contains("privpass123")
                && !dbg.contains("\"public\"")
        );
    }

    #[test]
    fn targets_match_every_form() {
        let inv = Inventory::from_json(JAVA_DOC.as_bytes()).unwrap();
        for t in ["core-sw1", "10.0.0.1", "10.0.0.1:161"] {
            assert!(inv.find_device(t).is_some(), "{t}");
        }
        for t in ["core-sw2", "10.0.0.2", "10.0.0.1:162"] {
            assert!(inv.find_device(t).is_none(), "{t}");
        }
    }

    #[test]
    fn rediscovery_refreshes_credentials_and_keeps_the_rest() {
        let mut inv = Inventory::from_json(JAVA_DOC.as_bytes()).unwrap();
        let device_id = inv.devices[0].id.clone();
        let v3_agent = inv.devices[0].agents[0].clone();
        let found = |seed: &str| {
            let seed = DiscoverySeed::from_json(seed.as_bytes()).unwrap();
            let agent = seed.agent_for("10.0.0.1".parse().unwrap(), 161);
            Device {
                id: String::new(),
                sys_name: "renamed".into(),
                sys_descr: String::new(),
                sys_contact: String::new(),
                sys_location: String::new(),
                discovered_at: None,
                primary_agent: Some(PrimaryAgent::Id(agent.id.clone())),
                agents: vec![agent],
                modules: None,
            }
        };
        // Same kind (v3, same user): new passphrase, everything else kept.
        let v3 = r#"{"potentialTargets":["10.0.0.1"],"version":"v3","agentType":"snmp-user","securityName":"monitor","authProtocol":"SHA256","authPassphrase":"newauth123","privProtocol":"AES","privPassphrase":"newpriv123"}"#;
        assert_eq!(inv.upsert_discovered(found(v3), false), device_id);
        let a = &inv.devices[0].agents[0];
        assert_eq!(a.auth_passphrase.as_ref().unwrap().expose(), "newauth123");
        assert_eq!(
            (a.id.as_str(), a.engine_id.as_deref(), a.timeout_ms),
            (
                v3_agent.id.as_str(),
                v3_agent.engine_id.as_deref(),
                v3_agent.timeout_ms
            )
        );
        assert_eq!(inv.devices[0].sys_name, "renamed");
        // Another kind (v2c): added beside the v3 agent, which still polls.
        let v2 = r#"{"potentialTargets":["10.0.0.1"],"readCommunity":"c2"}"#;
        assert_eq!(inv.upsert_discovered(found(v2), false), device_id);
        let d = &inv.devices[0];
        assert_eq!(inv.devices.len(), 1);
        assert_eq!(d.agents.len(), 2);
        assert_eq!(d.poll_agent().unwrap().id, v3_agent.id);
        d.clone().validate("d", true).unwrap();
    }

    #[test]
    fn ids_and_addresses_are_checked() {
        let bad_id = JAVA_DOC.replace("\"id\": \"s1\"", "\"id\": \"a\\nb\"");
        assert_eq!(
            Inventory::from_json(bad_id.as_bytes()).unwrap_err().field,
            "discoverySeeds[0].id"
        );
        let bad_address = JAVA_DOC.replace("core-sw1/10.0.0.1", "10.0.0.1:161");
        assert_eq!(
            Inventory::from_json(bad_address.as_bytes())
                .unwrap_err()
                .field,
            "devices[0].agents[0].endpoint.address"
        );
        assert_eq!(
            Inventory::from_import_json(b"{}").unwrap_err().field,
            "devices"
        );
        assert_eq!(
            Inventory::from_import_json(br#"{"device": []}"#)
                .unwrap_err()
                .field,
            "devices"
        );
        let (inv, seeds_given) = Inventory::from_import_json(br#"{"devices": []}"#).unwrap();
        assert!(inv.devices.is_empty() && !seeds_given);
    }

    /// One device of JAVA_DOC's shape with a v2c agent `a1` and `primary` as its primaryAgent.
    fn doc_with_primary(primary: &str) -> String {
        format!(
            r#"{{"devices": [{{"id": "d1", "sysName": "sw",
                "agents": [{{"type": "snmp-community", "id": "a1", "endpoint": {{"address": "10.0.0.1"}},
                             "version": 1, "readCommunity": "public"}}],
                "primaryAgent": {primary}}}]}}"#
        )
    }

    const AGENT_A1: &str = r#"{"type": "snmp-community", "id": "a1", "endpoint": {"address": "10.0.0.1"}, "version": 1, "readCommunity": "public"}"#;

    #[test]
    fn primary_agent_is_one_of_the_agents() {
        // A Java document: the primary is a copy equal to agents[0].
        let mut inv = Inventory::from_json(doc_with_primary(AGENT_A1).as_bytes()).unwrap();
        let d = &inv.devices[0];
        assert_eq!(d.primary_agent, Some(PrimaryAgent::Id("a1".into())));
        assert_eq!(d.agents.len(), 1);
        // Written in the Java shape: the agent itself.
        let out: serde_json::Value = serde_json::from_slice(&inv.to_json()).unwrap();
        assert_eq!(
            out["devices"][0]["primaryAgent"],
            out["devices"][0]["agents"][0]
        );
        assert_eq!(Inventory::from_json(&inv.to_json()).unwrap(), inv);
        // An edit of the agent is what polls use: there is no other copy.
        inv.devices[0].agents[0].read_community = Some(Secret("changed".into()));
        let polled = inv.devices[0].poll_agent().unwrap();
        assert_eq!(polled.read_community.as_ref().unwrap().expose(), "changed");
        let out: serde_json::Value = serde_json::from_slice(&inv.to_json()).unwrap();
        assert_eq!(
            out["devices"][0]["primaryAgent"]["readCommunity"],
            "changed"
        );
        // No primary: null stays null, the first agent polls.
        let inv = Inventory::from_json(doc_with_primary("null").as_bytes()).unwrap();
        assert_eq!(inv.devices[0].primary_agent, None);
        assert_eq!(inv.devices[0].poll_agent().unwrap().id, "a1");
        let out: serde_json::Value = serde_json::from_slice(&inv.to_json()).unwrap();
        assert!(out["devices"][0]["primaryAgent"].is_null(), "{out}");
    }

    #[test]
    fn primary_agent_rules_for_old_and_divergent_documents() {
        // Old files: a primary whose id is not in agents joins them, and polls.
        let other = AGENT_A1
            .replace("\"a1\"", "\"a2\"")
            .replace("10.0.0.1", "10.0.0.2");
        let inv = Inventory::from_json(doc_with_primary(&other).as_bytes()).unwrap();
        let d = &inv.devices[0];
        assert_eq!(d.agents.len(), 2);
        assert_eq!(d.poll_agent().unwrap().endpoint.address, "10.0.0.2");
        // A copy that differs from the agent with its id: an import is
        // refused naming the field; a stored inventory keeps the copy, which
        // is what polls used.
        let divergent = doc_with_primary(&AGENT_A1.replace("public", "secret"));
        let e = Inventory::from_import_json(divergent.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].primaryAgent", "{e}");
        assert!(e.message.contains("agents[0]"), "{e}");
        let inv = Inventory::from_json(divergent.as_bytes()).unwrap();
        let d = &inv.devices[0];
        assert_eq!(d.agents.len(), 1);
        assert_eq!(
            d.agents[0].read_community.as_ref().unwrap().expose(),
            "secret"
        );
        // A reference by id; a dangling one and a partial agent are refused.
        let inv =
            Inventory::from_import_json(doc_with_primary(r#"{"id": "a1"}"#).as_bytes()).unwrap();
        assert_eq!(
            inv.0.devices[0].primary_agent,
            Some(PrimaryAgent::Id("a1".into()))
        );
        let e = Inventory::from_json(doc_with_primary(r#"{"id": "zz"}"#).as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].primaryAgent", "{e}");
        let partial = doc_with_primary(r#"{"id": "a1", "readCommunity": "x"}"#);
        let e = Inventory::from_json(partial.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].primaryAgent", "{e}");
        // Two agents with one id would make the reference ambiguous.
        let twice = doc_with_primary("null").replace(
            "\"readCommunity\": \"public\"}]",
            &format!("\"readCommunity\": \"public\"}}, {AGENT_A1}]"),
        );
        let e = Inventory::from_import_json(twice.as_bytes()).unwrap_err();
        assert_eq!(e.field, "devices[0].agents[1].id", "{e}");
        // A copy without id is the agent it equals.
        let no_id = doc_with_primary(&AGENT_A1.replace("\"id\": \"a1\", ", ""));
        let inv = Inventory::from_import_json(no_id.as_bytes()).unwrap().0;
        assert_eq!(inv.devices[0].agents.len(), 1);
        assert_eq!(
            inv.devices[0].primary_agent,
            Some(PrimaryAgent::Id("a1".into()))
        );
    }

    #[test]
    fn devices_are_named_by_id_or_sys_name() {
        let doc = r#"{"devices": [
            {"id": "d1", "sysName": "sw", "agents": [{"type": "snmp-community", "endpoint": {"address": "10.0.0.1"}, "version": 1, "readCommunity": "p"}]},
            {"id": "d2", "sysName": "sw", "agents": [{"type": "snmp-community", "endpoint": {"address": "10.0.0.2"}, "version": 1, "readCommunity": "p"}]},
            {"id": "sw", "sysName": "other", "agents": [{"type": "snmp-community", "endpoint": {"address": "10.0.0.3"}, "version": 1, "readCommunity": "p"}]}
        ]}"#;
        let inv = Inventory::from_json(doc.as_bytes()).unwrap();
        assert_eq!(inv.devices_named("d2"), [1]);
        assert_eq!(inv.devices_named("other"), [2]);
        // An id wins over sysNames.
        assert_eq!(inv.devices_named("sw"), [2]);
        let mut inv = inv;
        inv.devices.pop();
        assert_eq!(inv.devices_named("sw"), [0, 1]);
        assert!(inv.devices_named("nope").is_empty());
        assert!(inv.devices_named("").is_empty());
    }

    #[test]
    fn address_prefixes() {
        assert_eq!(normalize_address("host/10.1.1.1"), "10.1.1.1");
        assert_eq!(normalize_address("/10.1.1.1"), "10.1.1.1");
        assert_eq!(normalize_address("10.1.1.1"), "10.1.1.1");
        assert_eq!(normalize_address("router.example/"), "router.example");
    }
}
