//! The benchmark's data, loaded by SQL through the production triggers
//! (rollups and digests kept as points arrive, in batches).

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub struct Data {
    pub org: Uuid,
    /// The end of every range asked (a whole hour: cacheable, like a chart's).
    pub end: DateTime<Utc>,
    /// Posts with a point every hour for a year.
    pub year_posts: Vec<Uuid>,
    /// Posts with points every hour of one day in three, for 120 days.
    pub sparse_posts: Vec<Uuid>,
    /// A post with a point every minute for 100 days.
    pub busy: Uuid,
    pub points: i64,
}

/// The ids the loads gave: md5 of `prefix` and a number, as a uuid.
async fn ids(pool: &PgPool, prefix: &str, n: u64) -> Result<Vec<Uuid>> {
    Ok(
        sqlx::query_scalar(
            "SELECT md5($1 || p)::uuid FROM generate_series(0, $2 - 1) p ORDER BY p",
        )
        .bind(prefix)
        .bind(n as i64)
        .fetch_all(pool)
        .await?,
    )
}

async fn insert(
    pool: &PgPool,
    sql: &str,
    org: Uuid,
    end: DateTime<Utc>,
    from: i64,
    to: i64,
) -> Result<()> {
    sqlx::query(sql)
        .bind(org)
        .bind(end)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn load(
    pool: &PgPool,
    org: Uuid,
    posts: u64,
    days: u64,
    year_posts: u64,
) -> Result<Data> {
    let end: DateTime<Utc> = sqlx::query_scalar("SELECT date_trunc('hour', now())")
        .fetch_one(pool)
        .await?;
    sqlx::query("SELECT add_metric_rollup_zone('Europe/Berlin')")
        .execute(pool)
        .await?;
    sqlx::query("SELECT ensure_metric_partitions(now() - interval '400 days', now())")
        .execute(pool)
        .await?;
    // Whole numbers, as counters are; each post's own scale, so that the
    // ranking has a clear order.
    let largest = "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at, source)
        SELECT $1, 'post', md5('top' || p)::uuid, 'likes', floor(random() * (5 + p % 997)),
               $2 - make_interval(hours => d * 24 + h + 1, secs => p % 3600), 'bench'
        FROM generate_series($3::int, $4::int) d, generate_series(0, 23) h, generate_series(0, PLACEHOLDER) p";
    let largest = largest.replace("PLACEHOLDER", &(posts.saturating_sub(1)).to_string());
    for d in 0..days as i64 {
        eprintln!("  largest organization: day {} of {days}", d + 1);
        insert(pool, &largest, org, end, d, d).await?;
    }
    let year = "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at, source)
        SELECT $1, 'post', md5('year' || p)::uuid, 'reach', floor(random() * 1000),
               $2 - make_interval(hours => h + 1, secs => p * 17), 'bench'
        FROM generate_series($3::int, $4::int) h, generate_series(0, PLACEHOLDER) p";
    let year = year.replace("PLACEHOLDER", &(year_posts.saturating_sub(1)).to_string());
    for month in 0..13_i64 {
        eprintln!("  year posts: month {} of 13", month + 1);
        let from = month * 700;
        insert(pool, &year, org, end, from, (from + 699).min(365 * 24 - 1)).await?;
    }
    let sparse = "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at, source)
        SELECT $1, 'post', md5('sparse' || p)::uuid, 'reach', floor(random() * 1000),
               $2 - make_interval(hours => h + 1, secs => p * 17), 'bench'
        FROM generate_series($3::int, $4::int) h, generate_series(0, 99) p
        WHERE (h / 24) % 3 = 0";
    insert(pool, sparse, org, end, 0, 120 * 24 - 1).await?;
    eprintln!("  the busy post");
    let busy = "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at, source)
        SELECT $1, 'post', md5('busy')::uuid, 'latency_ms', round((exp(random() * 6) * 10)::numeric, 3),
               $2 - make_interval(mins => m + 1), 'bench'
        FROM generate_series($3::int, $4::int) m";
    for chunk in 0..10_i64 {
        insert(
            pool,
            busy,
            org,
            end,
            chunk * 14_400,
            chunk * 14_400 + 14_399,
        )
        .await?;
    }
    eprintln!("  vacuum analyze");
    for table in [
        "time_series_metrics",
        "metric_rollups_hourly",
        "metric_rollups_daily",
        "metric_digests_daily",
    ] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(pool)
            .await?;
    }
    // The load's dirty pages written now, not by a checkpoint during a
    // timed phase.
    sqlx::query("CHECKPOINT").execute(pool).await?;
    let points: i64 = sqlx::query_scalar("SELECT count(*) FROM time_series_metrics")
        .fetch_one(pool)
        .await?;
    Ok(Data {
        org,
        end,
        year_posts: ids(pool, "year", year_posts).await?,
        sparse_posts: ids(pool, "sparse", 100).await?,
        busy: sqlx::query_scalar("SELECT md5('busy')::uuid")
            .fetch_one(pool)
            .await?,
        points,
    })
}
