//! SNMP sessions over `snmp2` (async, tokio): v1, v2c and v3 (USM, every auth
//! and privacy protocol snmp2 supports), with a timeout on every request and
//! per-agent retries, GET of scalars, and column walks: many columns per
//! GETBULK request on v2c/v3, GETNEXT on v1. A large GETBULK an agent (or
//! the path to it) leaves unanswered is asked again smaller, and the size
//! it answers is remembered per agent.
//!
//! Values come out as owned [`SnmpValue`]s; what they mean (IF-MIB, system
//! group) is the collector's business.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use snmp2::v3::{Auth, AuthProtocol, Cipher, KeyExtension, Security};
use snmp2::{AsyncSession, Oid, Value};

use crate::inventory::{Agent, AgentType, SnmpVersion};

/// Largest number of varbinds asked for in one GETBULK (columns × repetitions):
/// keeps responses well inside a UDP datagram on real networks.
pub const MAX_VARBINDS_PER_REQUEST: u32 = 600;
/// A walk never sends more requests than this (a broken agent cannot keep us busy).
pub const MAX_REQUESTS_PER_WALK: usize = 10_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SnmpError {
    #[error("no answer from {target} within {timeout_ms} ms ({attempts} attempts)")]
    Timeout {
        target: String,
        timeout_ms: u64,
        attempts: u32,
    },
    #[error("cannot resolve {target}: {reason}")]
    Resolve { target: String, reason: String },
    #[error("network error talking to {target}: {reason}")]
    Io { target: String, reason: String },
    #[error("SNMPv3 authentication with {target} failed: {reason}")]
    Auth { target: String, reason: String },
    #[error("{target} answered with error-status {status} at index {index}")]
    ErrorStatus {
        target: String,
        status: u32,
        index: u32,
    },
    #[error("bad response from {target}: {reason}")]
    Protocol { target: String, reason: String },
    #[error("polling {target} stopped after {limit} varbinds (PROMSNMP_SNMP_MAX_VARBINDS_PER_POLL): a table is larger than expected or the agent loops")]
    TooManyVarbinds { target: String, limit: usize },
    #[error("invalid agent settings: {0}")]
    Config(String),
}

impl SnmpError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SnmpError::Timeout { .. } => "timeout",
            SnmpError::Resolve { .. } => "resolve",
            SnmpError::Io { .. } => "io",
            SnmpError::Auth { .. } => "auth",
            SnmpError::ErrorStatus { .. } => "error_status",
            SnmpError::Protocol { .. } => "protocol",
            SnmpError::TooManyVarbinds { .. } => "too_many_varbinds",
            SnmpError::Config(_) => "config",
        }
    }
}

/// An owned SNMP value.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpValue {
    Integer(i64),
    OctetString(Vec<u8>),
    ObjectId(Vec<u64>),
    IpAddress([u8; 4]),
    Counter32(u32),
    Unsigned32(u32),
    TimeTicks(u32),
    Counter64(u64),
    Opaque(Vec<u8>),
    Null,
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
    Other,
}

impl SnmpValue {
    /// What snmp2 decoded from the agent's datagram, as promsnmp keeps it.
    pub fn from_value(v: &Value<'_>) -> SnmpValue {
        match v {
            Value::Integer(n) => SnmpValue::Integer(*n),
            Value::OctetString(s) => SnmpValue::OctetString(s.to_vec()),
            Value::ObjectIdentifier(o) => SnmpValue::ObjectId(oid_to_vec(o)),
            Value::IpAddress(a) => SnmpValue::IpAddress(*a),
            Value::Counter32(n) => SnmpValue::Counter32(*n),
            Value::Unsigned32(n) => SnmpValue::Unsigned32(*n),
            Value::Timeticks(n) => SnmpValue::TimeTicks(*n),
            Value::Counter64(n) => SnmpValue::Counter64(*n),
            Value::Opaque(b) => SnmpValue::Opaque(b.to_vec()),
            Value::Null => SnmpValue::Null,
            Value::NoSuchObject => SnmpValue::NoSuchObject,
            Value::NoSuchInstance => SnmpValue::NoSuchInstance,
            Value::EndOfMibView => SnmpValue::EndOfMibView,
            _ => SnmpValue::Other,
        }
    }

    /// The value as an unsigned number, for counters, gauges and non-negative integers.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            SnmpValue::Integer(n) if n >= 0 => Some(n as u64),
            SnmpValue::Counter32(n) | SnmpValue::Unsigned32(n) | SnmpValue::TimeTicks(n) => {
                Some(n as u64)
            }
            SnmpValue::Counter64(n) => Some(n),
            _ => None,
        }
    }

    /// The value as text (octet strings lossily as UTF-8, trailing NULs dropped).
    pub fn as_text(&self) -> Option<String> {
        match self {
            SnmpValue::OctetString(b) => {
                let end = b.iter().rposition(|c| *c != 0).map_or(0, |p| p + 1);
                Some(String::from_utf8_lossy(&b[..end]).into_owned())
            }
            SnmpValue::Integer(n) => Some(n.to_string()),
            _ => self.as_u64().map(|n| n.to_string()),
        }
    }

    /// No value at this OID (v2 exceptions).
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance | SnmpValue::EndOfMibView
        )
    }
}

/// An OID snmp2 decoded, as numbers.
pub fn oid_to_vec(o: &Oid<'_>) -> Vec<u64> {
    let v: Vec<u64> = o.iter().map(|it| it.collect()).unwrap_or_default();
    // The decoder reads the single octet 0x00 as `0`; it is zeroDotZero, 0.0.
    if v == [0] {
        return vec![0, 0];
    }
    v
}

fn vec_to_oid(v: &[u64]) -> Result<Oid<'static>, SnmpError> {
    Oid::from(v).map_err(|_| SnmpError::Config(format!("invalid OID {v:?}")))
}

/// Parses a dotted OID (`1.3.6.1...`, leading dot allowed).
pub fn parse_oid(s: &str) -> Vec<u64> {
    s.trim_start_matches('.')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// v3 credentials, already checked.
#[derive(Clone)]
pub struct UsmCredentials {
    pub user: String,
    pub auth: Option<(AuthProtocol, Vec<u8>)>,
    pub privacy: Option<(Cipher, Vec<u8>)>,
    /// How a short key is extended for AES-192/256 (`None`: as net-snmp does).
    pub key_extension: Option<KeyExtension>,
    pub engine_id: Option<Vec<u8>>,
    pub context_name: String,
}

impl std::fmt::Debug for UsmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsmCredentials")
            .field("user", &self.user)
            .field("auth", &self.auth.as_ref().map(|(p, _)| p))
            .field("privacy", &self.privacy.as_ref().map(|(c, _)| c))
            .finish()
    }
}

/// Everything needed to talk to one agent.
#[derive(Clone)]
pub struct AgentParams {
    /// `host:port` as given; resolved when a session opens.
    pub target: String,
    pub version: SnmpVersion,
    pub community: Vec<u8>,
    pub usm: Option<UsmCredentials>,
    pub timeout: Duration,
    pub retries: u32,
    pub max_repetitions: u32,
}

impl std::fmt::Debug for AgentParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentParams")
            .field("target", &self.target)
            .field("version", &self.version)
            .field("community", &"***")
            .field("usm", &self.usm)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

pub fn auth_protocol(name: &str) -> Option<AuthProtocol> {
    Some(match crate::inventory::canonical_auth_protocol(name)? {
        "MD5" => AuthProtocol::Md5,
        "SHA" => AuthProtocol::Sha1,
        "SHA224" => AuthProtocol::Sha224,
        "SHA256" => AuthProtocol::Sha256,
        "SHA384" => AuthProtocol::Sha384,
        _ => AuthProtocol::Sha512,
    })
}

/// The cipher of a privacy protocol name, and the key extension it implies
/// (`AES192C`/`AES256C`: the Reeder extension Cisco devices use).
pub fn priv_protocol(name: &str) -> Option<(Cipher, Option<KeyExtension>)> {
    Some(match crate::inventory::canonical_priv_protocol(name)? {
        "DES" => (Cipher::Des, None),
        "AES128" => (Cipher::Aes128, None),
        "AES192" => (Cipher::Aes192, None),
        "AES192C" => (Cipher::Aes192, Some(KeyExtension::Reeder)),
        "AES256C" => (Cipher::Aes256, Some(KeyExtension::Reeder)),
        _ => (Cipher::Aes256, None),
    })
}

fn secret_bytes(secret: &Option<crate::inventory::Secret>) -> Vec<u8> {
    secret
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec())
        .unwrap_or_default()
}

impl AgentParams {
    /// Session settings for a stored agent.
    pub fn from_agent(agent: &Agent, max_repetitions: u32) -> Result<AgentParams, SnmpError> {
        let usm = match agent.agent_type {
            AgentType::Community => None,
            AgentType::User => {
                let level = agent.security_level.unwrap_or(1);
                let auth = if level >= 2 {
                    let proto = agent
                        .auth_protocol
                        .as_deref()
                        .and_then(auth_protocol)
                        .ok_or_else(|| SnmpError::Config("authProtocol missing".into()))?;
                    Some((proto, secret_bytes(&agent.auth_passphrase)))
                } else {
                    None
                };
                let (privacy, key_extension) = if level >= 3 {
                    let (c, extension) = agent
                        .priv_protocol
                        .as_deref()
                        .and_then(priv_protocol)
                        .ok_or_else(|| SnmpError::Config("privProtocol missing".into()))?;
                    (Some((c, secret_bytes(&agent.priv_passphrase))), extension)
                } else {
                    (None, None)
                };
                Some(UsmCredentials {
                    user: agent.security_name.clone().unwrap_or_default(),
                    auth,
                    privacy,
                    key_extension,
                    engine_id: agent.engine_id_bytes(),
                    context_name: agent.context_name.clone().unwrap_or_default(),
                })
            }
        };
        Ok(AgentParams {
            target: agent.endpoint.target(),
            version: agent.version,
            community: secret_bytes(&agent.read_community),
            usm,
            timeout: Duration::from_millis(agent.timeout_ms.max(1)),
            retries: agent.retries,
            max_repetitions,
        })
    }
}

fn security(usm: &UsmCredentials, with_engine_id: bool) -> Result<Security, SnmpError> {
    let auth_pass = usm.auth.as_ref().map(|(_, p)| p.as_slice()).unwrap_or(b"");
    let mut sec = Security::new(usm.user.as_bytes(), auth_pass);
    if let Some((proto, _)) = &usm.auth {
        sec = sec.with_auth_protocol(*proto);
        sec = match &usm.privacy {
            Some((cipher, pass)) => {
                let s = sec.with_auth(Auth::AuthPriv {
                    cipher: *cipher,
                    privacy_password: pass.clone(),
                });
                // net-snmp derives long AES keys the Blumenthal way; Cisco's
                // AES192C/AES256C the Reeder way.
                if cipher.priv_key_needs_extension(proto) {
                    s.with_key_extension_method(
                        usm.key_extension.unwrap_or(KeyExtension::Blumenthal),
                    )
                } else {
                    s
                }
            }
            None => sec.with_auth(Auth::AuthNoPriv),
        };
    } else {
        sec = sec.with_auth(Auth::NoAuthNoPriv);
    }
    if !usm.context_name.is_empty() {
        sec = sec.with_context_name(&usm.context_name);
    }
    if with_engine_id {
        if let Some(id) = &usm.engine_id {
            sec = sec
                .with_engine_id(id)
                .map_err(|e| SnmpError::Config(format!("engineId: {e}")))?;
        }
    }
    Ok(sec)
}

/// (agent, stored engineId) pairs the agent refused: later sessions go
/// straight to discovery instead of paying for the refusal again.
type AgentEngineIds = std::collections::HashSet<(String, Vec<u8>)>;
static STALE_ENGINE_IDS: std::sync::LazyLock<std::sync::Mutex<AgentEngineIds>> =
    std::sync::LazyLock::new(Default::default);

/// Varbinds per GETBULK an agent answered after a larger request of it went
/// unanswered, and when that was learned: later walks start there instead of
/// paying the timeout again. Forgotten after [`ANSWER_CAP_MEMORY`] (the
/// agent or the network in between may have changed); bounded in size.
type AgentAnswerCaps = std::collections::HashMap<String, (u32, Instant)>;
static ANSWER_CAPS: std::sync::LazyLock<std::sync::Mutex<AgentAnswerCaps>> =
    std::sync::LazyLock::new(Default::default);
const ANSWER_CAP_MEMORY: Duration = Duration::from_secs(3600);
const MAX_REMEMBERED_AGENTS: usize = 10_000;

fn remembered_answer_cap(target: &str) -> Option<u32> {
    let caps = ANSWER_CAPS.lock().expect("answer caps");
    caps.get(target)
        .filter(|(_, at)| at.elapsed() < ANSWER_CAP_MEMORY)
        .map(|(cap, _)| *cap)
}

/// Remembers `cap` for `target`; `Some(cap)` when that is news.
fn remember_answer_cap(target: &str, cap: u32) -> Option<u32> {
    let mut caps = ANSWER_CAPS.lock().expect("answer caps");
    if caps.len() >= MAX_REMEMBERED_AGENTS && !caps.contains_key(target) {
        caps.retain(|_, (_, at)| at.elapsed() < ANSWER_CAP_MEMORY);
        if caps.len() >= MAX_REMEMBERED_AGENTS {
            caps.clear();
        }
    }
    let before = caps.insert(target.to_string(), (cap, Instant::now()));
    (before.map(|(c, _)| c) != Some(cap)).then_some(cap)
}

/// One SNMP session to one agent. Not shared between tasks.
pub struct Session {
    /// The stored engineId was refused once: discover it for the rest of the session.
    stored_engine_id_failed: bool,
    params: AgentParams,
    inner: Option<Box<AsyncSession>>,
    /// Requests sent on the wire (including retries).
    pub requests_sent: u64,
    /// Time spent waiting for answers.
    pub request_time: Duration,
    /// Set when this session found the agent answers only smaller GETBULK
    /// requests: the varbinds it now asks for at most (remembered per agent).
    pub learned_answer_cap: Option<u32>,
}

impl Session {
    pub fn new(params: AgentParams) -> Session {
        let stale = params
            .usm
            .as_ref()
            .and_then(|u| u.engine_id.as_ref())
            .is_some_and(|id| {
                STALE_ENGINE_IDS
                    .lock()
                    .expect("stale engine ids")
                    .contains(&(params.target.clone(), id.clone()))
            });
        Session {
            params,
            inner: None,
            requests_sent: 0,
            stored_engine_id_failed: stale,
            request_time: Duration::ZERO,
            learned_answer_cap: None,
        }
    }

    pub fn params(&self) -> &AgentParams {
        &self.params
    }

    fn err_io(&self, e: impl std::fmt::Display) -> SnmpError {
        SnmpError::Io {
            target: self.params.target.clone(),
            reason: e.to_string(),
        }
    }

    fn map_err(&self, e: snmp2::Error) -> SnmpError {
        let target = self.params.target.clone();
        match e {
            snmp2::Error::AuthFailure(kind) => SnmpError::Auth {
                target,
                reason: format!("{kind:?}"),
            },
            snmp2::Error::Crypto(reason) => SnmpError::Auth { target, reason },
            snmp2::Error::Send | snmp2::Error::Receive => SnmpError::Io {
                target,
                reason: e.to_string(),
            },
            other => SnmpError::Protocol {
                target,
                reason: other.to_string(),
            },
        }
    }

    /// Opens the socket and, on v3, learns the engine id/boots/time.
    async fn connect(&mut self, use_stored_engine_id: bool) -> Result<(), SnmpError> {
        let target = self.params.target.clone();
        let addr: SocketAddr = match tokio::time::timeout(
            self.params.timeout,
            tokio::net::lookup_host(target.clone()),
        )
        .await
        {
            Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| SnmpError::Resolve {
                target: target.clone(),
                reason: "no address".into(),
            })?,
            Ok(Err(e)) => {
                return Err(SnmpError::Resolve {
                    target,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(SnmpError::Resolve {
                    target,
                    reason: "lookup timed out".into(),
                })
            }
        };
        let req_id = (uuid::Uuid::new_v4().as_u128() as i32) & 0x3fff_ffff;
        let session = match (&self.params.version, &self.params.usm) {
            (SnmpVersion::V3, Some(usm)) => {
                let sec = security(usm, use_stored_engine_id)?;
                let mut s = Box::new(
                    AsyncSession::new_v3(addr, req_id, sec)
                        .await
                        .map_err(|e| self.err_io(e))?,
                );
                let stored = use_stored_engine_id && usm.engine_id.is_some();
                if !stored {
                    self.requests_sent += 1;
                    let started = Instant::now();
                    let r = tokio::time::timeout(self.params.timeout, s.init()).await;
                    self.request_time += started.elapsed();
                    match r {
                        Err(_) => {
                            return Err(SnmpError::Timeout {
                                target,
                                timeout_ms: self.params.timeout.as_millis() as u64,
                                attempts: 1,
                            })
                        }
                        Ok(Err(e)) => return Err(self.map_err(e)),
                        Ok(Ok(())) => {}
                    }
                }
                s
            }
            (SnmpVersion::V3, None) => {
                return Err(SnmpError::Config("v3 agent without credentials".into()))
            }
            (SnmpVersion::V2c, _) => Box::new(
                AsyncSession::new_v2c(addr, &self.params.community, req_id)
                    .await
                    .map_err(|e| self.err_io(e))?,
            ),
            (SnmpVersion::V1, _) => Box::new(
                AsyncSession::new_v1(addr, &self.params.community, req_id)
                    .await
                    .map_err(|e| self.err_io(e))?,
            ),
        };
        self.inner = Some(session);
        Ok(())
    }

    /// Sends one request (GET, GETNEXT or GETBULK) with timeout and retries.
    /// A timed-out socket is dropped (a late answer would confuse the next
    /// request), and v3 discovery updates are repeated transparently.
    async fn request(
        &mut self,
        kind: RequestKind<'_>,
    ) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
        self.request_with(kind, self.params.retries + 1).await
    }

    /// [`Session::request`] with `attempts` tries instead of the agent's.
    async fn request_with(
        &mut self,
        kind: RequestKind<'_>,
        attempts: u32,
    ) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
        let oids: Vec<Oid<'static>> = kind
            .oids()
            .iter()
            .map(|o| vec_to_oid(o))
            .collect::<Result<_, _>>()?;
        let oid_refs: Vec<&Oid<'static>> = oids.iter().collect();
        let mut auth_updates = 0;
        let mut attempt = 0;
        loop {
            if self.inner.is_none() {
                let use_stored = !self.stored_engine_id_failed;
                match self.connect(use_stored).await {
                    Ok(()) => {}
                    Err(SnmpError::Timeout { .. }) if attempt + 1 < attempts => {
                        attempt += 1;
                        continue;
                    }
                    Err(SnmpError::Timeout {
                        target, timeout_ms, ..
                    }) => {
                        return Err(SnmpError::Timeout {
                            target,
                            timeout_ms,
                            attempts,
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
            let timeout = self.params.timeout;
            let session = self.inner.as_mut().expect("connected");
            self.requests_sent += 1;
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, async {
                let pdu = match kind {
                    RequestKind::Get(_) => session.get_many(&oid_refs).await?,
                    RequestKind::GetNext(_) => session.getnext(oid_refs[0]).await?,
                    RequestKind::GetBulk(_, non_repeaters, max_rep) => {
                        session.getbulk(&oid_refs, non_repeaters, max_rep).await?
                    }
                };
                let status = (pdu.error_status, pdu.error_index);
                let varbinds: Vec<(Vec<u64>, SnmpValue)> = pdu
                    .varbinds
                    .map(|(oid, v)| (oid_to_vec(&oid), SnmpValue::from_value(&v)))
                    .collect();
                Ok::<_, snmp2::Error>((status, varbinds))
            })
            .await;
            self.request_time += started.elapsed();
            match result {
                Ok(Ok(((0, _), varbinds))) => return Ok(varbinds),
                Ok(Ok(((status, index), _))) => {
                    return Err(SnmpError::ErrorStatus {
                        target: self.params.target.clone(),
                        status,
                        index,
                    })
                }
                Ok(Err(snmp2::Error::AuthUpdated)) if auth_updates < 3 => {
                    // The agent told us its engine boots/time: send again.
                    auth_updates += 1;
                }
                Ok(Err(snmp2::Error::AuthFailure(snmp2::v3::AuthErrorKind::EngineIdMismatch)))
                    if !self.stored_engine_id_failed =>
                {
                    // The stored engine id is stale: discover the real one, and
                    // skip the stale one in later sessions (said once per agent).
                    self.stored_engine_id_failed = true;
                    if let Some(id) = self.params.usm.as_ref().and_then(|u| u.engine_id.clone()) {
                        let mut stale = STALE_ENGINE_IDS.lock().expect("stale engine ids");
                        if stale.len() >= 10_000 {
                            stale.clear();
                        }
                        if stale.insert((self.params.target.clone(), id)) {
                            tracing::warn!(target = %self.params.target, "stored SNMPv3 engineId does not match the agent; discovering it on each poll (update the inventory's engineId)");
                        }
                    }
                    self.inner = None;
                }
                Ok(Err(snmp2::Error::Receive | snmp2::Error::Send)) => {
                    // On a connected UDP socket this is mostly ICMP port unreachable.
                    self.inner = None;
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(SnmpError::Io {
                            target: self.params.target.clone(),
                            reason: format!("no answer after {attempts} attempts: the port is unreachable (no agent listening?)"),
                        });
                    }
                }
                Ok(Err(snmp2::Error::RequestIdMismatch)) | Err(_) => {
                    self.inner = None;
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(SnmpError::Timeout {
                            target: self.params.target.clone(),
                            timeout_ms: timeout.as_millis() as u64,
                            attempts,
                        });
                    }
                }
                Ok(Err(e)) => {
                    self.inner = None;
                    return Err(self.map_err(e));
                }
            }
        }
    }

    /// GETs instances; exceptions (noSuchObject…) come back as values.
    pub async fn get(
        &mut self,
        oids: &[Vec<u64>],
    ) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
        self.request(RequestKind::Get(oids)).await
    }

    /// Runs `request` to the end: every column walked, every scalar and
    /// instance read. Returns the varbinds in no particular order.
    pub async fn walk(
        &mut self,
        request: &WalkRequest,
        limits: WalkLimits,
    ) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
        let mut state = WalkState::new(request, limits);
        self.advance(&mut state, MAX_REQUESTS_PER_WALK).await?;
        self.finish(state).await
    }

    /// Completes `state`: the exact instances no request carried yet are
    /// fetched with GET (batched), then everything collected is returned.
    pub async fn finish(
        &mut self,
        mut state: WalkState,
    ) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
        if !state.is_complete() {
            return Err(SnmpError::Protocol {
                target: self.params.target.clone(),
                reason: format!("walk did not end after {MAX_REQUESTS_PER_WALK} requests"),
            });
        }
        let mut pending: Vec<Vec<u64>> = std::mem::take(&mut state.gets);
        let mut batch = if self.params.version == SnmpVersion::V1 {
            1
        } else {
            GETS_PER_REQUEST
        };
        while !pending.is_empty() {
            let take = batch.min(pending.len());
            match self.get(&pending[..take]).await {
                Ok(values) => {
                    for (oid, value) in values {
                        if !value.is_exception() && value != SnmpValue::Null {
                            state.push(oid, value, &self.params.target)?;
                        }
                    }
                    pending.drain(..take);
                }
                // v1: noSuchName for a missing instance; tooBig: ask for fewer.
                Err(SnmpError::ErrorStatus { status: 2, .. })
                    if self.params.version == SnmpVersion::V1 =>
                {
                    pending.drain(..take);
                }
                Err(SnmpError::ErrorStatus { status: 1, .. }) if take > 1 => batch = take / 2,
                Err(e) => return Err(e),
            }
        }
        Ok(state.out)
    }

    /// Sends up to `max_requests` requests of the walk in `state`; stops
    /// early when every column is done and every scalar read.
    pub async fn advance(
        &mut self,
        state: &mut WalkState,
        max_requests: usize,
    ) -> Result<(), SnmpError> {
        if self.params.version == SnmpVersion::V1 {
            return self.advance_v1(state, max_requests).await;
        }
        if !state.answered && state.timeout_shrinks == 0 {
            if let Some(cap) = remembered_answer_cap(&self.params.target) {
                state.limit_request(cap);
            }
        }
        for _ in 0..max_requests {
            let active: Vec<usize> = (0..state.columns.len())
                .filter(|i| !state.done[*i])
                .collect();
            let cap = state.varbinds_per_request as usize;
            let nexts: Vec<usize> = (0..state.nexts.len())
                .filter(|i| !state.nexts[*i].answered)
                .take(NEXTS_PER_REQUEST.min(cap))
                .collect();
            if active.is_empty() && nexts.is_empty() {
                return Ok(());
            }
            let budget = cap.saturating_sub(nexts.len()).max(1);
            // Some agents cap the varbinds of a GETBULK answer so hard that a
            // request for many columns comes back empty: then ask for fewer.
            let batch: Vec<usize> = active
                .iter()
                .copied()
                .take(state.columns_per_request.min(budget))
                .collect();
            let per_column = if batch.is_empty() {
                0
            } else {
                (budget / batch.len()).clamp(1, self.params.max_repetitions.max(1) as usize) as u32
            };
            let request_oids: Vec<Vec<u64>> = nexts
                .iter()
                .map(|&n| state.nexts[n].ask.clone())
                .chain(batch.iter().map(|&c| state.last[c].clone()))
                .collect();
            let asked = nexts.len() + batch.len() * per_column as usize;
            // After an unanswered request nothing has answered yet: one try
            // of the smaller one tells a dead agent from a dropped answer.
            let probing = state.timeout_shrinks > 0 && !state.answered;
            let attempts = if probing { 1 } else { self.params.retries + 1 };
            let kind = RequestKind::GetBulk(&request_oids, nexts.len() as u32, per_column.max(1));
            let mut resp = match self.request_with(kind, attempts).await {
                Ok(resp) => resp,
                Err(SnmpError::Timeout { .. }) if asked > 1 && state.may_shrink_after_timeout() => {
                    // Answers this large may be lost on the way (a firewall
                    // dropping IP fragments) or ignored by the agent.
                    state.shrink_after_timeout(asked);
                    continue;
                }
                Err(SnmpError::Timeout { timeout_ms, .. }) if probing => {
                    return Err(SnmpError::Timeout {
                        target: self.params.target.clone(),
                        timeout_ms,
                        attempts: self.params.retries + 2,
                    })
                }
                Err(e) => return Err(e),
            };
            if state.timeout_shrinks > 0 {
                if let Some(cap) =
                    remember_answer_cap(&self.params.target, state.varbinds_per_request)
                {
                    self.learned_answer_cap = Some(cap);
                }
            }
            state.answered = true;
            if resp.is_empty() {
                if batch.len() > 1 {
                    state.columns_per_request = batch.len() / 2;
                } else {
                    // Nothing fits: give up on what was asked.
                    for &c in &batch {
                        state.done[c] = true;
                    }
                    for &n in &nexts {
                        state.nexts[n].answered = true;
                    }
                }
                continue;
            }
            state.largest_answer = state.largest_answer.max(resp.len());
            let answered = nexts.len().min(resp.len());
            let rows = resp.split_off(answered);
            for (&n, (oid, value)) in nexts.iter().zip(resp) {
                state.nexts[n].answered = true;
                if state.nexts[n].accepts(&oid) && !value.is_exception() {
                    state.push(oid, value, &self.params.target)?;
                }
            }
            if rows.is_empty() && batch.len() > 1 {
                // Only the non-repeaters came back (pysnmp answers so when
                // the columns exceed its limit): fewer columns next time.
                state.columns_per_request = batch.len() / 2;
                continue;
            }
            if batch.is_empty() {
                continue;
            }
            for (i, (oid, value)) in rows.into_iter().enumerate() {
                let c = batch[i % batch.len()];
                if !state.done[c] {
                    state.accept_row(c, oid, value, &self.params.target)?;
                }
            }
        }
        Ok(())
    }

    /// v1 has no GETBULK: one GETNEXT per scalar, per unfinished column and row.
    async fn advance_v1(
        &mut self,
        state: &mut WalkState,
        max_requests: usize,
    ) -> Result<(), SnmpError> {
        for n in 0..state.nexts.len() {
            if state.nexts[n].answered {
                continue;
            }
            state.nexts[n].answered = true;
            let ask = state.nexts[n].ask.clone();
            match self
                .request(RequestKind::GetNext(std::slice::from_ref(&ask)))
                .await
            {
                Ok(resp) => {
                    if let Some((oid, value)) = resp.into_iter().next() {
                        if state.nexts[n].accepts(&oid) && !value.is_exception() {
                            state.push(oid, value, &self.params.target)?;
                        }
                    }
                }
                Err(SnmpError::ErrorStatus { status: 2, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for _ in 0..max_requests {
            let active: Vec<usize> = (0..state.columns.len())
                .filter(|i| !state.done[*i])
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            for c in active {
                let resp = match self
                    .request(RequestKind::GetNext(std::slice::from_ref(&state.last[c])))
                    .await
                {
                    Ok(r) => r,
                    // noSuchName: the end of the MIB view on v1
                    Err(SnmpError::ErrorStatus { status: 2, .. }) => {
                        state.done[c] = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match resp.into_iter().next() {
                    Some((oid, value)) => state.accept_row(c, oid, value, &self.params.target)?,
                    None => state.done[c] = true,
                }
            }
        }
        Ok(())
    }
}

/// Scalars (GETNEXT) riding as non-repeaters in one GETBULK.
const NEXTS_PER_REQUEST: usize = 32;
/// Instances per GET request.
const GETS_PER_REQUEST: usize = 32;

/// What one walk fetches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalkRequest {
    /// Prefixes walked to their end.
    pub columns: Vec<Vec<u64>>,
    /// Prefixes of which only the first instance is read (scalars).
    pub scalars: Vec<Vec<u64>>,
    /// Exact instances.
    pub gets: Vec<Vec<u64>>,
}

/// Bounds and leniency of one walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Accept an agent's OIDs that do not increase (else that is an error).
    pub allow_nonincreasing_oids: bool,
    /// A walk collecting more varbinds than this fails (a runaway table).
    pub max_varbinds: usize,
}

/// A GETNEXT of `ask` and which answer counts.
#[derive(Debug, Clone)]
struct Next {
    ask: Vec<u64>,
    /// `Some`: only this exact OID (an instance `x.0` read as the first
    /// after `x`); `None`: anything under `ask`.
    exact: Option<Vec<u64>>,
    answered: bool,
}

impl Next {
    fn accepts(&self, oid: &[u64]) -> bool {
        match &self.exact {
            Some(exact) => oid == &exact[..],
            None => oid.len() > self.ask.len() && oid.starts_with(&self.ask),
        }
    }
}

/// A walk in progress: where each column stands, what came back. It can be
/// split so several sessions continue its columns at once, and merged back.
#[derive(Debug, Clone)]
pub struct WalkState {
    nexts: Vec<Next>,
    /// Instances read by GET at the end.
    gets: Vec<Vec<u64>>,
    columns: Vec<Vec<u64>>,
    last: Vec<Vec<u64>>,
    done: Vec<bool>,
    columns_per_request: usize,
    out: Vec<(Vec<u64>, SnmpValue)>,
    limits: WalkLimits,
    /// Rows collected per column.
    rows: Vec<usize>,
    /// Varbinds of the same walk collected elsewhere (the state a part was
    /// split from), counted against the limit.
    base: usize,
    /// The most varbinds one answer carried (what the agent sends at most).
    largest_answer: usize,
    /// Varbinds asked for in one GETBULK at most (columns × repetitions
    /// plus scalars); lowered when a larger request goes unanswered.
    varbinds_per_request: u32,
    /// The agent answered a request of this walk.
    answered: bool,
    /// Times a request went unanswered and the next one was made smaller.
    timeout_shrinks: u32,
}

/// A walk's first smaller request after an unanswered one asks for no more
/// than this: an answer that fits one Ethernet frame (as a one-column walk
/// at max_repetitions 25, what snmp_exporter sends, does).
const SAFE_VARBINDS_PER_REQUEST: u32 = 24;
/// Unanswered requests a walk answers by asking for less, at most.
const MAX_TIMEOUT_SHRINKS: u32 = 3;

impl WalkState {
    pub fn new(request: &WalkRequest, limits: WalkLimits) -> WalkState {
        let mut nexts: Vec<Next> = request
            .scalars
            .iter()
            .map(|s| Next {
                ask: s.clone(),
                exact: None,
                answered: false,
            })
            .collect();
        let mut gets = Vec::new();
        for g in &request.gets {
            // `x.0` is the first OID after `x` when it exists: it rides as a
            // non-repeater instead of costing a GET.
            match g.split_last() {
                Some((0, parent)) if !parent.is_empty() => nexts.push(Next {
                    ask: parent.to_vec(),
                    exact: Some(g.clone()),
                    answered: false,
                }),
                _ => gets.push(g.clone()),
            }
        }
        WalkState {
            nexts,
            gets,
            columns: request.columns.clone(),
            last: request.columns.clone(),
            done: vec![false; request.columns.len()],
            columns_per_request: request.columns.len().max(1),
            out: Vec::new(),
            limits,
            rows: vec![0; request.columns.len()],
            largest_answer: 0,
            base: 0,
            varbinds_per_request: MAX_VARBINDS_PER_REQUEST,
            answered: false,
            timeout_shrinks: 0,
        }
    }

    /// Asks for at most `varbinds` per request from now on.
    fn limit_request(&mut self, varbinds: u32) {
        self.varbinds_per_request = self.varbinds_per_request.min(varbinds).max(1);
        self.columns_per_request = self
            .columns_per_request
            .min(self.varbinds_per_request as usize)
            .max(1);
    }

    /// Whether an unanswered request is met by a smaller one: a few times,
    /// and once only before the agent answered anything (a dead agent costs
    /// one more try, not a series of them).
    fn may_shrink_after_timeout(&self) -> bool {
        self.timeout_shrinks < MAX_TIMEOUT_SHRINKS && (self.answered || self.timeout_shrinks == 0)
    }

    /// A request for `asked` varbinds went unanswered: ask for a quarter,
    /// and the first time no more than fits one frame.
    fn shrink_after_timeout(&mut self, asked: usize) {
        let mut smaller = (asked / 4).max(1) as u32;
        if self.timeout_shrinks == 0 {
            smaller = smaller.min(SAFE_VARBINDS_PER_REQUEST);
        }
        self.limit_request(smaller);
        self.timeout_shrinks += 1;
    }

    /// A guess at the varbinds still to come: each unfinished column as many
    /// rows again as it has so far (at least one).
    pub fn estimated_remaining(&self) -> usize {
        (0..self.columns.len())
            .filter(|c| !self.done[*c])
            .map(|c| self.rows[c].max(1))
            .sum()
    }

    /// The agent answered a request of this walk.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// The most varbinds one answer carried so far.
    pub fn largest_answer(&self) -> usize {
        self.largest_answer
    }

    /// Every column done and every scalar answered (GETs may remain).
    pub fn is_complete(&self) -> bool {
        self.done.iter().all(|d| *d) && self.nexts.iter().all(|n| n.answered)
    }

    /// Varbinds collected so far.
    pub fn collected(&self) -> usize {
        self.out.len()
    }

    fn push(&mut self, oid: Vec<u64>, value: SnmpValue, target: &str) -> Result<(), SnmpError> {
        if self.base + self.out.len() >= self.limits.max_varbinds {
            return Err(SnmpError::TooManyVarbinds {
                target: target.to_string(),
                limit: self.limits.max_varbinds,
            });
        }
        self.out.push((oid, value));
        Ok(())
    }

    /// One row of column `c`: kept while it is under the column and after
    /// the previous one; the end of the column, an exception or (unless
    /// allowed) an OID that does not increase ends it.
    fn accept_row(
        &mut self,
        c: usize,
        oid: Vec<u64>,
        value: SnmpValue,
        target: &str,
    ) -> Result<(), SnmpError> {
        let prefix = &self.columns[c];
        if value.is_exception() || !oid.starts_with(prefix) || oid.len() == prefix.len() {
            self.done[c] = true;
            return Ok(());
        }
        if oid <= self.last[c] {
            if !self.limits.allow_nonincreasing_oids {
                self.done[c] = true;
                return Err(SnmpError::Protocol {
                    target: target.to_string(),
                    reason: format!(
                        "non-increasing OID {} after {} while walking {} (set allow_nonincreasing_oids: true in the module if the agent is known to do this)",
                        dotted(&oid),
                        dotted(&self.last[c]),
                        dotted(prefix)
                    ),
                });
            }
            if oid == self.last[c] {
                // No progress at all: the walk would loop.
                self.done[c] = true;
                return Ok(());
            }
        }
        self.last[c] = oid.clone();
        self.rows[c] += 1;
        self.push(oid, value, target)
    }

    /// Splits the unfinished columns into at most `parts` walks (scalars and
    /// GETs stay here), each with the column positions it came from.
    pub fn split_unfinished(&self, parts: usize) -> Vec<(Vec<usize>, WalkState)> {
        let open: Vec<usize> = (0..self.columns.len()).filter(|c| !self.done[*c]).collect();
        let parts = parts.clamp(1, open.len().max(1));
        let per_part = open.len().div_ceil(parts).max(1);
        open.chunks(per_part)
            .map(|positions| {
                let pick = |v: &Vec<Vec<u64>>| positions.iter().map(|c| v[*c].clone()).collect();
                let part = WalkState {
                    nexts: Vec::new(),
                    gets: Vec::new(),
                    columns: pick(&self.columns),
                    last: pick(&self.last),
                    done: vec![false; positions.len()],
                    columns_per_request: positions.len().min(self.columns_per_request).max(1),
                    out: Vec::new(),
                    limits: self.limits,
                    rows: positions.iter().map(|c| self.rows[*c]).collect(),
                    largest_answer: self.largest_answer,
                    base: self.base + self.out.len(),
                    varbinds_per_request: self.varbinds_per_request,
                    answered: self.answered,
                    timeout_shrinks: self.timeout_shrinks,
                };
                (positions.to_vec(), part)
            })
            .collect()
    }

    /// Takes back a part made by [`WalkState::split_unfinished`].
    pub fn merge(
        &mut self,
        positions: &[usize],
        part: WalkState,
        target: &str,
    ) -> Result<(), SnmpError> {
        self.varbinds_per_request = self.varbinds_per_request.min(part.varbinds_per_request);
        self.timeout_shrinks = self.timeout_shrinks.max(part.timeout_shrinks);
        self.answered |= part.answered;
        for (i, &c) in positions.iter().enumerate() {
            self.last[c] = part.last[i].clone();
            self.done[c] = part.done[i];
            self.rows[c] = part.rows[i];
        }
        for (oid, value) in part.out {
            self.push(oid, value, target)?;
        }
        Ok(())
    }
}

fn dotted(oid: &[u64]) -> String {
    oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

#[derive(Clone, Copy)]
enum RequestKind<'a> {
    Get(&'a [Vec<u64>]),
    GetNext(&'a [Vec<u64>]),
    /// OIDs, non-repeaters (the first OIDs), max-repetitions.
    GetBulk(&'a [Vec<u64>], u32, u32),
}

impl<'a> RequestKind<'a> {
    fn oids(&self) -> &'a [Vec<u64>] {
        match *self {
            RequestKind::Get(o) | RequestKind::GetNext(o) | RequestKind::GetBulk(o, _, _) => o,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> WalkLimits {
        WalkLimits {
            allow_nonincreasing_oids: false,
            max_varbinds: 1000,
        }
    }

    #[test]
    fn unanswered_requests_shrink_once_before_an_answer_and_a_few_times_after() {
        let columns: Vec<Vec<u64>> = (1..=40).map(|c| vec![1, 3, c]).collect();
        let request = WalkRequest {
            columns,
            ..Default::default()
        };
        let mut state = WalkState::new(&request, limits());
        assert_eq!(state.varbinds_per_request, MAX_VARBINDS_PER_REQUEST);
        assert!(state.may_shrink_after_timeout());
        state.shrink_after_timeout(600);
        assert_eq!(state.varbinds_per_request, SAFE_VARBINDS_PER_REQUEST);
        assert_eq!(
            state.columns_per_request,
            SAFE_VARBINDS_PER_REQUEST as usize
        );
        // Nothing answered yet: a second silence means a dead agent.
        assert!(!state.may_shrink_after_timeout());
        state.answered = true;
        state.shrink_after_timeout(24);
        assert_eq!(
            (state.varbinds_per_request, state.columns_per_request),
            (6, 6)
        );
        assert!(state.may_shrink_after_timeout());
        state.shrink_after_timeout(6);
        assert_eq!(state.varbinds_per_request, 1);
        assert!(!state.may_shrink_after_timeout(), "bounded");
        // A part split off keeps the smaller size; merging keeps the smallest.
        let (positions, mut part) = state.split_unfinished(2).remove(0);
        assert_eq!(part.varbinds_per_request, 1);
        assert!(part.answered);
        state.varbinds_per_request = 5;
        part.varbinds_per_request = 2;
        state.merge(&positions, part, "t").unwrap();
        assert_eq!(state.varbinds_per_request, 2);
    }

    #[test]
    fn answer_caps_are_remembered_per_agent_and_news_only_once() {
        let target = "192.0.2.1:161 (answer cap test)";
        assert_eq!(remembered_answer_cap(target), None);
        assert_eq!(remember_answer_cap(target, 24), Some(24));
        assert_eq!(remember_answer_cap(target, 24), None, "not news");
        assert_eq!(remembered_answer_cap(target), Some(24));
        assert_eq!(remember_answer_cap(target, 6), Some(6));
        assert_eq!(
            remembered_answer_cap("192.0.2.2:161 (answer cap test)"),
            None
        );
    }

    #[test]
    fn walk_state_splits_open_columns_and_merges_back() {
        let columns: Vec<Vec<u64>> = (1..=5).map(|c| vec![1, 3, c]).collect();
        let request = WalkRequest {
            columns: columns.clone(),
            scalars: vec![vec![1, 2]],
            gets: vec![vec![1, 4, 0], vec![1, 4, 7]],
        };
        let mut state = WalkState::new(&request, limits());
        assert_eq!(state.nexts.len(), 2, "the scalar and x.0 ride as GETNEXTs");
        assert_eq!(state.gets, vec![vec![1, 4, 7]], "only x.7 needs a GET");
        // Column 2 (index 1) is finished; the others got one row each.
        for (c, column) in columns.iter().enumerate() {
            state
                .accept_row(
                    c,
                    [column.clone(), vec![1]].concat(),
                    SnmpValue::Integer(1),
                    "t",
                )
                .unwrap();
        }
        state.done[1] = true;
        let parts = state.split_unfinished(2);
        assert_eq!(parts.len(), 2);
        let positions: Vec<Vec<usize>> = parts.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(positions, vec![vec![0, 2], vec![3, 4]]);
        assert!(parts
            .iter()
            .all(|(_, p)| p.nexts.is_empty() && p.gets.is_empty()));
        assert_eq!(
            parts[0].1.last[1],
            vec![1, 3, 3, 1],
            "continues where column 3 stood"
        );
        for (positions, mut part) in parts {
            for i in 0..positions.len() {
                let oid = [part.columns[i].clone(), vec![2]].concat();
                part.accept_row(i, oid, SnmpValue::Integer(2), "t").unwrap();
                part.done[i] = true;
            }
            state.merge(&positions, part, "t").unwrap();
        }
        for n in &mut state.nexts {
            n.answered = true;
        }
        assert!(state.is_complete());
        assert_eq!(state.collected(), 5 + 4);
        assert_eq!(state.split_unfinished(4).len(), 0, "nothing left to split");
    }

    #[test]
    fn rows_stop_at_column_end_and_non_increasing_oids_fail() {
        let prefix = vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
        let request = WalkRequest {
            columns: vec![prefix.clone()],
            ..Default::default()
        };
        let mut state = WalkState::new(&request, limits());
        let row = |n: u64| [prefix.clone(), vec![n]].concat();
        state
            .accept_row(0, row(1), SnmpValue::Integer(1), "t")
            .unwrap();
        state
            .accept_row(0, row(2), SnmpValue::Integer(1), "t")
            .unwrap();
        let e = state
            .accept_row(0, row(2), SnmpValue::Integer(1), "t")
            .unwrap_err();
        assert!(e.to_string().contains("non-increasing OID"), "{e}");
        assert!(state.done[0]);
        assert_eq!(state.collected(), 2);

        // Allowed: a step back is kept, a repeat ends the column (no loop).
        let mut lenient = WalkState::new(
            &request,
            WalkLimits {
                allow_nonincreasing_oids: true,
                max_varbinds: 1000,
            },
        );
        lenient
            .accept_row(0, row(5), SnmpValue::Integer(1), "t")
            .unwrap();
        lenient
            .accept_row(0, row(3), SnmpValue::Integer(1), "t")
            .unwrap();
        assert!(!lenient.done[0]);
        lenient
            .accept_row(0, row(3), SnmpValue::Integer(1), "t")
            .unwrap();
        assert!(lenient.done[0]);
        assert_eq!(lenient.collected(), 2);

        // The next column ends the walk of this one.
        let mut state = WalkState::new(&request, limits());
        state
            .accept_row(
                0,
                vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 3, 1],
                SnmpValue::Integer(1),
                "t",
            )
            .unwrap();
        assert!(state.done[0] && state.collected() == 0);
    }

    #[test]
    fn a_runaway_walk_stops_at_the_varbind_cap() {
        let request = WalkRequest {
            columns: vec![vec![1, 3]],
            ..Default::default()
        };
        let mut state = WalkState::new(
            &request,
            WalkLimits {
                allow_nonincreasing_oids: false,
                max_varbinds: 3,
            },
        );
        for n in 1..=3 {
            state
                .accept_row(0, vec![1, 3, n], SnmpValue::Integer(1), "t")
                .unwrap();
        }
        let e = state
            .accept_row(0, vec![1, 3, 4], SnmpValue::Integer(1), "agent")
            .unwrap_err();
        assert!(
            matches!(e, SnmpError::TooManyVarbinds { limit: 3, .. }),
            "{e}"
        );
    }

    #[test]
    fn octet_strings_become_text() {
        assert_eq!(
            SnmpValue::OctetString(b"eth0\0".to_vec())
                .as_text()
                .unwrap(),
            "eth0"
        );
        assert_eq!(SnmpValue::Counter64(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(SnmpValue::Integer(-1).as_u64(), None);
        assert_eq!(parse_oid(".1.3.6.1"), vec![1, 3, 6, 1]);
    }
}
