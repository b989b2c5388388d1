//! The command line and the binary's identity: `--help`, `--version`, usage
//! errors, the version and commit in the start-up log, `promsnmp_build_info`
//! and `/actuator/info`, the effective configuration logged with secrets
//! redacted, log formats (no ANSI escapes off a terminal, JSON lines), an
//! invalid `RUST_LOG` refused, and a fatal error printed once.

mod common;

use common::*;
use std::process::Command;

const QUIET: [(&str, &str); 2] = [("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")];

/// The commit the binary must report: HEAD of the checkout it was built from.
fn head_commit() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git (Debian package git) runs");
    assert!(out.status.success(), "git rev-parse HEAD failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn help_lists_every_subcommand_and_variable() {
    let (status, out) = run_promsnmp_once(&["--help"], &[]);
    assert_eq!(status.code(), Some(0), "{out}");
    for word in ["serve", "healthcheck", "--version", "Environment variables"] {
        assert!(out.contains(word), "`{word}` missing from --help:\n{out}");
    }
    for (name, _) in promsnmp::config::VARIABLES {
        assert!(out.contains(name), "{name} missing from --help:\n{out}");
    }
    // The default in force is shown, from the configuration itself.
    assert!(
        out.contains("[30000]") && out.contains("[America/New_York]"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "escape codes in --help:\n{out}");
}

#[test]
fn version_names_the_commit() {
    let commit = head_commit();
    for flag in ["--version", "-V"] {
        let (status, out) = run_promsnmp_once(&[flag], &[]);
        assert_eq!(status.code(), Some(0), "{out}");
        assert_eq!(
            out.trim(),
            format!(
                "promsnmp {} (commit {commit}, rustc {})",
                env!("CARGO_PKG_VERSION"),
                promsnmp::identity::RUSTC_VERSION
            )
        );
    }
    let (status, out) = run_promsnmp_once(&["sevre"], &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("sevre") && out.contains("serve"), "{out}");
}

#[test]
fn identity_and_configuration_are_served_and_logged() {
    let commit = head_commit();
    let key = "MyOwnSecretKey16";
    let mut env = QUIET.to_vec();
    env.push(("PROM_ENCRYPT_KEY", key));
    env.push(("PROM_SITE_LABEL", "lab two"));
    let p = Promsnmp::start(&env);

    let info = http_get(&p.addr(), "/actuator/info");
    assert_eq!(info.status, 200, "{}", info.text());
    let info = info.json();
    assert_eq!(info["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["build"]["name"], "promsnmp");
    assert_eq!(info["git"]["commit"]["id"], commit.as_str());

    let metrics = http_get(&p.addr(), "/actuator/prometheus").text();
    let build_info = format!(
        "promsnmp_build_info{{revision=\"{commit}\",rustversion=\"{}\",version=\"{}\"}} 1",
        promsnmp::identity::RUSTC_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        metrics.contains(&build_info),
        "no `{build_info}` in:\n{metrics}"
    );

    let log = p.log();
    let starting = log
        .lines()
        .find(|l| l.contains("promsnmp starting"))
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert!(
        starting.contains(env!("CARGO_PKG_VERSION")) && starting.contains(&commit),
        "{starting}"
    );
    let configuration: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("configuration"))
        .collect();
    assert_eq!(configuration.len(), 1, "logged once:\n{log}");
    for setting in [
        format!("SERVER_PORT={}", p.port),
        "DISCOVERY_CRON=-".to_string(),
        "PROM_SITE_LABEL=\"lab two\"".to_string(),
        "PROM_ENCRYPT_KEY=redacted".to_string(),
    ] {
        assert!(
            configuration[0].contains(&setting),
            "no {setting}: {}",
            configuration[0]
        );
    }
    assert!(!log.contains(key), "the key is in the log:\n{log}");
}

#[test]
fn text_logs_carry_no_escape_codes_off_a_terminal() {
    let p = Promsnmp::start(&QUIET);
    let log = p.log();
    assert!(log.contains("promsnmp listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut env = QUIET.to_vec();
    env.push(("PROMSNMP_LOG_FORMAT", "json"));
    let mut p = Promsnmp::start(&env);
    p.terminate();
    let log = p.log();
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v[field].is_string(), "no {field}: {line}");
        }
        messages.push(v);
    }
    let listening = messages
        .iter()
        .find(|v| v["message"] == "promsnmp listening")
        .unwrap_or_else(|| panic!("no listening line:\n{log}"));
    // The event's fields are fields of the object.
    assert_eq!(listening["scheme"], "http", "{listening}");
    assert_eq!(listening["level"], "INFO");
    assert!(
        messages.iter().any(|v| v["message"] == "promsnmp stopped"),
        "{log}"
    );
}

#[test]
fn bad_log_settings_are_refused_before_binding() {
    for (var, value) in [
        ("RUST_LOG", "promsnmp=loud"),
        ("PROMSNMP_LOG_FORMAT", "xml"),
    ] {
        let (status, out) = run_promsnmp_once(&[], &[(var, value)]);
        assert_eq!(status.code(), Some(2), "{var}={value}:\n{out}");
        assert!(out.contains(var) && out.contains(value), "{out}");
        assert!(!out.contains("listening"), "{out}");
    }
}

#[test]
fn a_fatal_error_is_printed_once() {
    let (status, out) = run_promsnmp_once(
        &[],
        &[("PROMSNMP_MODULES_FILE", "/nonexistent/promsnmp-snmp.yml")],
    );
    assert_eq!(status.code(), Some(2), "{out}");
    assert_eq!(
        out.matches("refusing to start").count(),
        1,
        "the fatal error once:\n{out}"
    );
}
