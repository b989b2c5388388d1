//! The web configuration (`PROMSNMP_WEB_CONFIG_FILE`, exporter-toolkit
//! format): TLS with certificates made by `openssl`, basic-auth users with
//! bcrypt hashes and the two roles, client certificates, reload when the
//! files change, the `healthcheck` subcommand over TLS, and a real Prometheus
//! scraping over TLS with basic auth. Clients are curl and Prometheus.

mod common;

use std::time::Duration;

use common::pki::{curl, Issued, Pki};
use common::*;

const SCRAPER_PASSWORD: &str = "scrape-Pa55word-7f3a";
const ADMIN_PASSWORD: &str = "admin-Pa55word-91c2";

/// A CA, a server certificate for 127.0.0.1, and a client certificate.
struct Certs {
    dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    server: Issued,
    client: Issued,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "ca");
    Pki::new(dir.path(), "rogue-ca");
    let server = pki.issue("ca", "promsnmp", &["IP:127.0.0.1", "DNS:localhost"]);
    let client = pki.issue("ca", "scraper", &["DNS:scraper.example"]);
    Certs {
        ca: pki.ca_cert("ca"),
        server,
        client,
        dir,
    }
}

/// The `users` part of a web.yml: a scraper (cost 12) and an admin (cost 4).
fn users_yaml() -> String {
    format!(
        "basic_auth_users:\n  prometheus: {}\n  operator: {}\npromsnmp_admin_users: [operator]\n",
        bcrypt::hash(SCRAPER_PASSWORD, 12).unwrap(),
        bcrypt::hash(ADMIN_PASSWORD, 4).unwrap(),
    )
}

/// Starts promsnmp with `web.yml` in `dir` and waits (bounded) for its
/// readiness over HTTPS.
fn start_with_web_config(certs: &Certs, web_yml: &str, env: &[(&str, &str)]) -> Promsnmp {
    let dir = tempfile::Builder::new()
        .prefix("psnmp-web")
        .tempdir()
        .expect("tempdir");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, web_yml).expect("write web.yml");
    let web = web.display().to_string();
    let mut all = vec![
        ("DISCOVERY_CRON", "-"),
        ("PROMSNMP_WEB_CONFIG_FILE", web.as_str()),
    ];
    all.extend_from_slice(env);
    let mut p = Promsnmp::spawn_in(dir, &all);
    let url = format!("https://127.0.0.1:{}/actuator/health/readiness", p.port);
    let ca = certs.ca.display().to_string();
    let client = [
        "--cert".to_string(),
        certs.client.cert.display().to_string(),
        "--key".to_string(),
        certs.client.key.display().to_string(),
    ];
    let mut args = vec!["--cacert", ca.as_str()];
    args.extend(client.iter().map(String::as_str));
    wait_for(
        "promsnmp ready over HTTPS",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            if let Some(status) = p.try_wait() {
                panic!("promsnmp exited: {status}\n{}", p.log());
            }
            (curl(&url, &args).status == 200).then_some(())
        },
    );
    p
}

fn tls_web_yml(certs: &Certs, extra_tls: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra_tls}http_server_config:\n  headers:\n    X-Frame-Options: deny\n{}",
        certs.server.cert.display(),
        certs.server.key.display(),
        users_yaml()
    )
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn https(p: &Promsnmp, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", p.port)
}

#[test]
fn tls_and_users_guard_every_path_by_role() {
    let certs = certs();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = start_with_web_config(&certs, &tls_web_yml(&certs, ""), &[]);
    let ca = certs.ca.display().to_string();
    let scraper = format!("prometheus:{SCRAPER_PASSWORD}");
    let admin = format!("operator:{ADMIN_PASSWORD}");
    let tls = ["--cacert", ca.as_str()];
    let with = |creds: &str| {
        ["--cacert", ca.as_str(), "-u", creds]
            .map(String::from)
            .to_vec()
    };

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = curl(&format!("http://127.0.0.1:{}/targets", p.port), &[]);
    assert_ne!(plain.status, 200, "plain HTTP answered: {}", plain.body);

    // No, wrong or unknown credentials: 401, the same short body, a challenge.
    for creds in [
        None,
        Some("prometheus:wrong"),
        Some("nobody:whatever"),
        Some("prometheus:"),
    ] {
        let args = match creds {
            None => tls.iter().map(|s| s.to_string()).collect(),
            Some(c) => with(c),
        };
        for path in [
            "/snmp?target=127.0.0.1",
            "/metrics",
            "/targets",
            "/promsnmp/inventory",
            "/actuator/health",
            "/actuator/prometheus",
        ] {
            let r = curl(&https(&p, path), &strs(&args));
            assert_eq!(r.status, 401, "{creds:?} {path}: {} {}", r.body, r.error);
            assert_eq!(r.body, "Unauthorized\n", "{creds:?} {path}");
            assert!(
                r.headers
                    .to_ascii_lowercase()
                    .contains("www-authenticate: basic"),
                "{}",
                r.headers
            );
            assert!(
                r.headers.contains("X-Frame-Options: deny")
                    || r.headers
                        .to_ascii_lowercase()
                        .contains("x-frame-options: deny"),
                "{}",
                r.headers
            );
        }
    }

    // The admin changes the inventory; the scraper reads targets but is
    // refused every admin path, and changes nothing.
    let device = community_device("guarded", snmpd.port, 1000, 1);
    let inventory = inventory_doc(&[device]);
    let post = |creds: &str| {
        let mut args = with(creds);
        args.extend(
            ["-H", "Content-Type: application/json", "--data", &inventory].map(String::from),
        );
        curl(&https(&p, "/promsnmp/inventory"), &strs(&args))
    };
    let r = post(&scraper);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("promsnmp_admin_users"), "{}", r.body);
    let r = post(&admin);
    assert_eq!(r.status, 200, "{} {}", r.body, r.error);
    for (path, method) in [
        ("/promsnmp/inventory", "GET"),
        ("/promsnmp/discovery", "GET"),
        ("/promsnmp/evictCache", "POST"),
        ("/-/reload", "POST"),
    ] {
        let mut args = with(&scraper);
        args.extend(["-X", method].map(String::from));
        let r = curl(&https(&p, path), &strs(&args));
        assert_eq!(r.status, 403, "scraper {method} {path}: {}", r.body);
    }
    let r = curl(&https(&p, "/targets"), &strs(&with(&scraper)));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(&format!("127.0.0.1:{}", snmpd.port)),
        "{}",
        r.body
    );
    let r = curl(
        &https(&p, &format!("/snmp?target=127.0.0.1:{}", snmpd.port)),
        &strs(&with(&scraper)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("sysUpTime"),
        "{}",
        &r.body[..r.body.len().min(300)]
    );
    let r = curl(&https(&p, "/promsnmp/inventory"), &strs(&with(&admin)));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("guarded"), "{}", r.body);

    // Liveness and readiness answer without credentials (UP or DOWN only).
    for path in ["/actuator/health/liveness", "/actuator/health/readiness"] {
        let r = curl(&https(&p, path), &tls);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    // The refusals are counted; nothing secret reached the log.
    let metrics = curl(&https(&p, "/actuator/prometheus"), &strs(&with(&scraper))).body;
    for reason in ["missing", "wrong", "role"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "promsnmp_http_auth_refusals_total{{reason=\"{reason}\"}}"
            )) && !l.ends_with(" 0")),
            "no {reason} refusals counted"
        );
    }
    let log = p.log();
    let web_yml = std::fs::read_to_string(p.dir.path().join("web.yml")).unwrap();
    let hash = web_yml
        .lines()
        .find(|l| l.contains("prometheus: $2"))
        .unwrap()
        .split_once(": ")
        .unwrap()
        .1;
    use base64::Engine;
    for secret in [
        SCRAPER_PASSWORD,
        ADMIN_PASSWORD,
        hash,
        &base64::engine::general_purpose::STANDARD.encode(&scraper),
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    assert!(log.contains("web configuration loaded"), "{log}");
    assert!(
        !log.contains("no authentication"),
        "the no-authentication warning is for servers without a web configuration"
    );
}

#[test]
fn client_certificates_are_required_verified_and_matched_and_changes_are_reread() {
    let certs = certs();
    let ca = certs.ca.display().to_string();
    let require = |sans: &str| {
        tls_web_yml(
            &certs,
            &format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n{sans}"
            ),
        )
    };
    let p = start_with_web_config(&certs, &require(""), &[]);
    let creds = format!("prometheus:{SCRAPER_PASSWORD}");
    let client_cert = certs.client.cert.display().to_string();
    let client_key = certs.client.key.display().to_string();
    let with_cert = [
        "--cacert",
        ca.as_str(),
        "--cert",
        &client_cert,
        "--key",
        &client_key,
        "-u",
        &creds,
    ];

    let r = curl(&https(&p, "/targets"), &with_cert);
    assert_eq!(r.status, 200, "{} {}", r.body, r.error);
    let r = curl(&https(&p, "/targets"), &["--cacert", &ca, "-u", &creds]);
    assert_eq!(
        r.status, 0,
        "no client certificate, no HTTP answer: {}",
        r.body
    );
    // A certificate from a CA the server does not trust.
    let rogue = Pki {
        dir: certs.dir.path().to_path_buf(),
    }
    .issue("rogue-ca", "rogue", &["DNS:scraper.example"]);
    let (rc, rk) = (
        rogue.cert.display().to_string(),
        rogue.key.display().to_string(),
    );
    let r = curl(
        &https(&p, "/targets"),
        &["--cacert", &ca, "--cert", &rc, "--key", &rk, "-u", &creds],
    );
    assert_eq!(
        r.status, 0,
        "an untrusted client certificate got an answer: {}",
        r.body
    );

    // The healthcheck subcommand speaks TLS and presents the server's certificate.
    let web = p.dir.path().join("web.yml").display().to_string();
    let port = p.port.to_string();
    let (status, out) = run_promsnmp_once(
        &["healthcheck"],
        &[("SERVER_PORT", &port), ("PROMSNMP_WEB_CONFIG_FILE", &web)],
    );
    assert!(status.success(), "healthcheck over mTLS: {out}");

    // The file changes: only certificates naming another SAN are allowed now.
    std::fs::write(
        p.dir.path().join("web.yml"),
        require("  client_allowed_sans: [\"other.example\"]\n"),
    )
    .unwrap();
    wait_for(
        "the SAN rule in force",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || (curl(&https(&p, "/targets"), &with_cert).status == 0).then_some(()),
    );
    // A change that does not load keeps what is in force, and says so.
    std::fs::write(
        p.dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
    )
    .unwrap();
    wait_for(
        "the failed reload logged",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || p.log().contains("does not load").then_some(()),
    );
    assert_eq!(
        curl(&https(&p, "/targets"), &with_cert).status,
        0,
        "the SAN rule stays in force"
    );
    std::fs::write(
        p.dir.path().join("web.yml"),
        require("  client_allowed_sans: [\"scraper.example\"]\n"),
    )
    .unwrap();
    wait_for(
        "the matching SAN allowed",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || (curl(&https(&p, "/targets"), &with_cert).status == 200).then_some(()),
    );

    // A renewed server certificate is served to new connections without a restart.
    let pki = Pki {
        dir: certs.dir.path().to_path_buf(),
    };
    let renewed = pki.issue("ca", "promsnmp-renewed", &["IP:127.0.0.1"]);
    std::fs::copy(&renewed.key, &certs.server.key).unwrap();
    std::fs::copy(&renewed.cert, &certs.server.cert).unwrap();
    wait_for(
        "the renewed certificate served",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let r = curl(&https(&p, "/targets"), &[&with_cert[..], &["-v"]].concat());
            r.error.contains("CN=promsnmp-renewed").then_some(())
        },
    );
    let metrics = curl(&https(&p, "/actuator/prometheus"), &with_cert).body;
    let failed_reloads = metrics
        .lines()
        .find_map(|l| l.strip_prefix("promsnmp_web_config_reloads_total{result=\"error\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        failed_reloads >= 1.0,
        "the failed reload is counted: {metrics}"
    );
    drop(p);
}

#[test]
fn a_bad_web_configuration_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    for (text, expected) in [
        (
            "basic_auth_users:\n  alice: plaintext-password\n".to_string(),
            "not a bcrypt hash",
        ),
        (
            format!(
                "basic_auth_users:\n  alice: {}\n",
                bcrypt::hash("x", 4).unwrap().replacen("$04$", "$03$", 1)
            ),
            "cost 3",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n".to_string(),
            "missing.crt",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n"
                .to_string(),
            "Sometimes",
        ),
        ("tls_server_cnfig: {}\n".to_string(), "unknown field"),
    ] {
        std::fs::write(&web, &text).unwrap();
        let path = web.display().to_string();
        let (status, out) = run_promsnmp_once(
            &[],
            &[("PROMSNMP_WEB_CONFIG_FILE", &path), ("SERVER_PORT", "1")],
        );
        assert!(!status.success(), "started with {text:?}");
        assert!(
            out.contains("web configuration") && out.contains(expected),
            "{text:?}: {out}"
        );
        assert!(
            !out.contains("plaintext-password"),
            "a password was printed: {out}"
        );
    }
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let certs = certs();
    let snmpd = Snmpd::start(&SnmpdConfig::default());
    let p = start_with_web_config(
        &certs,
        &tls_web_yml(&certs, ""),
        &[("COLLECTION_INTERVAL", "1000")],
    );
    let inventory = inventory_doc(&[community_device("tls-scraped", snmpd.port, 1000, 1)]);
    let r = curl(
        &https(&p, "/promsnmp/inventory"),
        &[
            "--cacert",
            &certs.ca.display().to_string(),
            "-u",
            &format!("operator:{ADMIN_PASSWORD}"),
            "-H",
            "Content-Type: application/json",
            "--data",
            &inventory,
        ],
    );
    assert_eq!(r.status, 200, "{} {}", r.body, r.error);

    let promsnmp = format!("127.0.0.1:{}", p.port);
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: snmp-tls
    scheme: https
    tls_config:
      ca_file: ../certs/ca.crt
    basic_auth:
      username: prometheus
      password_file: ../certs/password
    http_sd_configs:
      - url: https://{promsnmp}/targets
        refresh_interval: 2s
        tls_config:
          ca_file: ../certs/ca.crt
        basic_auth:
          username: prometheus
          password_file: ../certs/password
    metrics_path: /snmp
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {promsnmp}
  - job_name: wrong-password
    scheme: https
    tls_config:
      ca_file: ../certs/ca.crt
    basic_auth:
      username: prometheus
      password: not-the-password
    static_configs:
      - targets: ['{promsnmp}']
    metrics_path: /actuator/prometheus
"#
    );
    let prom = Prometheus::start_with(&PrometheusSetup {
        config_yaml: &config,
        files: vec![
            ("certs/ca.crt".into(), std::fs::read(&certs.ca).unwrap()),
            (
                "certs/password".into(),
                SCRAPER_PASSWORD.as_bytes().to_vec(),
            ),
        ],
        ..Default::default()
    });
    wait_for(
        "the SNMP target up over TLS",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let r = prom.query(r#"up{job="snmp-tls"} == 1"#);
            (r["data"]["result"].as_array().map_or(0, Vec::len) == 1).then_some(())
        },
    );
    let r = prom.query(r#"sysUpTime{job="snmp-tls"}"#);
    assert_eq!(r["data"]["result"].as_array().map_or(0, Vec::len), 1, "{r}");
    wait_for(
        "the wrong password seen as down",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let r = prom.query(r#"up{job="wrong-password"} == 0"#);
            (r["data"]["result"].as_array().map_or(0, Vec::len) == 1).then_some(())
        },
    );
    let targets = prom.targets();
    let wrong = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == "wrong-password")
        .cloned()
        .unwrap();
    assert!(
        wrong["lastError"].as_str().unwrap_or("").contains("401"),
        "{wrong}"
    );
}
