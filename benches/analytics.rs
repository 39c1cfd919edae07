//! The analytics benchmark (issue 21): gap-filled charts, percentiles and
//! top items, and the metrics targets judged on fresh reads, through the
//! release service in one run.
//!
//! ```text
//! cargo bench --bench analytics -- [--posts 20000] [--days 9] [--year-posts 100]
//!     [--secs 5] [--out BENCHMARKS.md]
//! ```
//!
//! 1. **Setup** (untimed): a private durable PostgreSQL with a migrated
//!    database (daily rollups and digests in UTC and Europe/Berlin), the
//!    release `affinity serve`, one organization: `--posts` posts with a
//!    point every hour for the last `--days` days, `--year-posts` posts with
//!    a point every hour for a year, 100 posts with points one day in
//!    three, and a post with a point every minute for 100 days. Loaded by
//!    SQL in batches, through the production triggers.
//! 2. Every target is judged on **fresh reads** (`cache-control:
//!    no-cache`: every call reads the database); the cached figures are
//!    beside them. Latencies interleave the calls compared (the first round
//!    a warm-up); throughput at concurrency 8 alternates the two sides
//!    (a, b, b, a) for `--secs` each, with the CPU per call of the
//!    service, PostgreSQL and this client.

#[path = "analytics/drive.rs"]
mod drive;
#[path = "analytics/load.rs"]
mod load;
#[path = "analytics/phases.rs"]
mod phases;
#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "analytics/report.rs"]
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
use std::sync::Arc;
use std::time::Instant;

use affinity::proto::Granularity;
use anyhow::{Context, Result};
use clap::Parser;
use tonic::transport::Endpoint;
use uuid::Uuid;

use phases::Shape;

#[derive(Debug, Parser)]
#[command(
    name = "analytics",
    about = "Gap-filled charts, percentiles, top items; fresh reads"
)]
pub struct Args {
    /// Posts of the ranked organization (a point every hour of `--days`).
    #[arg(long, default_value_t = 20_000)]
    pub posts: u64,
    #[arg(long, default_value_t = 9)]
    pub days: u64,
    /// Posts with a point every hour for a year.
    #[arg(long, default_value_t = 100)]
    pub year_posts: u64,
    /// Seconds of each throughput window.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Append the Markdown section here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    affinity::api::to_timestamp(t)
}

fn shape(
    name: &'static str,
    granularity: Granularity,
    unit: &'static str,
    days: i64,
    zone: &'static str,
) -> Shape {
    Shape {
        name,
        granularity,
        unit,
        days,
        zone,
        metric: "reach",
        fill_gaps: false,
        percentiles: Vec::new(),
    }
}

/// The direct SQL side: 8 connections with the service's session settings
/// (JIT off, see src/db/pool.rs).
async fn direct_pool(url: &str) -> Result<sqlx::PgPool> {
    use std::str::FromStr as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?
        .application_name("affinity-analytics-bench")
        .options([("jit", "off")]);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("affinity-analytics-")
        .tempdir()?;
    let dir = temp.path().to_path_buf();
    eprintln!("data directory: {}", dir.display());
    let (mut cluster, url, pool, database) = world::migrated_database(&dir, "analytics").await?;
    let settings = service::Settings {
        database_url: url.clone(),
        embedding_url: String::new(),
        model: String::new(),
        dimensions: 0,
        batch: 0,
        workers: 0,
        dir: dir.clone(),
        env: Vec::new(),
    };
    let (svc, _) = service::Service::start(&settings, "analytics").await?;
    let channel = Endpoint::from_shared(format!("http://{}", svc.grpc_addr))?
        .connect()
        .await?;
    let owner = Uuid::new_v4();
    let secret = service::SECRET.as_bytes();
    let token = affinity::auth::mint(secret, owner, "authenticated", 24 * 3600)?;
    let org = world::organization(&channel, &token, owner, "analytics").await?;
    eprintln!("loading");
    let load_started = Instant::now();
    let data = Arc::new(load::load(&pool, org, args.posts, args.days, args.year_posts).await?);
    let load_secs = load_started.elapsed().as_secs_f64();
    let postmaster = procfs::postmaster_pid(&dir.join("pg")).context("postmaster.pid")?;
    let client = Arc::new(phases::Client {
        channel,
        token,
        pool: direct_pool(&url).await?,
        default_pool: setup::connect(&url, 8).await?,
        pids: drive::Pids {
            service: svc.pid,
            postmaster,
        },
    });

    let year = Arc::new(data.year_posts.clone());
    let mut versus = Vec::new();
    let busy_posts = Arc::new(vec![data.busy]);
    let busy_shape = |name, granularity, unit, days| Shape {
        metric: "latency_ms",
        ..shape(name, granularity, unit, days, "Europe/Berlin")
    };
    let berlin = "Europe/Berlin";
    for (s, posts) in [
        (
            shape(
                "hourly over 7 days (UTC), hourly posts",
                Granularity::Hour,
                "hour",
                7,
                "UTC",
            ),
            &year,
        ),
        (
            shape(
                "daily over 90 days (Europe/Berlin), hourly posts",
                Granularity::Day,
                "day",
                90,
                berlin,
            ),
            &year,
        ),
        (
            shape(
                "monthly over a year (Europe/Berlin), hourly posts",
                Granularity::Month,
                "month",
                365,
                berlin,
            ),
            &year,
        ),
        (
            busy_shape(
                "daily over 90 days (Europe/Berlin), the busy post",
                Granularity::Day,
                "day",
                90,
            ),
            &busy_posts,
        ),
        (
            busy_shape(
                "monthly over a year (Europe/Berlin), the busy post",
                Granularity::Month,
                "month",
                365,
            ),
            &busy_posts,
        ),
    ] {
        eprintln!("{}", s.name);
        versus.push(phases::versus(&client, &data, &s, posts, args.secs).await?);
    }

    eprintln!("gap-filled daily chart");
    let sparse = Arc::new(data.sparse_posts.clone());
    let unfilled = shape(
        "daily over 90 days (Europe/Berlin)",
        Granularity::Day,
        "day",
        90,
        "Europe/Berlin",
    );
    let filled = Shape {
        fill_gaps: true,
        ..unfilled.clone()
    };
    let gap = drive::interleaved(
        &[
            &phases::rpc(&client, &data, &filled, &sparse, true),
            &phases::rpc(&client, &data, &unfilled, &sparse, true),
            &phases::rpc(&client, &data, &filled, &sparse, false),
        ],
        300,
    )
    .await?;
    let gap_buckets = (
        phases::aggregate(&client, &data, &filled, sparse[0], true)
            .await?
            .len(),
        phases::aggregate(&client, &data, &unfilled, sparse[0], true)
            .await?
            .len(),
    );

    eprintln!("percentiles");
    let busy = busy_posts;
    let pct = Shape {
        metric: "latency_ms",
        percentiles: vec![0.5, 0.95, 0.99],
        ..unfilled.clone()
    };
    let pct_l = drive::interleaved(
        &[
            &phases::rpc(&client, &data, &pct, &busy, true),
            &phases::sql(&client, &data, &pct, &busy, phases::RAW_PERCENTILES_SQL),
            &phases::rpc(&client, &data, &pct, &busy, false),
        ],
        15,
    )
    .await?;
    let answer = phases::aggregate(&client, &data, &pct, data.busy, true).await?;
    let rank_error = phases::rank_error(&client, &data, &pct, data.busy, &answer).await?;
    let busy_points: i64 =
        sqlx::query_scalar("SELECT count(*) FROM time_series_metrics WHERE entity_id = $1")
            .bind(data.busy)
            .fetch_one(&pool)
            .await?;

    eprintln!("top 10 posts by SUM over 7 days");
    // As a dashboard asks at 23 minutes past the hour, and over whole UTC days.
    let top = phases::top(&client, &data, data.end - chrono::Duration::minutes(23), 7).await?;
    let midnight = data
        .end
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let top_days = phases::top(&client, &data, midnight, 7).await?;
    let digest_bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_column_size(digest)), 0)::bigint FROM metric_digests_daily WHERE entity_id = $1",
    )
    .bind(data.busy)
    .fetch_one(&pool)
    .await?;
    svc.stop().await?;
    cluster.stop()?;

    let section = report::render(&report::Report {
        args: &args,
        database: &database,
        data: &data,
        load_secs,
        versus: &versus,
        gap: &gap,
        gap_buckets,
        percentiles: &pct_l,
        rank_error,
        busy_points,
        digest_bytes,
        top: &top,
        top_days: &top_days,
        minutes: started.elapsed().as_secs_f64() / 60.0,
    });
    world::emit(&section, args.out.as_deref())?;
    Ok(())
}
