//! The data of the pooler and replica benchmarks and their measured
//! windows (their reports are their own).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use affinity::proto;
use anyhow::Result;
use sqlx::PgPool;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The pooler benchmark's: straight to PostgreSQL, through PgBouncer.
    Direct,
    Pooled,
    /// The replica benchmark's: every read on the primary, or reads on a
    /// streaming replica too.
    PrimaryOnly,
    WithReplica,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Direct => "direct",
            Side::Pooled => "pgbouncer",
            Side::PrimaryOnly => "primary only",
            Side::WithReplica => "with replica",
        }
    }
}

/// The calls a window makes, in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// SearchByVector, GetMetricsAggregated (hourly over 7 days,
    /// `cache-control: no-cache`), ListMembers, RecordMetrics (one point).
    Pooler,
    /// Reads that may go to a replica: SearchByVector, GetMetricsAggregated
    /// (hourly up to now: never cached), ListMembers, GetTopEntities (likes
    /// over 7 days, top 10).
    Reads,
}

/// A window's callers and how long they call.
pub struct Load {
    pub concurrency: usize,
    pub secs: f64,
    pub mix: Mix,
}

/// What the calls ask about.
pub struct Data {
    org: Uuid,
    token: String,
    service: String,
    posts: Vec<Uuid>,
}

const DIM: usize = 384;

fn vector(seed: u64) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((seed as f32 + 1.0) * (i as f32 + 1.0) * 0.618).sin())
        .collect()
}

fn post(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

fn authed<T>(msg: T, token: &str) -> Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

/// 2,000 embeddings, 50 posts with an hourly point for 7 days, 20 members.
pub async fn seed(channel: &Channel, org: Uuid, token: &str) -> Result<Data> {
    let secret = crate::service::SECRET.as_bytes();
    let service = affinity::auth::mint(secret, Uuid::new_v4(), "service_role", 24 * 3600)?;
    let mut sim = proto::similarity_service_client::SimilarityServiceClient::new(channel.clone());
    for batch in 0..4u64 {
        let embeddings = (0..500u64)
            .map(|i| proto::EmbeddingRecord {
                entity: post(Uuid::new_v4()),
                vector: vector(batch * 500 + i),
                model: "bench".into(),
            })
            .collect();
        let req = proto::UpsertEmbeddingsRequest {
            organization_id: org.to_string(),
            embeddings,
        };
        sim.upsert_embeddings(authed(req, &service)?).await?;
    }
    let posts: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut met = proto::metrics_service_client::MetricsServiceClient::new(channel.clone());
    let now = chrono::Utc::now();
    for p in &posts {
        let points = (0..168)
            .map(|h| proto::MetricPoint {
                entity: post(*p),
                metric_name: "likes".into(),
                value: h as f64,
                recorded_at: Some(prost_types::Timestamp {
                    seconds: (now - chrono::Duration::hours(h)).timestamp(),
                    nanos: 0,
                }),
            })
            .collect();
        let req = proto::RecordMetricsRequest {
            organization_id: org.to_string(),
            idempotency_key: String::new(),
            points,
        };
        met.record_metrics(authed(req, &service)?).await?;
    }
    let mut orgs =
        proto::organization_service_client::OrganizationServiceClient::new(channel.clone());
    for _ in 0..20 {
        let req = proto::PutMemberRequest {
            organization_id: org.to_string(),
            user_id: Uuid::new_v4().to_string(),
            role: proto::Role::Viewer as i32,
        };
        orgs.put_member(authed(req, &service)?).await?;
    }
    Ok(Data {
        org,
        token: token.to_string(),
        service,
        posts,
    })
}

/// The processes whose CPU a window counts.
pub struct Pids {
    pub services: Vec<u32>,
    /// PgBouncer, on the pooled side.
    pub bouncer: Option<u32>,
    /// The primary's, and the replica's when there is one.
    pub postmasters: Vec<u32>,
}

/// CPU seconds so far: the services, PgBouncer, PostgreSQL, the benchmark.
fn cpu(p: &Pids) -> [f64; 4] {
    use crate::procfs::{cpu_secs, postgres_cpu_secs};
    [
        p.services.iter().filter_map(|&pid| cpu_secs(pid)).sum(),
        p.bouncer.and_then(cpu_secs).unwrap_or(0.0),
        p.postmasters
            .iter()
            .filter_map(|&pid| postgres_cpu_secs(pid))
            .sum(),
        cpu_secs(std::process::id()).unwrap_or(0.0),
    ]
}

/// One side's measured window.
pub struct Window {
    pub side: Side,
    pub calls: u64,
    pub errors: u64,
    pub secs: f64,
    /// Milliseconds, sorted.
    pub latencies: Vec<f64>,
    pub peak_connections: i64,
    /// CPU milliseconds per call: the services, PgBouncer, PostgreSQL, the
    /// benchmark's callers.
    pub cpu_ms: [f64; 4],
}

impl Window {
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.secs
    }
}

fn week_ago() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 7 * 24 * 3600,
        nanos: 0,
    })
}

/// The `k`th call of a caller: one of four, each reaching the database.
async fn call(channel: &Channel, data: &Data, mix: Mix, k: u64) -> Result<()> {
    let org = data.org.to_string();
    match (mix, k % 4) {
        (_, 0) => {
            let req = proto::SearchByVectorRequest {
                organization_id: org,
                vector: vector(k % 2000),
                max_results: 10,
                ..Default::default()
            };
            proto::similarity_service_client::SimilarityServiceClient::new(channel.clone())
                .search_by_vector(authed(req, &data.token)?)
                .await?;
        }
        (_, 1) => {
            let req = proto::GetMetricsAggregatedRequest {
                organization_id: org,
                entity: post(data.posts[(k as usize / 4) % data.posts.len()]),
                metric_name: "likes".into(),
                granularity: proto::Granularity::Hour as i32,
                start: week_ago(),
                ..Default::default()
            };
            let mut req = authed(req, &data.token)?;
            if mix == Mix::Pooler {
                req.metadata_mut()
                    .insert("cache-control", "no-cache".parse()?);
            }
            proto::metrics_service_client::MetricsServiceClient::new(channel.clone())
                .get_metrics_aggregated(req)
                .await?;
        }
        (_, 2) => {
            let req = proto::ListMembersRequest {
                organization_id: org,
            };
            proto::organization_service_client::OrganizationServiceClient::new(channel.clone())
                .list_members(authed(req, &data.token)?)
                .await?;
        }
        (Mix::Reads, _) => {
            let req = proto::GetTopEntitiesRequest {
                organization_id: org,
                entity_type: "post".into(),
                metric_name: "likes".into(),
                start: week_ago(),
                max_results: 10,
                ..Default::default()
            };
            proto::metrics_service_client::MetricsServiceClient::new(channel.clone())
                .get_top_entities(authed(req, &data.token)?)
                .await?;
        }
        (Mix::Pooler, _) => {
            let req = proto::RecordMetricsRequest {
                organization_id: org,
                idempotency_key: String::new(),
                points: vec![proto::MetricPoint {
                    entity: post(data.posts[(k as usize / 4) % data.posts.len()]),
                    metric_name: "views".into(),
                    value: 1.0,
                    recorded_at: None,
                }],
            };
            proto::metrics_service_client::MetricsServiceClient::new(channel.clone())
                .record_metrics(authed(req, &data.service)?)
                .await?;
        }
    }
    Ok(())
}

/// Callers spread over `addrs` for a warm-up, then `load.secs` measured.
pub async fn window(
    load: &Load,
    side: Side,
    addrs: &[SocketAddr],
    data: &Arc<Data>,
    pool: &PgPool,
    pids: &Pids,
) -> Result<Window> {
    let mut channels = Vec::new();
    for a in addrs {
        channels.push(
            Endpoint::from_shared(format!("http://{a}"))?
                .connect()
                .await?,
        );
    }
    let warmup = Duration::from_secs_f64(load.secs / 4.0);
    let measured = Duration::from_secs_f64(load.secs);
    let begin = Instant::now() + warmup;
    let end = begin + measured;
    let mut callers = tokio::task::JoinSet::new();
    let mix = load.mix;
    for i in 0..load.concurrency {
        let (channel, data) = (channels[i % channels.len()].clone(), data.clone());
        callers.spawn(async move {
            let (mut lat, mut errors, mut k) = (Vec::new(), 0u64, i as u64);
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let ok = call(&channel, &data, mix, k).await.is_ok();
                k += 1;
                if t >= begin {
                    match ok {
                        true => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        false => errors += 1,
                    }
                }
            }
            (lat, errors)
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pool) = (stop.clone(), pool.clone());
        tokio::spawn(async move {
            let mut peak = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND backend_type = 'client backend'
                       AND application_name <> 'affinity-backfill-bench'",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
                peak = peak.max(n);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            peak
        })
    };
    tokio::time::sleep_until(begin.into()).await;
    let cpu_before = cpu(pids);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(r) = callers.join_next().await {
        let (l, e) = r?;
        latencies.extend(l);
        errors += e;
    }
    let cpu_after = cpu(pids);
    stop.store(true, Ordering::Relaxed);
    let peak_connections = sampler.await?;
    latencies.sort_by(f64::total_cmp);
    let calls = latencies.len().max(1) as f64;
    let cpu_ms = std::array::from_fn(|i| (cpu_after[i] - cpu_before[i]) * 1000.0 / calls);
    Ok(Window {
        cpu_ms,
        side,
        calls: latencies.len() as u64,
        errors,
        secs: measured.as_secs_f64(),
        latencies,
        peak_connections,
    })
}

pub fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    pct(&v, 0.5)
}

/// One side's windows together: the median of their rates, the p50 and p99
/// of all their latencies, their peak connections and errors.
pub struct Summary {
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    pub peak_connections: i64,
    pub errors: u64,
}

pub fn summary<'a>(windows: impl Iterator<Item = &'a Window>, side: Side) -> Summary {
    let of: Vec<&Window> = windows.filter(|w| w.side == side).collect();
    let mut all: Vec<f64> = of
        .iter()
        .flat_map(|w| w.latencies.iter().copied())
        .collect();
    all.sort_by(f64::total_cmp);
    Summary {
        rate: median(of.iter().map(|w| w.rate()).collect()),
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        peak_connections: of.iter().map(|w| w.peak_connections).max().unwrap_or(0),
        errors: of.iter().map(|w| w.errors).sum(),
    }
}
