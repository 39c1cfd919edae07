//! The connection pools: connecting with retry and backoff, logging why;
//! and the calls' pool, which counts its waiters, gives up at once when the
//! database is unreachable, and keeps a warm list (`super::warm`).
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgTransactionManager;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool, Postgres, TransactionManager};

use super::pooler;
use super::reachability::Reachability;
use super::warm::WarmList;

/// Connects to `url`, retrying with exponential backoff (100 ms doubling to
/// 5 s) for as long as the database refuses; a malformed URL fails at once.
pub async fn connect_with_retry(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with_timeout(url, max_connections, None).await
}

/// `url`'s options as every pool of the service has them.
pub fn url_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("the database URL is not a valid PostgreSQL URL: {e}"))?
        .application_name("affinity")
        // Statements are logged by our own spans, never with their parameters.
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5)))
}

/// [`connect_with_retry`] whose connections have `statement_timeout` as their
/// session default (a startup parameter: no extra round trip per call).
pub async fn connect_with_timeout(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new().max_connections(max_connections);
    retrying(pool, direct_options(url, statement_timeout)?).await
}

/// A pool through a transaction-mode pooler at `url` ([`pooled_pool`]).
pub async fn connect_pooled(
    url: &str,
    max_connections: u32,
    types: &'static [&'static str],
) -> anyhow::Result<PgPool> {
    let options = pooler::pooled_options(url_options(url)?);
    retrying(pooled_pool(max_connections, types), options).await
}

/// A pool like the calls' (direct, or behind a pooler when `types` is
/// given), that connects on first use: a read replica may be down at start.
pub fn lazy_pool(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
    types: Option<&'static [&'static str]>,
) -> anyhow::Result<PgPool> {
    let (pool, options) = match types {
        Some(types) => (
            pooled_pool(max_connections, types),
            pooler::pooled_options(url_options(url)?),
        ),
        None => (
            PgPoolOptions::new().max_connections(max_connections),
            direct_options(url, statement_timeout)?,
        ),
    };
    Ok(pool
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options))
}

/// `url`'s options for a direct database: the session settings of every
/// call as startup parameters.
fn direct_options(
    url: &str,
    statement_timeout: Option<Duration>,
) -> anyhow::Result<PgConnectOptions> {
    // JIT compiles a statement whose estimated cost passes a threshold; the
    // service's statements run in milliseconds, and compiling them takes
    // longer than running them (BENCHMARKS.md, analytics).
    let mut options = url_options(url)?.options([("jit", "off".to_string())]);
    if let Some(t) = statement_timeout {
        options = options.options([("statement_timeout", t.as_millis().to_string())]);
    }
    Ok(options)
}

/// A pool behind a transaction-mode pooler ([`super::pooler`]): its
/// connections look up `types` when they connect, and this process's
/// statements are unnamed from now on.
fn pooled_pool(max_connections: u32, types: &'static [&'static str]) -> PgPoolOptions {
    super::sql::use_unnamed_statements();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |conn, _| Box::pin(pooler::resolve_types(conn, types)))
}

async fn retrying(pool: PgPoolOptions, options: PgConnectOptions) -> anyhow::Result<PgPool> {
    let pool = pool.acquire_timeout(Duration::from_secs(10));
    Ok(until_reachable(|| pool.clone().connect_with(options.clone())).await)
}

/// `attempt`'s value once it succeeds, retried with exponential backoff
/// (100 ms doubling to 5 s) for as long as the database cannot be reached.
pub(super) async fn until_reachable<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut tries = 1u32;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(attempt = tries, retry_in_ms = delay.as_millis() as u64, error = %e, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                tries += 1;
            }
        }
    }
}

/// The calls' pool: sqlx's pool, plus a short warm list of connections that
/// just ended a call cleanly, handed to the next call as they are
/// ([`WarmList`]).
///
/// Acquisitions are counted while they wait, for the
/// `affinity_db_pool_waiting` gauge (sqlx does not expose its waiters).
/// Cheap to clone; the state is shared.
#[derive(Clone, Debug)]
pub struct CountedPool {
    pool: PgPool,
    waiting: Arc<AtomicI64>,
    reachability: Reachability,
    warm: Arc<WarmList>,
    /// Behind a transaction pooler: what each call's transaction sets
    /// (every call then runs in one).
    per_call: Option<Arc<str>>,
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
    /// connection when the database is gone. `keep_warm`: whether calls
    /// hand their connections on through the warm list. `per_call`: behind
    /// a transaction pooler, the settings each call's transaction makes
    /// (`pooler::call_settings`). Call within a tokio runtime.
    pub fn new(
        pool: PgPool,
        reachability: Reachability,
        keep_warm: bool,
        per_call: Option<String>,
    ) -> Self {
        // Fewer than all, so that sqlx's pool always has some for the
        // service's background work.
        let warm_max = match keep_warm {
            true => (pool.options().get_max_connections() as usize).saturating_sub(2),
            false => 0,
        };
        CountedPool {
            pool,
            waiting: Default::default(),
            reachability,
            warm: WarmList::new(warm_max),
            per_call: per_call.map(Arc::from),
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

    /// Idle connections now: sqlx's, and the warm list's (idle too, though
    /// checked out of sqlx's pool).
    pub fn idle(&self) -> usize {
        self.pool.num_idle() + self.warm.len()
    }

    /// Open connections in use now (by a call or a job).
    pub fn in_use(&self) -> usize {
        (self.pool.size() as usize).saturating_sub(self.idle())
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
    /// [`CountedPool::acquire`]; in a transaction when the call has a
    /// statement timeout of its own (`timeout_ms`) or the pool is behind a
    /// pooler. It goes back to the warm list only when the call ends it
    /// with [`CallConn::finish`].
    pub async fn acquire_call(&self, timeout_ms: Option<u128>) -> sqlx::Result<CallConn> {
        self.call("BEGIN", timeout_ms, false).await
    }

    /// A second connection for a call that can use one but does not need
    /// it, as [`CountedPool::acquire_call`]: an idle one now, or None
    /// (never waits, never opens one).
    pub async fn try_acquire_call(
        &self,
        timeout_ms: Option<u128>,
    ) -> sqlx::Result<Option<CallConn>> {
        let conn = match self.warm.take(self.reachability.epoch()) {
            Some(conn) => conn,
            None => match self.pool.try_acquire() {
                Some(conn) => conn,
                None => return Ok(None),
            },
        };
        Ok(Some(self.start(conn, "BEGIN", timeout_ms, false).await?))
    }

    /// [`CountedPool::acquire_call`] always in a transaction opened by
    /// `begin` (e.g. `BEGIN ISOLATION LEVEL ...`), committed by
    /// [`CallConn::finish`] and rolled back when the call ends otherwise.
    pub async fn begin_call(
        &self,
        begin: &str,
        timeout_ms: Option<u128>,
    ) -> sqlx::Result<CallConn> {
        self.call(begin, timeout_ms, true).await
    }

    /// A warm connection, else one of sqlx's pool, started as [`Self::start`].
    async fn call(
        &self,
        begin: &str,
        timeout_ms: Option<u128>,
        always: bool,
    ) -> sqlx::Result<CallConn> {
        let conn = match self.warm.take(self.reachability.epoch()) {
            Some(conn) => conn,
            None => self.acquire().await?,
        };
        self.start(conn, begin, timeout_ms, always).await
    }

    /// `conn` as a call's, in a transaction opened by `begin` when
    /// `always`, when the call has a timeout or behind a pooler.
    async fn start(
        &self,
        conn: PoolConnection<Postgres>,
        begin: &str,
        timeout_ms: Option<u128>,
        always: bool,
    ) -> sqlx::Result<CallConn> {
        let call = CallConn {
            conn: Some(conn),
            in_transaction: false,
            pool: self.clone(),
        };
        if !(always || timeout_ms.is_some() || self.per_call.is_some()) {
            return Ok(call);
        }
        // One round trip: BEGIN, then the pooler's settings, then the
        // call's own timeout (SET takes no parameters; the values are
        // numbers computed here).
        let mut statement = begin.to_string();
        if let Some(settings) = &self.per_call {
            statement = format!("{statement}; {settings}");
        }
        if let Some(ms) = timeout_ms {
            statement = format!("{statement}; SET LOCAL statement_timeout = {ms}");
        }
        call.begin(statement).await
    }

    /// Hands the warm connections back to sqlx's pool and closes it.
    pub async fn close(&self) {
        // sqlx's close waits for every connection it handed out.
        self.warm.close();
        self.pool.close().await;
    }

    fn keep_warm(&self, conn: PoolConnection<Postgres>) {
        self.warm.put(conn, self.reachability.epoch());
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
    async fn begin(mut self, begin: String) -> sqlx::Result<CallConn> {
        PgTransactionManager::begin(&mut self, Some(begin.into())).await?;
        self.in_transaction = true;
        Ok(self)
    }

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
