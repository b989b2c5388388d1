//! promsnmp: polls network devices over SNMP (v1, v2c, v3) and serves their
//! metrics to Prometheus; a drop-in replacement for the Java PromSNMP.
//!
//! Modules, in the order data flows through them:
//!
//! - [`config`]      — environment variables, parsed and validated once.
//! - [`crypto`]      — the AES-GCM envelope of the inventory file.
//! - [`inventory`]   — devices, agents and discovery seeds (Java JSON shape), validation.
//! - [`persistence`] — the inventory file: atomic load/save, write-through after changes.
//! - [`store`]       — the shared-state seam: inventory, cached polls, poll history, poll claims.
//! - [`fleet`]       — fleet mode: Redis store (Lua in `lua/`), fenced leader lease,
//!   membership, inventory sync and write-through.
//! - [`snmp`]        — SNMP sessions: GET, GETBULK/GETNEXT column walks, timeouts, retries.
//! - [`sample`]      — plain poll results and the utilisation histogram derived across polls.
//! - [`collector`]   — one poll → `Sample`; background polling; cache-or-poll for scrapes.
//! - [`discovery`]   — seeds → probes → new devices; jobs with progress; cron schedule.
//! - [`render`]      — samples → Prometheus text, OpenMetrics, protobuf (native histograms).
//! - [`proto`]       — the protobuf messages of the Prometheus exposition format.
//! - [`telemetry`]   — the exporter's own metrics.
//! - [`http`]        — endpoints, and the one place errors become HTTP responses.
//! - [`app`]         — wiring, start-up and graceful shutdown.
//!
//! Data flow: `http` → `store` ← `collector` → `snmp` → devices;
//! `discovery` → `snmp` and → `persistence` → `store`; `http` → `render`.
//! In a fleet `store` is Redis-backed and `fleet` keeps the local snapshot,
//! the leadership and the file in step with it.

pub mod app;
pub mod collector;
pub mod config;
pub mod crypto;
pub mod discovery;
pub mod fleet;
pub mod http;
pub mod inventory;
pub mod persistence;
pub mod proto;
pub mod render;
pub mod sample;
pub mod snmp;
pub mod store;
pub mod telemetry;
