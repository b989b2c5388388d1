//! Plain data produced by one poll of one device, and the values derived across
//! polls (the interface-utilisation histogram).
//!
//! Nothing here knows about SNMP sessions, HTTP or storage: the collector fills
//! these structs, the store keeps them, the renderers turn them into bytes.

use std::collections::BTreeMap;

/// The 64-bit IF-MIB counters read per interface, in exposition order.
/// The index into [`InterfaceSample::counters`] is the position in this table.
pub const COUNTERS: [CounterDef; 8] = [
    CounterDef { name: "ifHCInOctets", help: "The total number of octets received on the interface, including framing characters (IF-MIB).", oid_suffix: 6 },
    CounterDef { name: "ifHCInUcastPkts", help: "The number of unicast packets delivered to a higher-layer protocol (IF-MIB).", oid_suffix: 7 },
    CounterDef { name: "ifHCInMulticastPkts", help: "The number of multicast packets delivered to a higher-layer protocol (IF-MIB).", oid_suffix: 8 },
    CounterDef { name: "ifHCInBroadcastPkts", help: "The number of broadcast packets delivered to a higher-layer protocol (IF-MIB).", oid_suffix: 9 },
    CounterDef { name: "ifHCOutOctets", help: "The total number of octets transmitted out of the interface, including framing characters (IF-MIB).", oid_suffix: 10 },
    CounterDef { name: "ifHCOutUcastPkts", help: "The total number of unicast packets requested to be transmitted (IF-MIB).", oid_suffix: 11 },
    CounterDef { name: "ifHCOutMulticastPkts", help: "The total number of multicast packets requested to be transmitted (IF-MIB).", oid_suffix: 12 },
    CounterDef { name: "ifHCOutBroadcastPkts", help: "The total number of broadcast packets requested to be transmitted (IF-MIB).", oid_suffix: 13 },
];

/// Index of ifHCInOctets in [`COUNTERS`].
pub const IN_OCTETS: usize = 0;
/// Index of ifHCOutOctets in [`COUNTERS`].
pub const OUT_OCTETS: usize = 4;

/// One IF-MIB counter column: its metric name and its column number under
/// ifXEntry (1.3.6.1.2.1.31.1.1.1.<oid_suffix>).
#[derive(Debug, Clone, Copy)]
pub struct CounterDef {
    pub name: &'static str,
    pub help: &'static str,
    pub oid_suffix: u32,
}

/// The result of one successful poll of one device.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Inventory id of the device.
    pub device_id: String,
    /// sysName as stored in the inventory (the scrape label `device_name`).
    pub device_name: String,
    /// `ip:port` of the agent that answered.
    pub target: String,
    /// Wall-clock time the poll finished, milliseconds since the Unix epoch.
    pub polled_at_ms: i64,
    /// How long the poll took.
    pub poll_duration_seconds: f64,
    /// sysUpTime in hundredths of a second (TimeTicks).
    pub sys_uptime_ticks: u32,
    /// Interfaces in ifIndex order.
    pub interfaces: Vec<InterfaceSample>,
}

/// One row of ifTable/ifXTable.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct InterfaceSample {
    pub if_index: u32,
    pub if_name: String,
    pub if_descr: String,
    pub if_alias: String,
    /// ifSpeed, bits per second (Gauge32).
    pub if_speed_bps: Option<u64>,
    /// ifHighSpeed, millions of bits per second (Gauge32).
    pub if_high_speed_mbps: Option<u64>,
    /// Values of [`COUNTERS`], `None` where the agent has no such column/row.
    pub counters: [Option<u64>; COUNTERS.len()],
}

impl InterfaceSample {
    /// Interface speed in bits per second: ifHighSpeed when the agent reports it
    /// (ifSpeed saturates at 4.29 Gb/s), otherwise ifSpeed. `None` when unknown or 0.
    pub fn speed_bps(&self) -> Option<u64> {
        match (self.if_high_speed_mbps, self.if_speed_bps) {
            (Some(high), _) if high > 0 => Some(high.saturating_mul(1_000_000)),
            (_, Some(speed)) if speed > 0 => Some(speed),
            _ => None,
        }
    }
}

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
    /// Native histogram: bucket index -> count, bucket `i` covering
    /// `(2^((i-1)/2^schema), 2^(i/2^schema)]`.
    pub native_buckets: BTreeMap<i32, u64>,
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
            *self
                .native_buckets
                .entry(native_bucket_index(value_percent, NATIVE_SCHEMA))
                .or_default() += 1;
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
    pub last_in_octets: Option<u64>,
    pub last_out_octets: Option<u64>,
    pub histogram: UtilizationHistogram,
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
    /// Keyed by ifIndex.
    pub interfaces: BTreeMap<u32, InterfaceHistory>,
}

impl DeviceHistory {
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
        let elapsed_ticks = match self.last_uptime_ticks {
            Some(last) if sample.sys_uptime_ticks > last => Some(sample.sys_uptime_ticks - last),
            _ => None, // first poll, agent restart, or no time elapsed
        };
        self.last_uptime_ticks = Some(sample.sys_uptime_ticks);
        for iface in &sample.interfaces {
            let history = self.interfaces.entry(iface.if_index).or_default();
            // Back after missing polls: its deltas span more than one interval.
            let was_missed = std::mem::take(&mut history.missed_polls) > 0;
            let now_in = iface.counters[IN_OCTETS];
            let now_out = iface.counters[OUT_OCTETS];
            let delta = |now: Option<u64>, last: Option<u64>| match (now, last) {
                (Some(now), Some(last)) if now >= last => Some(now - last),
                _ => None,
            };
            let delta_in = delta(now_in, history.last_in_octets);
            let delta_out = delta(now_out, history.last_out_octets);
            history.last_in_octets = now_in;
            history.last_out_octets = now_out;
            let (Some(elapsed), Some(speed), false) =
                (elapsed_ticks, iface.speed_bps(), was_missed)
            else {
                continue;
            };
            // A wrap or reset in either direction makes the poll useless for this interface.
            if now_in.is_some() && delta_in.is_none() || now_out.is_some() && delta_out.is_none() {
                continue;
            }
            let busiest_octets = delta_in.unwrap_or(0).max(delta_out.unwrap_or(0));
            if delta_in.is_none() && delta_out.is_none() {
                continue;
            }
            let seconds = elapsed as f64 / 100.0;
            let percent = busiest_octets as f64 * 8.0 * 100.0 / (speed as f64 * seconds);
            history.histogram.observe(percent);
        }
        let present: std::collections::BTreeSet<u32> =
            sample.interfaces.iter().map(|i| i.if_index).collect();
        for (index, history) in self.interfaces.iter_mut() {
            if !present.contains(index) {
                history.missed_polls += 1;
            }
        }
        self.interfaces
            .retain(|_, h| h.missed_polls < FORGET_INTERFACE_AFTER_POLLS);
    }
}

/// A poll together with the utilisation histograms as of that poll: what the
/// renderers expose and what the cache holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolledDevice {
    pub sample: Sample,
    /// Keyed by ifIndex.
    pub utilization: BTreeMap<u32, UtilizationHistogram>,
}

impl PolledDevice {
    pub fn new(sample: Sample, history: &DeviceHistory) -> Self {
        let utilization = history
            .interfaces
            .iter()
            .map(|(index, h)| (*index, h.histogram.clone()))
            .collect();
        PolledDevice {
            sample,
            utilization,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(uptime: u32, in_octets: u64, out_octets: u64) -> Sample {
        let mut iface = InterfaceSample {
            if_index: 1,
            if_high_speed_mbps: Some(1),
            ..Default::default()
        };
        iface.counters[IN_OCTETS] = Some(in_octets);
        iface.counters[OUT_OCTETS] = Some(out_octets);
        Sample {
            device_id: "d".into(),
            device_name: "d".into(),
            target: "127.0.0.1:161".into(),
            polled_at_ms: 0,
            poll_duration_seconds: 0.0,
            sys_uptime_ticks: uptime,
            interfaces: vec![iface],
        }
    }

    #[test]
    fn utilization_from_octet_deltas() {
        let mut h = DeviceHistory::default();
        h.record(&sample(100, 0, 0));
        assert_eq!(
            h.interfaces[&1].histogram.count, 0,
            "first poll is only a baseline"
        );
        // 10 s later, 1 Mb/s link: 625_000 octets = 5 Mb in 10 s = 50 %.
        h.record(&sample(1100, 625_000, 1000));
        let hist = &h.interfaces[&1].histogram;
        assert_eq!(hist.count, 1);
        assert!((hist.sum - 50.0).abs() < 1e-9, "sum {}", hist.sum);
        assert_eq!(hist.cumulative_counts()[3], 0, "le=25 must not hold 50 %");
        assert_eq!(hist.cumulative_counts()[4], 1, "le=50 holds 50 %");
    }

    #[test]
    fn wrap_and_restart_give_no_observation() {
        let mut h = DeviceHistory::default();
        h.record(&sample(100, 1_000_000, 0));
        h.record(&sample(200, 10, 0)); // counter went back
        assert_eq!(h.interfaces[&1].histogram.count, 0);
        h.record(&sample(50, 20, 0)); // agent restarted
        assert_eq!(h.interfaces[&1].histogram.count, 0);
        h.record(&sample(150, 30, 0)); // normal again
        assert_eq!(h.interfaces[&1].histogram.count, 1);
        assert!(h.interfaces[&1].histogram.sum >= 0.0);
    }

    #[test]
    fn history_survives_a_short_walk_and_resets_for_another_agent() {
        let mut h = DeviceHistory::default();
        h.record(&sample(100, 0, 0));
        h.record(&sample(1100, 625_000, 0));
        let mut empty = sample(1200, 0, 0);
        empty.interfaces.clear();
        h.record(&empty);
        assert_eq!(
            h.interfaces[&1].histogram.count, 1,
            "kept through a poll without the interface"
        );
        h.record(&sample(1250, 650_000, 0));
        assert_eq!(
            h.interfaces[&1].histogram.count, 1,
            "back after a gap: baseline only"
        );
        let mut moved = sample(1300, 700_000, 0);
        moved.target = "127.0.0.2:161".into();
        h.record(&moved);
        assert_eq!(
            h.interfaces[&1].histogram.count, 0,
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
