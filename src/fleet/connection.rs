//! Connections to the fleet's Redis: where (one server, or the primary the
//! Sentinels name), how (TLS with the configured CA and client certificate),
//! and how long (`PROMSNMP_REDIS_TIMEOUT_MS` bounds connecting and every
//! answer). A [`Link`] keeps one multiplexed connection, shared by every
//! caller and replaced only after an error that breaks it: no health-check
//! round trip before each use.
//!
//! [`RedisFailure`] is this boundary's error, with the reason as the label of
//! `promsnmp_redis_errors_total`.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ErrorKind, RedisError,
    ServerErrorKind, TlsCertificates, TlsMode,
};

use crate::config::{parse_redis_address, RedisAddress, RedisTlsFiles};

/// A Redis operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Redis is unavailable ({operation}: {message})")]
pub struct RedisFailure {
    pub operation: &'static str,
    /// `timeout`, `connection`, `tls`, `auth`, `acl`, `oom`, `readonly`,
    /// `loading`, `sentinel`, `script` or `other`.
    pub reason: &'static str,
    pub message: String,
}

impl From<RedisFailure> for crate::store::StoreError {
    fn from(failure: RedisFailure) -> Self {
        crate::store::StoreError::Unavailable(failure.to_string())
    }
}

impl RedisFailure {
    pub fn new(operation: &'static str, e: &RedisError) -> RedisFailure {
        RedisFailure {
            operation,
            reason: reason(e),
            message: e.to_string(),
        }
    }

    pub fn timeout(operation: &'static str, bound: Duration) -> RedisFailure {
        RedisFailure {
            operation,
            reason: "timeout",
            message: format!("no answer within {bound:?}"),
        }
    }
}

/// Why Redis refused or failed, as a metric label.
pub fn reason(e: &RedisError) -> &'static str {
    let code = e.code().unwrap_or_default();
    let text = e.to_string();
    if e.is_timeout() {
        "timeout"
    } else if code == "OOM" {
        "oom"
    } else if code == "NOPERM"
        || e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        // A command inside a script that the ACL denies.
        || text.contains("can't run this command")
    {
        "acl"
    } else if e.kind() == ErrorKind::AuthenticationFailed || code == "WRONGPASS" || code == "NOAUTH"
    {
        "auth"
    } else if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
        "readonly"
    } else if e.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading) {
        "loading"
    } else if matches!(
        e.kind(),
        ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::EmptySentinelList
    ) {
        "sentinel"
    } else if [
        "certificate",
        "Certificate",
        "TLS",
        "tls",
        "alert",
        "handshake",
    ]
    .iter()
    .any(|word| text.contains(word))
    {
        "tls"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        "connection"
    } else if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) || code == "BUSY" {
        "script"
    } else {
        "other"
    }
}

/// After this error the connection is not used again: it is broken, timed
/// out (a late answer would be matched to nothing), or talks to a server
/// that is no longer the primary.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// Configuration that cannot work, found before any port is bound.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("REDIS_URL: {0}")]
    Url(String),
    #[error("{variable} {path}: {problem}")]
    TlsFile {
        variable: &'static str,
        path: String,
        problem: String,
    },
}

enum Source {
    Server(Box<Client>),
    /// One client per Sentinel, asked for the current primary at every
    /// (re)connection.
    Sentinels(Vec<tokio::sync::Mutex<SentinelClient>>),
}

/// Makes connections (and pub/sub clients) to the fleet's Redis.
pub struct Connector {
    source: Source,
    config: AsyncConnectionConfig,
    timeout: Duration,
}

impl Connector {
    /// Reads the TLS files and checks the URL; connects nothing yet, so a
    /// replica starts (and serves) while Redis is down.
    pub fn new(
        url: &str,
        tls: &RedisTlsFiles,
        timeout: Duration,
    ) -> Result<Connector, ConnectorError> {
        let address = parse_redis_address(url).map_err(ConnectorError::Url)?;
        let certificates = tls_certificates(tls)?;
        let source = match address {
            RedisAddress::Server { tls: uses_tls } => {
                let client = match certificates.filter(|_| uses_tls) {
                    Some(certificates) => Client::build_with_tls(url, certificates),
                    None => Client::open(url),
                }
                .map_err(|e| ConnectorError::Url(e.to_string()))?;
                Source::Server(Box::new(client))
            }
            RedisAddress::Sentinel {
                tls: uses_tls,
                sentinels,
                primary,
                db,
                username,
                password,
            } => {
                // One client per Sentinel, asked all at once: a Sentinel
                // whose host is gone (no answer at all) must not hold up the
                // lookup until the whole operation times out.
                let build = |host: String, port: u16| {
                    let node = if uses_tls {
                        ConnectionAddr::TcpTls {
                            host,
                            port,
                            insecure: false,
                            tls_params: None,
                        }
                    } else {
                        ConnectionAddr::Tcp(host, port)
                    };
                    let mut builder =
                        SentinelClientBuilder::new([node], &primary, SentinelServerType::Master)?
                            .set_client_to_redis_db(db);
                    if let Some(user) = &username {
                        builder = builder.set_client_to_redis_username(user);
                    }
                    if let Some(password) = &password {
                        builder = builder.set_client_to_redis_password(password.expose());
                    }
                    if uses_tls {
                        builder = builder
                            .set_client_to_redis_tls_mode(TlsMode::Secure)
                            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                        if let Some(certificates) = &certificates {
                            builder = builder
                                .set_client_to_redis_certificates(certificates.clone())
                                .set_client_to_sentinel_certificates(certificates.clone());
                        }
                    }
                    builder.build().map(tokio::sync::Mutex::new)
                };
                let clients = sentinels
                    .into_iter()
                    .map(|(host, port)| build(host, port))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ConnectorError::Url(e.to_string()))?;
                Source::Sentinels(clients)
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(Connector {
            source,
            config,
            timeout,
        })
    }

    /// A client for the server to use now (with Sentinels: the primary the
    /// first of them to answer names; each is given the timeout).
    pub async fn client(&self) -> Result<Client, RedisError> {
        let sentinels = match &self.source {
            Source::Server(client) => return Ok((**client).clone()),
            Source::Sentinels(sentinels) => sentinels,
        };
        let lookups = sentinels.iter().map(|sentinel| {
            Box::pin(async move {
                match tokio::time::timeout(self.timeout, async {
                    sentinel.lock().await.async_get_client().await
                })
                .await
                {
                    Ok(found) => found,
                    Err(_) => Err(RedisError::from((
                        ErrorKind::Io,
                        "a Sentinel did not answer in time",
                    ))),
                }
            })
        });
        futures_util::future::select_ok(lookups)
            .await
            .map(|(client, _)| client)
    }

    /// A new multiplexed connection with the configured timeouts.
    pub async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = self.client().await?;
        client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The CA and the client certificate, read and parsed now so a bad file
/// stops the start with its name.
fn tls_certificates(tls: &RedisTlsFiles) -> Result<Option<TlsCertificates>, ConnectorError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |variable: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ConnectorError::TlsFile {
            variable,
            path: path.display().to_string(),
            problem: e.to_string(),
        })
    };
    let bad =
        |variable: &'static str, path: &std::path::Path, problem: String| ConnectorError::TlsFile {
            variable,
            path: path.display().to_string(),
            problem,
        };
    let mut certificates = TlsCertificates {
        client_tls: None,
        root_cert: None,
    };
    // A file of certificates: readable, every PEM block parses, one at least.
    let certificates_in = |variable: &'static str, path: &std::path::Path| {
        let pem = read(variable, path)?;
        let count = CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|_| ()))
            .collect::<Result<Vec<()>, _>>()
            .map_err(|e| bad(variable, path, e.to_string()))?
            .len();
        if count == 0 {
            return Err(bad(variable, path, "holds no PEM certificate".into()));
        }
        Ok(pem)
    };
    if let Some(path) = &tls.ca_file {
        certificates.root_cert = Some(certificates_in("PROMSNMP_REDIS_CA_FILE", path)?);
    }
    if let (Some(cert_path), Some(key_path)) = (&tls.cert_file, &tls.key_file) {
        let cert = certificates_in("PROMSNMP_REDIS_CERT_FILE", cert_path)?;
        let key = read("PROMSNMP_REDIS_KEY_FILE", key_path)?;
        PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| bad("PROMSNMP_REDIS_KEY_FILE", key_path, e.to_string()))?;
        certificates.client_tls = Some(ClientTlsConfig {
            client_cert: cert,
            client_key: key,
        });
    }
    Ok(
        (certificates.root_cert.is_some() || certificates.client_tls.is_some())
            .then_some(certificates),
    )
}

/// One multiplexed connection, opened on first use and after an error that
/// broke the previous one. Concurrent callers share it (Redis pipelines
/// their commands); a reconnect is done once, not by every waiting caller.
pub struct Link {
    connector: Arc<Connector>,
    /// The connection and its serial number (so an error on an old
    /// connection does not discard a newer one).
    current: tokio::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    serial: std::sync::atomic::AtomicU64,
}

impl Link {
    pub fn new(connector: Arc<Connector>) -> Link {
        Link {
            connector,
            current: tokio::sync::Mutex::new(None),
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The shared connection, connecting first if there is none.
    pub async fn connection(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        let mut current = self.current.lock().await;
        if let Some((serial, connection)) = current.as_ref() {
            return Ok((*serial, connection.clone()));
        }
        let connection = self.connector.connect().await?;
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        *current = Some((serial, connection.clone()));
        Ok((serial, connection))
    }

    /// Drops connection `serial` when `e` broke it; the next use reconnects.
    pub async fn failed(&self, serial: u64, e: &RedisError) {
        if !breaks_connection(e) {
            return;
        }
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(s, _)| *s == serial) {
            *current = None;
        }
    }

    /// An operation on connection `serial` got no answer in time: the
    /// connection is dropped (a late answer would be matched to nothing),
    /// unless it was replaced already, or a reconnect is under way (0: the
    /// operation never got a connection).
    pub fn timed_out(&self, serial: u64) {
        if serial == 0 {
            return;
        }
        if let Ok(mut current) = self.current.try_lock() {
            if current.as_ref().is_some_and(|(s, _)| *s == serial) {
                *current = None;
            }
        }
    }

    pub fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server answer `-<line>` becomes, as the client reads it.
    fn server_error(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(redis::Value::ServerError(e)) => RedisError::from(e),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn reasons_name_what_went_wrong() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(reason(&io), "connection");
        assert!(breaks_connection(&io));
        let oom = server_error("OOM command not allowed when used memory > 'maxmemory'.");
        assert_eq!(reason(&oom), "oom");
        assert!(!breaks_connection(&oom));
        let acl = server_error("NOPERM User u has no permissions to run the 'info' command");
        assert_eq!(reason(&acl), "acl");
        let auth = server_error("WRONGPASS invalid username-password pair or user is disabled.");
        assert_eq!(reason(&auth), "auth");
        let readonly = server_error("READONLY You can't write against a read only replica.");
        assert_eq!(reason(&readonly), "readonly");
        assert!(breaks_connection(&readonly));
        assert_eq!(reason(&server_error("LOADING Redis is loading")), "loading");
        assert_eq!(reason(&server_error("ERR unknown command")), "other");
    }

    #[test]
    fn a_client_certificate_needs_readable_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let files = RedisTlsFiles {
            ca_file: Some(ca.clone()),
            ..Default::default()
        };
        let err = Connector::new("rediss://127.0.0.1:1", &files, Duration::from_secs(1))
            .err()
            .expect("a CA file without a certificate is refused");
        let text = err.to_string();
        assert!(
            text.contains("PROMSNMP_REDIS_CA_FILE") && text.contains("ca.pem"),
            "{text}"
        );
        let missing = RedisTlsFiles {
            ca_file: Some(dir.path().join("absent.pem")),
            ..Default::default()
        };
        let err = Connector::new("rediss://127.0.0.1:1", &missing, Duration::from_secs(1))
            .err()
            .expect("a missing CA file is refused");
        assert!(err.to_string().contains("absent.pem"), "{err}");
        // Without files the system's CAs are used; nothing is read.
        assert!(Connector::new(
            "rediss://127.0.0.1:1",
            &RedisTlsFiles::default(),
            Duration::from_secs(1)
        )
        .is_ok());
        assert!(Connector::new(
            "redis+sentinel://127.0.0.1:1,127.0.0.1:2/primary",
            &RedisTlsFiles::default(),
            Duration::from_secs(1)
        )
        .is_ok());
    }
}
