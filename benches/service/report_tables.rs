//! The report's tables: one per scenario family, and the rows of RPC against SQL.

use std::fmt::Write as _;

use super::targets::{at, batch_vs_unary, stream_vs_unary};
use crate::drive::{micros, ms, Row, Stats};
use crate::{ai_context, metrics, permissions, similarity};

fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: &Stats) -> String {
    let mut out = if s.items != s.ops {
        format!("{} ({} items/s)", rate(s.qps()), rate(s.items_per_sec()))
    } else {
        rate(s.qps())
    };
    if s.errors > 0 {
        let _ = write!(out, " ⚠ {} errors", s.errors);
    }
    out
}

fn rows_table(w: &mut String, rows: &[Row]) {
    let _ = writeln!(
        w,
        "| scenario | conc. | RPC calls/s | RPC p50 ms | RPC p99 ms | service CPU µs/call | RPC client CPU µs/call | SQL calls/s | SQL p50 ms | SQL p99 ms | SQL client CPU µs/call | RPC/SQL |"
    );
    let _ = writeln!(
        w,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let (sq, s50, s99, sc) =
            r.sql
                .as_ref()
                .map_or(("-".into(), "-".into(), "-".into(), "-".into()), |s| {
                    (
                        cell(s),
                        format!("{:.2}", ms(s.p50)),
                        format!("{:.2}", ms(s.p99)),
                        micros(s.client_cpu),
                    )
                });
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {sq} | {s50} | {s99} | {sc} | {} |",
            r.scenario,
            r.concurrency,
            cell(&r.rpc),
            ms(r.rpc.p50),
            ms(r.rpc.p99),
            micros(r.rpc.service_cpu),
            micros(r.rpc.client_cpu),
            r.ratio().map_or("-".into(), |x| format!("{x:.2}"))
        );
    }
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            [("RPC", Some(&r.rpc)), ("SQL", r.sql.as_ref())]
                .into_iter()
                .filter_map(move |(what, s)| {
                    let e = s?.first_error.as_ref()?;
                    Some(format!("- {} @{} {what}: {e}", r.scenario, r.concurrency))
                })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(w, "\nErrors (first of each cell):\n\n{}", errors.join("\n"));
    }
    let _ = writeln!(w);
}

pub(super) fn similarity_section(w: &mut String, s: &similarity::Results) {
    let _ = writeln!(w, "## Similarity\n");
    let _ = writeln!(
        w,
        "FindSimilarContent: a post's 10 nearest posts (1536 dimensions, `find_similar_content`). \
         SearchByVector: the 10 nearest documents to a new vector (384 dimensions, the store's \
         statement in a transaction that sets `hnsw.iterative_scan`). Threshold -1 (no cut-off), \
         queries spread over the organizations of each class.\n"
    );
    rows_table(w, &s.rows);
    let _ = writeln!(
        w,
        "Recall@10 of the RPC's answers against an exact scan (ORDER BY the plain distance, \
         which no index serves):\n"
    );
    let _ = writeln!(
        w,
        "| RPC | class | embeddings per organization | queries | recall@10 |\n| --- | --- | ---: | ---: | ---: |"
    );
    for x in &s.recall {
        let _ = writeln!(
            w,
            "| {} | {} | {}-{} | {} | {:.3} |",
            x.rpc, x.class, x.org_items.0, x.org_items.1, x.queries, x.recall
        );
    }
    let _ = writeln!(
        w,
        "\nIndex against exact scan, largest class, concurrency 1 (SQL only):\n"
    );
    let _ = writeln!(
        w,
        "| query | index p50 ms | exact scan p50 ms | speedup |\n| --- | ---: | ---: | ---: |"
    );
    for e in &s.exact {
        let _ = writeln!(
            w,
            "| {} | {:.2} | {:.2} | {:.1}x |",
            e.what,
            ms(e.index.p50),
            ms(e.exact.p50),
            ms(e.exact.p50) / ms(e.index.p50).max(1e-9)
        );
    }
    let _ = writeln!(w, "\nPlans (EXPLAIN ANALYZE, vectors elided):\n");
    for (name, plan) in &s.plans {
        let _ = writeln!(
            w,
            "<details><summary>{name}</summary>\n\n```\n{plan}\n```\n</details>\n"
        );
    }
}

pub(super) fn metrics_section(w: &mut String, m: &metrics::Results) {
    let _ = writeln!(w, "## Metrics\n");
    let _ = writeln!(
        w,
        "GetMetricsAggregated of `impressions`; SQL: `get_metrics_aggregated(...)` as the \
         store calls it. The ordinary case rotates over the posts with hourly points.\n"
    );
    if let Some([hit, miss, bypass]) = m.cache {
        let _ = writeln!(
            w,
            "The service answers a repeated aggregation from its metrics cache (README \
             \"Metrics cache\"). Over this phase its counters went up by {hit} hits, {miss} \
             misses (the fresh reads' calls among them) and {bypass} bypasses: {:.1}% of \
             the calls were answered from memory.\n",
            100.0 * hit as f64 / ((hit + miss + bypass) as f64).max(1.0)
        );
    }
    rows_table(w, &m.rows);
    let _ = writeln!(
        w,
        "The same with `cache-control: no-cache` on every call (a fresh read: the service \
         asks the database every time, and keeps the answer), at concurrency 1 and 8:\n"
    );
    rows_table(w, &m.fresh_rows);
    let _ = writeln!(
        w,
        "Against aggregating the raw points (a plain GROUP BY over `time_series_metrics`), \
         concurrency 1; `function` is `get_metrics_aggregated` called directly. The target \
         is judged on the RPC as clients call it; fresh reads beside it:\n"
    );
    let _ = writeln!(
        w,
        "| scenario | buckets | points | RPC p50 ms | fresh read p50 ms | function p50 ms | raw GROUP BY p50 ms | speedup (raw/RPC) | speedup (raw/fresh read) | equal results |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for x in &m.raw {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2}x | {} |",
            x.scenario,
            x.buckets,
            x.points,
            ms(x.rpc.p50),
            ms(x.fresh.p50),
            ms(x.sql.p50),
            ms(x.raw.p50),
            ms(x.raw.p50) / ms(x.rpc.p50).max(1e-9),
            ms(x.raw.p50) / ms(x.fresh.p50).max(1e-9),
            match &x.equal {
                Ok(()) => "yes".to_string(),
                Err(e) => format!("**no**: {e}"),
            }
        );
    }
    let _ = writeln!(w);
}

pub(super) fn permissions_section(w: &mut String, rows: &[Row]) {
    let _ = writeln!(w, "## Permissions\n");
    let _ = writeln!(
        w,
        "Checks of the active users (every tenth user) against their organizations and one \
         they are not in; SQL: `user_has_org_permission(...)`, the store's batch statement, the \
         store's membership list. A CheckPermissions call is {} checks (items).\n",
        permissions::BATCH
    );
    rows_table(w, rows);
    let _ = writeln!(
        w,
        "A batch against unary calls (checks per second through the RPCs):\n"
    );
    let _ = writeln!(
        w,
        "| conc. | unary checks/s | batched checks/s | batch/unary |\n| ---: | ---: | ---: | ---: |"
    );
    let concurrencies: Vec<usize> = at_all(rows);
    for c in concurrencies {
        let unary = at(rows, c).find(|r| r.scenario == "UserHasOrgPermission");
        let batch = at(rows, c).find(|r| r.scenario.starts_with("CheckPermissions"));
        if let (Some(u), Some(b)) = (unary, batch) {
            let _ = writeln!(
                w,
                "| {c} | {} | {} | {} |",
                rate(u.rpc.items_per_sec()),
                rate(b.rpc.items_per_sec()),
                batch_vs_unary(rows, c).map_or("-".into(), |x| format!("{x:.1}x"))
            );
        }
    }
    let _ = writeln!(w);
}

pub(super) fn ai_section(w: &mut String, rows: &[Row]) {
    let _ = writeln!(w, "## AI context\n");
    let _ = writeln!(
        w,
        "Entries of ~400 bytes of text with metadata and an idempotency key, no embedding, each \
         committed before the reply. A stream is {} entries (items); the SQL baseline of the \
         stream is one INSERT ... SELECT FROM unnest of {} rows. Entries written are deleted \
         afterwards.\n",
        ai_context::STREAM,
        ai_context::STREAM
    );
    rows_table(w, rows);
    let _ = writeln!(w, "Committed entries per second:\n");
    let _ = writeln!(
        w,
        "| conc. | LogAiContext | single-row INSERT | LogAiContextStream | {}-row INSERT | stream/unary |\n| ---: | ---: | ---: | ---: | ---: | ---: |",
        ai_context::STREAM
    );
    for c in at_all(rows) {
        let unary = at(rows, c).find(|r| r.scenario.starts_with("LogAiContext ("));
        let stream = at(rows, c).find(|r| r.scenario.starts_with("LogAiContextStream"));
        if let (Some(u), Some(s)) = (unary, stream) {
            let sql = |r: &Row| {
                r.sql
                    .as_ref()
                    .map_or("-".into(), |s| rate(s.items_per_sec()))
            };
            let _ = writeln!(
                w,
                "| {c} | {} | {} | {} | {} | {} |",
                rate(u.rpc.items_per_sec()),
                sql(u),
                rate(s.rpc.items_per_sec()),
                sql(s),
                stream_vs_unary(rows, c).map_or("-".into(), |x| format!("{x:.1}x"))
            );
        }
    }
    let _ = writeln!(w);
}

fn at_all(rows: &[Row]) -> Vec<usize> {
    let mut c: Vec<usize> = rows.iter().map(|r| r.concurrency).collect();
    c.sort_unstable();
    c.dedup();
    c
}
