//! What the database holds after a load, checked in SQL against the calls.
use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::calls::Call;
use crate::load::{
    Shape, LOG_AI_CONTEXT, LOG_AI_CONTEXT_STREAM, RECORD_METRICS, UPSERT_EMBEDDINGS,
};
use crate::requests::stream_keys;

/// Points per batch marker (entity id) of `org`.
pub(crate) async fn metric_counts(pool: &PgPool, org: Uuid) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT entity_id::text, count(*) FROM time_series_metrics
         WHERE organization_id = $1 GROUP BY entity_id",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("counting metric points")
    .into_iter()
    .collect()
}

/// Embeddings of posts per batch marker (model) of `org`.
pub(crate) async fn embedding_counts(pool: &PgPool, org: Uuid) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT model, count(*) FROM embeddings
         WHERE organization_id = $1 AND entity_type = 'post' GROUP BY model",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("counting embeddings")
    .into_iter()
    .collect()
}

/// AI context entries of `org` per idempotency key: (an id, how many
/// entries, how many of them have their embedding).
pub(crate) async fn log_entries(pool: &PgPool, org: Uuid) -> HashMap<String, (String, i64, i64)> {
    sqlx::query_as::<_, (String, String, i64, i64)>(
        "SELECT l.idempotency_key, min(l.id::text), count(*), count(e.entity_id)
         FROM ai_context_logs l
         LEFT JOIN embeddings e ON e.organization_id = l.organization_id
              AND e.entity_type = 'ai_context' AND e.entity_id = l.id
         WHERE l.organization_id = $1 AND l.idempotency_key IS NOT NULL
         GROUP BY l.idempotency_key",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("reading AI context entries")
    .into_iter()
    .map(|(k, id, n, emb)| (k, (id, n, emb)))
    .collect()
}

/// Every acknowledged write of `calls` is in the database, and every batch
/// (acknowledged or not) is all or none.
pub(crate) async fn assert_writes_kept(pool: &PgPool, org: Uuid, calls: &[Call], shape: Shape) {
    let metrics = metric_counts(pool, org).await;
    let embeddings = embedding_counts(pool, org).await;
    let logs = log_entries(pool, org).await;
    let mut acknowledged = 0;
    for c in calls.iter().filter(|c| !c.marker.is_empty()) {
        let (found, whole) = match c.rpc {
            RECORD_METRICS => (
                metrics.get(&c.marker).copied().unwrap_or(0),
                shape.metric_points as i64,
            ),
            UPSERT_EMBEDDINGS => (
                embeddings.get(&c.marker).copied().unwrap_or(0),
                shape.embeddings as i64,
            ),
            LOG_AI_CONTEXT => {
                let entry = logs.get(&c.marker);
                if let (Some((id, _, _)), Some(acked)) = (entry, &c.id) {
                    assert_eq!(id, acked, "the entry acknowledged for {}", c.marker);
                }
                match entry {
                    None => (0, 1),
                    Some((_, n, with_embedding)) => {
                        assert_eq!(
                            n, with_embedding,
                            "entry {} without its embedding",
                            c.marker
                        );
                        (*n, 1)
                    }
                }
            }
            LOG_AI_CONTEXT_STREAM => {
                let keys = stream_keys(&c.marker, shape.stream_entries);
                let n: i64 = keys
                    .iter()
                    .map(|k| {
                        logs.get(k).map_or(0, |(_, n, with_embedding)| {
                            assert_eq!(n, with_embedding, "entry {k} without its embedding");
                            *n
                        })
                    })
                    .sum();
                (n, shape.stream_entries as i64)
            }
            other => panic!("unexpected write {other}"),
        };
        if c.ok() {
            acknowledged += 1;
            assert_eq!(
                found, whole,
                "acknowledged {} {} is not (wholly) in the database",
                c.rpc, c.marker
            );
        } else {
            assert!(
                found == 0 || found == whole,
                "unacknowledged {} {} is half-written: {found} of {whole} rows",
                c.rpc,
                c.marker
            );
        }
    }
    assert!(acknowledged > 0, "the load had acknowledged writes");
}
