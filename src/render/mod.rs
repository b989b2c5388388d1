//! Polled devices → exposition bytes, generic over what was polled. Knows
//! nothing of SNMP or HTTP.
//!
//! - [`text`]     — Prometheus text 0.0.4 and OpenMetrics 1.0.
//! - [`protobuf`] — delimited `MetricFamily` messages with native histograms.
//!
//! [`Exposition`] is the one model both write: every family once, with the
//! series of all devices together, in a fixed order (a device's modules in
//! order, each module's families as decoded, then `interface_utilization`
//! and `snmp_scrape_duration_seconds`). A family a second module of the
//! same device also gives is merged, its repeated series dropped. A family
//! without series is left out.

pub mod protobuf;
pub mod text;

use std::collections::HashMap;

use crate::polled::PolledDevice;
use crate::sample::{Kind, LabelSet, NO_LABELS};
use crate::utilization::UtilizationHistogram;

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
}

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// Start every series with `device_name` and `device_id` labels (for scrapes
    /// covering many devices; the id keeps two devices with one sysName apart).
    pub device_label: bool,
    /// Only these modules' families (the derived ones always).
    pub modules: Option<&'a [String]>,
}

/// Renders `devices` in `format`, appending to `out`.
/// The device labels `/metrics` puts on every series.
const DEVICE_LABELS: [&str; 2] = ["device_name", "device_id"];

/// A series' label name when the device labels are added: a module's own
/// `device_name` or `device_id` becomes `exported_…` (as Prometheus renames
/// a scraped label that clashes with a target label), so no series carries
/// a label twice (Prometheus would refuse the whole scrape).
fn beside_device_labels(name: &str) -> std::borrow::Cow<'_, str> {
    if DEVICE_LABELS.contains(&name) {
        format!("exported_{name}").into()
    } else {
        name.into()
    }
}

pub fn render(
    devices: &[&PolledDevice],
    format: Format,
    options: RenderOptions,
    out: &mut Vec<u8>,
) {
    let exposition = Exposition::new(devices, options);
    match format {
        Format::Text => text::write(&exposition, devices, options, false, out),
        Format::OpenMetrics => text::write(&exposition, devices, options, true, out),
        Format::Protobuf => protobuf::write(&exposition, devices, options, out),
    }
}

pub const UTILIZATION_NAME: &str = "interface_utilization";
const UTILIZATION_HELP: &str =
    "Utilisation of the busier direction of the interface, percent of its speed, observed once per poll.";
pub const POLL_DURATION_NAME: &str = "snmp_scrape_duration_seconds";
const POLL_DURATION_HELP: &str = "Time the last poll of the device took.";

/// How a family is typed in the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

/// One series to write: which device, its labels, its value.
#[derive(Debug, Clone, Copy)]
pub struct SeriesOut<'a> {
    /// Position of the device in the rendered list.
    pub device: usize,
    pub labels: &'a LabelSet,
    pub value: ValueOut<'a>,
}

#[derive(Debug, Clone, Copy)]
pub enum ValueOut<'a> {
    Number(f64),
    Histogram(&'a UtilizationHistogram),
}

/// One family to write.
#[derive(Debug)]
pub struct FamilyOut<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: FamilyKind,
    pub series: Vec<SeriesOut<'a>>,
}

/// Every family of a render, merged across modules and devices.
#[derive(Debug)]
pub struct Exposition<'a> {
    pub families: Vec<FamilyOut<'a>>,
}

impl<'a> Exposition<'a> {
    pub fn new(devices: &[&'a PolledDevice], options: RenderOptions) -> Exposition<'a> {
        let mut families: Vec<FamilyOut<'a>> = Vec::new();
        let mut positions: HashMap<&'a str, usize> = HashMap::new();
        // (family, device) → the module that first gave the family for it.
        let mut first_module: HashMap<(usize, usize), usize> = HashMap::new();
        for (d, device) in devices.iter().enumerate() {
            for (m, module) in device.sample.modules.iter().enumerate() {
                if options
                    .modules
                    .is_some_and(|only| !only.iter().any(|n| **n == *module.module))
                {
                    continue;
                }
                for (meta, family_series) in module.families() {
                    if family_series.is_empty() {
                        continue;
                    }
                    let f = *positions.entry(&meta.name).or_insert_with(|| {
                        families.push(FamilyOut {
                            name: &meta.name,
                            help: &meta.help,
                            kind: match meta.kind {
                                Kind::Counter => FamilyKind::Counter,
                                Kind::Gauge => FamilyKind::Gauge,
                            },
                            series: Vec::new(),
                        });
                        families.len() - 1
                    });
                    let first = *first_module.entry((f, d)).or_insert(m);
                    let out = &mut families[f];
                    // Another module of this device gave this family already:
                    // its series are kept, repeats of them dropped.
                    let start = if first == m {
                        None
                    } else {
                        out.series.iter().position(|s| s.device == d)
                    };
                    for series in family_series {
                        if let Some(start) = start {
                            let repeated = out.series[start..]
                                .iter()
                                .any(|s| s.device == d && *s.labels == *series.labels);
                            if repeated {
                                continue;
                            }
                        }
                        out.series.push(SeriesOut {
                            device: d,
                            labels: &series.labels,
                            value: ValueOut::Number(series.value),
                        });
                    }
                }
            }
        }
        // Utilisation comes with the module that gave the octet counters.
        let has_octets = |device: &PolledDevice| {
            device.sample.modules.iter().any(|m| {
                options
                    .modules
                    .is_none_or(|only| only.iter().any(|n| **n == *m.module))
                    && m.families().any(|(meta, _)| {
                        matches!(
                            &*meta.name,
                            "ifHCInOctets" | "ifHCOutOctets" | "ifInOctets" | "ifOutOctets"
                        )
                    })
            })
        };
        let utilization: Vec<SeriesOut<'a>> = devices
            .iter()
            .enumerate()
            .filter(|(_, device)| options.modules.is_none() || has_octets(device))
            .flat_map(|(d, device)| {
                device.utilization.iter().map(move |u| SeriesOut {
                    device: d,
                    labels: &u.labels,
                    value: ValueOut::Histogram(&u.histogram),
                })
            })
            .collect();
        let durations: Vec<SeriesOut<'a>> = devices
            .iter()
            .enumerate()
            .map(|(d, device)| SeriesOut {
                device: d,
                labels: &NO_LABELS,
                value: ValueOut::Number(device.sample.poll_duration_seconds),
            })
            .collect();
        for (name, help, kind, series) in [
            (
                UTILIZATION_NAME,
                UTILIZATION_HELP,
                FamilyKind::Histogram,
                utilization,
            ),
            (
                POLL_DURATION_NAME,
                POLL_DURATION_HELP,
                FamilyKind::Gauge,
                durations,
            ),
        ] {
            // A module's own family of the same name would clash: theirs wins.
            if !series.is_empty() && !positions.contains_key(name) {
                families.push(FamilyOut {
                    name,
                    help,
                    kind,
                    series,
                });
            }
        }
        families.retain(|f| !f.series.is_empty());
        Exposition { families }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Polled devices that look like `if_mib` + `system` results, for the
    //! renderers' tests.

    use std::sync::Arc;

    use crate::polled::{InterfaceUtilization, PolledDevice};
    use crate::sample::{
        intern_meta, FamilyMeta, Kind, Label, LabelSet, Labels, ModuleSample, Sample, Series,
    };
    use crate::utilization::UtilizationHistogram;

    pub fn labels(pairs: &[(&str, &str)]) -> Labels {
        LabelSet::row(
            pairs
                .iter()
                .map(|(n, v)| Label {
                    name: Arc::from(*n),
                    value: (*v).into(),
                })
                .collect(),
        )
    }

    pub fn histogram(values: &[f64]) -> UtilizationHistogram {
        let mut h = UtilizationHistogram::default();
        for v in values {
            h.observe(*v);
        }
        h
    }

    /// Classic buckets: 0, 0, 0.001, 0.5 <= 1; 3, 3.1 <= 5; 7 <= 10; 50 <= 50; 99, 100 <= 100;
    /// 130 in +Inf. Native: two in the zero bucket.
    pub const OBSERVATIONS: [f64; 11] = [
        0.0, 0.0, 0.5, 3.0, 3.1, 50.0, 99.0, 100.0, 130.0, 7.0, 0.001,
    ];

    pub fn eth0() -> Labels {
        labels(&[
            ("ifAlias", "uplink"),
            ("ifDescr", "Ethernet 0"),
            ("ifIndex", "1"),
            ("ifName", "eth0"),
        ])
    }

    pub fn weird() -> Labels {
        labels(&[
            ("ifAlias", ""),
            ("ifDescr", "line1\nline2"),
            ("ifIndex", "2"),
            ("ifName", "a\"b\\c"),
        ])
    }

    fn family(
        name: &str,
        help: &str,
        kind: Kind,
        series: Vec<(Labels, f64)>,
    ) -> (Arc<FamilyMeta>, Vec<Series>) {
        (
            intern_meta(name, help, kind),
            series
                .into_iter()
                .map(|(labels, value)| Series { labels, value })
                .collect(),
        )
    }

    pub fn device(name: &str) -> PolledDevice {
        let (eth0, weird) = (eth0(), weird());
        let system = ModuleSample::new(
            Arc::from("system"),
            vec![family(
                "sysUpTime",
                "The time since the agent started.",
                Kind::Gauge,
                vec![(labels(&[]), 4242.0)],
            )],
        );
        let if_mib = ModuleSample::new(
            Arc::from("if_mib"),
            vec![
                family("ifSpeed", "Speed.", Kind::Gauge, vec![(eth0.clone(), 1e9)]),
                family(
                    "ifHighSpeed",
                    "High speed.",
                    Kind::Gauge,
                    vec![(eth0.clone(), 1000.0), (weird.clone(), 10.0)],
                ),
                family(
                    "ifHCInOctets",
                    "Octets in.",
                    Kind::Counter,
                    vec![
                        (eth0.clone(), 18_446_744_073_709_551_615.0),
                        (weird.clone(), 1.0),
                    ],
                ),
                family(
                    "ifHCOutOctets",
                    "Octets out.",
                    Kind::Counter,
                    vec![(eth0.clone(), 123.0), (weird.clone(), 2.0)],
                ),
                family("ifEmpty", "No series.", Kind::Gauge, vec![]),
            ],
        );
        PolledDevice {
            sample: Sample {
                device_id: format!("id-{name}"),
                device_name: name.into(),
                target: "192.0.2.1:161".into(),
                polled_at_ms: 1_700_000_000_000,
                poll_duration_seconds: 0.25,
                sys_uptime_ticks: Some(4242),
                modules: vec![system, if_mib],
            },
            utilization: vec![
                InterfaceUtilization {
                    if_index: 1,
                    labels: eth0,
                    histogram: Arc::new(histogram(&OBSERVATIONS)),
                },
                InterfaceUtilization {
                    if_index: 2,
                    labels: weird,
                    histogram: Arc::default(),
                },
            ],
        }
    }

    /// Families present for [`device`], in order.
    pub const PRESENT: [&str; 7] = [
        "sysUpTime",
        "ifSpeed",
        "ifHighSpeed",
        "ifHCInOctets",
        "ifHCOutOctets",
        "interface_utilization",
        "snmp_scrape_duration_seconds",
    ];
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::sample::{intern_meta, ModuleSample, Series};
    use std::sync::Arc;

    #[test]
    fn a_module_label_named_like_a_device_label_is_renamed_beside_it() {
        let mut d = device("r1");
        d.sample.modules.push(ModuleSample::new(
            Arc::from("vendor"),
            vec![(
                intern_meta("vendorThing", "a thing", crate::sample::Kind::Gauge),
                vec![Series {
                    labels: labels(&[("device_id", "7"), ("device_name", "sensor")]),
                    value: 1.0,
                }],
            )],
        ));
        let with_device = RenderOptions {
            device_label: true,
            modules: None,
        };
        let mut text = Vec::new();
        render(&[&d], Format::Text, with_device, &mut text);
        let text = String::from_utf8(text).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("vendorThing{"))
            .unwrap();
        assert_eq!(
            line,
            "vendorThing{device_name=\"r1\",device_id=\"id-r1\",exported_device_id=\"7\",exported_device_name=\"sensor\"} 1"
        );
        let mut proto_bytes = Vec::new();
        render(&[&d], Format::Protobuf, with_device, &mut proto_bytes);
        let mut bytes = &proto_bytes[..];
        let mut names = Vec::new();
        while !bytes.is_empty() {
            let family: crate::proto::MetricFamily =
                prost::Message::decode_length_delimited(&mut bytes).unwrap();
            if family.name() == "vendorThing" {
                names = family.metric[0]
                    .label
                    .iter()
                    .map(|l| l.name().to_string())
                    .collect();
            }
        }
        assert_eq!(
            names,
            [
                "device_id",
                "device_name",
                "exported_device_id",
                "exported_device_name"
            ]
        );
        // Without the device labels (`/snmp`) the module's labels stay as they are.
        let mut text = Vec::new();
        render(&[&d], Format::Text, RenderOptions::default(), &mut text);
        assert!(String::from_utf8(text)
            .unwrap()
            .contains("vendorThing{device_id=\"7\",device_name=\"sensor\"} 1"));
    }

    #[test]
    fn families_merge_across_modules_and_devices() {
        let (d1, d2) = (device("r1"), device("r2"));
        let e = Exposition::new(&[&d1, &d2], RenderOptions::default());
        let names: Vec<&str> = e.families.iter().map(|f| f.name).collect();
        assert_eq!(names, PRESENT);
        let octets = &e.families[3];
        assert_eq!(octets.series.len(), 4);
        assert_eq!(octets.kind, FamilyKind::Counter);
        assert_eq!(
            octets.series.iter().map(|s| s.device).collect::<Vec<_>>(),
            [0, 0, 1, 1]
        );

        // A vendor module repeating ifHCInOctets for eth0 and adding ifIndex 3:
        // one series per label set, the first module's value kept.
        let mut vendor = d1.clone();
        vendor.sample.modules.push(ModuleSample::new(
            Arc::from("vendor"),
            vec![(
                intern_meta("ifHCInOctets", "other help", crate::sample::Kind::Counter),
                vec![
                    Series {
                        labels: eth0(),
                        value: 5.0,
                    },
                    Series {
                        labels: labels(&[("ifIndex", "3")]),
                        value: 7.0,
                    },
                ],
            )],
        ));
        let e = Exposition::new(&[&vendor], RenderOptions::default());
        let octets = e
            .families
            .iter()
            .find(|f| f.name == "ifHCInOctets")
            .unwrap();
        assert_eq!(octets.help, "Octets in.");
        let values: Vec<f64> = octets
            .series
            .iter()
            .map(|s| match s.value {
                ValueOut::Number(v) => v,
                ValueOut::Histogram(_) => panic!(),
            })
            .collect();
        assert_eq!(values, [18_446_744_073_709_551_615.0, 1.0, 7.0]);

        // Only some modules: utilisation only with the octet counters' module.
        let only = ["system".to_string()];
        let e = Exposition::new(
            &[&vendor],
            RenderOptions {
                device_label: false,
                modules: Some(&only),
            },
        );
        let names: Vec<&str> = e.families.iter().map(|f| f.name).collect();
        assert_eq!(names, ["sysUpTime", "snmp_scrape_duration_seconds"]);
        let only = ["if_mib".to_string()];
        let e = Exposition::new(
            &[&vendor],
            RenderOptions {
                device_label: false,
                modules: Some(&only),
            },
        );
        assert!(e.families.iter().any(|f| f.name == "interface_utilization"));
        assert!(!e.families.iter().any(|f| f.name == "sysUpTime"));
    }
}
