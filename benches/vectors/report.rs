//! The Markdown section of a run.

use std::fmt::Write as _;

use crate::measure::{Build, Window};
use crate::procfs::mb;
use crate::Args;

pub struct Class {
    pub name: &'static str,
    pub orgs: usize,
    pub per_org: usize,
}

pub struct Side {
    pub name: String,
    pub build: Build,
    /// Loading the rows into this side's cluster (the one-node sides share
    /// one load, reported once).
    pub load_secs: Option<f64>,
    /// Per class, in the layout's order.
    pub recall: Vec<f64>,
    /// Per class: its name, the window, and CPU ms per call of the service,
    /// PostgreSQL (every node) and the benchmark.
    pub windows: Vec<(&'static str, Window, Vec<f64>)>,
    /// The service's (VmRSS, VmHWM) after the windows.
    pub rss: (u64, u64),
}

/// Supabase's published figure for 1M x 1536 (560 QPS on 8 cores at
/// accuracy 0.99), per core.
const SUPABASE_QPS_PER_CORE: f64 = 70.0;
const RECALL_TARGET: f64 = 0.95;
const RSS_TARGET_MB: f64 = 300.0;

#[allow(clippy::too_many_arguments)]
pub fn render(
    args: &Args,
    versions: &str,
    rows: u64,
    load_secs: f64,
    classes: &[Class],
    sides: &[Side],
    citus_failed: Option<&str>,
    total_secs: f64,
) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut s = String::new();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let _ = writeln!(
        s,
        "\n## Vectors: {rows} embeddings of 1536 dimensions, one node{} ({now})\n",
        if args.citus.is_some() {
            " and Citus"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "`{}`, {}; {}. Whole run {:.0} s.\n",
        crate::provenance::command_line("vectors"),
        crate::provenance::git_version(),
        crate::provenance::machine(&format!(
            "{versions}; the service, PostgreSQL (every Citus node) and the benchmark share it"
        )),
        total_secs
    );
    let _ = writeln!(
        s,
        "Synthetic vectors (topic centroids, a shared 16-dimensional subspace and noise, \
         normalized), loaded by binary COPY; queries are held-out vectors of the same \
         organizations; the truth is each query's exact 10 nearest rows in its organization \
         (float32, computed while the rows were generated). One-node load: {load_secs:.0} s \
         (COPY and VACUUM ANALYZE). HNSW built after the load with the schema's DDL (m 16, \
         ef_construction 64), `maintenance_work_mem` {} (each Citus worker {}), one parallel \
         worker; the service \
         searches in strict-order iterative scans with {}; \
         {}. \
         The one-node cluster is durable (fsync on); the Citus nodes are the tests' throwaway \
         ones (fsync off), which flatters their load and build, not their reads.\n",
        args.maintenance_work_mem,
        args.worker_mwm(),
        match args.ef_search.is_empty() {
            true => "its default candidate list (`hnsw.ef_search` at least 200)".to_string(),
            false => format!(
                "a candidate list of at least each of {:?} in turn (`AFFINITY_HNSW_EF_SEARCH`, \
                 named in each side), on the same index",
                args.ef_search
            ),
        },
        args.shared_buffers.as_ref().map_or(
            "the searches' `shared_buffers` 256MB on one node, 128MB on the Citus nodes \
             (the indexes read into the OS cache)"
                .to_string(),
            |sb| format!(
                "the searches' `shared_buffers` {sb} (one node and each Citus worker, set by \
                 a restart after the builds; the indexes read into them)"
            )
        )
    );
    s.push_str("| class | organizations | rows each | queries |\n| --- | ---: | ---: | ---: |\n");
    for c in classes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.name, c.orgs, c.per_org, args.queries
        );
    }
    s.push_str(
        "\n| side | load s | index build s | peak memory in use during the build MB | \
         index MB | service RSS MB (peak) |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for side in sides {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} ({:.1}) |",
            side.name,
            side.load_secs
                .map_or("(shared)".to_string(), |l| format!("{l:.0}")),
            side.build.secs,
            mb(side.build.peak_bytes),
            mb(side.build.index_bytes),
            mb(side.rss.0),
            mb(side.rss.1),
        );
    }
    let _ = writeln!(
        s,
        "\nSearchByVector, 10 results, {} callers for {} s per class (after a warm-up of a \
         quarter of that). QPS per core: calls per second over the machine's {cores:.0} \
         cores, which also run the service and the callers; per PostgreSQL CPU-second: \
         calls per second of PostgreSQL's own CPU.\n",
        args.concurrency, args.secs
    );
    s.push_str(
        "| side | class | recall@10 | calls/s | p50 ms | p99 ms | QPS per core | \
         calls per PostgreSQL CPU-s | PostgreSQL CPU ms/call | service CPU ms/call | \
         benchmark CPU ms/call | errors |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for side in sides {
        for (i, (class, w, cpu)) in side.windows.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {class} | {:.3} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | \
                 {:.2} | {:.2} | {} |",
                side.name,
                side.recall.get(i).copied().unwrap_or(f64::NAN),
                w.rate(),
                w.pct(0.5),
                w.pct(0.99),
                w.rate() / cores,
                1e3 / cpu[1].max(1e-9),
                cpu[1],
                cpu[0],
                cpu[2],
                w.errors
            );
        }
    }
    if let Some(e) = citus_failed {
        let _ = writeln!(s, "\nThe Citus side failed: {e}");
    }
    s.push_str("\nVerdicts of this run:\n\n");
    for side in sides {
        let worst = side.recall.iter().copied().fold(f64::INFINITY, f64::min);
        let slowest = side
            .windows
            .iter()
            .map(|(_, w, _)| w.rate() / cores)
            .fold(f64::INFINITY, f64::min);
        let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
        let _ = writeln!(
            s,
            "- {}: recall@10 >= {RECALL_TARGET} in every class: {} (lowest {worst:.3}); \
             QPS per core >= {SUPABASE_QPS_PER_CORE:.0} in every class: {} (lowest \
             {slowest:.0}); service RSS < {RSS_TARGET_MB:.0} MB: {} ({:.1} MB peak).",
            side.name,
            verdict(worst >= RECALL_TARGET),
            verdict(slowest >= SUPABASE_QPS_PER_CORE),
            verdict(mb(side.rss.1) < RSS_TARGET_MB),
            mb(side.rss.1),
        );
    }
    s
}
