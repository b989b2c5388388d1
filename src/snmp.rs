//! SNMP sessions over `snmp2` (async, tokio): v1, v2c and v3 (USM, every auth
//! and privacy protocol snmp2 supports), with a timeout on every request and
//! per-agent retries, GET of scalars, and column walks: many columns per
//! GETBULK request on v2c/v3, GETNEXT on v1.
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
    #[error("invalid agent settings: {0}")]
    Config(String),
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
    fn from_value(v: &Value<'_>) -> SnmpValue {
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

fn oid_to_vec(o: &Oid<'_>) -> Vec<u64> {
    o.iter().map(|it| it.collect()).unwrap_or_default()
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
    pub engine_id: Option<Vec<u8>>,
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

pub fn priv_protocol(name: &str) -> Option<Cipher> {
    Some(match crate::inventory::canonical_priv_protocol(name)? {
        "DES" => Cipher::Des,
        "AES128" => Cipher::Aes128,
        "AES192" => Cipher::Aes192,
        _ => Cipher::Aes256,
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
                let privacy = if level >= 3 {
                    let c = agent
                        .priv_protocol
                        .as_deref()
                        .and_then(priv_protocol)
                        .ok_or_else(|| SnmpError::Config("privProtocol missing".into()))?;
                    Some((c, secret_bytes(&agent.priv_passphrase)))
                } else {
                    None
                };
                Some(UsmCredentials {
                    user: agent.security_name.clone().unwrap_or_default(),
                    auth,
                    privacy,
                    engine_id: agent.engine_id_bytes(),
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
                // net-snmp derives long AES keys the Blumenthal way; snmp2 can fall back to Reeder.
                if cipher.priv_key_needs_extension(proto) {
                    s.with_key_extension_method(KeyExtension::Blumenthal)
                } else {
                    s
                }
            }
            None => sec.with_auth(Auth::AuthNoPriv),
        };
    } else {
        sec = sec.with_auth(Auth::NoAuthNoPriv);
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
        let oids: Vec<Oid<'static>> = kind
            .oids()
            .iter()
            .map(|o| vec_to_oid(o))
            .collect::<Result<_, _>>()?;
        let oid_refs: Vec<&Oid<'static>> = oids.iter().collect();
        let attempts = self.params.retries + 1;
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

    /// GETs scalar instances, one value per OID (an exception value where missing).
    async fn get_scalars(&mut self, oids: &[Vec<u64>]) -> Result<Vec<SnmpValue>, SnmpError> {
        let got = self.get(oids).await?;
        Ok(oids
            .iter()
            .map(|want| {
                got.iter()
                    .find(|(oid, _)| oid == want)
                    .map_or(SnmpValue::NoSuchInstance, |(_, v)| v.clone())
            })
            .collect())
    }

    /// GETs scalars; exceptions (noSuchObject…) come back as values.
    pub async fn get(
        &mut self,
        oids: &[Vec<u64>],
    ) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
        self.request(RequestKind::Get(oids)).await
    }

    /// Reads the scalar instances `scalars` (e.g. sysUpTime.0) and walks every
    /// column under `columns` (prefixes). Returns the scalars' values (an
    /// exception value where the agent has none) and, per column, the rows as
    /// (index suffix, value) in the agent's order. On v2c/v3 the scalars ride
    /// in the first GETBULK as non-repeaters, saving a round trip. A column
    /// stops at its end, at endOfMibView, or at an OID that does not increase;
    /// short responses are fine; the walk is bounded in requests.
    pub async fn walk(
        &mut self,
        scalars: &[Vec<u64>],
        columns: &[Vec<u64>],
    ) -> Result<Walk, SnmpError> {
        let mut state = WalkState::new(scalars, columns);
        self.advance(&mut state, MAX_REQUESTS_PER_WALK).await?;
        self.finish(state).await
    }

    /// Completes `state` into a [`Walk`] (fetching the scalars if no request
    /// carried them).
    pub async fn finish(&mut self, state: WalkState) -> Result<Walk, SnmpError> {
        if !state.is_complete() {
            return Err(SnmpError::Protocol {
                target: self.params.target.clone(),
                reason: format!("walk did not end after {MAX_REQUESTS_PER_WALK} requests"),
            });
        }
        let scalars = match state.scalar_values {
            Some(v) => v,
            None => self.get_scalars(&state.scalars).await?,
        };
        Ok(Walk {
            scalars,
            columns: state.rows,
        })
    }

    /// Sends up to `max_requests` requests of the walk in `state`; stops early
    /// when every column is done.
    pub async fn advance(
        &mut self,
        state: &mut WalkState,
        max_requests: usize,
    ) -> Result<(), SnmpError> {
        let WalkState {
            scalars,
            columns,
            scalar_values,
            last,
            done,
            rows,
            columns_per_request,
        } = state;
        if self.params.version == SnmpVersion::V1 && !scalars.is_empty() && scalar_values.is_none()
        {
            *scalar_values = Some(self.get_scalars(scalars).await?);
        }
        for _ in 0..max_requests {
            let active: Vec<usize> = (0..columns.len()).filter(|i| !done[*i]).collect();
            if active.is_empty() {
                return Ok(());
            }
            if self.params.version == SnmpVersion::V1 {
                // v1 has no GETBULK: one GETNEXT per unfinished column and row.
                for &c in &active {
                    let resp = match self
                        .request(RequestKind::GetNext(std::slice::from_ref(&last[c])))
                        .await
                    {
                        Ok(r) => r,
                        // noSuchName: the end of the MIB view on v1
                        Err(SnmpError::ErrorStatus { status: 2, .. }) => {
                            done[c] = true;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    match resp.into_iter().next() {
                        Some((oid, value)) => accept_row(
                            &columns[c],
                            &mut last[c],
                            &mut done[c],
                            &mut rows[c],
                            oid,
                            value,
                        ),
                        None => done[c] = true,
                    }
                }
                continue;
            }
            // Some agents cap the varbinds of a GETBULK answer so hard that a
            // request for many columns comes back empty: then ask for fewer.
            let batch: Vec<usize> = active.iter().copied().take(*columns_per_request).collect();
            let per_column = (MAX_VARBINDS_PER_REQUEST / batch.len() as u32)
                .clamp(1, self.params.max_repetitions);
            // GETNEXT of an instance's parent (sysUpTime for sysUpTime.0) is the instance.
            let with_scalars = scalar_values.is_none() && !scalars.is_empty();
            let non_repeaters: Vec<Vec<u64>> = if with_scalars {
                scalars
                    .iter()
                    .map(|o| o[..o.len().saturating_sub(1)].to_vec())
                    .collect()
            } else {
                Vec::new()
            };
            let request_oids: Vec<Vec<u64>> = non_repeaters
                .iter()
                .cloned()
                .chain(batch.iter().map(|&c| last[c].clone()))
                .collect();
            let mut resp = self
                .request(RequestKind::GetBulk(
                    &request_oids,
                    non_repeaters.len() as u32,
                    per_column,
                ))
                .await?;
            if with_scalars && resp.len() >= scalars.len() {
                let rest = resp.split_off(scalars.len());
                let values = scalars
                    .iter()
                    .zip(resp)
                    .map(|(want, (oid, value))| {
                        if oid == *want {
                            value
                        } else {
                            SnmpValue::NoSuchInstance
                        }
                    })
                    .collect();
                *scalar_values = Some(values);
                resp = rest;
            }
            if resp.is_empty() {
                if batch.len() > 1 {
                    *columns_per_request = batch.len() / 2;
                } else {
                    done[batch[0]] = true;
                }
                continue;
            }
            for (i, (oid, value)) in resp.into_iter().enumerate() {
                let c = batch[i % batch.len()];
                if !done[c] {
                    accept_row(
                        &columns[c],
                        &mut last[c],
                        &mut done[c],
                        &mut rows[c],
                        oid,
                        value,
                    );
                }
            }
        }
        Ok(())
    }
}

/// A multi-column walk in progress: where each column stands, what came back.
/// It can be split so several sessions continue it at once, and merged back.
#[derive(Debug, Clone)]
pub struct WalkState {
    scalars: Vec<Vec<u64>>,
    columns: Vec<Vec<u64>>,
    scalar_values: Option<Vec<SnmpValue>>,
    last: Vec<Vec<u64>>,
    done: Vec<bool>,
    rows: Vec<Vec<(Vec<u64>, SnmpValue)>>,
    columns_per_request: usize,
}

impl WalkState {
    pub fn new(scalars: &[Vec<u64>], columns: &[Vec<u64>]) -> WalkState {
        WalkState {
            scalars: scalars.to_vec(),
            columns: columns.to_vec(),
            scalar_values: None,
            last: columns.to_vec(),
            done: vec![false; columns.len()],
            rows: vec![Vec::new(); columns.len()],
            columns_per_request: columns.len().max(1),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done.iter().all(|d| *d)
    }

    /// Splits the unfinished columns into at most `parts` walks (no scalars:
    /// they stay here), each with the column positions it came from.
    pub fn split_unfinished(&self, parts: usize) -> Vec<(Vec<usize>, WalkState)> {
        let open: Vec<usize> = (0..self.columns.len()).filter(|c| !self.done[*c]).collect();
        let parts = parts.clamp(1, open.len().max(1));
        let per_part = open.len().div_ceil(parts).max(1);
        open.chunks(per_part)
            .map(|positions| {
                let pick = |v: &Vec<Vec<u64>>| positions.iter().map(|c| v[*c].clone()).collect();
                let part = WalkState {
                    scalars: Vec::new(),
                    columns: pick(&self.columns),
                    scalar_values: Some(Vec::new()),
                    last: pick(&self.last),
                    done: vec![false; positions.len()],
                    rows: vec![Vec::new(); positions.len()],
                    columns_per_request: positions.len().min(self.columns_per_request).max(1),
                };
                (positions.to_vec(), part)
            })
            .collect()
    }

    /// Takes back a part made by [`WalkState::split_unfinished`].
    pub fn merge(&mut self, positions: &[usize], part: WalkState) {
        for (i, rows) in part.rows.into_iter().enumerate() {
            let c = positions[i];
            self.rows[c].extend(rows);
            self.last[c] = part.last[i].clone();
            self.done[c] = part.done[i];
        }
    }
}

fn accept_row(
    prefix: &[u64],
    last: &mut Vec<u64>,
    done: &mut bool,
    rows: &mut Vec<(Vec<u64>, SnmpValue)>,
    oid: Vec<u64>,
    value: SnmpValue,
) {
    if value.is_exception() || !oid.starts_with(prefix) || oid.len() == prefix.len() {
        *done = true;
        return;
    }
    if oid <= *last {
        tracing::warn!(oid = ?oid, "agent returned a non-increasing OID; stopping this column");
        *done = true;
        return;
    }
    rows.push((oid[prefix.len()..].to_vec(), value));
    *last = oid;
}

/// The result of [`Session::walk`].
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// One value per requested scalar, in request order.
    pub scalars: Vec<SnmpValue>,
    /// Per column: (index suffix, value) rows.
    pub columns: Vec<Vec<(Vec<u64>, SnmpValue)>>,
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
    #[test]
    fn walk_state_splits_open_columns_and_merges_back() {
        let columns: Vec<Vec<u64>> = (1..=5).map(|c| vec![1, 3, c]).collect();
        let mut state = WalkState::new(&[vec![1, 0]], &columns);
        // Column 2 (index 1) is finished; the others got one row each.
        for (c, column) in columns.iter().enumerate() {
            state.rows[c].push((vec![1], SnmpValue::Integer(1)));
            state.last[c] = [column.clone(), vec![1]].concat();
        }
        state.done[1] = true;
        let parts = state.split_unfinished(2);
        assert_eq!(parts.len(), 2);
        let positions: Vec<Vec<usize>> = parts.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(positions, vec![vec![0, 2], vec![3, 4]]);
        assert!(parts.iter().all(|(_, p)| p.scalars.is_empty()));
        assert_eq!(
            parts[0].1.last[1],
            vec![1, 3, 3, 1],
            "continues where column 3 stood"
        );
        for (positions, mut part) in parts {
            for i in 0..positions.len() {
                part.rows[i].push((vec![2], SnmpValue::Integer(2)));
                part.done[i] = true;
            }
            state.merge(&positions, part);
        }
        assert!(state.is_complete());
        assert_eq!(state.rows[0].len(), 2);
        assert_eq!(state.rows[1].len(), 1, "the finished column is untouched");
        assert_eq!(state.rows[4].len(), 2);
        assert_eq!(state.split_unfinished(4).len(), 0, "nothing left to split");
    }

    use super::*;

    #[test]
    fn rows_stop_at_column_end_and_on_non_increasing_oids() {
        let prefix = vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
        let mut last = prefix.clone();
        let mut done = false;
        let mut rows = Vec::new();
        let mut row = |oid: Vec<u64>| {
            accept_row(
                &prefix,
                &mut last,
                &mut done,
                &mut rows,
                oid,
                SnmpValue::Integer(1),
            )
        };
        row([prefix.clone(), vec![1]].concat());
        row([prefix.clone(), vec![2]].concat());
        row([prefix.clone(), vec![2]].concat()); // repeated: stop
        assert!(done);
        assert_eq!(rows.len(), 2);

        let mut last = prefix.clone();
        let mut done = false;
        let mut rows = Vec::new();
        accept_row(
            &prefix,
            &mut last,
            &mut done,
            &mut rows,
            vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 3, 1],
            SnmpValue::Integer(1),
        );
        assert!(done && rows.is_empty(), "next column ends the walk");
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
