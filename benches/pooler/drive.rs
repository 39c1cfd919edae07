//! The pooler benchmark's data, its measured windows and its report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use affinity::proto;
use anyhow::Result;
use sqlx::PgPool;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::Args;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Direct,
    Pooled,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Direct => "direct",
            Side::Pooled => "pgbouncer",
        }
    }
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
    pub postmaster: u32,
}

/// CPU seconds so far: the services, PgBouncer, PostgreSQL, the benchmark.
fn cpu(p: &Pids) -> [f64; 4] {
    use crate::procfs::{cpu_secs, postgres_cpu_secs};
    [
        p.services.iter().filter_map(|&pid| cpu_secs(pid)).sum(),
        p.bouncer.and_then(cpu_secs).unwrap_or(0.0),
        postgres_cpu_secs(p.postmaster).unwrap_or(0.0),
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

/// The `k`th call of a caller: one of four, each reaching the database.
async fn call(channel: &Channel, data: &Data, k: u64) -> Result<()> {
    let org = data.org.to_string();
    match k % 4 {
        0 => {
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
        1 => {
            let req = proto::GetMetricsAggregatedRequest {
                organization_id: org,
                entity: post(data.posts[(k as usize / 4) % data.posts.len()]),
                metric_name: "likes".into(),
                granularity: proto::Granularity::Hour as i32,
                start: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() - 7 * 24 * 3600,
                    nanos: 0,
                }),
                ..Default::default()
            };
            let mut req = authed(req, &data.token)?;
            req.metadata_mut()
                .insert("cache-control", "no-cache".parse()?);
            proto::metrics_service_client::MetricsServiceClient::new(channel.clone())
                .get_metrics_aggregated(req)
                .await?;
        }
        2 => {
            let req = proto::ListMembersRequest {
                organization_id: org,
            };
            proto::organization_service_client::OrganizationServiceClient::new(channel.clone())
                .list_members(authed(req, &data.token)?)
                .await?;
        }
        _ => {
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

/// Callers spread over `addrs` for a warm-up, then `args.secs` measured.
pub async fn window(
    args: &Args,
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
    let warmup = Duration::from_secs_f64(args.secs / 4.0);
    let measured = Duration::from_secs_f64(args.secs);
    let begin = Instant::now() + warmup;
    let end = begin + measured;
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..args.concurrency {
        let (channel, data) = (channels[i % channels.len()].clone(), data.clone());
        callers.spawn(async move {
            let (mut lat, mut errors, mut k) = (Vec::new(), 0u64, i as u64);
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let ok = call(&channel, &data, k).await.is_ok();
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

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    pct(&v, 0.5)
}

pub fn render(args: &Args, windows: &[Window], versions: &str, whole_secs: f64) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let mut s = format!(
        "\n## Behind PgBouncer: {} replicas through {} server connections against direct ({now})\n\n\
         Produced by `benches/pooler.rs` (its header says how each part is measured).\n\n\
         - Command: `{}`\n- Date: {now}; code: {}\n- Machine: {}\n- Database: {versions}; PgBouncer 1.18 (Debian), transaction mode\n\
         - Whole run: {:.1} minutes\n\n\
         | round | side | calls/s | errors | p50 / p99 ms | peak server connections | CPU ms per call: services, PgBouncer, PostgreSQL, callers |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        args.replicas,
        args.server_connections,
        crate::provenance::command_line("pooler"),
        crate::provenance::git_version(),
        crate::provenance::machine("the benchmark, the services, PgBouncer and PostgreSQL share it"),
        whole_secs / 60.0,
    );
    for (i, w) in windows.iter().enumerate() {
        s += &format!(
            "| {} | {} | {:.0} | {} | {:.2} / {:.2} | {} | {:.2}, {:.2}, {:.2}, {:.2} |\n",
            i / 2 + 1,
            w.side.name(),
            w.rate(),
            w.errors,
            pct(&w.latencies, 0.5),
            pct(&w.latencies, 0.99),
            w.peak_connections,
            w.cpu_ms[0],
            w.cpu_ms[1],
            w.cpu_ms[2],
            w.cpu_ms[3],
        );
    }
    let side = |side: Side| -> (f64, f64, f64, i64, u64) {
        let of: Vec<&Window> = windows.iter().filter(|w| w.side == side).collect();
        let mut all: Vec<f64> = of
            .iter()
            .flat_map(|w| w.latencies.iter().copied())
            .collect();
        all.sort_by(f64::total_cmp);
        (
            median(of.iter().map(|w| w.rate()).collect()),
            pct(&all, 0.5),
            pct(&all, 0.99),
            of.iter().map(|w| w.peak_connections).max().unwrap_or(0),
            of.iter().map(|w| w.errors).sum(),
        )
    };
    let (d, p) = (side(Side::Direct), side(Side::Pooled));
    s += &format!(
        "\n{} callers over {} replicas ({} s measured per window after {:.1} s of warm-up); each \
         replica's pool: {} connections. Median of the rounds: direct {:.0} calls/s (p50 {:.2} ms, \
         p99 {:.2} ms, up to {} server connections, {} errors), through PgBouncer {:.0} calls/s \
         (p50 {:.2} ms, p99 {:.2} ms, up to {} server connections, {} errors): **{:.2}x** the \
         direct throughput.\n",
        args.concurrency,
        args.replicas,
        args.secs,
        args.secs / 4.0,
        args.pool,
        d.0,
        d.1,
        d.2,
        d.3,
        d.4,
        p.0,
        p.1,
        p.2,
        p.3,
        p.4,
        p.0 / d.0,
    );
    s
}
