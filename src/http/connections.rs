//! The HTTP server's open connections and their cap: which connections have a
//! request in flight and how long the others have been idle, so that a new
//! connection arriving at the cap closes the longest-idle one (idle and
//! half-sent requests cannot crowd out a health check), and the cap itself,
//! lowered to what the descriptor limit leaves after a reserve for SNMP.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The open connections, at most `cap` of them.
pub struct Connections {
    slots: Arc<Semaphore>,
    cap: usize,
    /// By id, so the first idle one found is the oldest idle.
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// One open connection: its requests in flight and when it last went idle.
pub struct Connection {
    id: u64,
    epoch: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `epoch` when it opened or its last request ended.
    idle_since_ms: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
    _slot: OwnedSemaphorePermit,
}

/// Held while a request is in flight (until its response body is sent).
pub struct RequestGuard(Arc<Connection>);

impl Connections {
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn open_count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// A slot for a connection just accepted. At the cap, the longest-idle
    /// connection is told to close (`true` in the result says one was); with
    /// none idle, this waits for a connection to end.
    pub async fn admit(&self) -> (Arc<Connection>, bool) {
        let mut evicted_one = false;
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                evicted_one = self.evict_longest_idle();
                // Closed never: the semaphore lives as long as `self`.
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("connection slots are never closed")
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            _slot: slot,
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, connection.clone());
        }
        (connection, evicted_one)
    }

    /// Forgets a connection that ended (its slot frees when the last `Arc` drops).
    pub fn remove(&self, connection: &Connection) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&connection.id);
        }
    }

    /// Tells the oldest connection with no request in flight to close.
    fn evict_longest_idle(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let victim = open.values().find(|c| {
            c.in_flight.load(Ordering::Acquire) == 0 && !c.evicted.load(Ordering::Relaxed)
        });
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                // A stored permit: the connection sees it even if not yet waiting.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Connection {
    /// Marks a request in flight until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Resolves when the cap needs this connection's slot.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Whether any request has been served on it.
    pub fn has_served(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    /// When this connection is to be closed for idleness: `header_timeout`
    /// after it opened, `idle_timeout` after its last request ended; `None`
    /// while a request is in flight.
    pub fn idle_deadline(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(
            since
                + if self.has_served() {
                    idle_timeout
                } else {
                    header_timeout
                },
        )
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.0;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.idle_since_ms
            .store(c.epoch.elapsed().as_millis() as u64, Ordering::Release);
        c.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Descriptors kept for everything but HTTP connections: SNMP sessions of the
/// polls and discoveries running at once, the Redis pool, files and a margin.
pub fn descriptor_reserve(polls: usize, sessions_per_poll: usize, discoveries: usize) -> usize {
    polls * sessions_per_poll + discoveries + 64 + 128
}

/// The connection cap in force: `requested`, unless the descriptor limit
/// (raised first to its hard limit, as Go programs do) minus `reserve` is
/// lower. Returns the cap and, when lowered, the limit that lowered it.
pub fn connection_cap(requested: usize, reserve: usize) -> (usize, Option<u64>) {
    let limit = raise_descriptor_limit();
    match limit {
        Some(limit) if (limit as usize).saturating_sub(reserve) < requested => {
            ((limit as usize).saturating_sub(reserve).max(8), Some(limit))
        }
        _ => (requested, None),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns the soft limit in force.
fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// Lets a frequent event be logged at most once per period (its counter
/// counts every one).
pub struct LogThrottle {
    last_ms: AtomicU64,
    epoch: Instant,
    period: Duration,
}

impl LogThrottle {
    pub fn new(period: Duration) -> LogThrottle {
        LogThrottle {
            last_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            period,
        }
    }

    /// True for the first event and then at most once per period.
    pub fn due(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= self.period.as_millis() as u64;
        due && self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_is_evicted_not_a_busy_one() {
        let connections = Connections::new(2);
        let (busy, _) = connections.admit().await;
        let (idle, _) = connections.admit().await;
        let _request = busy.begin_request();
        let (third, evicted) = connections.admit_or_timeout().await;
        assert!(evicted, "the idle connection is told to close");
        assert!(third.is_none(), "no slot until the evicted one has closed");
        tokio::time::timeout(Duration::from_millis(100), idle.evicted())
            .await
            .expect("the idle one, not the busy one, is evicted");
        connections.remove(&idle);
        drop(idle);
        let (fourth, _) = tokio::time::timeout(Duration::from_secs(1), connections.admit())
            .await
            .expect("a slot frees when the evicted connection ends");
        assert_eq!(connections.open_count(), 2);
        drop(fourth);
    }

    #[tokio::test]
    async fn with_every_connection_busy_a_new_one_waits() {
        let connections = Connections::new(1);
        let (busy, _) = connections.admit().await;
        let guard = busy.begin_request();
        let (waiting, evicted) = connections.admit_or_timeout().await;
        assert!(!evicted && waiting.is_none());
        drop(guard);
        assert!(busy
            .idle_deadline(Duration::from_secs(1), Duration::from_secs(5))
            .is_some());
        assert!(busy.has_served());
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let connections = Connections::new(4);
        let (c, _) = rt.block_on(connections.admit());
        let header = Duration::from_secs(10);
        let idle = Duration::from_secs(90);
        let fresh = c.idle_deadline(header, idle).unwrap();
        assert!(fresh <= Instant::now() + header);
        let guard = c.begin_request();
        assert!(c.idle_deadline(header, idle).is_none(), "busy: no deadline");
        drop(guard);
        let after = c.idle_deadline(header, idle).unwrap();
        assert!(
            after > Instant::now() + header,
            "after a request the idle timeout applies"
        );
    }

    #[test]
    fn the_log_throttle_lets_one_through_per_period() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert!(throttle.due());
        assert!(!throttle.due());
        assert!(!throttle.due());
    }

    #[test]
    fn the_cap_leaves_the_reserve() {
        let reserve = descriptor_reserve(32, 4, 16);
        assert_eq!(reserve, 32 * 4 + 16 + 192);
        let (cap, lowered) = connection_cap(usize::MAX / 2, reserve);
        let limit = lowered.expect("no descriptor limit is that high") as usize;
        assert_eq!(cap, limit.saturating_sub(reserve).max(8));
        assert_eq!(connection_cap(8, reserve).0, 8);
    }

    impl Connections {
        /// `admit`, giving up after 100 ms (tests only).
        async fn admit_or_timeout(&self) -> (Option<Arc<Connection>>, bool) {
            let evicted = self.slots.available_permits() == 0 && self.evict_longest_idle();
            let admitted = tokio::time::timeout(Duration::from_millis(100), self.admit())
                .await
                .ok()
                .map(|(c, _)| c);
            (admitted, evicted)
        }
    }
}
