//! Query strings and the request headers promsnmp reads itself: `?a=b&c=d`
//! (percent escapes, `+`), `Accept`, `Accept-Encoding`, `Host`, and the
//! `PROMSNMP_ALLOWED_HOSTS` list that the Host header is checked against.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promsnmp::hosts::{split_authority, AllowedHosts};
use promsnmp::http::negotiation::{accepts_gzip, negotiate};
use promsnmp::http::parse_query;
use promsnmp::render::Format;

fuzz_target!(|data: &[u8]| {
    // warp hands the raw query over as text; non-UTF-8 never reaches it.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = parse_query(raw);
    // Every pair comes from one non-empty `&`-separated part; decoding never
    // makes text longer than its escapes.
    assert!(pairs.len() <= raw.split('&').filter(|p| !p.is_empty()).count());
    for (k, v) in &pairs {
        assert!(k.len() + v.len() <= raw.len() * 3);
    }
    // Without `%` and `+`, decoding is the identity.
    if !raw.contains(['%', '+']) {
        let plain: Vec<(String, String)> = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        assert_eq!(pairs, plain);
    }
    for default in [Format::Text, Format::OpenMetrics, Format::Protobuf] {
        let _ = negotiate(Some(raw), default);
    }
    let _ = accepts_gzip(Some(raw));
    if let Some((host, port)) = split_authority(raw) {
        if let Ok(allowed) = AllowedHosts::parse(raw) {
            let _ = allowed.allows(host, port);
        }
    }
    if let Ok(allowed) = AllowedHosts::parse(raw) {
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, port) = split_authority(entry).expect("a parsed entry splits");
            assert!(
                allowed.allows(host, port),
                "`{entry}` of the list is not allowed"
            );
        }
    }
});
