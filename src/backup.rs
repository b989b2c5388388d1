//! Backup and restore of the inventory (`promsnmp inventory …`), so an
//! operator never handles plaintext credentials by hand:
//!
//! - `export` asks a running replica for the inventory and writes it
//!   encrypted with `PROM_ENCRYPT_KEY`, in the inventory file's format;
//! - `import` posts a backup (encrypted or JSON) to a running replica — in a
//!   fleet it goes to Redis, every replica takes it and the leader writes
//!   the shared file (copying a backup over the file would not: the
//!   replicas rewrite the file from Redis);
//! - `decrypt` prints a file's JSON for reading; `encrypt` turns JSON into
//!   the file format, checked first.
//!
//! Files written here are new (an existing file is never overwritten) and
//! readable by their owner only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use warp::http::{Method, StatusCode};

use crate::cli::{InventoryCommand, Server};
use crate::config::Config;
use crate::crypto::{CryptoError, InventoryCipher};
use crate::http::client::{self, BaseUrl};
use crate::inventory::{InvalidInventory, Inventory};
use crate::persistence::{FileError, InventoryFile};

/// Bound on one exchange with the replica (a large inventory takes a while).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("PROM_ENCRYPT_KEY: {0}")]
    Key(#[from] CryptoError),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} exists: remove it or choose another name (nothing was written)")]
    Exists { path: PathBuf },
    #[error("{path}: not a valid inventory: {source}")]
    Invalid {
        path: PathBuf,
        source: InvalidInventory,
    },
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: StatusCode,
        message: String,
    },
}

/// Runs one subcommand; returns what to tell the operator.
pub async fn run(command: InventoryCommand, config: &Config) -> Result<String, BackupError> {
    let cipher = Arc::new(InventoryCipher::new(
        config.encrypt_key.expose().as_bytes(),
    )?);
    match command {
        InventoryCommand::Export {
            server,
            output,
            plaintext,
        } => {
            refuse_existing(&output)?;
            let (base, answer) = ask(
                &server,
                config,
                Method::GET,
                "/promsnmp/inventory",
                &[],
                Vec::new(),
            )
            .await?;
            let inventory =
                Inventory::from_json(&answer.body).map_err(|source| BackupError::Invalid {
                    path: PathBuf::from(format!("{base}/promsnmp/inventory")),
                    source,
                })?;
            if plaintext {
                write_new(&output, &pretty(&answer.body))?;
            } else {
                write_encrypted(&output, &inventory, &cipher)?;
            }
            let etag = answer
                .headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" at version {v}"))
                .unwrap_or_default();
            Ok(format!(
                "exported {} devices and {} seeds from {base}{etag} to {} ({})",
                inventory.devices.len(),
                inventory.discovery_seeds.len(),
                output.display(),
                if plaintext {
                    "plaintext JSON"
                } else {
                    "encrypted"
                }
            ))
        }
        InventoryCommand::Import {
            server,
            input,
            if_match,
        } => {
            let inventory = read(&input, &cipher)?;
            let mut headers = vec![("content-type", "application/json".to_string())];
            if let Some(tag) = if_match {
                headers.push(("if-match", tag));
            }
            let (base, answer) = ask(
                &server,
                config,
                Method::POST,
                "/promsnmp/inventory",
                &headers,
                inventory.to_json(),
            )
            .await?;
            let version = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v["version"].as_u64())
                .map(|v| format!(" (now version {v})"))
                .unwrap_or_default();
            Ok(format!(
                "imported {} devices and {} seeds from {} into {base}{version}",
                inventory.devices.len(),
                inventory.discovery_seeds.len(),
                input.display()
            ))
        }
        InventoryCommand::Decrypt { input, output } => {
            let json = pretty(&read(&input, &cipher)?.to_json());
            match output {
                Some(path) => {
                    refuse_existing(&path)?;
                    write_new(&path, &json)?;
                    Ok(format!(
                        "decrypted {} to {}",
                        input.display(),
                        path.display()
                    ))
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(&json)
                        .and_then(|()| stdout.flush())
                        .map_err(|source| BackupError::Io {
                            path: "standard output".into(),
                            source,
                        })?;
                    Ok(format!("decrypted {}", input.display()))
                }
            }
        }
        InventoryCommand::Encrypt { input, output } => {
            refuse_existing(&output)?;
            let bytes = std::fs::read(&input).map_err(|source| BackupError::Io {
                path: input.clone(),
                source,
            })?;
            let inventory =
                Inventory::from_json(&bytes).map_err(|source| BackupError::Invalid {
                    path: input.clone(),
                    source,
                })?;
            write_encrypted(&output, &inventory, &cipher)?;
            Ok(format!(
                "encrypted {} ({} devices, {} seeds) to {}",
                input.display(),
                inventory.devices.len(),
                inventory.discovery_seeds.len(),
                output.display()
            ))
        }
    }
}

/// An inventory file or backup, encrypted or plaintext JSON.
fn read(path: &Path, cipher: &Arc<InventoryCipher>) -> Result<Inventory, BackupError> {
    InventoryFile::new(path.to_path_buf(), cipher.clone())
        .load()?
        .ok_or_else(|| BackupError::Io {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        })
}

/// Creates `path` holding `inventory` in the file format (never replaces one).
fn write_encrypted(
    path: &Path,
    inventory: &Inventory,
    cipher: &InventoryCipher,
) -> Result<(), BackupError> {
    write_new(path, cipher.encrypt(&inventory.to_json()).as_bytes())
}

/// An early, clear refusal before any work; `write_new` is what guarantees
/// no file is replaced.
fn refuse_existing(path: &Path) -> Result<(), BackupError> {
    match path.try_exists() {
        Ok(false) => Ok(()),
        Ok(true) => Err(BackupError::Exists {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(BackupError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates `path` (owner-only) with `bytes`; never replaces a file.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::Exists {
                path: path.to_path_buf(),
            },
            _ => io(e),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// Indented JSON with a final newline (the input is valid JSON).
fn pretty(json: &[u8]) -> Vec<u8> {
    let mut out = serde_json::from_slice::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_vec_pretty(&v))
        .unwrap_or_else(|_| json.to_vec());
    out.push(b'\n');
    out
}

/// One request to the replica `server` names; an answer other than 2xx is
/// an error carrying the server's message.
async fn ask(
    server: &Server,
    config: &Config,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(BaseUrl, client::Answer), BackupError> {
    let (base, tls) = match &server.url {
        None => client::local_replica(
            config.bind_address,
            config.server_port,
            config.web_config_file.as_deref(),
        )
        .map_err(BackupError::Options)?,
        Some(url) => {
            let base =
                BaseUrl::parse(url).map_err(|e| BackupError::Options(format!("--url: {e}")))?;
            let tls = match (&server.ca_file, base.tls) {
                (Some(ca), _) => Some(client::tls_config_with_ca(ca).map_err(BackupError::Options)?),
                (None, true) => {
                    return Err(BackupError::Options(format!(
                        "--url {base} is https: give the CA certificates that sign its certificate with --cacert"
                    )))
                }
                (None, false) => None,
            };
            (base, tls)
        }
    };
    let mut headers = headers.to_vec();
    if let Some(user) = &server.user {
        let password = password(server)?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.push(("authorization", format!("Basic {token}")));
    }
    let answer = client::request(&base, method, path, &headers, body, tls, REQUEST_TIMEOUT)
        .await
        .map_err(BackupError::Unreachable)?;
    if !answer.status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| {
                let message = v["message"].as_str().or(v["error"].as_str())?;
                Some(match v["field"].as_str() {
                    Some(field) => format!("{field}: {message}"),
                    None => message.to_string(),
                })
            })
            .unwrap_or_else(|| answer.text().trim().to_string());
        return Err(BackupError::Refused {
            url: format!("{base}{path}"),
            status: answer.status,
            message,
        });
    }
    Ok((base, answer))
}

/// `--password-file`'s first line, else `PROMSNMP_PASSWORD`.
fn password(server: &Server) -> Result<String, BackupError> {
    match &server.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| text.lines().next().unwrap_or_default().to_string())
            .map_err(|source| BackupError::Io {
                path: path.clone(),
                source,
            }),
        None => std::env::var("PROMSNMP_PASSWORD").map_err(|_| {
            BackupError::Options(
                "--user needs a password: --password-file FILE or PROMSNMP_PASSWORD".into(),
            )
        }),
    }
}
