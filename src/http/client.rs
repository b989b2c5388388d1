//! A small HTTP/1.1 client for the subcommands that talk to a running
//! replica (`healthcheck`, `inventory export|import`): one request per
//! connection, plain or TLS, bounded in time and in the size of the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::http::{HeaderMap, Method, Request, StatusCode};

/// Largest answer read (an exported inventory of many devices).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// `http://host[:port][/prefix]` or `https://…`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    /// `host` or `[v6]`, as written.
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (a proxy's mount point), or empty.
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = crate::hosts::split_authority(authority)
            .filter(|(host, _)| !host.is_empty())
            .ok_or_else(|| format!("`{url}`: `{authority}` is not host or host:port"))?;
        Ok(BaseUrl {
            tls,
            host: host.to_string(),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            prefix: prefix.to_string(),
        })
    }

    fn host_without_brackets(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.prefix)
    }
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request to `base` + `path`. `tls` is the client configuration for
/// https (required then); the whole exchange is bounded by `timeout`.
pub async fn request(
    base: &BaseUrl,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Answer, String> {
    let target = format!("{}:{}", base.host_without_brackets(), base.port);
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(&target)
            .await
            .map_err(|e| format!("connect to {target}: {e}"))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", base.prefix))
            .header("host", format!("{}:{}", base.host, base.port));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        match (base.tls, tls) {
            (false, _) => send(tcp, request).await,
            (true, None) => Err(format!("{base}: https needs a TLS client configuration")),
            (true, Some(config)) => {
                let name = rustls_pki_types::ServerName::try_from(
                    base.host_without_brackets().to_string(),
                )
                .map_err(|e| format!("{base}: {e}"))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {target}: {e}"))?;
                send(stream, request).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{base}{path}: no answer within {timeout:?}"))?
}

async fn send<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
    // The connection task ends with the exchange (the request is the last).
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP request: {e}"));
    let result = match response {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|collected| Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body: collected.to_bytes(),
                })
                .map_err(|e| format!("reading the answer: {e}"))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

/// Where this host's replica answers: `bind_address` (loopback when it binds
/// every address) at `port`, over TLS when its web configuration says so;
/// its own certificate is accepted whatever its names (see
/// `web::tls::probe_client_config`).
pub fn local_replica(
    bind_address: std::net::IpAddr,
    port: u16,
    web_config_file: Option<&std::path::Path>,
) -> Result<(BaseUrl, Option<Arc<rustls::ClientConfig>>), String> {
    let tls = match web_config_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file =
                crate::web::file::WebConfigFile::parse(path, &text).map_err(|e| e.to_string())?;
            file.tls_server_config
                .is_enabled()
                .then(|| crate::web::tls::probe_client_config(&file.tls_server_config))
                .transpose()?
        }
    };
    let host = match bind_address {
        any if any.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let base = BaseUrl {
        tls: tls.is_some(),
        host,
        port,
        prefix: String::new(),
    };
    Ok((base, tls))
}

/// A client configuration trusting the CA certificates in `pem_file` and
/// checking the server's name as usual.
pub fn tls_config_with_ca(pem_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(pem_file)
        .map_err(|e| format!("{}: {e}", pem_file.display()))?
    {
        let cert = cert.map_err(|e| format!("{}: {e}", pem_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", pem_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", pem_file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (false, "127.0.0.1", 8080, "")
        );
        let u = BaseUrl::parse("https://promsnmp.example/ops/").unwrap();
        assert_eq!((u.tls, u.port, u.prefix.as_str()), (true, 443, "/ops"));
        let u = BaseUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_without_brackets(), u.port),
            ("[::1]", "::1", 9000)
        );
        for bad in [
            "127.0.0.1:8080",
            "ftp://h",
            "http://",
            "http://h:port",
            "http://u@h",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
