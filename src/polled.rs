//! A poll as served: the generic sample together with the interface
//! utilisation histograms as of that poll. This is what the cache holds,
//! what a fleet shares through Redis, and what the renderers write.
//!
//! In Redis a poll travels as text that starts with a format line; a replica
//! of another version finds a different line and treats the entry as a cache
//! miss (rolling upgrades), instead of misreading it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::sample::{
    intern_meta, FamilyMeta, Kind, Label, LabelSet, Labels, ModuleSample, Sample, Series,
};
use crate::utilization::{interfaces, DeviceHistory, UtilizationHistogram};

/// The first line of a cached poll in Redis: bump it when the shape changes.
pub const POLL_FORMAT: &str = "promsnmp-poll/3\n";
/// The first line of a device history in Redis.
pub const HISTORY_FORMAT: &str = "promsnmp-history/2\n";

/// The utilisation histogram of one interface, with that interface's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceUtilization {
    pub if_index: u32,
    pub labels: Labels,
    pub histogram: Arc<UtilizationHistogram>,
}

/// A poll together with the utilisation histograms as of that poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PolledDevice {
    pub sample: Sample,
    /// Interfaces of the sample that have a history, by ifIndex.
    pub utilization: Vec<InterfaceUtilization>,
}

impl PolledDevice {
    pub fn new(sample: Sample, history: &DeviceHistory) -> Self {
        let utilization = interfaces(&sample)
            .into_iter()
            .filter_map(|(if_index, iface)| {
                history.interface(if_index).map(|h| InterfaceUtilization {
                    if_index,
                    labels: iface.labels,
                    histogram: h.histogram.clone(),
                })
            })
            .collect();
        PolledDevice {
            sample,
            utilization,
        }
    }

    /// The history as of this poll (counters, uptime, histograms): what a
    /// replica that saw it continues from when the shared history is gone
    /// (Redis flushed or unreachable), so the histograms it served never
    /// go back.
    pub fn history(&self) -> DeviceHistory {
        let counters = interfaces(&self.sample);
        DeviceHistory {
            target: self.sample.target.clone(),
            last_uptime_ticks: self.sample.sys_uptime_ticks,
            last_polled_at_ms: Some(self.sample.polled_at_ms),
            interfaces: self
                .utilization
                .iter()
                .map(|u| {
                    let counters = counters.get(&u.if_index);
                    (
                        u.if_index,
                        crate::utilization::InterfaceHistory {
                            last_in_octets: counters.and_then(|c| c.in_octets),
                            last_out_octets: counters.and_then(|c| c.out_octets),
                            histogram: u.histogram.clone(),
                            missed_polls: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The poll as cache text (format line, then JSON).
    pub fn to_wire(&self) -> String {
        let mut tables = LabelTable::default();
        let modules = self
            .sample
            .modules
            .iter()
            .map(|m| WireModule {
                module: m.module.to_string(),
                families: m
                    .families()
                    .map(|(meta, series)| WireFamily {
                        name: meta.name.to_string(),
                        help: meta.help.to_string(),
                        counter: meta.kind == Kind::Counter,
                        series: series
                            .iter()
                            .map(|s| (tables.index(&s.labels), WireNumber(s.value)))
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let utilization = self
            .utilization
            .iter()
            .map(|u| WireUtilization {
                if_index: u.if_index,
                labels: tables.index(&u.labels),
                histogram: (*u.histogram).clone(),
            })
            .collect();
        let s = &self.sample;
        let wire = Wire {
            device_id: s.device_id.clone(),
            device_name: s.device_name.clone(),
            target: s.target.clone(),
            polled_at_ms: s.polled_at_ms,
            poll_duration_seconds: s.poll_duration_seconds,
            sys_uptime_ticks: s.sys_uptime_ticks,
            labels: tables.sets,
            modules,
            utilization,
        };
        let mut text = String::from(POLL_FORMAT);
        text.push_str(&serde_json::to_string(&wire).expect("a poll serialises"));
        text
    }

    /// Reads cache text written by [`PolledDevice::to_wire`].
    pub fn from_wire(text: &str) -> Result<PolledDevice, WireError> {
        let json = text
            .strip_prefix(POLL_FORMAT)
            .ok_or(WireError::OtherFormat)?;
        let wire: Wire =
            serde_json::from_str(json).map_err(|e| WireError::Invalid(e.to_string()))?;
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let mut label = |name: String, value: String| Label {
            name: names
                .entry(name)
                .or_insert_with_key(|n| Arc::from(n.as_str()))
                .clone(),
            value: Arc::from(value),
        };
        let mut sets: Vec<Labels> = Vec::with_capacity(wire.labels.len());
        for set in wire.labels {
            let labels = match set {
                WireLabels::Row(list) => {
                    LabelSet::row(list.into_iter().map(|(n, v)| label(n, v)).collect())
                }
                // Bases come first: the writer numbers a base before its extensions.
                WireLabels::Extended { base, extra } => {
                    let base = sets
                        .get(base as usize)
                        .ok_or_else(|| WireError::Invalid(format!("label set {base} missing")))?;
                    LabelSet::extended(base, label(extra.0, extra.1))
                }
            };
            sets.push(labels);
        }
        let set = |i: u32| -> Result<Labels, WireError> {
            sets.get(i as usize)
                .cloned()
                .ok_or_else(|| WireError::Invalid(format!("label set {i} missing")))
        };
        let mut modules = Vec::with_capacity(wire.modules.len());
        for m in wire.modules {
            let mut families: Vec<(std::sync::Arc<FamilyMeta>, Vec<Series>)> =
                Vec::with_capacity(m.families.len());
            for f in m.families {
                let kind = if f.counter {
                    Kind::Counter
                } else {
                    Kind::Gauge
                };
                let series = f
                    .series
                    .into_iter()
                    .map(|(labels, value)| {
                        Ok(Series {
                            labels: set(labels)?,
                            value: value.0,
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                families.push((intern_meta(&f.name, &f.help, kind), series));
            }
            modules.push(ModuleSample::new(Arc::from(m.module), families));
        }
        let utilization = wire
            .utilization
            .into_iter()
            .map(|u| {
                Ok(InterfaceUtilization {
                    if_index: u.if_index,
                    labels: set(u.labels)?,
                    histogram: Arc::new(u.histogram),
                })
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        Ok(PolledDevice {
            sample: Sample {
                device_id: wire.device_id,
                device_name: wire.device_name,
                target: wire.target,
                polled_at_ms: wire.polled_at_ms,
                poll_duration_seconds: wire.poll_duration_seconds,
                sys_uptime_ticks: wire.sys_uptime_ticks,
                modules,
            },
            utilization,
        })
    }
}

/// Why cache text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Written by another version of promsnmp: a cache miss, nothing more.
    #[error("written in another format")]
    OtherFormat,
    #[error("not a valid entry: {0}")]
    Invalid(String),
}

/// Label sets numbered by first use (series of one row share one; a set
/// extending a row's refers to it).
#[derive(Default)]
struct LabelTable {
    by_address: HashMap<usize, u32>,
    sets: Vec<WireLabels>,
}

impl LabelTable {
    fn index(&mut self, labels: &Labels) -> u32 {
        let address = Arc::as_ptr(labels) as usize;
        if let Some(i) = self.by_address.get(&address) {
            return *i;
        }
        let wire = match &**labels {
            LabelSet::Extended { base, extra } => WireLabels::Extended {
                base: self.index(base),
                extra: (extra.name.to_string(), extra.value.to_string()),
            },
            LabelSet::Row(row) => WireLabels::Row(
                row.iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
            ),
        };
        let i = self.sets.len() as u32;
        self.sets.push(wire);
        self.by_address.insert(address, i);
        i
    }
}

/// One label set on the wire: a list, or a base set plus one label.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WireLabels {
    Row(Vec<(String, String)>),
    Extended { base: u32, extra: (String, String) },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    device_id: String,
    device_name: String,
    target: String,
    polled_at_ms: i64,
    poll_duration_seconds: f64,
    #[serde(default)]
    sys_uptime_ticks: Option<u32>,
    labels: Vec<WireLabels>,
    modules: Vec<WireModule>,
    utilization: Vec<WireUtilization>,
}

#[derive(Serialize, Deserialize)]
struct WireModule {
    module: String,
    families: Vec<WireFamily>,
}

#[derive(Serialize, Deserialize)]
struct WireFamily {
    name: String,
    help: String,
    counter: bool,
    series: Vec<(u32, WireNumber)>,
}

#[derive(Serialize, Deserialize)]
struct WireUtilization {
    if_index: u32,
    labels: u32,
    histogram: UtilizationHistogram,
}

/// A value in JSON: a number, or `"NaN"`, `"+Inf"`, `"-Inf"` (JSON has none of them).
struct WireNumber(f64);

impl Serialize for WireNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }
}

impl<'de> Deserialize<'de> for WireNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Number(f64),
            Text(String),
        }
        Ok(WireNumber(match Form::deserialize(d)? {
            Form::Number(v) => v,
            Form::Text(t) => match t.as_str() {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "`{other}` is not a value"
                    )))
                }
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: Arc::from(name),
            value: Arc::from(value),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        LabelSet::row(pairs.iter().map(|(n, v)| label(n, v)).collect())
    }

    fn poll() -> PolledDevice {
        let row = labels(&[("ifIndex", "1"), ("ifName", "eth\"0\n")]);
        let mut histogram = UtilizationHistogram::default();
        for v in [0.1, 1.0 / 3.0, 2.0_f64.sqrt(), 97.123_456_789_012_34, 0.0] {
            histogram.observe(v);
        }
        PolledDevice {
            sample: Sample {
                device_id: "d".into(),
                device_name: "r1".into(),
                target: "127.0.0.1:161".into(),
                polled_at_ms: 1,
                poll_duration_seconds: 0.123_456_789_012_345_6,
                sys_uptime_ticks: Some(42),
                modules: vec![ModuleSample::new(
                    Arc::from("if_mib"),
                    vec![
                        (
                            intern_meta("ifHCInOctets", "octets in", Kind::Counter),
                            vec![Series {
                                labels: row.clone(),
                                value: 18_446_744_073_709_551_615.0,
                            }],
                        ),
                        (
                            intern_meta("ifAlias", "alias", Kind::Gauge),
                            vec![Series {
                                labels: LabelSet::extended(&row, label("ifAlias", "uplink")),
                                value: 1.0,
                            }],
                        ),
                        (
                            intern_meta("odd", "values JSON lacks", Kind::Gauge),
                            vec![
                                Series {
                                    labels: labels(&[]),
                                    value: f64::NAN,
                                },
                                Series {
                                    labels: labels(&[("x", "1")]),
                                    value: f64::NEG_INFINITY,
                                },
                                Series {
                                    labels: labels(&[("x", "2")]),
                                    value: 1.0 / 3.0,
                                },
                            ],
                        ),
                    ],
                )],
            },
            utilization: vec![InterfaceUtilization {
                if_index: 1,
                labels: row,
                histogram: Arc::new(histogram),
            }],
        }
    }

    #[test]
    fn a_poll_survives_the_wire_exactly() {
        let polled = poll();
        let text = polled.to_wire();
        assert!(text.starts_with(POLL_FORMAT));
        let back = PolledDevice::from_wire(&text).unwrap();
        // NaN != NaN: compare the rest, then the NaN itself.
        let family = |p: &PolledDevice, i: usize| {
            let (meta, series) = p.sample.modules[0].families().nth(i).unwrap();
            (meta.clone(), series.to_vec())
        };
        let odd = family(&back, 2).1;
        assert!(odd[0].value.is_nan());
        assert_eq!(odd[1].value, f64::NEG_INFINITY);
        assert_eq!(odd[2].value.to_bits(), (1.0f64 / 3.0).to_bits());
        assert_eq!(back.utilization, polled.utilization);
        assert_eq!(family(&back, 0), family(&polled, 0));
        assert_eq!(
            back.sample.poll_duration_seconds.to_bits(),
            polled.sample.poll_duration_seconds.to_bits()
        );
        // One row's series share one label set after the trip too.
        assert!(Arc::ptr_eq(
            &family(&back, 0).1[0].labels,
            &back.utilization[0].labels
        ));
        assert!(Arc::ptr_eq(&family(&back, 0).0, &family(&polled, 0).0));
        // A set extending the row's still points at it.
        let alias = &family(&back, 1).1[0].labels;
        assert_eq!(**alias, *family(&polled, 1).1[0].labels);
        match &**alias {
            LabelSet::Extended { base, .. } => {
                assert!(Arc::ptr_eq(base, &back.utilization[0].labels))
            }
            LabelSet::Row(_) => panic!("the extended set came back flat"),
        }
    }

    #[test]
    fn another_format_is_a_quiet_miss() {
        assert_eq!(
            PolledDevice::from_wire("{\"sample\":{}}"),
            Err(WireError::OtherFormat)
        );
        assert_eq!(
            PolledDevice::from_wire("promsnmp-poll/2\n{}"),
            Err(WireError::OtherFormat)
        );
        assert!(matches!(
            PolledDevice::from_wire(&format!("{POLL_FORMAT}{{")),
            Err(WireError::Invalid(_))
        ));
    }
}
