//! What one side measures: the HNSW build (time, memory, size), recall@10
//! of the service's answers per size class, and windows of SearchByVector
//! calls at a fixed concurrency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use affinity::proto::{similarity_service_client::SimilarityServiceClient, SearchByVectorRequest};
use anyhow::{Context, Result};
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::data::{self, Query, K, MODEL};

/// The index as the schema's `create_embedding_indexes` makes it, for 1536
/// dimensions, of `index_type` (`vector` or `halfvec`: the service casts its
/// queries to what `vector_index_dimensions` says).
pub const INDEX_DDL: &str =
    "SELECT format('CREATE INDEX %I ON embeddings USING hnsw ((%s) %s) WHERE dimension = 1536',
        'embeddings_hnsw_1536', embedding_index_expression(1536), index_type || '_cosine_ops')
     FROM vector_index_dimensions WHERE dimension = 1536";

#[derive(Debug, Clone, Copy)]
pub struct Build {
    pub secs: f64,
    /// Peak of the machine's memory in use (MemTotal - MemAvailable) during
    /// the build, above what was in use just before it.
    pub peak_bytes: u64,
    pub index_bytes: u64,
}

fn mem_in_use() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    kb("MemTotal:").saturating_sub(kb("MemAvailable:")) * 1024
}

/// Drops the 1536-dimensional index, sets its type, and builds it again
/// with `maintenance_work_mem` (on Citus, each worker builds its shards'
/// indexes with its own setting).
pub async fn build_index(pool: &PgPool, index_type: &str, mwm: &str) -> Result<Build> {
    sqlx::query("DROP INDEX IF EXISTS embeddings_hnsw_1536")
        .execute(pool)
        .await?;
    sqlx::query("UPDATE vector_index_dimensions SET index_type = $1 WHERE dimension = 1536")
        .bind(index_type)
        .execute(pool)
        .await?;
    let ddl: String = sqlx::query_scalar(INDEX_DDL).fetch_one(pool).await?;
    let mut conn = pool.acquire().await?;
    // A constant from the command line of the benchmark, not a client's.
    sqlx::raw_sql(&format!(
        "SET maintenance_work_mem = '{mwm}'; SET max_parallel_maintenance_workers = 1"
    ))
    .execute(&mut *conn)
    .await?;
    let citus: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(&mut *conn)
            .await?;
    if citus {
        // One shard's index at a time per worker: each build may take
        // maintenance_work_mem (a parallel build reserves it whole).
        sqlx::raw_sql("SET citus.max_adaptive_executor_pool_size = 1")
            .execute(&mut *conn)
            .await?;
    }
    let base = mem_in_use();
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(mem_in_use(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let started = Instant::now();
    let built = sqlx::raw_sql(&ddl).execute(&mut *conn).await;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    built.context("building the HNSW index")?;
    drop(conn);
    sqlx::raw_sql("ANALYZE embeddings").execute(pool).await?;
    Ok(Build {
        secs,
        peak_bytes: peak.load(Ordering::Relaxed).saturating_sub(base),
        index_bytes: index_bytes(pool, citus).await?,
    })
}

/// The index's size: on Citus, the sum of its shards' on the workers.
async fn index_bytes(pool: &PgPool, citus: bool) -> Result<u64> {
    let n: i64 = if citus {
        sqlx::query_scalar(
            "SELECT coalesce(sum(result::bigint), 0)::bigint FROM run_command_on_workers(
                 $$SELECT coalesce(sum(pg_relation_size(oid)), 0) FROM pg_class
                   WHERE relkind = 'i' AND relname LIKE 'embeddings_hnsw_1536%'$$)",
        )
        .fetch_one(pool)
        .await?
    } else {
        sqlx::query_scalar("SELECT pg_relation_size('embeddings_hnsw_1536')")
            .fetch_one(pool)
            .await?
    };
    Ok(u64::try_from(n)?)
}

fn request(org: Uuid, q: &Query, token: &str) -> Result<tonic::Request<SearchByVectorRequest>> {
    let mut req = tonic::Request::new(SearchByVectorRequest {
        organization_id: org.to_string(),
        vector: q.vector.clone(),
        model: MODEL.into(),
        similarity_threshold: -1.0,
        max_results: K as u32,
        entity_types: Vec::new(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

/// Recall@10 of the service's answers per class.
pub async fn recall(
    channel: &Channel,
    token: &str,
    org_ids: &[Uuid],
    queries: &[Query],
    classes: usize,
) -> Result<Vec<f64>> {
    let mut client = SimilarityServiceClient::new(channel.clone());
    let mut found = vec![(0usize, 0usize); classes];
    for q in queries {
        let items = client
            .search_by_vector(request(org_ids[q.org], q, token)?)
            .await
            .context("SearchByVector")?
            .into_inner()
            .items;
        let truth: Vec<Uuid> = q
            .truth
            .iter()
            .map(|&(_, row)| data::entity_id(q.org, row))
            .collect();
        let hits = items
            .iter()
            .filter_map(|i| i.entity.as_ref())
            .filter_map(|e| e.entity_id.parse::<Uuid>().ok())
            .filter(|id| truth.contains(id))
            .count();
        found[q.class].0 += hits;
        found[q.class].1 += truth.len();
    }
    Ok(found
        .iter()
        .map(|&(h, n)| h as f64 / n.max(1) as f64)
        .collect())
}

pub struct Window {
    pub calls: u64,
    pub errors: u64,
    pub secs: f64,
    /// Milliseconds, sorted.
    pub latencies: Vec<f64>,
}

impl Window {
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.secs
    }

    pub fn pct(&self, q: f64) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return f64::NAN;
        }
        self.latencies[((n - 1) as f64 * q).round() as usize]
    }
}

/// `concurrency` callers cycling over `queries` for `secs` (after a warm-up
/// of a quarter of that).
pub async fn window(
    channel: &Channel,
    token: &str,
    org_ids: &[Uuid],
    queries: &[&Query],
    concurrency: usize,
    secs: f64,
) -> Result<Window> {
    let reqs: Arc<Vec<SearchByVectorRequest>> = Arc::new(
        queries
            .iter()
            .map(|q| request(org_ids[q.org], q, token).map(|r| r.into_inner()))
            .collect::<Result<_>>()?,
    );
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let warm_until = Instant::now() + Duration::from_secs_f64(secs / 4.0);
    let end = warm_until + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (reqs, auth) = (reqs.clone(), auth.clone());
        let mut client = SimilarityServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut k = c;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let mut req = tonic::Request::new(reqs[k % reqs.len()].clone());
                req.metadata_mut().insert("authorization", auth.clone());
                let ok = client.search_by_vector(req).await.is_ok();
                if t >= warm_until {
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        errors += 1;
                    }
                }
                k += concurrency;
            }
            (lat, errors)
        }));
    }
    let mut w = Window {
        calls: 0,
        errors: 0,
        secs,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await?;
        w.calls += lat.len() as u64;
        w.errors += errors;
        w.latencies.extend(lat);
    }
    w.latencies.sort_by(f64::total_cmp);
    Ok(w)
}

/// Reads every relation of the schema into the OS page cache, then, with
/// `indexes_in_buffers`, the indexes into shared buffers (pg_prewarm must
/// exist: on Citus, created through the coordinator).
pub async fn prewarm(pool: &PgPool, indexes_in_buffers: bool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    // A Citus worker hides its shards from pg_class unless asked.
    sqlx::raw_sql("SET citus.show_shards_for_app_name_prefixes = '*'")
        .execute(&mut *conn)
        .await?;
    let blocks: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_prewarm(oid, 'read')), 0)::bigint FROM pg_class
         WHERE oid >= 16384 AND relkind IN ('r', 'i', 't') AND pg_relation_size(oid) > 0",
    )
    .fetch_one(&mut *conn)
    .await?;
    eprintln!("  prewarmed {} MB", blocks * 8 / 1024);
    if indexes_in_buffers {
        let blocks: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(pg_prewarm(oid, 'buffer')), 0)::bigint FROM pg_class
             WHERE oid >= 16384 AND relkind = 'i' AND pg_relation_size(oid) > 0",
        )
        .fetch_one(&mut *conn)
        .await?;
        eprintln!(
            "  {} MB of indexes read into shared buffers",
            blocks * 8 / 1024
        );
    }
    Ok(())
}
