//! Hostile request parts: batches, entity refs, string lists, log entries, permission checks.
use std::fmt;

use affinity::proto;
use proptest::prelude::*;

use crate::cases::Seeded;
use crate::values::{
    hostile_enum, hostile_metadata, hostile_string, hostile_timestamp, hostile_vector, uuid_string,
};

/// Most bytes one repeated-element batch may encode to: well past the
/// service's 16 MiB message limit, far from the machine's memory. Unbounded,
/// 100,000 copies of a 100,000-dimension embedding are 40 GB: that is what
/// made some seeds run for many minutes or run out of memory.
pub(crate) const MAX_BATCH_BYTES: usize = 48 << 20;

/// Batches of a few distinct elements, or one element repeated past the
/// limits (1001, 10,001 and 100,000; fewer copies of a large element, so the
/// request stays under [`MAX_BATCH_BYTES`]).
pub(crate) fn batch<T: prost::Message + Clone + fmt::Debug + 'static>(
    element: BoxedStrategy<T>,
) -> BoxedStrategy<Vec<T>> {
    prop_oneof![
        4 => proptest::collection::vec(element.clone(), 0..4),
        1 => (element, prop_oneof![Just(1001usize), Just(10_001), Just(100_000)])
            .prop_map(|(e, n)| {
                let n = n.min(MAX_BATCH_BYTES / e.encoded_len().max(1));
                vec![e; n]
            }),
    ]
    .boxed()
}

pub(crate) fn entity_ref(s: &Seeded) -> BoxedStrategy<Option<proto::EntityRef>> {
    prop_oneof![
        1 => Just(None),
        6 => (hostile_string(), uuid_string(s))
            .prop_map(|(entity_type, entity_id)| Some(proto::EntityRef { entity_type, entity_id })),
    ]
    .boxed()
}

pub(crate) fn strings(s: BoxedStrategy<String>) -> BoxedStrategy<Vec<String>> {
    proptest::collection::vec(s, 0..3).boxed()
}

pub(crate) fn log_entry(s: &Seeded) -> BoxedStrategy<proto::LogAiContextRequest> {
    (
        (uuid_string(s), uuid_string(s), hostile_string()),
        (hostile_string(), hostile_string(), hostile_metadata()),
        (hostile_vector(), hostile_string(), hostile_string()),
        (hostile_timestamp(), hostile_string(), uuid_string(s)),
    )
        .prop_map(
            |(
                (organization_id, user_id, source_type),
                (context_summary, ai_response, metadata),
                (embedding, embedding_model, idempotency_key),
                (occurred_at, session_id, parent_id),
            )| proto::LogAiContextRequest {
                organization_id,
                user_id,
                source_type,
                context_summary,
                ai_response,
                metadata,
                embedding,
                embedding_model,
                idempotency_key,
                occurred_at,
                session_id,
                parent_id,
            },
        )
        .boxed()
}

pub(crate) fn permission_check(s: &Seeded) -> BoxedStrategy<proto::UserHasOrgPermissionRequest> {
    (uuid_string(s), uuid_string(s), hostile_enum())
        .prop_map(
            |(user_id, organization_id, required_role)| proto::UserHasOrgPermissionRequest {
                user_id,
                organization_id,
                required_role,
            },
        )
        .boxed()
}
