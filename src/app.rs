//! Wiring: builds one replica from a validated [`Config`] — loads the
//! inventory file (refusing to start on a bad one), creates the store,
//! collector and discovery, binds the HTTP port, runs until the shutdown
//! signal, then drains in-flight work and writes the inventory a last time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::collector::Collector;
use crate::config::Config;
use crate::crypto::{InventoryCipher, WELL_KNOWN_KEY};
use crate::discovery::Discovery;
use crate::fleet::{Fleet, RedisStore};
use crate::inventory::Inventory;
use crate::modules::{ModuleLoadError, ModuleSet, Modules};
use crate::persistence::{FileError, InventoryFile, InventoryWriter};
use crate::store::{MemoryStore, Store};
use crate::telemetry::Telemetry;

/// How long shutdown waits for background work before giving up on it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may run after the shutdown signal.
const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("PROM_ENCRYPT_KEY: {0}")]
    Key(#[from] crate::crypto::CryptoError),
    #[error("{0}; refusing to start so the file is not overwritten (fix the file or PROM_ENCRYPT_KEY, or move the file away to start empty)")]
    InventoryFile(#[from] FileError),
    #[error("{0}; refusing to start")]
    Redis(#[from] crate::fleet::connection::ConnectorError),
    #[error("modules: {0}; refusing to start (fix the file, or unset PROMSNMP_MODULES_FILE / PROMSNMP_MODULE_RULES)")]
    Modules(#[from] crate::modules::ModuleLoadError),
    #[error("{0}; refusing to start (fix the file or unset PROMSNMP_WEB_CONFIG_FILE)")]
    Web(#[from] crate::web::WebConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The Redis-backed store and the connector (for pub/sub), in fleet mode.
type FleetParts = (Arc<RedisStore>, Arc<crate::fleet::Connector>);

/// What the HTTP handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub writer: Arc<InventoryWriter>,
    pub collector: Arc<Collector>,
    pub discovery: Arc<Discovery>,
    /// The modules in force (replaced on reload).
    pub modules: Arc<Modules>,
    pub telemetry: Arc<Telemetry>,
    /// Fleet coordination; `None` standalone.
    pub fleet: Option<Arc<Fleet>>,
    /// Rendered scrape bodies of the latest polls.
    pub render_cache: crate::http::render_cache::RenderCache,
    pub started_at: Instant,
    ready: AtomicBool,
    /// Fires when the replica shuts down; background tasks stop on it.
    pub cancel: CancellationToken,
}

impl AppState {
    /// Serving, and (in a fleet) able to read the fleet's inventory.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .fleet
                .as_ref()
                .is_none_or(|fleet| fleet.inventory_error().is_none())
    }

    /// Builds a replica's state: loads the inventory file and creates the parts.
    pub fn build(config: Config) -> Result<Arc<AppState>, AppError> {
        let cipher = Arc::new(InventoryCipher::new(
            config.encrypt_key.expose().as_bytes(),
        )?);
        if config.encrypt_key.expose() == WELL_KNOWN_KEY {
            tracing::warn!("PROM_ENCRYPT_KEY is the well-known default key: anyone can decrypt the inventory file and its SNMP credentials; set your own 16, 24 or 32 byte key");
        }
        let file = Arc::new(InventoryFile::new(
            config.inventory_file.clone(),
            cipher.clone(),
        ));
        let modules = Arc::new(Modules::load(config.modules.clone())?);
        let inventory = file.load()?.unwrap_or_default();
        // The store starts at version 1: that version is what the file holds.
        file.mark_written(1);
        tracing::info!(
            path = %config.inventory_file.display(),
            devices = inventory.devices.len(),
            seeds = inventory.discovery_seeds.len(),
            "inventory loaded"
        );
        let telemetry = Arc::new(Telemetry::new());
        report_modules(&modules.current(), &inventory, &telemetry);
        telemetry
            .inventory_devices
            .set(inventory.devices.len() as i64);
        telemetry
            .discovery_seeds
            .set(inventory.discovery_seeds.len() as i64);
        // `/metrics` serves a device's last poll until the next round has
        // surely replaced it; `/snmp` only within CACHE_EXP_MILLIS.
        let retention = config.metrics_max_age();
        let (store, redis): (Arc<dyn Store>, Option<FleetParts>) = match &config.redis_url {
            None => (
                Arc::new(MemoryStore::new(
                    inventory,
                    retention,
                    config.cache_entry_count,
                )),
                None,
            ),
            Some(url) => {
                let (redis_store, client) =
                    redis_store(&config, url.expose(), cipher.clone(), &telemetry, inventory)?;
                (redis_store.clone(), Some((redis_store, client)))
            }
        };
        // Standalone, every change is written before it is acknowledged; in a
        // fleet the leader writes each version through (fenced by its epoch).
        let mut writer =
            InventoryWriter::new(store.clone(), file, telemetry.clone(), redis.is_none());
        if redis.is_some() {
            // Acknowledged once in the file an emptied Redis is restored
            // from; a new leader takes over within lease + renew.
            let fleet = &config.fleet;
            writer = writer.acknowledge_when_leader_wrote(
                fleet.lease_ttl + fleet.renew_period + fleet.redis_timeout,
            );
        }
        let writer = Arc::new(writer);
        let collector = Arc::new(Collector::new(
            store.clone(),
            modules.clone(),
            telemetry.clone(),
            crate::poll::PollSettings {
                max_repetitions: config.snmp_max_repetitions,
                sessions_per_poll: config.snmp_sessions_per_poll,
                max_varbinds: config.snmp_max_varbinds_per_poll,
            },
            config.poll_concurrency,
            config.cache_expiry,
        ));
        let cancel = CancellationToken::new();
        let discovery = Arc::new(Discovery::new(
            writer.clone(),
            modules.clone(),
            telemetry.clone(),
            crate::discovery::DiscoverySettings {
                concurrency: config.discovery_concurrency,
                max_addresses: config.discovery_max_addresses,
                max_repetitions: config.snmp_max_repetitions,
                replica: config.fleet.replica_id.clone(),
            },
            cancel.clone(),
        ));
        let fleet = redis.map(|(redis_store, connector)| {
            Arc::new(Fleet::new(
                redis_store,
                connector,
                config.fleet.clone(),
                writer.clone(),
                discovery.clone(),
                telemetry.clone(),
                config.discovery_schedule.clone(),
                config.discovery_on_start,
            ))
        });
        if let Some(fleet) = &fleet {
            fleet.set_member_info(member_info(&modules.current()));
        }
        let render_cache = crate::http::render_cache::RenderCache::new(config.cache_entry_count);
        Ok(Arc::new(AppState {
            config: Arc::new(config),
            store,
            writer,
            collector,
            discovery,
            modules,
            telemetry,
            fleet,
            render_cache,
            started_at: Instant::now(),
            ready: AtomicBool::new(false),
            cancel,
        }))
    }
}

impl AppState {
    /// Reads the module files and rules again (`SIGHUP`, `POST /-/reload`).
    /// A bad configuration keeps the one in force; either way the log and
    /// the self-metrics say what happened.
    pub async fn reload_modules(&self, reason: &str) -> Result<Arc<ModuleSet>, ModuleLoadError> {
        // Reading and compiling a large file takes a while: off the async threads.
        let modules = self.modules.clone();
        let result = tokio::task::spawn_blocking(move || modules.reload())
            .await
            .unwrap_or_else(|e| Err(ModuleLoadError::Rules(format!("reload task failed: {e}"))));
        match result {
            Ok(set) => {
                self.telemetry.module_reload(true);
                if let Some(fleet) = &self.fleet {
                    fleet.set_member_info(member_info(&set));
                }
                tracing::info!(reason, "modules reloaded");
                match self.store.inventory().await {
                    Ok(snapshot) => report_modules(&set, &snapshot.inventory, &self.telemetry),
                    Err(_) => self
                        .telemetry
                        .set_modules(set.module_count(), &set.fingerprint),
                }
                Ok(set)
            }
            Err(e) => {
                self.telemetry.module_reload(false);
                tracing::error!(reason, error = %e, "module reload failed; the previous modules stay in force");
                Err(e)
            }
        }
    }
}

/// What a replica tells the fleet of itself: so the console can show
/// replicas running another version or other module files.
fn member_info(set: &ModuleSet) -> String {
    serde_json::json!({
        "version": crate::identity::VERSION,
        "commit": crate::identity::COMMIT,
        "fingerprint": set.fingerprint,
    })
    .to_string()
}

/// Logs and exposes the loaded modules, and the devices naming modules that
/// are not loaded (they are polled with their other modules).
fn report_modules(set: &ModuleSet, inventory: &Inventory, telemetry: &Telemetry) {
    telemetry.set_modules(set.module_count(), &set.fingerprint);
    tracing::info!(
        modules = set.module_count(),
        auths = set.auth_count(),
        metrics = set.metric_count(),
        files = set.files.len(),
        fingerprint = %set.fingerprint,
        "modules loaded"
    );
    let unknown = set.unknown_in(inventory);
    for (module, devices) in &unknown {
        tracing::warn!(module = %module, devices = devices.len(), first = %devices[0], "devices name a module that is not loaded; they are polled with their other modules");
    }
    telemetry.set_unknown_modules(&unknown);
}

/// Runs a replica until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    tracing::info!(
        version = crate::identity::VERSION,
        commit = crate::identity::COMMIT,
        rustc = crate::identity::RUSTC_VERSION,
        "promsnmp starting"
    );
    let settings = config
        .settings()
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| match value.contains(char::is_whitespace) {
            true => format!("{name}={value:?}"),
            false => format!("{name}={value}"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    tracing::info!(%settings, "configuration (secrets redacted)");
    let web = crate::web::Web::load(config.web_config_file.as_deref())?;
    let state = AppState::build(config)?;
    let addr = SocketAddr::new(state.config.bind_address, state.config.server_port);
    let listener = listen(addr).map_err(|source| AppError::Bind { addr, source })?;
    let connections = connection_cap(&state.config);
    let scheme = if web.tls_acceptor().is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%addr, scheme, max_connections = connections.cap(), "promsnmp listening");
    if !web.is_configured() {
        tracing::warn!(%addr, "no authentication: whoever reaches this port can read the inventory's SNMP credentials and change it (/promsnmp/*); set PROMSNMP_WEB_CONFIG_FILE (users, TLS), or keep the port on a management network or behind the shipped HAProxy, which refuses /promsnmp/* from outside its admin networks");
    }

    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(
        state
            .collector
            .clone()
            .run(state.config.collection_interval, state.cancel.clone()),
    );
    match &state.fleet {
        // The leader runs discovery; the fleet loop starts it on election.
        Some(fleet) => {
            tracing::info!(replica = %fleet.replica_id(), "fleet mode: coordinating through Redis");
            tasks.spawn(fleet.clone().run(state.cancel.clone()));
        }
        None => {
            if let Some(schedule) = state.config.discovery_schedule.clone() {
                tasks.spawn(state.discovery.clone().run_schedule(
                    schedule,
                    None,
                    state.cancel.clone(),
                ));
            }
            if state.config.discovery_on_start {
                let discovery = state.discovery.clone();
                tasks.spawn(
                    async move { discovery.run_saved_seeds("DISCOVERY_ON_START", None).await },
                );
            }
        }
    }
    tasks.spawn(reload_on_sighup(state.clone()));
    tasks.spawn(
        web.clone()
            .watch(state.telemetry.clone(), state.cancel.clone()),
    );
    state.ready.store(true, Ordering::Relaxed);

    let stop_serving = CancellationToken::new();
    let server = crate::http::server::serve(
        listener,
        state.clone(),
        web,
        connections,
        stop_serving.clone(),
    );
    tokio::pin!(server);
    tokio::select! {
        _ = &mut server => {}
        _ = shutdown => {
            tracing::info!("shutdown requested: finishing in-flight requests");
            state.ready.store(false, Ordering::Relaxed);
            stop_serving.cancel();
            if tokio::time::timeout(GRACEFUL_TIMEOUT, &mut server).await.is_err() {
                tracing::warn!("requests still open {GRACEFUL_TIMEOUT:?} after the shutdown signal; closing them");
            }
        }
    }

    state.cancel.cancel();
    tasks.close();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        tasks.wait().await;
        state.discovery.drain().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("background work did not finish within {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    // Standalone: whatever the last change was, it is on disk (a no-op when
    // already written). In a fleet the leader wrote it before releasing the lease.
    if state.fleet.is_none() {
        if let Ok(snapshot) = state.store.inventory().await {
            let _ = state.writer.persist(&snapshot).await;
        }
    }
    tracing::info!("promsnmp stopped");
    Ok(())
}

/// Binds with a backlog of 1024 (std's 128 drops connections arriving in
/// bursts while the cap makes them wait).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The connection cap: `PROMSNMP_MAX_CONNECTIONS`, lowered when the
/// descriptor limit would leave too few for SNMP.
fn connection_cap(config: &Config) -> Arc<crate::http::connections::Connections> {
    use crate::http::connections;
    let reserve = connections::descriptor_reserve(
        config.poll_concurrency,
        config.snmp_sessions_per_poll,
        config.discovery_concurrency,
    );
    let (cap, lowered_by) = connections::connection_cap(config.http.max_connections, reserve);
    if let Some(limit) = lowered_by {
        tracing::warn!(
            requested = config.http.max_connections,
            cap,
            descriptor_limit = limit,
            reserve,
            "PROMSNMP_MAX_CONNECTIONS lowered: the descriptor limit (ulimit -n) leaves only this many after the reserve for SNMP, Redis and files; raise the limit to allow more"
        );
    }
    connections::Connections::new(cap)
}

/// Reloads the modules on every SIGHUP until shutdown.
async fn reload_on_sighup(state: Arc<AppState>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reload modules with POST /-/reload");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            received = hangups.recv() => {
                if received.is_none() {
                    return;
                }
                let _ = state.reload_modules("SIGHUP").await;
            }
        }
    }
}

/// Connects nothing yet: connections are opened on first use, so a replica
/// starts (and serves) while Redis is down. The URL and the TLS files are
/// checked here, before any port is bound.
fn redis_store(
    config: &Config,
    url: &str,
    cipher: Arc<InventoryCipher>,
    telemetry: &Arc<Telemetry>,
    inventory: Inventory,
) -> Result<FleetParts, AppError> {
    let connector = Arc::new(crate::fleet::Connector::new(
        url,
        &config.fleet.redis_tls,
        config.fleet.redis_timeout,
    )?);
    // A walk that takes longer than this is presumed dead and another replica may poll.
    let lock_ttl = config.collection_interval.min(Duration::from_secs(60));
    let store = RedisStore::new(
        connector.clone(),
        &config.site_key(),
        cipher,
        config.fleet.replica_id.clone(),
        config.fleet.redis_timeout,
        telemetry.clone(),
        inventory,
        config.metrics_max_age(),
        lock_ttl,
    );
    Ok((Arc::new(store), connector))
}
