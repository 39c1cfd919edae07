//! The benchmark of issue 4: every hot path of the service against the
//! database's own limit, the same SQL through a plain pool, in the same run.
//!
//! ```text
//! cargo bench --bench service -- [--size small|full] [--out BENCHMARKS.md]
//!     [--data-dir DIR] [--only similarity,metrics,permissions,ai-context]
//!     [--duration SECS] [--concurrency 1,8,32] [--seed N] [--load-only]
//! ```
//!
//! `--data-dir` keeps the loaded database between runs (a full load takes a
//! while): a directory holding a finished load of the same size and seed is
//! reused, after applying any new migrations. Compare two versions of the
//! code by running both on the same data directory.

#[path = "service/ai_context.rs"]
mod ai_context;
#[path = "service/drive.rs"]
mod drive;
#[path = "service/env.rs"]
mod env;
#[path = "service/load.rs"]
mod load;
#[path = "service/metrics.rs"]
mod metrics;
// Only part of it is used here (the backfill benchmark uses the rest).
#[path = "service/permissions.rs"]
mod permissions;
#[allow(dead_code)]
#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "service/report.rs"]
mod report;
#[path = "service/similarity.rs"]
mod similarity;
#[path = "service/world.rs"]
mod world;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use sqlx::PgPool;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use world::{Size, World};

#[derive(Debug, Parser)]
#[command(name = "service", about = "The affinity service benchmark (issue 4)")]
struct Args {
    /// small: ~1/100 of the issue's data, a few minutes; full: the issue's sizes.
    #[arg(long, value_enum, default_value = "small")]
    size: Size,
    /// Write the Markdown report to this file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the database in this directory, and reuse a finished load of the
    /// same size and seed found there (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds measured per cell (default: 2 small, 8 full), after a warm-up
    /// of a quarter of that.
    #[arg(long)]
    duration: Option<f64>,
    /// Concurrency levels (tokio tasks calling in a loop). The targets are
    /// judged at 8 (and 1 for latencies).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Only these scenario families (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Family>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The baseline's pool pings a connection before handing it out, as
    /// sqlx's pool does by default (a round trip per query). Off by default:
    /// the baseline is the database's limit, and the service skips that ping
    /// for a connection that has just served a call.
    #[arg(long)]
    sql_ping: bool,
    /// The socket the gRPC clients reach the service on: a Unix domain
    /// socket (the default: the baseline reaches PostgreSQL over one), or
    /// TCP on 127.0.0.1.
    #[arg(long, value_enum, default_value = "unix")]
    grpc_socket: env::GrpcSocket,
    /// Load the data (into --data-dir) and stop.
    #[arg(long)]
    load_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Family {
    Similarity,
    Metrics,
    Permissions,
    AiContext,
}

/// What every scenario needs.
pub struct Ctx {
    pub world: Arc<World>,
    pub channels: Vec<Channel>,
    /// The baseline: a plain pool of the service's size.
    pub pool: PgPool,
    pub timing: drive::Timing,
    pub concurrency: Vec<usize>,
    /// The end of the metric data.
    pub t_end: DateTime<Utc>,
    pub service_auth: MetadataValue<Ascii>,
    /// The service's Prometheus endpoint.
    pub service_metrics: std::net::SocketAddr,
}

impl Ctx {
    /// The token of organization `org`'s owner (a member: reads are allowed).
    pub fn owner_auth(&self, org: usize) -> Result<MetadataValue<Ascii>> {
        env::bearer(self.world.user_id(self.world.members[org][0]), false)
    }
}

/// Round-robin over the shared channels.
pub fn pick(channels: &[Channel], i: u64) -> Channel {
    channels[i as usize % channels.len()].clone()
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    // Now: the code being measured is what was built, not what is edited later.
    let git = provenance::git_version();
    let world = Arc::new(World::new(args.seed, args.size));
    let temp;
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("affinity-bench-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    eprintln!("data directory: {}", dir.display());
    let mut cluster = env::start_cluster(&dir, args.size)?;
    let url = cluster.url(env::DATABASE);

    // A finished load of this size is reused; anything else starts over.
    env::create_database(&cluster, false).await?;
    let mut pool = env::connect(&url, 2, true).await?;
    let mut meta = load::existing(&pool, &world).await?;
    if meta.is_none() {
        pool.close().await;
        env::create_database(&cluster, true).await?;
        pool = env::connect(&url, 2, true).await?;
    }
    affinity::db::migrate::run(&pool).await.context(
        "migrating the benchmark database (a migration changed since this data directory \
         was loaded? use a fresh --data-dir)",
    )?;
    let reused = meta.is_some();
    let meta = match meta.take() {
        Some(m) => {
            eprintln!("reusing the {} load in {}", args.size.name(), dir.display());
            m
        }
        None => {
            eprintln!("loading the {} data set", args.size.name());
            load::load(&pool, world.clone()).await?
        }
    };
    pool.close().await;
    if args.load_only {
        cluster.stop()?;
        return Ok(());
    }

    let service = env::Service::start(&url, &dir, args.grpc_socket).await?;
    let sampler = env::RssSampler::start(service.pid);
    let _ = drive::SERVICE_PID.set(service.pid);
    let measure = Duration::from_secs_f64(args.duration.unwrap_or(match args.size {
        Size::Small => 2.0,
        Size::Full => 8.0,
    }));
    let ctx = Ctx {
        world: world.clone(),
        channels: service.channels.clone(),
        pool: env::connect(&url, env::POOL_SIZE, args.sql_ping).await?,
        timing: drive::Timing {
            warmup: (measure / 4).max(Duration::from_millis(500)),
            measure,
        },
        concurrency: args.concurrency.clone(),
        t_end: meta.t_end,
        service_auth: env::bearer(Uuid::nil(), true)?,
        service_metrics: service.metrics_addr,
    };

    let wanted = |f: Family| args.only.is_empty() || args.only.contains(&f);
    let mut peaks = Vec::new();
    sampler.take_peak();
    let mut peak = |name: &str| peaks.push((name.to_string(), sampler.take_peak()));
    let similarity = if wanted(Family::Similarity) {
        eprintln!("similarity");
        let r = similarity::run(&ctx).await?;
        peak("similarity");
        Some(r)
    } else {
        None
    };
    let metrics = if wanted(Family::Metrics) {
        eprintln!("metrics");
        let r = metrics::run(&ctx).await?;
        peak("metrics");
        Some(r)
    } else {
        None
    };
    let permissions = if wanted(Family::Permissions) {
        eprintln!("permissions");
        let r = permissions::run(&ctx).await?;
        peak("permissions");
        Some(r)
    } else {
        None
    };
    let ai = if wanted(Family::AiContext) {
        eprintln!("AI context");
        let r = ai_context::run(&ctx).await?;
        peak("AI context");
        Some(r)
    } else {
        None
    };
    let rss_hwm = procfs::memory(service.pid).map_or(0, |m| m.1);
    let postgres = postgres_version(&ctx.pool).await?;
    service.stop().await?;
    ctx.pool.close().await;
    cluster.stop()?;

    let report = report::Report {
        command: provenance::command_line("service"),
        date: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        git,
        machine: provenance::machine(
            "shared with other work, client, service and PostgreSQL all on it",
        ),
        postgres,
        size: args.size,
        scale: world.scale.clone(),
        largest_org_items: world.items_of(0).len(),
        seed: args.seed,
        load: meta,
        reused,
        timing: ctx.timing,
        concurrency: args.concurrency.clone(),
        sql_ping: args.sql_ping,
        grpc_socket: args.grpc_socket,
        service_log: std::env::var("RUST_LOG")
            .map(|v| format!("`RUST_LOG={v}`"))
            .unwrap_or_else(|_| "`info,sqlx=warn` (the default: a line per refused or failed call, none per successful one)".into()),
        similarity,
        metrics,
        permissions,
        ai,
        rss_peaks: peaks,
        rss_hwm,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let text = report::markdown(&report);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("report written to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn postgres_version(pool: &PgPool) -> Result<String> {
    let (version, vector): (String, Option<String>) = sqlx::query_as(
        "SELECT current_setting('server_version'),
                (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
    )
    .fetch_one(pool)
    .await?;
    Ok(format!(
        "PostgreSQL {version}, pgvector {}",
        vector.unwrap_or_else(|| "?".into())
    ))
}
