//! The service's two phases: a backfill round (a full queue worked through
//! to the last item) and the memory watch (a long queue, a fixed time).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sqlx::PgPool;

use crate::procfs;
use crate::service::{RssTrace, Service, Settings};
use crate::setup;

/// One backfill by the service.
#[derive(Debug, Clone)]
pub struct ServiceRound {
    pub items: u64,
    /// Spawn of the process to the last vector committed.
    pub secs: f64,
    /// Spawn to SERVING (inside `secs`).
    pub startup_secs: f64,
    /// CPU seconds over `secs`: the service's, the model's, PostgreSQL's.
    pub service_cpu: f64,
    pub model_cpu: f64,
    pub postgres_cpu: f64,
    pub rss: RssTrace,
    /// The service's own count of items embedded, at the end.
    pub counter: u64,
}

impl ServiceRound {
    pub fn rate(&self) -> f64 {
        // Counts of one run: exact in f64.
        self.items as f64 / self.secs
    }
}

/// What every service phase needs.
pub struct Env<'a> {
    pub settings: &'a Settings,
    pub pool: &'a PgPool,
    pub model_pid: u32,
    pub postmaster: u32,
}

/// Queues every text again, starts the service and waits until the queue
/// is empty, sampling its memory every 250 ms; `limit` bounds the wait.
pub async fn backfill_round(env: &Env<'_>, name: &str, limit: Duration) -> Result<ServiceRound> {
    let items = setup::requeue(env.pool, &env.settings.model).await?;
    let model_before = procfs::cpu_secs(env.model_pid).context("the model's CPU time")?;
    let pg_before = procfs::postgres_cpu_secs(env.postmaster).context("PostgreSQL's CPU time")?;
    let (mut service, startup) = Service::start(env.settings, name).await?;
    let mut rss = RssTrace::default();
    let since = service.spawned;
    rss.push(since, service.pid);
    let mut last_report = Instant::now();
    loop {
        service.check_alive()?;
        if !setup::any_pending(env.pool).await? {
            break;
        }
        if since.elapsed() > limit {
            bail!(
                "{name}: the queue was not empty after {limit:?}; see {}",
                service.log.display()
            );
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            let left = setup::queue_len(env.pool).await?;
            eprintln!(
                "  {name}: {left} of {items} items left after {:.0} s",
                since.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss.push(since, service.pid);
    }
    let secs = since.elapsed().as_secs_f64();
    rss.push(since, service.pid);
    let service_cpu = procfs::cpu_secs(service.pid).context("the service's CPU time")?;
    let model_cpu = procfs::cpu_secs(env.model_pid).context("the model's CPU time")? - model_before;
    let postgres_cpu =
        procfs::postgres_cpu_secs(env.postmaster).context("PostgreSQL's CPU time")? - pg_before;
    let counter = service.embedded_counter().await?;
    service.stop().await?;

    let (failed, error) = setup::failures(env.pool).await?;
    if failed > 0 {
        bail!(
            "{name}: {failed} items set aside, e.g. {}",
            error.unwrap_or_default()
        );
    }
    let embedded = setup::embedded(env.pool, &env.settings.model).await?;
    if embedded != items {
        bail!("{name}: {embedded} texts have a current vector, expected {items}");
    }
    Ok(ServiceRound {
        items,
        secs,
        startup_secs: startup.as_secs_f64(),
        service_cpu,
        model_cpu,
        postgres_cpu,
        rss,
        counter,
    })
}

/// The memory watch.
#[derive(Debug, Clone)]
pub struct MemoryPhase {
    pub queued_start: u64,
    pub queued_end: u64,
    /// Items the service embedded in the window (its counter).
    pub embedded: u64,
    /// From SERVING on, once a second.
    pub rss: RssTrace,
    pub hwm: u64,
    pub secs: f64,
    pub service_cpu: f64,
}

/// Adds `queued` texts to the queue (the backfill's vectors stay: only the
/// new items wait), then runs the service for `window` from SERVING,
/// sampling its resident memory once a second.
pub async fn memory(
    env: &Env<'_>,
    queued: u64,
    posts: usize,
    window: Duration,
) -> Result<MemoryPhase> {
    setup::fill_memory_queue(env.pool, queued, posts).await?;
    let queued_start = setup::queue_len(env.pool).await?;
    let (mut service, _) = Service::start(env.settings, "memory").await?;
    let since = Instant::now();
    let cpu_start = procfs::cpu_secs(service.pid).context("the service's CPU time")?;
    let counter_start = service.embedded_counter().await?;
    let mut rss = RssTrace::default();
    rss.push(since, service.pid);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_report = Instant::now();
    while since.elapsed() < window {
        tick.tick().await;
        service.check_alive()?;
        rss.push(since, service.pid);
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  memory: {:.1} MB after {:.0} s",
                procfs::mb(rss.last()),
                since.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let secs = since.elapsed().as_secs_f64();
    let service_cpu = procfs::cpu_secs(service.pid).context("the service's CPU time")? - cpu_start;
    let embedded = service
        .embedded_counter()
        .await?
        .saturating_sub(counter_start);
    let hwm = procfs::memory(service.pid).map_or(0, |m| m.1);
    service.stop().await?;
    let queued_end = setup::queue_len(env.pool).await?;
    Ok(MemoryPhase {
        queued_start,
        queued_end,
        embedded,
        rss,
        hwm,
        secs,
        service_cpu,
    })
}
