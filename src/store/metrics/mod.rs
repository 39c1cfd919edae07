//! Metric points: recording and the schema's `get_metrics_aggregated`.

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, PgExecutor, Row};
use uuid::Uuid;

pub mod percentiles;
pub mod top;

/// One validated point; `recorded_at` None means the database's now().
#[derive(Debug, Clone)]
pub struct NewPoint {
    pub entity_type: String,
    pub entity_id: Uuid,
    pub metric_name: String,
    pub value: f64,
    pub recorded_at: Option<DateTime<Utc>>,
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Points stored by this call (0 for a duplicate).
    pub stored: u64,
    /// The idempotency key had been used: nothing was stored.
    pub duplicate: bool,
}

/// Appends `points` to organization `org`'s time series in one statement
/// (hence one transaction: all or none). With an `idempotency_key`, the
/// key is claimed in the same statement and a key already claimed in the
/// organization stores nothing (a concurrent retry waits for the first to
/// commit, then finds the key taken).
pub async fn record<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    points: &[NewPoint],
    idempotency_key: Option<&str>,
) -> sqlx::Result<Recorded> {
    let mut types = Vec::with_capacity(points.len());
    let mut ids = Vec::with_capacity(points.len());
    let mut names = Vec::with_capacity(points.len());
    let mut values = Vec::with_capacity(points.len());
    let mut times = Vec::with_capacity(points.len());
    for p in points {
        types.push(p.entity_type.as_str());
        ids.push(p.entity_id);
        names.push(p.metric_name.as_str());
        values.push(p.value);
        times.push(p.recorded_at);
    }
    // Unset times take the statement's now(): the clock archive_old_metrics
    // compares against, and one instant for the whole batch.
    let (stored, claimed): (i64, bool) = sql::query_as(
        "WITH claim AS (
             INSERT INTO metric_batch_keys (organization_id, idempotency_key, points)
             SELECT $1, $7, cardinality($2::text[]) WHERE $7 IS NOT NULL
             ON CONFLICT (organization_id, idempotency_key) DO NOTHING
             RETURNING 1
         ), stored AS (
             INSERT INTO time_series_metrics
                 (organization_id, entity_type, entity_id, metric_name, value, recorded_at, source)
             SELECT $1, p.entity_type, p.entity_id, p.metric_name, p.value, coalesce(p.recorded_at, now()), 'api'
             FROM unnest($2::text[], $3::uuid[], $4::text[], $5::float8[], $6::timestamptz[])
                  AS p(entity_type, entity_id, metric_name, value, recorded_at)
             WHERE $7 IS NULL OR EXISTS (SELECT 1 FROM claim)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM stored), ($7 IS NULL OR EXISTS (SELECT 1 FROM claim))",
    )
    .bind(org)
    .bind(&types)
    .bind(&ids)
    .bind(&names)
    .bind(&values)
    .bind(&times)
    .bind(idempotency_key)
    .fetch_one(db)
    .await?;
    Ok(Recorded {
        stored: u64::try_from(stored).unwrap_or_default(),
        duplicate: !claimed,
    })
}

/// Key of the advisory lock that serializes partition creation by this
/// service, so two replicas never race to create the same month.
const PARTITION_LOCK_KEY: i64 = 0x6166_6669_6e69_7479; // "affinity"

/// Makes sure every UTC month of [from, to] has its own partition, so points
/// do not pile up in the default partition (which every new partition must
/// scan, and which archival cannot drop by month).
///
/// Best effort and separate from the insert: it commits on its own and
/// returns Ok(false) without waiting when another session holds the lock
/// or a table lock is not granted within a second (the points then land in
/// the default partition, which is correct, just slower to maintain).
/// Creating a partition takes an ACCESS EXCLUSIVE lock on the table for a
/// moment and moves that month's rows out of the default partition.
pub async fn ensure_partitions(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<bool> {
    // The common case: the months exist; no lock, no transaction.
    // Partition names follow ensure_metric_partitions (time_series_metrics_pYYYYMM, UTC months).
    let missing: bool = sql::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM generate_series(date_trunc('month', $1 AT TIME ZONE 'UTC'),
                                           date_trunc('month', $2 AT TIME ZONE 'UTC'),
                                           interval '1 month') AS m
             WHERE to_regclass('public.time_series_metrics_p' || to_char(m, 'YYYYMM')) IS NULL)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    if !missing {
        return Ok(true);
    }
    let mut tx = conn.begin().await?;
    // A queued ACCESS EXCLUSIVE request blocks every later reader: never wait long.
    sql::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await?;
    let locked: bool = sql::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(false);
    }
    let created: i32 = sql::query_scalar("SELECT ensure_metric_partitions($1, $2)")
        .bind(from)
        .bind(to)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    if created > 0 {
        tracing::info!(created, %from, %to, "created monthly metric partitions");
    }
    Ok(true)
}

/// One bucket of `get_metrics_aggregated`.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub bucket_start: DateTime<Utc>,
    pub sum: f64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub count: i64,
    pub last: f64,
    /// The request's percentiles, in its order (empty when none were asked).
    pub percentiles: Vec<f64>,
}

impl Bucket {
    /// Columns by position, in the order [`aggregated`] selects them; each
    /// value's type is checked (a schema function changed under the service
    /// fails the call instead of decoding garbage).
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        Ok(Bucket {
            bucket_start: row.try_get(0)?,
            sum: row.try_get(1)?,
            avg: row.try_get(2)?,
            min: row.try_get(3)?,
            max: row.try_get(4)?,
            count: row.try_get(5)?,
            last: row.try_get(6)?,
            percentiles: Vec::new(),
        })
    }
}

/// The question `get_metrics_aggregated` answers, validated.
#[derive(Debug, Clone)]
pub struct Aggregation<'a> {
    pub org: Uuid,
    pub entity_type: &'a str,
    pub entity_id: Uuid,
    pub metric_name: &'a str,
    /// 'hour' | 'day' | 'week' | 'month'
    pub granularity: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// An IANA name.
    pub time_zone: &'a str,
}

/// The schema's function itself, so the RPC and SQL callers agree by
/// construction. Oldest bucket first.
pub async fn aggregated<'e>(
    db: impl PgExecutor<'e>,
    q: &Aggregation<'_>,
) -> sqlx::Result<Vec<Bucket>> {
    let rows = sql::query(
        "SELECT g.bucket_start, g.sum, g.avg, g.min, g.max, g.count, g.last
         FROM get_metrics_aggregated($1::text, $2::uuid, $3::text, $4::text,
                                     $5::timestamptz, $6::timestamptz, $7::text, $8::uuid) AS g
         ORDER BY g.bucket_start",
    )
    .bind(q.entity_type)
    .bind(q.entity_id)
    .bind(q.metric_name)
    .bind(q.granularity)
    .bind(q.start)
    .bind(q.end)
    .bind(q.time_zone)
    .bind(q.org)
    .fetch_all(db)
    .await?;
    rows.iter().map(Bucket::from_row).collect()
}
