//! The vectorizer's queue (`embedding_queue`): claims under a lease with
//! SKIP LOCKED, vectors stored only for the text version they were made
//! from, failures backed off and set aside, and the operators' view.

use crate::db::sql;
use std::time::Duration;

use pgvector::Vector;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

/// A claimed item: its key, the text version and the text to embed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub organization_id: Uuid,
    pub entity_type: String,
    pub entity_id: Uuid,
    pub version: i64,
    pub body: String,
}

/// The claim: the ready items (`{scope}` narrows them, and `{rows}` the
/// rows updated, so that Citus sends the update to one shard too), locked
/// without waiting, leased and returned with their text.
const CLAIM: &str = "WITH ready AS (
         SELECT organization_id, entity_type, entity_id FROM embedding_queue
         WHERE failed_at IS NULL AND not_before <= now()
           AND (claimed_until IS NULL OR claimed_until < now()) {scope}
         ORDER BY not_before
         LIMIT $1
         FOR UPDATE SKIP LOCKED
     )
     UPDATE embedding_queue q
     SET claimed_until = now() + make_interval(secs => $2), claimed_by = $3
     FROM ready r, item_texts t
     WHERE q.organization_id = r.organization_id AND q.entity_type = r.entity_type
       AND q.entity_id = r.entity_id
       AND t.organization_id = q.organization_id AND t.entity_type = q.entity_type
       AND t.entity_id = q.entity_id {rows}
     RETURNING q.organization_id, q.entity_type, q.entity_id, t.version, t.body";

/// Claims up to `limit` ready items for `lease`: items nobody holds, or
/// whose holder's lease ran out (a replica that died).
pub async fn claim<'e>(
    db: impl PgExecutor<'e>,
    limit: usize,
    lease: Duration,
    worker: &str,
) -> sqlx::Result<Vec<Claimed>> {
    sql::query_as(&CLAIM.replace("{scope}", "").replace("{rows}", ""))
        .bind(limit as i64)
        .bind(lease.as_secs_f64())
        .bind(worker)
        .fetch_all(db)
        .await
}

/// [`claim`] on a schema distributed by Citus, which locks rows (FOR
/// UPDATE) only in a statement on one shard: the organizations with the
/// oldest ready items first, then the claim in each, until `limit` items.
pub async fn claim_by_organization(
    db: &PgPool,
    limit: usize,
    lease: Duration,
    worker: &str,
) -> sqlx::Result<Vec<Claimed>> {
    let orgs: Vec<Uuid> = sql::query_scalar(
        "SELECT organization_id FROM embedding_queue
         WHERE failed_at IS NULL AND not_before <= now()
           AND (claimed_until IS NULL OR claimed_until < now())
         GROUP BY organization_id ORDER BY min(not_before) LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(db)
    .await?;
    let in_one = CLAIM
        .replace("{scope}", "AND organization_id = $4")
        .replace("{rows}", "AND q.organization_id = $4");
    let mut claimed = Vec::new();
    for org in orgs {
        if claimed.len() >= limit {
            break;
        }
        let more: Vec<Claimed> = sql::query_as(&in_one)
            .bind((limit - claimed.len()) as i64)
            .bind(lease.as_secs_f64())
            .bind(worker)
            .bind(org)
            .fetch_all(db)
            .await?;
        claimed.extend(more);
    }
    Ok(claimed)
}

/// Keys of claimed items as parallel arrays, for unnest().
fn keys<'a>(items: &[&'a Claimed]) -> (Vec<Uuid>, Vec<&'a str>, Vec<Uuid>, Vec<i64>) {
    (
        items.iter().map(|c| c.organization_id).collect(),
        items.iter().map(|c| c.entity_type.as_str()).collect(),
        items.iter().map(|c| c.entity_id).collect(),
        items.iter().map(|c| c.version).collect(),
    )
}

/// Stores the vectors of `items` under `model`, each only while its text is
/// still the version it was made from, and never over a vector of a newer
/// version; takes those items out of the queue. One statement per
/// organization (on Citus, each then goes to one shard). Returns how many
/// vectors were stored.
pub async fn store(
    conn: &mut PgConnection,
    model: &str,
    items: &[(&Claimed, Vec<f32>)],
) -> sqlx::Result<u64> {
    let mut orgs: Vec<Uuid> = items.iter().map(|(c, _)| c.organization_id).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut stored = 0;
    for org in orgs {
        let mine: Vec<&(&Claimed, Vec<f32>)> = items
            .iter()
            .filter(|(c, _)| c.organization_id == org)
            .collect();
        stored += store_in(conn, model, org, &mine).await?;
    }
    Ok(stored)
}

async fn store_in(
    conn: &mut PgConnection,
    model: &str,
    org: Uuid,
    items: &[&(&Claimed, Vec<f32>)],
) -> sqlx::Result<u64> {
    let claimed: Vec<&Claimed> = items.iter().map(|(c, _)| *c).collect();
    let (_, types, ids, versions) = keys(&claimed);
    let vectors: Vec<Vector> = items.iter().map(|(_, v)| Vector::from(v.clone())).collect();
    let stored: i64 = sql::query_scalar(
        "WITH v AS (
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::vector[])
                 AS v(entity_type, entity_id, version, embedding)
         ), current AS (
             SELECT v.* FROM v
             JOIN item_texts t ON t.organization_id = $6
                              AND t.entity_type = v.entity_type AND t.entity_id = v.entity_id
                              AND t.version = v.version
         ), ins AS (
             INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension,
                                     embedding, text_version)
             SELECT $6, entity_type, entity_id, $5, vector_dims(embedding), embedding, version
             FROM current
             ON CONFLICT (organization_id, entity_type, entity_id, model) DO UPDATE
             SET embedding = EXCLUDED.embedding, dimension = EXCLUDED.dimension,
                 text_version = EXCLUDED.text_version, updated_at = EXCLUDED.updated_at
             WHERE embeddings.text_version IS NULL OR embeddings.text_version <= EXCLUDED.text_version
             RETURNING 1
         ), done AS (
             DELETE FROM embedding_queue q USING v
             WHERE q.organization_id = $6 AND q.entity_type = v.entity_type
               AND q.entity_id = v.entity_id AND q.version = v.version
         )
         SELECT count(*) FROM ins",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&versions)
    .bind(&vectors)
    .bind(model)
    .bind(org)
    .fetch_one(&mut *conn)
    .await?;
    Ok(stored as u64)
}

/// Counts a failed attempt of `items` (still at their version): each waits
/// 2^attempts seconds (at most an hour) before the next, and one that has
/// failed `max_attempts` times is set aside. Returns how many were set aside.
pub async fn fail<'e>(
    db: impl PgExecutor<'e>,
    items: &[&Claimed],
    error: &str,
    max_attempts: u32,
) -> sqlx::Result<u64> {
    let (orgs, types, ids, versions) = keys(items);
    let set_aside: i64 = sql::query_scalar(
        "WITH f AS (
             UPDATE embedding_queue q
             SET attempts = q.attempts + 1, last_error = $5, claimed_until = NULL, claimed_by = NULL,
                 not_before = now() + make_interval(secs => least(power(2, q.attempts + 1), 3600)),
                 failed_at = CASE WHEN q.attempts + 1 >= $6 THEN now() END
             FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bigint[])
                  AS v(organization_id, entity_type, entity_id, version)
             WHERE q.organization_id = v.organization_id AND q.entity_type = v.entity_type
               AND q.entity_id = v.entity_id AND q.version = v.version
             RETURNING q.failed_at
         )
         SELECT count(failed_at) FROM f",
    )
    .bind(&orgs)
    .bind(&types)
    .bind(&ids)
    .bind(&versions)
    .bind(error)
    .bind(max_attempts as i32)
    .fetch_one(db)
    .await?;
    Ok(set_aside as u64)
}

/// Gives claimed items back without counting an attempt (the endpoint was
/// the trouble, not the items).
pub async fn release<'e>(
    db: impl PgExecutor<'e>,
    items: &[&Claimed],
    worker: &str,
) -> sqlx::Result<()> {
    let (orgs, types, ids, _) = keys(items);
    sql::query(
        "UPDATE embedding_queue q SET claimed_until = NULL, claimed_by = NULL
         FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS v(organization_id, entity_type, entity_id)
         WHERE q.organization_id = v.organization_id AND q.entity_type = v.entity_type
           AND q.entity_id = v.entity_id AND q.claimed_by = $4",
    )
    .bind(&orgs)
    .bind(&types)
    .bind(&ids)
    .bind(worker)
    .execute(db)
    .await?;
    Ok(())
}

/// Releases every claim of one replica's workers (`{replica}/{n}`): a
/// replica that stops hands its batches back rather than leaving them to
/// their lease. Returns how many items were released.
pub async fn release_replica<'e>(db: impl PgExecutor<'e>, replica: &str) -> sqlx::Result<u64> {
    let r = sql::query(
        "UPDATE embedding_queue SET claimed_until = NULL, claimed_by = NULL
         WHERE claimed_by LIKE $1 || '/%'",
    )
    .bind(replica)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

/// Queues every text without a vector of `model` made from its current
/// version: the backfill after migration, and everything again under a new
/// model's name. Returns how many items were queued.
pub async fn enqueue_missing<'e>(db: impl PgExecutor<'e>, model: &str) -> sqlx::Result<u64> {
    let r = sql::query(
        "INSERT INTO embedding_queue (organization_id, entity_type, entity_id, version)
         SELECT t.organization_id, t.entity_type, t.entity_id, t.version FROM item_texts t
         WHERE NOT EXISTS (SELECT 1 FROM embeddings e
                           WHERE e.organization_id = t.organization_id AND e.entity_type = t.entity_type
                             AND e.entity_id = t.entity_id AND e.model = $1
                             AND e.text_version = t.version)
         ON CONFLICT DO NOTHING",
    )
    .bind(model)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

/// The queue as operators see it.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct QueueState {
    /// Waiting or being embedded.
    pub pending: i64,
    /// Claimed by a worker right now.
    pub claimed: i64,
    /// Set aside after too many failures.
    pub failed: i64,
    /// Seconds since the oldest pending item was queued (0: none).
    pub oldest_pending_secs: f64,
}

pub async fn state<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<QueueState> {
    sql::query_as(
        "SELECT count(*) FILTER (WHERE failed_at IS NULL) AS pending,
                count(*) FILTER (WHERE failed_at IS NULL AND claimed_until > now()) AS claimed,
                count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed,
                coalesce(extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE failed_at IS NULL)),
                         0)::float8 AS oldest_pending_secs
         FROM embedding_queue",
    )
    .fetch_one(db)
    .await
}

/// The items set aside, by their last error: (error, count), most first.
pub async fn failures<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<Vec<(String, i64)>> {
    sql::query_as(
        "SELECT coalesce(last_error, ''), count(*) FROM embedding_queue
         WHERE failed_at IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20",
    )
    .fetch_all(db)
    .await
}

/// Puts every item set aside back in the queue, with no attempts counted.
pub async fn requeue_failed<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<u64> {
    let r = sql::query(
        "UPDATE embedding_queue
         SET failed_at = NULL, attempts = 0, not_before = now(), claimed_until = NULL, claimed_by = NULL
         WHERE failed_at IS NOT NULL",
    )
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}
