//! The web configuration file, in the Prometheus exporter-toolkit's format
//! (`tls_server_config`, `http_server_config`, `rate_limit`,
//! `basic_auth_users`), plus one key of promsnmp's own: `promsnmp_admin_users`.
//! Unknown keys are errors, as in the toolkit; relative file names are
//! relative to the file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::WebConfigError;
use crate::inventory::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    #[serde(default)]
    pub tls_server_config: TlsServerConfig,
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// User name → bcrypt hash of the password.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, Secret>,
    /// promsnmp's extension: the users allowed on admin paths (`/promsnmp/*`,
    /// `/-/reload`). Absent: every user is an admin.
    #[serde(default)]
    pub promsnmp_admin_users: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    #[serde(default)]
    pub cert: String,
    #[serde(default)]
    pub key: Secret,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub client_auth_type: String,
    #[serde(default)]
    pub client_ca_file: String,
    #[serde(default)]
    pub client_ca: String,
    #[serde(default)]
    pub client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Accepted for compatibility; the server's order is always preferred.
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; promsnmp serves HTTP/1.1.
    #[serde(default)]
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default)]
    pub burst: u32,
    /// A Go duration (`1s`, `100ms`); empty or zero: no rate limit.
    #[serde(default)]
    pub interval: String,
}

/// Response headers the toolkit allows, and the values some must have.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

impl TlsServerConfig {
    /// Whether any TLS field is set (the toolkit's rule for "TLS is on").
    pub fn is_enabled(&self) -> bool {
        !(self.cert.is_empty()
            && self.key.expose().is_empty()
            && self.cert_file.is_empty()
            && self.key_file.is_empty()
            && self.client_auth_type.is_empty()
            && self.client_ca_file.is_empty()
            && self.client_ca.is_empty())
    }

    /// The files this configuration reads (watched for changes).
    pub fn files(&self) -> Vec<PathBuf> {
        [&self.cert_file, &self.key_file, &self.client_ca_file]
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    fn resolve_paths(&mut self, dir: &Path) {
        for file in [
            &mut self.cert_file,
            &mut self.key_file,
            &mut self.client_ca_file,
        ] {
            if !file.is_empty() && Path::new(file.as_str()).is_relative() {
                *file = dir.join(file.as_str()).to_string_lossy().into_owned();
            }
        }
    }
}

impl WebConfigFile {
    /// Parses and checks the file's text; `path` names it in errors and
    /// anchors relative file names.
    pub fn parse(path: &Path, text: &str) -> Result<WebConfigFile, WebConfigError> {
        let invalid = |problem: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let mut file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        if let Some(dir) = path.parent() {
            file.tls_server_config.resolve_paths(dir);
        }
        for (name, value) in &file.http_server_config.headers {
            check_header(name, value).map_err(invalid)?;
        }
        for (user, hash) in &file.basic_auth_users {
            if user.contains(':') || user.is_empty() {
                return Err(invalid(format!(
                    "basic_auth_users: `{user}` is not a usable user name (empty or containing `:`)"
                )));
            }
            match hash.expose().parse::<bcrypt::HashParts>() {
                Err(_) => {
                    return Err(invalid(format!(
                        "basic_auth_users: the password of `{user}` is not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                    )))
                }
                Ok(parts) if !(4..=31).contains(&parts.get_cost()) => {
                    return Err(invalid(format!(
                        "basic_auth_users: the bcrypt hash of `{user}` has cost {}, not one of 4-31",
                        parts.get_cost()
                    )))
                }
                Ok(_) => {}
            }
        }
        if let Some(admins) = &file.promsnmp_admin_users {
            if file.basic_auth_users.is_empty() {
                return Err(invalid(
                    "promsnmp_admin_users names admins but basic_auth_users is empty".into(),
                ));
            }
            if let Some(unknown) = admins
                .iter()
                .find(|a| !file.basic_auth_users.contains_key(*a))
            {
                return Err(invalid(format!(
                    "promsnmp_admin_users: `{unknown}` is not in basic_auth_users"
                )));
            }
        }
        file.rate_limit_interval().map_err(invalid)?;
        Ok(file)
    }

    /// The rate limit's interval between requests, if one is set.
    pub fn rate_limit_interval(&self) -> Result<Option<std::time::Duration>, String> {
        let text = self.rate_limit.interval.trim();
        if text.is_empty() {
            return Ok(None);
        }
        match crate::modules::file::parse_go_duration(text) {
            Some(d) if d.is_zero() => Ok(None),
            Some(d) => Ok(Some(d)),
            None => Err(format!(
                "rate_limit.interval: `{text}` is not a duration (like 1s or 100ms)"
            )),
        }
    }
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let Some(allowed) = ALLOWED_HEADERS
        .iter()
        .find(|h| h.eq_ignore_ascii_case(name))
    else {
        return Err(format!(
            "http_server_config.headers: `{name}` cannot be set (allowed: {})",
            ALLOWED_HEADERS.join(", ")
        ));
    };
    let ok = match *allowed {
        "X-Content-Type-Options" => value.eq_ignore_ascii_case("nosniff"),
        "X-Frame-Options" => {
            value.eq_ignore_ascii_case("deny") || value.eq_ignore_ascii_case("sameorigin")
        }
        _ => true,
    };
    if !ok {
        return Err(format!(
            "http_server_config.headers: `{value}` is not a valid value of {allowed}"
        ));
    }
    if warp::http::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "http_server_config.headers: the value of {allowed} has characters a header cannot carry"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> String {
        bcrypt::hash("pw", 4).unwrap()
    }

    fn parse(text: &str) -> Result<WebConfigFile, String> {
        WebConfigFile::parse(Path::new("/etc/promsnmp/web.yml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_toolkit_file_parses_and_relative_files_follow_it() {
        let file = parse(&format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  min_version: TLS12\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: {}\nrate_limit:\n  interval: 100ms\n  burst: 5\n",
            hash()
        ))
        .unwrap();
        assert!(file.tls_server_config.is_enabled());
        assert_eq!(
            file.tls_server_config.cert_file,
            "/etc/promsnmp/tls/server.crt"
        );
        assert_eq!(file.tls_server_config.key_file, "/abs/server.key");
        assert_eq!(
            file.tls_server_config.client_ca_file,
            "/etc/promsnmp/ca.crt"
        );
        assert_eq!(
            file.rate_limit_interval().unwrap(),
            Some(std::time::Duration::from_millis(100))
        );
        assert!(
            !format!("{file:?}").contains("$2y$"),
            "hashes never in Debug"
        );
        assert!(!parse("").unwrap().tls_server_config.is_enabled());
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        for (text, expected) in [
            ("basic_auth_users:\n  alice: secret\n", "not a bcrypt hash"),
            (
                "tls_server_config:\n  certfile: x\n",
                "unknown field `certfile`",
            ),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "cannot be set",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "not a valid value",
            ),
            ("promsnmp_admin_users: [bob]\n", "basic_auth_users is empty"),
            ("rate_limit:\n  interval: soon\n", "not a duration"),
            ("[not, a, map]\n", "/etc/promsnmp/web.yml"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let e = parse(&format!(
            "basic_auth_users:\n  alice: {}\npromsnmp_admin_users: [bob]\n",
            hash()
        ))
        .unwrap_err();
        assert!(e.contains("`bob` is not in basic_auth_users"), "{e}");
    }
}
