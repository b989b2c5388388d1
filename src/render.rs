//! Turns polled devices into exposition bytes: Prometheus text 0.0.4, OpenMetrics 1.0 text,
//! and delimited protobuf with native histograms. Knows nothing of SNMP or HTTP.
//!
//! Every family is written once, with the series of all devices and interfaces together,
//! in a fixed order. A family without any series is left out entirely.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::proto;
use crate::sample::{
    InterfaceSample, PolledDevice, Sample, UtilizationHistogram, COUNTERS, NATIVE_SCHEMA,
    NATIVE_ZERO_THRESHOLD, UTILIZATION_BUCKETS_PERCENT,
};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` protobuf messages.
    Protobuf,
}

impl Format {
    /// Picks the format from an HTTP Accept header, as Prometheus negotiates: protobuf when
    /// `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
    /// `encoding=delimited` is acceptable (q > 0), else OpenMetrics when
    /// `application/openmetrics-text` is acceptable, else Text. The highest q-value wins;
    /// ties go protobuf > OpenMetrics > text. A `*/*` range stands for `default`, as does a
    /// missing or empty header. A header naming nothing acceptable gives Text.
    pub fn negotiate(accept: Option<&str>, default: Format) -> Format {
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return default;
        };
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let mut q = 1.0f32;
            let mut proto_family = false;
            let mut delimited = false;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let (key, value) = (key.trim(), value.trim().trim_matches('"'));
                if key.eq_ignore_ascii_case("q") {
                    // An unparseable q-value makes the range unacceptable.
                    q = value
                        .parse::<f32>()
                        .ok()
                        .filter(|q| q.is_finite())
                        .unwrap_or(0.0);
                } else if key.eq_ignore_ascii_case("proto") {
                    proto_family = value == "io.prometheus.client.MetricFamily";
                } else if key.eq_ignore_ascii_case("encoding") {
                    delimited = value.eq_ignore_ascii_case("delimited");
                }
            }
            let format = if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
                if !(proto_family && delimited) {
                    continue;
                }
                Format::Protobuf
            } else if media.eq_ignore_ascii_case("application/openmetrics-text") {
                Format::OpenMetrics
            } else if media.eq_ignore_ascii_case("text/plain")
                || media.eq_ignore_ascii_case("text/*")
            {
                Format::Text
            } else if media == "*/*" {
                default
            } else {
                continue;
            };
            if q <= 0.0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((best_q, best_format)) => {
                    q > best_q || (q == best_q && format.preference() > best_format.preference())
                }
            };
            if better {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, format)| format)
    }

    /// The Content-Type header value of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
                 encoding=delimited"
            }
        }
    }

    /// Tie-break between equal q-values.
    fn preference(self) -> u8 {
        match self {
            Format::Text => 0,
            Format::OpenMetrics => 1,
            Format::Protobuf => 2,
        }
    }
}

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Start every series with `device_name` and `device_id` labels (for scrapes
    /// covering many devices; the id keeps two devices with one sysName apart).
    pub device_label: bool,
}

/// Renders `devices` in `format`, appending to `out`.
pub fn render(
    devices: &[&PolledDevice],
    format: Format,
    options: RenderOptions,
    out: &mut Vec<u8>,
) {
    match format {
        Format::Text => render_text(devices, options, false, out),
        Format::OpenMetrics => render_text(devices, options, true, out),
        Format::Protobuf => render_protobuf(devices, options, out),
    }
}

// ---------------------------------------------------------------------------------------
// Families

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Where a family's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Uptime,
    Speed,
    HighSpeed,
    /// Index into [`COUNTERS`].
    Counter(usize),
    Utilization,
    PollDuration,
}

#[derive(Debug, Clone, Copy)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    source: Source,
}

/// All families, in exposition order.
fn families() -> impl Iterator<Item = Family> {
    let head = [
        Family {
            name: "sysUpTime",
            help: "The time (in hundredths of a second) since the network management portion \
                   of the system was last re-initialized.",
            kind: Kind::Gauge,
            source: Source::Uptime,
        },
        Family {
            name: "ifSpeed",
            help: "An estimate of the interface's current bandwidth in bits per second (IF-MIB).",
            kind: Kind::Gauge,
            source: Source::Speed,
        },
        Family {
            name: "ifHighSpeed",
            help: "An estimate of the interface's current bandwidth in units of 1,000,000 bits \
                   per second (IF-MIB).",
            kind: Kind::Gauge,
            source: Source::HighSpeed,
        },
    ];
    let counters = COUNTERS.iter().enumerate().map(|(index, def)| Family {
        name: def.name,
        help: def.help,
        kind: Kind::Counter,
        source: Source::Counter(index),
    });
    let tail = [
        Family {
            name: "interface_utilization",
            help: "Utilisation of the busier direction of the interface, percent of its speed, \
                   observed once per poll.",
            kind: Kind::Histogram,
            source: Source::Utilization,
        },
        Family {
            name: "snmp_scrape_duration_seconds",
            help: "Time the last poll of the device took.",
            kind: Kind::Gauge,
            source: Source::PollDuration,
        },
    ];
    head.into_iter().chain(counters).chain(tail)
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl Value {
    fn as_f64(self) -> f64 {
        match self {
            Value::Int(v) => v as f64,
            Value::Float(v) => v,
        }
    }
}

fn interface_value(iface: &InterfaceSample, source: Source) -> Option<u64> {
    match source {
        Source::Speed => iface.if_speed_bps,
        Source::HighSpeed => iface.if_high_speed_mbps,
        Source::Counter(index) => iface.counters[index],
        Source::Uptime | Source::Utilization | Source::PollDuration => None,
    }
}

/// Calls `f(device position, interface position or None for a device-level series, value)`
/// for each series of a non-histogram family, in exposition order.
fn for_each_scalar(
    devices: &[&PolledDevice],
    source: Source,
    mut f: impl FnMut(usize, Option<usize>, Value),
) {
    for (d, device) in devices.iter().enumerate() {
        let sample = &device.sample;
        match source {
            Source::Uptime => f(d, None, Value::Int(sample.sys_uptime_ticks.into())),
            Source::PollDuration => f(d, None, Value::Float(sample.poll_duration_seconds)),
            Source::Utilization => {}
            Source::Speed | Source::HighSpeed | Source::Counter(_) => {
                for (i, iface) in sample.interfaces.iter().enumerate() {
                    if let Some(value) = interface_value(iface, source) {
                        f(d, Some(i), Value::Int(value));
                    }
                }
            }
        }
    }
}

/// Calls `f(device position, interface position, histogram)` for each utilisation
/// histogram whose interface is in the sample.
fn for_each_histogram(
    devices: &[&PolledDevice],
    mut f: impl FnMut(usize, usize, &UtilizationHistogram),
) {
    for (d, device) in devices.iter().enumerate() {
        for (if_index, histogram) in &device.utilization {
            if let Some(i) = interface_position(&device.sample, *if_index) {
                f(d, i, histogram);
            }
        }
    }
}

fn interface_position(sample: &Sample, if_index: u32) -> Option<usize> {
    let interfaces = &sample.interfaces;
    // Interfaces come in ifIndex order; fall back to a scan should they not.
    match interfaces.binary_search_by_key(&if_index, |iface| iface.if_index) {
        Ok(i) => Some(i),
        Err(_) => interfaces
            .iter()
            .position(|iface| iface.if_index == if_index),
    }
}

// ---------------------------------------------------------------------------------------
// Text 0.0.4 and OpenMetrics 1.0

/// A device's label blocks (escaped, without braces), built once per render.
struct TextLabels {
    /// `device_name="…",device_id="…"`, or empty.
    device: String,
    /// Per entry of `sample.interfaces`: `[device_name="…",]ifIndex="…",ifName="…",…`.
    interfaces: Vec<String>,
}

impl TextLabels {
    fn new(device: &PolledDevice, options: RenderOptions) -> Self {
        let sample = &device.sample;
        let mut prefix = String::new();
        if options.device_label {
            prefix.push_str("device_name=\"");
            push_escaped_label_value(&mut prefix, &sample.device_name);
            prefix.push_str("\",device_id=\"");
            push_escaped_label_value(&mut prefix, &sample.device_id);
            prefix.push_str("\",");
        }
        let interfaces = sample
            .interfaces
            .iter()
            .map(|iface| {
                let mut block = String::with_capacity(
                    prefix.len()
                        + 48
                        + iface.if_name.len()
                        + iface.if_descr.len()
                        + iface.if_alias.len(),
                );
                block.push_str(&prefix);
                let _ = write!(block, "ifIndex=\"{}\",ifName=\"", iface.if_index);
                push_escaped_label_value(&mut block, &iface.if_name);
                block.push_str("\",ifDescr=\"");
                push_escaped_label_value(&mut block, &iface.if_descr);
                block.push_str("\",ifAlias=\"");
                push_escaped_label_value(&mut block, &iface.if_alias);
                block.push('"');
                block
            })
            .collect();
        prefix.pop(); // the trailing comma
        TextLabels {
            device: prefix,
            interfaces,
        }
    }
}

fn render_text(
    devices: &[&PolledDevice],
    options: RenderOptions,
    openmetrics: bool,
    out: &mut Vec<u8>,
) {
    let labels: Vec<TextLabels> = devices
        .iter()
        .map(|d| TextLabels::new(d, options))
        .collect();
    // Roughly 25 lines per interface (13 families, 13 histogram lines).
    let estimate: usize = labels
        .iter()
        .flat_map(|l| l.interfaces.iter())
        .map(|block| (block.len() + 48) * 25)
        .sum();
    out.reserve(estimate + 1024);
    // `le` values as OpenMetrics wants them canonical: 1.0, 5.0, … 100.0.
    let bounds: Vec<String> = UTILIZATION_BUCKETS_PERCENT
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();

    for family in families() {
        let start = out.len();
        write_header(out, family, openmetrics);
        let mut any = false;
        match family.source {
            Source::Utilization => for_each_histogram(devices, |d, i, histogram| {
                any = true;
                let block = &labels[d].interfaces[i];
                write_histogram(out, family.name, block, histogram, &bounds, openmetrics);
            }),
            source => for_each_scalar(devices, source, |d, i, value| {
                any = true;
                let block = match i {
                    Some(i) => &labels[d].interfaces[i],
                    None => &labels[d].device,
                };
                write_series_name(out, family.name, "", block, None);
                write_value(out, value);
                out.push(b'\n');
            }),
        }
        if !any {
            out.truncate(start);
        }
    }
    if openmetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

fn write_header(out: &mut Vec<u8>, family: Family, openmetrics: bool) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(family.name.as_bytes());
    out.push(b' ');
    write_escaped_help(out, family.help, openmetrics);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(family.name.as_bytes());
    let kind = match family.kind {
        Kind::Gauge => " gauge\n",
        // An OpenMetrics counter's samples must be named `<name>_total`. Declaring the
        // SNMP counters `unknown` keeps the series names identical in every negotiated
        // format, which matters more to dashboards and alerts than the type.
        Kind::Counter if openmetrics => " unknown\n",
        Kind::Counter => " counter\n",
        Kind::Histogram => " histogram\n",
    };
    out.extend_from_slice(kind.as_bytes());
}

/// Writes the classic histogram lines of one series.
fn write_histogram(
    out: &mut Vec<u8>,
    name: &str,
    labels: &str,
    histogram: &UtilizationHistogram,
    bounds: &[String],
    openmetrics: bool,
) {
    let cumulative = histogram.cumulative_counts();
    for (bound, count) in bounds.iter().zip(cumulative.iter()) {
        write_series_name(out, name, "_bucket", labels, Some(bound));
        write_u64(out, *count);
        out.push(b'\n');
    }
    write_series_name(out, name, "_bucket", labels, Some("+Inf"));
    write_u64(out, cumulative[cumulative.len() - 1]);
    out.push(b'\n');
    let write_sum = |out: &mut Vec<u8>| {
        write_series_name(out, name, "_sum", labels, None);
        write_f64(out, histogram.sum);
        out.push(b'\n');
    };
    // client_golang writes _sum before _count; OpenMetrics lists _count first.
    if !openmetrics {
        write_sum(out);
    }
    write_series_name(out, name, "_count", labels, None);
    write_u64(out, histogram.count);
    out.push(b'\n');
    if openmetrics {
        write_sum(out);
    }
}

/// Writes `name suffix{labels[,le="…"]} ` (no braces when there are no labels).
fn write_series_name(out: &mut Vec<u8>, name: &str, suffix: &str, labels: &str, le: Option<&str>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    if !labels.is_empty() || le.is_some() {
        out.push(b'{');
        out.extend_from_slice(labels.as_bytes());
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"le=\"");
            out.extend_from_slice(le.as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
}

fn write_value(out: &mut Vec<u8>, value: Value) {
    match value {
        Value::Int(v) => write_u64(out, v),
        Value::Float(v) => write_f64(out, v),
    }
}

/// Writes an integer exactly (never through f64).
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes a float both text formats parse: shortest round-trip digits (`50.0`, `0.25`,
/// `1e-9`), `NaN`, `+Inf`, `-Inf`.
fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// Label values: `\` → `\\`, `"` → `\"`, newline → `\n` (same in both text formats).
fn push_escaped_label_value(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(pos) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..pos]);
        out.push_str(match rest.as_bytes()[pos] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[pos + 1..];
    }
    out.push_str(rest);
}

/// HELP text: `\` → `\\` and newline → `\n`; OpenMetrics also escapes `"` → `\"`.
fn write_escaped_help(out: &mut Vec<u8>, help: &str, openmetrics: bool) {
    for &byte in help.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if openmetrics => out.extend_from_slice(b"\\\""),
            _ => out.push(byte),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protobuf

/// A device's label pairs, built once per render and lent to each family's metrics.
/// Pairs are sorted by name, as client_golang emits them.
struct ProtoLabels {
    device: Vec<proto::LabelPair>,
    interfaces: Vec<Vec<proto::LabelPair>>,
}

impl ProtoLabels {
    fn new(device: &PolledDevice, options: RenderOptions) -> Self {
        let sample = &device.sample;
        let pair = |name: &str, value: &str| proto::LabelPair {
            name: Some(name.to_owned()),
            value: Some(value.to_owned()),
        };
        let device_pairs: Vec<proto::LabelPair> = if options.device_label {
            vec![
                pair("device_id", &sample.device_id),
                pair("device_name", &sample.device_name),
            ]
        } else {
            Vec::new()
        };
        let interfaces = sample
            .interfaces
            .iter()
            .map(|iface| {
                let mut pairs = Vec::with_capacity(device_pairs.len() + 4);
                pairs.extend(device_pairs.iter().cloned());
                // Sorted: device_id < device_name < ifAlias < ifDescr < ifIndex < ifName.
                pairs.push(pair("ifAlias", &iface.if_alias));
                pairs.push(pair("ifDescr", &iface.if_descr));
                pairs.push(pair("ifIndex", &iface.if_index.to_string()));
                pairs.push(pair("ifName", &iface.if_name));
                pairs
            })
            .collect();
        ProtoLabels {
            device: device_pairs,
            interfaces,
        }
    }

    fn slot(&mut self, interface: Option<usize>) -> &mut Vec<proto::LabelPair> {
        match interface {
            Some(i) => &mut self.interfaces[i],
            None => &mut self.device,
        }
    }
}

fn render_protobuf(devices: &[&PolledDevice], options: RenderOptions, out: &mut Vec<u8>) {
    let mut labels: Vec<ProtoLabels> = devices
        .iter()
        .map(|d| ProtoLabels::new(d, options))
        .collect();
    let mut family = proto::MetricFamily::default();
    // Which label slot each metric of `family` borrowed, to hand the labels back after
    // encoding instead of cloning them for every family.
    let mut owners: Vec<(usize, Option<usize>)> = Vec::new();

    for def in families() {
        owners.clear();
        match def.source {
            Source::Utilization => for_each_histogram(devices, |d, i, histogram| {
                let label = std::mem::take(labels[d].slot(Some(i)));
                family.metric.push(proto::Metric {
                    label,
                    histogram: Some(proto_histogram(histogram)),
                    ..Default::default()
                });
                owners.push((d, Some(i)));
            }),
            source => for_each_scalar(devices, source, |d, i, value| {
                let label = std::mem::take(labels[d].slot(i));
                let value = Some(value.as_f64());
                let metric = if def.kind == Kind::Counter {
                    proto::Metric {
                        label,
                        counter: Some(proto::Counter { value }),
                        ..Default::default()
                    }
                } else {
                    proto::Metric {
                        label,
                        gauge: Some(proto::Gauge { value }),
                        ..Default::default()
                    }
                };
                family.metric.push(metric);
                owners.push((d, i));
            }),
        }
        if !family.metric.is_empty() {
            set_string(&mut family.name, def.name);
            set_string(&mut family.help, def.help);
            family.set_type(match def.kind {
                Kind::Gauge => proto::MetricType::Gauge,
                Kind::Counter => proto::MetricType::Counter,
                Kind::Histogram => proto::MetricType::Histogram,
            });
            prost::Message::encode_length_delimited(&family, out)
                .expect("a Vec<u8> grows as needed");
        }
        for (metric, (d, i)) in family.metric.drain(..).zip(owners.iter()) {
            *labels[*d].slot(*i) = metric.label;
        }
    }
}

fn set_string(field: &mut Option<String>, value: &str) {
    let s = field.get_or_insert_with(String::new);
    s.clear();
    s.push_str(value);
}

/// One histogram with both the classic buckets and the native representation.
fn proto_histogram(histogram: &UtilizationHistogram) -> proto::Histogram {
    let cumulative = histogram.cumulative_counts();
    // The +Inf bucket is implicit in protobuf: sample_count.
    let bucket = UTILIZATION_BUCKETS_PERCENT
        .iter()
        .zip(cumulative.iter())
        .map(|(bound, count)| proto::Bucket {
            cumulative_count: Some(*count),
            upper_bound: Some(*bound),
        })
        .collect();
    let (positive_span, positive_delta) = native_spans(histogram);
    proto::Histogram {
        sample_count: Some(histogram.count),
        sample_sum: Some(histogram.sum),
        bucket,
        schema: Some(NATIVE_SCHEMA),
        // Always > 0, so Prometheus reads it as native even before any observation.
        zero_threshold: Some(NATIVE_ZERO_THRESHOLD),
        zero_count: Some(histogram.zero_count),
        negative_span: Vec::new(),
        negative_delta: Vec::new(),
        positive_span,
        positive_delta,
    }
}

/// Spans and delta-encoded counts of the native buckets: each span covers consecutive
/// indexes; the first span's offset is its first index, a later span's offset the number
/// of empty buckets since the previous span; the first delta is an absolute count, each
/// further one the difference to the bucket before it (across spans).
fn native_spans(histogram: &UtilizationHistogram) -> (Vec<proto::BucketSpan>, Vec<i64>) {
    let mut spans: Vec<proto::BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(histogram.native_buckets.len());
    let mut previous: Option<i32> = None;
    let mut previous_count = 0i64;
    for (&index, &count) in &histogram.native_buckets {
        match (previous, spans.last_mut()) {
            (Some(p), Some(span)) if i64::from(index) == i64::from(p) + 1 => {
                span.length = Some(span.length.unwrap_or(0) + 1);
            }
            (Some(p), _) => spans.push(proto::BucketSpan {
                offset: Some(index.wrapping_sub(p).wrapping_sub(1)),
                length: Some(1),
            }),
            (None, _) => spans.push(proto::BucketSpan {
                offset: Some(index),
                length: Some(1),
            }),
        }
        let count = count as i64;
        deltas.push(count.wrapping_sub(previous_count));
        previous_count = count;
        previous = Some(index);
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::collections::BTreeMap;

    fn histogram(values: &[f64]) -> UtilizationHistogram {
        let mut h = UtilizationHistogram::default();
        for v in values {
            h.observe(*v);
        }
        h
    }

    /// Classic buckets: 0, 0, 0.001, 0.5 <= 1; 3, 3.1 <= 5; 7 <= 10; 50 <= 50; 99, 100 <= 100;
    /// 130 in +Inf. Native: two in the zero bucket.
    const OBSERVATIONS: [f64; 11] = [
        0.0, 0.0, 0.5, 3.0, 3.1, 50.0, 99.0, 100.0, 130.0, 7.0, 0.001,
    ];

    fn device(name: &str) -> PolledDevice {
        let eth0 = InterfaceSample {
            if_index: 1,
            if_name: "eth0".into(),
            if_descr: "Ethernet 0".into(),
            if_alias: "uplink".into(),
            if_speed_bps: Some(1_000_000_000),
            if_high_speed_mbps: Some(1000),
            counters: [
                Some(u64::MAX),
                Some(5),
                None,
                Some(0),
                Some(123),
                None,
                None,
                Some(7),
            ],
        };
        let weird = InterfaceSample {
            if_index: 2,
            if_name: "a\"b\\c".into(),
            if_descr: "line1\nline2".into(),
            if_alias: String::new(),
            if_speed_bps: None,
            if_high_speed_mbps: Some(10),
            counters: [Some(1), None, None, None, Some(2), None, None, None],
        };
        let mut utilization = BTreeMap::new();
        utilization.insert(1, histogram(&OBSERVATIONS));
        utilization.insert(2, UtilizationHistogram::default());
        utilization.insert(99, histogram(&[5.0])); // not in the sample: skipped
        PolledDevice {
            sample: Sample {
                device_id: format!("id-{name}"),
                device_name: name.into(),
                target: "192.0.2.1:161".into(),
                polled_at_ms: 1_700_000_000_000,
                poll_duration_seconds: 0.25,
                sys_uptime_ticks: 4242,
                interfaces: vec![eth0, weird],
            },
            utilization,
        }
    }

    fn render_string(devices: &[&PolledDevice], format: Format, device_label: bool) -> String {
        let mut out = Vec::new();
        render(devices, format, RenderOptions { device_label }, &mut out);
        String::from_utf8(out).expect("text formats are UTF-8")
    }

    const ETH0: &str = r#"ifIndex="1",ifName="eth0",ifDescr="Ethernet 0",ifAlias="uplink""#;
    const WEIRD: &str = r#"ifIndex="2",ifName="a\"b\\c",ifDescr="line1\nline2",ifAlias="""#;

    /// Families present for [`device`], in order (ifHCInMulticastPkts, ifHCOutUcastPkts
    /// and ifHCOutMulticastPkts have no values).
    const PRESENT: [&str; 10] = [
        "sysUpTime",
        "ifSpeed",
        "ifHighSpeed",
        "ifHCInOctets",
        "ifHCInUcastPkts",
        "ifHCInBroadcastPkts",
        "ifHCOutOctets",
        "ifHCOutBroadcastPkts",
        "interface_utilization",
        "snmp_scrape_duration_seconds",
    ];

    fn assert_has_lines(text: &str, expected: &[String]) {
        let lines: Vec<&str> = text.lines().collect();
        for line in expected {
            assert!(
                lines.contains(&line.as_str()),
                "missing line {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn text_exact_lines() {
        let d = device("r1");
        let text = render_string(&[&d], Format::Text, false);
        let expected: Vec<String> =
            vec![
            "# HELP sysUpTime The time (in hundredths of a second) since the network management \
             portion of the system was last re-initialized."
                .into(),
            "# TYPE sysUpTime gauge".into(),
            "sysUpTime 4242".into(),
            "# TYPE ifSpeed gauge".into(),
            format!("ifSpeed{{{ETH0}}} 1000000000"),
            format!("ifHighSpeed{{{ETH0}}} 1000"),
            format!("ifHighSpeed{{{WEIRD}}} 10"),
            "# TYPE ifHCInOctets counter".into(),
            format!("# HELP ifHCInOctets {}", COUNTERS[0].help),
            format!("ifHCInOctets{{{ETH0}}} 18446744073709551615"),
            format!("ifHCInOctets{{{WEIRD}}} 1"),
            format!("ifHCInBroadcastPkts{{{ETH0}}} 0"),
            format!("ifHCOutBroadcastPkts{{{ETH0}}} 7"),
            "# TYPE interface_utilization histogram".into(),
            format!("interface_utilization_bucket{{{ETH0},le=\"1.0\"}} 4"),
            format!("interface_utilization_bucket{{{ETH0},le=\"5.0\"}} 6"),
            format!("interface_utilization_bucket{{{ETH0},le=\"10.0\"}} 7"),
            format!("interface_utilization_bucket{{{ETH0},le=\"25.0\"}} 7"),
            format!("interface_utilization_bucket{{{ETH0},le=\"50.0\"}} 8"),
            format!("interface_utilization_bucket{{{ETH0},le=\"95.0\"}} 8"),
            format!("interface_utilization_bucket{{{ETH0},le=\"100.0\"}} 10"),
            format!("interface_utilization_bucket{{{ETH0},le=\"+Inf\"}} 11"),
            format!("interface_utilization_sum{{{ETH0}}} {:?}", d.utilization[&1].sum),
            format!("interface_utilization_count{{{ETH0}}} 11"),
            format!("interface_utilization_bucket{{{WEIRD},le=\"+Inf\"}} 0"),
            format!("interface_utilization_sum{{{WEIRD}}} 0.0"),
            format!("interface_utilization_count{{{WEIRD}}} 0"),
            "# TYPE snmp_scrape_duration_seconds gauge".into(),
            "snmp_scrape_duration_seconds 0.25".into(),
        ];
        assert_has_lines(&text, &expected);
        assert!(!text.contains("ifSpeed{ifIndex=\"2\""), "None is skipped");
        assert!(
            !text.contains("ifHCInMulticastPkts"),
            "a family without series is left out"
        );
        assert!(
            !text.contains("ifIndex=\"99\""),
            "histogram of an unknown interface"
        );
        assert!(!text.contains("device_name"));
        // Families in order, one TYPE each.
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(types, PRESENT);
        // Escaping kept every series on one line.
        for line in text.lines() {
            let first = line.as_bytes()[0];
            assert!(
                first == b'#' || first.is_ascii_alphabetic(),
                "broken line {line:?}"
            );
        }
    }

    /// Checks each family is declared once and its samples follow its header contiguously.
    fn assert_contiguous(text: &str, expected_types: &[&str]) {
        let mut current = "";
        let mut seen = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&current), "{current} declared twice");
                seen.push(current);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = if current == "interface_utilization" {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name)
                } else {
                    name
                };
                assert_eq!(base, current, "{line:?} outside its family");
            }
        }
        assert_eq!(seen, expected_types);
    }

    #[test]
    fn families_contiguous_across_devices() {
        let (d1, d2) = (device("r1"), device("r\"2"));
        for format in [Format::Text, Format::OpenMetrics] {
            let text = render_string(&[&d1, &d2], format, true);
            assert_contiguous(&text, &PRESENT);
            assert_has_lines(
                &text,
                &[
                    "sysUpTime{device_name=\"r1\",device_id=\"id-r1\"} 4242".into(),
                    "sysUpTime{device_name=\"r\\\"2\",device_id=\"id-r\\\"2\"} 4242".into(),
                    format!("ifHCInOctets{{device_name=\"r1\",device_id=\"id-r1\",{ETH0}}} 18446744073709551615"),
                    format!("ifHCInOctets{{device_name=\"r\\\"2\",device_id=\"id-r\\\"2\",{WEIRD}}} 1"),
                    format!(
                        "interface_utilization_bucket{{device_name=\"r1\",device_id=\"id-r1\",{ETH0},le=\"1.0\"}} 4"
                    ),
                    "snmp_scrape_duration_seconds{device_name=\"r\\\"2\",device_id=\"id-r\\\"2\"} 0.25".into(),
                ],
            );
            assert_eq!(text.matches("ifHCInOctets{").count(), 4);
        }
    }

    #[test]
    fn openmetrics_output() {
        let d = device("r1");
        let text = render_string(&[&d], Format::OpenMetrics, false);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        assert_contiguous(&text, &PRESENT);
        assert_has_lines(
            &text,
            &[
                "# TYPE ifHCInOctets unknown".into(),
                "# TYPE sysUpTime gauge".into(),
                "# TYPE interface_utilization histogram".into(),
                format!("ifHCInOctets{{{ETH0}}} 18446744073709551615"),
                format!("interface_utilization_bucket{{{ETH0},le=\"100.0\"}} 10"),
                format!("interface_utilization_bucket{{{ETH0},le=\"+Inf\"}} 11"),
            ],
        );
        assert!(!text.contains("counter"));
        assert!(!text.contains("_total"));
        let count = text
            .find(&format!("interface_utilization_count{{{ETH0}}} 11"))
            .unwrap();
        let sum = text
            .find(&format!("interface_utilization_sum{{{ETH0}}} "))
            .unwrap();
        assert!(count < sum, "OpenMetrics lists _count before _sum");

        assert_eq!(render_string(&[], Format::OpenMetrics, true), "# EOF\n");
        assert_eq!(render_string(&[], Format::Text, true), "");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_escaped_label_value(&mut s, "a\"b\\c\nd\u{e9}");
        assert_eq!(s, r#"a\"b\\c\nd"#.to_owned() + "\u{e9}");
        let mut out = Vec::new();
        write_escaped_help(&mut out, "x\\y\n\"z\"", false);
        assert_eq!(out, b"x\\\\y\\n\"z\"");
        out.clear();
        write_escaped_help(&mut out, "x\\y\n\"z\"", true);
        assert_eq!(out, b"x\\\\y\\n\\\"z\\\"");
    }

    #[test]
    fn float_and_integer_formatting() {
        let cases: [(f64, &str); 8] = [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (50.0, "50.0"),
            (0.25, "0.25"),
            (1e-9, "1e-9"),
            (-3.5, "-3.5"),
            (1e300, "1e300"),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_f64(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        for value in [0, 9, 10, 4242, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
        }
    }

    fn decode_all(mut bytes: &[u8]) -> Vec<proto::MetricFamily> {
        let mut families = Vec::new();
        while !bytes.is_empty() {
            families.push(proto::MetricFamily::decode_length_delimited(&mut bytes).unwrap());
        }
        families
    }

    /// Expands native spans and deltas back into index → count (dropping empty buckets).
    fn expand(spans: &[proto::BucketSpan], deltas: &[i64]) -> BTreeMap<i32, u64> {
        let mut out = BTreeMap::new();
        let mut deltas = deltas.iter();
        let (mut index, mut count) = (0i32, 0i64);
        for span in spans {
            index += span.offset.unwrap();
            for _ in 0..span.length.unwrap() {
                count += deltas.next().expect("a delta per bucket");
                assert!(count >= 0);
                if count != 0 {
                    out.insert(index, count as u64);
                }
                index += 1;
            }
        }
        assert!(deltas.next().is_none(), "more deltas than buckets");
        out
    }

    fn label<'a>(metric: &'a proto::Metric, name: &str) -> Option<&'a str> {
        metric
            .label
            .iter()
            .find(|l| l.name.as_deref() == Some(name))
            .and_then(|l| l.value.as_deref())
    }

    #[test]
    fn protobuf_round_trip() {
        let (d1, d2) = (device("r1"), device("r2"));
        let mut out = Vec::new();
        render(
            &[&d1, &d2],
            Format::Protobuf,
            RenderOptions { device_label: true },
            &mut out,
        );
        let families = decode_all(&out);
        let names: Vec<&str> = families
            .iter()
            .map(|f| f.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, PRESENT);

        let uptime = &families[0];
        assert_eq!(uptime.r#type(), proto::MetricType::Gauge);
        assert_eq!(uptime.metric.len(), 2);
        assert_eq!(uptime.metric[0].gauge.as_ref().unwrap().value, Some(4242.0));
        assert_eq!(label(&uptime.metric[1], "device_name"), Some("r2"));
        assert!(uptime.help.as_deref().unwrap().starts_with("The time"));

        let in_octets = &families[3];
        assert_eq!(in_octets.r#type(), proto::MetricType::Counter);
        assert_eq!(in_octets.help.as_deref(), Some(COUNTERS[0].help));
        assert_eq!(in_octets.metric.len(), 4);
        let m = &in_octets.metric[1];
        assert_eq!(m.counter.as_ref().unwrap().value, Some(1.0));
        assert_eq!(label(m, "ifName"), Some("a\"b\\c"), "raw, unescaped");
        assert_eq!(label(m, "ifDescr"), Some("line1\nline2"));
        assert_eq!(label(m, "ifIndex"), Some("2"));
        assert_eq!(label(m, "device_name"), Some("r1"));
        let names: Vec<&str> = m.label.iter().map(|l| l.name.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "device_id",
                "device_name",
                "ifAlias",
                "ifDescr",
                "ifIndex",
                "ifName"
            ]
        );

        let util = &families[8];
        assert_eq!(util.r#type(), proto::MetricType::Histogram);
        assert_eq!(
            util.metric.len(),
            4,
            "2 interfaces × 2 devices; ifIndex 99 skipped"
        );
        let full = util.metric[0].histogram.as_ref().unwrap();
        let source = &d1.utilization[&1];
        assert_eq!(full.sample_count, Some(11));
        assert_eq!(full.sample_sum, Some(source.sum));
        assert_eq!(full.schema, Some(NATIVE_SCHEMA));
        assert_eq!(full.zero_threshold, Some(NATIVE_ZERO_THRESHOLD));
        assert_eq!(full.zero_count, Some(2));
        assert!(full.negative_span.is_empty() && full.negative_delta.is_empty());
        assert_eq!(
            expand(&full.positive_span, &full.positive_delta),
            source.native_buckets
        );
        let bounds: Vec<f64> = full.bucket.iter().map(|b| b.upper_bound.unwrap()).collect();
        assert_eq!(bounds, UTILIZATION_BUCKETS_PERCENT);
        let counts: Vec<u64> = full
            .bucket
            .iter()
            .map(|b| b.cumulative_count.unwrap())
            .collect();
        assert_eq!(counts, [4, 6, 7, 7, 8, 8, 8, 8, 10]);
        assert_eq!(label(&util.metric[0], "ifIndex"), Some("1"));

        let empty = util.metric[1].histogram.as_ref().unwrap();
        assert_eq!(empty.sample_count, Some(0));
        assert_eq!(empty.zero_count, Some(0));
        assert_eq!(empty.zero_threshold, Some(NATIVE_ZERO_THRESHOLD));
        assert!(empty.positive_span.is_empty() && empty.positive_delta.is_empty());

        let duration = &families[9];
        assert_eq!(duration.metric[1].gauge.as_ref().unwrap().value, Some(0.25));

        // Labels lent to the metrics come back intact for the next family.
        let last = &families[9].metric[0];
        assert_eq!(last.label.len(), 2);
        assert_eq!(label(last, "device_name"), Some("r1"));
        assert_eq!(label(last, "device_id"), Some("id-r1"));
        assert_eq!(families[7].metric[0].label.len(), 6);

        let mut none = Vec::new();
        render(&[], Format::Protobuf, RenderOptions::default(), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn native_spans_with_gaps_and_negative_indexes() {
        let h = UtilizationHistogram {
            native_buckets: BTreeMap::from([
                (-7, 3),
                (-6, 1),
                (-5, 9),
                (-2, 2),
                (0, 5),
                (1, 5),
                (40, 1),
            ]),
            ..Default::default()
        };
        let (spans, deltas) = native_spans(&h);
        let offsets: Vec<(i32, u32)> = spans
            .iter()
            .map(|s| (s.offset.unwrap(), s.length.unwrap()))
            .collect();
        assert_eq!(offsets, [(-7, 3), (2, 1), (1, 2), (38, 1)]);
        assert_eq!(deltas, [3, -2, 8, -7, 3, 0, -4]);
        assert_eq!(expand(&spans, &deltas), h.native_buckets);

        let h = histogram(&[0.37, 1.0, 1.0, 2.5, 99.9, 100.0, 0.0]);
        let (spans, deltas) = native_spans(&h);
        assert_eq!(expand(&spans, &deltas), h.native_buckets);
        assert_eq!(
            native_spans(&UtilizationHistogram::default()),
            (vec![], vec![])
        );
    }

    #[test]
    fn negotiation() {
        use Format::*;
        let prometheus_native = "application/vnd.google.protobuf;\
            proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,\
            text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus_native), Text), Protobuf);
        let prometheus_default = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Format::negotiate(Some(prometheus_default), Text),
            OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain"), OpenMetrics), Text);
        assert_eq!(Format::negotiate(None, OpenMetrics), OpenMetrics);
        assert_eq!(Format::negotiate(None, Text), Text);
        assert_eq!(Format::negotiate(Some("  "), Protobuf), Protobuf);
        assert_eq!(Format::negotiate(Some("*/*"), OpenMetrics), OpenMetrics);
        // Protobuf needs both parameters, and a positive q.
        let no_params = "application/vnd.google.protobuf,text/plain;q=0.1";
        assert_eq!(Format::negotiate(Some(no_params), OpenMetrics), Text);
        let refused = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
            encoding=delimited;q=0,application/openmetrics-text;q=0.1";
        assert_eq!(Format::negotiate(Some(refused), Text), OpenMetrics);
        // Highest q wins; ties prefer protobuf, then OpenMetrics.
        let text_first = "text/plain;q=0.9, application/openmetrics-text; version=1.0.0; q=0.5";
        assert_eq!(Format::negotiate(Some(text_first), OpenMetrics), Text);
        assert_eq!(
            Format::negotiate(Some("text/plain,application/openmetrics-text"), Text),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.5,*/*;q=0.9"), Protobuf),
            Protobuf
        );
        assert_eq!(
            Format::negotiate(Some("application/json"), OpenMetrics),
            Text
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Protobuf.content_type(),
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
             encoding=delimited"
        );
    }
}

/// Rendered `/snmp` bodies of each device's latest poll, per format and
/// encoding: a poll is rendered (and compressed) once, however often it is
/// scraped until the next one replaces it.
pub struct RenderCache {
    devices: std::sync::Mutex<std::collections::HashMap<String, DeviceBodies>>,
    /// Bound on devices held.
    capacity: usize,
}

/// The bodies of one poll, by [`body_slot`].
struct DeviceBodies {
    /// The poll these bytes were rendered from (compared by pointer).
    polled: std::sync::Arc<PolledDevice>,
    bodies: [Option<bytes::Bytes>; 6],
}

fn body_slot(format: Format, gzip: bool) -> usize {
    let format = match format {
        Format::Text => 0,
        Format::OpenMetrics => 1,
        Format::Protobuf => 2,
    };
    format * 2 + usize::from(gzip)
}

impl RenderCache {
    pub fn new(capacity: usize) -> RenderCache {
        RenderCache {
            devices: Default::default(),
            capacity: capacity.max(1),
        }
    }

    /// The body of `polled` (one device, no device labels) in `format`,
    /// gzip-compressed when `gzip`.
    pub fn single_device(
        &self,
        device_id: &str,
        polled: &std::sync::Arc<PolledDevice>,
        format: Format,
        gzip: bool,
    ) -> bytes::Bytes {
        let slot = body_slot(format, gzip);
        if let Some(cached) = self.devices.lock().expect("render cache").get(device_id) {
            if let (true, Some(body)) = (
                std::sync::Arc::ptr_eq(&cached.polled, polled),
                &cached.bodies[slot],
            ) {
                return body.clone();
            }
        }
        let mut body = Vec::with_capacity(64 * 1024);
        render(
            &[&**polled],
            format,
            RenderOptions {
                device_label: false,
            },
            &mut body,
        );
        let body = bytes::Bytes::from(if gzip { gzip_bytes(&body) } else { body });
        let mut devices = self.devices.lock().expect("render cache");
        if devices.len() >= self.capacity && !devices.contains_key(device_id) {
            devices.clear(); // rare: more devices than the bound; start over
        }
        let cached = devices
            .entry(device_id.to_string())
            .or_insert_with(|| DeviceBodies {
                polled: polled.clone(),
                bodies: Default::default(),
            });
        if !std::sync::Arc::ptr_eq(&cached.polled, polled) {
            if cached.polled.sample.polled_at_ms > polled.sample.polled_at_ms {
                return body; // rendered from a poll already replaced
            }
            // A newer poll: its bodies replace every body of the old one.
            cached.polled = polled.clone();
            cached.bodies = Default::default();
        }
        cached.bodies[slot] = Some(body.clone());
        body
    }
}

/// gzip at a fast level: bodies are compressed once per poll, served many times.
pub fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

/// Whether an `Accept-Encoding` header accepts gzip (and does not refuse it with `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|header| {
        header.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn a_poll_is_rendered_once_per_format_and_encoding() {
        let poll = |uptime: u32, at_ms: i64| {
            std::sync::Arc::new(PolledDevice::new(
                crate::sample::Sample {
                    device_id: "d".into(),
                    device_name: "d".into(),
                    target: "127.0.0.1:161".into(),
                    polled_at_ms: at_ms,
                    poll_duration_seconds: 0.0,
                    sys_uptime_ticks: uptime,
                    interfaces: vec![],
                },
                &Default::default(),
            ))
        };
        let cache = RenderCache::new(10);
        let first = poll(100, 1);
        let text = cache.single_device("d", &first, Format::Text, false);
        let again = cache.single_device("d", &first, Format::Text, false);
        assert_eq!(text.as_ptr(), again.as_ptr(), "served from the cache");
        let packed = cache.single_device("d", &first, Format::Text, true);
        assert_ne!(packed, text, "gzip is its own body");
        let newer = poll(200, 2);
        let fresh = cache.single_device("d", &newer, Format::Text, false);
        assert_ne!(fresh, text, "a new poll is rendered again");
        // A render of the replaced poll does not evict the newer one.
        cache.single_device("d", &first, Format::OpenMetrics, false);
        let still = cache.single_device("d", &newer, Format::Text, false);
        assert_eq!(still.as_ptr(), fresh.as_ptr());
    }

    #[test]
    fn gzip_round_trip() {
        let body = b"ifHCInOctets{ifIndex=\"1\"} 42\n".repeat(100);
        let packed = gzip_bytes(&body);
        assert!(packed.len() < body.len() / 5);
        let mut out = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
