//! Helpers for tests of a fleet started by hand: replicas with fast leases
//! sharing one inventory file, seeds as numbered changes, leaderships read
//! from the logs.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A replica of a fleet sharing `shared`'s inventory file, with a 3 s lease
/// renewed every second.
pub fn replica(url: &str, shared: &Path, extra: &[(&str, &str)], wait: bool) -> Promsnmp {
    let file = shared.join("inventory.json");
    let mut env: Vec<(&str, &str)> = vec![
        ("REDIS_URL", url),
        ("PROM_INV_FILE", file.to_str().unwrap()),
        ("PROMSNMP_BIND_ADDRESS", "127.0.0.1"),
        ("COLLECTION_INTERVAL", "2000"),
        ("PROMSNMP_LEASE_TTL_MS", "3000"),
        ("PROMSNMP_LEASE_RENEW_MS", "1000"),
        ("DISCOVERY_CRON", "-"),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v));
    }
    if wait {
        Promsnmp::start(&env)
    } else {
        let dir = tempfile::Builder::new()
            .prefix("psnmp-redisdep")
            .tempdir()
            .expect("tempdir");
        Promsnmp::spawn_in(dir, &env)
    }
}

/// Replicas of one fleet (see [`replica`]), dropped before their shared folder.
pub struct ReplicaSet {
    pub replicas: Vec<Promsnmp>,
    pub addrs: Vec<String>,
    pub shared: tempfile::TempDir,
}

/// `n` replicas of the Redis at `url` sharing a new folder for the
/// inventory file, once one of them leads.
pub fn replicas_with_leader(url: &str, n: usize, extra: &[(&str, &str)]) -> ReplicaSet {
    let shared = tempfile::tempdir().unwrap();
    let replicas: Vec<Promsnmp> = (0..n)
        .map(|_| replica(url, shared.path(), extra, true))
        .collect();
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr()).collect();
    wait_for_fleet_leader(&addrs, &[]);
    ReplicaSet {
        replicas,
        addrs,
        shared,
    }
}

pub fn one_device_inventory(snmpd: &Snmpd, name: &str) -> String {
    let port: u16 = snmpd.addr().rsplit(':').next().unwrap().parse().unwrap();
    inventory_doc(&[community_device(name, port, 1000, 1)])
}

/// "became fleet leader" lines of a log: (epoch, replica).
pub fn leaderships(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter(|l| l.contains("became fleet leader"))
        .filter_map(|l| {
            let epoch = l
                .split("epoch=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let replica = l
                .split("replica=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_string();
            Some((epoch, replica))
        })
        .collect()
}

/// The target of seed `n`: distinct per `n`, on 127.0.0.0/8.
pub fn seed_target(n: usize) -> String {
    format!("127.1.{}.{}", n / 250, n % 250 + 1)
}

/// A seed to save (no discovery runs).
pub fn seed(n: usize) -> String {
    format!(
        r#"{{"potentialTargets":["{}"],"version":"v2c","readCommunity":"public"}}"#,
        seed_target(n)
    )
}

/// Saves seed `n` through `addr`; `None` when no answer came within `wait`.
pub fn try_save_seed(addr: &str, n: usize, wait: Duration) -> Option<HttpResponse> {
    http_request_timeout(
        addr,
        "POST",
        "/promsnmp/discovery?scheduleNow=false&saveSeed=true",
        &[("Content-Type", "application/json")],
        seed(n).as_bytes(),
        wait,
    )
    .ok()
}

/// Saves seed `n` through `addr`; waits up to 60 s for the answer (50 at
/// once take a while in a debug build).
pub fn save_seed(addr: &str, n: usize) -> HttpResponse {
    try_save_seed(addr, n, Duration::from_secs(60)).expect("an answer within 60 s")
}

/// The saved seeds' targets as a replica lists them.
pub fn seed_targets(addr: &str) -> std::collections::BTreeSet<String> {
    let seeds = http_get(addr, "/promsnmp/discovery").json();
    seeds
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["potentialTargets"][0].as_str().map(String::from))
        .collect()
}

/// A TCP relay in front of Redis that can be cut: while cut it closes every
/// relayed connection and drops new ones, so the replica behind it is
/// partitioned from Redis while the others are not.
pub struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CuttableProxy {
    pub fn start(upstream: &str) -> CuttableProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let thread = {
            let (cut, stop) = (cut.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    if cut.load(Ordering::Relaxed) {
                        continue; // dropped: the connection closes
                    }
                    let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let (cut, stop) = (cut.clone(), stop.clone());
                        std::thread::spawn(move || relay(from, to, &cut, &stop));
                    }
                }
            })
        };
        CuttableProxy {
            port,
            cut,
            stop,
            thread: Some(thread),
        }
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until either closes, or the proxy is cut or stopped.
fn relay(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16384];
    while !cut.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
