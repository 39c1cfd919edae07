//! Startup, once the server answers health: the database (embedded or
//! DATABASE_URL), its migrations, the calls' pool; then what runs beside
//! the calls: the maintenance jobs, the caches' change follower, the probe
//! of the database's reachability.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;

use super::shutdown::AbortOnDrop;
use crate::api::{ApiState, ReadReplica};
use crate::caches::follow::{self, Follower};
use crate::caches::poll;
use crate::config::Config;
use crate::db::pool::CountedPool;
use crate::db::reachability::Reachability;
use crate::db::replica::ReplicaState;
use crate::db::{citus, migrate, pooler, Database};
use crate::embedding::EmbeddingClient;
use crate::observability::{Metrics, PoolStats};
use crate::store;
use crate::vectorizer;

/// How long SERVING waits for the change follower's first LISTEN.
const FOLLOW_WAIT: Duration = Duration::from_secs(10);

/// The text model's client, when one is configured; an error naming the
/// setting that is wrong.
pub(super) fn text_model(config: &Config) -> anyhow::Result<Option<EmbeddingClient>> {
    config.text.vectorizer().map_err(anyhow::Error::msg)?;
    let Some(model) = config.text.text_model().map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    tracing::info!(model = %model.model, dimensions = model.dimensions, "text model");
    Ok(Some(
        EmbeddingClient::new(model).map_err(anyhow::Error::msg)?,
    ))
}

/// Opens the database into `database` (kept there so that it is stopped
/// however startup ends), migrates it on a pool of its own, then opens the
/// calls' pool and hands it to the handlers and the metrics. Returns it
/// with, behind a transaction pooler, a pool on the direct URL for the work
/// beside the calls (else that work shares the calls' pool).
pub(super) async fn prepare(
    config: &Config,
    state: &ApiState,
    metrics: &Metrics,
    database: &mut Option<Database>,
) -> anyhow::Result<(CountedPool, Option<PgPool>)> {
    let db = database.insert(Database::open(config).await?);
    db.check_not_pooled().await?;
    let admin = db.admin_pool().await?;
    tracing::info!("connected; running migrations");
    let migrated = migrate::apply(&admin, &config.metric_rollup_zones).await;
    admin.close().await;
    if let Some(recorded) = migrated? {
        metrics.set_migrations_applied(recorded);
    }
    let per_call = db
        .pooled()
        .then(|| pooler::call_settings(config.statement_timeout()));
    let pool = CountedPool::new(
        db.calls_pool(config, store::SQL_TYPES).await?,
        state.reachability.clone(),
        config.warm_connections.is_on(),
        per_call.clone(),
    );
    if let Some(read) = db.read_pool(config, store::SQL_TYPES)? {
        let replica = ReplicaState::new();
        let sampled = replica.clone();
        let counters = metrics.set_replica(move || (sampled.is_up(), sampled.lag_secs()));
        state.set_replica(ReadReplica {
            // Not kept warm: sqlx's pool checks a connection before a call
            // takes it, so a replica that went away is noticed before use.
            pool: CountedPool::new(read, Reachability::new(), false, per_call),
            state: replica,
            counters,
        });
    }
    state.set_ready(pool.clone()).await?;
    if let Some(embedder) = &state.embedder {
        // Vectors of a dimension without an index could not be searched.
        let probe = vec![0.0; embedder.dimensions() as usize];
        if let Err(e) = state.check_vector("AFFINITY_EMBEDDING_DIMENSIONS", &probe) {
            anyhow::bail!("{e}; set the dimension of the text model's vectors");
        }
    }
    let sampled = pool.clone();
    metrics.set_pool(config.db_max_connections, move || PoolStats {
        idle: count(sampled.idle()),
        in_use: count(sampled.in_use()),
        waiting: sampled.waiting(),
    });
    // LISTEN, the jobs, the vectorizer's workers.
    let size = 3 + config.text.vectorizer().map_or(0, |v| v.workers) as u32;
    Ok((pool, db.background_pool(size).await?))
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What runs beside the calls; stopped when dropped, or by `stop`, which
/// also hands the vectorizer's claims back.
pub(super) struct Background {
    _jobs: JoinSet<()>,
    vectorizer: Option<vectorizer::Vectorizer>,
    _changes: Option<AbortOnDrop>,
}

impl Background {
    pub(super) async fn stop(mut self) {
        if let Some(v) = self.vectorizer.take() {
            v.stop().await;
        }
    }
}

/// Starts the jobs (partitions ahead now, then the schedules) and the
/// change follower of both caches, waiting a while for its first LISTEN
/// (until then, and whenever that connection drops, the caches are off).
pub(super) async fn background(
    config: &Config,
    state: &ApiState,
    metrics: &Arc<Metrics>,
    pool: &PgPool,
) -> Background {
    let jobs = crate::jobs::spawn(config, pool.clone(), metrics.clone());
    let distributed = match citus::is_distributed(pool).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not tell whether the schema is distributed by Citus; taking it as not");
            false
        }
    };
    crate::store::set_on_citus(distributed);
    let vectorizer = match (&state.embedder, config.text.vectorizer()) {
        (Some(client), Ok(settings)) => Some(vectorizer::spawn(
            client.clone(),
            settings,
            pool.clone(),
            metrics.vectorizer.clone(),
            distributed,
        )),
        _ => None,
    };
    let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
    let followers: Vec<Arc<dyn Follower>> = vec![
        Arc::new(state.membership.clone()),
        Arc::new(state.metrics_cache.clone()),
    ];
    // On Citus the triggers write announcements as rows (a NOTIFY on a
    // worker cannot reach this LISTEN): polled instead.
    let changes = AbortOnDrop(match distributed {
        false => tokio::spawn(follow::follow(pool.clone(), followers, subscribed)),
        true => tokio::spawn(poll::poll(pool.clone(), followers, subscribed)),
    });
    if tokio::time::timeout(FOLLOW_WAIT, is_subscribed)
        .await
        .is_err()
    {
        tracing::warn!(
            "not yet following membership and metric changes; permission checks and metric aggregations go to the database"
        );
    }
    Background {
        _jobs: jobs,
        vectorizer,
        _changes: Some(changes),
    }
}

/// Starts the probe of the database's reachability (after health follows
/// it, so that no change goes unseen), and the read replica's if there is
/// one; stopped when dropped.
pub(super) fn probe(state: &ApiState, pool: &CountedPool) -> (AbortOnDrop, Option<AbortOnDrop>) {
    let options = (*pool.pool().connect_options()).clone();
    let primary = AbortOnDrop(tokio::spawn(state.reachability.clone().probe(options)));
    let replica = state.read_replica().map(|r| {
        let options = (*r.pool.pool().connect_options()).clone();
        AbortOnDrop(tokio::spawn(r.state.clone().probe(options)))
    });
    (primary, replica)
}
