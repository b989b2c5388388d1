//! Varbinds → families, module by module, with snmp_exporter's rules: each
//! varbind belongs to the metric whose OID is its shortest prefix; the rest
//! of its OID is the index, read into labels by the metric's indexes, then
//! completed by its lookups (chained, or dropping a label); the value becomes
//! a counter, a gauge, a date, an enum as info or state set, bits, regex
//! extracts, or a string carried as a label.
//!
//! A module sees only the varbinds under its own walk and get OIDs, even
//! though one poll fetched the union for every module of the device: its
//! series are exactly what snmp_exporter would give for it alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use super::datetime;
use super::definition::{covered, Metric, Module, Oid};
use super::file::MetricType;
use super::value;
use crate::sample::{FamilyMeta, Label, LabelSet, Labels, ModuleSample, Series};
use crate::snmp::SnmpValue;

/// Every varbind of one poll, by OID.
pub type Varbinds = BTreeMap<Vec<u64>, SnmpValue>;

/// What one module may read of a poll: its walked subtrees and GET
/// instances (after its filters chose the instances of their targets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Sorted, none inside another.
    pub walk: Vec<Oid>,
    /// Sorted.
    pub get: Vec<Oid>,
}

impl View {
    pub fn of(module: &Module) -> View {
        View {
            walk: module.walk.clone(),
            get: module.get.clone(),
        }
    }

    fn sees(&self, oid: &[u64]) -> bool {
        covered(&self.walk, oid) || self.get.binary_search_by(|g| (**g).cmp(oid)).is_ok()
    }
}

/// Values a module could not turn into series (wrong type on the wire, a
/// date that does not parse): counted, and the first one described.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skipped {
    pub count: u64,
    pub first: Option<String>,
}

impl Skipped {
    fn note(&mut self, metric: &Metric, oid: &[u64], reason: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{} at {}: {}", metric.name, dotted(oid), reason()));
        }
    }
}

fn dotted(oid: &[u64]) -> String {
    oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// Decodes what `module` sees of `varbinds`. `previous` is this module's
/// sample of the device's previous poll: label sets that did not change are
/// taken from it instead of allocated again (a device's labels rarely change,
/// and thousands of devices' polls replace each other all the time).
pub fn decode_module(
    module: &Module,
    view: &View,
    varbinds: &Varbinds,
    previous: Option<&ModuleSample>,
    skipped: &mut Skipped,
) -> ModuleSample {
    let mut decoder = Decoder {
        pool: LabelPool::from_sample(previous),
        module,
        view,
        varbinds,
        families: Vec::new(),
        series: Vec::new(),
        positions: HashMap::new(),
        seen: HashSet::new(),
        rows: HashMap::new(),
        empty: LabelSet::row(Vec::new()),
        skipped,
    };
    for subtree in &view.walk {
        let range = varbinds.range::<[u64], _>((Bound::Included(&subtree[..]), Bound::Unbounded));
        for (oid, value) in range.take_while(|(oid, _)| oid.starts_with(subtree)) {
            decoder.varbind(oid, value);
        }
    }
    for get in &view.get {
        if let Some((oid, value)) = varbinds.get_key_value(&get[..]) {
            decoder.varbind(oid, value);
        }
    }
    ModuleSample::from_tagged(module.name.clone(), decoder.families, decoder.series)
}

struct Decoder<'a> {
    pool: LabelPool,
    module: &'a Module,
    view: &'a View,
    varbinds: &'a Varbinds,
    /// The families in order of first appearance.
    families: Vec<Arc<FamilyMeta>>,
    /// Series tagged with their family's position.
    series: Vec<(u32, Series)>,
    /// Family description (by address) → position in `families`.
    positions: HashMap<usize, usize>,
    /// (family position, labels) already emitted: a second one is dropped.
    seen: HashSet<(usize, Labels)>,
    /// (label recipe, index) → the row's labels, built once per row.
    rows: HashMap<(usize, Vec<u64>), Labels>,
    empty: Labels,
    skipped: &'a mut Skipped,
}

impl Decoder<'_> {
    /// A varbind this module sees, if the module may read it.
    fn lookup(&self, oid: &[u64]) -> Option<&SnmpValue> {
        if self.view.sees(oid) {
            self.varbinds.get(oid)
        } else {
            None
        }
    }

    fn emit(&mut self, meta: &Arc<FamilyMeta>, labels: Labels, value: f64) {
        let key = Arc::as_ptr(meta) as usize;
        let position = match self.positions.get(&key) {
            Some(p) => *p,
            None => {
                // One family per name: a second metric of the same name joins it.
                let by_name = self.families.iter().position(|f| f.name == meta.name);
                let p = by_name.unwrap_or_else(|| {
                    self.families.push(meta.clone());
                    self.families.len() - 1
                });
                self.positions.insert(key, p);
                p
            }
        };
        if self.seen.insert((position, labels.clone())) {
            self.series
                .push((position as u32, Series { labels, value }));
        }
    }

    fn varbind(&mut self, oid: &[u64], value: &SnmpValue) {
        let Some((metric, index_at)) = self.module.metric_for(oid) else {
            return;
        };
        let index = &oid[index_at..];
        let labels = self.row_labels(metric, index);
        let scaled = |v: f64| {
            let v = if metric.scale != 0.0 {
                v * metric.scale
            } else {
                v
            };
            v + metric.offset
        };
        let number = value::number(value);
        match metric.value_type {
            MetricType::Counter | MetricType::Gauge | MetricType::Float | MetricType::Double => {
                self.emit(&metric.family, labels, scaled(number));
            }
            MetricType::DateAndTime | MetricType::NtpTimeStamp => {
                let parsed = match value::octets(value) {
                    Some(octets) if metric.value_type == MetricType::DateAndTime => {
                        datetime::date_and_time(octets)
                    }
                    Some(octets) => datetime::ntp_timestamp(octets),
                    None => Err(format!("expected an OCTET STRING, got {}", kind(value))),
                };
                match parsed {
                    Ok(v) => self.emit(&metric.family, labels, scaled(v)),
                    Err(e) => self.skipped.note(metric, oid, || e),
                }
            }
            MetricType::ParseDateAndTime => {
                let text = value::text(value, Some(MetricType::DisplayString), None);
                let pattern = metric.datetime_pattern.as_deref().unwrap_or_default();
                match datetime::parse_with_pattern(&text, pattern) {
                    Ok(v) => self.emit(&metric.family, labels, scaled(v)),
                    Err(e) => self.skipped.note(metric, oid, || e),
                }
            }
            MetricType::EnumAsInfo => {
                if labels.iter().any(|l| l.name == metric.name) {
                    return; // the enum is an index label already
                }
                let state = enum_text(&metric.enum_values, number as i64);
                let labels = self.with_label(&labels, &metric.name, state);
                self.emit(&metric.family, labels, 1.0);
            }
            MetricType::EnumAsStateSet => {
                let current = number as i64;
                let state = enum_text(&metric.enum_values, current);
                let labels_now = self.with_label(&labels, &metric.name, state);
                self.emit(&metric.family, labels_now, 1.0);
                for (k, name) in &metric.enum_values {
                    if *k != current {
                        let other = self.with_label(&labels, &metric.name, name.clone());
                        self.emit(&metric.family, other, 0.0);
                    }
                }
            }
            MetricType::Bits => {
                let Some(octets) = value::octets(value) else {
                    self.skipped.note(metric, oid, || {
                        format!(
                            "BITS must be an OCTET STRING on the wire, got {}",
                            kind(value)
                        )
                    });
                    return;
                };
                for (bit, name) in &metric.enum_values {
                    let Ok(bit) = usize::try_from(*bit) else {
                        continue;
                    };
                    // Most significant bit of the first octet is bit 0.
                    let set = bit < octets.len() * 8 && octets[bit / 8] & (0x80 >> (bit % 8)) != 0;
                    let labels = self.with_label(&labels, &metric.name, name.clone());
                    self.emit(&metric.family, labels, if set { 1.0 } else { 0.0 });
                }
            }
            text_type => {
                let mut read_as = text_type;
                if let Some(mapping) = value::combined_mapping(text_type) {
                    read_as = MetricType::OctetString;
                    if let Some(type_oid) = &metric.type_oid {
                        let at: Vec<u64> = type_oid.iter().chain(index).copied().collect();
                        if let Some(t) = self.lookup(&at).and_then(|v| mapping(value::integer(v))) {
                            read_as = t;
                        }
                    }
                }
                let text = label_text(value, read_as, metric.display_hint.as_deref());
                if !metric.extracts.is_empty() {
                    self.extracts(metric, &labels, &text);
                    return;
                }
                if labels.iter().any(|l| l.name == metric.name) {
                    self.emit(&metric.family, labels, scaled(1.0));
                } else {
                    let labels = self.with_label(&labels, &metric.name, text);
                    self.emit(&metric.family, labels, scaled(1.0));
                }
            }
        }
    }

    /// regex_extracts: per name, the first regex that matches gives the value.
    fn extracts(&mut self, metric: &Metric, labels: &Labels, text: &str) {
        for extract in &metric.extracts {
            for (regex, template) in &extract.rules {
                let Some(captures) = regex.captures(text) else {
                    continue;
                };
                let mut expanded = String::new();
                captures.expand(template, &mut expanded);
                let Ok(mut v) = expanded.parse::<f64>() else {
                    continue;
                };
                if metric.scale != 0.0 {
                    v *= metric.scale;
                }
                v += metric.offset;
                self.emit(&extract.family, labels.clone(), v);
                break;
            }
        }
    }

    /// The labels of the row at `index` for `metric`: its indexes, then its
    /// lookups; shared by every metric of the module with the same recipe.
    fn row_labels(&mut self, metric: &Metric, index: &[u64]) -> Labels {
        if metric.indexes.is_empty() && metric.lookups.is_empty() {
            return self.empty.clone();
        }
        let key = (metric.recipe, index.to_vec());
        if let Some(labels) = self.rows.get(&key) {
            return labels.clone();
        }
        let mut labels: Vec<(Arc<str>, String)> = Vec::new();
        let mut label_oids: Vec<(Arc<str>, Vec<u64>)> = Vec::new();
        fn set<T>(list: &mut Vec<(Arc<str>, T)>, name: &Arc<str>, value: T) {
            match list.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = value,
                None => list.push((name.clone(), value)),
            }
        }
        let mut rest: Vec<u64> = index.to_vec();
        for ix in &metric.indexes {
            let (text, used, left) = value::index_text(
                &rest,
                ix.value_type,
                ix.fixed_size,
                ix.implied,
                Some(&ix.enum_values),
            );
            set(&mut labels, &ix.label, text);
            set(&mut label_oids, &ix.label, used);
            rest = left;
        }
        for lookup in &metric.lookups {
            if lookup.labels.is_empty() {
                labels.retain(|(n, _)| *n != lookup.label);
                continue;
            }
            let Some(base) = &lookup.oid else { continue };
            let mut at: Vec<u64> = base.to_vec();
            let mut complete = true;
            for name in &lookup.labels {
                match label_oids.iter().find(|(n, _)| n == name) {
                    Some((_, sub)) if !sub.is_empty() => at.extend_from_slice(sub),
                    _ => complete = false,
                }
            }
            let found = if complete { self.lookup(&at) } else { None };
            match found {
                Some(v) => {
                    let mut read_as = lookup.value_type;
                    if let (Some(t), Some(type_oid)) = (lookup.value_type, &lookup.type_oid) {
                        if let Some(mapping) = value::combined_mapping(t) {
                            let mut type_at = type_oid.to_vec();
                            type_at.extend_from_slice(&at[base.len()..]);
                            if let Some(mapped) = self
                                .lookup(&type_at)
                                .and_then(|p| mapping(value::integer(p)))
                            {
                                read_as = Some(mapped);
                            }
                        }
                    }
                    let hint = lookup.display_hint.as_deref();
                    let text = match read_as {
                        Some(MetricType::EnumAsInfo) if !lookup.enum_values.is_empty() => {
                            enum_text(&lookup.enum_values, value::integer(v))
                        }
                        Some(t) => label_text(v, t, hint),
                        // No type: snmp_exporter's default formatting.
                        None => value::text(v, None, hint),
                    };
                    set(&mut labels, &lookup.label, text);
                    set(
                        &mut label_oids,
                        &lookup.label,
                        vec![value::integer(v) as u64],
                    );
                }
                None => set(&mut labels, &lookup.label, String::new()),
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let pairs: Vec<(Arc<str>, Text)> = labels
            .into_iter()
            .map(|(name, value)| (name, Text::New(value)))
            .collect();
        let labels = self.pool.find(&pairs).unwrap_or_else(|| {
            LabelSet::row(
                pairs
                    .into_iter()
                    .map(|(name, value)| Label {
                        name,
                        value: value.into_shared(),
                    })
                    .collect(),
            )
        });
        self.rows.insert(key, labels.clone());
        labels
    }

    /// `labels` plus `name="value"` (replacing a label of that name).
    fn with_label(&self, labels: &Labels, name: &Arc<str>, value: String) -> Labels {
        let mut pairs: Vec<(Arc<str>, Text)> = Vec::with_capacity(labels.len() + 1);
        pairs.extend(
            labels
                .iter()
                .filter(|l| l.name != *name)
                .map(|l| (l.name.clone(), Text::Shared(l.value.clone()))),
        );
        let at = pairs.partition_point(|(n, _)| n < name);
        pairs.insert(at, (name.clone(), Text::New(value)));
        if let Some(known) = self.pool.find(&pairs) {
            return known;
        }
        let (name, value) = pairs.swap_remove(at);
        LabelSet::extended(
            labels,
            Label {
                name,
                value: value.into_shared(),
            },
        )
    }
}

/// A label value being built: one a label set has already, or new text.
enum Text {
    Shared(Arc<str>),
    New(String),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Shared(s) => s,
            Text::New(s) => s,
        }
    }

    fn into_shared(self) -> Arc<str> {
        match self {
            Text::Shared(s) => s,
            Text::New(s) => Arc::from(s),
        }
    }
}

/// The label sets of a module's previous sample, by content.
struct LabelPool {
    by_hash: HashMap<u64, Vec<Labels>>,
}

fn pairs_hash<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, value) in pairs {
        name.hash(&mut h);
        value.hash(&mut h);
    }
    h.finish()
}

impl LabelPool {
    fn from_sample(previous: Option<&ModuleSample>) -> LabelPool {
        let mut by_hash: HashMap<u64, Vec<Labels>> = HashMap::new();
        for (_, series) in previous.into_iter().flat_map(|m| m.families()) {
            for s in series {
                let hash = pairs_hash(s.labels.iter().map(|l| (&*l.name, &*l.value)));
                let same = by_hash.entry(hash).or_default();
                if !same.iter().any(|known| Arc::ptr_eq(known, &s.labels)) {
                    same.push(s.labels.clone());
                }
            }
        }
        LabelPool { by_hash }
    }

    /// The previous sample's label set of `pairs` (sorted by name), if it
    /// had this one.
    fn find(&self, pairs: &[(Arc<str>, Text)]) -> Option<Labels> {
        if self.by_hash.is_empty() {
            return None;
        }
        let hash = pairs_hash(pairs.iter().map(|(n, v)| (&**n, v.as_str())));
        let candidates = self.by_hash.get(&hash)?;
        candidates
            .iter()
            .find(|known| {
                known.len() == pairs.len()
                    && known
                        .iter()
                        .zip(pairs)
                        .all(|(l, (n, v))| *l.name == **n && *l.value == *v.as_str())
            })
            .cloned()
    }
}

/// A value as label text; DisplayStrings lose trailing NULs (agents pad
/// fixed-size buffers with them).
fn label_text(v: &SnmpValue, read_as: MetricType, hint: Option<&str>) -> String {
    let mut text = value::text(v, Some(read_as), hint);
    if read_as == MetricType::DisplayString {
        let trimmed = text.trim_end_matches('\0').len();
        text.truncate(trimmed);
    }
    text
}

fn enum_text(values: &BTreeMap<i64, String>, v: i64) -> String {
    values.get(&v).cloned().unwrap_or_else(|| v.to_string())
}

fn kind(v: &SnmpValue) -> &'static str {
    match v {
        SnmpValue::Integer(_) => "INTEGER",
        SnmpValue::OctetString(_) => "OCTET STRING",
        SnmpValue::ObjectId(_) => "OBJECT IDENTIFIER",
        SnmpValue::IpAddress(_) => "IpAddress",
        SnmpValue::Counter32(_) => "Counter32",
        SnmpValue::Unsigned32(_) => "Gauge32",
        SnmpValue::TimeTicks(_) => "TimeTicks",
        SnmpValue::Counter64(_) => "Counter64",
        SnmpValue::Opaque(_) => "Opaque",
        SnmpValue::Null => "NULL",
        _ => "an exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::definition::compile_module;
    use crate::modules::file::{parse_bytes, parse_numeric_oid};
    use crate::modules::plan::filtered_view;
    use std::path::Path;

    fn module(yaml: &str) -> Module {
        let parsed = parse_bytes(
            Path::new("t.yml"),
            format!("modules:\n  m:\n{yaml}").into_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        compile_module("m", &parsed.modules["m"], "t.yml", "modules.m").unwrap()
    }

    fn varbinds(list: &[(&str, SnmpValue)]) -> Varbinds {
        list.iter()
            .map(|(oid, v)| (parse_numeric_oid(oid).unwrap(), v.clone()))
            .collect()
    }

    /// `name{a="x",b="y"} value` per series, sorted.
    fn lines(sample: &ModuleSample) -> Vec<String> {
        let mut out: Vec<String> = sample
            .families()
            .flat_map(|(meta, series)| {
                series.iter().map(move |s| {
                    let labels: Vec<String> = s
                        .labels
                        .iter()
                        .map(|l| format!("{}=\"{}\"", l.name, l.value))
                        .collect();
                    format!("{}{{{}}} {}", meta.name, labels.join(","), s.value)
                })
            })
            .collect();
        out.sort();
        out
    }

    fn decode(m: &Module, vb: &Varbinds) -> (Vec<String>, Skipped) {
        let mut skipped = Skipped::default();
        let sample = decode_module(m, &View::of(m), vb, None, &mut skipped);
        (lines(&sample), skipped)
    }

    fn os(b: &[u8]) -> SnmpValue {
        SnmpValue::OctetString(b.to_vec())
    }

    const IF_MODULE: &str = "    walk: [1.3.6.1.2.1.2.2]
    metrics:
    - name: ifOperStatus
      oid: 1.3.6.1.2.1.2.2.1.8
      type: gauge
      help: h
      indexes: [{labelname: ifIndex, type: gauge}]
      lookups:
      - {labels: [ifIndex], labelname: ifDescr, oid: 1.3.6.1.2.1.2.2.1.2, type: DisplayString}
      - {labels: [ifIndex], labelname: ifAlias, oid: 1.3.6.1.2.1.31.1.1.1.18, type: DisplayString}
    - name: ifInErrors
      oid: 1.3.6.1.2.1.2.2.1.14
      type: counter
      help: h
      indexes: [{labelname: ifIndex, type: gauge}]
      lookups:
      - {labels: [ifIndex], labelname: ifDescr, oid: 1.3.6.1.2.1.2.2.1.2, type: DisplayString}
      - {labels: [ifIndex], labelname: ifAlias, oid: 1.3.6.1.2.1.31.1.1.1.18, type: DisplayString}
    - name: ifPhysAddress
      oid: 1.3.6.1.2.1.2.2.1.6
      type: PhysAddress48
      help: h
      indexes: [{labelname: ifIndex, type: gauge}]
    - name: ifType
      oid: 1.3.6.1.2.1.2.2.1.3
      type: EnumAsInfo
      help: h
      indexes: [{labelname: ifIndex, type: gauge}]
      enum_values: {6: ethernetCsmacd, 24: softwareLoopback}
";

    #[test]
    fn counters_gauges_strings_lookups_and_row_labels() {
        let m = module(IF_MODULE);
        let vb = varbinds(&[
            ("1.3.6.1.2.1.2.2.1.2.1", os(b"lo")),
            ("1.3.6.1.2.1.2.2.1.2.2", os(b"eth0\0\0")),
            ("1.3.6.1.2.1.2.2.1.3.1", SnmpValue::Integer(24)),
            ("1.3.6.1.2.1.2.2.1.3.2", SnmpValue::Integer(99)),
            (
                "1.3.6.1.2.1.2.2.1.6.2",
                os(&[0, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]),
            ),
            ("1.3.6.1.2.1.2.2.1.8.1", SnmpValue::Integer(1)),
            ("1.3.6.1.2.1.2.2.1.8.2", SnmpValue::Integer(2)),
            ("1.3.6.1.2.1.2.2.1.14.2", SnmpValue::Counter32(7)),
            // ifAlias is outside the module's walk: not visible, label empty.
            ("1.3.6.1.2.1.31.1.1.1.18.2", os(b"uplink")),
        ]);
        let (got, skipped) = decode(&m, &vb);
        assert_eq!(
            got,
            [
                r#"ifInErrors{ifAlias="",ifDescr="eth0",ifIndex="2"} 7"#,
                r#"ifOperStatus{ifAlias="",ifDescr="eth0",ifIndex="2"} 2"#,
                r#"ifOperStatus{ifAlias="",ifDescr="lo",ifIndex="1"} 1"#,
                r#"ifPhysAddress{ifIndex="2",ifPhysAddress="00:1A:2B:3C:4D:5E"} 1"#,
                r#"ifType_info{ifIndex="1",ifType="softwareLoopback"} 1"#,
                r#"ifType_info{ifIndex="2",ifType="99"} 1"#,
            ]
        );
        assert_eq!(skipped.count, 0);
        // The rows share one label set across metrics.
        let mut s = Skipped::default();
        let sample = decode_module(&m, &View::of(&m), &vb, None, &mut s);
        let family = |name: &str| sample.families().find(|(m, _)| &*m.name == name).unwrap();
        let oper = &family("ifOperStatus").1[1];
        let errors = &family("ifInErrors").1[0];
        assert!(Arc::ptr_eq(&oper.labels, &errors.labels));
        assert_eq!(family("ifInErrors").0.kind, crate::sample::Kind::Counter);
    }

    #[test]
    fn index_types_and_multi_part_indexes() {
        let m = module(
            "    walk: [1.3.6.1.4.1.9]
    metrics:
    - name: peer
      oid: 1.3.6.1.4.1.9.1
      type: gauge
      help: h
      indexes:
      - {labelname: addrType, type: gauge}
      - {labelname: addr, type: InetAddress}
      - {labelname: name, type: DisplayString}
      - {labelname: mac, type: PhysAddress48}
      - {labelname: fixed, type: OctetString, fixed_size: 2}
      - {labelname: rest, type: DisplayString, implied: true}
    - name: v6
      oid: 1.3.6.1.4.1.9.2
      type: gauge
      help: h
      indexes: [{labelname: a, type: InetAddressIPv6}, {labelname: s, type: EnumAsInfo, enum_values: {3: three}}]
",
        );
        let mut index = vec![
            "1.3.6.1.4.1.9.1",
            "1",
            "1",
            "4",
            "10",
            "0",
            "0",
            "1",
            "2",
            "104",
            "105",
        ];
        index.extend(["1", "2", "3", "4", "5", "6", "255", "1", "120", "121"]);
        let v6: Vec<String> = (0..16).map(|i: u32| i.to_string()).collect();
        let vb = varbinds(&[
            (&index.join("."), SnmpValue::Integer(5)),
            (
                &format!("1.3.6.1.4.1.9.2.{}.3", v6.join(".")),
                SnmpValue::Integer(6),
            ),
        ]);
        let (got, _) = decode(&m, &vb);
        assert_eq!(
            got,
            [
                r#"peer{addr="10.0.0.1",addrType="1",fixed="0xFF01",mac="01:02:03:04:05:06",name="hi",rest="xy"} 5"#,
                r#"v6{a="0001:0203:0405:0607:0809:0A0B:0C0D:0E0F",s="three"} 6"#,
            ]
        );
    }

    #[test]
    fn chained_lookups_and_dropped_indexes() {
        // ent row -> its physical index (a number) -> the name at that index.
        let m = module(
            "    walk: [1.3.6.1.4.1.9]
    metrics:
    - name: sensor
      oid: 1.3.6.1.4.1.9.3
      type: gauge
      help: h
      indexes: [{labelname: sensorIndex, type: gauge}]
      lookups:
      - {labels: [sensorIndex], labelname: physIndex, oid: 1.3.6.1.4.1.9.4, type: gauge}
      - {labels: [physIndex], labelname: physName, oid: 1.3.6.1.4.1.9.5, type: DisplayString}
      - {labels: [], labelname: physIndex}
      - {labels: [], labelname: sensorIndex}
",
        );
        let vb = varbinds(&[
            ("1.3.6.1.4.1.9.3.7", SnmpValue::Integer(42)),
            ("1.3.6.1.4.1.9.4.7", SnmpValue::Integer(1001)),
            ("1.3.6.1.4.1.9.5.1001", os(b"CPU 0")),
            ("1.3.6.1.4.1.9.3.8", SnmpValue::Integer(43)),
        ]);
        let (got, _) = decode(&m, &vb);
        assert_eq!(
            got,
            [
                r#"sensor{physName=""} 43"#,
                r#"sensor{physName="CPU 0"} 42"#
            ]
        );
    }

    #[test]
    fn enums_bits_scale_offset_and_extracts() {
        let m = module(
            "    walk: [1.3.6.1.4.1.9]
    metrics:
    - name: state
      oid: 1.3.6.1.4.1.9.1
      type: EnumAsStateSet
      help: h
      enum_values: {1: ok, 2: warn, 3: crit}
    - name: flags
      oid: 1.3.6.1.4.1.9.2
      type: Bits
      help: h
      enum_values: {0: a, 1: b, 9: j, 20: far}
    - name: temp
      oid: 1.3.6.1.4.1.9.3
      type: gauge
      help: h
      scale: 0.1
      offset: -1
    - name: volts
      oid: 1.3.6.1.4.1.9.4
      type: DisplayString
      help: h
      regex_extracts:
        '': [{regex: '^(\\d+\\.\\d+) V$', value: '$1'}]
        Status: [{regex: 'OK', value: '1'}, {regex: '.*', value: '0'}]
    - name: up
      oid: 1.3.6.1.4.1.9.5
      type: Float
      help: h
",
        );
        let vb = varbinds(&[
            ("1.3.6.1.4.1.9.1.0", SnmpValue::Integer(2)),
            ("1.3.6.1.4.1.9.2.0", os(&[0b1000_0000, 0b0100_0000])),
            ("1.3.6.1.4.1.9.3.0", SnmpValue::Integer(305)),
            ("1.3.6.1.4.1.9.4.0", os(b"12.5 V")),
            (
                "1.3.6.1.4.1.9.5.0",
                SnmpValue::Opaque(vec![0x9f, 0x78, 4, 0x40, 0x20, 0, 0]),
            ),
        ]);
        let (got, _) = decode(&m, &vb);
        assert_eq!(
            got,
            [
                r#"flags{flags="a"} 1"#,
                r#"flags{flags="b"} 0"#,
                r#"flags{flags="far"} 0"#,
                r#"flags{flags="j"} 1"#,
                r#"state{state="crit"} 0"#,
                r#"state{state="ok"} 0"#,
                r#"state{state="warn"} 1"#,
                "temp{} 29.5",
                "up{} 2.5",
                "voltsStatus{} 0",
                "volts{} 12.5",
            ]
        );
        // Bits that are not octets on the wire: skipped and counted.
        let vb = varbinds(&[("1.3.6.1.4.1.9.2.0", SnmpValue::Integer(1))]);
        let (got, skipped) = decode(&m, &vb);
        assert!(got.is_empty());
        assert_eq!(skipped.count, 1);
        assert!(skipped.first.unwrap().contains("BITS"));
    }

    #[test]
    fn dates_and_combined_types() {
        let m = module(
            "    walk: [1.3.6.1.4.1.9]
    metrics:
    - name: when
      oid: 1.3.6.1.4.1.9.1
      type: DateAndTime
      help: h
    - name: built
      oid: 1.3.6.1.4.1.9.2
      type: ParseDateAndTime
      datetime_pattern: '%b %d %Y'
      help: h
    - name: ntp
      oid: 1.3.6.1.4.1.9.3
      type: NTPTimeStamp
      help: h
    - name: peerAddr
      oid: 1.3.6.1.4.1.9.5.1.2
      type: InetAddress
      help: h
      indexes: [{labelname: peer, type: gauge}]
",
        );
        let ntp = 3_913_056_000u32.to_be_bytes();
        let vb = varbinds(&[
            ("1.3.6.1.4.1.9.1.0", os(&[0x07, 0xe8, 2, 29, 13, 14, 15, 6])),
            ("1.3.6.1.4.1.9.2.0", os(b"Jan 02 2024")),
            (
                "1.3.6.1.4.1.9.3.0",
                os(&[ntp[0], ntp[1], ntp[2], ntp[3], 0, 0, 0, 0]),
            ),
            // The type column (…5.1.1) says IPv4 for peer 1 and IPv6 for peer 2.
            ("1.3.6.1.4.1.9.5.1.1.1", SnmpValue::Integer(1)),
            ("1.3.6.1.4.1.9.5.1.1.2", SnmpValue::Integer(2)),
            ("1.3.6.1.4.1.9.5.1.2.1", os(&[192, 0, 2, 1])),
            (
                "1.3.6.1.4.1.9.5.1.2.2",
                os(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            ),
            ("1.3.6.1.4.1.9.5.1.2.3", os(&[1, 2])),
        ]);
        let (got, _) = decode(&m, &vb);
        assert_eq!(
            got,
            [
                "built{} 1704153600",
                "ntp{} 1704067200",
                r#"peerAddr{peer="1",peerAddr="192.0.2.1"} 1"#,
                r#"peerAddr{peer="2",peerAddr="2001:0DB8:0000:0000:0000:0000:0000:0001"} 1"#,
                r#"peerAddr{peer="3",peerAddr="0x0102"} 1"#,
                "when{} 1709212455",
            ]
        );
        let vb = varbinds(&[("1.3.6.1.4.1.9.2.0", os(b"not a date"))]);
        let (got, skipped) = decode(&m, &vb);
        assert!(got.is_empty() && skipped.count == 1);
    }

    #[test]
    fn display_hints_and_shortest_metric_prefix() {
        let m = module(
            "    walk: [1.3.6.1.4.1.9]
    metrics:
    - name: addr
      oid: 1.3.6.1.4.1.9.1
      type: OctetString
      display_hint: 1d.1d.1d.1d
      help: h
    - name: outer
      oid: 1.3.6.1.4.1.9.2
      type: gauge
      help: h
      indexes: [{labelname: i, type: gauge}, {labelname: j, type: gauge}]
    - name: inner
      oid: 1.3.6.1.4.1.9.2.5
      type: gauge
      help: h
      indexes: [{labelname: k, type: gauge}]
",
        );
        let vb = varbinds(&[
            ("1.3.6.1.4.1.9.1.0", os(&[10, 1, 2, 3])),
            ("1.3.6.1.4.1.9.2.5.7", SnmpValue::Integer(1)),
        ]);
        let (got, _) = decode(&m, &vb);
        // 9.2 is the shortest metric prefix of 9.2.5.7, as snmp_exporter matches.
        assert_eq!(
            got,
            [r#"addr{addr="10.1.2.3"} 1"#, r#"outer{i="5",j="7"} 1"#]
        );
    }

    #[test]
    fn filters_choose_the_instances_of_their_targets() {
        let m = module(
            "    walk: [1.3.6.1.2.1.2.2.1.2]
    filters:
    - oid: 1.3.6.1.2.1.2.2.1.7
      targets: [1.3.6.1.2.1.2.2.1.2]
      values: ['^1$']
    metrics:
    - name: ifDescr
      oid: 1.3.6.1.2.1.2.2.1.2
      type: DisplayString
      help: h
      indexes: [{labelname: ifIndex, type: gauge}]
",
        );
        let found = varbinds(&[
            ("1.3.6.1.2.1.2.2.1.7.1", SnmpValue::Integer(1)),
            ("1.3.6.1.2.1.2.2.1.7.2", SnmpValue::Integer(2)),
            ("1.3.6.1.2.1.2.2.1.7.3", SnmpValue::Integer(1)),
        ]);
        let view = filtered_view(&m, &View::of(&m), &found);
        assert!(view.walk.is_empty(), "the target is no longer walked");
        assert_eq!(view.get.len(), 2, "{:?}", view.get);
        let vb = varbinds(&[
            ("1.3.6.1.2.1.2.2.1.2.1", os(b"a")),
            ("1.3.6.1.2.1.2.2.1.2.2", os(b"b")),
            ("1.3.6.1.2.1.2.2.1.2.3", os(b"c")),
        ]);
        let mut skipped = Skipped::default();
        let got = lines(&decode_module(&m, &view, &vb, None, &mut skipped));
        assert_eq!(
            got,
            [
                r#"ifDescr{ifDescr="a",ifIndex="1"} 1"#,
                r#"ifDescr{ifDescr="c",ifIndex="3"} 1"#
            ]
        );
    }
}
