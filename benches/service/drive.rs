//! The load driver: N tokio tasks call one operation in a loop for a fixed
//! time after a warm-up; throughput and latency percentiles come out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// One call of a scenario: `i` picks the query; the result is how many items
/// it handled (1 for a query, 1,000 for a stream of 1,000 entries).
pub type Op = Arc<dyn Fn(u64) -> BoxFuture<'static, anyhow::Result<u64>> + Send + Sync>;

/// Wraps an async closure as an [`Op`].
pub fn op<F, Fut>(f: F) -> Op
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    Arc::new(move |i| Box::pin(f(i)))
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Calls that started after the warm-up.
    pub ops: u64,
    pub items: u64,
    /// From the end of the warm-up to the last measured call's end.
    pub secs: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
    /// CPU time (user + system) the service process spent per call, warm-up
    /// included: what the service itself costs, whatever the machine's noise.
    pub service_cpu: Option<Duration>,
    /// The same for this benchmark process: the clients' side of a call.
    pub client_cpu: Option<Duration>,
}

impl Stats {
    pub fn qps(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    pub fn items_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.items as f64 / self.secs
        } else {
            0.0
        }
    }
}

struct TaskResult {
    latencies: Vec<Duration>,
    items: u64,
    errors: u64,
    first_error: Option<String>,
    last_end: Option<Instant>,
}

/// Runs `op` from `concurrency` tasks. Calls that fail are counted (and the
/// first error kept) rather than ending the run: a long run should report
/// what it measured, errors included.
pub async fn drive(op: &Op, concurrency: usize, timing: Timing) -> Stats {
    let cpu_before = SERVICE_PID.get().and_then(|&pid| cpu_time(pid));
    let client_before = cpu_time(std::process::id());
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warm_end = start + timing.warmup;
    let end = warm_end + timing.measure;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let op = op.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = TaskResult {
                latencies: Vec::new(),
                items: 0,
                errors: 0,
                first_error: None,
                last_end: None,
            };
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let result = op(i).await;
                let t1 = Instant::now();
                if t0 < warm_end {
                    continue;
                }
                r.last_end = Some(r.last_end.map_or(t1, |e| e.max(t1)));
                r.latencies.push(t1 - t0);
                match result {
                    Ok(n) => r.items += n,
                    Err(e) => {
                        r.errors += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            r
        }));
    }
    let mut latencies = Vec::new();
    let mut stats = Stats::default();
    let mut last_end = warm_end;
    for t in tasks {
        let r = match t.await {
            Ok(r) => r,
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        latencies.extend(r.latencies);
        stats.items += r.items;
        stats.errors += r.errors;
        if stats.first_error.is_none() {
            stats.first_error = r.first_error;
        }
        if let Some(e) = r.last_end {
            last_end = last_end.max(e);
        }
    }
    let calls = counter.load(Ordering::Relaxed);
    let cpu_after = SERVICE_PID.get().and_then(|&pid| cpu_time(pid));
    let client_after = cpu_time(std::process::id());
    // CPU time per call between two readings of a process's CPU time.
    let per_call = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(a), Some(b)) if calls > 0 => Some(b.saturating_sub(a) / calls as u32),
        _ => None,
    };
    stats.client_cpu = per_call(client_before, client_after);
    stats.service_cpu = per_call(cpu_before, cpu_after);
    latencies.sort_unstable();
    stats.ops = latencies.len() as u64;
    stats.secs = (last_end - warm_end).as_secs_f64();
    stats.p50 = percentile(&latencies, 0.50);
    stats.p99 = percentile(&latencies, 0.99);
    stats
}

/// The service's process id, once it runs: [`drive`] charges its CPU time to calls.
pub static SERVICE_PID: OnceLock<u32> = OnceLock::new();

/// User + system CPU time of a process, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Option<Duration> {
    crate::procfs::cpu_secs(pid).map(Duration::from_secs_f64)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One line of a results table: an RPC and, when it has one, the same SQL
/// measured right after it at the same concurrency.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub concurrency: usize,
    pub rpc: Stats,
    pub sql: Option<Stats>,
}

impl Row {
    /// RPC throughput over SQL throughput (items, so streams compare too).
    pub fn ratio(&self) -> Option<f64> {
        let sql = self.sql.as_ref()?.items_per_sec();
        (sql > 0.0).then(|| self.rpc.items_per_sec() / sql)
    }
}

/// Measures `rpc` then `sql` at each concurrency, printing progress.
pub async fn compare(
    scenario: &str,
    rpc: &Op,
    sql: Option<&Op>,
    concurrency: &[usize],
    timing: Timing,
) -> Vec<Row> {
    // Both sides once before the first cell, so that the first one measured
    // (always the RPC) does not pay alone for cold caches.
    let warm = Timing {
        warmup: timing.warmup,
        measure: Duration::ZERO,
    };
    drive(rpc, 4, warm).await;
    if let Some(sql) = sql {
        drive(sql, 4, warm).await;
    }
    let mut rows = Vec::new();
    for &c in concurrency {
        let r = drive(rpc, c, timing).await;
        let s = match sql {
            Some(sql) => Some(drive(sql, c, timing).await),
            None => None,
        };
        let row = Row {
            scenario: scenario.to_string(),
            concurrency: c,
            rpc: r,
            sql: s,
        };
        eprintln!(
            "  {scenario} @{c}: rpc {:.0}/s p50 {:.2} ms (cpu µs/call: service {}, client {}){}{}",
            row.rpc.qps(),
            ms(row.rpc.p50),
            micros(row.rpc.service_cpu),
            micros(row.rpc.client_cpu),
            row.sql
                .as_ref()
                .map(|s| format!(
                    ", sql {:.0}/s p50 {:.2} ms (client cpu µs/call {})",
                    s.qps(),
                    ms(s.p50),
                    micros(s.client_cpu)
                ))
                .unwrap_or_default(),
            row.ratio()
                .map(|r| format!(", ratio {r:.2}"))
                .unwrap_or_default()
        );
        for (what, st) in [("rpc", Some(&row.rpc)), ("sql", row.sql.as_ref())] {
            if let Some(e) = st.and_then(|s| s.first_error.as_ref()) {
                eprintln!(
                    "    {what} errors: {} (first: {e})",
                    st.map_or(0, |s| s.errors)
                );
            }
        }
        rows.push(row);
    }
    rows
}

/// A per-call CPU time in whole microseconds, or `-` when not measured.
pub fn micros(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e6))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
