//! The AI context benchmark: a long session paged, an export of a million
//! entries against `COPY` of the same query, and feedback, through the
//! release service in one run.
//!
//! ```text
//! cargo bench --bench agent -- [--entries 1000000] [--turns 1000] [--page-size 50]
//!     [--page-rounds 20] [--export-rounds 2] [--slow-secs 30] [--slow-rate 1000]
//!     [--feedback-secs 15] [--concurrency 8] [--out BENCHMARKS.md]
//! ```
//!
//! 1. **Setup** (untimed): a private durable PostgreSQL, a migrated empty
//!    database, the release `affinity serve` (no text model: nothing here
//!    needs one), one organization with 100 users and `--entries` entries
//!    in all, `--turns` of them one session interleaved in time with the
//!    rest. The entries are loaded by plain SQL with triggers off (their
//!    texts are not queued for embedding: nothing here searches).
//! 2. **Session pages**: ListAiContext of the session, `--page-size` at a
//!    time with its page tokens, `--page-rounds` times (the first a
//!    warm-up); p50/p95/max per page. Every round must see every turn in
//!    order.
//! 3. **Export**: ExportAiContext of the whole organization read as fast
//!    as possible, and `COPY (the export's query) TO STDOUT` through the
//!    same database, alternating for `--export-rounds` rounds; entries/s
//!    each and the ratio (target ≥ 0.5). The service's VmRSS every 50 ms
//!    (target: peak under 300 MB). Then one export read at `--slow-rate`
//!    entries/s for `--slow-secs` and cancelled: its peak beside the fast
//!    one's.
//! 4. **Feedback**: RecordAiFeedback, `--concurrency` callers for
//!    `--feedback-secs` (a new feedback_id each, on the session's turns);
//!    records/s (target 10,000), latencies, and the CPU seconds of the
//!    service and of PostgreSQL per 1,000 records; then the same INSERT
//!    from as many connections without the service (what bounds it).

#[path = "agent/phases.rs"]
mod phases;
#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "agent/report.rs"]
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

use anyhow::{Context, Result};
use clap::Parser;
use sqlx::PgPool;
use tonic::transport::Endpoint;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "agent", about = "AI context: session pages, export, feedback")]
pub struct Args {
    /// Entries in the table, the session's included.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Turns of the paged session.
    #[arg(long, default_value_t = 1_000)]
    pub turns: u64,
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Walks through the session; the first is a warm-up.
    #[arg(long, default_value_t = 20)]
    pub page_rounds: usize,
    /// Rounds of (export, COPY), alternating which goes first.
    #[arg(long, default_value_t = 2)]
    pub export_rounds: usize,
    /// Seconds of the slow client's export.
    #[arg(long, default_value_t = 30)]
    pub slow_secs: u64,
    /// Entries per second the slow client reads.
    #[arg(long, default_value_t = 1_000)]
    pub slow_rate: u64,
    #[arg(long, default_value_t = 15)]
    pub feedback_secs: u64,
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Append the Markdown section here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

const DATABASE: &str = "agent";
/// The paged session's id.
pub const SESSION: &str = "bench-session";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("affinity-agent-")
        .tempdir()?;
    let dir = temp.path().to_path_buf();
    eprintln!("data directory: {}", dir.display());
    let (mut cluster, url, pool, database) = world::migrated_database(&dir, DATABASE).await?;
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
    let (svc, _) = service::Service::start(&settings, "agent").await?;
    let channel = Endpoint::from_shared(format!("http://{}", svc.grpc_addr))?
        .connect()
        .await?;
    let owner = Uuid::new_v4();
    let secret = service::SECRET.as_bytes();
    let user_token = affinity::auth::mint(secret, owner, "authenticated", 24 * 3600)?;
    let org = world::organization(&channel, &user_token, owner, "agent").await?;
    eprintln!("loading {} entries", args.entries);
    let load_started = Instant::now();
    let turn_ids = fill(&pool, org, args.entries, args.turns).await?;
    let load_secs = load_started.elapsed().as_secs_f64();

    let postmaster = procfs::postmaster_pid(&dir.join("pg")).context("postmaster.pid")?;
    let client = phases::Client {
        channel: channel.clone(),
        token: affinity::auth::mint(secret, owner, "service_role", 24 * 3600)?,
        org,
        pid: svc.pid,
        postmaster,
    };
    eprintln!("session pages: {} rounds", args.page_rounds);
    let pages = phases::pages(&client, args.page_size, args.page_rounds, &turn_ids).await?;
    let idle_rss = procfs::memory(svc.pid).map_or(0, |m| m.0);
    let mut exports = Vec::new();
    for round in 0..args.export_rounds {
        eprintln!("export round {}", round + 1);
        let service_first = round % 2 == 0;
        let mut pair = (None, None);
        for side in 0..2 {
            if (side == 0) == service_first {
                pair.0 = Some(phases::export(&client).await?);
            } else {
                pair.1 = Some(phases::copy(&client, &url).await?);
            }
        }
        if let (Some(e), Some(c)) = pair {
            exports.push((e, c, service_first));
        }
    }
    eprintln!(
        "slow export: {} s at {} entries/s",
        args.slow_secs, args.slow_rate
    );
    let slow = phases::slow_export(&client, args.slow_rate, args.slow_secs).await?;
    eprintln!(
        "feedback: {} callers for {} s",
        args.concurrency, args.feedback_secs
    );
    let feedback =
        phases::feedback(&client, &turn_ids, args.concurrency, args.feedback_secs).await?;
    eprintln!(
        "feedback: the same INSERT from {} connections",
        args.concurrency
    );
    let feedback_sql =
        phases::feedback_sql(&url, org, &turn_ids, args.concurrency, args.feedback_secs).await?;
    svc.stop().await?;
    cluster.stop()?;

    let section = report::render(&report::Report {
        args: &args,
        database: &database,
        load_secs,
        pages: &pages,
        idle_rss,
        exports: &exports,
        slow: &slow,
        feedback: &feedback,
        feedback_sql,
        minutes: started.elapsed().as_secs_f64() / 60.0,
    });
    world::emit(&section, args.out.as_deref())?;
    Ok(())
}

/// `entries` entries of 100 users in `org`, one a second back from now;
/// `turns` of them (every n-th, so the session spans the whole table's
/// time) are the session, each the child of the one before. The session's
/// ids, oldest first.
async fn fill(pool: &PgPool, org: Uuid, entries: u64, turns: u64) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO user_profiles (id, organization_id)
         SELECT gen_random_uuid(), $1 FROM generate_series(1, 100)",
    )
    .bind(org)
    .execute(&mut *tx)
    .await?;
    // Triggers off: the texts are not queued for embedding (nothing here
    // searches); the keys hold by construction.
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    let every = (entries / turns.max(1)).max(1) as i64;
    let chunk = 100_000_i64;
    let mut from = 1_i64;
    while from <= entries as i64 {
        let to = (from + chunk - 1).min(entries as i64);
        sqlx::query(
            "INSERT INTO ai_context_logs (organization_id, user_id, source_type, context_summary,
                 ai_response, metadata, occurred_at, session_id)
             SELECT $1, u.ids[1 + i % 100], 'agent',
                    'User asked about turn ' || i || ' of the weekend campaign for the espresso bar',
                    'Suggested posting the latte art reel at 10:00 with #latteart and #coffee, '
                      || 'then a story at 18:00; reminded them of the Saturday workshop ' || i,
                    jsonb_build_object('model', 'bench-agent', 'step', i),
                    now() - make_interval(secs => $3 - i),
                    CASE WHEN i % $4 = 0 AND i / $4 <= $5 THEN $6 ELSE 's-' || (i % 50000) END
             FROM generate_series($2::bigint, $7::bigint) i,
                  (SELECT array_agg(id) AS ids FROM user_profiles WHERE organization_id = $1) u",
        )
        .bind(org)
        .bind(from)
        .bind(entries as f64)
        .bind(every)
        .bind(turns as i64)
        .bind(SESSION)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        from = to + 1;
    }
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ai_context_logs WHERE organization_id = $1 AND session_id = $2
         ORDER BY occurred_at, id",
    )
    .bind(org)
    .bind(SESSION)
    .fetch_all(&mut *tx)
    .await?;
    // Each turn follows the one before (the parent key is checked when the
    // service logs; here it holds by construction).
    sqlx::query(
        "UPDATE ai_context_logs a SET parent_id = p.prev
         FROM (SELECT id, lag(id) OVER (ORDER BY occurred_at, id) AS prev
               FROM ai_context_logs WHERE organization_id = $1 AND session_id = $2) p
         WHERE a.organization_id = $1 AND a.id = p.id",
    )
    .bind(org)
    .bind(SESSION)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("VACUUM ANALYZE ai_context_logs")
        .execute(pool)
        .await?;
    anyhow::ensure!(
        ids.len() as u64 == turns,
        "the session has {} turns, not {turns}",
        ids.len()
    );
    Ok(ids)
}
