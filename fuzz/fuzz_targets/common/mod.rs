//! Shared by the fuzz targets that turn an agent's values into series:
//! the decode → sample → history → render → cache-wire pipeline, the
//! modules it runs, and varbinds derived from fuzz bytes.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arbitrary::{Result, Unstructured};
use promsnmp::modules::decode::{decode_module, Skipped, Varbinds, View};
use promsnmp::modules::definition::compile_module;
use promsnmp::modules::file::parse_bytes;
use promsnmp::modules::plan::filtered_view;
use promsnmp::modules::{Module, ModuleSet};
use promsnmp::polled::PolledDevice;
use promsnmp::render::{render, Format, RenderOptions};
use promsnmp::sample::Sample;
use promsnmp::snmp::SnmpValue;
use promsnmp::utilization::DeviceHistory;

/// `FUZZ_DEBUG=1`: say why inputs were refused (to check seeds by hand:
/// `FUZZ_DEBUG=1 cargo fuzz run <target> corpus/<target>/seed-* -- -runs=0`).
pub fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// A module of our own that uses what the built-ins do not: every value
/// type, indexes of every kind, chained and label-dropping lookups, regex
/// extracts, date patterns, display hints, scale/offset and a filter.
pub const FANCY_MODULE: &str = r#"
modules:
  fancy:
    walk:
    - 1.3.6.1.4.1.99999.1
    - 1.3.6.1.4.1.99999.2
    get:
    - 1.3.6.1.4.1.99999.3.1.0
    - 1.3.6.1.4.1.99999.3.2.0
    filters:
    - oid: 1.3.6.1.4.1.99999.2.1.2
      targets:
      - 1.3.6.1.4.1.99999.2.1.3
      values:
      - "^(up|1)$"
    metrics:
    - name: fancyCounter
      oid: 1.3.6.1.4.1.99999.1.1.1
      type: counter
      help: A counter indexed by an integer
      indexes:
      - labelname: fancyIndex
        type: gauge
      lookups:
      - labels: [fancyIndex]
        labelname: fancyName
        oid: 1.3.6.1.4.1.99999.1.1.2
        type: DisplayString
      - labels: [fancyName]
        labelname: fancyAlias
        oid: 1.3.6.1.4.1.99999.1.1.9
        type: DisplayString
      - labels: []
        labelname: fancyIndex
    - name: fancyGauge
      oid: 1.3.6.1.4.1.99999.1.1.3
      type: gauge
      help: A scaled gauge
      scale: 0.001
      offset: -1.5
      indexes:
      - labelname: fancyIndex
        type: Integer32
        enum_values:
          1: one
          2: two
    - name: fancyFloat
      oid: 1.3.6.1.4.1.99999.1.1.4
      type: Float
      help: Opaque float
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyDouble
      oid: 1.3.6.1.4.1.99999.1.1.5
      type: Double
      help: Opaque double
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyDate
      oid: 1.3.6.1.4.1.99999.1.1.6
      type: DateAndTime
      help: A DateAndTime
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyParsedDate
      oid: 1.3.6.1.4.1.99999.1.1.7
      type: ParseDateAndTime
      datetime_pattern: "%Y-%m-%d %H:%M:%S"
      help: A date as text
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyNtp
      oid: 1.3.6.1.4.1.99999.1.1.8
      type: NTPTimeStamp
      help: An NTP time stamp
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyState
      oid: 1.3.6.1.4.1.99999.1.1.10
      type: EnumAsStateSet
      help: A state set
      indexes:
      - labelname: fancyIndex
        type: gauge
      enum_values:
        1: up
        2: down
        3: testing
    - name: fancyInfo
      oid: 1.3.6.1.4.1.99999.1.1.11
      type: EnumAsInfo
      help: An info enum
      indexes:
      - labelname: fancyIndex
        type: gauge
      enum_values:
        1: alpha
        2: beta
    - name: fancyBits
      oid: 1.3.6.1.4.1.99999.1.1.12
      type: Bits
      help: Bits
      indexes:
      - labelname: fancyIndex
        type: gauge
      enum_values:
        0: zero
        1: one
        7: seven
        8: eight
        15: fifteen
    - name: fancyText
      oid: 1.3.6.1.4.1.99999.1.1.13
      type: DisplayString
      help: Text with a display hint and regex extracts
      display_hint: "1a"
      indexes:
      - labelname: fancyIndex
        type: gauge
      regex_extracts:
        Version:
        - regex: "^v?([0-9]+)\\.([0-9]+)"
          value: "$1.$2"
        Present:
        - regex: ".+"
          value: "1"
    - name: fancyHex
      oid: 1.3.6.1.4.1.99999.1.1.14
      type: OctetString
      help: Octets with a display hint
      display_hint: "1x:2d-4o.255t*1a"
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyMac
      oid: 1.3.6.1.4.1.99999.1.1.15
      type: PhysAddress48
      help: A MAC
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyInet
      oid: 1.3.6.1.4.1.99999.1.1.17
      type: InetAddress
      help: An address whose type is in the preceding column
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyLldp
      oid: 1.3.6.1.4.1.99999.1.1.19
      type: LldpPortId
      help: An LLDP port id whose subtype is in the preceding column
      indexes:
      - labelname: fancyIndex
        type: gauge
    - name: fancyByAddr
      oid: 1.3.6.1.4.1.99999.1.2.1
      type: gauge
      help: Indexed by every kind of index
      indexes:
      - labelname: addrType
        type: gauge
      - labelname: addr
        type: InetAddress
      - labelname: v4
        type: InetAddressIPv4
      - labelname: v6
        type: InetAddressIPv6
      - labelname: mac
        type: PhysAddress48
      - labelname: fixed
        type: OctetString
        fixed_size: 3
      - labelname: name
        type: DisplayString
      - labelname: tail
        type: OctetString
        implied: true
      lookups:
      - labels: [v4]
        labelname: v4name
        oid: 1.3.6.1.4.1.99999.1.2.2
        type: DisplayString
        display_hint: "255a"
    - name: fancyMissingSize
      oid: 1.3.6.1.4.1.99999.1.3.1
      type: gauge
      help: Indexed by an address without its length
      indexes:
      - labelname: addrType
        type: gauge
      - labelname: addr
        type: InetAddressMissingSize
      - labelname: port
        type: LldpPortId
    - name: fancyFilterStatus
      oid: 1.3.6.1.4.1.99999.2.1.2
      type: EnumAsInfo
      help: The filter's column
      indexes:
      - labelname: row
        type: gauge
      enum_values:
        1: up
        2: down
    - name: fancyFiltered
      oid: 1.3.6.1.4.1.99999.2.1.3
      type: counter
      help: Read only where the filter matched
      indexes:
      - labelname: row
        type: gauge
    - name: fancyScalar
      oid: 1.3.6.1.4.1.99999.3.1
      type: gauge
      help: A scalar
    - name: fancyScalarText
      oid: 1.3.6.1.4.1.99999.3.2
      type: DisplayString
      help: A text scalar
"#;

/// The built-in modules (system, if_mib) and [`FANCY_MODULE`], compiled once.
pub fn modules() -> &'static [Arc<Module>] {
    static MODULES: OnceLock<Vec<Arc<Module>>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let set = ModuleSet::builtin();
        let mut all: Vec<Arc<Module>> = set
            .module_names()
            .filter_map(|n| set.module(n).cloned())
            .collect();
        let parsed = parse_bytes(Path::new("fancy.yml"), FANCY_MODULE.as_bytes().to_vec())
            .expect("the fuzz module parses");
        for (name, raw) in &parsed.modules {
            let m = compile_module(name, raw, "fancy.yml", &format!("modules.{name}"))
                .expect("the fuzz module compiles");
            all.push(Arc::new(m));
        }
        all
    })
}

/// Every OID a varbind may usefully start with: metric, lookup, filter,
/// combined-type columns and walked subtrees of `modules`.
pub fn interesting_oids(modules: &[Arc<Module>]) -> Vec<Vec<u64>> {
    let mut out: Vec<Vec<u64>> = Vec::new();
    for m in modules {
        out.extend(m.walk.iter().map(|o| o.to_vec()));
        out.extend(m.get.iter().map(|o| o.to_vec()));
        for f in &m.filters {
            out.push(f.oid.to_vec());
            out.extend(f.targets.iter().map(|t| t.to_vec()));
        }
        for metric in &m.metrics {
            out.push(metric.oid.to_vec());
            if let Some(t) = &metric.type_oid {
                out.push(t.to_vec());
            }
            for l in &metric.lookups {
                if let Some(o) = &l.oid {
                    out.push(o.to_vec());
                }
                if let Some(t) = &l.type_oid {
                    out.push(t.to_vec());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One value of any type the decoder may be handed.
pub fn snmp_value(u: &mut Unstructured) -> Result<SnmpValue> {
    Ok(match u.int_in_range(0u8..=13)? {
        0 => SnmpValue::Integer(small_or_any_i64(u)?),
        1 => SnmpValue::OctetString(bytes(u, 64)?),
        2 => SnmpValue::ObjectId(oid_suffix(u, 12)?),
        3 => SnmpValue::IpAddress(u.arbitrary()?),
        4 => SnmpValue::Counter32(u.arbitrary()?),
        5 => SnmpValue::Unsigned32(u.arbitrary()?),
        6 => SnmpValue::TimeTicks(u.arbitrary()?),
        7 => SnmpValue::Counter64(u.arbitrary()?),
        8 => SnmpValue::Opaque(bytes(u, 16)?),
        9 => SnmpValue::Null,
        10 => SnmpValue::NoSuchObject,
        11 => SnmpValue::NoSuchInstance,
        12 => SnmpValue::EndOfMibView,
        _ => SnmpValue::Other,
    })
}

fn small_or_any_i64(u: &mut Unstructured) -> Result<i64> {
    if u.ratio(3u8, 4u8)? {
        u.int_in_range(-2i64..=20)
    } else {
        u.arbitrary()
    }
}

fn bytes(u: &mut Unstructured, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?;
    Ok(u.bytes(len)?.to_vec())
}

/// Sub-identifiers, mostly small (index encodings: lengths, octets, ints).
pub fn oid_suffix(u: &mut Unstructured, max: usize) -> Result<Vec<u64>> {
    let len = u.int_in_range(0..=max)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(match u.int_in_range(0u8..=9)? {
            0 => u.arbitrary::<u32>()? as u64,
            1 => u.arbitrary::<u64>()?,
            _ => u.int_in_range(0u64..=300)?,
        });
    }
    Ok(out)
}

/// Varbinds under `bases` (a base, then a suffix), from fuzz bytes.
pub fn varbinds(u: &mut Unstructured, bases: &[Vec<u64>]) -> Result<Varbinds> {
    let mut vb = Varbinds::new();
    let count = u.int_in_range(0..=48)?;
    for _ in 0..count {
        let mut oid = if bases.is_empty() || u.ratio(1u8, 16u8)? {
            Vec::new()
        } else {
            bases[u.choose_index(bases.len())?].clone()
        };
        oid.extend(oid_suffix(u, 20)?);
        let value = snmp_value(u)?;
        vb.insert(oid, value);
    }
    Ok(vb)
}

/// What a poll does with the varbinds: each module decoded (after its
/// filters) twice, the second time sharing labels with the first; the
/// sample fed into the interface history; rendered in every format; sent
/// through the cache's wire format and back.
///
/// `validate`: check the text expositions line by line ([`check_text`]);
/// `Some(true)` also wants unique label names in each series (right for
/// fixed, valid modules, where a duplicate could only come from the agent's
/// data; a fuzzed module file may name one label twice itself).
pub fn pipeline(
    modules: &[Arc<Module>],
    varbinds: &Varbinds,
    uptime: Option<u32>,
    validate: Option<bool>,
) {
    let mut skipped = Skipped::default();
    let mut first = Vec::with_capacity(modules.len());
    let mut second = Vec::with_capacity(modules.len());
    for m in modules {
        let view = filtered_view(m, &View::of(m), varbinds);
        let a = decode_module(m, &view, varbinds, None, &mut skipped);
        let b = decode_module(m, &view, varbinds, Some(&a), &mut skipped);
        // Debug, not ==: NaN values are equal in print only.
        assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "decoding with the previous sample's labels differs for {}",
            m.name
        );
        first.push(a);
        second.push(b);
    }
    let sample = |modules, polled_at_ms, ticks| Sample {
        device_id: "dev-1".into(),
        device_name: "fuzzed".into(),
        target: "127.0.0.1:161".into(),
        polled_at_ms,
        poll_duration_seconds: 0.25,
        sys_uptime_ticks: ticks,
        modules,
    };
    let s1 = sample(first, 1_700_000_000_000, uptime);
    let s2 = sample(
        second,
        1_700_000_030_000,
        uptime.map(|t| t.wrapping_add(3000)),
    );
    let mut history = DeviceHistory::default();
    history.record(&s1);
    history.record(&s2);
    let _ = s1.series_count();
    let polled = PolledDevice::new(s2, &history);
    check_polled(&polled, validate);
}

/// Renders `polled` in every format and checks the cache wire round trip.
/// `validate`: also check the text formats line by line ([`check_text`]),
/// with unique label names when `Some(true)`.
pub fn check_polled(polled: &PolledDevice, validate: Option<bool>) {
    for format in [Format::Text, Format::OpenMetrics, Format::Protobuf] {
        for device_label in [false, true] {
            let mut out = Vec::new();
            render(
                &[polled],
                format,
                RenderOptions {
                    device_label,
                    modules: None,
                },
                &mut out,
            );
            if format == Format::Protobuf {
                if let Some(unique) = validate {
                    if let Err(e) = check_protobuf(&out, unique) {
                        panic!("invalid protobuf exposition: {e}");
                    }
                }
            } else {
                let text = std::str::from_utf8(&out)
                    .unwrap_or_else(|e| panic!("{format:?} exposition is not UTF-8: {e}"));
                if let Some(unique) = validate {
                    if let Err(e) = check_text(text, format == Format::OpenMetrics, unique) {
                        panic!("invalid {format:?} exposition: {e}\n{text}");
                    }
                }
            }
        }
    }
    let wire = polled.to_wire();
    let back = PolledDevice::from_wire(&wire).expect("the cache reads what it wrote");
    assert_eq!(
        back.to_wire(),
        wire,
        "cache wire format does not round-trip"
    );
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn is_value(s: &str) -> bool {
    matches!(s, "NaN" | "+Inf" | "-Inf")
        || (s.parse::<f64>().is_ok_and(f64::is_finite)
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)))
}

/// Checks a text exposition (Prometheus 0.0.4, or OpenMetrics 1.0) line
/// by line: HELP/TYPE comments, then samples `name{label="escaped",...} value`
/// with valid names, escapes (`\\`, `\"`, `\n` only) and values. With
/// `unique`, no label name twice in one sample.
pub fn check_text(text: &str, openmetrics: bool, unique: bool) -> std::result::Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| "does not end with a newline".to_string())?;
    let mut lines: Vec<&str> = body.split('\n').collect();
    if openmetrics {
        if lines.pop() != Some("# EOF") {
            return Err("OpenMetrics without `# EOF` at the end".into());
        }
    }
    for line in lines {
        let err = |what: &str| Err(format!("{what}: `{line}`"));
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !is_name(name, true) {
                return err("bad family name in HELP");
            }
            let mut chars = help.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('\\' | 'n') => {}
                        Some('"') if openmetrics => {}
                        _ => return err("bad escape in HELP"),
                    }
                } else if openmetrics && c == '"' {
                    return err("unescaped quote in OpenMetrics HELP");
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                return err("TYPE without a type");
            };
            let kinds: &[&str] = if openmetrics {
                &[
                    "gauge",
                    "counter",
                    "histogram",
                    "unknown",
                    "info",
                    "stateset",
                    "summary",
                ]
            } else {
                &["gauge", "counter", "histogram", "untyped", "summary"]
            };
            if !is_name(name, true) || !kinds.contains(&kind) {
                return err("bad TYPE line");
            }
            continue;
        }
        if line.starts_with('#') {
            return err("unexpected comment");
        }
        // A sample.
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if !is_name(&line[..name_end], true) {
            return err("bad metric name");
        }
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut seen: Vec<&str> = Vec::new();
            let mut r = after;
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let Some(eq) = r.find('=') else {
                    return err("label without `=`");
                };
                let label = &r[..eq];
                if !is_name(label, false) {
                    return err("bad label name");
                }
                if unique && seen.contains(&label) {
                    return err(&format!("label `{label}` twice"));
                }
                seen.push(label);
                r = &r[eq + 1..];
                let Some(after) = r.strip_prefix('"') else {
                    return err("label value not quoted");
                };
                r = after;
                // The value, up to the first unescaped quote.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in r.char_indices() {
                    if escaped {
                        if !matches!(c, '\\' | '"' | 'n') {
                            return err("bad escape in a label value");
                        }
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        end = Some(i);
                        break;
                    }
                }
                let Some(end) = end else {
                    return err("unterminated label value");
                };
                r = &r[end + 1..];
                if let Some(after) = r.strip_prefix(',') {
                    r = after;
                } else if !r.starts_with('}') {
                    return err("junk after a label value");
                }
            }
            rest = r;
        }
        let Some(value) = rest.strip_prefix(' ') else {
            return err("no space before the value");
        };
        if !is_value(value) {
            return err("bad value");
        }
    }
    Ok(())
}

/// Reads back delimited `MetricFamily` messages: every one decodes, has a
/// name and (with `unique`) no label name twice in a metric.
pub fn check_protobuf(mut bytes: &[u8], unique: bool) -> std::result::Result<(), String> {
    use prost::Message as _;
    while !bytes.is_empty() {
        let family = promsnmp::proto::MetricFamily::decode_length_delimited(&mut bytes)
            .map_err(|e| format!("does not decode: {e}"))?;
        let name = family.name.as_deref().unwrap_or_default();
        if !is_name(name, true) {
            return Err(format!("bad family name `{name}`"));
        }
        for metric in &family.metric {
            let mut names: Vec<&str> = Vec::with_capacity(metric.label.len());
            for pair in &metric.label {
                let label = pair.name.as_deref().unwrap_or_default();
                if !is_name(label, false) {
                    return Err(format!("bad label name `{label}` in {name}"));
                }
                if unique && names.contains(&label) {
                    return Err(format!("label `{label}` twice in {name}"));
                }
                names.push(label);
            }
        }
    }
    Ok(())
}
