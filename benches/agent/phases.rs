//! The measured phases of the AI context benchmark, each through a real
//! tonic client against the release service (COPY through sqlx).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use affinity::proto::{self, ai_context_service_client::AiContextServiceClient};
use anyhow::{ensure, Result};
use futures::StreamExt;
use sqlx::Connection;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::procfs;
use crate::service::RssTrace;

pub struct Client {
    pub channel: Channel,
    /// A service_role token.
    pub token: String,
    pub org: Uuid,
    /// The service's pid (its memory and CPU).
    pub pid: u32,
    /// PostgreSQL's postmaster (its CPU, children included).
    pub postmaster: u32,
}

impl Client {
    fn stub(&self) -> AiContextServiceClient<Channel> {
        AiContextServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    fn req<T>(&self, msg: T) -> Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        Ok(req)
    }
}

/// Milliseconds sorted; the value at quantile `q`.
pub fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub struct Pages {
    /// Per page, warm-up round left out, sorted.
    pub ms: Vec<f64>,
    pub per_round: usize,
}

/// Walks the session `rounds` times, page by page.
pub async fn pages(c: &Client, size: u32, rounds: usize, turns: &[Uuid]) -> Result<Pages> {
    let mut stub = c.stub();
    let mut ms = Vec::new();
    let mut per_round = 0;
    for round in 0..rounds.max(2) {
        let (mut token, mut seen, mut n) = (String::new(), Vec::new(), 0);
        loop {
            let at = Instant::now();
            let page = stub
                .list_ai_context(c.req(proto::ListAiContextRequest {
                    organization_id: c.org.to_string(),
                    session_id: crate::SESSION.into(),
                    page_size: size,
                    page_token: token,
                    ..Default::default()
                })?)
                .await?
                .into_inner();
            if round > 0 {
                ms.push(at.elapsed().as_secs_f64() * 1e3);
            }
            n += 1;
            seen.extend(page.entries.iter().map(|e| e.id.clone()));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let want: Vec<String> = turns.iter().map(Uuid::to_string).collect();
        ensure!(
            seen == want,
            "round {round} did not see the session in order"
        );
        per_round = n;
    }
    Ok(Pages {
        ms: sorted(ms),
        per_round,
    })
}

pub struct Export {
    pub entries: u64,
    pub secs: f64,
    /// The service's VmRSS during it.
    pub rss: RssTrace,
    /// CPU seconds over it: (service, this client, PostgreSQL).
    pub cpu: (f64, f64, f64),
}

/// CPU seconds so far of (service, this process, PostgreSQL).
fn cpu(service: u32, postmaster: u32) -> (f64, f64, f64) {
    (
        procfs::cpu_secs(service).unwrap_or(0.0),
        procfs::cpu_secs(std::process::id()).unwrap_or(0.0),
        procfs::postgres_cpu_secs(postmaster).unwrap_or(0.0),
    )
}

fn minus(a: (f64, f64, f64), b: (f64, f64, f64)) -> (f64, f64, f64) {
    (a.0 - b.0, a.1 - b.1, a.2 - b.2)
}

impl Export {
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.secs
    }
}

/// Samples the service's VmRSS every 50 ms until the guard is dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<RssTrace>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (since, mut trace) = (Instant::now(), RssTrace::default());
            while !flag.load(Ordering::Relaxed) {
                trace.push(since, pid);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            trace.push(since, pid);
            trace
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> Result<RssTrace> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

fn export_request(c: &Client) -> proto::ExportAiContextRequest {
    proto::ExportAiContextRequest {
        organization_id: c.org.to_string(),
        ..Default::default()
    }
}

/// The whole organization, read as fast as the client can.
pub async fn export(c: &Client) -> Result<Export> {
    let sampler = Sampler::start(c.pid);
    let before = cpu(c.pid, c.postmaster);
    let at = Instant::now();
    let mut stream = c
        .stub()
        .export_ai_context(c.req(export_request(c))?)
        .await?
        .into_inner();
    let mut entries = 0;
    while stream.message().await?.is_some() {
        entries += 1;
    }
    let secs = at.elapsed().as_secs_f64();
    Ok(Export {
        entries,
        secs,
        cpu: minus(cpu(c.pid, c.postmaster), before),
        rss: sampler.finish().await?,
    })
}

/// `COPY` of the export's query (its columns, filter and order) through
/// one connection of the same database; rows counted by their newlines.
pub async fn copy(c: &Client, url: &str) -> Result<Export> {
    let org = c.org;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let before = cpu(c.pid, c.postmaster);
    let at = Instant::now();
    let sql = format!(
        "COPY (SELECT id, organization_id, user_id, source_type, context_summary, ai_response,
                      metadata, occurred_at, session_id, parent_id
               FROM ai_context_logs WHERE organization_id = '{org}'
               ORDER BY occurred_at, id) TO STDOUT"
    );
    let mut rows = 0;
    {
        let mut out = conn.copy_out_raw(&sql).await?;
        while let Some(chunk) = out.next().await {
            rows += chunk?.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
    let secs = at.elapsed().as_secs_f64();
    let used = minus(cpu(c.pid, c.postmaster), before);
    conn.close().await?;
    Ok(Export {
        entries: rows,
        secs,
        rss: RssTrace::default(),
        cpu: used,
    })
}

/// One export read at `rate` entries/s for `secs`, then cancelled.
pub async fn slow_export(c: &Client, rate: u64, secs: u64) -> Result<Export> {
    let sampler = Sampler::start(c.pid);
    let at = Instant::now();
    let mut stream = c
        .stub()
        .export_ai_context(c.req(export_request(c))?)
        .await?
        .into_inner();
    let mut entries = 0;
    let until = Duration::from_secs(secs);
    while at.elapsed() < until && stream.message().await?.is_some() {
        entries += 1;
        let due = Duration::from_secs_f64(entries as f64 / rate.max(1) as f64);
        tokio::time::sleep_until((at + due).into()).await;
    }
    drop(stream);
    let secs = at.elapsed().as_secs_f64();
    Ok(Export {
        entries,
        secs,
        rss: sampler.finish().await?,
        cpu: (0.0, 0.0, 0.0),
    })
}

pub struct Feedback {
    pub stored: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    /// Per call, sorted.
    pub ms: Vec<f64>,
    pub service_cpu: f64,
    pub postgres_cpu: f64,
}

/// `concurrency` callers recording feedback on the session's turns.
pub async fn feedback(
    c: &Client,
    turns: &[Uuid],
    concurrency: usize,
    secs: u64,
) -> Result<Feedback> {
    let cpu = || {
        let (service, _, postgres) = cpu(c.pid, c.postmaster);
        (service, postgres)
    };
    let before = cpu();
    let at = Instant::now();
    let until = at + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut stub = c.stub();
        let reqs: Vec<_> = (0..)
            .map(|i| turns[(worker + i * concurrency) % turns.len()])
            .take(turns.len())
            .collect();
        let (org, token) = (c.org, c.token.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ms, mut failed, mut first_error) = (Vec::new(), 0_u64, None);
            let mut i = 0;
            while Instant::now() < until {
                let mut req = tonic::Request::new(proto::RecordAiFeedbackRequest {
                    organization_id: org.to_string(),
                    entry_id: reqs[i % reqs.len()].to_string(),
                    feedback: Some(proto::AiFeedback {
                        feedback_id: Uuid::new_v4().to_string(),
                        name: "helpful".into(),
                        value: if i % 3 == 0 { -1.0 } else { 1.0 },
                        ..Default::default()
                    }),
                });
                let auth = format!("Bearer {token}").parse();
                if let Ok(v) = auth {
                    req.metadata_mut().insert("authorization", v);
                }
                let t = Instant::now();
                match stub.record_ai_feedback(req).await {
                    Ok(_) => ms.push(t.elapsed().as_secs_f64() * 1e3),
                    Err(e) => {
                        failed += 1;
                        first_error
                            .get_or_insert_with(|| format!("{:?}: {}", e.code(), e.message()));
                    }
                }
                i += 1;
            }
            (ms, failed, first_error)
        }));
    }
    let (mut ms, mut failed, mut first_error) = (Vec::new(), 0, None);
    for t in tasks {
        let (m, f, e) = t.await?;
        ms.extend(m);
        failed += f;
        first_error = first_error.or(e);
    }
    let secs = at.elapsed().as_secs_f64();
    let after = cpu();
    Ok(Feedback {
        stored: ms.len() as u64,
        failed,
        first_error,
        secs,
        ms: sorted(ms),
        service_cpu: after.0 - before.0,
        postgres_cpu: after.1 - before.1,
    })
}

/// The service's INSERT alone (`store::ai_context::feedback::record`, the
/// statement RecordAiFeedback runs) from `concurrency` connections for
/// `secs`: records/s of the database by itself.
pub async fn feedback_sql(
    url: &str,
    org: Uuid,
    turns: &[Uuid],
    concurrency: usize,
    secs: u64,
) -> Result<f64> {
    use affinity::store::ai_context::feedback::{record, NewFeedback};
    let pool = crate::setup::connect(url, concurrency as u32).await?;
    let at = Instant::now();
    let until = at + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (pool, turns) = (pool.clone(), turns.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut stored = 0_u64;
            while Instant::now() < until {
                let f = NewFeedback {
                    organization_id: org,
                    entry_id: turns[(worker + stored as usize * concurrency) % turns.len()],
                    feedback_id: Uuid::new_v4(),
                    name: "helpful".into(),
                    value: 1.0,
                    comment: None,
                    user_id: None,
                    created_at: None,
                };
                record(&pool, &f).await?;
                stored += 1;
            }
            anyhow::Ok(stored)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await??;
    }
    let rate = stored as f64 / at.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}
