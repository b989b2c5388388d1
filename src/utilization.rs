//! Interface utilisation, derived across polls: a cumulative histogram per
//! interface (classic buckets and a native exponential histogram) fed by the
//! octet counters of consecutive polls. It reads the generic sample by
//! metric name — `ifHCInOctets`/`ifHCOutOctets` (or the 32-bit
//! `ifInOctets`/`ifOutOctets`), `ifHighSpeed` or `ifSpeed`, keyed by the
//! `ifIndex` label — so it works for any module that gives those series.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::sample::{Labels, Sample};

/// Upper bounds (percent) of the classic `interface_utilization` buckets; `+Inf` is implicit.
pub const UTILIZATION_BUCKETS_PERCENT: [f64; 9] =
    [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 100.0];

/// Schema of the native histogram: bucket boundaries grow by 2^(2^-schema),
/// i.e. about 9 % per bucket at schema 3.
pub const NATIVE_SCHEMA: i32 = 3;
/// Observations at or below this go to the zero bucket of the native histogram.
pub const NATIVE_ZERO_THRESHOLD: f64 = 1e-9;

/// A cumulative histogram of interface utilisation in percent, kept both as
/// classic buckets and as a native (sparse, exponential) histogram.
/// Every field only ever grows.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct UtilizationHistogram {
    /// Non-cumulative counts per classic bucket; index 9 is the `+Inf` overflow.
    pub bucket_counts: [u64; UTILIZATION_BUCKETS_PERCENT.len() + 1],
    pub sum: f64,
    pub count: u64,
    /// Native histogram: observations `<= NATIVE_ZERO_THRESHOLD`.
    pub zero_count: u64,
    /// Native histogram: (bucket index, count), sorted by index, bucket `i`
    /// covering `(2^((i-1)/2^schema), 2^(i/2^schema)]`. A few buckets per
    /// interface: a sorted vector is smaller than a map.
    pub native_buckets: Vec<(i32, u64)>,
}

impl UtilizationHistogram {
    /// Records one observation (percent, >= 0).
    pub fn observe(&mut self, value_percent: f64) {
        if !value_percent.is_finite() || value_percent < 0.0 {
            return;
        }
        let classic = UTILIZATION_BUCKETS_PERCENT
            .iter()
            .position(|upper| value_percent <= *upper)
            .unwrap_or(UTILIZATION_BUCKETS_PERCENT.len());
        self.bucket_counts[classic] += 1;
        self.sum += value_percent;
        self.count += 1;
        if value_percent <= NATIVE_ZERO_THRESHOLD {
            self.zero_count += 1;
        } else {
            let index = native_bucket_index(value_percent, NATIVE_SCHEMA);
            match self
                .native_buckets
                .binary_search_by_key(&index, |(i, _)| *i)
            {
                Ok(at) => self.native_buckets[at].1 += 1,
                Err(at) => self.native_buckets.insert(at, (index, 1)),
            }
        }
    }

    /// Cumulative counts for the classic buckets (`le` = each bound, then `+Inf`).
    pub fn cumulative_counts(&self) -> [u64; UTILIZATION_BUCKETS_PERCENT.len() + 1] {
        let mut out = self.bucket_counts;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }
}

/// Index of the native-histogram bucket holding `value` (> 0) at `schema`:
/// the smallest `i` with `value <= 2^(i / 2^schema)`.
pub fn native_bucket_index(value: f64, schema: i32) -> i32 {
    let scale = 2f64.powi(schema);
    let upper = |i: i32| 2f64.powf(i as f64 / scale);
    let mut index = (value.log2() * scale).ceil() as i32;
    // log2 rounding can land one bucket off at exact boundaries.
    if upper(index) < value {
        index += 1;
    } else if upper(index - 1) >= value {
        index -= 1;
    }
    index
}

/// State kept per interface between polls to derive utilisation.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct InterfaceHistory {
    pub last_in_octets: Option<f64>,
    pub last_out_octets: Option<f64>,
    /// Shared with the polls served from it: a poll copies it only when the
    /// next observation changes it.
    pub histogram: Arc<UtilizationHistogram>,
    /// Consecutive polls that did not return this interface.
    pub missed_polls: u32,
}

/// An interface absent from this many consecutive polls is forgotten. A
/// short or failed walk must not reset histograms that only ever grow.
pub const FORGET_INTERFACE_AFTER_POLLS: u32 = 100;

/// Everything derived across polls of one device.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct DeviceHistory {
    /// The agent (`ip:port`) the history was built from: counters of another
    /// agent are not comparable.
    pub target: String,
    /// sysUpTime of the previous poll (hundredths of a second).
    pub last_uptime_ticks: Option<u32>,
    /// Wall-clock time of the previous poll (ms), for agents without sysUpTime.
    #[serde(default)]
    pub last_polled_at_ms: Option<i64>,
    /// By ifIndex, sorted.
    pub interfaces: Vec<(u32, InterfaceHistory)>,
}

/// What a sample says about one interface.
#[derive(Debug, Clone)]
pub struct InterfaceCounters {
    /// The labels of its octet counter series (ifIndex, ifName, …).
    pub labels: Labels,
    pub in_octets: Option<f64>,
    pub out_octets: Option<f64>,
    pub speed_bps: Option<f64>,
}

/// The interfaces of `sample` that have an octet counter, by ifIndex.
pub fn interfaces(sample: &Sample) -> BTreeMap<u32, InterfaceCounters> {
    // The first family found of `names`, by ifIndex.
    let by_index = |names: &[&str]| -> BTreeMap<u32, (Labels, f64)> {
        let family = names.iter().find_map(|n| sample.family(n));
        let mut values = BTreeMap::new();
        for series in family.unwrap_or_default() {
            let index = series
                .labels
                .get("ifIndex")
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(index) = index {
                values.insert(index, (series.labels.clone(), series.value));
            }
        }
        values
    };
    let inbound = by_index(&["ifHCInOctets", "ifInOctets"]);
    let outbound = by_index(&["ifHCOutOctets", "ifOutOctets"]);
    let high_speed = by_index(&["ifHighSpeed"]);
    let speed = by_index(&["ifSpeed"]);
    let indexes: BTreeSet<u32> = inbound.keys().chain(outbound.keys()).copied().collect();
    indexes
        .into_iter()
        .filter_map(|index| {
            let (labels, _) = inbound.get(&index).or_else(|| outbound.get(&index))?;
            // ifSpeed saturates at 4.29 Gb/s: ifHighSpeed wins when the agent has it.
            let speed_bps = match (high_speed.get(&index), speed.get(&index)) {
                (Some((_, high)), _) if *high > 0.0 => Some(high * 1e6),
                (_, Some((_, s))) if *s > 0.0 => Some(*s),
                _ => None,
            };
            Some((
                index,
                InterfaceCounters {
                    labels: labels.clone(),
                    in_octets: inbound.get(&index).map(|(_, v)| *v),
                    out_octets: outbound.get(&index).map(|(_, v)| *v),
                    speed_bps,
                },
            ))
        })
        .collect()
}

impl DeviceHistory {
    /// The history of interface `if_index`.
    pub fn interface(&self, if_index: u32) -> Option<&InterfaceHistory> {
        self.interfaces
            .binary_search_by_key(&if_index, |(i, _)| *i)
            .ok()
            .map(|at| &self.interfaces[at].1)
    }

    fn interface_mut(&mut self, if_index: u32) -> &mut InterfaceHistory {
        let at = match self.interfaces.binary_search_by_key(&if_index, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                self.interfaces
                    .insert(at, (if_index, InterfaceHistory::default()));
                at
            }
        };
        &mut self.interfaces[at].1
    }

    /// Feeds one new poll into the history: observes one utilisation value per
    /// interface whose counters moved forward since the previous poll. A counter
    /// that went backwards (wrap or reset) or an agent restart (sysUpTime went
    /// back) produce no observation, only a new baseline.
    pub fn record(&mut self, sample: &Sample) {
        if self.target != sample.target {
            *self = DeviceHistory {
                target: sample.target.clone(),
                ..Default::default()
            };
        }
        let elapsed_seconds = match (self.last_uptime_ticks, sample.sys_uptime_ticks) {
            (Some(last), Some(now)) if now > last => Some(f64::from(now - last) / 100.0),
            // Without sysUpTime, the wall clock between polls.
            (None, None) => self
                .last_polled_at_ms
                .filter(|last| sample.polled_at_ms > *last)
                .map(|last| (sample.polled_at_ms - last) as f64 / 1000.0),
            _ => None, // first poll, agent restart, or no time elapsed
        };
        self.last_uptime_ticks = sample.sys_uptime_ticks;
        self.last_polled_at_ms = Some(sample.polled_at_ms);
        let polled = interfaces(sample);
        for (index, iface) in &polled {
            let history = self.interface_mut(*index);
            // Back after missing polls: its deltas span more than one interval.
            let was_missed = std::mem::take(&mut history.missed_polls) > 0;
            let delta = |now: Option<f64>, last: Option<f64>| match (now, last) {
                (Some(now), Some(last)) if now >= last => Some(now - last),
                _ => None,
            };
            let delta_in = delta(iface.in_octets, history.last_in_octets);
            let delta_out = delta(iface.out_octets, history.last_out_octets);
            history.last_in_octets = iface.in_octets;
            history.last_out_octets = iface.out_octets;
            let (Some(seconds), Some(speed), false) =
                (elapsed_seconds, iface.speed_bps, was_missed)
            else {
                continue;
            };
            // A wrap or reset in either direction makes the poll useless for this interface.
            if iface.in_octets.is_some() && delta_in.is_none()
                || iface.out_octets.is_some() && delta_out.is_none()
            {
                continue;
            }
            if delta_in.is_none() && delta_out.is_none() {
                continue;
            }
            let busiest_octets = delta_in.unwrap_or(0.0).max(delta_out.unwrap_or(0.0));
            let percent = busiest_octets * 8.0 * 100.0 / (speed * seconds);
            Arc::make_mut(&mut history.histogram).observe(percent);
        }
        let present: BTreeSet<u32> = polled.keys().copied().collect();
        for (index, history) in self.interfaces.iter_mut() {
            if !present.contains(index) {
                history.missed_polls += 1;
            }
        }
        self.interfaces
            .retain(|(_, h)| h.missed_polls < FORGET_INTERFACE_AFTER_POLLS);
        self.interfaces.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Label, LabelSet, ModuleSample, Series};
    use std::sync::Arc;

    fn labels(index: u32) -> Labels {
        LabelSet::row(vec![
            Label {
                name: Arc::from("ifIndex"),
                value: index.to_string().into(),
            },
            Label {
                name: Arc::from("ifName"),
                value: "eth0".into(),
            },
        ])
    }

    pub(crate) fn sample_with(uptime: Option<u32>, families: &[(&str, f64)]) -> Sample {
        let families = families
            .iter()
            .map(|(name, value)| {
                (
                    crate::sample::intern_meta(name, "", Kind::Counter),
                    vec![Series {
                        labels: labels(1),
                        value: *value,
                    }],
                )
            })
            .collect();
        Sample {
            device_id: "d".into(),
            device_name: "d".into(),
            target: "127.0.0.1:161".into(),
            polled_at_ms: 0,
            poll_duration_seconds: 0.0,
            sys_uptime_ticks: uptime,
            modules: vec![ModuleSample::new(Arc::from("if_mib"), families)],
        }
    }

    fn sample(uptime: u32, in_octets: f64, out_octets: f64) -> Sample {
        sample_with(
            Some(uptime),
            &[
                ("ifHCInOctets", in_octets),
                ("ifHCOutOctets", out_octets),
                ("ifHighSpeed", 1.0),
            ],
        )
    }

    #[test]
    fn utilization_from_octet_deltas() {
        let mut h = DeviceHistory::default();
        h.record(&sample(100, 0.0, 0.0));
        assert_eq!(
            h.interface(1).unwrap().histogram.count,
            0,
            "first poll is only a baseline"
        );
        // 10 s later, 1 Mb/s link: 625_000 octets = 5 Mb in 10 s = 50 %.
        h.record(&sample(1100, 625_000.0, 1000.0));
        let hist = &h.interface(1).unwrap().histogram;
        assert_eq!(hist.count, 1);
        assert!((hist.sum - 50.0).abs() < 1e-9, "sum {}", hist.sum);
        assert_eq!(hist.cumulative_counts()[3], 0, "le=25 must not hold 50 %");
        assert_eq!(hist.cumulative_counts()[4], 1, "le=50 holds 50 %");
    }

    #[test]
    fn speed_and_counters_fall_back() {
        // 32-bit counters and ifSpeed (bits per second) work too.
        let mut h = DeviceHistory::default();
        let s = |uptime, octets| {
            sample_with(
                Some(uptime),
                &[
                    ("ifInOctets", octets),
                    ("ifOutOctets", 0.0),
                    ("ifSpeed", 1e6),
                ],
            )
        };
        h.record(&s(100, 0.0));
        h.record(&s(1100, 625_000.0));
        assert!((h.interface(1).unwrap().histogram.sum - 50.0).abs() < 1e-9);
        // Without sysUpTime, the wall clock times the deltas.
        let mut h = DeviceHistory::default();
        let mut first = sample_with(None, &[("ifHCInOctets", 0.0), ("ifHighSpeed", 1.0)]);
        first.polled_at_ms = 1_000;
        let mut second = sample_with(None, &[("ifHCInOctets", 625_000.0), ("ifHighSpeed", 1.0)]);
        second.polled_at_ms = 11_000;
        h.record(&first);
        h.record(&second);
        assert!((h.interface(1).unwrap().histogram.sum - 50.0).abs() < 1e-9);
        // No speed: no observation.
        let mut h = DeviceHistory::default();
        h.record(&sample_with(Some(100), &[("ifHCInOctets", 0.0)]));
        h.record(&sample_with(Some(200), &[("ifHCInOctets", 10.0)]));
        assert_eq!(h.interface(1).unwrap().histogram.count, 0);
    }

    #[test]
    fn wrap_and_restart_give_no_observation() {
        let mut h = DeviceHistory::default();
        h.record(&sample(100, 1_000_000.0, 0.0));
        h.record(&sample(200, 10.0, 0.0)); // counter went back
        assert_eq!(h.interface(1).unwrap().histogram.count, 0);
        h.record(&sample(50, 20.0, 0.0)); // agent restarted
        assert_eq!(h.interface(1).unwrap().histogram.count, 0);
        h.record(&sample(150, 30.0, 0.0)); // normal again
        assert_eq!(h.interface(1).unwrap().histogram.count, 1);
        assert!(h.interface(1).unwrap().histogram.sum >= 0.0);
    }

    #[test]
    fn history_survives_a_short_walk_and_resets_for_another_agent() {
        let mut h = DeviceHistory::default();
        h.record(&sample(100, 0.0, 0.0));
        h.record(&sample(1100, 625_000.0, 0.0));
        let mut empty = sample(1200, 0.0, 0.0);
        empty.modules.clear();
        h.record(&empty);
        assert_eq!(
            h.interface(1).unwrap().histogram.count,
            1,
            "kept through a poll without the interface"
        );
        h.record(&sample(1250, 650_000.0, 0.0));
        assert_eq!(
            h.interface(1).unwrap().histogram.count,
            1,
            "back after a gap: baseline only"
        );
        let mut moved = sample(1300, 700_000.0, 0.0);
        moved.target = "127.0.0.2:161".into();
        h.record(&moved);
        assert_eq!(
            h.interface(1).unwrap().histogram.count,
            0,
            "another agent starts afresh"
        );
    }

    #[test]
    fn native_index_matches_boundaries() {
        // At schema 0 buckets are (0.5,1], (1,2], (2,4] ...
        assert_eq!(native_bucket_index(1.0, 0), 0);
        assert_eq!(native_bucket_index(1.5, 0), 1);
        assert_eq!(native_bucket_index(2.0, 0), 1);
        assert_eq!(native_bucket_index(2.0001, 0), 2);
        assert_eq!(native_bucket_index(0.3, 0), -1);
        // schema 3: 2^(8/8) = 2 is the upper bound of bucket 8.
        assert_eq!(native_bucket_index(2.0, 3), 8);
        for v in [0.001, 0.37, 1.0, 3.3, 50.0, 99.9, 100.0] {
            let i = native_bucket_index(v, NATIVE_SCHEMA);
            let scale = 2f64.powi(NATIVE_SCHEMA);
            assert!(
                2f64.powf((i - 1) as f64 / scale) < v && v <= 2f64.powf(i as f64 / scale),
                "{v} -> {i}"
            );
        }
    }

    #[test]
    fn buckets_only_grow() {
        let mut hist = UtilizationHistogram::default();
        let mut last = hist.cumulative_counts();
        for v in [0.0, 0.5, 3.0, 99.0, 100.0, 130.0, 7.0] {
            hist.observe(v);
            let now = hist.cumulative_counts();
            assert!(now.iter().zip(last.iter()).all(|(a, b)| a >= b));
            last = now;
        }
        assert_eq!(hist.count, 7);
        assert_eq!(hist.zero_count, 1);
        assert_eq!(hist.bucket_counts[9], 1, "130 % lands in +Inf");
    }
}
