//! promsnmp: polls network devices over SNMP (v1, v2c, v3) and serves their
//! metrics to Prometheus; a drop-in replacement for the Java PromSNMP.
//!
//! Modules, in the order data flows through them:
//!
//! - [`cli`]         — the command line: subcommands, `--help`, `--version`.
//! - [`config`]      — environment variables, parsed and validated once.
//! - [`identity`]    — version, git commit and compiler of this binary.
//! - [`logging`]     — log lines: text (colour only on a terminal) or JSON.
//! - [`hosts`]       — host names as requests name them; the allowed hosts.
//! - [`crypto`]      — the AES-GCM envelope of the inventory file.
//! - [`inventory`]   — devices, agents and discovery seeds (Java JSON shape), validation.
//! - [`persistence`] — the inventory file: atomic load/save, write-through after changes.
//! - [`store`]       — the shared-state seam: inventory, cached polls, poll history, poll claims.
//! - [`fleet`]       — fleet mode: connections to Redis (TLS, Sentinel, timeouts), Redis
//!   store (Lua in `lua/`), fenced leader lease, membership, eviction check,
//!   inventory sync, restore (into an empty or reloaded Redis) and write-through.
//! - [`modules`]     — snmp_exporter's module format: files, built-ins, walk plans, decoding, rules.
//! - [`snmp`]        — SNMP sessions: GET, GETBULK/GETNEXT walks of many columns, timeouts, retries.
//! - [`usm_report`]  — why an SNMPv3 agent refused: its Report PDU, read through a loopback relay.
//! - [`sample`]      — a poll's result, generic: per module, metric families of labelled series.
//! - [`utilization`] — the interface-utilisation histogram derived across polls.
//! - [`polled`]      — a poll as served and cached (sample + utilisation), and its wire format.
//! - [`poll`]        — one poll of one device: walk plan over `snmp`, varbinds decoded into a `Sample`.
//! - [`collector`]   — background polling; cache-or-poll for scrapes; one walk per device at a time.
//! - [`discovery`]   — seeds → probes → new devices (modules by seed or rules); jobs; cron schedule.
//! - [`render`]      — polled devices → Prometheus text, OpenMetrics, protobuf (native histograms).
//! - [`proto`]       — the protobuf messages of the Prometheus exposition format.
//! - [`telemetry`]   — the exporter's own metrics.
//! - [`heap`]        — gives freed heap pages back after polling rounds and module loads.
//! - [`web`]         — the web configuration file: TLS, users and roles, headers, rate limit; reloaded on change.
//! - [`http`]        — the server (connection cap, timeouts, TLS), endpoints (with the
//!   per-device and per-seed API: ETag / If-Match, merge patch), negotiation,
//!   rendered-body cache, the one place errors become responses.
//! - [`app`]         — wiring, start-up, module reload and graceful shutdown.
//! - [`backup`]      — `promsnmp inventory export|import|decrypt|encrypt`: backup and restore.
//!
//! Data flow: `modules` → `poll` (plan) → `snmp` → devices → varbinds →
//! `modules::decode` → `Sample` → `store` (history → `polled`) ← `collector`;
//! `http` → `collector` (cache or poll) → `render`; `discovery` → `snmp` and
//! `modules::rules` → `persistence` → `store`. In a fleet `store` is
//! Redis-backed and `fleet` keeps the local snapshot, the leadership and the
//! file in step with it.

pub mod app;
pub mod backup;
pub mod cli;
pub mod collector;
pub mod config;
pub mod crypto;
pub mod discovery;
pub mod fleet;
pub mod heap;
pub mod hosts;
pub mod http;
pub mod identity;
pub mod inventory;
pub mod logging;
pub mod modules;
pub mod persistence;
pub mod poll;
pub mod polled;
pub mod proto;
pub mod render;
pub mod sample;
pub mod snmp;
pub mod store;
pub mod telemetry;
pub mod usm_report;
pub mod utilization;
pub mod web;
