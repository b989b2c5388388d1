//! The result of one poll of one device, generic over what was polled: per
//! module, metric families (name, help, counter or gauge) whose series are a
//! label set and a value. The decoder (`modules`) fills it from varbinds;
//! the store keeps it; the renderers write it. Nothing here knows SNMP.
//!
//! Memory matters (ten thousand devices per replica): label names and family
//! descriptions are shared (`Arc`), and the series of one table row share one
//! label set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// One label of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    pub name: Arc<str>,
    /// Shared: a row's labels copied into a series' own set cost no allocation.
    pub value: Arc<str>,
}

/// A series' labels, sorted by name; shared by the series of one table row.
pub type Labels = Arc<[Label]>;

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

/// The value of label `name` in `labels`.
pub fn label_value<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels.iter().find(|l| &*l.name == name).map(|l| &*l.value)
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
