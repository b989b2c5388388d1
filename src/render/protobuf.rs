//! Length-delimited `io.prometheus.client.MetricFamily` messages, with
//! `interface_utilization` as a native histogram (and its classic buckets).

use super::{Exposition, FamilyKind, RenderOptions, ValueOut};
use crate::polled::PolledDevice;
use crate::proto;
use crate::sample::LabelSet;
use crate::utilization::{
    UtilizationHistogram, NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD, UTILIZATION_BUCKETS_PERCENT,
};

/// Writes `exposition` (of `devices`) as delimited protobuf messages.
pub fn write(
    exposition: &Exposition,
    devices: &[&PolledDevice],
    options: RenderOptions,
    out: &mut Vec<u8>,
) {
    let pair = |name: &str, value: &str| proto::LabelPair {
        name: Some(name.to_owned()),
        value: Some(value.to_owned()),
    };
    let device_pairs: Vec<Vec<proto::LabelPair>> = devices
        .iter()
        .map(|d| {
            if options.device_label {
                vec![
                    pair("device_id", &d.sample.device_id),
                    pair("device_name", &d.sample.device_name),
                ]
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut family = proto::MetricFamily::default();
    for def in &exposition.families {
        family.metric.clear();
        for series in &def.series {
            let label = merged_pairs(&device_pairs[series.device], series.labels);
            let metric = match (series.value, def.kind) {
                (ValueOut::Histogram(h), _) => proto::Metric {
                    label,
                    histogram: Some(proto_histogram(h)),
                    ..Default::default()
                },
                (ValueOut::Number(v), FamilyKind::Counter) => proto::Metric {
                    label,
                    counter: Some(proto::Counter { value: Some(v) }),
                    ..Default::default()
                },
                (ValueOut::Number(v), _) => proto::Metric {
                    label,
                    gauge: Some(proto::Gauge { value: Some(v) }),
                    ..Default::default()
                },
            };
            family.metric.push(metric);
        }
        family.name = Some(def.name.to_owned());
        family.help = Some(def.help.to_owned());
        family.set_type(match def.kind {
            FamilyKind::Gauge => proto::MetricType::Gauge,
            FamilyKind::Counter => proto::MetricType::Counter,
            FamilyKind::Histogram => proto::MetricType::Histogram,
        });
        prost::Message::encode_length_delimited(&family, out).expect("a Vec<u8> grows as needed");
    }
}

/// The device's pairs and the series' labels, sorted by name as client_golang sends them.
fn merged_pairs(device: &[proto::LabelPair], labels: &LabelSet) -> Vec<proto::LabelPair> {
    let mut pairs: Vec<proto::LabelPair> = Vec::with_capacity(device.len() + labels.len());
    pairs.extend(device.iter().cloned());
    pairs.extend(labels.iter().map(|l| proto::LabelPair {
        name: Some(if device.is_empty() {
            l.name.to_string()
        } else {
            super::beside_device_labels(&l.name).into_owned()
        }),
        value: Some(l.value.to_string()),
    }));
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    pairs
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
    for &(index, count) in &histogram.native_buckets {
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
    use super::super::fixtures::*;
    use super::super::{render, Format};
    use super::*;
    use prost::Message;
    use std::collections::BTreeMap;

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
            RenderOptions {
                device_label: true,
                modules: None,
            },
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
        assert_eq!(in_octets.help.as_deref(), Some("Octets in."));
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

        let util = &families[5];
        assert_eq!(util.r#type(), proto::MetricType::Histogram);
        assert_eq!(util.metric.len(), 4, "2 interfaces × 2 devices");
        let full = util.metric[0].histogram.as_ref().unwrap();
        let source = &d1.utilization[0].histogram;
        assert_eq!(full.sample_count, Some(11));
        assert_eq!(full.sample_sum, Some(source.sum));
        assert_eq!(full.schema, Some(NATIVE_SCHEMA));
        assert_eq!(full.zero_threshold, Some(NATIVE_ZERO_THRESHOLD));
        assert_eq!(full.zero_count, Some(2));
        assert!(full.negative_span.is_empty() && full.negative_delta.is_empty());
        assert_eq!(
            expand(&full.positive_span, &full.positive_delta),
            source
                .native_buckets
                .iter()
                .copied()
                .collect::<BTreeMap<i32, u64>>()
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

        let duration = &families[6];
        assert_eq!(duration.metric[1].gauge.as_ref().unwrap().value, Some(0.25));
        let last = &duration.metric[0];
        assert_eq!(last.label.len(), 2);
        assert_eq!(label(last, "device_name"), Some("r1"));
        assert_eq!(label(last, "device_id"), Some("id-r1"));
        assert_eq!(families[4].metric[0].label.len(), 6);

        let mut none = Vec::new();
        render(&[], Format::Protobuf, RenderOptions::default(), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn native_spans_with_gaps_and_negative_indexes() {
        let h = UtilizationHistogram {
            native_buckets: Vec::from([
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
        assert_eq!(
            expand(&spans, &deltas),
            h.native_buckets.iter().copied().collect()
        );

        let h = histogram(&[0.37, 1.0, 1.0, 2.5, 99.9, 100.0, 0.0]);
        let (spans, deltas) = native_spans(&h);
        assert_eq!(
            expand(&spans, &deltas),
            h.native_buckets.iter().copied().collect()
        );
        assert_eq!(
            native_spans(&UtilizationHistogram::default()),
            (vec![], vec![])
        );
    }
}
