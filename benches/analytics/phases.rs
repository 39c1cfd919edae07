//! What is measured: the RPCs (fresh reads with `cache-control: no-cache`,
//! and cached ones beside) against the SQL the service runs and against
//! the same answers computed from the raw points.

use std::sync::Arc;

use affinity::proto::{
    metrics_service_client::MetricsServiceClient, EntityRef, GetMetricsAggregatedRequest,
    GetTopEntitiesRequest, Granularity, MetricBucket, TopBy,
};
use anyhow::{ensure, Result};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::drive::{self, Latency, Op, Pids, Throughput};
use crate::load::Data;

pub struct Client {
    pub channel: Channel,
    pub token: String,
    /// The direct SQL side: as many connections as callers, with the
    /// service's session settings (JIT off).
    pub pool: PgPool,
    /// The same with PostgreSQL's defaults (JIT on), for the raw ranking.
    pub default_pool: PgPool,
    pub pids: Pids,
}

/// One aggregation shape over rotating series.
#[derive(Clone)]
pub struct Shape {
    pub name: &'static str,
    pub granularity: Granularity,
    pub unit: &'static str,
    pub days: i64,
    pub zone: &'static str,
    pub metric: &'static str,
    pub fill_gaps: bool,
    pub percentiles: Vec<f64>,
}

fn request(d: &Data, s: &Shape, post: Uuid) -> GetMetricsAggregatedRequest {
    GetMetricsAggregatedRequest {
        organization_id: d.org.to_string(),
        entity: Some(EntityRef {
            entity_type: "post".into(),
            entity_id: post.to_string(),
        }),
        metric_name: s.metric.into(),
        granularity: s.granularity as i32,
        start: Some(crate::timestamp(d.end - Duration::days(s.days))),
        end: Some(crate::timestamp(d.end)),
        time_zone: s.zone.into(),
        fill_gaps: s.fill_gaps,
        percentiles: s.percentiles.clone(),
    }
}

fn authed<T>(c: &Client, msg: T, fresh: bool) -> Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", c.token).parse()?);
    if fresh {
        req.metadata_mut()
            .insert("cache-control", "no-cache".parse()?);
    }
    Ok(req)
}

pub async fn aggregate(
    c: &Client,
    d: &Data,
    s: &Shape,
    post: Uuid,
    fresh: bool,
) -> Result<Vec<MetricBucket>> {
    let req = authed(c, request(d, s, post), fresh)?;
    Ok(MetricsServiceClient::new(c.channel.clone())
        .get_metrics_aggregated(req)
        .await?
        .into_inner()
        .buckets)
}

/// The RPC over `posts` in turn.
pub fn rpc(c: &Arc<Client>, d: &Arc<Data>, s: &Shape, posts: &Arc<Vec<Uuid>>, fresh: bool) -> Op {
    let (c, d, s, posts) = (c.clone(), d.clone(), s.clone(), posts.clone());
    Arc::new(move |i| {
        let (c, d, s, posts) = (c.clone(), d.clone(), s.clone(), posts.clone());
        Box::pin(async move {
            let b = aggregate(&c, &d, &s, posts[i % posts.len()], fresh).await?;
            ensure!(!b.is_empty(), "no buckets");
            Ok(())
        })
    })
}

/// What the RPC's store runs (the schema function).
pub const STORE_SQL: &str = "SELECT g.bucket_start, g.sum, g.avg, g.min, g.max, g.count, g.last
     FROM get_metrics_aggregated('post', $1, $2, $3, $4, $5, $6, $7) AS g ORDER BY g.bucket_start";

/// The same buckets from the raw points, nothing precomputed.
pub const RAW_SQL: &str =
    "SELECT date_trunc($3, recorded_at, $6) AS b, sum(value), avg(value), min(value), max(value),
            count(*), (array_agg(value ORDER BY recorded_at DESC, id DESC))[1]
     FROM time_series_metrics
     WHERE organization_id = $7 AND entity_type = 'post' AND entity_id = $1 AND metric_name = $2
       AND recorded_at >= $4 AND recorded_at < $5
     GROUP BY 1 ORDER BY 1";

/// Percentiles from the raw points.
pub const RAW_PERCENTILES_SQL: &str = "SELECT date_trunc($3, recorded_at, $6) AS b,
            percentile_cont($8::float8[]) WITHIN GROUP (ORDER BY value)
     FROM time_series_metrics
     WHERE organization_id = $7 AND entity_type = 'post' AND entity_id = $1 AND metric_name = $2
       AND recorded_at >= $4 AND recorded_at < $5
     GROUP BY 1 ORDER BY 1";

/// An aggregation's statement, from this process, over `posts` in turn.
pub fn sql(
    c: &Arc<Client>,
    d: &Arc<Data>,
    s: &Shape,
    posts: &Arc<Vec<Uuid>>,
    statement: &'static str,
) -> Op {
    let (c, d, s, posts) = (c.clone(), d.clone(), s.clone(), posts.clone());
    Arc::new(move |i| {
        let (c, d, s, posts) = (c.clone(), d.clone(), s.clone(), posts.clone());
        Box::pin(async move {
            let mut q = sqlx::query(statement)
                .bind(posts[i % posts.len()])
                .bind(s.metric)
                .bind(s.unit)
                .bind(d.end - Duration::days(s.days))
                .bind(d.end)
                .bind(s.zone)
                .bind(d.org);
            if statement == RAW_PERCENTILES_SQL {
                q = q.bind(s.percentiles.clone());
            }
            let rows = q.fetch_all(&c.pool).await?;
            ensure!(!rows.is_empty(), "no rows");
            Ok(())
        })
    })
}

/// Fresh RPC, direct SQL, raw aggregation and cached RPC of one shape.
pub struct Versus {
    pub shape: &'static str,
    pub fresh: Latency,
    pub sql: Latency,
    pub cached: Latency,
    pub raw: Latency,
    pub fresh_c8: Throughput,
    pub sql_c8: Throughput,
    pub cached_c8: Throughput,
    pub equal: Result<(), String>,
}

pub async fn versus(
    c: &Arc<Client>,
    d: &Arc<Data>,
    s: &Shape,
    posts: &Arc<Vec<Uuid>>,
    secs: f64,
) -> Result<Versus> {
    let (fresh, cached) = (rpc(c, d, s, posts, true), rpc(c, d, s, posts, false));
    let store = sql(c, d, s, posts, STORE_SQL);
    let raw = sql(c, d, s, posts, RAW_SQL);
    let l = drive::interleaved(&[&fresh, &store, &cached], 300).await?;
    let raw_l = drive::interleaved(&[&raw], 20).await?;
    let (sql_c8, fresh_c8) = drive::side_by_side(&store, &fresh, 8, secs, c.pids).await?;
    let cached_c8 = drive::throughput(&cached, 8, secs, c.pids).await?;
    Ok(Versus {
        shape: s.name,
        fresh: l[0],
        sql: l[1],
        cached: l[2],
        raw: raw_l[0],
        fresh_c8,
        sql_c8,
        cached_c8,
        equal: equal_to_raw(c, d, s, posts[0]).await?,
    })
}

type Row = (DateTime<Utc>, f64, f64, f64, f64, i64, f64);

async fn equal_to_raw(c: &Client, d: &Data, s: &Shape, post: Uuid) -> Result<Result<(), String>> {
    let got = aggregate(c, d, s, post, true).await?;
    let want: Vec<Row> = sqlx::query_as(RAW_SQL)
        .bind(post)
        .bind(s.metric)
        .bind(s.unit)
        .bind(d.end - Duration::days(s.days))
        .bind(d.end)
        .bind(s.zone)
        .bind(d.org)
        .fetch_all(&c.pool)
        .await?;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    if got.len() != want.len() {
        return Ok(Err(format!("{} buckets, raw {}", got.len(), want.len())));
    }
    for (g, w) in got.iter().zip(&want) {
        let ok = g.count == w.5 as u64
            && close(g.sum, w.1)
            && close(g.min, w.3)
            && close(g.max, w.4)
            && close(g.last, w.6);
        if !ok {
            return Ok(Err(format!("bucket {}: {g:?} vs raw {w:?}", w.0)));
        }
    }
    Ok(Ok(()))
}

/// The rank error of an answer's percentiles over every bucket (see the
/// test `metrics_percentiles`: how much further the fraction lies from the
/// given value's rank interval than from the exact value's).
pub async fn rank_error(
    c: &Client,
    d: &Data,
    s: &Shape,
    post: Uuid,
    buckets: &[MetricBucket],
) -> Result<f64> {
    let (start, end) = (d.end - Duration::days(s.days), d.end);
    let mut worst: f64 = 0.0;
    for (i, b) in buckets.iter().enumerate() {
        let at = |t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
                .unwrap_or(start)
        };
        let lo = at(&b.bucket_start).max(start);
        let hi = buckets
            .get(i + 1)
            .map_or(end, |n| at(&n.bucket_start))
            .min(end);
        for (&q, &v) in s.percentiles.iter().zip(&b.percentile_values) {
            let (a, z, ea, ez): (f64, f64, f64, f64) = sqlx::query_as(
                "WITH p AS (SELECT value FROM time_series_metrics
                            WHERE organization_id = $1 AND entity_type = 'post' AND entity_id = $2
                              AND metric_name = $3 AND recorded_at >= $4 AND recorded_at < $5),
                      x AS (SELECT percentile_cont($7) WITHIN GROUP (ORDER BY value) AS e, count(*)::float8 AS n FROM p)
                 SELECT count(*) FILTER (WHERE value < $6) / x.n, count(*) FILTER (WHERE value <= $6) / x.n,
                        count(*) FILTER (WHERE value < x.e) / x.n, count(*) FILTER (WHERE value <= x.e) / x.n
                 FROM p CROSS JOIN x GROUP BY x.n",
            )
            .bind(d.org)
            .bind(post)
            .bind(s.metric)
            .bind(lo)
            .bind(hi)
            .bind(v)
            .bind(q)
            .fetch_one(&c.pool)
            .await?;
            let miss = |lo: f64, hi: f64| (lo - q).max(q - hi).max(0.0);
            worst = worst.max(miss(a, z) - miss(ea, ez));
        }
    }
    Ok(worst)
}

/// GetTopEntities (never cached) against a GROUP BY over the raw points.
pub struct Top {
    pub rpc: Latency,
    /// The faster of the GROUP BY with JIT off and with JIT on (below).
    pub raw: Latency,
    pub raw_jit_off: Latency,
    pub raw_jit_on: Latency,
    pub equal: Result<(), String>,
}

pub const RAW_TOP_SQL: &str = "SELECT entity_id, sum(value) AS v FROM time_series_metrics
     WHERE organization_id = $1 AND entity_type = 'post' AND metric_name = 'likes'
       AND recorded_at >= $2 AND recorded_at < $3
     GROUP BY entity_id ORDER BY v DESC, entity_id LIMIT 10";

/// The 7 days before `end`.
pub async fn top(c: &Arc<Client>, d: &Arc<Data>, end: DateTime<Utc>, rounds: usize) -> Result<Top> {
    let start = end - Duration::days(7);
    let ask = {
        let (c, d) = (c.clone(), d.clone());
        move || {
            let (c, d) = (c.clone(), d.clone());
            async move {
                let req = authed(
                    &c,
                    GetTopEntitiesRequest {
                        organization_id: d.org.to_string(),
                        entity_type: "post".into(),
                        metric_name: "likes".into(),
                        by: TopBy::Sum as i32,
                        start: Some(crate::timestamp(start)),
                        end: Some(crate::timestamp(end)),
                        max_results: 10,
                    },
                    true,
                )?;
                let r = MetricsServiceClient::new(c.channel.clone())
                    .get_top_entities(req)
                    .await?
                    .into_inner();
                anyhow::Ok(
                    r.entities
                        .into_iter()
                        .map(|e| (e.entity.map(|e| e.entity_id).unwrap_or_default(), e.value))
                        .collect::<Vec<_>>(),
                )
            }
        }
    };
    let raw_on = |jit: bool| {
        let (c, d) = (c.clone(), d.clone());
        move || {
            let (c, d) = (c.clone(), d.clone());
            async move {
                let pool = if jit { &c.default_pool } else { &c.pool };
                let rows: Vec<(Uuid, f64)> = sqlx::query_as(RAW_TOP_SQL)
                    .bind(d.org)
                    .bind(start)
                    .bind(end)
                    .fetch_all(pool)
                    .await?;
                anyhow::Ok(
                    rows.into_iter()
                        .map(|(e, v)| (e.to_string(), v))
                        .collect::<Vec<_>>(),
                )
            }
        }
    };
    let raw = raw_on(false);
    let got = ask().await?;
    let want = raw().await?;
    let equal = if got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-6)
    {
        Ok(())
    } else {
        Err(format!("{got:?} vs raw {want:?}"))
    };
    let rpc_op: Op = {
        let ask = ask.clone();
        Arc::new(move |_| {
            let ask = ask.clone();
            Box::pin(async move { ask().await.map(|_| ()) })
        })
    };
    let raw_op = |jit: bool| -> Op {
        let raw = raw_on(jit);
        Arc::new(move |_| {
            let raw = raw.clone();
            Box::pin(async move { raw().await.map(|_| ()) })
        })
    };
    let l = drive::interleaved(&[&rpc_op, &raw_op(false), &raw_op(true)], rounds).await?;
    Ok(Top {
        rpc: l[0],
        raw: if l[1].p50 <= l[2].p50 { l[1] } else { l[2] },
        raw_jit_off: l[1],
        raw_jit_on: l[2],
        equal,
    })
}
