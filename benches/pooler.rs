//! Behind a transaction-mode pooler (issue 22): replicas of the release
//! service through one real PgBouncer (Debian's 1.18, transaction mode)
//! with a fixed number of server connections, against the same replicas
//! connected directly (each with its own pool), in one run.
//!
//! ```text
//! cargo bench --bench pooler -- [--replicas 4] [--server-connections 20]
//!     [--pool 16] [--concurrency 32] [--secs 10] [--rounds 3] [--out BENCHMARKS.md]
//! ```
//!
//! Setup (untimed): a private durable PostgreSQL with a migrated database,
//! PgBouncer before it (a Unix socket only), one organization with 2,000
//! embeddings (384 dimensions), 50 posts with an hourly point for 7 days
//! and 20 members, written through the service.
//!
//! Each round runs both sides, alternating which goes first: the side's
//! `--replicas` services are started (direct: `DATABASE_URL` is the
//! database, `AFFINITY_DB_MAX_CONNECTIONS` = `--pool` each; pooled:
//! `DATABASE_URL` is PgBouncer's, `AFFINITY_DIRECT_DATABASE_URL` the
//! database), `--concurrency` callers spread over them call for `--secs`
//! (after a warm-up of a quarter of that), then the services are stopped.
//! Calls rotate over four that reach the database: SearchByVector,
//! GetMetricsAggregated (hourly over 7 days, `cache-control: no-cache`),
//! ListMembers and RecordMetrics (one point). PostgreSQL's client backends
//! on the database are sampled every 200 ms (the benchmark's own pool
//! left out): with only one side's services running, their peak is that
//! side's server connections (the pooled side's include its replicas'
//! small pools on the direct URL). The CPU time of the services, PgBouncer,
//! PostgreSQL and the benchmark itself over the measured seconds, per call.

#[path = "pooler/drive.rs"]
#[allow(dead_code)]
mod drive;
#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "pooler/report.rs"]
mod report;
#[path = "backfill/service.rs"]
#[allow(dead_code)]
mod service;
#[path = "backfill/setup.rs"]
#[allow(dead_code)]
mod setup;
#[path = "common/world.rs"]
mod world;

use std::path::PathBuf;
use std::time::Instant;

use affinity_testkit::pgbouncer::PgBouncer;
use anyhow::{Context, Result};
use clap::Parser;
use tonic::transport::Endpoint;
use uuid::Uuid;

use drive::{Load, Mix, Side, Window};

#[derive(Debug, Parser)]
#[command(name = "pooler", about = "Replicas through PgBouncer against direct")]
pub struct Args {
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// PgBouncer's server connections (default_pool_size).
    #[arg(long, default_value_t = 20)]
    pub server_connections: u32,
    /// AFFINITY_DB_MAX_CONNECTIONS of every replica (the service's default).
    #[arg(long, default_value_t = 16)]
    pub pool: u32,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Append the Markdown section here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("affinity-pooler-")
        .tempdir()?;
    let dir = temp.path().to_path_buf();
    eprintln!("data directory: {}", dir.display());
    let (cluster, url, pool, versions) = world::migrated_database(&dir, "pooler").await?;
    let bouncer = PgBouncer::start(cluster.socket_dir(), args.server_connections).await?;
    let settings = |side: Side| service::Settings {
        database_url: match side {
            Side::Pooled => bouncer.url("pooler"),
            _ => url.clone(),
        },
        embedding_url: String::new(),
        model: String::new(),
        dimensions: 0,
        batch: 0,
        workers: 0,
        dir: dir.clone(),
        env: match side {
            Side::Direct | Side::PrimaryOnly | Side::WithReplica => vec![(
                "AFFINITY_DB_MAX_CONNECTIONS".to_string(),
                args.pool.to_string(),
            )],
            Side::Pooled => vec![
                (
                    "AFFINITY_DB_MAX_CONNECTIONS".to_string(),
                    args.pool.to_string(),
                ),
                ("AFFINITY_DIRECT_DATABASE_URL".to_string(), url.clone()),
            ],
        },
    };

    // The data, through one direct replica.
    let (seeder, _) = service::Service::start(&settings(Side::Direct), "seed").await?;
    let channel = Endpoint::from_shared(format!("http://{}", seeder.grpc_addr))?
        .connect()
        .await?;
    let owner = Uuid::new_v4();
    let secret = service::SECRET.as_bytes();
    let token = affinity::auth::mint(secret, owner, "authenticated", 24 * 3600)?;
    let org = world::organization(&channel, &token, owner, "pooler").await?;
    let data = std::sync::Arc::new(drive::seed(&channel, org, &token).await?);
    seeder.stop().await?;

    let postmaster = procfs::postmaster_pid(cluster.data_dir()).context("postmaster.pid")?;
    let load = Load {
        concurrency: args.concurrency,
        secs: args.secs,
        mix: Mix::Pooler,
    };
    let mut windows: Vec<Window> = Vec::new();
    for round in 0..args.rounds {
        let order = match round % 2 {
            0 => [Side::Direct, Side::Pooled],
            _ => [Side::Pooled, Side::Direct],
        };
        for side in order {
            let mut replicas = Vec::new();
            for i in 0..args.replicas {
                let name = format!("{}-{round}-{i}", side.name());
                replicas.push(service::Service::start(&settings(side), &name).await?.0);
            }
            let addrs: Vec<_> = replicas.iter().map(|r| r.grpc_addr).collect();
            let pids = drive::Pids {
                services: replicas.iter().map(|r| r.pid).collect(),
                bouncer: (side == Side::Pooled).then(|| bouncer.pid()).flatten(),
                postmasters: vec![postmaster],
            };
            let w = drive::window(&load, side, &addrs, &data, &pool, &pids).await?;
            eprintln!(
                "round {round} {}: {:.0} calls/s, {} errors, peak {} server connections",
                side.name(),
                w.rate(),
                w.errors,
                w.peak_connections
            );
            windows.push(w);
            for r in replicas {
                r.stop().await?;
            }
        }
    }
    let section = report::render(&args, &windows, &versions, started.elapsed().as_secs_f64());
    world::emit(&section, args.out.as_deref())?;
    drop(bouncer);
    drop(cluster);
    Ok(())
}
