//! The requests the loads send: metric batches, embedding batches, AI context entries.
use affinity::proto;
use uuid::Uuid;

use crate::{AI_MODEL, DIM};

/// A deterministic, non-zero vector.
pub(crate) fn vector(seed: u128) -> Vec<f32> {
    let s = (seed % 997) as f32;
    (0..DIM)
        .map(|i| ((i as f32 + s) * 0.37).sin() + 1.5)
        .collect()
}

pub(crate) fn entity(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// A batch of `n` points of one entity (the batch's marker), keyed by it.
pub(crate) fn metric_batch(org: Uuid, batch: Uuid, n: usize) -> proto::RecordMetricsRequest {
    proto::RecordMetricsRequest {
        organization_id: org.to_string(),
        idempotency_key: batch.to_string(),
        points: (0..n)
            .map(|i| proto::MetricPoint {
                entity: entity(batch),
                metric_name: "likes".into(),
                value: i as f64,
                recorded_at: None,
            })
            .collect(),
    }
}

/// `n` embeddings of entities derived from `batch`, all of model
/// "batch-<batch>" (the batch's marker): the same call again writes the
/// same natural keys (organization, entity, model).
pub(crate) fn embedding_batch(org: Uuid, batch: Uuid, n: usize) -> proto::UpsertEmbeddingsRequest {
    proto::UpsertEmbeddingsRequest {
        organization_id: org.to_string(),
        embeddings: (0..n as u128)
            .map(|i| {
                let id = Uuid::from_u128(batch.as_u128().wrapping_add(i));
                proto::EmbeddingRecord {
                    entity: entity(id),
                    vector: vector(id.as_u128()),
                    model: embedding_marker(batch),
                }
            })
            .collect(),
    }
}

pub(crate) fn embedding_marker(batch: Uuid) -> String {
    format!("batch-{batch}")
}

/// An AI context entry (with an embedding: two rows in one write).
pub(crate) fn log_entry(org: Uuid, key: &str) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: "agent".into(),
        context_summary: format!("summary of {key}"),
        ai_response: "an answer".into(),
        embedding: vector(key.len() as u128),
        embedding_model: AI_MODEL.into(),
        idempotency_key: key.to_string(),
        ..Default::default()
    }
}

/// The idempotency keys of stream `batch`'s entries.
pub(crate) fn stream_keys(batch: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{batch}/{i}")).collect()
}
