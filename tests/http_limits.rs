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

/// Descriptors the process has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Reads until the server closes (EOF or reset) or `within` passes; true if it closed.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn counter(addr: &str, series: &str) -> f64 {
    let text = http_get(addr, "/actuator/prometheus").text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[test]
fn idle_and_slow_connections_cannot_crowd_out_health() {
    let cap = 32;
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("PROMSNMP_MAX_CONNECTIONS", "32"),
        ("PROMSNMP_HEADER_TIMEOUT_SECONDS", "2"),
        ("PROMSNMP_IDLE_TIMEOUT_SECONDS", "3"),
    ]);
    let addr = p.addr();
    let baseline_fds = open_fds(p.pid());

    // 200 connections that send nothing, 50 that send a header byte now and then.
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.write_all(b"GET /targets HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut most_fds = 0;
    for round in 0..6 {
        for s in slow.iter_mut() {
            let _ = s.write_all(b"a");
        }
        let started = Instant::now();
        let r = try_http_request(&addr, "GET", "/actuator/health", &[], &[]).unwrap_or_else(|e| {
            panic!("health did not answer under the connection storm (round {round}): {e}")
        });
        assert_eq!(r.status, 200, "{}", r.text());
        worst = worst.max(started.elapsed());
        most_fds = most_fds.max(open_fds(p.pid()));
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("health under 250 idle/slow connections: slowest {worst:?}; descriptors {baseline_fds} before, {most_fds} at most during (cap {cap})");
    assert!(
        most_fds <= baseline_fds + cap + 4,
        "descriptors grew past the cap: {baseline_fds} → {most_fds}"
    );
    // Every one of them is closed by the server: evicted, or timed out.
    let all_closed = idle
        .iter_mut()
        .chain(slow.iter_mut())
        .all(|s| closed_within(s, Duration::from_secs(15)));
    assert!(all_closed, "a stalled connection stayed open");
    assert!(
        counter(
            &addr,
            "promsnmp_http_connections_closed_total{reason=\"evicted\"}"
        ) > 0.0
    );
    assert!(
        counter(
            &addr,
            "promsnmp_http_connections_closed_total{reason=\"header_timeout\"}"
        ) > 0.0
    );

    // A keep-alive connection serves several requests, then is closed when idle.
    let mut kept = TcpStream::connect(&addr).expect("connect");
    for _ in 0..2 {
        kept.write_all(
            format!("GET /actuator/health/liveness HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let n = kept
            .read(&mut buf)
            .expect("an answer on the kept-alive connection");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    assert!(
        closed_within(&mut kept, Duration::from_secs(10)),
        "an idle keep-alive connection stayed open"
    );
    assert!(
        counter(
            &addr,
            "promsnmp_http_connections_closed_total{reason=\"idle\"}"
        ) > 0.0
    );
}

#[test]
fn a_request_body_that_never_arrives_times_out() {
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("PROMSNMP_REQUEST_TIMEOUT_SECONDS", "2"),
    ]);
    let addr = p.addr();
    let (status, _) = announce_and_stall(
        &addr,
        &format!("POST /promsnmp/inventory HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"devices\""),
    );
    assert!(status.contains("408"), "{status}");
    assert_eq!(devices(&p), 0);
}

#[test]
fn shutdown_does_not_wait_for_idle_or_half_sent_requests() {
    // Longer than `terminate` waits before SIGKILL: the connections must not hold the stop.
    let mut p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("PROMSNMP_HEADER_TIMEOUT_SECONDS", "60"),
        ("PROMSNMP_IDLE_TIMEOUT_SECONDS", "60"),
    ]);
    let addr = p.addr();
    let _idle = TcpStream::connect(&addr).expect("connect");
    let mut half = TcpStream::connect(&addr).expect("connect");
    half.write_all(b"GET /targets HTTP/1.1\r\nX-Half: ")
        .unwrap();
    let mut kept = TcpStream::connect(&addr).expect("connect");
    kept.write_all(
        format!("GET /actuator/health/liveness HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = p.terminate();
    assert!(status.success(), "{status}\n{}", p.log());
    let log = p.log();
    assert!(log.contains("promsnmp stopped"), "{log}");
    assert!(!log.contains("requests still open"), "{log}");
}

/// Opens `n` connections that each send `head` and keep the connection.
fn connections_sending(addr: &str, n: usize, head: &str) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect()
}

#[test]
fn at_the_cap_a_new_connection_gets_in_when_a_busy_one_goes_idle() {
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("COLLECTION_INTERVAL", "600000"),
        ("PROMSNMP_MAX_CONNECTIONS", "8"),
        ("PROMSNMP_IDLE_TIMEOUT_SECONDS", "60"),
    ]);
    let addr = p.addr();
    // A device that never answers (a bound socket that reads nothing, so no
    // ICMP refusal either): a live scrape of it takes its 2 s timeout.
    let agent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = agent.local_addr().unwrap().port();
    let silent = inventory_doc(&[community_device("silent", port, 2000, 0)]);
    assert_eq!(
        http_post_json(&addr, "/promsnmp/inventory", &silent).status,
        200
    );
    let _busy = connections_sending(
        &addr,
        8,
        &format!("GET /snmp?target=silent&live=true HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    std::thread::sleep(Duration::from_millis(300));
    // Every slot is busy now; once the scrapes end, their kept-alive
    // connections are idle and one is closed for this one.
    let r = try_http_request(&addr, "GET", "/actuator/health", &[], &[])
        .expect("health answered once a busy connection went idle, not after the idle timeout");
    assert_eq!(r.status, 200);
}

#[test]
fn connections_waiting_for_a_body_give_way_to_new_ones() {
    let p = Promsnmp::start(&[
        ("DISCOVERY_CRON", "-"),
        ("PROMSNMP_MAX_CONNECTIONS", "8"),
        ("PROMSNMP_REQUEST_TIMEOUT_SECONDS", "60"),
    ]);
    let addr = p.addr();
    let mut stalled = connections_sending(
        &addr,
        8,
        &format!("POST /promsnmp/inventory HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let r = try_http_request(&addr, "GET", "/actuator/health", &[], &[])
        .expect("health answered while every other connection waits for its body");
    assert_eq!(r.status, 200);
    let closed = stalled
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(500)))
        .filter(|closed| *closed)
        .count();
    assert!(
        closed >= 1,
        "one stalled body was closed for the health check"
    );
}
