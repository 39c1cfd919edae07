//! The analytics benchmark's Markdown section: every target judged on
//! fresh reads, in this run, with the cached figures beside.

use std::fmt::Write as _;

use crate::drive::{Latency, Throughput};
use crate::load::Data;
use crate::phases::{Top, Versus};
use crate::provenance;
use crate::Args;

pub struct Report<'a> {
    pub args: &'a Args,
    pub database: &'a str,
    pub data: &'a Data,
    pub load_secs: f64,
    pub versus: &'a [Versus],
    /// Filled fresh, unfilled fresh, filled cached.
    pub gap: &'a [Latency],
    /// Buckets (filled, unfilled) of one sparse post's chart.
    pub gap_buckets: (usize, usize),
    /// RPC fresh, percentile_cont over the points, RPC cached.
    pub percentiles: &'a [Latency],
    pub rank_error: f64,
    pub busy_points: i64,
    pub digest_bytes: i64,
    pub top: &'a Top,
    /// The same over 7 whole UTC days.
    pub top_days: &'a Top,
    pub minutes: f64,
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

fn cpu(t: &Throughput) -> String {
    format!(
        "{:.0}/s (CPU per call: service {:.2} ms, PostgreSQL {:.2} ms of which background {:.2} ms, client {:.2} ms)",
        t.per_sec, t.service_ms, t.postgres_ms, t.background_ms, t.client_ms
    )
}

fn lat(l: &Latency) -> String {
    format!("{:.2} / {:.2} ms ({} calls)", l.p50, l.p95, l.calls)
}

pub fn render(r: &Report) -> String {
    let (a, d) = (r.args, r.data);
    let mut s = String::new();
    let w = &mut s;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let run = format!("this run ({date})");
    let _ = writeln!(
        w,
        "## Analytics: gap-filled charts, percentiles, top items, fresh reads ({date})\n"
    );
    let _ = writeln!(
        w,
        "Produced by `benches/analytics.rs` (its header says how each part is measured): the release \
         `affinity serve` as a child process, a private durable PostgreSQL, one organization with \
         **{}** metric points (loaded by SQL through the production triggers in {:.0} s): {} posts \
         with a point every hour of the last {} days, {} posts with a point every hour for a year, \
         100 posts with points one day in three, one post with a point every minute for 100 days. \
         Every target is judged on fresh reads (`cache-control: no-cache`); cached figures are beside.\n",
        d.points, r.load_secs, a.posts, a.days, a.year_posts
    );
    let _ = writeln!(w, "- Command: `{}`", provenance::command_line("analytics"));
    let _ = writeln!(w, "- Date: {date}; code: {}", provenance::git_version());
    let _ = writeln!(
        w,
        "- Machine: {}",
        provenance::machine("the benchmark, the service and PostgreSQL share it")
    );
    let _ = writeln!(w, "- Database: {}", r.database);
    let _ = writeln!(w, "- Whole run: {:.1} minutes\n", r.minutes);

    let _ = writeln!(w, "### Targets ({run}, fresh reads)\n");
    let _ = writeln!(w, "| target | measured | verdict |\n| --- | --- | --- |");
    let (filled, unfilled) = (r.gap[0], r.gap[1]);
    let gap_ratio = filled.p50 / unfilled.p50;
    let _ = writeln!(
        w,
        "| gap-filled daily chart, 90 days, Europe/Berlin: ≤ 1.2x the unfilled one (p50) | {gap_ratio:.2}x ({} vs {} buckets) | {} |",
        r.gap_buckets.0,
        r.gap_buckets.1,
        met(gap_ratio <= 1.2)
    );
    let (pf, praw) = (r.percentiles[0], r.percentiles[1]);
    let pct_speed = praw.p50 / pf.p50;
    let _ = writeln!(
        w,
        "| p50/p95/p99 per day for 90 days: ≥ 10x percentile_cont over the points (p50), ≤ 1% rank error | {pct_speed:.1}x, rank error {:.4} | {} |",
        r.rank_error,
        met(pct_speed >= 10.0 && r.rank_error <= 0.01)
    );
    let top_speed = r.top.raw.p50 / r.top.rpc.p50;
    let _ = writeln!(
        w,
        "| top 10 posts by SUM over 7 days ({} posts): ≥ 10x GROUP BY over the points (p50), same answer | {top_speed:.1}x, same: {} | {} |",
        a.posts,
        r.top.equal.is_ok(),
        met(top_speed >= 10.0 && r.top.equal.is_ok())
    );
    for v in r.versus {
        let ratio = v.fresh_c8.per_sec / v.sql_c8.per_sec;
        // With the CPU the only limit: the direct side's CPU per call over
        // the RPC side's.
        let bound = (v.sql_c8.postgres_ms + v.sql_c8.client_ms)
            / (v.fresh_c8.postgres_ms + v.fresh_c8.service_ms + v.fresh_c8.client_ms);
        let _ = writeln!(
            w,
            "| metrics RPC, {}: ≥ 0.85 of direct SQL at concurrency 8 | {ratio:.2} (CPU per call allows {bound:.2}) | {} |",
            v.shape,
            met(ratio >= 0.85)
        );
    }
    for v in r.versus.iter().filter(|v| !v.shape.starts_with("hourly")) {
        let speed = v.raw.p50 / v.fresh.p50;
        let _ = writeln!(
            w,
            "| {}: ≥ 10x raw aggregation (p50), equal results | {speed:.1}x (direct SQL {:.1}x), equal: {} | {} |",
            v.shape,
            v.raw.p50 / v.sql.p50,
            v.equal.is_ok(),
            met(speed >= 10.0 && v.equal.is_ok())
        );
    }

    let _ = writeln!(w, "\n### Aggregations\n");
    let _ = writeln!(
        w,
        "| shape | p50 / p95: RPC fresh | direct SQL | raw aggregation | RPC cached | concurrency 8: RPC fresh | direct SQL | RPC cached |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for v in r.versus {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0}/s |",
            v.shape,
            lat(&v.fresh),
            lat(&v.sql),
            lat(&v.raw),
            lat(&v.cached),
            cpu(&v.fresh_c8),
            cpu(&v.sql_c8),
            v.cached_c8.per_sec
        );
        if let Err(e) = &v.equal {
            let _ = writeln!(w, "\nNot equal to the raw aggregation: {e}\n");
        }
    }
    let _ = writeln!(w, "\n### Gap filling, percentiles, top items (p50 / p95)\n");
    let _ = writeln!(
        w,
        "| call | fresh | compared with | cached |\n| --- | --- | --- | --- |"
    );
    let _ = writeln!(
        w,
        "| daily over 90 days, Europe/Berlin, a post with points one day in three, filled | {} | unfilled, fresh: {} | {} |",
        lat(&filled),
        lat(&unfilled),
        lat(&r.gap[2])
    );
    let _ = writeln!(
        w,
        "| p50/p95/p99 of each day, 90 days, Europe/Berlin, {} points a minute apart | {} | percentile_cont over the points: {} | {} |",
        r.busy_points,
        lat(&pf),
        lat(&praw),
        lat(&r.percentiles[2])
    );
    let _ = writeln!(
        w,
        "| top 10 posts by SUM, 7 days ending 23 minutes past the hour (never cached) | {} | GROUP BY over the points, JIT off: {}; JIT on: {} | - |",
        lat(&r.top.rpc),
        lat(&r.top.raw_jit_off),
        lat(&r.top.raw_jit_on)
    );
    let _ = writeln!(
        w,
        "| the same over 7 whole UTC days (daily rollups only; beside the target) | {} | GROUP BY over the points, JIT off: {}; JIT on: {} ({:.1}x the faster, same: {}) | - |",
        lat(&r.top_days.rpc),
        lat(&r.top_days.raw_jit_off),
        lat(&r.top_days.raw_jit_on),
        r.top_days.raw.p50 / r.top_days.rpc.p50,
        r.top_days.equal.is_ok()
    );
    let _ = writeln!(
        w,
        "\nThe busy post's daily digests (both zones) take {:.0} kB in all. Rank error: over every \
         bucket and fraction, how much further the fraction lies from the rank interval of the \
         value given than from that of `percentile_cont`'s. Direct SQL runs with the service's \
         session settings (JIT off); the raw ranking also with PostgreSQL's defaults, its target \
         judged against the faster of the two.\n",
        r.digest_bytes as f64 / 1e3
    );
    if let Err(e) = &r.top.equal {
        let _ = writeln!(w, "Top items differ from the raw ranking: {e}\n");
    }
    s
}
