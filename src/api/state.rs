//! What every handler shares: the configuration, the caches, the pool
//! (once the database is ready), and a call's connection.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sqlx::PgConnection;
use tonic::Request;
use uuid::Uuid;

use crate::auth::Principal;
use crate::caches::{MembershipCache, MetricsCache};
use crate::config::Config;
use crate::db::pool::{CallConn, CountedPool};
use crate::db::reachability::Reachability;
use crate::db::replica::ReplicaState;
use crate::embedding::EmbeddingClient;
use crate::error::{ApiError, ApiResult};
use crate::observability::{CacheCounters, ReadCounters};
use crate::store::organizations::OrgRole;
use crate::store::similarity::{self as similarity_store, IndexCast};
use crate::transport::deadline::Deadline;

/// What every handler shares. The pool is set once the database is reachable
/// and migrated; until then calls get UNAVAILABLE (health says NOT_SERVING).
pub struct ApiState {
    pub config: Config,
    /// Membership roles, kept fresh by the database's change notifications.
    pub membership: MembershipCache,
    /// Metric aggregations, kept fresh by the database's change notifications.
    pub metrics_cache: MetricsCache,
    /// Whether the database answers (a probe's view): calls fail fast with
    /// UNAVAILABLE while it does not.
    pub reachability: Reachability,
    /// The text model's endpoint, when one is configured.
    pub embedder: Option<EmbeddingClient>,
    db: OnceLock<Database>,
    /// The read replica, when one is configured (`super::reads`).
    replica: OnceLock<ReadReplica>,
}

/// A read replica: its pool, the probe's view of it, where reads went.
pub struct ReadReplica {
    pub pool: CountedPool,
    pub state: ReplicaState,
    pub counters: ReadCounters,
}

struct Database {
    pool: CountedPool,
    /// The searchable dimensions, with the cast of each one's HNSW index.
    dimensions: BTreeMap<i32, IndexCast>,
}

impl ApiState {
    /// The state of one server; each cache counts into its counters.
    pub fn new(
        config: Config,
        embedder: Option<EmbeddingClient>,
        permission_counters: CacheCounters,
        metrics_counters: CacheCounters,
    ) -> Self {
        let metrics_cache_bytes = config.metrics_cache_mb.saturating_mul(1 << 20);
        ApiState {
            config,
            membership: MembershipCache::with_counters(permission_counters),
            metrics_cache: MetricsCache::new(metrics_cache_bytes, metrics_counters),
            reachability: Reachability::new(),
            embedder,
            db: OnceLock::new(),
            replica: OnceLock::new(),
        }
    }

    /// Marks the database ready: reads the searchable dimensions.
    pub async fn set_ready(&self, pool: CountedPool) -> anyhow::Result<()> {
        // A call's connection: behind a pooler, statements run in a transaction.
        let mut conn = pool.acquire_call(None).await?;
        let casts = similarity_store::index_casts(&mut *conn).await?;
        conn.finish().await?;
        let dimensions = casts.into_iter().map(|c| (c.dimension, c)).collect();
        let _ = self.db.set(Database { pool, dimensions });
        Ok(())
    }

    /// Sends reads that may lag to `replica` from now on.
    pub fn set_replica(&self, replica: ReadReplica) {
        let _ = self.replica.set(replica);
    }

    /// The read replica, when one is configured.
    pub fn read_replica(&self) -> Option<&ReadReplica> {
        self.replica.get()
    }

    /// The HNSW index cast of a dimension that `check_vector` accepted.
    pub fn index_cast(&self, dimension: i32) -> ApiResult<IndexCast> {
        let db = self
            .db
            .get()
            .ok_or_else(|| ApiError::Unavailable("the service is starting".into()))?;
        db.dimensions.get(&dimension).copied().ok_or_else(|| {
            ApiError::invalid(format!(
                "vectors of {dimension} dimensions cannot be searched"
            ))
        })
    }

    /// The calls' pool: take connections with [`CountedPool::acquire`], so
    /// that waits for one are counted.
    pub fn pool(&self) -> ApiResult<&CountedPool> {
        let pool = self.db.get().map(|d| &d.pool).ok_or_else(|| {
            ApiError::Unavailable("the service is starting: the database is not ready yet".into())
        })?;
        if !self.reachability.is_reachable() {
            return Err(ApiError::database_unavailable());
        }
        Ok(pool)
    }

    /// A connection of the calls' pool, for a lookup of its own (its wait
    /// counted); back in the pool when dropped.
    pub async fn conn(&self) -> ApiResult<CallConn> {
        Ok(self.pool()?.acquire_call(None).await?)
    }

    /// The database connection of a call, taken after authorization (which
    /// may need one of its own). With a client deadline, a transaction whose
    /// `statement_timeout` is the time left, so PostgreSQL stops the work when
    /// the client stops waiting (BEGIN and the setting in one round trip);
    /// without, a plain connection with the pool's default timeout (behind a
    /// transaction pooler, a transaction all the same). End it with
    /// [`CallDb::finish`]: a dropped one rolls back.
    pub async fn db<T>(&self, req: &Request<T>) -> ApiResult<CallDb> {
        self.db_until(deadline(req)).await
    }

    /// [`ApiState::db`] with the deadline taken from the request earlier.
    pub async fn db_until(&self, deadline: Option<Deadline>) -> ApiResult<CallDb> {
        let timeout = timeout_ms(deadline)?;
        Ok(CallDb(self.pool()?.acquire_call(timeout).await?))
    }

    /// A call's connection in a read-only REPEATABLE READ transaction: every
    /// statement sees one snapshot (an export and its feedback, consistent
    /// however long it runs). The deadline as in [`ApiState::db`].
    pub async fn snapshot_db(&self, deadline: Option<Deadline>) -> ApiResult<CallDb> {
        const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        let timeout = timeout_ms(deadline)?;
        Ok(CallDb(self.pool()?.begin_call(BEGIN, timeout).await?))
    }

    /// A second connection for a call that can work on two at once, under
    /// the same deadline: an idle one, or None when the pool has none to
    /// spare (the call then does its work on its first connection).
    pub async fn spare_db<T>(&self, req: &Request<T>) -> ApiResult<Option<CallDb>> {
        let timeout = timeout_ms(deadline(req))?;
        let conn = self.pool()?.try_acquire_call(timeout).await?;
        Ok(conn.map(CallDb))
    }

    /// Refuses a vector that is empty, has a NaN or infinite component, or a
    /// dimension without an index.
    pub fn check_vector(&self, field: &str, v: &[f32]) -> ApiResult<()> {
        if v.is_empty() {
            return Err(ApiError::invalid(format!("{field} is empty")));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ApiError::invalid(format!(
                "{field}[{i}] is NaN or infinite"
            )));
        }
        let dims = &self
            .db
            .get()
            .ok_or_else(|| ApiError::Unavailable("the service is starting".into()))?
            .dimensions;
        if !dims.contains_key(&(v.len() as i32)) {
            let supported: Vec<String> = dims.keys().map(|d| d.to_string()).collect();
            return Err(ApiError::invalid(format!(
                "{field} has {} dimensions; supported: {}",
                v.len(),
                supported.join(", ")
            )));
        }
        Ok(())
    }

    /// Refuses a batch longer than the configured limit.
    pub fn check_batch(&self, field: &str, len: usize) -> ApiResult<()> {
        if len > self.config.max_batch {
            return Err(ApiError::invalid(format!(
                "{field} has {len} items; at most {} per call",
                self.config.max_batch
            )));
        }
        Ok(())
    }

    /// Whether `principal` may act on `org` with at least `role`. A user who
    /// is not a member gets PERMISSION_DENIED whether or not the organization
    /// exists, so ids cannot be probed.
    pub async fn authorize(
        &self,
        principal: &Principal,
        org: Uuid,
        role: OrgRole,
    ) -> ApiResult<()> {
        tracing::Span::current().record("organization", tracing::field::display(org));
        match principal {
            Principal::Service { .. } => Ok(()),
            Principal::User(user) => {
                let held = self.membership.role(self.pool()?, org, *user).await?;
                match held {
                    Some(held) if held >= role => Ok(()),
                    Some(_) => Err(ApiError::PermissionDenied(format!(
                        "this needs the {} role in organization {org}",
                        role.as_str()
                    ))),
                    None => Err(ApiError::PermissionDenied(format!(
                        "you are not a member of organization {org}"
                    ))),
                }
            }
        }
    }
}

/// The client's deadline of a call, if it set one.
pub fn deadline<T>(req: &Request<T>) -> Option<Deadline> {
    req.extensions().get::<Deadline>().copied()
}

/// The time left before a call's deadline, in milliseconds, as the
/// statement timeout of its transaction; None without a deadline (the
/// pool's default timeout applies).
pub(super) fn timeout_ms(deadline: Option<Deadline>) -> ApiResult<Option<u128>> {
    let Some(deadline) = deadline else {
        return Ok(None);
    };
    let left = deadline
        .0
        .saturating_duration_since(tokio::time::Instant::now());
    let ms = left.as_millis();
    if ms == 0 {
        return Err(ApiError::DeadlineExceeded(
            "the deadline passed before the call reached the database".into(),
        ));
    }
    Ok(Some(ms))
}

/// A call's database connection (see [`ApiState::db`]).
pub struct CallDb(CallConn);

impl CallDb {
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.0
    }

    /// Commits the deadline's transaction, if any, and hands the connection
    /// on to the next call as it is (see [`CountedPool::acquire_call`]).
    pub async fn finish(self) -> ApiResult<()> {
        Ok(self.0.finish().await?)
    }
}
