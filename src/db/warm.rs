//! The warm list: connections that just ended a call cleanly, handed to the
//! next call as they are (`AFFINITY_WARM_CONNECTIONS`, on by default).
//!
//! Why: sqlx pings a connection (a round trip to PostgreSQL) when it comes
//! back to its pool and again before handing it out, so a one-query call
//! cost three round trips (BENCHMARKS.md). A connection that has just
//! answered a whole call needs no check. Any other connection (a call that
//! failed or was cancelled mid-way, one left unused for [`WARM_FOR`], one
//! older than the probe's last lost connection) goes back to sqlx's pool,
//! which checks it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use tokio::time::Instant;

/// How long a connection may wait in the warm list before it goes back
/// to sqlx's pool (which checks it before the next use and applies its
/// lifetime limits).
const WARM_FOR: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct WarmList {
    conns: Mutex<Vec<Warm>>,
    /// At most this many connections wait here (0: the list is off).
    max: usize,
    /// Set when the pool closes: nothing goes warm any more.
    closing: AtomicBool,
}

#[derive(Debug)]
struct Warm {
    conn: PoolConnection<Postgres>,
    since: Instant,
    /// The reachability epoch it was kept in.
    epoch: u64,
}

impl WarmList {
    /// A list of at most `max` connections (0: off). Call within a tokio
    /// runtime: a task hands connections left warm too long back to sqlx's
    /// pool.
    pub(super) fn new(max: usize) -> Arc<Self> {
        let list = Arc::new(WarmList {
            conns: Mutex::new(Vec::new()),
            max,
            closing: AtomicBool::new(false),
        });
        if max > 0 {
            tokio::spawn(sweep(Arc::downgrade(&list)));
        }
        list
    }

    /// The most recently kept connection of `epoch` still fresh; stale ones
    /// go back to sqlx's pool (dropped), which checks them.
    pub(super) fn take(&self, epoch: u64) -> Option<PoolConnection<Postgres>> {
        loop {
            let next = self.conns.lock().ok().and_then(|mut w| w.pop())?;
            if next.epoch == epoch && next.since.elapsed() <= WARM_FOR {
                return Some(next.conn);
            }
        }
    }

    /// Keeps `conn` for the next call, unless the list is full, off or
    /// closing (then it goes back to sqlx's pool).
    pub(super) fn put(&self, conn: PoolConnection<Postgres>, epoch: u64) {
        let Ok(mut w) = self.conns.lock() else { return };
        if w.len() < self.max && !self.closing.load(Ordering::SeqCst) {
            w.push(Warm {
                conn,
                since: Instant::now(),
                epoch,
            });
        }
    }

    pub(super) fn len(&self) -> usize {
        self.conns.lock().map_or(0, |w| w.len())
    }

    /// Hands every connection back to sqlx's pool; nothing is kept after.
    pub(super) fn close(&self) {
        // Before the list is emptied: a call ending now cannot refill it.
        self.closing.store(true, Ordering::SeqCst);
        if let Ok(mut w) = self.conns.lock() {
            w.clear();
        }
    }
}

/// Every [`WARM_FOR`], hands connections warm for longer back to sqlx's
/// pool; ends with the list.
async fn sweep(list: Weak<WarmList>) {
    loop {
        tokio::time::sleep(WARM_FOR).await;
        let Some(list) = list.upgrade() else { return };
        let stale: Vec<Warm> = match list.conns.lock() {
            Ok(mut w) => {
                let (keep, stale) = w.drain(..).partition(|c| c.since.elapsed() <= WARM_FOR);
                *w = keep;
                stale
            }
            Err(_) => Vec::new(),
        };
        // Dropped outside the lock: back to sqlx's pool.
        drop(stale);
    }
}
