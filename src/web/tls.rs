//! The TLS side of the web configuration: `tls_server_config` → a rustls
//! server configuration (certificate and key, client certificates, versions,
//! cipher suites, curves), and the client configuration the `healthcheck`
//! subcommand uses to reach its own replica.
//!
//! rustls speaks TLS 1.2 and 1.3 only: a `min_version` below TLS12 is raised
//! to it (with a warning); cipher suites it lacks (CBC, RSA key exchange) are
//! skipped with a warning, and refused if none of those listed remain.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::file::TlsServerConfig;

/// What `client_auth_type` asks of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Asked for, not required, not verified.
    Request,
    /// Required, not verified.
    RequireAny,
    /// Verified against the client CAs when given.
    VerifyIfGiven,
    /// Required and verified against the client CAs.
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(text: &str) -> Result<ClientAuth, String> {
        Ok(match text {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            other => return Err(format!("client_auth_type: `{other}` is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert")),
        })
    }

    pub fn requires_certificate(self) -> bool {
        matches!(self, ClientAuth::RequireAny | ClientAuth::RequireAndVerify)
    }
}

/// A built server configuration and what it was built from.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
    /// Warnings to log once (unsupported versions or suites skipped).
    pub warnings: Vec<String>,
}

/// Builds the rustls server configuration; reads the certificate files.
pub fn server_config(tls: &TlsServerConfig) -> Result<ServerTls, String> {
    if tls.cert_file.is_empty() && tls.cert.is_empty() {
        return Err("tls_server_config: missing one of cert or cert_file".into());
    }
    if tls.key_file.is_empty() && tls.key.expose().is_empty() {
        return Err("tls_server_config: missing one of key or key_file".into());
    }
    let mut warnings = Vec::new();
    let client_auth = ClientAuth::parse(&tls.client_auth_type)?;
    let certs = certificates(&tls.cert_file, &tls.cert, "cert")?;
    let key = private_key(tls)?;
    let provider = Arc::new(provider(tls, &mut warnings)?);
    let versions = versions(tls, &mut warnings)?;
    let roots = client_roots(tls)?;
    if roots.is_some() && client_auth == ClientAuth::None {
        return Err(
            "tls_server_config: client CAs are configured without a client_auth_type".into(),
        );
    }
    let verify_with = |roots: Option<Arc<RootCertStore>>, optional: bool| {
        let roots = roots.ok_or_else(|| {
            format!(
                "tls_server_config: client_auth_type {} needs client_ca_file or client_ca",
                tls.client_auth_type
            )
        })?;
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| format!("tls_server_config: client CAs: {e}"))
    };
    let algorithms = provider.signature_verification_algorithms;
    let mut verifier: Arc<dyn ClientCertVerifier> = match client_auth {
        ClientAuth::None => Arc::new(rustls::server::NoClientAuth),
        ClientAuth::Request => Arc::new(AnyClientCert {
            mandatory: false,
            algorithms,
        }),
        ClientAuth::RequireAny => Arc::new(AnyClientCert {
            mandatory: true,
            algorithms,
        }),
        ClientAuth::VerifyIfGiven => verify_with(roots, true)?,
        ClientAuth::RequireAndVerify => verify_with(roots, false)?,
    };
    if let Some(sans) = &tls.client_allowed_sans {
        if !client_auth.requires_certificate() {
            return Err("tls_server_config: client_allowed_sans requires client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert".into());
        }
        let allowed = sans
            .iter()
            .map(|san| {
                ServerName::try_from(san.clone()).map_err(|_| {
                    format!("client_allowed_sans: `{san}` is not a DNS name or IP address (the only kinds promsnmp matches)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        verifier = Arc::new(AllowedSans {
            inner: verifier,
            allowed,
        });
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        client_auth,
        warnings,
    })
}

fn certificates(
    file: &str,
    inline: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    // Errors name the file (`cert_file x.crt`) or the inline field (`cert`).
    let source = if file.is_empty() {
        what.to_string()
    } else {
        format!("{what}_file {file}")
    };
    let certs: Result<Vec<_>, _> = if file.is_empty() {
        CertificateDer::pem_slice_iter(inline.as_bytes()).collect()
    } else {
        CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("{source}: {e}"))?
            .collect()
    };
    let certs = certs.map_err(|e| format!("{source}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{source}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(tls: &TlsServerConfig) -> Result<PrivateKeyDer<'static>, String> {
    // Errors name the file, never the key's text.
    if tls.key_file.is_empty() {
        PrivateKeyDer::from_pem_slice(tls.key.expose().as_bytes())
            .map_err(|_| "key: no PEM private key in it".to_string())
    } else {
        PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| match e {
            rustls_pki_types::pem::Error::Io(io) => format!("key_file {}: {io}", tls.key_file),
            _ => format!("key_file {}: no PEM private key in it", tls.key_file),
        })
    }
}

fn client_roots(tls: &TlsServerConfig) -> Result<Option<Arc<RootCertStore>>, String> {
    if tls.client_ca_file.is_empty() && tls.client_ca.is_empty() {
        return Ok(None);
    }
    let certs = certificates(&tls.client_ca_file, &tls.client_ca, "client_ca")?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("client_ca: unusable certificate: {e}"))?;
    }
    Ok(Some(Arc::new(roots)))
}

fn version_number(text: &str) -> Result<u8, String> {
    match text {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(format!(
            "`{other}` is not a TLS version (TLS10, TLS11, TLS12, TLS13)"
        )),
    }
}

fn versions(
    tls: &TlsServerConfig,
    warnings: &mut Vec<String>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let min = version_number(tls.min_version.as_deref().unwrap_or("TLS12"))
        .map_err(|e| format!("min_version: {e}"))?;
    let max = version_number(tls.max_version.as_deref().unwrap_or("TLS13"))
        .map_err(|e| format!("max_version: {e}"))?;
    if max < 12 {
        return Err("max_version: promsnmp speaks TLS 1.2 and 1.3 only".into());
    }
    if min > max {
        return Err("min_version is above max_version".into());
    }
    if min < 12 {
        warnings.push("min_version below TLS12: promsnmp speaks TLS 1.2 and 1.3 only, so TLS 1.2 is the minimum".into());
    }
    let mut versions = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    versions.push(&rustls::version::TLS13);
    if max == 12 {
        versions.retain(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
    }
    Ok(versions)
}

/// ring's provider, narrowed to the listed TLS 1.2 suites and curves (TLS
/// 1.3 suites are not configurable, as in Go).
fn provider(tls: &TlsServerConfig, warnings: &mut Vec<String>) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !tls.cipher_suites.is_empty() {
        let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
        for wanted in &tls.cipher_suites {
            if !provider.cipher_suites.iter().any(|s| &name(s) == wanted) {
                warnings.push(format!(
                    "cipher_suites: {wanted} is not supported and is skipped"
                ));
            }
        }
        provider.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13 || tls.cipher_suites.contains(&name(s))
        });
        let tls12_left = provider
            .cipher_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS12);
        if !tls12_left && tls.max_version.as_deref() == Some("TLS12") {
            return Err("cipher_suites: none of the listed suites is supported".into());
        }
    }
    if !tls.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for curve in &tls.curve_preferences {
            let named = match curve.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                "CurveP521" => {
                    warnings.push(
                        "curve_preferences: CurveP521 is not supported and is skipped".into(),
                    );
                    continue;
                }
                other => return Err(format!("curve_preferences: unknown curve {other}")),
            };
            if let Some(group) = provider.kx_groups.iter().find(|g| g.name() == named) {
                groups.push(*group);
            }
        }
        if groups.is_empty() {
            return Err("curve_preferences: none of the listed curves is supported".into());
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

/// The handshake-signature checks of a verifier holding `algorithms`: the
/// same for the client-certificate and the healthcheck's server verifier.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// `RequestClientCert` / `RequireAnyClientCert`: any certificate is taken
/// (the handshake signature is still checked: the client holds its key).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signature_checks!();
}

/// `client_allowed_sans`: the client certificate must name one of these.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        if self
            .allowed
            .iter()
            .any(|name| rustls::client::verify_server_name(&parsed, name).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The `healthcheck` subcommand's client: it talks to its own replica on
/// loopback, so the server certificate (issued for the service's name, not
/// 127.0.0.1) is not verified; when client certificates are required it
/// presents the server's own certificate and key.
pub fn probe_client_config(tls: &TlsServerConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnServer { algorithms }));
    let config = if ClientAuth::parse(&tls.client_auth_type)?.requires_certificate() {
        builder
            .with_client_auth_cert(
                certificates(&tls.cert_file, &tls.cert, "cert")?,
                private_key(tls)?,
            )
            .map_err(|e| e.to_string())?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts the replica's own certificate (see [`probe_client_config`]).
#[derive(Debug)]
struct OwnServer {
    algorithms: WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for OwnServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(min: Option<&str>, max: Option<&str>) -> TlsServerConfig {
        TlsServerConfig {
            min_version: min.map(String::from),
            max_version: max.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn versions_follow_the_file_within_what_rustls_speaks() {
        let mut warnings = Vec::new();
        let v = versions(&tls(None, None), &mut warnings).unwrap();
        assert_eq!(v.len(), 2);
        assert!(warnings.is_empty());
        let v = versions(&tls(Some("TLS10"), None), &mut warnings).unwrap();
        assert_eq!(v.len(), 2);
        assert!(
            warnings[0].contains("TLS 1.2 is the minimum"),
            "{warnings:?}"
        );
        let v = versions(&tls(Some("TLS13"), None), &mut warnings).unwrap();
        assert_eq!(v, [&rustls::version::TLS13]);
        let v = versions(&tls(None, Some("TLS12")), &mut warnings).unwrap();
        assert_eq!(v, [&rustls::version::TLS12]);
        for (min, max, expected) in [
            (None, Some("TLS11"), "1.2 and 1.3 only"),
            (Some("TLS13"), Some("TLS12"), "above max_version"),
            (Some("SSL3"), None, "not a TLS version"),
        ] {
            let e = versions(&tls(min, max), &mut warnings).unwrap_err();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn suites_and_curves_are_narrowed_and_unknown_ones_named() {
        let mut warnings = Vec::new();
        let mut config = tls(None, None);
        config.cipher_suites = vec![
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
        ];
        config.curve_preferences = vec!["X25519".into(), "CurveP521".into()];
        let provider = provider(&config, &mut warnings).unwrap();
        let tls12: Vec<String> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(tls12, ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]);
        assert_eq!(provider.kx_groups.len(), 1);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        config.curve_preferences = vec!["CurveP999".into()];
        assert!(provider_err(&config).contains("unknown curve"));
        config.curve_preferences.clear();
        config.cipher_suites = vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()];
        config.max_version = Some("TLS12".into());
        assert!(provider_err(&config).contains("none of the listed suites"));
    }

    fn provider_err(config: &TlsServerConfig) -> String {
        match provider(config, &mut Vec::new()) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn client_auth_names_are_the_toolkit_names() {
        assert_eq!(ClientAuth::parse("").unwrap(), ClientAuth::None);
        assert_eq!(
            ClientAuth::parse("RequireClientCert").unwrap(),
            ClientAuth::RequireAny
        );
        assert!(ClientAuth::parse("RequireAndVerifyClientCert")
            .unwrap()
            .requires_certificate());
        assert!(ClientAuth::parse("requireandverifyclientcert").is_err());
    }
}
