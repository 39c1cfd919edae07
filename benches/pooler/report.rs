//! The pooler benchmark's report.

use crate::drive::{pct, summary, Side, Window};
use crate::Args;

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
    let (d, p) = (
        summary(windows.iter(), Side::Direct),
        summary(windows.iter(), Side::Pooled),
    );
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
        d.rate,
        d.p50,
        d.p99,
        d.peak_connections,
        d.errors,
        p.rate,
        p.p50,
        p.p99,
        p.peak_connections,
        p.errors,
        p.rate / d.rate,
    );
    s
}
