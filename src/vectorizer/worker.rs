//! One worker: claim a batch, embed it in one request, store or count the
//! failure, again; idle, it looks at the queue twice a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::causes::Causes;
use crate::config::VectorizerSettings;
use crate::embedding::{EmbedError, EmbeddingClient, Modality};
use crate::observability::VectorizerMetrics;
use crate::store::vectorizer::{self as queue, Claimed};

const IDLE_POLL: Duration = Duration::from_millis(500);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the workers of one replica share.
pub struct Shared {
    pub client: EmbeddingClient,
    pub settings: VectorizerSettings,
    pub pool: PgPool,
    pub metrics: VectorizerMetrics,
    pub causes: Causes,
    /// This replica's name in `claimed_by`.
    pub replica: String,
    /// The schema is distributed by Citus: claims go organization by
    /// organization.
    pub distributed: bool,
}

/// What became of a batch.
enum Outcome {
    Idle,
    Done,
    /// The endpoint or the database was the trouble: wait before the next.
    Trouble,
}

pub async fn run(shared: Arc<Shared>, n: usize) {
    let worker = format!("{}/{n}", shared.replica);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match batch(&shared, &worker).await {
            Outcome::Done => backoff = FIRST_BACKOFF,
            Outcome::Idle => tokio::time::sleep(IDLE_POLL).await,
            Outcome::Trouble => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn batch(shared: &Shared, worker: &str) -> Outcome {
    let lease = shared.settings.lease;
    let limit = shared.client.batch();
    let claimed = match shared.distributed {
        true => queue::claim_by_organization(&shared.pool, limit, lease, worker).await,
        false => queue::claim(&shared.pool, limit, lease, worker).await,
    };
    let claimed = match claimed {
        Ok(c) if c.is_empty() => return Outcome::Idle,
        Ok(c) => c,
        Err(e) => {
            database_trouble(shared, &e);
            return Outcome::Trouble;
        }
    };
    let started = Instant::now();
    // Retries end well within the lease, so no other replica takes the
    // batch over while this one still works on it.
    let patience = lease / 2;
    let texts: Vec<&str> = claimed.iter().map(|c| c.body.as_str()).collect();
    let result = shared
        .client
        .embed(&texts, Modality::Passage, patience)
        .await;
    let outcome = match result {
        Ok(vectors) => store(shared, claimed.iter().zip(vectors).collect()).await,
        Err(e @ EmbedError::Unavailable(_)) => {
            report(shared, &e, claimed.len(), "unavailable");
            let all: Vec<&Claimed> = claimed.iter().collect();
            if let Err(e) = queue::release(&shared.pool, &all, worker).await {
                database_trouble(shared, &e);
            }
            Outcome::Trouble
        }
        Err(e) if e.may_be_one_text() && claimed.len() > 1 => {
            one_by_one(shared, &claimed, patience).await
        }
        Err(e) => {
            fail(shared, &claimed.iter().collect::<Vec<_>>(), &e).await;
            Outcome::Trouble
        }
    };
    shared
        .metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    outcome
}

/// A batch refused as a whole: each text alone, so that only the ones at
/// fault count a failure.
async fn one_by_one(shared: &Shared, claimed: &[Claimed], patience: Duration) -> Outcome {
    let mut good = Vec::new();
    for c in claimed {
        match shared
            .client
            .embed(&[c.body.as_str()], Modality::Passage, patience)
            .await
        {
            Ok(mut v) if v.len() == 1 => good.push((c, v.remove(0))),
            Ok(_) => {}
            Err(e) => fail(shared, &[c], &e).await,
        }
    }
    if good.is_empty() {
        return Outcome::Trouble;
    }
    store(shared, good).await
}

async fn store(shared: &Shared, items: Vec<(&Claimed, Vec<f32>)>) -> Outcome {
    let stored = async {
        let mut tx = shared.pool.begin().await?;
        let n = queue::store(&mut tx, shared.client.model(), &items).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(n)
    }
    .await;
    match stored {
        Ok(n) => {
            shared.metrics.embedded.inc_by(n);
            if shared.causes.recovered() {
                tracing::info!(model = shared.client.model(), "embedding works again");
            }
            Outcome::Done
        }
        Err(e) => {
            // The claims run out and the items are embedded again.
            database_trouble(shared, &e);
            Outcome::Trouble
        }
    }
}

async fn fail(shared: &Shared, items: &[&Claimed], e: &EmbedError) {
    let kind = match e {
        EmbedError::Unavailable(_) => "unavailable",
        EmbedError::Refused { .. } => "refused",
        EmbedError::BadAnswer(_) => "bad_answer",
    };
    report(shared, e, items.len(), kind);
    let max = shared.settings.max_attempts;
    match queue::fail(&shared.pool, items, &e.to_string(), max).await {
        Ok(0) => {}
        Ok(n) => {
            shared.metrics.set_aside.inc_by(n);
            if shared.causes.first(&format!("set aside: {}", e.cause())) {
                tracing::warn!(cause = %e.cause(), "items set aside after {max} failed attempts (affinity_vectorizer_items_set_aside_total counts them); `affinity vectorizer --requeue-failed` retries them");
            }
        }
        Err(e) => database_trouble(shared, &e),
    }
}

/// Counts the items of a failed batch; logs the cause the first time.
fn report(shared: &Shared, e: &EmbedError, items: usize, kind: &str) {
    shared
        .metrics
        .failures
        .with_label_values(&[kind])
        .inc_by(items as u64);
    let cause = e.cause();
    if shared.causes.first(&cause) {
        let model = shared.client.model();
        match e {
            EmbedError::Unavailable(_) => tracing::warn!(
                model, %cause, error = %e,
                "embedding paused: the endpoint is unavailable; the queue waits, nothing is lost"
            ),
            _ => tracing::error!(
                model, %cause, error = %e,
                "embedding failed; the items are retried, then set aside"
            ),
        }
    }
}

fn database_trouble(shared: &Shared, e: &sqlx::Error) {
    shared
        .metrics
        .failures
        .with_label_values(&["database"])
        .inc();
    if shared.causes.first("database") {
        tracing::warn!(error = %e, "the vectorizer cannot reach the database; retrying");
    }
}
