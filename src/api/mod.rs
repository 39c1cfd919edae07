//! The gRPC edge: authentication has happened (interceptor); here each
//! capability authorizes, validates and maps, over `crate::store`.

pub mod ai_context;
pub mod maintenance;
pub mod metrics;
pub mod organizations;
pub mod similarity;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};
use tonic::Request;
use uuid::Uuid;

use crate::auth::{self, Principal};
use crate::caches::{MembershipCache, MetricsCache};
use crate::config::Config;
use crate::db::pool::{CallConn, CountedPool};
use crate::db::reachability::Reachability;
use crate::error::{ApiError, ApiResult};
use crate::observability::CacheCounters;
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
    db: OnceLock<Database>,
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
        permission_counters: CacheCounters,
        metrics_counters: CacheCounters,
    ) -> Self {
        let metrics_cache_bytes = config.metrics_cache_mb.saturating_mul(1 << 20);
        ApiState {
            config,
            membership: MembershipCache::with_counters(permission_counters),
            metrics_cache: MetricsCache::new(metrics_cache_bytes, metrics_counters),
            reachability: Reachability::new(),
            db: OnceLock::new(),
        }
    }

    /// Marks the database ready: reads the searchable dimensions.
    pub async fn set_ready(&self, pool: CountedPool) -> anyhow::Result<()> {
        let casts = similarity_store::index_casts(pool.pool()).await?;
        let dimensions = casts.into_iter().map(|c| (c.dimension, c)).collect();
        let _ = self.db.set(Database { pool, dimensions });
        Ok(())
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
    pub async fn conn(&self) -> ApiResult<PoolConnection<Postgres>> {
        Ok(self.pool()?.acquire().await?)
    }

    /// The database connection of a call, taken after authorization (which
    /// may need one of its own). With a client deadline, a transaction whose
    /// `statement_timeout` is the time left, so PostgreSQL stops the work when
    /// the client stops waiting (BEGIN and the setting in one round trip);
    /// without, a plain connection with the pool's default timeout. End it
    /// with [`CallDb::finish`]: a dropped one rolls back.
    pub async fn db<T>(&self, req: &Request<T>) -> ApiResult<CallDb> {
        self.db_until(deadline(req)).await
    }

    /// [`ApiState::db`] with the deadline taken from the request earlier.
    pub async fn db_until(&self, deadline: Option<Deadline>) -> ApiResult<CallDb> {
        let pool = self.pool()?;
        match deadline {
            None => Ok(CallDb(pool.acquire_call().await?)),
            Some(deadline) => {
                let left = deadline
                    .0
                    .saturating_duration_since(tokio::time::Instant::now());
                let ms = left.as_millis();
                if ms == 0 {
                    return Err(ApiError::DeadlineExceeded(
                        "the deadline passed before the call reached the database".into(),
                    ));
                }
                // SET takes no parameters; the value is a number computed here.
                let begin = format!("BEGIN; SET LOCAL statement_timeout = {ms}");
                Ok(CallDb(pool.begin_call(begin).await?))
            }
        }
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

/// The caller, from the request the interceptor authenticated.
pub fn principal<T>(req: &Request<T>) -> ApiResult<Principal> {
    auth::principal(req)
}

/// Only `service_role` may do this.
pub fn require_service(p: &Principal, what: &str) -> ApiResult<()> {
    if p.is_service() {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "{what} needs a service_role token"
        )))
    }
}

/// A required UUID field.
pub fn parse_uuid(field: &str, value: &str) -> ApiResult<Uuid> {
    if value.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    Uuid::parse_str(value)
        .map_err(|_| ApiError::invalid(format!("{field} is not a UUID: {:?}", truncate(value, 64))))
}

/// A required, bounded text field (entity types, metric names, models...).
/// Longest idempotency_key (LogAiContext, RecordMetrics), in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

pub fn required_text<'a>(field: &str, value: &'a str, max_len: usize) -> ApiResult<&'a str> {
    if value.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    if value.len() > max_len {
        return Err(ApiError::invalid(format!(
            "{field} is longer than {max_len} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::invalid(format!("{field} contains a NUL byte")));
    }
    Ok(value)
}

/// A required entity reference: its type (lower snake case) and UUID.
pub fn entity_ref(field: &str, e: Option<&crate::proto::EntityRef>) -> ApiResult<(String, Uuid)> {
    let e = e.ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    Ok((
        entity_type(&format!("{field}.entity_type"), &e.entity_type)?,
        parse_uuid(&format!("{field}.entity_id"), &e.entity_id)?,
    ))
}

/// An entity type: lower snake case, as the contract says.
pub fn entity_type(field: &str, value: &str) -> ApiResult<String> {
    let v = required_text(field, value, 64)?;
    let ok = v.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ApiError::invalid(format!(
            "{field} must be lower snake case, like \"post\""
        )));
    }
    Ok(v.to_string())
}

/// max_results / page sizes: 0 means `default`, more than 1000 is refused.
pub fn limit(field: &str, value: u32, default: u32) -> ApiResult<i64> {
    match value {
        0 => Ok(i64::from(default)),
        v if v > 1000 => Err(ApiError::invalid(format!("{field} is {v}; at most 1000"))),
        v => Ok(i64::from(v)),
    }
}

/// A cosine similarity threshold in [-1, 1].
pub fn threshold(value: f32) -> ApiResult<f64> {
    if !value.is_finite() || !(-1.0..=1.0).contains(&value) {
        return Err(ApiError::invalid(format!(
            "similarity_threshold is {value}; it must be in [-1, 1]"
        )));
    }
    Ok(f64::from(value))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A protobuf timestamp as chrono, refusing out-of-range values.
pub fn timestamp(
    field: &str,
    ts: &prost_types::Timestamp,
) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    // PostgreSQL's timestamptz spans 4713 BC to 294276 AD; keep to years 1..=9999.
    const MIN: i64 = -62_135_596_800; // 0001-01-01
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59
    if ts.seconds < MIN || ts.seconds > MAX || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(ApiError::invalid(format!(
            "{field} is out of range (years 1 to 9999)"
        )));
    }
    chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .ok_or_else(|| ApiError::invalid(format!("{field} is out of range")))
}

pub fn to_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
