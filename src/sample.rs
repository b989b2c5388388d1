//! The result of one poll of one device, generic over what was polled: per
//! module, metric families (name, help, counter or gauge) whose series are a
//! label set and a value. The decoder (`modules`) fills it from varbinds;
//! the store keeps it; the renderers write it. Nothing here knows SNMP.
//!
//! Memory matters (ten thousand devices per replica): label names and family
//! descriptions are shared (`Arc`), the series of one table row share one
//! label set, and a series that adds one label of its own (a string, an enum,
//! a bit) points at its row's set instead of copying it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// One label of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    pub name: Arc<str>,
    /// Shared: a row's labels copied into a series' own set cost no allocation.
    pub value: Arc<str>,
}

/// A series' labels, in name order.
#[derive(Debug)]
pub enum LabelSet {
    /// A table row's labels (or none), sorted by name.
    Row(Box<[Label]>),
    /// A row's labels and one more (the metric's own: strings, enums, bits).
    Extended { base: Labels, extra: Label },
}

/// A shared label set: the series of one table row hold one.
pub type Labels = Arc<LabelSet>;

/// The empty label set, for series that need none.
pub static NO_LABELS: std::sync::LazyLock<LabelSet> =
    std::sync::LazyLock::new(|| LabelSet::Row(Box::default()));

impl LabelSet {
    /// A set of `labels`, sorted by name here.
    pub fn row(mut labels: Vec<Label>) -> Labels {
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Arc::new(LabelSet::Row(labels.into_boxed_slice()))
    }

    /// `base` and `extra` (which replaces a label of the same name).
    pub fn extended(base: &Labels, extra: Label) -> Labels {
        match &**base {
            LabelSet::Row(row) if !row.iter().any(|l| l.name == extra.name) => {
                Arc::new(LabelSet::Extended {
                    base: base.clone(),
                    extra,
                })
            }
            _ => {
                let mut all: Vec<Label> = base
                    .iter()
                    .filter(|l| l.name != extra.name)
                    .cloned()
                    .collect();
                all.push(extra);
                LabelSet::row(all)
            }
        }
    }

    /// The labels in name order.
    pub fn iter(&self) -> LabelIter<'_> {
        match self {
            LabelSet::Row(row) => LabelIter {
                row: row.iter(),
                extra: None,
            },
            LabelSet::Extended { base, extra } => match &**base {
                LabelSet::Row(row) => LabelIter {
                    row: row.iter(),
                    extra: Some(extra),
                },
                // `extended` never nests.
                LabelSet::Extended { .. } => unreachable!("extended sets have a row as base"),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.iter().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| &*l.name == name).map(|l| &*l.value)
    }
}

impl PartialEq for LabelSet {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || self.iter().eq(other.iter())
    }
}

impl Eq for LabelSet {}

impl std::hash::Hash for LabelSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for label in self.iter() {
            label.hash(state);
        }
    }
}

/// The labels of a [`LabelSet`] in name order.
pub struct LabelIter<'a> {
    row: std::slice::Iter<'a, Label>,
    extra: Option<&'a Label>,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = &'a Label;

    fn next(&mut self) -> Option<&'a Label> {
        if let Some(extra) = self.extra {
            let before_next = self
                .row
                .as_slice()
                .first()
                .is_none_or(|next| extra.name < next.name);
            if before_next {
                self.extra = None;
                return Some(extra);
            }
        }
        self.row.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.row.len() + usize::from(self.extra.is_some());
        (n, Some(n))
    }
}

impl ExactSizeIterator for LabelIter<'_> {}

/// How a family is typed in the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// What a family is: its name, help text and type.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FamilyMeta {
    pub name: Box<str>,
    pub help: Box<str>,
    pub kind: Kind,
}

/// One series: a label set and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub value: f64,
}

/// The series of one metric name, from one module: a range of the module's series.
#[derive(Debug, Clone, PartialEq)]
struct Family {
    meta: Arc<FamilyMeta>,
    start: u32,
    len: u32,
}

/// What one module gave: its families, whose series lie side by side in one
/// vector (one allocation per module, not one per family).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSample {
    pub module: Arc<str>,
    families: Vec<Family>,
    series: Vec<Series>,
}

impl ModuleSample {
    /// A module's families, in order, each with its series.
    pub fn new(module: Arc<str>, families: Vec<(Arc<FamilyMeta>, Vec<Series>)>) -> ModuleSample {
        let total = families.iter().map(|(_, s)| s.len()).sum();
        let mut out = ModuleSample {
            module,
            families: Vec::with_capacity(families.len()),
            series: Vec::with_capacity(total),
        };
        for (meta, series) in families {
            out.push_family(meta, series);
        }
        out
    }

    /// `series` tagged with the position of their family in `metas`, in
    /// any order (kept within a family).
    pub fn from_tagged(
        module: Arc<str>,
        metas: Vec<Arc<FamilyMeta>>,
        mut series: Vec<(u32, Series)>,
    ) -> ModuleSample {
        series.sort_by_key(|(family, _)| *family);
        let mut families = Vec::with_capacity(metas.len());
        let mut flat = Vec::with_capacity(series.len());
        let mut tagged = series.into_iter().peekable();
        for (position, meta) in metas.into_iter().enumerate() {
            let start = flat.len();
            while let Some((_, one)) = tagged.next_if(|(family, _)| *family as usize == position) {
                flat.push(one);
            }
            families.push(Family {
                meta,
                start: start as u32,
                len: (flat.len() - start) as u32,
            });
        }
        ModuleSample {
            module,
            families,
            series: flat,
        }
    }

    fn push_family(&mut self, meta: Arc<FamilyMeta>, series: Vec<Series>) {
        self.families.push(Family {
            meta,
            start: self.series.len() as u32,
            len: series.len() as u32,
        });
        self.series.extend(series);
    }

    /// Each family with its series, in order.
    pub fn families(&self) -> impl Iterator<Item = (&Arc<FamilyMeta>, &[Series])> + '_ {
        self.families.iter().map(|f| {
            let start = f.start as usize;
            (&f.meta, &self.series[start..start + f.len as usize])
        })
    }

    pub fn family_count(&self) -> usize {
        self.families.len()
    }
}

/// The result of one successful poll of one device.
#[derive(Debug, Clone, PartialEq)]
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
    /// sysUpTime.0 in hundredths of a second, read with every poll (it
    /// times the utilisation histogram and reveals agent restarts).
    pub sys_uptime_ticks: Option<u32>,
    /// Per module, in the device's module order.
    pub modules: Vec<ModuleSample>,
}

impl Sample {
    /// The series of the first family named `name` (modules in order).
    pub fn family(&self, name: &str) -> Option<&[Series]> {
        self.modules
            .iter()
            .flat_map(|m| m.families())
            .find(|(meta, _)| &*meta.name == name)
            .map(|(_, series)| series)
    }

    /// Number of series across modules.
    pub fn series_count(&self) -> usize {
        self.modules.iter().map(|m| m.series.len()).sum()
    }
}

/// Family descriptions read back from the cache share one copy per process
/// (a follower replica holds the results of thousands of devices).
type MetaTable = HashMap<(Box<str>, Kind), Vec<Weak<FamilyMeta>>>;
static METAS: Mutex<Option<MetaTable>> = Mutex::new(None);

/// The shared description `(name, help, kind)`.
pub fn intern_meta(name: &str, help: &str, kind: Kind) -> Arc<FamilyMeta> {
    let mut guard = METAS.lock().expect("metas lock");
    let metas = guard.get_or_insert_with(HashMap::new);
    let entries = metas.entry((name.into(), kind)).or_default();
    if let Some(found) = entries
        .iter()
        .filter_map(Weak::upgrade)
        .find(|m| &*m.help == help)
    {
        return found;
    }
    let meta = Arc::new(FamilyMeta {
        name: name.into(),
        help: help.into(),
        kind,
    });
    entries.retain(|w| w.strong_count() > 0);
    entries.push(Arc::downgrade(&meta));
    if metas.len() > 65_536 {
        metas.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
    }
    meta
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

    #[test]
    fn extended_sets_read_in_name_order_and_compare_by_content() {
        let row = LabelSet::row(vec![label("ifName", "eth0"), label("ifIndex", "1")]);
        let names = |s: &LabelSet| s.iter().map(|l| l.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&row), ["ifIndex", "ifName"]);
        let first = LabelSet::extended(&row, label("ifAlias", "a"));
        let middle = LabelSet::extended(&row, label("ifMtu", "x"));
        let last = LabelSet::extended(&row, label("ifType", "6"));
        assert_eq!(names(&first), ["ifAlias", "ifIndex", "ifName"]);
        assert_eq!(names(&middle), ["ifIndex", "ifMtu", "ifName"]);
        assert_eq!(names(&last), ["ifIndex", "ifName", "ifType"]);
        assert_eq!(last.len(), 3);
        assert_eq!(last.get("ifType"), Some("6"));
        let flat = LabelSet::row(vec![
            label("ifType", "6"),
            label("ifIndex", "1"),
            label("ifName", "eth0"),
        ]);
        assert_eq!(*last, *flat);
        assert!(matches!(*last, LabelSet::Extended { .. }));
        // The same name replaces the row's label; extending an extended set flattens.
        let replaced = LabelSet::extended(&row, label("ifName", "eth9"));
        assert_eq!(replaced.get("ifName"), Some("eth9"));
        assert_eq!(replaced.len(), 2);
        let twice = LabelSet::extended(&last, label("z", "1"));
        assert_eq!(names(&twice), ["ifIndex", "ifName", "ifType", "z"]);
        use std::hash::{BuildHasher, RandomState};
        let h = RandomState::new();
        assert_eq!(h.hash_one(&*last), h.hash_one(&*flat));
    }

    #[test]
    fn metas_are_shared() {
        let a = intern_meta("x_test_meta", "help", Kind::Gauge);
        let b = intern_meta("x_test_meta", "help", Kind::Gauge);
        assert!(Arc::ptr_eq(&a, &b));
        let c = intern_meta("x_test_meta", "other help", Kind::Gauge);
        assert!(!Arc::ptr_eq(&a, &c));
        let d = intern_meta("x_test_meta", "help", Kind::Counter);
        assert!(!Arc::ptr_eq(&a, &d));
    }
}
