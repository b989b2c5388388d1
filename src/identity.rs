//! What this binary is: its version, the commit it was built from and the
//! compiler (recorded by `build.rs`), for `--version`, the start-up log,
//! `promsnmp_build_info` and `/actuator/info`.

/// The crate's version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit (12 hex digits), or `unknown` when built without the repository.
pub const COMMIT: &str = env!("PROMSNMP_GIT_COMMIT");
/// The compiler's version, e.g. `1.95.0`.
pub const RUSTC_VERSION: &str = env!("PROMSNMP_RUSTC_VERSION");

/// `promsnmp 0.1.0 (commit 0123456789ab, rustc 1.95.0)`.
pub fn long_version() -> String {
    format!("promsnmp {VERSION} (commit {COMMIT}, rustc {RUSTC_VERSION})")
}

/// Spring Boot's `/actuator/info` shape: `build` and `git.commit.id`.
pub fn info_json() -> serde_json::Value {
    serde_json::json!({
        "build": {
            "artifact": "promsnmp",
            "name": "promsnmp",
            "version": VERSION,
        },
        "git": {"commit": {"id": COMMIT}},
        "rust": {"version": RUSTC_VERSION},
    })
}
