//! Prometheus text format 0.0.4 and OpenMetrics 1.0 text.

use std::collections::HashMap;
use std::io::Write as _;

use super::{Exposition, FamilyKind, FamilyOut, RenderOptions, SeriesOut, ValueOut};
use crate::polled::PolledDevice;
use crate::sample::LabelSet;
use crate::utilization::{UtilizationHistogram, UTILIZATION_BUCKETS_PERCENT};

/// Writes `exposition` (of `devices`) as text; OpenMetrics when `openmetrics`.
pub fn write(
    exposition: &Exposition,
    devices: &[&PolledDevice],
    options: RenderOptions,
    openmetrics: bool,
    out: &mut Vec<u8>,
) {
    let prefixes: Vec<String> = devices
        .iter()
        .map(|d| {
            if !options.device_label {
                return String::new();
            }
            let mut p = String::from("device_name=\"");
            push_escaped_label_value(&mut p, &d.sample.device_name);
            p.push_str("\",device_id=\"");
            push_escaped_label_value(&mut p, &d.sample.device_id);
            p.push('"');
            p
        })
        .collect();
    let mut blocks = LabelBlocks {
        prefixes: &prefixes,
        cache: HashMap::new(),
    };
    let series_count: usize = exposition.families.iter().map(|f| f.series.len()).sum();
    out.reserve(series_count * 96 + 1024);
    // `le` values as OpenMetrics wants them canonical: 1.0, 5.0, … 100.0.
    let bounds: Vec<String> = UTILIZATION_BUCKETS_PERCENT
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();
    for family in &exposition.families {
        write_header(out, family, openmetrics);
        for series in &family.series {
            let block = blocks.block(series);
            match series.value {
                ValueOut::Number(v) => {
                    write_series_name(out, family.name, "", block, None);
                    write_number(out, v);
                    out.push(b'\n');
                }
                ValueOut::Histogram(h) => {
                    write_histogram(out, family.name, block, h, &bounds, openmetrics)
                }
            }
        }
    }
    if openmetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

/// Escaped label blocks (without braces), built once per device and label set.
struct LabelBlocks<'a> {
    prefixes: &'a [String],
    cache: HashMap<(usize, usize), String>,
}

impl LabelBlocks<'_> {
    fn block(&mut self, series: &SeriesOut) -> &str {
        let prefix = &self.prefixes[series.device];
        if series.labels.is_empty() {
            return prefix;
        }
        let key = (series.device, std::ptr::from_ref(series.labels) as usize);
        self.cache.entry(key).or_insert_with(|| {
            let mut block = String::with_capacity(prefix.len() + series.labels.len() * 24);
            block.push_str(prefix);
            write_labels(&mut block, series.labels, !prefix.is_empty());
            block
        })
    }
}

/// Writes `labels`; after the device labels (`beside_device`) a clashing
/// name is renamed.
fn write_labels(block: &mut String, labels: &LabelSet, beside_device: bool) {
    let mut comma = beside_device;
    for label in labels.iter() {
        if comma {
            block.push(',');
        }
        comma = true;
        if beside_device {
            block.push_str(&super::beside_device_labels(&label.name));
        } else {
            block.push_str(&label.name);
        }
        block.push_str("=\"");
        push_escaped_label_value(block, &label.value);
        block.push('"');
    }
}

fn write_header(out: &mut Vec<u8>, family: &FamilyOut, openmetrics: bool) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(family.name.as_bytes());
    out.push(b' ');
    write_escaped_help(out, family.help, openmetrics);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(family.name.as_bytes());
    let kind = match family.kind {
        FamilyKind::Gauge => " gauge\n",
        // An OpenMetrics counter's samples must be named `<name>_total`. Declaring the
        // SNMP counters `unknown` keeps the series names identical in every negotiated
        // format, which matters more to dashboards and alerts than the type.
        FamilyKind::Counter if openmetrics => " unknown\n",
        FamilyKind::Counter => " counter\n",
        FamilyKind::Histogram => " histogram\n",
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

/// Largest magnitude below which every integer is exact in an f64.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// A value: whole numbers within f64's exact range as integers (`42`),
/// anything else as [`write_f64`] does.
pub fn write_number(out: &mut Vec<u8>, value: f64) {
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGERS {
        if value < 0.0 {
            out.push(b'-');
        }
        write_u64(out, value.abs() as u64);
    } else {
        write_f64(out, value);
    }
}

/// Writes an integer exactly.
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{render, Format};
    use super::*;

    fn render_string(devices: &[&PolledDevice], format: Format, device_label: bool) -> String {
        let mut out = Vec::new();
        render(
            devices,
            format,
            RenderOptions {
                device_label,
                modules: None,
            },
            &mut out,
        );
        String::from_utf8(out).expect("text formats are UTF-8")
    }

    const ETH0: &str = r#"ifAlias="uplink",ifDescr="Ethernet 0",ifIndex="1",ifName="eth0""#;
    const WEIRD: &str = r#"ifAlias="",ifDescr="line1\nline2",ifIndex="2",ifName="a\"b\\c""#;

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
        let expected: Vec<String> = vec![
            "# HELP sysUpTime The time since the agent started.".into(),
            "# TYPE sysUpTime gauge".into(),
            "sysUpTime 4242".into(),
            "# TYPE ifSpeed gauge".into(),
            format!("ifSpeed{{{ETH0}}} 1000000000"),
            format!("ifHighSpeed{{{ETH0}}} 1000"),
            format!("ifHighSpeed{{{WEIRD}}} 10"),
            "# TYPE ifHCInOctets counter".into(),
            "# HELP ifHCInOctets Octets in.".into(),
            format!("ifHCInOctets{{{ETH0}}} 1.8446744073709552e19"),
            format!("ifHCInOctets{{{WEIRD}}} 1"),
            format!("ifHCOutOctets{{{ETH0}}} 123"),
            "# TYPE interface_utilization histogram".into(),
            format!("interface_utilization_bucket{{{ETH0},le=\"1.0\"}} 4"),
            format!("interface_utilization_bucket{{{ETH0},le=\"5.0\"}} 6"),
            format!("interface_utilization_bucket{{{ETH0},le=\"10.0\"}} 7"),
            format!("interface_utilization_bucket{{{ETH0},le=\"25.0\"}} 7"),
            format!("interface_utilization_bucket{{{ETH0},le=\"50.0\"}} 8"),
            format!("interface_utilization_bucket{{{ETH0},le=\"95.0\"}} 8"),
            format!("interface_utilization_bucket{{{ETH0},le=\"100.0\"}} 10"),
            format!("interface_utilization_bucket{{{ETH0},le=\"+Inf\"}} 11"),
            format!(
                "interface_utilization_sum{{{ETH0}}} {:?}",
                d.utilization[0].histogram.sum
            ),
            format!("interface_utilization_count{{{ETH0}}} 11"),
            format!("interface_utilization_bucket{{{WEIRD},le=\"+Inf\"}} 0"),
            format!("interface_utilization_sum{{{WEIRD}}} 0.0"),
            format!("interface_utilization_count{{{WEIRD}}} 0"),
            "# TYPE snmp_scrape_duration_seconds gauge".into(),
            "snmp_scrape_duration_seconds 0.25".into(),
        ];
        assert_has_lines(&text, &expected);
        assert!(!text.contains("ifSpeed{ifAlias=\"\""), "no series, no line");
        assert!(
            !text.contains("ifEmpty"),
            "a family without series is left out"
        );
        assert!(!text.contains("device_name"));
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
                    format!("ifHCInOctets{{device_name=\"r1\",device_id=\"id-r1\",{ETH0}}} 1.8446744073709552e19"),
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
    fn number_formatting() {
        let cases: [(f64, &str); 12] = [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (50.0, "50"),
            (0.25, "0.25"),
            (1e-9, "1e-9"),
            (-3.5, "-3.5"),
            (-7.0, "-7"),
            (1e300, "1e300"),
            (0.0, "0"),
            (4_294_967_295.0, "4294967295"),
            (18_446_744_073_709_551_615.0, "1.8446744073709552e19"),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_number(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        for value in [0, 9, 10, 4242, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
        }
    }
}
