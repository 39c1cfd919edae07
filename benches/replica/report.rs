//! The replica benchmark's report.

use crate::drive::{pct, summary, Side, Window};
use crate::Args;

/// A window and where its reads went (the service's counters).
pub struct Measured {
    pub window: Window,
    pub on_replica: f64,
    pub on_primary: f64,
}

pub fn render(args: &Args, windows: &[Measured], versions: &str, whole_secs: f64) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let mut s = format!(
        "\n## Reads on a streaming replica against the primary only ({now})\n\n\
         Produced by `benches/replica.rs` (its header says how each part is measured).\n\n\
         - Command: `{}`\n- Date: {now}; code: {}\n- Machine: {}\n- Database: {versions}; the replica: a hot standby streaming from it (`pg_basebackup -R`) on the same machine\n\
         - Whole run: {:.1} minutes\n\n\
         | round | side | calls/s | errors | p50 / p99 ms | reads on the replica / primary | CPU ms per call: service, PostgreSQL (both), callers |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        crate::provenance::command_line("replica"),
        crate::provenance::git_version(),
        crate::provenance::machine("the benchmark, the service and both PostgreSQL servers share it"),
        whole_secs / 60.0,
    );
    for (i, m) in windows.iter().enumerate() {
        let w = &m.window;
        s += &format!(
            "| {} | {} | {:.0} | {} | {:.2} / {:.2} | {:.0} / {:.0} | {:.2}, {:.2}, {:.2} |\n",
            i / 2 + 1,
            w.side.name(),
            w.rate(),
            w.errors,
            pct(&w.latencies, 0.5),
            pct(&w.latencies, 0.99),
            m.on_replica,
            m.on_primary,
            w.cpu_ms[0],
            w.cpu_ms[2],
            w.cpu_ms[3],
        );
    }
    let windows = || windows.iter().map(|m| &m.window);
    let (p, r) = (
        summary(windows(), Side::PrimaryOnly),
        summary(windows(), Side::WithReplica),
    );
    s += &format!(
        "\n{} callers on one service ({} s measured per window after {:.1} s of warm-up; pools of \
         {} connections). Median of the rounds: primary only {:.0} reads/s (p50 {:.2} ms, p99 \
         {:.2} ms, {} errors), with the replica {:.0} reads/s (p50 {:.2} ms, p99 {:.2} ms, {} \
         errors): **{:.2}x** the read throughput without it. Both servers share this machine's \
         cores with the service, so the replica adds no CPU here: the figure shows what routing \
         costs or saves, not what a replica on its own machine adds.\n",
        args.concurrency,
        args.secs,
        args.secs / 4.0,
        args.pool,
        p.rate,
        p.p50,
        p.p99,
        p.errors,
        r.rate,
        r.p50,
        r.p99,
        r.errors,
        r.rate / p.rate,
    );
    s
}
