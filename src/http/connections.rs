//! The HTTP server's open connections and their cap: which connections have a
//! request being handled, which are still receiving a request's body, and
//! how long the others have been idle, so that a new connection arriving at
//! the cap closes the longest-idle one — or, with none idle, the one waiting
//! longest for a body (idle, half-sent and slow-body clients cannot crowd
//! out a health check) — and the cap itself, lowered to what the descriptor
//! limit leaves after a reserve for SNMP.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The open connections, at most `cap` of them.
pub struct Connections {
    slots: Arc<Semaphore>,
    cap: usize,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// Signalled when a request ends: a connection may have become evictable.
    went_idle: Arc<Notify>,
}

/// One open connection: its requests by phase and when it last went idle.
pub struct Connection {
    id: u64,
    epoch: Instant,
    /// Requests whose body is still arriving (evictable, after idle ones).
    reading: AtomicUsize,
    /// Requests being handled or answered (never evicted).
    handling: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `epoch` when it opened or its last request ended.
    idle_since_ms: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
    went_idle: Arc<Notify>,
    _slot: OwnedSemaphorePermit,
}

/// Held while a request is in flight (until its response body is sent).
pub struct RequestGuard {
    connection: Arc<Connection>,
    phase: RequestPhase,
}

/// Moves a request from receiving its body to being handled
/// ([`RequestPhase::handling`]); travels with the request (an extension).
#[derive(Clone)]
pub struct RequestPhase(Arc<(Arc<Connection>, AtomicBool)>);

impl RequestPhase {
    /// The body has arrived: from now on the connection is busy, not evictable.
    pub fn handling(&self) {
        let (connection, handling) = &*self.0;
        if !handling.swap(true, Ordering::AcqRel) {
            connection.handling.fetch_add(1, Ordering::AcqRel);
            connection.reading.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            went_idle: Arc::new(Notify::new()),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn open_count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// A slot for a connection just accepted. At the cap, the longest-idle
    /// connection is told to close (the count of those told is returned);
    /// with none evictable, this waits until a connection closes or one
    /// becomes evictable.
    pub async fn admit(&self) -> (Arc<Connection>, usize) {
        let mut evicted = 0;
        let slot = loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                break slot;
            }
            let went_idle = self.went_idle.notified();
            tokio::pin!(went_idle);
            went_idle.as_mut().enable();
            if self.evict_one() {
                evicted += 1;
                // Its slot frees when it has closed.
                match self.slots.clone().acquire_owned().await {
                    Ok(slot) => break slot,
                    Err(_) => continue,
                }
            }
            tokio::select! {
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => break slot,
                    Err(_) => continue,
                },
                _ = went_idle => {}
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            epoch: self.epoch,
            reading: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            went_idle: self.went_idle.clone(),
            _slot: slot,
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, connection.clone());
        }
        (connection, evicted)
    }

    /// Forgets a connection that ended (its slot frees when the last `Arc` drops).
    pub fn remove(&self, connection: &Connection) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&connection.id);
        }
    }

    /// Tells one connection to close: the longest idle, else the one
    /// waiting longest for a request body; never one handling a request.
    fn evict_one(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let candidates = open.values().filter(|c| {
            c.handling.load(Ordering::Acquire) == 0 && !c.evicted.load(Ordering::Relaxed)
        });
        // Idle ones first (false < true), then the longest idle or waiting.
        let victim = candidates.min_by_key(|c| {
            (
                c.reading.load(Ordering::Acquire) > 0,
                c.idle_since_ms.load(Ordering::Acquire),
            )
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
    /// Marks a request in flight (receiving its body) until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.reading.fetch_add(1, Ordering::AcqRel);
        RequestGuard {
            connection: self.clone(),
            phase: RequestPhase(Arc::new((self.clone(), AtomicBool::new(false)))),
        }
    }

    /// Resolves when the cap needs this connection's slot.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Whether any request has been served on it.
    pub fn has_served(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    fn busy(&self) -> bool {
        self.reading.load(Ordering::Acquire) + self.handling.load(Ordering::Acquire) > 0
    }

    /// When this connection is to be closed for idleness: `header_timeout`
    /// after it opened, `idle_timeout` after its last request ended; `None`
    /// while a request is in flight.
    pub fn idle_deadline(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<Instant> {
        if self.busy() {
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

impl RequestGuard {
    /// The handle that marks the body received (see [`RequestPhase`]).
    pub fn phase(&self) -> RequestPhase {
        self.phase.clone()
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.connection;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.idle_since_ms
            .store(c.epoch.elapsed().as_millis() as u64, Ordering::Release);
        if self.phase.0 .1.load(Ordering::Acquire) {
            c.handling.fetch_sub(1, Ordering::AcqRel);
        } else {
            c.reading.fetch_sub(1, Ordering::AcqRel);
        }
        c.went_idle.notify_waiters();
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

    /// `admit`, giving up after 100 ms: `None` when it would still wait.
    async fn admit_soon(connections: &Connections) -> Option<(Arc<Connection>, usize)> {
        tokio::time::timeout(Duration::from_millis(100), connections.admit())
            .await
            .ok()
    }

    async fn is_evicted(c: &Connection) -> bool {
        tokio::time::timeout(Duration::from_millis(50), c.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_is_evicted_not_a_busy_one() {
        let connections = Connections::new(3);
        let (used_later, _) = connections.admit().await;
        let (idle_longest, _) = connections.admit().await;
        let (busy, _) = connections.admit().await;
        let request = busy.begin_request();
        request.phase().handling();
        // Opened first, but used since: idle for less time than the second.
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(used_later.begin_request());
        assert!(
            admit_soon(&connections).await.is_none(),
            "no slot until one closes"
        );
        assert!(
            is_evicted(&idle_longest).await,
            "the longest idle is told to close"
        );
        assert!(!is_evicted(&used_later).await && !is_evicted(&busy).await);
        connections.remove(&idle_longest);
        drop(idle_longest);
        let (_fourth, _) = admit_soon(&connections)
            .await
            .expect("a slot once it closed");
        assert_eq!(connections.open_count(), 3);
        drop(request);
    }

    #[tokio::test]
    async fn a_connection_waiting_for_a_body_goes_before_a_busy_one_after_idle_ones() {
        let connections = Connections::new(2);
        let (slow_body, _) = connections.admit().await;
        let (busy, _) = connections.admit().await;
        let _reading = slow_body.begin_request();
        let handled = busy.begin_request();
        handled.phase().handling();
        assert!(admit_soon(&connections).await.is_none());
        assert!(
            is_evicted(&slow_body).await,
            "the one still receiving a body is evicted"
        );
        assert!(!is_evicted(&busy).await);
    }

    #[tokio::test]
    async fn a_new_connection_waiting_at_the_cap_evicts_one_that_goes_idle_later() {
        let connections = Arc::new(Connections::new(1));
        let (busy, _) = connections.admit().await;
        let request = busy.begin_request();
        request.phase().handling();
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!is_evicted(&busy).await, "busy: not evicted");
        drop(request);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), busy.evicted())
                .await
                .is_ok(),
            "evicted once idle"
        );
        connections.remove(&busy);
        drop(busy);
        let (_, evicted) = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("admitted")
            .unwrap();
        assert_eq!(evicted, 1);
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
        guard.phase().handling();
        assert!(c.idle_deadline(header, idle).is_none(), "busy: no deadline");
        drop(guard);
        let after = c.idle_deadline(header, idle).unwrap();
        assert!(
            after > Instant::now() + header,
            "after a request the idle timeout applies"
        );
        assert!(c.has_served());
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
}
