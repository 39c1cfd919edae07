//! GetMetricsAggregated: hourly over 7 days, daily over 90 days, monthly over
//! a year, for ordinary posts (hourly points) and the busy post (many points
//! per hour), against the schema function called directly, and against a
//! plain GROUP BY over the raw points (results must be equal).

use std::sync::Arc;

use affinity::proto::{
    metrics_service_client::MetricsServiceClient, EntityRef, GetMetricsAggregatedRequest,
    Granularity, MetricBucket,
};
use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tonic::metadata::{Ascii, MetadataValue};
use uuid::Uuid;

use crate::drive::{self, compare, op, Op, Row};
use crate::env::request;
use crate::load::busy_post;
use crate::world::{uid, Kind, METRICS};
use crate::Ctx;

pub struct Raw {
    pub scenario: String,
    /// The RPC at concurrency 1 with `cache-control: no-cache`.
    pub fresh: drive::Stats,
    pub buckets: usize,
    pub points: u64,
    /// The RPC's answer equals the raw aggregation's.
    pub equal: Result<(), String>,
    /// At concurrency 1: the RPC, the schema function called directly, and
    /// the raw aggregation.
    pub rpc: drive::Stats,
    pub sql: drive::Stats,
    pub raw: drive::Stats,
}

pub struct Results {
    /// The RPC as clients call it: repeated aggregations are answered from
    /// the service's cache.
    pub rows: Vec<Row>,
    /// The same with `cache-control: no-cache` (every call reads the
    /// database), at concurrency 1 and 8.
    pub fresh_rows: Vec<Row>,
    pub raw: Vec<Raw>,
    /// The service's metrics cache counters over this phase: hit, miss, bypass.
    pub cache: Option<[u64; 3]>,
}

struct Query {
    org: Uuid,
    auth: MetadataValue<Ascii>,
    post: Uuid,
    granularity: Granularity,
    unit: &'static str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    time_zone: &'static str,
}

/// What the RPC's store runs.
const SQL: &str = "SELECT g.bucket_start, g.sum, g.avg, g.min, g.max, g.count, g.last
     FROM get_metrics_aggregated($1::text, $2::uuid, $3::text, $4::text,
                                 $5::timestamptz, $6::timestamptz, $7::text, $8::uuid) AS g
     ORDER BY g.bucket_start";

/// The same answer from the raw points, with nothing precomputed.
const RAW_SQL: &str = "SELECT date_trunc($4, recorded_at, $7) AS bucket_start,
            sum(value), avg(value), min(value), max(value), count(*),
            (array_agg(value ORDER BY recorded_at DESC, id DESC))[1] AS last
     FROM time_series_metrics
     WHERE organization_id = $8 AND entity_type = $1 AND entity_id = $2 AND metric_name = $3
       AND recorded_at >= $5 AND recorded_at < $6
     GROUP BY 1
     ORDER BY 1";

type Bucket = (DateTime<Utc>, f64, f64, f64, f64, i64, f64);

pub async fn run(ctx: &Ctx) -> Result<Results> {
    let w = &ctx.world;
    let mut out = Results {
        rows: Vec::new(),
        fresh_rows: Vec::new(),
        raw: Vec::new(),
        cache: None,
    };
    let counters_before = crate::env::metrics_cache_counters(ctx.service_metrics).await;
    // Ordinary: rotate over the hourly posts (8,760 points a year each).
    let hourly: Vec<(usize, Uuid)> = (0..w.scale.hourly_posts)
        .map(|j| {
            (
                w.org_of_metric_post(j),
                uid(w.seed, Kind::MetricPost, j as u64),
            )
        })
        .collect();
    let per_hour = 3600 / w.scale.busy_step_secs;
    let posts = [
        ("an hourly post".to_string(), hourly),
        (
            format!("the busy post ({per_hour} points/hour)"),
            vec![(0, busy_post(w))],
        ),
    ];
    let shapes = [
        ("hourly over 7 days", Granularity::Hour, "hour", 7, "UTC"),
        (
            "daily over 90 days",
            Granularity::Day,
            "day",
            90,
            "Europe/Berlin",
        ),
        (
            "monthly over a year",
            Granularity::Month,
            "month",
            365,
            "Europe/Berlin",
        ),
    ];
    // The fresh reads run at the levels the targets are judged at.
    let fresh_levels: Vec<usize> = ctx
        .concurrency
        .iter()
        .copied()
        .filter(|&c| c == 1 || c == 8)
        .collect();
    for (post_name, posts) in &posts {
        for &(shape, granularity, unit, days, time_zone) in &shapes {
            let queries = posts
                .iter()
                .map(|&(org, post)| {
                    Ok(Arc::new(Query {
                        org: w.org_id(org),
                        auth: ctx.owner_auth(org)?,
                        post,
                        granularity,
                        unit,
                        start: ctx.t_end - TimeDelta::days(days),
                        end: ctx.t_end,
                        time_zone,
                    }))
                })
                .collect::<Result<Vec<_>>>()?;
            let queries = Arc::new(queries);
            let name = format!("{shape} ({time_zone}), {post_name}");
            let (rpc, sql) = (
                rpc_op(ctx, &queries, false),
                sql_op(&ctx.pool, &queries, SQL),
            );
            let rows = compare(&name, &rpc, Some(&sql), &ctx.concurrency, ctx.timing).await;
            // Every call a cache miss: what the service adds to the database's
            // work when it has to ask.
            let fresh_rpc = rpc_op(ctx, &queries, true);
            let fresh_rows = compare(
                &format!("{name}, fresh reads"),
                &fresh_rpc,
                Some(&sql),
                &fresh_levels,
                ctx.timing,
            )
            .await;
            let fresh = match fresh_rows.iter().find(|r| r.concurrency == 1) {
                Some(r) => r.rpc.clone(),
                None => drive::drive(&fresh_rpc, 1, ctx.timing).await,
            };

            // The raw aggregation, once per scenario at concurrency 1, next
            // to the RPC's latency at concurrency 1.
            let raw = drive::drive(&sql_op(&ctx.pool, &queries, RAW_SQL), 1, ctx.timing).await;
            let (rpc_1, sql_1) = match rows.iter().find(|r| r.concurrency == 1) {
                Some(Row {
                    rpc: r,
                    sql: Some(s),
                    ..
                }) => (r.clone(), s.clone()),
                _ => (
                    drive::drive(&rpc, 1, ctx.timing).await,
                    drive::drive(&sql, 1, ctx.timing).await,
                ),
            };
            let (buckets, points, equal) = check_equal(ctx, &queries[0]).await?;
            eprintln!(
                "  raw aggregation: p50 {:.2} ms vs RPC {:.2} ms (fresh reads {:.2} ms), {buckets} buckets of {points} points, equal: {equal:?}",
                drive::ms(raw.p50),
                drive::ms(rpc_1.p50),
                drive::ms(fresh.p50)
            );
            out.raw.push(Raw {
                scenario: name,
                fresh,
                buckets,
                points,
                equal,
                rpc: rpc_1,
                sql: sql_1,
                raw,
            });
            out.rows.extend(rows);
            out.fresh_rows.extend(fresh_rows);
        }
    }
    let counters_after = crate::env::metrics_cache_counters(ctx.service_metrics).await;
    out.cache = counters_before
        .zip(counters_after)
        .map(|(b, a)| [a[0] - b[0], a[1] - b[1], a[2] - b[2]]);
    Ok(out)
}

fn rpc_request(q: &Query) -> GetMetricsAggregatedRequest {
    GetMetricsAggregatedRequest {
        organization_id: q.org.to_string(),
        entity: Some(EntityRef {
            entity_type: "post".into(),
            entity_id: q.post.to_string(),
        }),
        metric_name: METRICS[0].into(),
        granularity: q.granularity as i32,
        start: Some(crate::timestamp(q.start)),
        end: Some(crate::timestamp(q.end)),
        time_zone: q.time_zone.into(),
        ..Default::default()
    }
}

/// The RPC; `fresh`: with `cache-control: no-cache`.
fn rpc_op(ctx: &Ctx, queries: &Arc<Vec<Arc<Query>>>, fresh: bool) -> Op {
    let (queries, channels) = (queries.clone(), ctx.channels.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let mut client = MetricsServiceClient::new(crate::pick(&channels, i));
        async move {
            let mut req = request(rpc_request(&q), &q.auth);
            if fresh {
                req.metadata_mut()
                    .insert("cache-control", MetadataValue::from_static("no-cache"));
            }
            client.get_metrics_aggregated(req).await?;
            Ok(1)
        }
    })
}

async fn buckets(pool: &PgPool, q: &Query, sql: &str) -> sqlx::Result<Vec<Bucket>> {
    sqlx::query_as(sql)
        .bind("post")
        .bind(q.post)
        .bind(METRICS[0])
        .bind(q.unit)
        .bind(q.start)
        .bind(q.end)
        .bind(q.time_zone)
        .bind(q.org)
        .fetch_all(pool)
        .await
}

fn sql_op(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>, sql: &'static str) -> Op {
    let (queries, pool) = (queries.clone(), pool.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let pool = pool.clone();
        async move {
            buckets(&pool, &q, sql).await?;
            Ok(1)
        }
    })
}

/// The RPC's buckets against the raw aggregation's: same starts and counts,
/// same sums, extremes and last values, averages within rounding.
async fn check_equal(ctx: &Ctx, q: &Query) -> Result<(usize, u64, Result<(), String>)> {
    let mut client = MetricsServiceClient::new(ctx.channels[0].clone());
    let got: Vec<MetricBucket> = client
        .get_metrics_aggregated(request(rpc_request(q), &q.auth))
        .await
        .context("GetMetricsAggregated for the equality check")?
        .into_inner()
        .buckets;
    let want = buckets(&ctx.pool, q, RAW_SQL)
        .await
        .context("the raw aggregation")?;
    let points = want.iter().map(|b| b.5 as u64).sum();
    let equal = compare_buckets(&got, &want);
    Ok((want.len(), points, equal))
}

fn compare_buckets(got: &[MetricBucket], want: &[Bucket]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} buckets, raw has {}", got.len(), want.len()));
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let start = g.bucket_start.map(|t| (t.seconds, t.nanos));
        let want_start = (w.0.timestamp(), w.0.timestamp_subsec_nanos() as i32);
        let same = start == Some(want_start)
            && g.count == w.5 as u64
            && close(g.sum, w.1)
            && close(g.avg, w.2)
            && close(g.min, w.3)
            && close(g.max, w.4)
            && close(g.last, w.6);
        if !same {
            return Err(format!("bucket {i} differs: {g:?} vs raw {w:?}"));
        }
    }
    Ok(())
}
