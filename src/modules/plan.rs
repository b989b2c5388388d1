//! The walk plan of a device: what one poll fetches for all of its modules.
//!
//! snmp_exporter walks each module's `walk` subtrees whole, once per module.
//! Here the plan keeps, under each walked subtree, only the OIDs decoding can
//! read (metric columns, lookup columns, the type columns of address-like
//! values), takes the union over the device's modules, drops what another
//! entry already covers, and sorts it into three kinds the SNMP layer packs
//! into as few requests as it can: columns (walked many per GETBULK),
//! scalars (one GETNEXT each, riding as non-repeaters) and GET instances.
//! A module that names a subtree another module also walks costs nothing.

use std::time::Duration;

use std::collections::BTreeMap;
use std::ops::Bound;

use super::decode::{Varbinds, View};
use super::definition::{covered, normalize_subtrees, Module, Oid, WalkParams};
use super::file::MetricType;

/// sysUpTime.0: read by every poll (it times the utilisation histogram and
/// reveals agent restarts), whether or not a module exposes it.
pub const SYS_UPTIME_INSTANCE: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

/// What one poll fetches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalkPlan {
    /// Prefixes walked to their end; sorted, none inside another.
    pub columns: Vec<Oid>,
    /// Objects without index: the first instance under each (`<oid>.0`).
    pub scalars: Vec<Oid>,
    /// Exact instances (module `get`s and sysUpTime.0), not covered above.
    pub gets: Vec<Oid>,
    pub params: WalkParams,
}

impl WalkPlan {
    /// OIDs in the plan (a measure of its size).
    pub fn len(&self) -> usize {
        self.columns.len() + self.scalars.len() + self.gets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An OID decoding may read, found in a module's definitions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Column,
    Scalar,
}

fn module_needs(module: &Module) -> Vec<(&[u64], Need)> {
    let mut needs: Vec<(&[u64], Need)> = Vec::new();
    for metric in &module.metrics {
        let need = if metric.scalar {
            Need::Scalar
        } else {
            Need::Column
        };
        needs.push((&metric.oid, need));
        if let Some(t) = &metric.type_oid {
            needs.push((t, Need::Column));
        }
        for lookup in &metric.lookups {
            if let Some(o) = &lookup.oid {
                needs.push((o, Need::Column));
            }
            if let Some(t) = &lookup.type_oid {
                needs.push((t, Need::Column));
            }
        }
    }
    needs
}

/// The plan for `modules`, each read through its view.
pub fn plan(modules: &[(&Module, &View)]) -> WalkPlan {
    let mut columns: Vec<Oid> = Vec::new();
    let mut scalars: Vec<Oid> = Vec::new();
    let mut gets: Vec<Oid> = vec![SYS_UPTIME_INSTANCE.to_vec().into_boxed_slice()];
    for (module, view) in modules {
        let needs = module_needs(module);
        for subtree in &view.walk {
            for (oid, need) in &needs {
                if oid.starts_with(subtree) {
                    match need {
                        Need::Column => columns.push(oid.to_vec().into_boxed_slice()),
                        Need::Scalar => scalars.push(oid.to_vec().into_boxed_slice()),
                    }
                } else if subtree.starts_with(oid) {
                    // Walked below a metric: walk exactly what was asked.
                    columns.push(subtree.clone());
                }
            }
        }
        gets.extend(view.get.iter().cloned());
    }
    // A scalar with a column under it is walked as a column.
    let mut columns = normalize_subtrees(columns);
    let (promoted, scalars): (Vec<Oid>, Vec<Oid>) = scalars.into_iter().partition(|s| {
        columns
            .iter()
            .any(|c| c.starts_with(s) && c.len() > s.len())
    });
    if !promoted.is_empty() {
        columns.extend(promoted);
        columns = normalize_subtrees(columns);
    }
    let mut scalars: Vec<Oid> = scalars
        .into_iter()
        .filter(|s| !covered(&columns, s))
        .collect();
    scalars.sort();
    scalars.dedup();
    let mut gets: Vec<Oid> = gets
        .into_iter()
        .filter(|g| !covered(&columns, g))
        .filter(|g| {
            // `<scalar>.0` comes with the scalar.
            !(g.last() == Some(&0)
                && scalars
                    .binary_search_by(|s| (**s).cmp(&g[..g.len() - 1]))
                    .is_ok())
        })
        .collect();
    gets.sort();
    gets.dedup();
    WalkPlan {
        columns,
        scalars,
        gets,
        params: combine_params(modules.iter().map(|(m, _)| &m.params)),
    }
}

/// How the walk parameters of several modules combine for one poll: the
/// smallest `max_repetitions` any module asks for (a device that chokes on
/// large answers chokes for every module), the longest `timeout`, the most
/// `retries`, and `allow_nonincreasing_oids` if any module allows it.
pub fn combine_params<'a>(params: impl Iterator<Item = &'a WalkParams>) -> WalkParams {
    let mut out = WalkParams::default();
    for p in params {
        out.max_repetitions = match (out.max_repetitions, p.max_repetitions) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        out.timeout = match (out.timeout, p.timeout) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        out.retries = out.retries.max(p.retries);
        out.allow_nonincreasing_oids |= p.allow_nonincreasing_oids;
    }
    out
}

/// The timeout and retries of a poll: the agent's own, raised to what the
/// device's modules ask for.
pub fn session_limits(
    agent_timeout: Duration,
    agent_retries: u32,
    params: &WalkParams,
) -> (Duration, u32) {
    (
        params
            .timeout
            .map_or(agent_timeout, |t| t.max(agent_timeout)),
        params
            .retries
            .map_or(agent_retries, |r| r.max(agent_retries)),
    )
}

/// A module's view after its dynamic filters. Each filter walked its `oid`;
/// the indexes (last sub-identifier) whose value, read as text, matches one
/// of its regexes are kept, and its targets are then read at those indexes
/// only (no longer walked, fetched with GET). Filters on one target
/// intersect. A filter that found nothing leaves its targets unread.
pub fn filtered_view(module: &Module, view: &View, found: &Varbinds) -> View {
    if module.filters.is_empty() {
        return view.clone();
    }
    let mut allowed: BTreeMap<Oid, Vec<u64>> = BTreeMap::new();
    for filter in &module.filters {
        let range = found.range::<[u64], _>((Bound::Included(&filter.oid[..]), Bound::Unbounded));
        let indexes: Vec<u64> = range
            .take_while(|(oid, _)| oid.starts_with(&filter.oid))
            .filter(|(_, value)| {
                let text = super::value::text(value, Some(MetricType::DisplayString), None);
                filter.values.iter().any(|r| r.is_match(&text))
            })
            .filter_map(|(oid, _)| oid.last().copied())
            .collect();
        for target in &filter.targets {
            allowed
                .entry(target.clone())
                .and_modify(|kept| kept.retain(|i| indexes.contains(i)))
                .or_insert_with(|| indexes.clone());
        }
    }
    let walk: Vec<Oid> = view
        .walk
        .iter()
        .filter(|w| !allowed.contains_key(*w))
        .cloned()
        .collect();
    let mut get: Vec<Oid> = view
        .get
        .iter()
        .filter(|g| !allowed.keys().any(|t| g.starts_with(t)))
        .cloned()
        .collect();
    for (target, indexes) in &allowed {
        for index in indexes {
            let mut instance = target.to_vec();
            instance.push(*index);
            get.push(instance.into_boxed_slice());
        }
    }
    get.sort();
    get.dedup();
    View { walk, get }
}
