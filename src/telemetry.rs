//! The exporter's own metrics (`/actuator/prometheus`): cache hits and misses,
//! inventory size, SNMP requests / errors / poll durations by device, scrape
//! durations, HTTP requests, discovery progress, the fleet's state (leader,
//! epoch, Redis, file write-through), `process_*` and the container's memory
//! limit. Other modules report into it; it renders itself in the Prometheus
//! text format.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use std::collections::BTreeMap;

use prometheus::IntGaugeVec;

use crate::poll::PollStats;

pub struct Telemetry {
    pub registry: Registry,
    /// Devices (by name) that have per-device series, so series of devices
    /// that leave the inventory can be dropped.
    devices_with_series: std::sync::Mutex<std::collections::HashSet<String>>,
    cache_gets: IntCounterVec,
    pub inventory_devices: IntGauge,
    pub discovery_seeds: IntGauge,
    snmp_requests: IntCounterVec,
    snmp_poll_errors: IntCounterVec,
    /// One histogram for every poll: per device, the last poll's duration is
    /// `snmp_scrape_duration_seconds` on `/snmp` (ten thousand devices ×
    /// buckets would be too many series and too much memory here).
    snmp_poll_duration: prometheus::Histogram,
    pub scrape_duration: HistogramVec,
    pub http_requests: IntCounterVec,
    /// `/metrics` answers cut short by their deadline.
    pub metrics_incomplete: IntCounter,
    /// HTTP connections open now.
    pub http_connections: IntGauge,
    /// HTTP connections closed by the server, by why (`evicted`, `idle`,
    /// `header_timeout`, `tls_handshake`, `error`).
    pub http_connections_closed: IntCounterVec,
    web_config_reloads: IntCounterVec,
    /// Requests refused by authentication, by why (`missing`, `wrong`, `role`).
    pub http_auth_refusals: IntCounterVec,
    pub polls_in_flight: IntGauge,
    pub collection_rounds: IntCounter,
    pub discoveries_running: IntGauge,
    pub discovery_probes: IntCounter,
    pub discovery_found: IntCounter,
    pub inventory_file_writes: IntCounterVec,
    pub cache_entries: IntGauge,
    /// Polls this replica performed (background rounds and scrapes).
    pub replica_polls: IntCounter,
    // Fleet mode only (stay at zero standalone).
    pub leader: IntGauge,
    pub leader_epoch: IntGauge,
    pub leadership_transitions: IntCounterVec,
    pub lease_renew_duration: prometheus::Histogram,
    pub stale_epoch_rejections: IntCounter,
    pub redis_errors: IntCounterVec,
    pub fleet_members: IntGauge,
    /// 1 while Redis answers heartbeats; registered by the fleet only, so
    /// its absence marks a standalone replica (alerts scope on it).
    pub redis_up: IntGauge,
    /// 1 while this leader holds an inventory version it has not written to
    /// the file (the write failed or could not run before its deadline).
    pub inventory_file_behind: IntGauge,
    /// 1 while the fleet's inventory in Redis cannot be read with this
    /// replica's key (fleet mode only).
    pub fleet_inventory_unreadable: IntGauge,
    /// 1 while Redis' maxmemory-policy may evict keys (fleet mode only).
    pub redis_eviction_unsafe: IntGauge,
    /// Times this replica found Redis' epoch counter lost and put it back.
    pub redis_epoch_restored: IntCounter,
    /// Times the leader put the inventory back into Redis, by `reason`:
    /// `empty` (none there) or `reloaded` (a restarted or promoted server's).
    pub inventory_restores: IntCounterVec,
    /// Inventory changes refused after retrying against concurrent changes.
    pub inventory_change_conflicts: IntCounter,
    /// Fleet changes applied in Redis but not confirmed safe in time (no
    /// file write by a leader, or no Redis replica's confirmation).
    pub inventory_changes_not_durable: IntCounter,
    /// Values a module could not turn into series (wrong type on the wire…).
    pub decode_skipped: IntCounter,
    /// Agents found to answer only smaller GETBULK requests.
    pub answer_caps_learned: IntCounter,
    /// Modules and auths loaded, and the loaded configuration's fingerprint.
    modules_loaded: IntGauge,
    modules_info: IntGaugeVec,
    /// Reloads of the module files by result (`ok`, `error`).
    module_reloads: IntCounterVec,
    /// Devices naming a module that is not loaded, by module.
    unknown_modules: IntGaugeVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

/// Most devices with per-device series (the inventory's, plus scraped
/// targets outside it until the next inventory change drops those).
const MAX_DEVICES_WITH_SERIES: usize = 50_000;

const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector");
        gauge_vec(
            &registry,
            "promsnmp_build_info",
            "1, labelled with the version, the git commit and the compiler of this binary.",
            &["version", "revision", "rustversion"],
        )
        .with_label_values(&[
            crate::identity::VERSION,
            crate::identity::COMMIT,
            crate::identity::RUSTC_VERSION,
        ])
        .set(1);
        let t = Telemetry {
            cache_gets: counter_vec(
                &registry,
                "cache_gets_total",
                "Cache lookups by result.",
                &["cache", "result"],
            ),
            inventory_devices: gauge(
                &registry,
                "promsnmp_inventory_device_count",
                "Devices in the inventory.",
            ),
            discovery_seeds: gauge(
                &registry,
                "promsnmp_inventory_seed_count",
                "Saved discovery seeds.",
            ),
            snmp_requests: counter_vec(
                &registry,
                "promsnmp_snmp_requests_total",
                "SNMP requests sent (including retries) by device.",
                &["device"],
            ),
            snmp_poll_errors: counter_vec(
                &registry,
                "promsnmp_snmp_poll_errors_total",
                "Polls that failed, by device.",
                &["device"],
            ),
            snmp_poll_duration: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "promsnmp_snmp_poll_duration_seconds",
                        "Time one poll of a device took (every device; a device's last poll: snmp_scrape_duration_seconds on /snmp).",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                )
                .expect("valid metric");
                registry
                    .register(Box::new(h.clone()))
                    .expect("unique metric");
                h
            },
            scrape_duration: histogram_vec(
                &registry,
                "promsnmp_scrape_duration_seconds",
                "Time to answer a scrape, by endpoint.",
                &["endpoint"],
                DURATION_BUCKETS.to_vec(),
            ),
            http_requests: counter_vec(
                &registry,
                "promsnmp_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            metrics_incomplete: counter(
                &registry,
                "promsnmp_metrics_incomplete_total",
                "/metrics answers that served only the devices read before the scrape's deadline.",
            ),
            http_connections: gauge(
                &registry,
                "promsnmp_http_connections",
                "HTTP connections open now.",
            ),
            http_connections_closed: counter_vec(
                &registry,
                "promsnmp_http_connections_closed_total",
                "HTTP connections the server closed, by reason (evicted: the connection cap was reached and it was the longest idle; idle, header_timeout, tls_handshake, error).",
                &["reason"],
            ),
            web_config_reloads: counter_vec(
                &registry,
                "promsnmp_web_config_reloads_total",
                "Reloads of the web configuration after it or its certificates changed on disk, by result (ok, error).",
                &["result"],
            ),
            http_auth_refusals: counter_vec(
                &registry,
                "promsnmp_http_auth_refusals_total",
                "Requests refused by the web configuration's authentication, by reason (missing, wrong, role).",
                &["reason"],
            ),
            polls_in_flight: gauge(
                &registry,
                "promsnmp_polls_in_flight",
                "Device polls running now.",
            ),
            collection_rounds: counter(
                &registry,
                "promsnmp_collection_rounds_total",
                "Background collection rounds completed.",
            ),
            discoveries_running: gauge(
                &registry,
                "promsnmp_discoveries_running",
                "Discovery jobs running now.",
            ),
            discovery_probes: counter(
                &registry,
                "promsnmp_discovery_probes_total",
                "Addresses probed by discovery.",
            ),
            discovery_found: counter(
                &registry,
                "promsnmp_discovery_found_total",
                "Agents found by discovery.",
            ),
            inventory_file_writes: counter_vec(
                &registry,
                "promsnmp_inventory_file_writes_total",
                "Inventory file writes by result.",
                &["result"],
            ),
            cache_entries: gauge(
                &registry,
                "promsnmp_cache_entries",
                "Polls held in the metrics cache.",
            ),
            replica_polls: counter(
                &registry,
                "promsnmp_replica_polls_total",
                "Device polls this replica performed (in a fleet each device is polled by one replica per interval).",
            ),
            leader: gauge(
                &registry,
                "promsnmp_leader",
                "1 while this replica is the fleet leader.",
            ),
            leader_epoch: gauge(
                &registry,
                "promsnmp_leader_epoch",
                "Leadership epoch (fencing token) this replica last held or saw.",
            ),
            leadership_transitions: counter_vec(
                &registry,
                "promsnmp_leadership_transitions_total",
                "Times this replica became leader or stepped down.",
                &["to"],
            ),
            lease_renew_duration: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "promsnmp_lease_renew_duration_seconds",
                        "Round trip of a leader lease renewal.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                )
                .expect("valid metric");
                registry
                    .register(Box::new(h.clone()))
                    .expect("unique metric");
                h
            },
            stale_epoch_rejections: counter(
                &registry,
                "promsnmp_stale_epoch_rejections_total",
                "Leader-only writes of this replica refused because its epoch was stale.",
            ),
            redis_errors: counter_vec(
                &registry,
                "promsnmp_redis_errors_total",
                "Redis operations that failed or timed out, by operation and reason (timeout, connection, tls, auth, acl, oom, readonly, loading, sentinel, script, other).",
                &["operation", "reason"],
            ),
            fleet_members: gauge(
                &registry,
                "promsnmp_fleet_members",
                "Live replicas seen in the last membership heartbeat.",
            ),
            redis_up: IntGauge::new(
                "promsnmp_redis_up",
                "1 while Redis answers this replica's heartbeats (fleet mode only).",
            )
            .expect("valid metric"),
            redis_eviction_unsafe: IntGauge::new(
                "promsnmp_redis_eviction_unsafe",
                "1 while Redis' maxmemory-policy is not noeviction (fleet mode only): Redis may drop the lease, the epoch or the inventory, so the fleet elects no leader and refuses inventory changes.",
            )
            .expect("valid metric"),
            redis_epoch_restored: counter(
                &registry,
                "promsnmp_redis_epoch_restored_total",
                "Times this replica found Redis' epoch counter lost (eviction, restart without persistence, FLUSHALL) and put it back from the highest epoch it had seen.",
            ),
            inventory_restores: counter_vec(
                &registry,
                "promsnmp_inventory_restores_total",
                "Times this replica, as leader, put the inventory back into Redis: reason=\"empty\" (Redis held none: a restart without persistence, FLUSHALL) or reason=\"reloaded\" (a restarted Redis reloaded it from its saved data, or a promoted replica held it: possibly older than the last changes).",
                &["reason"],
            ),
            inventory_change_conflicts: counter(
                &registry,
                "promsnmp_inventory_change_conflicts_total",
                "Inventory changes refused (503) because concurrent changes kept winning for 10 s.",
            ),
            inventory_changes_not_durable: counter(
                &registry,
                "promsnmp_inventory_changes_not_durable_total",
                "Fleet inventory changes applied in Redis but not confirmed safe in time (answered 503): no leader wrote them to the file, or no Redis replica confirmed them.",
            ),
            fleet_inventory_unreadable: IntGauge::new(
                "promsnmp_fleet_inventory_unreadable",
                "1 while the fleet's inventory in Redis cannot be read with this replica's PROM_ENCRYPT_KEY (fleet mode only): the replica is not ready and polls nothing.",
            )
            .expect("valid metric"),
            inventory_file_behind: gauge(
                &registry,
                "promsnmp_inventory_file_behind",
                "1 while this leader holds an inventory version not yet written to the inventory file.",
            ),
            decode_skipped: counter(
                &registry,
                "promsnmp_decode_skipped_values_total",
                "Polled values a module could not turn into series (a wrong type on the wire, a date that does not parse).",
            ),
            answer_caps_learned: counter(
                &registry,
                "promsnmp_snmp_request_size_lowered_total",
                "Times an agent left a large GETBULK unanswered but answered a smaller one, so its polls ask for fewer varbinds per request.",
            ),
            modules_loaded: gauge(
                &registry,
                "promsnmp_modules_loaded",
                "Modules loaded (built-in and from PROMSNMP_MODULES_FILE).",
            ),
            modules_info: gauge_vec(
                &registry,
                "promsnmp_modules_info",
                "1 for the fingerprint of the loaded modules and rules: replicas with different files differ here.",
                &["fingerprint"],
            ),
            module_reloads: counter_vec(
                &registry,
                "promsnmp_module_reloads_total",
                "Reloads of the module files and rules, by result; after an error the previous modules stay in force.",
                &["result"],
            ),
            unknown_modules: gauge_vec(
                &registry,
                "promsnmp_inventory_unknown_module_devices",
                "Devices naming a module that is not loaded (polled with their other modules), by module.",
                &["module"],
            ),
            registry,
            devices_with_series: Default::default(),
        };
        for result in ["ok", "error"] {
            t.module_reloads.with_label_values(&[result]);
        }
        for to in ["leader", "follower"] {
            t.leadership_transitions.with_label_values(&[to]);
        }
        for result in ["hit", "miss"] {
            t.cache_gets.with_label_values(&["metrics", result]);
            t.cache_gets.with_label_values(&["redis", result]);
        }
        if let Some(limit) = container_memory_limit_bytes() {
            gauge(
                &t.registry,
                "promsnmp_memory_limit_bytes",
                "Memory limit of this process' cgroup (the container limit); compare with process_resident_memory_bytes.",
            )
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        for endpoint in ["snmp", "metrics"] {
            t.scrape_duration.with_label_values(&[endpoint]);
        }
        for result in ["ok", "error", "stale_epoch"] {
            t.inventory_file_writes.with_label_values(&[result]);
        }
        t
    }

    pub fn cache_hit(&self) {
        self.cache_gets.with_label_values(&["metrics", "hit"]).inc();
    }

    pub fn cache_miss(&self) {
        self.cache_gets
            .with_label_values(&["metrics", "miss"])
            .inc();
    }

    /// A lookup in the fleet's shared cache in Redis.
    pub fn redis_cache_get(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_gets.with_label_values(&["redis", result]).inc();
    }

    pub fn record_poll(&self, device: &str, stats: PollStats, ok: bool) {
        self.snmp_poll_duration
            .observe(stats.duration.as_secs_f64());
        {
            let mut seen = self.devices_with_series.lock().expect("device names");
            if !seen.contains(device) {
                if seen.len() >= MAX_DEVICES_WITH_SERIES {
                    // Bounded: targets outside the inventory could be many.
                    return;
                }
                seen.insert(device.to_string());
            }
        }
        self.snmp_requests
            .with_label_values(&[device])
            .inc_by(stats.requests);
        if !ok {
            self.snmp_poll_errors.with_label_values(&[device]).inc();
        }
    }

    /// Drops the per-device series of every device not named in `current`
    /// (devices that left the inventory or were renamed).
    pub fn retain_devices<'a>(&self, current: impl IntoIterator<Item = &'a str>) {
        let current: std::collections::HashSet<&str> = current.into_iter().collect();
        let mut seen = self.devices_with_series.lock().expect("device names");
        seen.retain(|device| {
            let keep = current.contains(device.as_str());
            if !keep {
                let _ = self.snmp_requests.remove_label_values(&[device]);
                let _ = self.snmp_poll_errors.remove_label_values(&[device]);
            }
            keep
        });
    }

    /// The loaded module configuration: count and fingerprint.
    pub fn set_modules(&self, modules: usize, fingerprint: &str) {
        self.modules_loaded.set(modules as i64);
        self.modules_info.reset();
        self.modules_info.with_label_values(&[fingerprint]).set(1);
    }

    /// One reload of the module files, successful or not.
    pub fn module_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.module_reloads.with_label_values(&[result]).inc();
    }

    pub fn web_config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.web_config_reloads.with_label_values(&[result]).inc();
    }

    /// Devices per module that is not loaded (replaces the previous values).
    pub fn set_unknown_modules(&self, unknown: &BTreeMap<String, Vec<String>>) {
        self.unknown_modules.reset();
        for (module, devices) in unknown {
            self.unknown_modules
                .with_label_values(&[module])
                .set(devices.len() as i64);
        }
    }

    /// Adds the fleet-only series (`promsnmp_redis_up`) to the registry.
    pub fn register_fleet(&self) {
        // A second registration (a second fleet in one process) is harmless.
        let _ = self.registry.register(Box::new(self.redis_up.clone()));
        let _ = self
            .registry
            .register(Box::new(self.fleet_inventory_unreadable.clone()));
        let _ = self
            .registry
            .register(Box::new(self.redis_eviction_unsafe.clone()));
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding to a Vec");
        out
    }
}

/// The memory limit of this process' cgroup: cgroup v2 `memory.max`, else
/// v1 `memory.limit_in_bytes`; `None` without a limit (or off Linux).
fn container_memory_limit_bytes() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| parse_memory_limit(&text))
}

/// `max`, garbage and v1's "unlimited" (close to `i64::MAX`, page-rounded)
/// mean no limit.
fn parse_memory_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes > 0 && bytes < 1 << 60).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_from_cgroup_files() {
        assert_eq!(parse_memory_limit("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit("0"), None);
        assert_eq!(parse_memory_limit(""), None);
    }

    #[test]
    fn redis_up_only_in_fleet_mode() {
        let t = Telemetry::new();
        let text = String::from_utf8(t.render()).unwrap();
        assert!(!text.contains("promsnmp_redis_up"), "{text}");
        t.register_fleet();
        t.redis_up.set(1);
        let text = String::from_utf8(t.render()).unwrap();
        assert!(text.contains("promsnmp_redis_up 1"), "{text}");
    }

    #[test]
    fn series_of_departed_devices_are_dropped() {
        let t = Telemetry::new();
        let stats = PollStats {
            requests: 2,
            varbinds: 10,
            duration: std::time::Duration::from_millis(5),
            ..Default::default()
        };
        t.record_poll("stays", stats, true);
        t.record_poll("leaves", stats, false);
        t.retain_devices(["stays"]);
        let text = String::from_utf8(t.render()).unwrap();
        assert!(text.contains(r#"device="stays""#));
        assert!(!text.contains(r#"device="leaves""#), "{text}");
    }
}
