//! An agent's answer datagram, parsed as promsnmp's sessions parse it: the
//! snmp2 crate's `Pdu` decoder (third-party, but it reads the agent's bytes)
//! for v1/v2c, and for v3 with the USM states a session can be in (engine
//! not yet discovered; engine known without auth; engine known with
//! SHA1 auth, with and without DES/AES128/AES256 privacy). The varbinds are converted to promsnmp's `SnmpValue` as
//! src/snmp.rs does and decoded by the built-in modules and the fuzz
//! module, through the whole sample pipeline (common/mod.rs).
//!
//! The first byte picks the session state; the rest is the datagram. In
//! the states with SHA1 keys the harness signs authenticated messages
//! itself (a valid HMAC where the decoder looks for it), so fuzzing
//! reaches what follows the signature check: engine boots/time, DES/AES
//! decryption of the scoped PDU and its parsing.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use promsnmp::modules::decode::Varbinds;
use promsnmp::snmp::{oid_to_vec, SnmpValue};
use sha1::{Digest, Sha1};
use snmp2::v3::{Auth, AuthProtocol, Cipher, KeyExtension, Security};
use snmp2::{AsnReader, Pdu};

const ENGINE_ID: &[u8] = &[0x80, 0x00, 0x1f, 0x88, 0x80, 0x12, 0x34, 0x56, 0x78];

/// The USM user of the states with keys: SHA1 (HMAC-SHA1-96) authentication,
/// so that the harness can sign fuzzed messages (see [`sign`]).
const USER: &[u8] = b"monitor";
const AUTH_PASS: &[u8] = b"authpass123";
const PRIV_PASS: &[u8] = b"privpass123";

/// v3 session states, keys derived once (that costs a megabyte of hashing).
fn securities() -> &'static [Security] {
    static S: OnceLock<Vec<Security>> = OnceLock::new();
    S.get_or_init(|| {
        let known = |s: Security| {
            s.with_engine_id(ENGINE_ID)
                .expect("engine id")
                .with_engine_boots_and_time(3, 1000)
        };
        let sha1 = || Security::new(USER, AUTH_PASS).with_auth_protocol(AuthProtocol::Sha1);
        let private = |cipher| Auth::AuthPriv {
            cipher,
            privacy_password: PRIV_PASS.to_vec(),
        };
        vec![
            // Before discovery: no engine id.
            Security::new(USER, b"").with_auth(Auth::NoAuthNoPriv),
            Security::new(USER, AUTH_PASS)
                .with_auth_protocol(AuthProtocol::Sha256)
                .with_auth(private(Cipher::Aes128)),
            // Engine known.
            known(Security::new(USER, b"").with_auth(Auth::NoAuthNoPriv)),
            known(sha1().with_auth(Auth::AuthNoPriv)),
            known(sha1().with_auth(private(Cipher::Des))),
            known(sha1().with_auth(private(Cipher::Aes128))),
            known(
                sha1()
                    .with_auth(private(Cipher::Aes256))
                    .with_key_extension_method(KeyExtension::Blumenthal),
            ),
        ]
    })
}

/// The states whose messages the harness signs (SHA1 keys).
const SIGNED_STATES: std::ops::RangeInclusive<usize> = 3..=6;

/// RFC 3414 A.2.2: the SHA1 key of `AUTH_PASS`, localised to `ENGINE_ID`.
fn auth_key() -> &'static [u8] {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    K.get_or_init(|| {
        let mut h = Sha1::new();
        let mut fed = 0;
        while fed < 1_048_576 {
            let n = AUTH_PASS.len().min(1_048_576 - fed);
            h.update(&AUTH_PASS[..n]);
            fed += n;
        }
        let ku = h.finalize();
        let mut h = Sha1::new();
        h.update(ku);
        h.update(ENGINE_ID);
        h.update(ku);
        h.finalize().to_vec()
    })
}

/// Makes an authenticated message carry a valid HMAC-SHA1-96, found where
/// snmp2's parse_v3 looks for it, so the fuzzer gets past the signature
/// check to the engine-time checks, decryption and the scoped PDU.
fn sign(msg: &mut [u8]) -> Option<()> {
    let seq = AsnReader::from_bytes(msg).read_raw(0x30).ok()?;
    let mut rdr = AsnReader::from_bytes(seq);
    rdr.read_asn_integer().ok()?;
    let mut global = AsnReader::from_bytes(rdr.read_raw(0x30).ok()?);
    global.read_asn_integer().ok()?;
    global.read_asn_integer().ok()?;
    let flags = global.read_asn_octetstring().ok()?.first().copied()?;
    if flags & 1 == 0 {
        return None;
    }
    let params = rdr.read_asn_octetstring().ok()?;
    let mut usm = AsnReader::from_bytes(AsnReader::from_bytes(params).read_raw(0x30).ok()?);
    usm.read_asn_octetstring().ok()?;
    usm.read_asn_integer().ok()?;
    usm.read_asn_integer().ok()?;
    usm.read_asn_octetstring().ok()?;
    let len = usm.read_asn_octetstring().ok()?.len();
    // The same arithmetic as parse_v3.
    let at = msg
        .len()
        .checked_sub(rdr.bytes_left())?
        .checked_sub(len)?
        .checked_sub(usm.bytes_left())?;
    if len != 12 || at + len > msg.len() {
        return None;
    }
    msg[at..at + len].fill(0);
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_key()).ok()?;
    Mac::update(&mut mac, msg);
    let tag = mac.finalize().into_bytes();
    msg[at..at + len].copy_from_slice(&tag[..len]);
    Some(())
}

fn use_pdu(pdu: Pdu<'_>) {
    let _ = pdu.version();
    let _ = (
        pdu.message_type,
        pdu.req_id,
        pdu.error_status,
        pdu.error_index,
    );
    let mut all = Varbinds::new();
    let mut uptime = None;
    for (oid, value) in pdu.varbinds.clone().take(4096) {
        let _ = format!("{oid} {value:?}");
        let oid = oid_to_vec(&oid);
        let value = SnmpValue::from_value(&value);
        let _ = value.as_text();
        let _ = value.as_u64();
        if oid == [1, 3, 6, 1, 2, 1, 1, 3, 0] {
            if let SnmpValue::TimeTicks(t) = value {
                uptime = Some(t);
            }
        }
        all.insert(oid, value);
    }
    if common::debug() {
        eprintln!("{:?}: {} varbinds", pdu.message_type, all.len());
    }
    common::pipeline(common::modules(), &all, uptime, Some(true));
}

fn refused(e: snmp2::Error) {
    if common::debug() {
        eprintln!("refused: {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, datagram)) = data.split_first() else {
        return;
    };
    // The v3 decoder zeroes the authentication parameters in place through
    // a shared reference (snmp2 0.5 src/v3.rs, parse_v3): give it a copy,
    // as the session's receive buffer is.
    let mut datagram = datagram.to_vec();
    let states = securities();
    match mode as usize % (states.len() + 1) {
        0 => match Pdu::from_bytes(&datagram) {
            Ok(pdu) => use_pdu(pdu),
            Err(e) => refused(e),
        },
        n => {
            if SIGNED_STATES.contains(&(n - 1)) {
                let _ = sign(&mut datagram);
            }
            let mut security = states[n - 1].clone();
            match Pdu::from_bytes_with_security(&datagram, Some(&mut security)) {
                Ok(pdu) => use_pdu(pdu),
                Err(e) => refused(e),
            }
        }
    }
});
