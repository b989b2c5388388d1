//! Why an SNMPv3 agent refused a request. The agent says it in a Report PDU
//! (RFC 3414: unknown user, wrong digest, decryption error, …), which the
//! SNMP library checks and drops without telling which counter it carried.
//! [`diagnose`] repeats the request through a loopback relay that keeps the
//! agent's answers, and reads the last report: error reports are sent
//! unauthenticated and unencrypted, so their one varbind is readable.

use std::time::Duration;

use tokio::net::UdpSocket;

use crate::snmp::{AgentParams, Session};

/// What a report's counter means, by OID (RFC 3414 usmStats, RFC 3412/3413).
const REPORTS: &[(&str, &str)] = &[
    (
        "1.3.6.1.6.3.15.1.1.1.0",
        "unsupported security level for this user (usmStatsUnsupportedSecLevels)",
    ),
    (
        "1.3.6.1.6.3.15.1.1.2.0",
        "not in time window: engine boots or time out of step (usmStatsNotInTimeWindows)",
    ),
    (
        "1.3.6.1.6.3.15.1.1.3.0",
        "unknown user (usmStatsUnknownUserNames)",
    ),
    (
        "1.3.6.1.6.3.15.1.1.4.0",
        "unknown engine ID: the configured engineId is not the agent's (usmStatsUnknownEngineIDs)",
    ),
    (
        "1.3.6.1.6.3.15.1.1.5.0",
        "wrong digest: authentication passphrase or protocol (usmStatsWrongDigests)",
    ),
    (
        "1.3.6.1.6.3.15.1.1.6.0",
        "decryption error: privacy passphrase or protocol (usmStatsDecryptionErrors)",
    ),
    (
        "1.3.6.1.6.3.11.2.1.3.0",
        "unknown PDU handler (snmpUnknownPDUHandlers)",
    ),
    (
        "1.3.6.1.6.3.12.1.4.0",
        "context unavailable (snmpUnavailableContexts)",
    ),
    (
        "1.3.6.1.6.3.12.1.5.0",
        "unknown context (snmpUnknownContexts)",
    ),
];

/// usmStatsUnknownEngineIDs: also the answer to every engine discovery.
const UNKNOWN_ENGINE_IDS: &str = "1.3.6.1.6.3.15.1.1.4.0";

/// The agent's reason for refusing `params`' request, when it sent one.
/// `None`: no report came back (nothing answered, or the library refused
/// the answer for another reason). An agent that answers the engine
/// discovery and then drops the request could not decrypt it: a wrong
/// privacy key makes the request unreadable, and an unreadable request
/// gets no answer.
pub async fn diagnose(params: &AgentParams) -> Option<String> {
    let upstream = tokio::time::timeout(
        params.timeout,
        tokio::net::lookup_host(params.target.as_str()),
    )
    .await
    .ok()?
    .ok()?
    .next()?;
    let relay = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let outward = UdpSocket::bind(if upstream.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await
    .ok()?;
    outward.connect(upstream).await.ok()?;
    let mut through_relay = params.clone();
    through_relay.target = relay.local_addr().ok()?.to_string();
    // Every attempt of the request, and a margin for the engine discovery.
    let budget = params.timeout * (params.retries + 1) * 2 + Duration::from_secs(1);
    let answers = tokio::time::timeout(budget, async {
        let mut session = Session::new(through_relay);
        let probe = crate::poll::read_system(&mut session);
        tokio::pin!(probe);
        let mut answers: Vec<Vec<u8>> = Vec::new();
        let mut client = None;
        let mut buf = vec![0u8; 65_536];
        let mut back = vec![0u8; 65_536];
        // Nothing back within one timeout: nobody there (an empty address
        // of a swept range); do not wait out every retry again.
        let silence = tokio::time::sleep(params.timeout);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                _ = &mut probe => return answers,
                _ = &mut silence, if answers.is_empty() => return answers,
                Ok((n, from)) = relay.recv_from(&mut buf) => {
                    client = Some(from);
                    let _ = outward.send(&buf[..n]).await;
                }
                Ok(n) = outward.recv(&mut back) => {
                    // Bounded: a probe is a handful of exchanges.
                    if answers.len() < 16 {
                        answers.push(back[..n].to_vec());
                    }
                    if let Some(client) = client {
                        let _ = relay.send_to(&back[..n], client).await;
                    }
                }
            }
        }
    })
    .await
    .ok()?;
    let reports: Vec<String> = answers.iter().filter_map(|a| report_oid(a)).collect();
    match reports.last() {
        Some(only_discovery)
            if only_discovery == UNKNOWN_ENGINE_IDS && reports.len() == answers.len() && params.usm.as_ref().is_some_and(|u| u.privacy.is_some()) =>
        {
            Some("the agent answered the engine discovery but not the encrypted request: wrong privacy passphrase or protocol (an agent drops a request it cannot decrypt)".into())
        }
        Some(oid) if oid == UNKNOWN_ENGINE_IDS && reports.len() == answers.len() => None,
        Some(oid) => Some(describe(oid)),
        None => None,
    }
}

/// The meaning of a report counter's OID.
pub fn describe(oid: &str) -> String {
    REPORTS
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, meaning)| meaning.to_string())
        .unwrap_or_else(|| format!("report {oid}"))
}

/// The first varbind's OID of an SNMPv3 message carrying a plaintext
/// Report PDU; `None` for anything else (an encrypted or other PDU).
pub fn report_oid(message: &[u8]) -> Option<String> {
    let (_, message, _) = tlv(message, 0x30)?;
    let (version, rest) = integer(message)?;
    if version != 3 {
        return None;
    }
    let (_, _header, rest) = tlv(rest, 0x30)?;
    let (_, _security, rest) = tlv(rest, 0x04)?;
    // An encrypted scoped PDU is an OCTET STRING: not a readable report.
    let (_, scoped, _) = tlv(rest, 0x30)?;
    let (_, _context_engine, scoped) = tlv(scoped, 0x04)?;
    let (_, _context_name, scoped) = tlv(scoped, 0x04)?;
    let (_, pdu, _) = tlv(scoped, 0xA8)?;
    let (_, pdu) = integer(pdu)?; // request id
    let (_, pdu) = integer(pdu)?; // error status
    let (_, pdu) = integer(pdu)?; // error index
    let (_, varbinds, _) = tlv(pdu, 0x30)?;
    let (_, varbind, _) = tlv(varbinds, 0x30)?;
    let (_, oid, _) = tlv(varbind, 0x06)?;
    decode_oid(oid)
}

/// One BER element with tag `tag`: (length of header + value, value, rest).
fn tlv(data: &[u8], tag: u8) -> Option<(usize, &[u8], &[u8])> {
    if *data.first()? != tag {
        return None;
    }
    let first = *data.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = data.get(2..2 + count)?;
        (
            bytes.iter().fold(0usize, |n, b| (n << 8) | *b as usize),
            2 + count,
        )
    };
    let value = data.get(header..header.checked_add(length)?)?;
    Some((header + length, value, &data[header + length..]))
}

fn integer(data: &[u8]) -> Option<(i64, &[u8])> {
    let (_, value, rest) = tlv(data, 0x02)?;
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let negative = value[0] & 0x80 != 0;
    let start: i64 = if negative { -1 } else { 0 };
    Some((value.iter().fold(start, |n, b| (n << 8) | *b as i64), rest))
}

fn decode_oid(bytes: &[u8]) -> Option<String> {
    let (first, rest) = bytes.split_first()?;
    let mut parts = vec![u64::from(first / 40), u64::from(first % 40)];
    let mut value: u64 = 0;
    for b in rest {
        value = value.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(value);
            value = 0;
        }
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BER element.
    fn el(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag, value.len() as u8];
        out.extend_from_slice(value);
        out
    }

    fn report(oid: &[u8]) -> Vec<u8> {
        let varbind = el(0x30, &[el(0x06, oid), el(0x41, &[7])].concat());
        let pdu = el(
            0xA8,
            &[
                el(0x02, &[1]),
                el(0x02, &[0]),
                el(0x02, &[0]),
                el(0x30, &varbind),
            ]
            .concat(),
        );
        let scoped = el(0x30, &[el(0x04, b"engine"), el(0x04, b""), pdu].concat());
        let header = el(
            0x30,
            &[
                el(0x02, &[1]),
                el(0x02, &[0x05, 0xdc]),
                el(0x04, &[0]),
                el(0x02, &[3]),
            ]
            .concat(),
        );
        el(
            0x30,
            &[el(0x02, &[3]), header, el(0x04, b"usm"), scoped].concat(),
        )
    }

    #[test]
    fn reads_the_counter_of_a_plaintext_report() {
        // 1.3.6.1.6.3.15.1.1.3.0: usmStatsUnknownUserNames
        let unknown_user = report(&[0x2b, 6, 1, 6, 3, 15, 1, 1, 3, 0]);
        assert_eq!(
            report_oid(&unknown_user).as_deref(),
            Some("1.3.6.1.6.3.15.1.1.3.0")
        );
        assert!(describe("1.3.6.1.6.3.15.1.1.3.0").starts_with("unknown user"));
        assert!(describe("1.3.6.1.6.3.15.1.1.5.0").starts_with("wrong digest"));
        assert!(describe("1.3.6.1.6.3.15.1.1.6.0").starts_with("decryption error"));
        assert_eq!(describe("1.2.3"), "report 1.2.3");
    }

    #[test]
    fn anything_else_is_no_report() {
        let report = report(&[0x2b, 6, 1, 6, 3, 15, 1, 1, 5, 0]);
        // A response PDU (0xA2) instead of a report.
        let mut response = report.clone();
        let at = response.iter().position(|b| *b == 0xA8).unwrap();
        response[at] = 0xA2;
        assert_eq!(report_oid(&response), None);
        // Truncated anywhere, or a v2c message.
        for cut in 0..report.len() {
            assert_eq!(report_oid(&report[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            report_oid(&el(0x30, &[el(0x02, &[1]), el(0x04, b"public")].concat())),
            None
        );
    }
}
