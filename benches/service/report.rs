//! The Markdown report: how it was run, on what, the load, one table per
//! scenario family, and every target of issue 4 with MET / NOT MET.

#[path = "report_tables.rs"]
mod tables;
#[path = "report_targets.rs"]
mod targets;

use std::fmt::Write as _;

use crate::drive::{Row, Timing};
use crate::load::Meta;
use crate::world::{Scale, Size};
use crate::{metrics, similarity};
use tables::{ai_section, metrics_section, permissions_section, similarity_section};
use targets::targets_section;

pub struct Report {
    pub command: String,
    pub date: String,
    pub git: String,
    pub machine: String,
    pub postgres: String,
    pub size: Size,
    pub scale: Scale,
    /// Embeddings per dimension of the largest organization.
    pub largest_org_items: usize,
    pub seed: u64,
    pub load: Meta,
    pub reused: bool,
    pub timing: Timing,
    pub concurrency: Vec<usize>,
    /// The baseline's pool pings a connection before handing it out.
    pub sql_ping: bool,
    pub grpc_socket: crate::env::GrpcSocket,
    pub service_log: String,
    pub similarity: Option<similarity::Results>,
    pub metrics: Option<metrics::Results>,
    pub permissions: Option<Vec<Row>>,
    pub ai: Option<Vec<Row>>,
    /// Highest sampled VmRSS of the service per family.
    pub rss_peaks: Vec<(String, u64)>,
    /// The service's VmHWM at the end: its peak resident memory over the run.
    pub rss_hwm: u64,
    pub total_secs: f64,
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Produced by the benchmark of issue 4 (`benches/service.rs`): seeded data \
         loaded into a private, durable PostgreSQL; every hot path driven through \
         the real gRPC stack under concurrency and, right after it, the same SQL \
         through a plain connection pool. On a small shared machine the absolute \
         numbers move from run to run; the ratios of one run are what count.\n"
    );
    let _ = writeln!(w, "- Command: `{}`", r.command);
    let _ = writeln!(w, "- Date: {}; code: {}", r.date, r.git);
    let _ = writeln!(w, "- Machine: {}", r.machine);
    let _ = writeln!(w, "- Database: {}", r.postgres);
    let _ = writeln!(
        w,
        "- Size: **{}** (seed {}): {} + {} embeddings (dimensions 1536 and 384) in 100 organizations \
         (one 40%, four 5%, five 2.5%, ninety 0.12-0.49%), {} users, {} metric points, {} AI context entries",
        r.size.name(),
        r.seed,
        r.scale.embeddings_per_dim,
        r.scale.embeddings_per_dim,
        r.scale.users,
        r.scale.metric_points(),
        r.scale.ai_entries
    );
    let _ = writeln!(
        w,
        "- Service: the release `affinity` binary as a child process (`affinity serve`, \
         {} connections to the database, log filter {}, daily metric rollups for {}); \
         clients share {} HTTP/2 channels over {}. \
         Similarity and metrics calls use the token of a member of the organization \
         (a user, as the BFF forwards it); permission and AI context calls a service_role token.",
        crate::env::POOL_SIZE,
        r.service_log,
        crate::env::ROLLUP_ZONES,
        crate::env::CHANNELS,
        match r.grpc_socket {
            crate::env::GrpcSocket::Unix => "a Unix domain socket, as the baseline reaches PostgreSQL (`--grpc-socket tcp`: TCP on 127.0.0.1)",
            crate::env::GrpcSocket::Tcp => "TCP on 127.0.0.1 (`--grpc-socket tcp`; the baseline reaches PostgreSQL over a Unix domain socket)",
        }
    );
    let _ = writeln!(
        w,
        "- Baseline: the same SQL through a sqlx pool of {} connections (the service's own budget), {}.",
        crate::env::POOL_SIZE,
        if r.sql_ping {
            "pinging a connection (a round trip) before each query, as sqlx's pool does by default (`--sql-ping`)"
        } else {
            "without the ping (a round trip) sqlx's pool makes by default before each query"
        }
    );
    let _ = writeln!(
        w,
        "- Each cell: {:.1} s of warm-up, then {:.1} s measured, at concurrency {} (tokio tasks \
         calling in a loop); p50/p99 are per call. Ratio = RPC throughput / SQL throughput. \
         Service CPU: the service process's user + system time per call (/proc/<pid>/stat), \
         the part of a call's cost that is the service's own; client CPU: the same for the \
         benchmark process (the gRPC client, or the baseline's sqlx client), which shares \
         the same CPUs.",
        r.timing.warmup.as_secs_f64(),
        r.timing.measure.as_secs_f64(),
        r.concurrency
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        w,
        "- PostgreSQL settings: fsync and synchronous_commit on (durable commits), \
         shared_buffers {}, max_wal_size 16GB.",
        crate::env::cluster_options(r.size)
            .settings
            .iter()
            .find(|(k, _)| k == "shared_buffers")
            .map_or("default", |(_, v)| v.as_str())
    );
    let _ = writeln!(w, "- Whole run: {:.0} s.\n", r.total_secs);

    targets_section(w, r);
    load_section(w, r);
    if let Some(sim) = &r.similarity {
        similarity_section(w, sim);
    }
    if let Some(m) = &r.metrics {
        metrics_section(w, m);
    }
    if let Some(p) = &r.permissions {
        permissions_section(w, p);
    }
    if let Some(a) = &r.ai {
        ai_section(w, a);
    }
    memory_section(w, r);
    s
}

fn load_section(w: &mut String, r: &Report) {
    let _ = writeln!(w, "## Data load\n");
    if r.reused {
        let _ = writeln!(
            w,
            "The data directory held a finished load of this size and seed: it was reused. \
             The times below are those of the run that loaded it.\n"
        );
    }
    let _ = writeln!(
        w,
        "Metric points cover the year before {} (hourly posts every hour, daily posts at \
         midnight UTC, the busy post every {} s).\n",
        r.load.t_end.format("%Y-%m-%d %H:%M UTC"),
        r.scale.busy_step_secs
    );
    let _ = writeln!(
        w,
        "| step | rows | seconds | rows/s |\n| --- | ---: | ---: | ---: |"
    );
    let mut total = 0.0;
    for s in &r.load.steps {
        total += s.secs;
        let rate = if s.rows > 0 && s.secs > 0.0 {
            format!("{:.0}", s.rows as f64 / s.secs)
        } else {
            "-".into()
        };
        let _ = writeln!(w, "| {} | {} | {:.1} | {rate} |", s.name, s.rows, s.secs);
    }
    let _ = writeln!(w, "| **total** | | **{total:.1}** | |\n");
}

fn memory_section(w: &mut String, r: &Report) {
    let _ = writeln!(w, "## Service memory\n");
    let _ = writeln!(
        w,
        "Resident memory of the service process (`/proc/<pid>/status`, sampled every 100 ms; \
         the service runs as its own process, so this is its memory alone).\n"
    );
    let _ = writeln!(w, "| during | peak VmRSS MB |\n| --- | ---: |");
    for (family, peak) in &r.rss_peaks {
        let _ = writeln!(w, "| {family} | {:.0} |", *peak as f64 / 1_048_576.0);
    }
    let _ = writeln!(
        w,
        "| whole run (VmHWM) | {:.0} |\n",
        r.rss_hwm as f64 / 1_048_576.0
    );
}
