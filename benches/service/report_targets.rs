//! The targets of issue 4, each with what was measured and MET / NOT MET.

use std::fmt::Write as _;

use super::Report;
use crate::drive::{ms, Row};
use crate::world::Size;

struct Target {
    name: &'static str,
    measured: String,
    met: Option<bool>,
}

pub(super) fn targets_section(w: &mut String, r: &Report) {
    let _ = writeln!(w, "## Targets (issue 4)\n");
    let _ = writeln!(w, "| target | measured | status |\n| --- | --- | --- |");
    for t in targets(r) {
        let status = match t.met {
            Some(true) => "MET",
            Some(false) => "**NOT MET**",
            None => "not measured",
        };
        let _ = writeln!(w, "| {} | {} | {status} |", t.name, t.measured);
    }
    if r.size == Size::Small {
        let _ = writeln!(
            w,
            "\nAt the small size an organization holds at most {} embeddings per dimension: \
             the planner rightly scans them exactly, so recall is trivially 1 and the index \
             cannot beat an exact scan. Those two targets mean something at the full size only.",
            r.largest_org_items
        );
    }
    let _ = writeln!(w);
}

pub(super) fn at(rows: &[Row], c: usize) -> impl Iterator<Item = &Row> {
    rows.iter().filter(move |r| r.concurrency == c)
}

/// The lowest ratio at concurrency 8, and where.
fn min_ratio(rows: &[Row]) -> Option<(f64, String)> {
    at(rows, 8)
        .filter_map(|r| r.ratio().map(|x| (x, r.scenario.clone())))
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

fn targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    let ratio_target = |name, rows: Option<&Vec<Row>>, min: f64| {
        let found = rows.and_then(|rows| min_ratio(rows));
        Target {
            name,
            measured: found
                .as_ref()
                .map_or("-".into(), |(x, s)| format!("lowest {x:.2} ({s})")),
            met: found.map(|(x, _)| x >= min),
        }
    };
    let sim = r.similarity.as_ref();
    t.push(ratio_target(
        "Similarity RPCs at concurrency 8: ≥ 0.85 of direct SQL throughput",
        sim.map(|s| &s.rows),
        0.85,
    ));
    // Judged on fresh reads (every call reads the database); what a
    // repeating dashboard gets from the cache is beside.
    let mut metrics_ratio = ratio_target(
        "Metrics RPCs at concurrency 8, fresh reads (no-cache): ≥ 0.85 of direct SQL throughput",
        r.metrics.as_ref().map(|m| &m.fresh_rows),
        0.85,
    );
    if let Some((x, s)) = r.metrics.as_ref().and_then(|m| min_ratio(&m.rows)) {
        metrics_ratio.measured += &format!("; cached, as clients call: lowest {x:.2} ({s})");
    }
    t.push(metrics_ratio);
    let recall = sim.and_then(|s| {
        s.recall
            .iter()
            .min_by(|a, b| a.recall.total_cmp(&b.recall))
            .map(|x| (x.recall, format!("{}, {}", x.rpc, x.class)))
    });
    t.push(Target {
        name: "Recall@10 ≥ 0.95 in every organization size class",
        measured: recall
            .as_ref()
            .map_or("-".into(), |(x, s)| format!("lowest {x:.3} ({s})")),
        met: recall.map(|(x, _)| x >= 0.95),
    });
    let exact = sim.and_then(|s| {
        let speedup = s
            .exact
            .iter()
            .map(|e| (ms(e.exact.p50) / ms(e.index.p50).max(1e-9), e.what.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        let by_index = s
            .plans
            .iter()
            .filter(|(name, _)| name.contains("largest"))
            .all(|(_, plan)| plan.contains("embeddings_hnsw_"));
        Some((speedup, by_index))
    });
    t.push(Target {
        name:
            "Largest class served by the index, ≥ 10x faster than exact scan (p50, concurrency 1)",
        measured: exact.as_ref().map_or("-".into(), |((x, s), idx)| {
            format!(
                "lowest {x:.1}x ({s}); plans {} the HNSW index",
                if *idx { "use" } else { "do not all use" }
            )
        }),
        met: exact.map(|((x, _), idx)| x >= 10.0 && idx),
    });
    let raw = r.metrics.as_ref().and_then(|m| {
        m.raw
            .iter()
            .filter(|x| x.scenario.starts_with("daily") || x.scenario.starts_with("monthly"))
            .map(|x| {
                let cached = ms(x.raw.p50) / ms(x.rpc.p50).max(1e-9);
                let fresh = ms(x.raw.p50) / ms(x.fresh.p50).max(1e-9);
                (fresh, cached, x.scenario.clone())
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|worst| (worst, m.raw.iter().all(|x| x.equal.is_ok())))
    });
    t.push(Target {
        name: "Metrics: daily/90 days and monthly/year, fresh reads, ≥ 10x faster than raw aggregation, equal results",
        measured: raw.as_ref().map_or("-".into(), |((x, cached, s), eq)| {
            format!(
                "lowest {x:.2}x ({s}; cached {cached:.2}x); results {}",
                if *eq { "equal" } else { "DIFFER" }
            )
        }),
        met: raw.map(|((x, _, _), eq)| x >= 10.0 && eq),
    });
    let perms = r.permissions.as_ref();
    let unary = perms.and_then(|p| {
        at(p, 8)
            .find(|r| r.scenario == "UserHasOrgPermission")
            .and_then(Row::ratio)
    });
    t.push(Target {
        name: "Permissions: ≥ 2x the direct-SQL throughput (UserHasOrgPermission, concurrency 8)",
        measured: unary.map_or("-".into(), |x| format!("{x:.2}x")),
        met: unary.map(|x| x >= 2.0),
    });
    let batch = perms.and_then(|p| batch_vs_unary(p, 1));
    t.push(Target {
        name: "CheckPermissions: a batch of 100 ≥ 20x faster than 100 unary calls (concurrency 1)",
        measured: batch.map_or("-".into(), |x| format!("{x:.1}x")),
        met: batch.map(|x| x >= 20.0),
    });
    let ai = r.ai.as_ref();
    let stream = ai.and_then(|a| stream_vs_unary(a, 8));
    t.push(Target {
        name: "AI context: stream ≥ 10x the throughput of unary calls (concurrency 8)",
        measured: stream.map_or("-".into(), |x| format!("{x:.1}x")),
        met: stream.map(|x| x >= 10.0),
    });
    let best = ai.and_then(|a| {
        a.iter()
            .filter(|r| r.scenario.starts_with("LogAiContextStream"))
            .map(|r| (r.rpc.items_per_sec(), r.concurrency))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    });
    t.push(Target {
        name: "AI context: stream ≥ 10,000 committed entries/s (best concurrency)",
        measured: best.map_or("-".into(), |(x, c)| format!("{x:.0}/s at concurrency {c}")),
        met: best.map(|(x, _)| x >= 10_000.0),
    });
    let mb = r.rss_hwm as f64 / 1_048_576.0;
    t.push(Target {
        name: "Service resident memory < 300 MB under the full benchmark",
        measured: format!(
            "peak {mb:.0} MB (VmHWM){}",
            if r.size == Size::Full {
                ""
            } else {
                "; small size only, the target is for the full size"
            }
        ),
        met: (r.rss_hwm > 0).then_some(mb < 300.0),
    });
    t
}

/// Checks per second in batches of 100 over checks per second in unary calls.
pub(super) fn batch_vs_unary(rows: &[Row], c: usize) -> Option<f64> {
    let unary = at(rows, c).find(|r| r.scenario == "UserHasOrgPermission")?;
    let batch = at(rows, c).find(|r| r.scenario.starts_with("CheckPermissions"))?;
    let u = unary.rpc.items_per_sec();
    (u > 0.0).then(|| batch.rpc.items_per_sec() / u)
}

pub(super) fn stream_vs_unary(rows: &[Row], c: usize) -> Option<f64> {
    let unary = at(rows, c).find(|r| r.scenario.starts_with("LogAiContext ("))?;
    let stream = at(rows, c).find(|r| r.scenario.starts_with("LogAiContextStream"))?;
    let u = unary.rpc.items_per_sec();
    (u > 0.0).then(|| stream.rpc.items_per_sec() / u)
}
