//! Request bodies are bounded per route: a read (GET) carries none, a
//! write's body is bounded by PROMSNMP_MAX_BODY_BYTES, and a declared
//! length over the bound is refused before any of the body is read (a
//! client that announces 30 MiB and stalls costs nothing).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The one device these tests keep (nothing answers at its port).
fn one_device() -> String {
    inventory_doc(&[community_device("kept", 16100, 1000, 0)])
}

fn devices(p: &Promsnmp) -> usize {
    let r = http_get(&p.addr(), "/promsnmp/inventory");
    r.json()["devices"].as_array().map_or(0, Vec::len)
}

/// Sends `head` (request line and headers) and no body; returns the status
/// line promsnmp answers with, and how long it took.
fn announce_and_stall(addr: &str, head: &str) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    (
        text.lines().next().unwrap_or("").to_string(),
        started.elapsed(),
    )
}

#[test]
fn bodies_are_bounded_per_route() {
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
        ("PROMSNMP_MAX_BODY_BYTES", "2048"),
    ]);
    let addr = p.addr();
    let r = http_post_json(&addr, "/promsnmp/inventory", &one_device());
    assert_eq!(r.status, 200, "{}", r.text());

    // A read carries no body.
    let r = http_request(&addr, "GET", "/targets", &[], b"0123456789");
    assert_eq!(r.status, 413, "{}", r.text());

    // Announced and never sent: refused at once, nothing buffered.
    let (status, took) = announce_and_stall(
        &addr,
        &format!(
            "GET /targets HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            30 * 1024 * 1024
        ),
    );
    assert!(status.contains("413"), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, _) = announce_and_stall(
        &addr,
        &format!(
            "POST /promsnmp/inventory HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
        ),
    );
    assert!(status.contains("413"), "{status}");

    // A write over the bound, declared or streamed in chunks, changes nothing.
    let big = format!(r#"{{"devices":[],"padding":"{}"}}"#, "x".repeat(4096));
    let r = http_post_json(&addr, "/promsnmp/inventory", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("2048"), "{}", r.text());
    let chunk = "x".repeat(1000);
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = http_request(
        &addr,
        "POST",
        "/promsnmp/inventory",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(devices(&p), 1);

    // Within the bound it works.
    let r = http_post_json(&addr, "/promsnmp/inventory", &one_device());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(http_get(&addr, "/actuator/health").status, 200);
}
