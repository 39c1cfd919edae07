//! The connection pool: connects with retry and backoff, logging why; and
//! the probe that tells whether the database answers right now.
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres, Transaction};

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
        }
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

/// A pool whose acquisitions are counted while they wait, for the
/// `affinity_db_pool_waiting` gauge (sqlx does not expose its waiters).
/// Cheap to clone; the count is shared.
#[derive(Clone, Debug)]
pub struct CountedPool {
    pool: PgPool,
    waiting: std::sync::Arc<std::sync::atomic::AtomicI64>,
    reachability: Reachability,
}

/// Counts one waiter while alive (so a cancelled wait is uncounted too).
struct Waiter<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> Waiter<'a> {
    fn new(count: &'a std::sync::atomic::AtomicI64) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiter(count)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl CountedPool {
    /// `reachability`: the probe's verdict, which ends waits for a
    /// connection when the database is gone.
    pub fn new(pool: PgPool, reachability: Reachability) -> Self {
        CountedPool {
            pool,
            waiting: Default::default(),
            reachability,
        }
    }

    /// The pool itself (its waits are not counted).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Callers waiting for a connection now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
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

    /// A connection in a transaction opened by `begin` (e.g. `BEGIN; SET
    /// LOCAL ...`).
    pub async fn begin_with(&self, begin: String) -> sqlx::Result<Transaction<'static, Postgres>> {
        let conn = self.acquire().await?;
        // What `Pool::begin_with` does after its own (uncounted) acquire.
        sqlx::Transaction::begin(conn, Some(begin.into())).await
    }
}
