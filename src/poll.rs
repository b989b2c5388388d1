//! One poll of one device: its modules' walk plan run over SNMP (the first
//! GETBULK asks for everything; a longer table is continued by several
//! sessions at once), the varbinds decoded module by module into a
//! [`Sample`]. Also the system group read that discovery uses.
//! Knows nothing of scheduling, caching, HTTP or storage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inventory::{Device, SnmpVersion};
use crate::modules::decode::{decode_module, Skipped, Varbinds, View};
use crate::modules::plan::{plan, session_limits, SYS_UPTIME_INSTANCE};
use crate::modules::{Resolved, WalkPlan};
use crate::polled::PolledDevice;
use crate::sample::{ModuleSample, Sample};
use crate::snmp::{
    AgentParams, Session, SnmpError, SnmpValue, WalkLimits, WalkRequest, WalkState,
    MAX_REQUESTS_PER_WALK,
};

const SYSTEM: [u64; 7] = [1, 3, 6, 1, 2, 1, 1];

/// sysDescr.0 … sysLocation.0
pub fn system_oid(leaf: u64) -> Vec<u64> {
    let mut v = SYSTEM.to_vec();
    v.extend([leaf, 0]);
    v
}

/// Why a poll failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PollError {
    #[error("device {device} has no agent to poll")]
    NoAgent { device: String },
    #[error("polling {device} failed: {source}")]
    Snmp { device: String, source: SnmpError },
}

impl PollError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PollError::NoAgent { .. } => "no_agent",
            PollError::Snmp { source, .. } => source.label(),
        }
    }
}

/// The system group of an agent, as discovery stores it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemInfo {
    pub sys_descr: String,
    pub sys_object_id: Vec<u64>,
    pub sys_name: String,
    pub sys_contact: String,
    pub sys_location: String,
    pub sys_uptime_ticks: u32,
}

/// GETs the system group scalars in one request.
pub async fn read_system(session: &mut Session) -> Result<SystemInfo, SnmpError> {
    let oids: Vec<Vec<u64>> = [1, 2, 3, 4, 5, 6]
        .iter()
        .map(|leaf| system_oid(*leaf))
        .collect();
    let values = session.get(&oids).await?;
    let value = |leaf: u64| {
        values
            .iter()
            .find(|(oid, _)| *oid == system_oid(leaf))
            .map(|(_, v)| v)
    };
    let text = |leaf: u64| value(leaf).and_then(SnmpValue::as_text).unwrap_or_default();
    let sys_object_id = match value(2) {
        Some(SnmpValue::ObjectId(oid)) => oid.clone(),
        _ => Vec::new(),
    };
    Ok(SystemInfo {
        sys_descr: text(1),
        sys_object_id,
        sys_name: text(5),
        sys_contact: text(4),
        sys_location: text(6),
        sys_uptime_ticks: value(3).and_then(SnmpValue::as_u64).unwrap_or(0) as u32,
    })
}

/// What one poll cost on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollStats {
    pub requests: u64,
    /// The agent left a larger GETBULK unanswered and answered this many
    /// varbinds per request (news of this poll; later polls start there).
    pub learned_answer_cap: Option<u32>,
    pub varbinds: u64,
    pub duration: Duration,
}

/// How a poll talks to an agent.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// GETBULK max-repetitions per column, unless a module asks for fewer.
    pub max_repetitions: u32,
    /// Sessions that walk one device's columns at once once the first
    /// request shows the table needs more than one (round trips dominate).
    pub sessions_per_poll: usize,
    /// A poll collecting more varbinds than this fails.
    pub max_varbinds: usize,
}

/// Longest per-request timeout and most retries a module may raise a poll to.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_RETRIES: u32 = 10;

/// Polls `device` once for the modules of `resolved`; `previous` is its
/// last poll, whose unchanged label sets the new sample shares.
pub async fn poll_device(
    device: &Device,
    resolved: &Resolved,
    settings: PollSettings,
    previous: Option<&PolledDevice>,
) -> Result<(Sample, PollStats, Skipped), (PollError, PollStats)> {
    let started = Instant::now();
    let name = device.sys_name.clone();
    let Some(agent) = device.poll_agent() else {
        return Err((PollError::NoAgent { device: name }, PollStats::default()));
    };
    let snmp_error = |source: SnmpError| PollError::Snmp {
        device: device.sys_name.clone(),
        source,
    };
    let params = resolved.plan.params.clone();
    let max_repetitions = params.max_repetitions.unwrap_or(settings.max_repetitions);
    let mut agent_params = match AgentParams::from_agent(agent, max_repetitions) {
        Ok(p) => p,
        Err(source) => return Err((snmp_error(source), PollStats::default())),
    };
    let (timeout, retries) = session_limits(agent_params.timeout, agent_params.retries, &params);
    agent_params.timeout = timeout.min(MAX_TIMEOUT);
    agent_params.retries = retries.min(MAX_RETRIES);
    let limits = WalkLimits {
        allow_nonincreasing_oids: params.allow_nonincreasing_oids,
        max_varbinds: settings.max_varbinds,
    };
    let mut session = Session::new(agent_params);
    let mut stats = PollStats::default();
    let walked = walk_plan(
        &mut session,
        resolved,
        settings.sessions_per_poll,
        limits,
        &mut stats,
    )
    .await;
    stats.requests += session.requests_sent;
    stats.learned_answer_cap = stats.learned_answer_cap.or(session.learned_answer_cap);
    stats.duration = started.elapsed();
    let walked = match walked {
        Ok(w) => w,
        Err(source) => return Err((snmp_error(source), stats)),
    };
    stats.varbinds = walked.all.len() as u64;
    let sys_uptime_ticks = match walked.all.get(&SYS_UPTIME_INSTANCE[..]) {
        Some(SnmpValue::TimeTicks(t)) => Some(*t),
        _ => None,
    };
    let mut skipped = Skipped::default();
    let views = walked.filtered_views.as_ref().unwrap_or(&resolved.views);
    let modules: Vec<ModuleSample> = resolved
        .modules
        .iter()
        .zip(views.iter())
        .map(|(module, view)| {
            let before = previous.and_then(|p| {
                p.sample
                    .modules
                    .iter()
                    .find(|m| Arc::ptr_eq(&m.module, &module.name) || m.module == module.name)
            });
            decode_module(module, view, &walked.all, before, &mut skipped)
        })
        .collect();
    Ok((
        Sample {
            device_id: device.id.clone(),
            device_name: device.sys_name.clone(),
            target: agent.endpoint.target(),
            polled_at_ms: chrono::Utc::now().timestamp_millis(),
            poll_duration_seconds: stats.duration.as_secs_f64(),
            sys_uptime_ticks,
            modules,
        },
        stats,
        skipped,
    ))
}

/// The varbinds of a poll, and the module views its filters chose.
struct Walked {
    all: Varbinds,
    filtered_views: Option<Vec<View>>,
}

/// Requests a poll sends alone, at most, before it considers helper sessions.
const MAX_SOLO_REQUESTS: usize = 16;

/// Runs the plan (after the filters' first walk, when a module has filters).
async fn walk_plan(
    session: &mut Session,
    resolved: &Resolved,
    sessions_per_poll: usize,
    limits: WalkLimits,
    stats: &mut PollStats,
) -> Result<Walked, SnmpError> {
    let mut all = Varbinds::new();
    let mut filtered_views = None;
    let filtered_plan;
    let plan: &WalkPlan = if resolved.filtered {
        let filter_oids: Vec<Vec<u64>> = resolved
            .modules
            .iter()
            .flat_map(|m| m.filters.iter().map(|f| f.oid.to_vec()))
            .collect();
        let request = WalkRequest {
            columns: filter_oids,
            ..Default::default()
        };
        let found = walk(session, &request, sessions_per_poll, limits, stats).await?;
        let found: Varbinds = found.into_iter().collect();
        let views: Vec<View> = resolved
            .modules
            .iter()
            .zip(resolved.views.iter())
            .map(|(m, v)| crate::modules::plan::filtered_view(m, v, &found))
            .collect();
        let pairs: Vec<(&crate::modules::Module, &View)> = resolved
            .modules
            .iter()
            .map(|m| &**m)
            .zip(views.iter())
            .collect();
        filtered_plan = plan(&pairs);
        all.extend(found);
        filtered_views = Some(views);
        &filtered_plan
    } else {
        &resolved.plan
    };
    let request = WalkRequest {
        columns: plan.columns.iter().map(|c| c.to_vec()).collect(),
        scalars: plan.scalars.iter().map(|s| s.to_vec()).collect(),
        gets: plan.gets.iter().map(|g| g.to_vec()).collect(),
    };
    for (oid, value) in walk(session, &request, sessions_per_poll, limits, stats).await? {
        all.insert(oid, value);
    }
    Ok(Walked {
        all,
        filtered_views,
    })
}

/// Walks `request`: the first request asks for everything; a table that
/// needs more is continued by up to `sessions_per_poll` sessions at once,
/// each walking a share of the columns (their requests are counted in `stats`).
async fn walk(
    session: &mut Session,
    request: &WalkRequest,
    sessions_per_poll: usize,
    limits: WalkLimits,
    stats: &mut PollStats,
) -> Result<Vec<(Vec<u64>, SnmpValue)>, SnmpError> {
    let target = session.params().target.clone();
    let mut state = WalkState::new(request, limits);
    session.advance(&mut state, 1).await?;
    // Another session costs a socket and its buffer (on v3 also an engine
    // discovery and key derivation): walk on alone while what is left looks
    // like a request or two; split only a long table.
    if session.params().version != SnmpVersion::V1 {
        for _ in 0..MAX_SOLO_REQUESTS {
            // Until the agent answered, the walk stays on this session: its
            // next request is the smaller try after an unanswered one.
            if state.is_complete()
                || (state.answered()
                    && state.estimated_remaining() > 2 * state.largest_answer().max(1))
            {
                break;
            }
            session.advance(&mut state, 1).await?;
        }
    }
    if !state.is_complete() && sessions_per_poll > 1 {
        let parts = state.split_unfinished(sessions_per_poll);
        let walks = parts.into_iter().map(|(positions, mut part)| {
            let params = session.params().clone();
            async move {
                let mut helper = Session::new(params);
                let result = helper.advance(&mut part, MAX_REQUESTS_PER_WALK).await;
                (
                    positions,
                    part,
                    result,
                    helper.requests_sent,
                    helper.learned_answer_cap,
                )
            }
        });
        let mut failed = None;
        for (positions, part, result, requests, cap) in futures_util::future::join_all(walks).await
        {
            stats.requests += requests;
            stats.learned_answer_cap = stats.learned_answer_cap.or(cap);
            match result {
                Ok(()) if failed.is_none() => state.merge(&positions, part, &target)?,
                Ok(()) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    session.advance(&mut state, MAX_REQUESTS_PER_WALK).await?;
    session.finish(state).await
}
