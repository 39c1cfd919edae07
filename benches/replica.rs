//! Reads on a streaming replica (issue 22): the release service reading on
//! the primary only, against the same service with
//! `AFFINITY_READ_DATABASE_URL` on a real streaming replica of it
//! (`pg_basebackup -R`), in one run on one machine.
//!
//! ```text
//! cargo bench --bench replica -- [--concurrency 16] [--secs 10] [--rounds 3]
//!     [--pool 16] [--out BENCHMARKS.md]
//! ```
//!
//! Setup (untimed): a private durable PostgreSQL with a migrated database
//! and a streaming replica of it, one organization with 2,000 embeddings
//! (384 dimensions), 50 posts with an hourly point for 7 days and 20
//! members, written through the service; the replica has replayed it all
//! before the first window.
//!
//! Each round runs both sides, alternating which goes first: one service
//! is started (`AFFINITY_DB_MAX_CONNECTIONS` = `--pool`; with the replica,
//! its read pool as large), `--concurrency` callers call it for `--secs`
//! (after a warm-up of a quarter of that), then it is stopped. Calls rotate
//! over four reads the replica may serve: SearchByVector,
//! GetMetricsAggregated (hourly up to now: not cached), ListMembers and
//! GetTopEntities (likes over 7 days). The service's own counters
//! (`affinity_db_reads_total{database}`) over the window say where the
//! reads went. CPU time of the service, both PostgreSQL servers and the
//! benchmark over the measured seconds, per call.

#[path = "pooler/drive.rs"]
#[allow(dead_code)]
mod drive;
#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "replica/report.rs"]
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
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tonic::transport::Endpoint;
use uuid::Uuid;

use drive::{Load, Mix, Side};
use report::Measured;

#[derive(Debug, Parser)]
#[command(
    name = "replica",
    about = "Reads with a streaming replica against without"
)]
pub struct Args {
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// AFFINITY_DB_MAX_CONNECTIONS (the service's default).
    #[arg(long, default_value_t = 16)]
    pub pool: u32,
    /// Append the Markdown section here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

const ON_REPLICA: &str = "affinity_db_reads_total{database=\"replica\"}";
const ON_PRIMARY: &str = "affinity_db_reads_total{database=\"primary\"}";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("affinity-replica-")
        .tempdir()?;
    let dir = temp.path().to_path_buf();
    eprintln!("data directory: {}", dir.display());
    let (cluster, url, pool, versions) = world::migrated_database(&dir, "reads").await?;
    let replica = affinity_testkit::cluster::streaming_replica_of(&cluster)?;
    let replica_url = replica.url("reads");
    let settings = |side: Side| service::Settings {
        database_url: url.clone(),
        embedding_url: String::new(),
        model: String::new(),
        dimensions: 0,
        batch: 0,
        workers: 0,
        dir: dir.clone(),
        env: [("AFFINITY_DB_MAX_CONNECTIONS", args.pool.to_string())]
            .into_iter()
            .chain(
                (side == Side::WithReplica)
                    .then(|| ("AFFINITY_READ_DATABASE_URL", replica_url.clone())),
            )
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };

    let (seeder, _) = service::Service::start(&settings(Side::PrimaryOnly), "seed").await?;
    let channel = Endpoint::from_shared(format!("http://{}", seeder.grpc_addr))?
        .connect()
        .await?;
    let owner = Uuid::new_v4();
    let secret = service::SECRET.as_bytes();
    let token = affinity::auth::mint(secret, owner, "authenticated", 24 * 3600)?;
    let org = world::organization(&channel, &token, owner, "replica").await?;
    let data = std::sync::Arc::new(drive::seed(&channel, org, &token).await?);
    seeder.stop().await?;
    caught_up(&pool, &replica_url).await?;

    let postmasters = [cluster.data_dir(), replica.data_dir()]
        .iter()
        .map(|d| procfs::postmaster_pid(d).context("postmaster.pid"))
        .collect::<Result<Vec<u32>>>()?;
    let load = Load {
        concurrency: args.concurrency,
        secs: args.secs,
        mix: Mix::Reads,
    };
    let mut windows: Vec<Measured> = Vec::new();
    for round in 0..args.rounds {
        let order = match round % 2 {
            0 => [Side::PrimaryOnly, Side::WithReplica],
            _ => [Side::WithReplica, Side::PrimaryOnly],
        };
        for side in order {
            let name = format!("{}-{round}", side.name().replace(' ', "-"));
            let (svc, _) = service::Service::start(&settings(side), &name).await?;
            let pids = drive::Pids {
                services: vec![svc.pid],
                bouncer: None,
                postmasters: postmasters.clone(),
            };
            let before = reads(&svc).await?;
            let window = drive::window(&load, side, &[svc.grpc_addr], &data, &pool, &pids).await?;
            let after = reads(&svc).await?;
            let m = Measured {
                window,
                on_replica: after.0 - before.0,
                on_primary: after.1 - before.1,
            };
            eprintln!(
                "round {round} {}: {:.0} calls/s, {} errors, {:.0} reads on the replica",
                side.name(),
                m.window.rate(),
                m.window.errors,
                m.on_replica,
            );
            windows.push(m);
            svc.stop().await?;
        }
    }
    let section = report::render(&args, &windows, &versions, started.elapsed().as_secs_f64());
    world::emit(&section, args.out.as_deref())?;
    drop(replica);
    drop(cluster);
    Ok(())
}

/// The service's reads so far: (on the replica, on the primary); 0 before
/// its first (the counters appear with it).
async fn reads(svc: &service::Service) -> Result<(f64, f64)> {
    Ok((
        svc.sample(ON_REPLICA).await.unwrap_or(0.0),
        svc.sample(ON_PRIMARY).await.unwrap_or(0.0),
    ))
}

/// Waits until the replica has replayed everything the primary wrote.
async fn caught_up(primary: &sqlx::PgPool, replica_url: &str) -> Result<()> {
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(primary)
        .await?;
    let replica = setup::connect(replica_url, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: bool =
            sqlx::query_scalar("SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)")
                .bind(&target)
                .fetch_one(&replica)
                .await?;
        if done {
            replica.close().await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the replica did not replay up to {target} within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
