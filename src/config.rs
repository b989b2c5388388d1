//! Configuration from the environment, parsed and validated once, before any
//! port is bound. Variable names and defaults are the Java PromSNMP's
//! (DESIGN.md §1); new ones carry the `PROMSNMP_` prefix. Secrets are kept in
//! [`Secret`]s so `Debug` never shows them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::inventory::Secret;

pub const DEFAULT_INVENTORY_FILE: &str = "/app/data/promsnmp-inventory.json";
pub const DEV_INVENTORY_FILE: &str = "./data/promsnmp-inventory.json";

/// Every environment variable promsnmp reads, with what it sets: `--help`
/// prints it with the defaults in force, the start-up log the values.
pub const VARIABLES: &[(&str, &str)] = &[
    ("PROM_INV_FILE", "inventory file, AES-GCM encrypted (/app/data/promsnmp-inventory.json, ./data/... without /app)"),
    ("PROM_ENCRYPT_KEY", "AES key of the inventory file, 16, 24 or 32 bytes (default: a well-known key, warned about)"),
    ("PROM_TENANT_ID", "tenant of this site (labels on /targets; the fleet's Redis namespace)"),
    ("PROM_SITE_ID", "site identity (labels on /targets; the fleet's Redis namespace)"),
    ("PROM_SITE_LABEL", "site label"),
    ("PROM_SITE_DESCR", "site description"),
    ("PROM_SITE_ADDR", "site address"),
    ("PROM_SITE_LAT", "site latitude, decimal degrees"),
    ("PROM_SITE_LONG", "site longitude, decimal degrees"),
    ("DISCOVERY_CRON", "when saved seeds are discovered: six cron fields, seconds first; - disables"),
    ("DISCOVERY_TZ", "IANA time zone of DISCOVERY_CRON"),
    ("DISCOVERY_ON_START", "discover the saved seeds at start"),
    ("COLLECTION_INTERVAL", "milliseconds between background polls of every device"),
    ("CACHE_EXP_MILLIS", "milliseconds a poll may be served from the cache"),
    ("CACHE_ENTRY_CNT", "cached polls at most"),
    ("SERVER_PORT", "HTTP port"),
    ("PROMSNMP_BIND_ADDRESS", "HTTP address"),
    ("PROMSNMP_POLL_CONCURRENCY", "devices polled at once"),
    ("PROMSNMP_DISCOVERY_CONCURRENCY", "addresses probed at once per discovery"),
    ("PROMSNMP_DISCOVERY_MAX_ADDRESSES", "largest discovery request, in addresses"),
    ("PROMSNMP_SNMP_MAX_REPETITIONS", "GETBULK max-repetitions"),
    ("PROMSNMP_SNMP_SESSIONS_PER_POLL", "sessions walking one device's columns at once"),
    ("PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL", "a poll collecting more varbinds fails"),
    ("PROMSNMP_MODULES_FILE", "snmp_exporter module files, comma-separated paths or globs (unset: the built-in modules)"),
    ("PROMSNMP_MODULE_RULES", "YAML file of module rules for discovery (unset: the built-in rules)"),
    ("PROMSNMP_SCRAPE_UNLISTED_TARGETS", "/snmp may poll targets outside the inventory"),
    ("PROMSNMP_MAX_BODY_BYTES", "largest request body of a write"),
    ("PROMSNMP_ALLOWED_HOSTS", "comma-separated host names requests may use (unset: any)"),
    ("PROMSNMP_WEB_CONFIG_FILE", "web configuration: TLS, users, roles (unset: plain HTTP, no authentication)"),
    ("PROMSNMP_MAX_CONNECTIONS", "open HTTP connections at most"),
    ("PROMSNMP_HEADER_TIMEOUT_SECONDS", "a new connection's request head must arrive within this"),
    ("PROMSNMP_IDLE_TIMEOUT_SECONDS", "an idle connection is closed after this"),
    ("PROMSNMP_REQUEST_TIMEOUT_SECONDS", "a request not answered within this gets 503"),
    ("REDIS_URL", "fleet mode (unset: standalone): redis://[user:password@]host:port[/db], rediss://... (TLS), or redis+sentinel://[user:password@]host:port[,host:port...]/primary-name[/db] (rediss+sentinel:// with TLS)"),
    ("PROMSNMP_REDIS_CA_FILE", "fleet: PEM file of the CA that signed Redis' certificate (unset: the system's CAs)"),
    ("PROMSNMP_REDIS_CERT_FILE", "fleet: PEM client certificate for Redis (with PROMSNMP_REDIS_KEY_FILE)"),
    ("PROMSNMP_REDIS_KEY_FILE", "fleet: PEM private key of PROMSNMP_REDIS_CERT_FILE"),
    ("PROMSNMP_LEASE_TTL_MS", "fleet: leader lease, milliseconds"),
    ("PROMSNMP_LEASE_RENEW_MS", "fleet: lease renewal and heartbeat period, milliseconds"),
    ("PROMSNMP_REDIS_TIMEOUT_MS", "fleet: bound on connecting to Redis and on every command, milliseconds"),
    ("PROMSNMP_REPLICA_ID", "fleet: this replica's name (default: host name + random suffix)"),
    ("PROMSNMP_LOG_FORMAT", "log format: text or json (one object per line)"),
    ("RUST_LOG", "log filter, e.g. info or promsnmp=debug,info (an invalid one is refused)"),
];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; colours only on a terminal.
    Text,
    /// One JSON object per line: timestamp, level, target, message, fields.
    Json,
}

/// A variable that was set to something unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}{shown}: {problem} (expected {expected})", shown = .value.as_ref().map(|v| format!("=`{v}`")).unwrap_or_default())]
pub struct ConfigError {
    pub variable: &'static str,
    /// The value, unless it is a secret.
    pub value: Option<String>,
    pub problem: String,
    pub expected: &'static str,
}

/// When scheduled discovery runs.
#[derive(Debug, Clone)]
pub struct DiscoverySchedule {
    pub schedule: cron::Schedule,
    pub expression: String,
    pub timezone: chrono_tz::Tz,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub inventory_file: PathBuf,
    pub encrypt_key: Secret,
    pub tenant_id: String,
    pub site_id: String,
    pub site_label: Option<String>,
    pub site_description: Option<String>,
    pub site_address: Option<String>,
    pub site_latitude: Option<f64>,
    pub site_longitude: Option<f64>,
    /// `None` when `DISCOVERY_CRON` is `-`.
    pub discovery_schedule: Option<DiscoverySchedule>,
    pub discovery_timezone: chrono_tz::Tz,
    pub discovery_on_start: bool,
    pub collection_interval: Duration,
    pub cache_expiry: Duration,
    pub cache_entry_count: usize,
    pub server_port: u16,
    pub bind_address: IpAddr,
    pub redis_url: Option<Secret>,
    /// Devices polled at once by the background collector.
    pub poll_concurrency: usize,
    /// Addresses probed at once by one discovery.
    pub discovery_concurrency: usize,
    /// Largest number of addresses one discovery request may expand to.
    pub discovery_max_addresses: usize,
    /// max-repetitions of GETBULK requests.
    pub snmp_max_repetitions: u32,
    /// Sessions walking one large device's columns at once.
    pub snmp_sessions_per_poll: usize,
    /// A poll collecting more varbinds than this fails (a runaway table).
    pub snmp_max_varbinds_per_poll: usize,
    /// Module files and rules (`PROMSNMP_MODULES_FILE`, `PROMSNMP_MODULE_RULES`).
    pub modules: crate::modules::ModuleSources,
    /// `/snmp` may poll a target outside the inventory with a module file's auth.
    pub scrape_unlisted_targets: bool,
    /// Largest request body of a write (the inventory import); reads carry none.
    pub max_body_bytes: usize,
    /// `PROMSNMP_ALLOWED_HOSTS`: the only `Host` names requests may use
    /// (empty: any); also origins allowed to change state.
    pub allowed_hosts: crate::hosts::AllowedHosts,
    /// Connections and timeouts of the HTTP server.
    pub http: HttpLimits,
    /// `PROMSNMP_WEB_CONFIG_FILE`: TLS and users, in the exporter-toolkit's
    /// web configuration format (read and checked by `web` before binding).
    pub web_config_file: Option<PathBuf>,
    /// Fleet mode (`REDIS_URL` set): lease, membership and Redis timeouts.
    pub fleet: FleetConfig,
    /// `PROMSNMP_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RUST_LOG`, checked to parse (default `info`).
    pub log_filter: String,
}

/// Bounds of the HTTP server: what an idle or slow client may hold.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections at most (lowered at start to what the descriptor
    /// limit leaves after a reserve for SNMP). When full, a new connection
    /// closes the longest-idle one; without an idle one it waits.
    pub max_connections: usize,
    /// A new connection must deliver its request head within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// A request (body read and handling) is answered 503 after this.
    pub request_timeout: Duration,
}

/// Timing of the fleet. Every replica uses the same values (same environment).
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Identity in the fleet; unique per process (host name + random suffix)
    /// unless `PROMSNMP_REPLICA_ID` says otherwise.
    pub replica_id: String,
    /// How long a leader lease lasts without renewal; also how long a silent
    /// replica stays a member.
    pub lease_ttl: Duration,
    /// How often the leader renews and every replica heartbeats.
    pub renew_period: Duration,
    /// Bound on connecting to Redis and on every command.
    pub redis_timeout: Duration,
    /// Certificates for `rediss://`.
    pub redis_tls: RedisTlsFiles,
}

/// PEM files for TLS to Redis (`PROMSNMP_REDIS_CA_FILE`, `…_CERT_FILE`,
/// `…_KEY_FILE`); read and checked by `fleet::connection` before binding.
#[derive(Debug, Clone, Default)]
pub struct RedisTlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl RedisTlsFiles {
    /// A client certificate needs its key, and files need a TLS URL.
    fn check(&self, address: Option<&RedisAddress>) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(ConfigError {
                    variable: "PROMSNMP_REDIS_KEY_FILE",
                    value: None,
                    problem: "unset while PROMSNMP_REDIS_CERT_FILE is set".into(),
                    expected: "the PEM private key of the client certificate",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    variable: "PROMSNMP_REDIS_CERT_FILE",
                    value: None,
                    problem: "unset while PROMSNMP_REDIS_KEY_FILE is set".into(),
                    expected: "the PEM client certificate of the key",
                })
            }
            _ => {}
        }
        let set = [
            ("PROMSNMP_REDIS_CA_FILE", &self.ca_file),
            ("PROMSNMP_REDIS_CERT_FILE", &self.cert_file),
        ]
        .into_iter()
        .find(|(_, file)| file.is_some());
        if let Some((variable, file)) = set {
            if !address.is_some_and(RedisAddress::uses_tls) {
                return Err(ConfigError {
                    variable,
                    value: file.as_ref().map(|f| f.display().to_string()),
                    problem: "set, but REDIS_URL does not ask for TLS".into(),
                    expected: "REDIS_URL starting with rediss:// or rediss+sentinel://",
                });
            }
        }
        Ok(())
    }
}

/// Where the fleet's Redis is, from `REDIS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    /// `redis://` or `rediss://`: one server, the URL as the client library reads it.
    Server { tls: bool },
    /// `redis+sentinel://` or `rediss+sentinel://`: the Sentinels to ask for
    /// the current primary of `primary`; credentials and `db` are the primary's.
    Sentinel {
        tls: bool,
        sentinels: Vec<(String, u16)>,
        primary: String,
        db: i64,
        username: Option<String>,
        password: Option<Secret>,
    },
}

impl RedisAddress {
    pub fn uses_tls(&self) -> bool {
        match self {
            RedisAddress::Server { tls } | RedisAddress::Sentinel { tls, .. } => *tls,
        }
    }
}

/// The Sentinels' port when a `redis+sentinel://` node names none.
pub const SENTINEL_DEFAULT_PORT: u16 = 26379;

/// Reads `REDIS_URL` (see [`RedisAddress`]); the problem, without the value
/// (it may hold a password), when it is not one.
pub fn parse_redis_address(url: &str) -> Result<RedisAddress, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL".into());
    };
    let tls = match scheme {
        "redis" | "redis+sentinel" => false,
        "rediss" | "rediss+sentinel" => true,
        other => return Err(format!("unknown scheme `{other}`")),
    };
    if !scheme.ends_with("+sentinel") {
        return match rest
            .split(['/', '?'])
            .next()
            .and_then(|a| a.rsplit('@').next())
        {
            Some(host) if !host.is_empty() => Ok(RedisAddress::Server { tls }),
            _ => Err("no host".into()),
        };
    }
    let (credentials, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (username, password) = match credentials {
        None => (None, None),
        Some(c) => {
            let (user, password) = c.split_once(':').unwrap_or((c, ""));
            let user = percent_decode(user).ok_or("the user name is not percent-encoded UTF-8")?;
            let password =
                percent_decode(password).ok_or("the password is not percent-encoded UTF-8")?;
            (
                Some(user).filter(|u| !u.is_empty()),
                Some(Secret(password)).filter(|p| !p.0.is_empty()),
            )
        }
    };
    if rest.contains(['?', '#']) {
        return Err("a Sentinel URL takes no query or fragment (…/primary-name[/db])".into());
    }
    let mut path = rest.split('/');
    let nodes = path.next().unwrap_or_default();
    let primary = path.next().unwrap_or_default();
    if primary.is_empty() {
        return Err("no primary name after the Sentinel addresses (…/mymaster)".into());
    }
    let db = match path.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| format!("database `{db}` is not a number"))?,
    };
    if path.next().is_some() {
        return Err("more path than /primary-name/db".into());
    }
    let sentinels = nodes
        .split(',')
        .map(|node| {
            let (host, port) = match node.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') => (
                    host,
                    port.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("Sentinel `{node}`: bad port"))?,
                ),
                _ => (node, SENTINEL_DEFAULT_PORT),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err("an empty Sentinel address".to_string());
            }
            Ok((host.to_string(), port))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(RedisAddress::Sentinel {
        tls,
        sentinels,
        primary: primary.to_string(),
        db,
        username,
        password,
    })
}

/// `%XX` escapes of a URL's user information.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let inventory_file = get("PROM_INV_FILE").map(PathBuf::from).unwrap_or_else(|| {
            // Outside a container /app usually does not exist; keep dev runs working.
            if std::path::Path::new("/app").is_dir() {
                PathBuf::from(DEFAULT_INVENTORY_FILE)
            } else {
                PathBuf::from(DEV_INVENTORY_FILE)
            }
        });

        let encrypt_key =
            lookup("PROM_ENCRYPT_KEY").unwrap_or_else(|| crate::crypto::WELL_KNOWN_KEY.to_string());
        if ![16, 24, 32].contains(&encrypt_key.len()) {
            return Err(ConfigError {
                variable: "PROM_ENCRYPT_KEY",
                value: None,
                problem: format!("the key is {} bytes long", encrypt_key.len()),
                expected: "an AES key of exactly 16, 24 or 32 bytes",
            });
        }

        let timezone_name = get("DISCOVERY_TZ").unwrap_or_else(|| "America/New_York".into());
        let discovery_timezone =
            chrono_tz::Tz::from_str(&timezone_name).map_err(|_| ConfigError {
                variable: "DISCOVERY_TZ",
                value: Some(timezone_name.clone()),
                problem: "unknown time zone".into(),
                expected: "an IANA zone name such as America/New_York or UTC",
            })?;

        let cron_expr = get("DISCOVERY_CRON").unwrap_or_else(|| "0 0 2 * * *".into());
        let discovery_schedule = if cron_expr == "-" {
            None
        } else {
            Some(DiscoverySchedule {
                schedule: parse_cron(&cron_expr)?,
                expression: cron_expr,
                timezone: discovery_timezone,
            })
        };

        let site_coordinate =
            |name: &'static str, range: f64| -> Result<Option<f64>, ConfigError> {
                get(name)
                    .map(|v| match v.parse::<f64>() {
                        Ok(x) if x.is_finite() && x.abs() <= range => Ok(x),
                        _ => Err(ConfigError {
                            variable: name,
                            value: Some(v.clone()),
                            problem: "not a coordinate".into(),
                            expected: "decimal degrees",
                        }),
                    })
                    .transpose()
            };

        let redis_url = get("REDIS_URL");
        let redis_address = redis_url
            .as_deref()
            .map(parse_redis_address)
            .transpose()
            .map_err(|problem| ConfigError {
                variable: "REDIS_URL",
                value: None,
                problem,
                expected: "redis://host:port[/db], rediss://host:port[/db] or redis+sentinel://host:port[,host:port...]/primary-name[/db]",
            })?;
        let redis_tls = RedisTlsFiles {
            ca_file: get("PROMSNMP_REDIS_CA_FILE").map(PathBuf::from),
            cert_file: get("PROMSNMP_REDIS_CERT_FILE").map(PathBuf::from),
            key_file: get("PROMSNMP_REDIS_KEY_FILE").map(PathBuf::from),
        };
        redis_tls.check(redis_address.as_ref())?;

        let lease_ttl_ms = parse_num(
            &get,
            "PROMSNMP_LEASE_TTL_MS",
            15_000,
            1_000,
            600_000,
            "milliseconds, 1000-600000",
        )?;
        let renew_ms = parse_num(
            &get,
            "PROMSNMP_LEASE_RENEW_MS",
            5_000,
            100,
            300_000,
            "milliseconds, 100-300000, at most a third of PROMSNMP_LEASE_TTL_MS",
        )?;
        if renew_ms * 3 > lease_ttl_ms {
            return Err(ConfigError {
                variable: "PROMSNMP_LEASE_RENEW_MS",
                value: Some(renew_ms.to_string()),
                problem: format!("more than a third of PROMSNMP_LEASE_TTL_MS ({lease_ttl_ms})"),
                expected: "a renew period of at most a third of the lease, so two renewals can fail before it expires",
            });
        }
        let redis_timeout_ms = parse_num(
            &get,
            "PROMSNMP_REDIS_TIMEOUT_MS",
            2_000,
            50,
            60_000,
            "milliseconds, 50-60000",
        )?;
        let replica_id = match get("PROMSNMP_REPLICA_ID") {
            Some(id) => {
                if id.len() > 128
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                {
                    return Err(ConfigError {
                        variable: "PROMSNMP_REPLICA_ID",
                        value: Some(id),
                        problem: "not a plain identifier".into(),
                        expected: "up to 128 letters, digits, `-`, `_`, `.` or `:`",
                    });
                }
                id
            }
            None => default_replica_id(),
        };

        let log_format = match get("PROMSNMP_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    variable: "PROMSNMP_LOG_FORMAT",
                    value: Some(other.to_string()),
                    problem: "unknown log format".into(),
                    expected: "text or json",
                })
            }
        };
        let log_filter = get("RUST_LOG").unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_filter) {
            return Err(ConfigError {
                variable: "RUST_LOG",
                value: Some(log_filter),
                problem: e.to_string(),
                expected: "a tracing filter such as info, warn or promsnmp=debug,info",
            });
        }

        Ok(Config {
            log_format,
            log_filter,
            fleet: FleetConfig {
                replica_id,
                lease_ttl: Duration::from_millis(lease_ttl_ms),
                renew_period: Duration::from_millis(renew_ms),
                redis_timeout: Duration::from_millis(redis_timeout_ms),
                redis_tls,
            },
            inventory_file,
            encrypt_key: Secret(encrypt_key),
            tenant_id: get("PROM_TENANT_ID").unwrap_or_else(|| "0123456789".into()),
            site_id: get("PROM_SITE_ID").unwrap_or_else(|| "0123456789".into()),
            site_label: get("PROM_SITE_LABEL"),
            site_description: get("PROM_SITE_DESCR"),
            site_address: get("PROM_SITE_ADDR"),
            site_latitude: site_coordinate("PROM_SITE_LAT", 90.0)?,
            site_longitude: site_coordinate("PROM_SITE_LONG", 180.0)?,
            discovery_schedule,
            discovery_timezone,
            discovery_on_start: parse_bool(&get, "DISCOVERY_ON_START", false)?,
            collection_interval: Duration::from_millis(parse_num(
                &get,
                "COLLECTION_INTERVAL",
                30_000,
                1_000,
                86_400_000,
                "milliseconds between polls, 1000-86400000",
            )?),
            cache_expiry: Duration::from_millis(parse_num(
                &get,
                "CACHE_EXP_MILLIS",
                300_000,
                1,
                86_400_000,
                "milliseconds, 1-86400000",
            )?),
            cache_entry_count: parse_num(
                &get,
                "CACHE_ENTRY_CNT",
                10_000,
                1,
                10_000_000,
                "a count, 1-10000000",
            )? as usize,
            server_port: parse_num(&get, "SERVER_PORT", 8080, 1, 65_535, "a TCP port, 1-65535")?
                as u16,
            bind_address: match get("PROMSNMP_BIND_ADDRESS") {
                None => IpAddr::from([0, 0, 0, 0]),
                Some(v) => v.parse().map_err(|_| ConfigError {
                    variable: "PROMSNMP_BIND_ADDRESS",
                    value: Some(v.clone()),
                    problem: "not an IP address".into(),
                    expected: "an IPv4 or IPv6 address such as 0.0.0.0 or 127.0.0.1",
                })?,
            },
            redis_url: redis_url.map(Secret),
            poll_concurrency: parse_num(
                &get,
                "PROMSNMP_POLL_CONCURRENCY",
                32,
                1,
                4096,
                "a count, 1-4096",
            )? as usize,
            discovery_concurrency: parse_num(
                &get,
                "PROMSNMP_DISCOVERY_CONCURRENCY",
                64,
                1,
                4096,
                "a count, 1-4096",
            )? as usize,
            discovery_max_addresses: parse_num(
                &get,
                "PROMSNMP_DISCOVERY_MAX_ADDRESSES",
                4096,
                1,
                1 << 20,
                "a count, 1-1048576",
            )? as usize,
            snmp_max_repetitions: parse_num(
                &get,
                "PROMSNMP_SNMP_MAX_REPETITIONS",
                50,
                1,
                1000,
                "a count, 1-1000",
            )? as u32,
            snmp_sessions_per_poll: parse_num(
                &get,
                "PROMSNMP_SNMP_SESSIONS_PER_POLL",
                4,
                1,
                16,
                "a count, 1-16",
            )? as usize,
            snmp_max_varbinds_per_poll: parse_num(
                &get,
                "PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL",
                250_000,
                100,
                10_000_000,
                "a count, 100-10000000",
            )? as usize,
            modules: crate::modules::ModuleSources {
                files: get("PROMSNMP_MODULES_FILE"),
                rules: get("PROMSNMP_MODULE_RULES").map(PathBuf::from),
            },
            scrape_unlisted_targets: parse_bool(&get, "PROMSNMP_SCRAPE_UNLISTED_TARGETS", false)?,
            max_body_bytes: parse_num(
                &get,
                "PROMSNMP_MAX_BODY_BYTES",
                32 * 1024 * 1024,
                1024,
                1024 * 1024 * 1024,
                "bytes, 1024-1073741824",
            )? as usize,
            http: HttpLimits {
                max_connections: parse_num(
                    &get,
                    "PROMSNMP_MAX_CONNECTIONS",
                    512,
                    8,
                    65536,
                    "a count, 8-65536",
                )? as usize,
                header_timeout: Duration::from_secs(parse_num(
                    &get,
                    "PROMSNMP_HEADER_TIMEOUT_SECONDS",
                    10,
                    1,
                    300,
                    "seconds, 1-300",
                )?),
                idle_timeout: Duration::from_secs(parse_num(
                    &get,
                    "PROMSNMP_IDLE_TIMEOUT_SECONDS",
                    90,
                    1,
                    3600,
                    "seconds, 1-3600",
                )?),
                request_timeout: Duration::from_secs(parse_num(
                    &get,
                    "PROMSNMP_REQUEST_TIMEOUT_SECONDS",
                    120,
                    1,
                    3600,
                    "seconds, 1-3600",
                )?),
            },
            web_config_file: get("PROMSNMP_WEB_CONFIG_FILE").map(PathBuf::from),
            allowed_hosts: match get("PROMSNMP_ALLOWED_HOSTS") {
                None => Default::default(),
                Some(list) => {
                    crate::hosts::AllowedHosts::parse(&list).map_err(|problem| ConfigError {
                        variable: "PROMSNMP_ALLOWED_HOSTS",
                        value: Some(list.clone()),
                        problem,
                        expected: "comma-separated host names or host:port",
                    })?
                }
            },
        })
    }

    /// How old a device's last poll `/metrics` (every device) still serves: a
    /// round must have replaced it by then, so devices do not flicker out of
    /// the exposition between rounds.
    pub fn metrics_max_age(&self) -> Duration {
        self.cache_expiry.max(2 * self.collection_interval)
    }

    /// `tenant:site`, the identity of this site (and later its Redis namespace).
    pub fn site_key(&self) -> String {
        format!("{}:{}", self.tenant_id, self.site_id)
    }
}

impl Config {
    /// The configuration in force, one entry per [`VARIABLES`] name, secrets
    /// redacted: the start-up log, `--help`'s defaults and the console show it.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(T::to_string).unwrap_or_default()
        }
        let ms = |d: Duration| d.as_millis().to_string();
        let secs = |d: Duration| d.as_secs().to_string();
        let key = if self.encrypt_key.expose() == crate::crypto::WELL_KNOWN_KEY {
            "well-known-default"
        } else {
            "redacted"
        };
        vec![
            ("PROM_INV_FILE", self.inventory_file.display().to_string()),
            ("PROM_ENCRYPT_KEY", key.to_string()),
            ("PROM_TENANT_ID", self.tenant_id.clone()),
            ("PROM_SITE_ID", self.site_id.clone()),
            ("PROM_SITE_LABEL", opt(&self.site_label)),
            ("PROM_SITE_DESCR", opt(&self.site_description)),
            ("PROM_SITE_ADDR", opt(&self.site_address)),
            ("PROM_SITE_LAT", opt(&self.site_latitude)),
            ("PROM_SITE_LONG", opt(&self.site_longitude)),
            (
                "DISCOVERY_CRON",
                self.discovery_schedule
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |s| s.expression.clone()),
            ),
            ("DISCOVERY_TZ", self.discovery_timezone.name().to_string()),
            ("DISCOVERY_ON_START", self.discovery_on_start.to_string()),
            ("COLLECTION_INTERVAL", ms(self.collection_interval)),
            ("CACHE_EXP_MILLIS", ms(self.cache_expiry)),
            ("CACHE_ENTRY_CNT", self.cache_entry_count.to_string()),
            ("SERVER_PORT", self.server_port.to_string()),
            ("PROMSNMP_BIND_ADDRESS", self.bind_address.to_string()),
            (
                "PROMSNMP_POLL_CONCURRENCY",
                self.poll_concurrency.to_string(),
            ),
            (
                "PROMSNMP_DISCOVERY_CONCURRENCY",
                self.discovery_concurrency.to_string(),
            ),
            (
                "PROMSNMP_DISCOVERY_MAX_ADDRESSES",
                self.discovery_max_addresses.to_string(),
            ),
            (
                "PROMSNMP_SNMP_MAX_REPETITIONS",
                self.snmp_max_repetitions.to_string(),
            ),
            (
                "PROMSNMP_SNMP_SESSIONS_PER_POLL",
                self.snmp_sessions_per_poll.to_string(),
            ),
            (
                "PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL",
                self.snmp_max_varbinds_per_poll.to_string(),
            ),
            ("PROMSNMP_MODULES_FILE", opt(&self.modules.files)),
            (
                "PROMSNMP_MODULE_RULES",
                opt(&self.modules.rules.as_ref().map(|p| p.display())),
            ),
            (
                "PROMSNMP_SCRAPE_UNLISTED_TARGETS",
                self.scrape_unlisted_targets.to_string(),
            ),
            ("PROMSNMP_MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            ("PROMSNMP_ALLOWED_HOSTS", self.allowed_hosts.to_string()),
            (
                "PROMSNMP_WEB_CONFIG_FILE",
                opt(&self.web_config_file.as_ref().map(|p| p.display())),
            ),
            (
                "PROMSNMP_MAX_CONNECTIONS",
                self.http.max_connections.to_string(),
            ),
            (
                "PROMSNMP_HEADER_TIMEOUT_SECONDS",
                secs(self.http.header_timeout),
            ),
            (
                "PROMSNMP_IDLE_TIMEOUT_SECONDS",
                secs(self.http.idle_timeout),
            ),
            (
                "PROMSNMP_REQUEST_TIMEOUT_SECONDS",
                secs(self.http.request_timeout),
            ),
            (
                "REDIS_URL",
                opt(&self.redis_url.as_ref().map(|u| redact_url(u.expose()))),
            ),
            (
                "PROMSNMP_REDIS_CA_FILE",
                opt(&self
                    .fleet
                    .redis_tls
                    .ca_file
                    .as_ref()
                    .map(|f| f.display().to_string())),
            ),
            (
                "PROMSNMP_REDIS_CERT_FILE",
                opt(&self
                    .fleet
                    .redis_tls
                    .cert_file
                    .as_ref()
                    .map(|f| f.display().to_string())),
            ),
            (
                "PROMSNMP_REDIS_KEY_FILE",
                opt(&self
                    .fleet
                    .redis_tls
                    .key_file
                    .as_ref()
                    .map(|f| f.display().to_string())),
            ),
            ("PROMSNMP_LEASE_TTL_MS", ms(self.fleet.lease_ttl)),
            ("PROMSNMP_LEASE_RENEW_MS", ms(self.fleet.renew_period)),
            ("PROMSNMP_REDIS_TIMEOUT_MS", ms(self.fleet.redis_timeout)),
            ("PROMSNMP_REPLICA_ID", self.fleet.replica_id.clone()),
            (
                "PROMSNMP_LOG_FORMAT",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .to_string(),
            ),
            ("RUST_LOG", self.log_filter.clone()),
        ]
    }
}

/// A URL with its user information (`user:password@`) replaced by `***@`.
/// Everything up to the last `@` counts: a password may hold `/`, `?` or `#`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `<host name>-<8 random hex digits>`: readable in logs, unique per process
/// even when containers share a host name.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "promsnmp".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

fn parse_cron(expr: &str) -> Result<cron::Schedule, ConfigError> {
    let fields = expr.split_whitespace().count();
    let err = |problem: String| ConfigError {
        variable: "DISCOVERY_CRON",
        value: Some(expr.to_string()),
        problem,
        expected: "six cron fields, seconds first (e.g. `0 0 2 * * *`), or `-` to disable",
    };
    if fields != 6 {
        return Err(err(format!("{fields} fields")));
    }
    cron::Schedule::from_str(expr).map_err(|e| err(e.to_string()))
}

fn parse_num(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    let Some(v) = get(name) else {
        return Ok(default);
    };
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(ConfigError {
            variable: name,
            value: Some(v),
            problem: "out of range".into(),
            expected,
        }),
        Err(_) => Err(ConfigError {
            variable: name,
            value: Some(v),
            problem: "not a whole number".into(),
            expected,
        }),
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    let Some(v) = get(name) else {
        return Ok(default);
    };
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            variable: name,
            value: Some(v),
            problem: "not a boolean".into(),
            expected: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.server_port, 8080);
        assert_eq!(c.collection_interval, Duration::from_millis(30_000));
        assert_eq!(c.cache_entry_count, 10_000);
        assert_eq!(c.discovery_timezone, chrono_tz::America::New_York);
        assert!(c.discovery_schedule.is_some());
        assert!(!c.discovery_on_start);
        assert_eq!(c.site_key(), "0123456789:0123456789");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("SERVER_PORT", "70000"),
            ("SERVER_PORT", "http"),
            ("COLLECTION_INTERVAL", "-5"),
            ("CACHE_ENTRY_CNT", "0"),
            ("DISCOVERY_CRON", "0 2 * * *"),
            ("DISCOVERY_CRON", "0 0 25 * * *"),
            ("DISCOVERY_TZ", "Mars/Olympus"),
            ("DISCOVERY_ON_START", "maybe"),
            ("PROM_ENCRYPT_KEY", "tooshort"),
            ("REDIS_URL", "localhost:6379"),
            ("PROMSNMP_LEASE_TTL_MS", "500"),
            ("PROMSNMP_LEASE_RENEW_MS", "6000"), // more than a third of the 15 s lease
            ("PROMSNMP_REDIS_TIMEOUT_MS", "0"),
            ("PROMSNMP_REPLICA_ID", "two words"),
            ("PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL", "10"),
            ("PROMSNMP_SCRAPE_UNLISTED_TARGETS", "sometimes"),
            ("PROMSNMP_ALLOWED_HOSTS", "http://promsnmp.example/"),
            ("PROMSNMP_MAX_BODY_BYTES", "10"),
            ("PROMSNMP_MAX_CONNECTIONS", "2"),
            ("PROMSNMP_HEADER_TIMEOUT_SECONDS", "0"),
            ("PROMSNMP_IDLE_TIMEOUT_SECONDS", "ten"),
            ("PROMSNMP_REQUEST_TIMEOUT_SECONDS", "99999"),
        ] {
            let e = with(&[(var, value)]).unwrap_err();
            assert_eq!(e.variable, var);
            let msg = e.to_string();
            assert!(msg.contains(var) && msg.contains("expected"), "{msg}");
        }
    }

    #[test]
    fn redis_urls_servers_and_sentinels() {
        assert_eq!(
            parse_redis_address("rediss://:pw@redis:6380/2"),
            Ok(RedisAddress::Server { tls: true })
        );
        assert_eq!(
            parse_redis_address("redis+sentinel://promsnmp:p%40ss@s1:26380,s2,[::1]:26381/fleet/3"),
            Ok(RedisAddress::Sentinel {
                tls: false,
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), SENTINEL_DEFAULT_PORT),
                    ("::1".into(), 26381)
                ],
                primary: "fleet".into(),
                db: 3,
                username: Some("promsnmp".into()),
                password: Some(Secret("p@ss".into())),
            })
        );
        for bad in [
            "localhost:6379",
            "http://redis:6379",
            "redis://",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:port/fleet",
            "redis+sentinel://s1/fleet/x",
            "redis+sentinel://,/fleet",
            "redis+sentinel://s1/fleet?db=1",
        ] {
            let e = with(&[("REDIS_URL", bad)]).unwrap_err();
            assert_eq!(e.variable, "REDIS_URL", "{bad}");
            assert!(e.to_string().contains("redis+sentinel://"), "{e}");
        }
        // A password in a bad URL is never echoed.
        let e = with(&[("REDIS_URL", "redis+sentinel://u:secretpw@s1")]).unwrap_err();
        assert!(!e.to_string().contains("secretpw"), "{e}");
    }

    #[test]
    fn redis_tls_files_need_tls_and_come_in_pairs() {
        let e = with(&[
            ("REDIS_URL", "redis://r:6379"),
            ("PROMSNMP_REDIS_CA_FILE", "/ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "PROMSNMP_REDIS_CA_FILE");
        assert!(e.to_string().contains("rediss://"), "{e}");
        let e = with(&[
            ("REDIS_URL", "rediss://r:6379"),
            ("PROMSNMP_REDIS_CERT_FILE", "/c.pem"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "PROMSNMP_REDIS_KEY_FILE");
        let ok = with(&[
            ("REDIS_URL", "rediss+sentinel://s1/fleet"),
            ("PROMSNMP_REDIS_CA_FILE", "/ca.pem"),
            ("PROMSNMP_REDIS_CERT_FILE", "/c.pem"),
            ("PROMSNMP_REDIS_KEY_FILE", "/k.pem"),
        ])
        .unwrap();
        assert_eq!(
            ok.fleet.redis_tls.key_file.as_deref(),
            Some(std::path::Path::new("/k.pem"))
        );
    }

    #[test]
    fn fleet_defaults_and_unique_replica_ids() {
        let a = with(&[]).unwrap();
        let b = with(&[]).unwrap();
        assert_eq!(a.fleet.lease_ttl, Duration::from_secs(15));
        assert_eq!(a.fleet.renew_period, Duration::from_secs(5));
        assert_ne!(a.fleet.replica_id, b.fleet.replica_id, "unique per process");
        let named = with(&[("PROMSNMP_REPLICA_ID", "edge-1")]).unwrap();
        assert_eq!(named.fleet.replica_id, "edge-1");
    }

    #[test]
    fn secrets_stay_hidden() {
        let e = with(&[("PROM_ENCRYPT_KEY", "my-secret")]).unwrap_err();
        assert!(!e.to_string().contains("my-secret"));
        let c = with(&[
            ("PROM_ENCRYPT_KEY", "supersecretkey16"),
            ("REDIS_URL", "redis://:pw@h:6379"),
        ])
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("supersecretkey16") && !dbg.contains(":pw@"),
            "{dbg}"
        );
    }

    #[test]
    fn cron_runs_in_its_time_zone() {
        use chrono::TimeZone;
        let c = with(&[]).unwrap();
        let s = c.discovery_schedule.unwrap();
        // 02:00 in New York is 07:00 UTC in winter (EST) and 06:00 UTC in summer (EDT).
        let winter = s
            .schedule
            .after(&s.timezone.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap())
            .next()
            .unwrap();
        assert_eq!(
            winter.with_timezone(&chrono::Utc).to_rfc3339(),
            "2026-01-10T07:00:00+00:00"
        );
        let summer = s
            .schedule
            .after(&s.timezone.with_ymd_and_hms(2026, 7, 10, 0, 0, 0).unwrap())
            .next()
            .unwrap();
        assert_eq!(
            summer.with_timezone(&chrono::Utc).to_rfc3339(),
            "2026-07-10T06:00:00+00:00"
        );
    }

    #[test]
    fn cron_can_be_disabled() {
        assert!(with(&[("DISCOVERY_CRON", "-")])
            .unwrap()
            .discovery_schedule
            .is_none());
    }
    #[test]
    fn every_variable_read_is_documented_and_shown() {
        use std::cell::RefCell;
        let asked = RefCell::new(std::collections::BTreeSet::new());
        let config = Config::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_string());
            None
        })
        .unwrap();
        let documented: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|(name, _)| name.to_string()).collect();
        let shown: Vec<String> = config
            .settings()
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(asked.into_inner(), documented, "VARIABLES and from_lookup");
        assert_eq!(
            shown,
            VARIABLES
                .iter()
                .map(|(name, _)| name.to_string())
                .collect::<Vec<_>>(),
            "settings() in the order of VARIABLES"
        );
    }

    #[test]
    fn settings_redact_secrets() {
        let c = with(&[
            ("PROM_ENCRYPT_KEY", "supersecretkey16"),
            ("REDIS_URL", "redis://user:pw@redis.example:6379/0"),
        ])
        .unwrap();
        let all = format!("{:?}", c.settings());
        assert!(
            !all.contains("supersecretkey16") && !all.contains("pw"),
            "{all}"
        );
        assert!(all.contains("redis://***@redis.example:6379/0"), "{all}");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("redis://:p@ss@h/1"), "redis://***@h/1");
        assert_eq!(
            redact_url("redis://:ab/cd?e#f@redis:6379/0"),
            "redis://***@redis:6379/0"
        );
    }

    #[test]
    fn log_settings_are_checked() {
        assert_eq!(with(&[]).unwrap().log_format, LogFormat::Text);
        let json = with(&[
            ("PROMSNMP_LOG_FORMAT", "json"),
            ("RUST_LOG", "promsnmp=debug,warn"),
        ])
        .unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        assert_eq!(json.log_filter, "promsnmp=debug,warn");
        for (var, value) in [
            ("PROMSNMP_LOG_FORMAT", "xml"),
            ("RUST_LOG", "promsnmp=loud"),
            ("RUST_LOG", "[{"),
        ] {
            assert_eq!(with(&[(var, value)]).unwrap_err().variable, var, "{value}");
        }
    }
}
