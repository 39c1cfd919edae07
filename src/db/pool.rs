//! The connection pool: connects with retry and backoff, logging why; and
//! the probe that tells whether the database answers right now.
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgTransactionManager;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres, TransactionManager};

/// Connects to `url`, retrying with exponential backoff (100 ms doubling to
/// 5 s) for as long as the database refuses; a malformed URL fails at once.
pub async fn connect_with_retry(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with_timeout(url, max_connections, None).await
}

/// [`connect_with_retry`] whose connections have `statement_timeout` as their
/// session default (a startup parameter: no extra round trip per call).
pub async fn connect_with_timeout(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> anyhow::Result<PgPool> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?
        .application_name("affinity")
        // Statements are logged by our own spans, never with their parameters.
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5));
    if let Some(t) = statement_timeout {
        options = options.options([("statement_timeout", t.as_millis().to_string())]);
    }
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await;
        match pool {
            Ok(pool) => return Ok(pool),
            Err(e) => {
                tracing::warn!(attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// How often the probe pings its connection.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Longest a probe's connect or ping may take before the database counts
/// as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answers right now, as a probe on a connection of
/// its own sees it (see [`Reachability::probe`]). While it does not, calls
/// fail at once with UNAVAILABLE instead of waiting for a pool connection
/// until their deadline (sqlx's pool keeps retrying a server that answers
/// "starting up" or "not accepting connections" until its acquire timeout),
/// and health says NOT_SERVING.
#[derive(Clone, Debug)]
pub struct Reachability {
    tx: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// Bumped whenever the probe loses its connection (the server may have
    /// restarted or ended sessions): connections kept from before are
    /// checked again before another call uses them.
    epoch: std::sync::Arc<AtomicU64>,
}

impl Default for Reachability {
    fn default() -> Self {
        Self::new()
    }
}

impl Reachability {
    /// Reachable until a probe says otherwise.
    pub fn new() -> Self {
        Reachability {
            tx: std::sync::Arc::new(tokio::sync::watch::Sender::new(true)),
            epoch: Default::default(),
        }
    }

    /// Changes when the probe loses its connection.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub fn is_reachable(&self) -> bool {
        *self.tx.borrow()
    }

    /// Follows the changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Resolves once the database is unreachable (at once if it is now).
    pub async fn unreachable(&self) {
        let mut rx = self.tx.subscribe();
        // Err only when the sender is gone, which `self` prevents.
        let _ = rx.wait_for(|reachable| !*reachable).await;
    }

    fn set(&self, reachable: bool, why: Option<&dyn std::fmt::Display>) {
        let changed = self.tx.send_if_modified(|cur| {
            let changed = *cur != reachable;
            *cur = reachable;
            changed
        });
        if changed && reachable {
            tracing::info!("the database answers again: serving");
        } else if changed {
            let error = why.map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(%error, "the database does not answer: calls get UNAVAILABLE until it does");
        }
    }

    /// Keeps one connection to the database (`options`, the pool's) and
    /// pings it every 250 ms. A lost connection is replaced at once (so a
    /// session ended by an administrator is no outage); only when that
    /// fails too is the database unreachable, until a connection succeeds.
    /// Runs until the task is aborted.
    pub async fn probe(self, options: PgConnectOptions) {
        let mut conn: Option<PgConnection> = None;
        loop {
            let alive = match conn.as_mut() {
                Some(c) => matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, c.ping()).await,
                    Ok(Ok(()))
                ),
                None => false,
            };
            if alive {
                self.set(true, None);
            } else {
                self.epoch.fetch_add(1, Ordering::Relaxed);
                conn = None;
                match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options))
                    .await
                {
                    Ok(Ok(c)) => {
                        conn = Some(c);
                        self.set(true, None);
                    }
                    Ok(Err(e)) => self.set(false, Some(&e)),
                    Err(_) => self.set(false, Some(&"connecting timed out")),
                }
            }
            tokio::time::sleep(PING_INTERVAL).await;
        }
    }
}

/// How long a connection may wait in the warm list before it goes back
/// to sqlx's pool (which checks it before the next use and applies its
/// lifetime limits).
const WARM_FOR: Duration = Duration::from_secs(2);

/// The calls' pool: sqlx's pool, plus a short warm list of connections that
/// just ended a call cleanly, handed to the next call as they are.
///
/// Why: sqlx pings a connection (a round trip to PostgreSQL) when it comes
/// back to its pool and again before handing it out, so a one-query call
/// cost three round trips; the pings took about a fifth of the database's
/// and the service's CPU under load (BENCHMARKS.md). A connection that has
/// just answered a whole call needs no check. Any other connection (a call
/// that failed or was cancelled mid-way, one left unused for [`WARM_FOR`],
/// one older than the probe's last lost connection) goes back to sqlx's
/// pool, which checks it.
///
/// Acquisitions are counted while they wait, for the
/// `affinity_db_pool_waiting` gauge (sqlx does not expose its waiters).
/// Cheap to clone; the state is shared.
#[derive(Clone, Debug)]
pub struct CountedPool {
    pool: PgPool,
    waiting: Arc<AtomicI64>,
    reachability: Reachability,
    warm: Arc<Mutex<Vec<Warm>>>,
    /// At most this many connections wait in the warm list, so that sqlx's
    /// pool always has some for the service's background work.
    warm_max: usize,
    /// Set by [`CountedPool::close`]: nothing goes warm any more.
    closing: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct Warm {
    conn: PoolConnection<Postgres>,
    since: Instant,
    epoch: u64,
}

/// Counts one waiter while alive (so a cancelled wait is uncounted too).
struct Waiter<'a>(&'a AtomicI64);

impl<'a> Waiter<'a> {
    fn new(count: &'a AtomicI64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiter(count)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CountedPool {
    /// `reachability`: the probe's verdict, which ends waits for a
    /// connection when the database is gone. Call within a tokio runtime:
    /// a task hands connections left warm too long back to sqlx's pool.
    pub fn new(pool: PgPool, reachability: Reachability) -> Self {
        let warm_max = (pool.options().get_max_connections() as usize).saturating_sub(2);
        let warm: Arc<Mutex<Vec<Warm>>> = Default::default();
        tokio::spawn(sweep(Arc::downgrade(&warm)));
        CountedPool {
            pool,
            waiting: Default::default(),
            reachability,
            warm,
            warm_max,
            closing: Default::default(),
        }
    }

    /// The pool itself (its waits are not counted).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Callers waiting for a connection now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Connections in the warm list now (idle, but checked out of sqlx's pool).
    pub fn warm(&self) -> usize {
        self.warm.lock().map_or(0, |w| w.len())
    }

    /// A connection, or PoolTimedOut (UNAVAILABLE to clients) as soon as
    /// the probe finds the database gone: sqlx's pool would otherwise keep
    /// retrying a server that refuses connections until its acquire
    /// timeout, past the deadline of the call waiting.
    pub async fn acquire(&self) -> sqlx::Result<PoolConnection<Postgres>> {
        let _waiting = Waiter::new(&self.waiting);
        tokio::select! {
            biased;
            conn = self.pool.acquire() => conn,
            () = self.reachability.unreachable() => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// A connection for one call: a warm one when there is one, else as
    /// [`CountedPool::acquire`]. It goes back to the warm list only when
    /// the call ends it with [`CallConn::finish`].
    pub async fn acquire_call(&self) -> sqlx::Result<CallConn> {
        let epoch = self.reachability.epoch();
        let warm = loop {
            let next = self.warm.lock().ok().and_then(|mut w| w.pop());
            match next {
                // Stale ones go back to sqlx's pool (dropped), which checks them.
                Some(w) if w.epoch != epoch || w.since.elapsed() > WARM_FOR => continue,
                other => break other,
            }
        };
        let conn = match warm {
            Some(w) => w.conn,
            None => self.acquire().await?,
        };
        Ok(CallConn {
            conn: Some(conn),
            in_transaction: false,
            pool: self.clone(),
        })
    }

    /// [`CountedPool::acquire_call`] in a transaction opened by `begin`
    /// (e.g. `BEGIN; SET LOCAL ...`), committed by [`CallConn::finish`] and
    /// rolled back when the call ends otherwise.
    pub async fn begin_call(&self, begin: String) -> sqlx::Result<CallConn> {
        let mut conn = self.acquire_call().await?;
        PgTransactionManager::begin(&mut conn, Some(begin.into())).await?;
        conn.in_transaction = true;
        Ok(conn)
    }

    /// Hands the warm connections back to sqlx's pool and closes it.
    pub async fn close(&self) {
        // Before the list is emptied: a call ending now cannot refill it
        // (sqlx's close waits for every connection it handed out).
        self.closing.store(true, Ordering::SeqCst);
        if let Ok(mut w) = self.warm.lock() {
            w.clear();
        }
        self.pool.close().await;
    }

    fn keep_warm(&self, conn: PoolConnection<Postgres>) {
        let Ok(mut w) = self.warm.lock() else { return };
        if w.len() < self.warm_max && !self.closing.load(Ordering::SeqCst) {
            w.push(Warm {
                conn,
                since: Instant::now(),
                epoch: self.reachability.epoch(),
            });
        }
    }
}

/// Every [`WARM_FOR`], hands connections warm for longer back to sqlx's
/// pool; ends with the pool.
async fn sweep(warm: Weak<Mutex<Vec<Warm>>>) {
    loop {
        tokio::time::sleep(WARM_FOR).await;
        let Some(warm) = warm.upgrade() else { return };
        let stale: Vec<Warm> = match warm.lock() {
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

/// The connection of one call (see [`CountedPool::acquire_call`]).
#[derive(Debug)]
pub struct CallConn {
    conn: Option<PoolConnection<Postgres>>,
    in_transaction: bool,
    pool: CountedPool,
}

impl CallConn {
    /// The call is done with the database: commits its transaction if it
    /// has one, and keeps the connection warm for the next call.
    pub async fn finish(mut self) -> sqlx::Result<()> {
        if self.in_transaction {
            PgTransactionManager::commit(&mut self).await?;
            self.in_transaction = false;
        }
        if let Some(conn) = self.conn.take() {
            self.pool.keep_warm(conn);
        }
        Ok(())
    }
}

impl std::ops::Deref for CallConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        // Some until finish() or drop, which consume it.
        self.conn.as_deref().expect("CallConn used after finish")
    }
}

impl std::ops::DerefMut for CallConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("CallConn used after finish")
    }
}

impl Drop for CallConn {
    /// Not finished: an error or a cancelled call. The transaction's
    /// ROLLBACK is queued, and sqlx's pool (which the connection returns
    /// to) sends it and checks the connection before anyone else uses it.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_deref_mut() {
            if self.in_transaction {
                PgTransactionManager::start_rollback(conn);
            }
        }
    }
}
