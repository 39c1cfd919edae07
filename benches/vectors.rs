//! A million vectors (issue 23): `--size` embeddings of 1536 dimensions
//! (half in one organization, 1% in each of 20, the rest in organizations of
//! 0.1%) searched through the service's SearchByVector, on one node with
//! each `--storage` index type side by side, then (with `--citus`) the same
//! rows on a real Citus cluster of a coordinator and two workers.
//!
//! ```text
//! cargo bench --bench vectors -- [--size 200000] [--storage vector,halfvec]
//!     [--citus halfvec] [--queries 50] [--concurrency 8] [--secs 10]
//!     [--maintenance-work-mem 4GB] [--worker-maintenance-work-mem 4GB]
//!     [--shared-buffers 8GB] [--out BENCHMARKS.md]
//! ```
//!
//! Per side: the HNSW index built after the load (the schema's own DDL),
//! timed, with the machine's memory in use sampled; recall@10 of the
//! service's answers against the exact nearest rows (computed while the
//! rows are generated); then one window per size class of `--concurrency`
//! callers, with the CPU of the service, PostgreSQL and the benchmark.

#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "backfill/service.rs"]
#[allow(dead_code)]
mod service;
#[path = "backfill/setup.rs"]
#[allow(dead_code)]
mod setup;
#[path = "common/world.rs"]
mod world;

#[path = "vectors/citus.rs"]
mod citus;
#[path = "vectors/data.rs"]
mod data;
#[path = "vectors/measure.rs"]
mod measure;
#[path = "vectors/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use data::{Layout, Model, Query};
use report::{Class, Side};

#[derive(Debug, Parser)]
#[command(name = "vectors", about = "A million 1536-dimensional vectors")]
pub struct Args {
    #[arg(long, default_value_t = 200_000)]
    pub size: usize,
    /// Index types measured on one node, side by side (vector, halfvec).
    #[arg(long, value_delimiter = ',', default_value = "vector,halfvec")]
    pub storage: Vec<String>,
    /// Also on a two-worker Citus cluster, with this index type.
    #[arg(long)]
    pub citus: Option<String>,
    /// Queries per size class (recall, and the windows cycle over them).
    #[arg(long, default_value_t = 50)]
    pub queries: usize,
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    #[arg(long, default_value = "4GB")]
    pub maintenance_work_mem: String,
    /// Each Citus worker's (default: `--maintenance-work-mem`): both
    /// workers build at once, each reserving it whole.
    #[arg(long)]
    pub worker_maintenance_work_mem: Option<String>,
    /// The searches' `shared_buffers` (one node, and each Citus worker),
    /// set by a restart after the builds, the indexes then read into them
    /// (default: the clusters' own, and the indexes in the OS cache only).
    #[arg(long)]
    pub shared_buffers: Option<String>,
    /// The service's smallest HNSW candidate lists (`AFFINITY_HNSW_EF_SEARCH`)
    /// to measure, each side once per value on the same index (default: the
    /// service's own).
    #[arg(long, value_delimiter = ',')]
    pub ef_search: Vec<i64>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the one-node data directory (printed) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Append the Markdown section here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Args {
    pub fn worker_mwm(&self) -> &str {
        self.worker_maintenance_work_mem
            .as_deref()
            .unwrap_or(&self.maintenance_work_mem)
    }

    /// Each service the sides are measured with: its candidate list floor
    /// (None: the service's default).
    pub fn ef_searches(&self) -> Vec<Option<i64>> {
        match self.ef_search.is_empty() {
            true => vec![None],
            false => self.ef_search.iter().copied().map(Some).collect(),
        }
    }
}

/// A service on `url`, a channel to it, and the organizations it made.
pub struct Serving {
    pub svc: service::Service,
    pub channel: Channel,
}

pub async fn serve(url: &str, dir: &Path, name: &str, ef: Option<i64>) -> Result<Serving> {
    let settings = service::Settings {
        database_url: url.to_string(),
        embedding_url: String::new(),
        model: String::new(),
        dimensions: 0,
        batch: 0,
        workers: 0,
        dir: dir.to_path_buf(),
        env: ef
            .map(|v| vec![("AFFINITY_HNSW_EF_SEARCH".to_string(), v.to_string())])
            .unwrap_or_default(),
    };
    let (svc, _) = service::Service::start(&settings, name).await?;
    let channel = Endpoint::from_shared(format!("http://{}", svc.grpc_addr))?
        .connect()
        .await?;
    Ok(Serving { svc, channel })
}

/// Every organization of the layout, through the service.
pub async fn organizations(s: &Serving, token: &str, owner: Uuid, n: usize) -> Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(world::organization(&s.channel, token, owner, &format!("v{i}")).await?);
    }
    Ok(ids)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("affinity-vectors-")
        .tempdir()?;
    let dir = temp.path().to_path_buf();
    eprintln!("data directory: {}", dir.display());
    let layout = data::layout(args.size);
    let model = Arc::new(Model::new(args.seed, &layout));
    let owner = Uuid::new_v4();
    let token = affinity::auth::mint(
        service::SECRET.as_bytes(),
        owner,
        "authenticated",
        24 * 3600,
    )?;

    let (mut cluster, url, pool, versions) = world::migrated_database(&dir, "vectors0").await?;
    sqlx::query("DROP INDEX embeddings_hnsw_1536")
        .execute(&pool)
        .await?;
    let seeder = serve(&url, &dir, "seed", None).await?;
    let org_ids = organizations(&seeder, &token, owner, layout.sizes.len()).await?;
    seeder.svc.stop().await?;
    let t = Instant::now();
    let (rows, queries) = data::load(
        &pool,
        model.clone(),
        layout.sizes.clone(),
        org_ids.clone(),
        data::queries(&model, &layout, args.queries),
    )
    .await
    .context("loading the vectors")?;
    let load_secs = t.elapsed().as_secs_f64();
    eprintln!("loaded {rows} rows in {load_secs:.0} s");
    pool.close().await;

    // Every index type in a database of its own, a copy of the loaded one
    // made before any index (a file copy: no WAL).
    let admin = setup::connect(&cluster.url("postgres"), 1).await?;
    for i in 1..args.storage.len() {
        // Autovacuum may be analyzing the loaded table: a copy needs it alone.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = 'vectors0' AND pid <> pg_backend_pid()",
        )
        .execute(&admin)
        .await?;
        sqlx::query(&format!(
            "CREATE DATABASE vectors{i} TEMPLATE vectors0 STRATEGY FILE_COPY"
        ))
        .execute(&admin)
        .await
        .context("copying the loaded database")?;
    }
    let mut dbs = Vec::new();
    for (i, storage) in args.storage.iter().enumerate() {
        let db = format!("vectors{i}");
        let pool = setup::connect(&cluster.url(&db), 2).await?;
        eprintln!("building the {storage} index");
        let build = measure::build_index(&pool, storage, &args.maintenance_work_mem).await?;
        eprintln!("  {:.0} s", build.secs);
        pool.close().await;
        dbs.push((db, storage.clone(), build));
    }
    admin.close().await;
    if let Some(sb) = &args.shared_buffers {
        cluster.stop()?;
        cluster.start_stopped(&[("shared_buffers".into(), sb.clone())])?;
    }
    let postmaster = procfs::postmaster_pid(cluster.data_dir()).context("postmaster.pid")?;
    let mut sides = Vec::new();
    for (db, storage, build) in dbs {
        let url = cluster.url(&db);
        let pool = setup::connect(&url, 1).await?;
        sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            .execute(&pool)
            .await?;
        measure::prewarm(&pool, args.shared_buffers.is_some()).await?;
        pool.close().await;
        let name = format!("one node, {storage} index");
        let measured = measure_sides(
            &args,
            &url,
            &dir,
            &name,
            build,
            &token,
            &org_ids,
            &queries,
            &layout,
            &[postmaster],
        )
        .await?;
        sides.extend(measured);
    }
    drop(cluster);
    if !args.keep {
        // The disk for the Citus copy.
        std::fs::remove_dir_all(dir.join("pg"))?;
    }

    // A failure on Citus still reports the one-node sides, and says so.
    let mut failed = None;
    if let Some(storage) = &args.citus {
        match citus::on_citus(
            &args, storage, &dir, &model, &layout, &queries, &token, owner,
        )
        .await
        {
            Ok(more) => sides.extend(more),
            Err(e) => {
                eprintln!("on Citus: {e:#}");
                failed = Some(format!("{e:#}"));
            }
        }
    }
    let classes: Vec<Class> = layout
        .classes
        .iter()
        .map(|c| Class {
            name: c.name,
            orgs: c.orgs.len(),
            per_org: c.per_org,
        })
        .collect();
    let section = report::render(
        &args,
        &versions,
        rows,
        load_secs,
        &classes,
        &sides,
        failed.as_deref(),
        started.elapsed().as_secs_f64(),
    );
    world::emit(&section, args.out.as_deref())?;
    if args.keep {
        eprintln!("kept {}", temp.keep().display());
    }
    Ok(())
}

/// Each side of `name` once per candidate list floor of `--ef-search` (a
/// service started for each), on the same index.
#[allow(clippy::too_many_arguments)]
pub async fn measure_sides(
    args: &Args,
    url: &str,
    dir: &Path,
    name: &str,
    build: measure::Build,
    token: &str,
    org_ids: &[Uuid],
    queries: &[Query],
    layout: &Layout,
    postmasters: &[u32],
) -> Result<Vec<Side>> {
    let mut sides = Vec::new();
    for ef in args.ef_searches() {
        let name = match ef {
            Some(v) => format!("{name}, ef_search {v}"),
            None => name.to_string(),
        };
        let s = serve(url, dir, &name.replace([' ', ','], "-"), ef).await?;
        let recall =
            measure::recall(&s.channel, token, org_ids, queries, layout.classes.len()).await?;
        eprintln!("{name}: recall@10 {recall:?}");
        let mut windows = Vec::new();
        for (c, class) in layout.classes.iter().enumerate() {
            let asked: Vec<&Query> = queries.iter().filter(|q| q.class == c).collect();
            let cpu = || -> Option<[f64; 3]> {
                let pg: f64 = postmasters
                    .iter()
                    .map(|&p| procfs::postgres_cpu_secs(p))
                    .sum::<Option<f64>>()?;
                Some([
                    procfs::cpu_secs(s.svc.pid)?,
                    pg,
                    procfs::cpu_secs(std::process::id())?,
                ])
            };
            let before = cpu().context("reading CPU times")?;
            let w = measure::window(
                &s.channel,
                token,
                org_ids,
                &asked,
                args.concurrency,
                args.secs,
            )
            .await?;
            let after = cpu().context("reading CPU times")?;
            // The window's warm-up is a quarter of its measured seconds: scale
            // the CPU to the measured part.
            let share = 1.0 / 1.25;
            let cpu_ms_per_call: Vec<f64> = (0..3)
                .map(|i| (after[i] - before[i]) * share * 1e3 / w.calls.max(1) as f64)
                .collect();
            eprintln!(
                "  {}: {:.0} calls/s, p50 {:.2} ms, {} errors",
                class.name,
                w.rate(),
                w.pct(0.5),
                w.errors
            );
            windows.push((class.name, w, cpu_ms_per_call));
        }
        let rss = procfs::memory(s.svc.pid).unwrap_or((0, 0));
        s.svc.stop().await?;
        sides.push(Side {
            name,
            build,
            load_secs: None,
            recall,
            windows,
            rss,
        });
    }
    Ok(sides)
}
