//! Calls timed one after another (several kinds interleaved, so that the
//! machine's drift falls on all alike) and throughput at a concurrency,
//! with the CPU each process spent per call.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

pub type Call = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
/// One kind of call; the argument is the call's number (to rotate inputs).
pub type Op = Arc<dyn Fn(usize) -> Call + Send + Sync>;

#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub calls: usize,
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Latency {
        p50: at(0.5),
        p95: at(0.95),
        calls: ms.len(),
    }
}

/// Each op once per round, the order rotating from round to round; the
/// first round is a warm-up. Milliseconds.
pub async fn interleaved(ops: &[&Op], rounds: usize) -> Result<Vec<Latency>> {
    let mut ms = vec![Vec::with_capacity(rounds); ops.len()];
    for round in 0..=rounds {
        for k in 0..ops.len() {
            let i = (round + k) % ops.len();
            let started = Instant::now();
            (ops[i])(round).await?;
            if round > 0 {
                ms[i].push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(ms.into_iter().map(latency).collect())
}

/// Processes whose CPU is counted per call.
#[derive(Clone, Copy)]
pub struct Pids {
    pub service: u32,
    pub postmaster: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub per_sec: f64,
    /// CPU milliseconds per call: the service, PostgreSQL, this client.
    pub service_ms: f64,
    pub postgres_ms: f64,
    pub client_ms: f64,
    /// Of `postgres_ms`, what PostgreSQL's background processes spent.
    pub background_ms: f64,
}

/// `concurrency` callers for `secs` seconds.
pub async fn throughput(op: &Op, concurrency: usize, secs: f64, pids: Pids) -> Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let cpu = || {
        (
            crate::procfs::cpu_secs(pids.service).unwrap_or(0.0),
            crate::procfs::postgres_cpu_secs(pids.postmaster).unwrap_or(0.0),
            crate::procfs::cpu_secs(std::process::id()).unwrap_or(0.0),
            crate::procfs::postgres_background_cpu_secs(pids.postmaster).unwrap_or(0.0),
        )
    };
    let before = cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (op, stop, calls) = (op.clone(), stop.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                op(i).await?;
                calls.fetch_add(1, Ordering::Relaxed);
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = cpu();
    let n = calls.load(Ordering::Relaxed).max(1) as f64;
    Ok(Throughput {
        per_sec: n / elapsed,
        service_ms: (after.0 - before.0) * 1e3 / n,
        postgres_ms: (after.1 - before.1) * 1e3 / n,
        client_ms: (after.2 - before.2) * 1e3 / n,
        background_ms: (after.3 - before.3) * 1e3 / n,
    })
}

/// Two ops' throughput measured alternately (a, b, b, a), each figure the
/// mean of its two windows.
pub async fn side_by_side(
    a: &Op,
    b: &Op,
    concurrency: usize,
    secs: f64,
    pids: Pids,
) -> Result<(Throughput, Throughput)> {
    let a1 = throughput(a, concurrency, secs, pids).await?;
    let b1 = throughput(b, concurrency, secs, pids).await?;
    let b2 = throughput(b, concurrency, secs, pids).await?;
    let a2 = throughput(a, concurrency, secs, pids).await?;
    let mean = |x: Throughput, y: Throughput| Throughput {
        per_sec: (x.per_sec + y.per_sec) / 2.0,
        service_ms: (x.service_ms + y.service_ms) / 2.0,
        postgres_ms: (x.postgres_ms + y.postgres_ms) / 2.0,
        client_ms: (x.client_ms + y.client_ms) / 2.0,
        background_ms: (x.background_ms + y.background_ms) / 2.0,
    };
    Ok((mean(a1, a2), mean(b1, b2)))
}
