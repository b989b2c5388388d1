//! No cross-site writes and no DNS rebinding, against a running promsnmp:
//! the page-on-another-site attack (`text/plain` post with a foreign
//! `Origin`) and its variants leave the inventory as it was; the Java path
//! `evictCache` is a POST now; `PROMSNMP_ALLOWED_HOSTS` refuses other
//! `Host` names but not health probes.

mod common;

use common::*;

/// The one device these tests keep (nothing answers at its port).
fn one_device() -> String {
    inventory_doc(&[community_device("kept", 16100, 1000, 0)])
}

const WIPE: &str = r#"{"devices":[]}"#;

fn devices(p: &Promsnmp) -> usize {
    let r = http_get(&p.addr(), "/promsnmp/inventory");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["devices"].as_array().map_or(0, Vec::len)
}

fn promsnmp(extra: &[(&str, &str)]) -> Promsnmp {
    let mut env = vec![("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")];
    env.extend_from_slice(extra);
    let p = Promsnmp::start(&env);
    let r = http_post_json(&p.addr(), "/promsnmp/inventory", &one_device());
    assert_eq!(r.status, 200, "{}", r.text());
    p
}

#[test]
fn a_page_of_another_site_cannot_change_anything() {
    let p = promsnmp(&[]);
    let addr = p.addr();
    assert!(
        p.log()
            .contains("no authentication: whoever reaches this port"),
        "no warning naming what is exposed:\n{}",
        p.log()
    );
    let own_origin = format!("http://{addr}");
    // (headers, body, expected status) of POST /promsnmp/inventory with
    // the wiping document.
    let attempts: Vec<(Vec<(&str, &str)>, u16)> = vec![
        // The curl of the issue: a simple request, no preflight in a browser.
        (
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            403,
        ),
        (vec![("Content-Type", "text/plain")], 415),
        (
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            415,
        ),
        (
            vec![("Content-Type", "multipart/form-data; boundary=x")],
            415,
        ),
        (vec![], 415),
        (
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            vec![("Origin", "null"), ("Content-Type", "application/json")],
            403,
        ),
        (
            vec![
                ("Sec-Fetch-Site", "cross-site"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
    ];
    for (headers, expected) in &attempts {
        let r = http_request(
            &addr,
            "POST",
            "/promsnmp/inventory",
            headers,
            WIPE.as_bytes(),
        );
        assert_eq!(r.status, *expected, "{headers:?}: {}", r.text());
        assert!(
            r.json()["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{headers:?}: the refusal says why: {}",
            r.text()
        );
        assert_eq!(devices(&p), 1, "{headers:?} changed the inventory");
    }
    // Other state-changing requests from another site.
    for (method, path) in [
        ("DELETE", "/promsnmp/discovery"),
        ("POST", "/promsnmp/discovery"),
        ("POST", "/promsnmp/evictCache"),
        ("POST", "/-/reload"),
        ("PATCH", "/promsnmp/inventory/devices/x"),
        ("PUT", "/promsnmp/inventory/seeds/x"),
        ("DELETE", "/promsnmp/inventory/devices/x"),
    ] {
        let r = http_request(
            &addr,
            method,
            path,
            &[("Origin", "http://evil.example")],
            b"",
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    // The same requests from promsnmp's own origin, or from a client that
    // is not a browser, work.
    let r = http_request(
        &addr,
        "POST",
        "/promsnmp/inventory",
        &[
            ("Origin", own_origin.as_str()),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        one_device().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http_request(&addr, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // Reads from anywhere still work (scrapes, the console's future pages).
    let r = http_request(
        &addr,
        "GET",
        "/targets",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // evictCache changes state: POST; GET says so.
    let r = http_get(&addr, "/promsnmp/evictCache");
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(r.text().contains("use POST"), "{}", r.text());
    let r = http_request(&addr, "POST", "/promsnmp/evictCache", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(devices(&p), 1);
}

#[test]
fn allowed_hosts_refuse_other_host_names_but_not_health_probes() {
    let p = promsnmp(&[("PROMSNMP_ALLOWED_HOSTS", "127.0.0.1,promsnmp.example")]);
    let addr = p.addr();
    let get = |path: &str, host: &str| http_request(&addr, "GET", path, &[("Host", host)], b"");
    // A rebound name reaches the same address but names another host.
    let r = get("/promsnmp/inventory", "attacker.example");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!r.text().contains("public"), "no credentials: {}", r.text());
    let r = get("/snmp?target=kept", "attacker.example:8080");
    assert_eq!(r.status, 403, "{}", r.text());
    for host in ["promsnmp.example:8080", "PROMSNMP.example", addr.as_str()] {
        let r = get("/promsnmp/inventory", host);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    for path in ["/actuator/health/readiness", "/actuator/health/liveness"] {
        let r = get(path, "10.9.8.7:8080");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // A page of a listed host may write.
    let r = http_request(
        &addr,
        "POST",
        "/promsnmp/inventory",
        &[
            ("Host", "promsnmp.example"),
            ("Origin", "http://promsnmp.example"),
            ("Content-Type", "application/json"),
        ],
        one_device().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
