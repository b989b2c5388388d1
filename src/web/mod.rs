//! Who may reach the HTTP server and how: the web configuration file
//! (`PROMSNMP_WEB_CONFIG_FILE`, the Prometheus exporter-toolkit's format) —
//! TLS, basic-auth users and their roles, response headers, a rate limit.
//! The file and the certificates it names are watched and re-read when they
//! change; a change that does not load keeps the settings in force.
//!
//! - [`file`]  — the file's format and checks.
//! - [`tls`]   — rustls configurations (server; the healthcheck's client).
//! - [`users`] — basic authentication and roles.

pub mod file;
pub mod tls;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use warp::http::{HeaderName, HeaderValue};

use crate::telemetry::Telemetry;
use file::WebConfigFile;
pub use users::{AuthError, Identity};

/// How often the file and its certificates are checked for changes.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("web configuration {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// The settings of one version of the web configuration.
pub struct Settings {
    pub tls: Option<tls::ServerTls>,
    pub users: users::Users,
    /// Added to every response (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    limiter: Option<RateLimiter>,
    /// The file and the certificate files it names: watched for changes.
    files: Vec<PathBuf>,
}

impl Settings {
    fn none() -> Settings {
        Settings {
            tls: None,
            users: users::Users::new(Default::default(), None),
            headers: Vec::new(),
            limiter: None,
            files: Vec::new(),
        }
    }

    fn build(path: &Path, text: &str) -> Result<Settings, WebConfigError> {
        let file = WebConfigFile::parse(path, text)?;
        let invalid = |problem: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let tls = if file.tls_server_config.is_enabled() {
            Some(tls::server_config(&file.tls_server_config).map_err(invalid)?)
        } else {
            None
        };
        let limiter = match file.rate_limit_interval().map_err(invalid)? {
            None => None,
            Some(_) if file.rate_limit.burst == 0 => {
                return Err(invalid(
                    "rate_limit.burst must be at least 1 when an interval is set".into(),
                ))
            }
            Some(interval) => Some(RateLimiter::new(interval, file.rate_limit.burst)),
        };
        let headers = file
            .http_server_config
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        let mut files = vec![path.to_path_buf()];
        files.extend(file.tls_server_config.files());
        Ok(Settings {
            files,
            tls,
            users: users::Users::new(file.basic_auth_users, file.promsnmp_admin_users),
            headers,
            limiter,
        })
    }

    /// Whether the rate limit lets one more request through now.
    pub fn admit_request(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.admit())
    }
}

/// The web configuration in force, and the files it was read from.
pub struct Web {
    path: Option<PathBuf>,
    current: RwLock<Arc<Settings>>,
    stamps: Mutex<Vec<Stamp>>,
}

/// What identifies a version of a file: length, modification time, inode.
type Stamp = Option<(u64, SystemTime, u64)>;

impl Web {
    /// No web configuration: plain HTTP, no users.
    pub fn disabled() -> Arc<Web> {
        Arc::new(Web {
            path: None,
            current: RwLock::new(Arc::new(Settings::none())),
            stamps: Mutex::new(Vec::new()),
        })
    }

    /// Reads and checks the file (and the certificates it names).
    pub fn load(path: Option<&Path>) -> Result<Arc<Web>, WebConfigError> {
        let Some(path) = path else {
            return Ok(Web::disabled());
        };
        let (settings, stamps) = read(path)?;
        let web = Web {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(settings)),
            stamps: Mutex::new(stamps),
        };
        web.log_settings("web configuration loaded");
        Ok(Arc::new(web))
    }

    pub fn is_configured(&self) -> bool {
        self.path.is_some()
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.current
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The TLS acceptor for a new connection; `None` serves plain HTTP.
    pub fn tls_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.settings()
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()))
    }

    /// Re-reads the file and its certificates when they change, until `cancel`.
    pub async fn watch(self: Arc<Self>, telemetry: Arc<Telemetry>, cancel: CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Metadata only: the file is read again when a stamp changed.
            let known = self.stamps.lock().map(|s| s.clone()).unwrap_or_default();
            let files = self.settings().files.clone();
            let changed = tokio::task::spawn_blocking(move || stamps(&files) != known)
                .await
                .unwrap_or(false);
            if !changed {
                continue;
            }
            let path_for_read = path.clone();
            let result = tokio::task::spawn_blocking(move || read(&path_for_read)).await;
            match result {
                Ok(Ok((settings, stamps))) => {
                    if let Ok(mut current) = self.current.write() {
                        *current = Arc::new(settings);
                    }
                    if let Ok(mut known) = self.stamps.lock() {
                        *known = stamps;
                    }
                    telemetry.web_config_reload(true);
                    self.log_settings("web configuration changed on disk: reloaded");
                }
                Ok(Err(e)) => {
                    // Remember what failed, so it is reported once, not every second.
                    let files = self.settings().files.clone();
                    if let Ok(failed) = tokio::task::spawn_blocking(move || stamps(&files)).await {
                        if let Ok(mut known) = self.stamps.lock() {
                            *known = failed;
                        }
                    }
                    telemetry.web_config_reload(false);
                    tracing::error!(error = %e, "web configuration changed on disk but does not load; the previous one stays in force");
                }
                Err(e) => tracing::error!(error = %e, "web configuration reload task failed"),
            }
        }
    }

    fn log_settings(&self, message: &str) {
        let settings = self.settings();
        let path = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let tls = match &settings.tls {
            None => "off".to_string(),
            Some(t) => format!("on (client certificates: {:?})", t.client_auth),
        };
        let users = settings.users.count();
        tracing::info!(%path, %tls, users, admins_listed = !settings.users.all_admins(), rate_limit = settings.limiter.is_some(), "{message}");
        if let Some(t) = &settings.tls {
            for w in &t.warnings {
                tracing::warn!(%path, "{w}");
            }
        }
        if users > 0 && settings.users.all_admins() {
            tracing::warn!(%path, "every user of basic_auth_users is an admin (may change the inventory); list the admins under promsnmp_admin_users to give the others scrape access only");
        }
        if users == 0 {
            tracing::warn!(%path, "no basic_auth_users: whoever reaches the port (and passes the TLS client check, if any) can read the inventory's SNMP credentials and change it");
        }
    }
}

/// Reads the file and builds its settings, with the stamps of what was read.
fn read(path: &Path) -> Result<(Settings, Vec<Stamp>), WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let settings = Settings::build(path, &text)?;
    let stamps = stamps(&settings.files);
    Ok((settings, stamps))
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

/// `rate_limit`: a token bucket of `burst` requests refilled one per `interval`.
struct RateLimiter {
    interval: Duration,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            interval,
            burst: burst as f64,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }

    fn admit(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        let (tokens, last) = *state;
        let now = Instant::now();
        let refilled = (tokens
            + now.duration_since(last).as_secs_f64() / self.interval.as_secs_f64())
        .min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_lets_a_burst_through_then_one_per_interval() {
        let limiter = RateLimiter::new(Duration::from_secs(3600), 3);
        assert!(limiter.admit() && limiter.admit() && limiter.admit());
        assert!(!limiter.admit());
    }

    #[test]
    fn a_missing_or_bad_file_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("web.yml");
        let e = Web::load(Some(&missing)).err().unwrap().to_string();
        assert!(e.contains("web.yml") && e.contains("cannot read"), "{e}");
        std::fs::write(
            &missing,
            "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n",
        )
        .unwrap();
        let e = Web::load(Some(&missing)).err().unwrap().to_string();
        assert!(e.contains("nowhere.crt"), "{e}");
        std::fs::write(&missing, "rate_limit:\n  interval: 1s\n").unwrap();
        let e = Web::load(Some(&missing)).err().unwrap().to_string();
        assert!(e.contains("burst"), "{e}");
        std::fs::write(&missing, "").unwrap();
        let web = Web::load(Some(&missing)).unwrap();
        assert!(web.is_configured() && web.tls_acceptor().is_none());
    }
}
