//! A tiny authoritative DNS server for the deployment tests: it answers A
//! queries for a few names (`promsnmp` -> several loopback addresses), the way
//! Docker's embedded DNS answers for a scaled service, so HAProxy's
//! `server-template` and Prometheus' `dns_sd_configs` find the replicas by
//! name exactly as in a container. Other types of a known name get an empty
//! answer, unknown names NXDOMAIN. UDP only, one thread, stopped on drop.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub struct DnsServer {
    addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `records` (name -> addresses, names without the trailing dot,
    /// matched case-insensitively) on `addr`. Port 53 needs root; a failure
    /// to bind panics naming the address.
    pub fn start(addr: SocketAddr, records: &[(&str, Vec<Ipv4Addr>)]) -> DnsServer {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| {
            panic!("cannot bind the test DNS server on {addr} (needs root for port 53): {e}")
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let records: HashMap<String, Vec<Ipv4Addr>> = records
            .iter()
            .map(|(name, ips)| (name.to_ascii_lowercase(), ips.clone()))
            .collect();
        let records = Arc::new(Mutex::new(records));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (records, stop, queries) = (records.clone(), stop.clone(), queries.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                        continue; // timeout: check the stop flag
                    };
                    let answer = {
                        let records = records.lock().expect("records");
                        respond(&buf[..len], &records)
                    };
                    if let Some(answer) = answer {
                        queries.fetch_add(1, Ordering::Relaxed);
                        let _ = socket.send_to(&answer, peer);
                    }
                }
            })
        };
        DnsServer {
            addr,
            records,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// Replaces the addresses of `name` (empty: the name no longer exists).
    pub fn set(&self, name: &str, ips: Vec<Ipv4Addr>) {
        let mut records = self.records.lock().expect("records");
        if ips.is_empty() {
            records.remove(&name.to_ascii_lowercase());
        } else {
            records.insert(name.to_ascii_lowercase(), ips);
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const TTL_SECONDS: u32 = 5;

/// The answer to one query message, or `None` for anything that is not a
/// plain one-question query.
fn respond(query: &[u8], records: &HashMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None; // too short, or a response
    }
    let questions = u16::from_be_bytes([query[4], query[5]]);
    if questions != 1 {
        return None;
    }
    // QNAME: length-prefixed labels up to a zero byte (queries carry no
    // compression pointers).
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let qclass = u16::from_be_bytes([*query.get(pos + 2)?, *query.get(pos + 3)?]);
    let question_end = pos + 4;
    let name = labels.join(".");
    let known = records.get(&name);
    let answers: &[Ipv4Addr] = match known {
        Some(ips) if qtype == TYPE_A && qclass == CLASS_IN => ips,
        _ => &[],
    };
    let mut out = Vec::with_capacity(question_end + answers.len() * 16);
    out.extend_from_slice(&query[0..2]); // id
    let recursion_desired = query[2] & 0x01;
    out.push(0x84 | recursion_desired); // QR, AA, RD echoed
    let rcode = if known.is_some() { 0 } else { 3 }; // NXDOMAIN
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // ARCOUNT (EDNS not echoed)
    out.extend_from_slice(&query[12..question_end]);
    for ip in answers {
        out.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECONDS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
