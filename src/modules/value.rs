//! Reading one SNMP value or one index the way snmp_exporter does: the
//! number of a value, its text as a label (by type: DisplayString,
//! OctetString as hex, PhysAddress48, IP addresses, OIDs, DISPLAY-HINTs), and
//! the text of index sub-identifiers. Pure functions; the decoder calls them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::file::MetricType;
use crate::snmp::SnmpValue;

/// The numeric value of a varbind (0 for values that are not numbers, as
/// snmp_exporter reads them). Counter64 stays exact up to f64's precision
/// (snmp_exporter wraps it at 2^53 instead).
pub fn number(value: &SnmpValue) -> f64 {
    match value {
        SnmpValue::Integer(n) => *n as f64,
        SnmpValue::Counter32(n) | SnmpValue::Unsigned32(n) | SnmpValue::TimeTicks(n) => *n as f64,
        SnmpValue::Counter64(n) => *n as f64,
        SnmpValue::Opaque(bytes) => opaque_float(bytes).unwrap_or(0.0),
        _ => 0.0,
    }
}

/// The value as a signed integer, for enum lookups and chained lookups.
pub fn integer(value: &SnmpValue) -> i64 {
    match value {
        SnmpValue::Integer(n) => *n,
        SnmpValue::Counter32(n) | SnmpValue::Unsigned32(n) | SnmpValue::TimeTicks(n) => {
            i64::from(*n)
        }
        SnmpValue::Counter64(n) => *n as i64,
        SnmpValue::Opaque(bytes) => opaque_float(bytes).map_or(0, |f| f as i64),
        _ => 0,
    }
}

/// Float and Double carried in an Opaque (net-snmp's `9f78`/`9f79` tags).
pub fn opaque_float(bytes: &[u8]) -> Option<f64> {
    match bytes {
        [0x9f, 0x78, 4, rest @ ..] if rest.len() == 4 => Some(f64::from(f32::from_be_bytes([
            rest[0], rest[1], rest[2], rest[3],
        ]))),
        [0x9f, 0x79, 8, rest @ ..] if rest.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(rest);
            Some(f64::from_be_bytes(b))
        }
        _ => None,
    }
}

/// The raw octets of a value, for types that read octets (DateAndTime, Bits).
pub fn octets(value: &SnmpValue) -> Option<&[u8]> {
    match value {
        SnmpValue::OctetString(b) => Some(b),
        SnmpValue::Opaque(b) if opaque_float(b).is_none() => Some(b),
        _ => None,
    }
}

/// Replaces each run of invalid UTF-8 with one U+FFFD, as Go's
/// `strings.ToValidUTF8` does (Rust's lossy conversion replaces each
/// invalid sequence separately).
pub fn valid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    let mut last_was_invalid = false;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                let good = std::str::from_utf8(good).expect("checked");
                if !good.is_empty() {
                    last_was_invalid = false;
                }
                out.push_str(good);
                if !last_was_invalid {
                    out.push('\u{FFFD}');
                    last_was_invalid = true;
                }
                let skip = e.error_len().unwrap_or(bad.len());
                rest = &bad[skip..];
                if rest.is_empty() {
                    return out;
                }
            }
        }
    }
}

/// A value as label text, for `value_type` (and a DISPLAY-HINT).
pub fn text(
    value: &SnmpValue,
    value_type: Option<MetricType>,
    display_hint: Option<&str>,
) -> String {
    match value {
        SnmpValue::Integer(n) => n.to_string(),
        SnmpValue::Counter32(n) | SnmpValue::Unsigned32(n) | SnmpValue::TimeTicks(n) => {
            n.to_string()
        }
        SnmpValue::Counter64(n) => n.to_string(),
        SnmpValue::ObjectId(parts) => {
            let mut s = String::with_capacity(parts.len() * 3);
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                let _ = write!(s, "{p}");
            }
            s
        }
        SnmpValue::IpAddress(a) => format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
        SnmpValue::Opaque(bytes) if opaque_float(bytes).is_some() => {
            format_go_float(opaque_float(bytes).unwrap_or_default(), bytes[1] == 0x78)
        }
        SnmpValue::OctetString(bytes) | SnmpValue::Opaque(bytes) => {
            octets_text(bytes, value_type, display_hint)
        }
        _ => String::new(),
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 32|64)`: shortest digits, no exponent.
fn format_go_float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let shortest = if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    };
    shortest
}

/// Octets as label text by type, as snmp_exporter formats them.
fn octets_text(bytes: &[u8], value_type: Option<MetricType>, display_hint: Option<&str>) -> String {
    if let Some(hint) = display_hint.filter(|h| !h.is_empty()) {
        if matches!(value_type, None | Some(MetricType::OctetString)) {
            if let Some(text) = apply_display_hint(hint, bytes) {
                return valid_utf8(&text);
            }
        }
    }
    let value_type = match value_type {
        None | Some(MetricType::Bits) => MetricType::OctetString,
        Some(t) => t,
    };
    let mut parts: Vec<u64> = Vec::with_capacity(bytes.len() + 1);
    if matches!(
        value_type,
        MetricType::OctetString | MetricType::DisplayString
    ) {
        // The length comes first, as it does in an index.
        parts.push(bytes.len() as u64);
    }
    parts.extend(bytes.iter().map(|b| u64::from(*b)));
    let (text, _, _) = index_text(&parts, value_type, 0, false, None);
    text
}

/// No OID has more sub-identifiers (RFC 3416): an index may not pad to more.
const MAX_OID_LENGTH: usize = 128;

/// The length an index or value of `stated` length reads: all of it when
/// the sub-identifiers are there, and padding only up to an OID's length (a
/// larger stated length comes from a broken agent; padding would only cost
/// memory).
fn readable_length(stated: u64, available: usize) -> usize {
    usize::try_from(stated)
        .unwrap_or(usize::MAX)
        .min(available.max(MAX_OID_LENGTH))
}

/// `(text, sub-identifiers used, sub-identifiers left)` of one index of
/// `index_type` at the start of `oids` (snmp_exporter's indexOidsAsString).
/// Short indexes are padded with zeros, never panicking.
pub fn index_text(
    oids: &[u64],
    index_type: MetricType,
    fixed_size: usize,
    implied: bool,
    enum_values: Option<&BTreeMap<i64, String>>,
) -> (String, Vec<u64>, Vec<u64>) {
    if let Some(mapping) = combined_mapping(index_type) {
        let (sub, rest) = if index_type == MetricType::InetAddressMissingSize {
            split(oids, 1)
        } else {
            split(oids, 2)
        };
        if let Some(t) = mapping(sub[0] as i64) {
            let (text, used, left) = index_text(&rest, t, 0, false, enum_values);
            let mut all = sub;
            all.extend(used);
            return (text, all, left);
        }
        if index_type == MetricType::InetAddressMissingSize {
            return index_text(oids, MetricType::OctetString, 0, true, enum_values);
        }
        let length = readable_length(sub[1], rest.len()) + 2;
        return index_text(oids, MetricType::OctetString, length, false, enum_values);
    }
    match index_type {
        MetricType::PhysAddress48 => {
            let (sub, rest) = split(oids, 6);
            let text = sub
                .iter()
                .map(|o| format!("{o:02X}"))
                .collect::<Vec<_>>()
                .join(":");
            (text, sub, rest)
        }
        MetricType::OctetString | MetricType::DisplayString => {
            let mut used = Vec::new();
            let mut length = if implied {
                oids.len()
            } else {
                readable_length(fixed_size as u64, oids.len())
            };
            let mut rest: Vec<u64> = oids.to_vec();
            if length == 0 {
                let (head, tail) = split(&rest, 1);
                length = readable_length(head[0], tail.len());
                used = head;
                rest = tail;
            }
            let (content, rest) = split(&rest, length);
            used.extend(content.iter().copied());
            // Sub-identifiers above 255 keep their low byte, as Go's byte() does.
            let bytes: Vec<u8> = content.iter().map(|o| *o as u8).collect();
            let text = if index_type == MetricType::DisplayString {
                valid_utf8(&bytes)
            } else if bytes.is_empty() {
                String::new()
            } else {
                let mut s = String::with_capacity(2 + bytes.len() * 2);
                s.push_str("0x");
                for b in &bytes {
                    let _ = write!(s, "{b:02X}");
                }
                s
            };
            (text, used, rest)
        }
        MetricType::InetAddressIPv4 => {
            let (sub, rest) = split(oids, 4);
            let text = sub
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(".");
            (text, sub, rest)
        }
        MetricType::InetAddressIPv6 => {
            let (sub, rest) = split(oids, 16);
            let mut text = String::with_capacity(39);
            for (i, o) in sub.iter().enumerate() {
                if i > 0 && i % 2 == 0 {
                    text.push(':');
                }
                let _ = write!(text, "{o:02X}");
            }
            (text, sub, rest)
        }
        MetricType::EnumAsInfo => {
            let (sub, rest) = split(oids, 1);
            let text = enum_values
                .and_then(|e| e.get(&(sub[0] as i64)))
                .cloned()
                .unwrap_or_else(|| sub[0].to_string());
            (text, sub, rest)
        }
        // Integer32, Integer, gauge, counter (and anything else reads as a number).
        _ => {
            let (sub, rest) = split(oids, 1);
            (sub[0].to_string(), sub, rest)
        }
    }
}

/// The first `count` sub-identifiers (padded with zeros) and the rest.
fn split(oids: &[u64], count: usize) -> (Vec<u64>, Vec<u64>) {
    let mut head: Vec<u64> = oids.iter().take(count).copied().collect();
    head.resize(count, 0);
    let tail = oids.get(count..).map(<[u64]>::to_vec).unwrap_or_default();
    (head, tail)
}

/// For the combined types: the type the preceding type column's value selects.
pub fn combined_mapping(t: MetricType) -> Option<fn(i64) -> Option<MetricType>> {
    fn inet(v: i64) -> Option<MetricType> {
        match v {
            1 => Some(MetricType::InetAddressIPv4),
            2 => Some(MetricType::InetAddressIPv6),
            _ => None,
        }
    }
    fn lldp(v: i64) -> Option<MetricType> {
        match v {
            1 | 2 | 5 | 7 => Some(MetricType::DisplayString),
            3 => Some(MetricType::PhysAddress48),
            _ => None,
        }
    }
    match t {
        MetricType::InetAddress | MetricType::InetAddressMissingSize => Some(inet),
        MetricType::LldpPortId => Some(lldp),
        _ => None,
    }
}

/// Applies an RFC 2579 DISPLAY-HINT octet format to `data`; `None` when the
/// hint cannot be read (the caller falls back to the type's formatting).
pub fn apply_display_hint(hint: &str, data: &[u8]) -> Option<Vec<u8>> {
    let hint = hint.as_bytes();
    if hint.is_empty() || data.is_empty() {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(data.len() * 4);
    let (mut h, mut d) = (0usize, 0usize);
    let mut last_spec_start = 0;
    let mut last_consumes = false;
    while d < data.len() {
        let mut spec_start = h;
        if h >= hint.len() {
            if !last_consumes {
                return None;
            }
            h = last_spec_start;
            spec_start = last_spec_start;
        }
        let star = hint.get(h) == Some(&b'*');
        if star {
            h += 1;
        }
        if !hint.get(h).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let mut take: usize = 0;
        while let Some(c) = hint.get(h).filter(|c| c.is_ascii_digit()) {
            take = take.checked_mul(10)?.checked_add(usize::from(c - b'0'))?;
            h += 1;
        }
        let format = *hint.get(h)?;
        if !b"dxoat".contains(&format) {
            return None;
        }
        h += 1;
        let separator = hint
            .get(h)
            .filter(|c| !c.is_ascii_digit() && **c != b'*')
            .copied();
        if separator.is_some() {
            h += 1;
        }
        let terminator = if star {
            hint.get(h)
                .filter(|c| !c.is_ascii_digit() && **c != b'*')
                .copied()
        } else {
            None
        };
        if terminator.is_some() {
            h += 1;
        }
        last_spec_start = spec_start;
        last_consumes = take > 0 || star;
        let mut repeat = 1usize;
        if star && d < data.len() {
            repeat = usize::from(data[d]);
            d += 1;
        }
        let mut r = 0;
        while r < repeat && d < data.len() {
            let end = d.saturating_add(take).min(data.len());
            let chunk = &data[d..end];
            match format {
                b'd' | b'o' => {
                    if chunk.len() > 8 {
                        return None;
                    }
                    let value = chunk.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
                    let text = if format == b'd' {
                        value.to_string()
                    } else {
                        format!("{value:o}")
                    };
                    out.extend_from_slice(text.as_bytes());
                }
                b'x' => {
                    for b in chunk {
                        let _ = write!(HexSink(&mut out), "{b:02X}");
                    }
                }
                _ => out.extend_from_slice(chunk),
            }
            d = end;
            let more = d < data.len();
            if let Some(sep) = separator {
                if more && (terminator.is_none() || r != repeat - 1) {
                    out.push(sep);
                }
            }
            r += 1;
        }
        if let Some(term) = terminator {
            if d < data.len() {
                out.push(term);
            }
        }
    }
    Some(out)
}

/// `write!` into a byte vector.
struct HexSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for HexSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetricType::*;

    #[test]
    fn utf8_runs_become_one_replacement() {
        assert_eq!(valid_utf8(b"eth0"), "eth0");
        assert_eq!(valid_utf8(b"a\xff\xfeb"), "a\u{FFFD}b");
        assert_eq!(valid_utf8(b"\xffa\xff"), "\u{FFFD}a\u{FFFD}");
        assert_eq!(valid_utf8("é".as_bytes()), "é");
    }

    #[test]
    fn values_as_text_by_type() {
        let s = |b: &[u8], t| text(&SnmpValue::OctetString(b.to_vec()), t, None);
        assert_eq!(s(b"eth0", Some(DisplayString)), "eth0");
        assert_eq!(
            s(&[0, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e], Some(PhysAddress48)),
            "00:1A:2B:3C:4D:5E"
        );
        assert_eq!(
            s(&[1, 2, 3], Some(PhysAddress48)),
            "01:02:03:00:00:00",
            "short: padded"
        );
        assert_eq!(s(&[0xde, 0xad], None), "0xDEAD");
        assert_eq!(s(&[0xde, 0xad], Some(OctetString)), "0xDEAD");
        assert_eq!(s(&[], Some(OctetString)), "");
        assert_eq!(s(&[192, 168, 1, 1], Some(InetAddressIPv4)), "192.168.1.1");
        let v6: Vec<u8> = (0..16).collect();
        assert_eq!(
            s(&v6, Some(InetAddressIPv6)),
            "0001:0203:0405:0607:0809:0A0B:0C0D:0E0F"
        );
        assert_eq!(s(b"\xffok", Some(DisplayString)), "\u{FFFD}ok");
        assert_eq!(
            text(&SnmpValue::Integer(-5), Some(DisplayString), None),
            "-5"
        );
        assert_eq!(
            text(&SnmpValue::Counter64(u64::MAX), None, None),
            "18446744073709551615"
        );
        assert_eq!(
            text(&SnmpValue::ObjectId(vec![1, 3, 6, 1]), None, None),
            "1.3.6.1"
        );
        assert_eq!(
            text(&SnmpValue::IpAddress([10, 0, 0, 1]), None, None),
            "10.0.0.1"
        );
        assert_eq!(text(&SnmpValue::Null, None, None), "");
        let float = SnmpValue::Opaque(vec![0x9f, 0x78, 4, 0x3f, 0xc0, 0, 0]);
        assert_eq!(text(&float, None, None), "1.5");
        assert_eq!(number(&float), 1.5);
        assert_eq!(number(&SnmpValue::OctetString(b"12".to_vec())), 0.0);
        assert_eq!(number(&SnmpValue::Integer(-3)), -3.0);
    }

    #[test]
    fn display_hints() {
        let h = |hint: &str, data: &[u8]| {
            apply_display_hint(hint, data).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            h("1d.1d.1d.1d", &[192, 168, 1, 1]).as_deref(),
            Some("192.168.1.1")
        );
        assert_eq!(
            h("1x:", &[0, 26, 43, 60, 77, 94]).as_deref(),
            Some("00:1A:2B:3C:4D:5E")
        );
        assert_eq!(h("255a", b"Hello").as_deref(), Some("Hello"));
        assert_eq!(h("2d", &[1, 0]).as_deref(), Some("256"));
        assert_eq!(h("1o", &[8]).as_deref(), Some("10"));
        // A repeat count and a terminator.
        assert_eq!(h("*1d./", &[2, 1, 2, 1, 3]).as_deref(), Some("1.2/3"));
        // The hint repeats from its last spec: the next octet is a count again.
        assert_eq!(h("*1d./", &[2, 1, 2, 3]).as_deref(), Some("1.2/"));
        assert_eq!(h("", b"x"), None);
        assert_eq!(h("1q", b"x"), None);
        assert_eq!(
            h("0a", b"x"),
            None,
            "a spec that consumes nothing must not loop"
        );
        assert_eq!(
            text(
                &SnmpValue::OctetString(vec![10, 0, 0, 1]),
                Some(OctetString),
                Some("1d.1d.1d.1d")
            ),
            "10.0.0.1"
        );
        assert_eq!(
            text(
                &SnmpValue::OctetString(vec![10, 0, 0, 1]),
                Some(DisplayString),
                Some("1d.")
            ),
            "\n\0\0\u{1}",
            "hints apply to OctetString only"
        );
    }

    #[test]
    fn indexes() {
        let idx = |oids: &[u64], t, fixed, implied| index_text(oids, t, fixed, implied, None);
        assert_eq!(
            idx(&[5, 9], Gauge, 0, false),
            ("5".into(), vec![5], vec![9])
        );
        assert_eq!(
            idx(&[3, 97, 98, 99, 7], DisplayString, 0, false),
            ("abc".into(), vec![3, 97, 98, 99], vec![7])
        );
        assert_eq!(idx(&[97, 98], DisplayString, 0, true).0, "ab");
        assert_eq!(idx(&[97, 98, 1], DisplayString, 2, false).0, "ab");
        assert_eq!(idx(&[2, 0xab, 0xcd], OctetString, 0, false).0, "0xABCD");
        assert_eq!(idx(&[10, 0, 0, 1], InetAddressIPv4, 0, false).0, "10.0.0.1");
        assert_eq!(
            idx(&[1, 2, 3, 4, 5, 6], PhysAddress48, 0, false).0,
            "01:02:03:04:05:06"
        );
        // InetAddress: type 1 (IPv4), length 4, then the address.
        let (t, used, rest) = idx(&[1, 4, 10, 0, 0, 1, 9], InetAddress, 0, false);
        assert_eq!((t.as_str(), used.len(), rest), ("10.0.0.1", 6, vec![9]));
        // InetAddressMissingSize: type then address, no length.
        assert_eq!(
            idx(&[1, 10, 0, 0, 2], InetAddressMissingSize, 0, false).0,
            "10.0.0.2"
        );
        // Unknown address type: the length says how many octets.
        assert_eq!(
            idx(&[9, 2, 0xab, 0xcd], InetAddress, 0, false).0,
            "0x0902ABCD"
        );
        // LldpPortId subtype 3 is a MAC address.
        assert_eq!(
            idx(&[3, 6, 1, 2, 3, 4, 5, 6], LldpPortId, 0, false).0,
            "01:02:03:04:05:06"
        );
        let enums = BTreeMap::from([(1, "up".to_string())]);
        assert_eq!(index_text(&[1], EnumAsInfo, 0, false, Some(&enums)).0, "up");
        assert_eq!(index_text(&[2], EnumAsInfo, 0, false, Some(&enums)).0, "2");
        // Truncated indexes are padded, never a panic.
        assert_eq!(idx(&[], Gauge, 0, false).0, "0");
        assert_eq!(idx(&[5, 97], DisplayString, 0, false).0, "a\0\0\0\0");
        assert_eq!(idx(&[u64::MAX], DisplayString, 0, false).1.len(), 1 + 128);
        assert_eq!(
            idx(&[9, u64::MAX], InetAddress, 0, false).1.len(),
            128,
            "no huge padding"
        );
    }

    #[test]
    fn long_strings_are_read_whole() {
        let long = "x".repeat(300);
        let value = SnmpValue::OctetString(long.clone().into_bytes());
        assert_eq!(text(&value, Some(DisplayString), None), long);
        let mut index = vec![300];
        index.extend(long.bytes().map(u64::from));
        let (got, used, left) = index_text(&index, DisplayString, 0, false, None);
        assert_eq!((got, used.len(), left.len()), (long, 301, 0));
    }
}

#[cfg(test)]
mod properties {
    //! Index decoding over many generated indexes: it never panics, never
    //! uses more than it was given plus padding, and what it used followed
    //! by what it left is the input whenever the input was long enough.

    use super::*;

    /// xorshift64*: a small deterministic generator, no crate needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Every type an index may have.
    const TYPES: [MetricType; 13] = super::super::file::IndexType::ALLOWED;

    #[test]
    fn index_decoding_consumes_exactly_what_it_reports() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let enums = BTreeMap::from([(1, "one".to_string())]);
        for _ in 0..20_000 {
            let len = rng.below(24) as usize;
            let oids: Vec<u64> = (0..len)
                .map(|_| match rng.below(4) {
                    0 => rng.below(3),
                    1 => rng.below(20),
                    2 => rng.below(256),
                    _ => rng.next() >> rng.below(64),
                })
                .collect();
            let t = TYPES[rng.below(TYPES.len() as u64) as usize];
            let fixed = if rng.below(4) == 0 {
                rng.below(8) as usize
            } else {
                0
            };
            let implied = rng.below(5) == 0;
            let (text, used, left) = index_text(&oids, t, fixed, implied, Some(&enums));
            assert!(
                text.len() <= 8 * (used.len() + 2) + 64,
                "{t:?} {oids:?}: {text:?}"
            );
            let mut joined = used.clone();
            joined.extend(&left);
            if joined.len() == oids.len() {
                assert_eq!(joined, oids, "{t:?} fixed {fixed} implied {implied}");
            } else {
                // Padded: the input ran out; what there was comes first.
                assert!(
                    joined.len() > oids.len(),
                    "{t:?} lost sub-identifiers of {oids:?}"
                );
                assert_eq!(&joined[..oids.len()], &oids[..], "{t:?}");
                assert!(left.is_empty());
            }
        }
    }

    #[test]
    fn octets_read_as_text_by_any_type_without_panicking() {
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let t = TYPES[rng.below(TYPES.len() as u64) as usize];
            let hint = ["", "1d.", "1x:", "255a", "*1d./", "2o", "0a", "1q"][rng.below(8) as usize];
            let value = SnmpValue::OctetString(bytes);
            let text = text(&value, Some(t), Some(hint));
            // Padding is bounded by the longest OID (an address of unknown
            // type pads to its stated length, at most 128 octets).
            assert!(text.len() <= 8 * len + 300, "{t:?} {hint}: {}", text.len());
        }
    }
}
