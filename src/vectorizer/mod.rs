//! The vectorizer: workers on every replica that claim batches of the
//! embedding queue, embed each batch in one request to the text model, and
//! store the vectors under its name (pgai's Vectorizer is the model).
//!
//! - At start, every text without a vector of the text model's current
//!   version is queued (the backfill after migration; everything again
//!   under a new model's name).
//! - A batch the endpoint could not take because it was down, overloaded
//!   or slow is released at once and counts against no item; the worker
//!   backs off. A refusal or an unusable answer counts a failed attempt of
//!   each item (after trying the texts one by one where one text may be at
//!   fault); after `AFFINITY_VECTORIZER_MAX_ATTEMPTS` the item is set aside.
//! - Each cause of failure is logged once until embedding works again.

mod causes;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::config::VectorizerSettings;
use crate::embedding::EmbeddingClient;
use crate::observability::VectorizerMetrics;
use crate::store::vectorizer as queue;

/// How often the queue's gauges are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long a stopping replica tries to hand its claims back.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// The vectorizer of this replica: its tasks, and what it needs to hand
/// its claims back when it stops.
pub struct Vectorizer {
    tasks: JoinSet<()>,
    pool: PgPool,
    replica: String,
}

impl Vectorizer {
    /// Stops the tasks (a batch in flight is abandoned, its vectors not
    /// stored) and releases this replica's claims, so that another replica
    /// takes them now rather than after their lease. A claim that cannot be
    /// released (the database is away) waits for its lease.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
        let released = tokio::time::timeout(
            RELEASE_WAIT,
            queue::release_replica(&self.pool, &self.replica),
        )
        .await;
        match released {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(items = n, "vectorizer: released this replica's claims"),
            Ok(Err(e)) => tracing::warn!(error = %e, "vectorizer: claims left to their lease"),
            Err(_) => tracing::warn!("vectorizer: claims left to their lease (database too slow)"),
        }
    }
}

/// Starts the backfill, the workers and the queue's sampler on `pool`;
/// [`Vectorizer::stop`] stops them (dropped, they stop too, and a claimed
/// batch is taken over after its lease).
pub fn spawn(
    client: EmbeddingClient,
    settings: VectorizerSettings,
    pool: PgPool,
    metrics: VectorizerMetrics,
    distributed: bool,
) -> Vectorizer {
    let mut tasks = JoinSet::new();
    let replica = crate::random_uuid().simple().to_string();
    let shared = Arc::new(worker::Shared {
        client,
        settings,
        pool: pool.clone(),
        metrics: metrics.clone(),
        causes: causes::Causes::default(),
        replica: replica.clone(),
        distributed,
    });
    tasks.spawn(sample(pool.clone(), metrics));
    if settings.workers > 0 {
        {
            let shared = shared.clone();
            tasks.spawn(async move { backfill(&shared).await });
        }
        for n in 0..settings.workers {
            let shared = shared.clone();
            tasks.spawn(async move { worker::run(shared, n).await });
        }
    }
    Vectorizer {
        tasks,
        pool,
        replica,
    }
}

/// Queues what has no vector of the text model, retrying while the
/// database is away.
async fn backfill(shared: &worker::Shared) {
    let model = shared.client.model();
    let mut wait = Duration::from_secs(1);
    loop {
        match queue::enqueue_missing(&shared.pool, model).await {
            Ok(0) => return,
            Ok(n) => {
                tracing::info!(
                    model,
                    items = n,
                    "queued for embedding: texts without a vector of the text model"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "queueing texts without a vector of the text model; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Keeps the queue's gauges current.
async fn sample(pool: PgPool, metrics: VectorizerMetrics) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(state) = queue::state(&pool).await {
            metrics
                .queue
                .with_label_values(&["pending"])
                .set(state.pending);
            metrics
                .queue
                .with_label_values(&["failed"])
                .set(state.failed);
            metrics
                .oldest_pending_seconds
                .set(state.oldest_pending_secs);
        }
    }
}
