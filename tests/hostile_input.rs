//! Property test over the request validation of every RPC: hostile values
//! (NaN and infinite floats, zero and huge vectors, out-of-range thresholds
//! and limits, SQL in strings, NUL bytes, 10 KB names, 10 MB metadata,
//! extreme timestamps, batches of 100,000, random page tokens, unknown enum
//! values) sent to one real server. Each call must get a status code the
//! contract allows for that RPC, never INTERNAL/UNKNOWN/UNAVAILABLE or a
//! transport error; afterwards the service still serves and no table is gone.

mod common;

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use affinity::proto;
use common::server::{authed, service_token, user_token, TestServer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

/// Ids that exist in the seeded tenant, so that valid-looking requests reach
/// the deep validation and the database.
#[derive(Clone)]
struct Seeded {
    org: Uuid,
    owner: Uuid,
    entity: Uuid,
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Service,
    Owner,
    Stranger,
}

#[derive(Clone)]
enum Call {
    FindSimilarContent(proto::FindSimilarContentRequest),
    SearchByVector(proto::SearchByVectorRequest),
    UpsertEmbeddings(proto::UpsertEmbeddingsRequest),
    DeleteEmbeddings(proto::DeleteEmbeddingsRequest),
    RecordMetrics(proto::RecordMetricsRequest),
    GetMetricsAggregated(proto::GetMetricsAggregatedRequest),
    UserHasOrgPermission(proto::UserHasOrgPermissionRequest),
    CheckPermissions(proto::CheckPermissionsRequest),
    CreateOrganization(proto::CreateOrganizationRequest),
    ListUserOrganizations(proto::ListUserOrganizationsRequest),
    PutMember(proto::PutMemberRequest),
    RemoveMember(proto::RemoveMemberRequest),
    ListMembers(proto::ListMembersRequest),
    LogAiContext(proto::LogAiContextRequest),
    LogAiContextStream(Vec<proto::LogAiContextRequest>),
    SearchAiContext(proto::SearchAiContextRequest),
    ListAiContext(proto::ListAiContextRequest),
    RecordAiFeedback(proto::RecordAiFeedbackRequest),
    ExportAiContext(proto::ExportAiContextRequest),
    VerifyMigrationIntegrity,
    ArchiveOldMetrics(proto::ArchiveOldMetricsRequest),
}

#[derive(Clone, Debug)]
struct Case(Who, Call);

/// A call as it is reported on failure: the RPC and the request, cut short
/// (a 10 MB field would drown the message).
impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match self {
            Call::FindSimilarContent(r) => format!("{r:?}"),
            Call::SearchByVector(r) => format!("{r:?}"),
            Call::UpsertEmbeddings(r) => format!("{r:?}"),
            Call::DeleteEmbeddings(r) => format!("{r:?}"),
            Call::RecordMetrics(r) => format!("{r:?}"),
            Call::GetMetricsAggregated(r) => format!("{r:?}"),
            Call::UserHasOrgPermission(r) => format!("{r:?}"),
            Call::CheckPermissions(r) => format!("{r:?}"),
            Call::CreateOrganization(r) => format!("{r:?}"),
            Call::ListUserOrganizations(r) => format!("{r:?}"),
            Call::PutMember(r) => format!("{r:?}"),
            Call::RemoveMember(r) => format!("{r:?}"),
            Call::ListMembers(r) => format!("{r:?}"),
            Call::LogAiContext(r) => format!("{r:?}"),
            Call::LogAiContextStream(r) => format!("{r:?}"),
            Call::SearchAiContext(r) => format!("{r:?}"),
            Call::ListAiContext(r) => format!("{r:?}"),
            Call::RecordAiFeedback(r) => format!("{r:?}"),
            Call::ExportAiContext(r) => format!("{r:?}"),
            Call::VerifyMigrationIntegrity => String::new(),
            Call::ArchiveOldMetrics(r) => format!("{r:?}"),
        };
        let cut: String = body.chars().take(1500).collect();
        write!(f, "{}: {cut}", self.rpc())
    }
}

impl Call {
    fn rpc(&self) -> &'static str {
        match self {
            Call::FindSimilarContent(_) => "FindSimilarContent",
            Call::SearchByVector(_) => "SearchByVector",
            Call::UpsertEmbeddings(_) => "UpsertEmbeddings",
            Call::DeleteEmbeddings(_) => "DeleteEmbeddings",
            Call::RecordMetrics(_) => "RecordMetrics",
            Call::GetMetricsAggregated(_) => "GetMetricsAggregated",
            Call::UserHasOrgPermission(_) => "UserHasOrgPermission",
            Call::CheckPermissions(_) => "CheckPermissions",
            Call::CreateOrganization(_) => "CreateOrganization",
            Call::ListUserOrganizations(_) => "ListUserOrganizations",
            Call::PutMember(_) => "PutMember",
            Call::RemoveMember(_) => "RemoveMember",
            Call::ListMembers(_) => "ListMembers",
            Call::LogAiContext(_) => "LogAiContext",
            Call::LogAiContextStream(_) => "LogAiContextStream",
            Call::SearchAiContext(_) => "SearchAiContext",
            Call::ListAiContext(_) => "ListAiContext",
            Call::RecordAiFeedback(_) => "RecordAiFeedback",
            Call::ExportAiContext(_) => "ExportAiContext",
            Call::VerifyMigrationIntegrity => "VerifyMigrationIntegrity",
            Call::ArchiveOldMetrics(_) => "ArchiveOldMetrics",
        }
    }

    /// The codes the contract README allows for this RPC with a valid token.
    /// RESOURCE_EXHAUSTED is allowed everywhere (size limits apply to every
    /// message); NOT_FOUND too (service_role naming an organization that
    /// does not exist).
    /// The codes the contract's error table allows for this RPC. NOT_FOUND
    /// only where it names it: FindSimilarContent's source without an
    /// embedding, and a service_role write naming an organization that does
    /// not exist (users are checked for membership first and get
    /// PERMISSION_DENIED).
    fn allowed(&self) -> &'static [Code] {
        use Code::*;
        match self {
            Call::FindSimilarContent(_)
            | Call::UpsertEmbeddings(_)
            | Call::RecordMetrics(_)
            | Call::LogAiContext(_)
            | Call::LogAiContextStream(_)
            | Call::RecordAiFeedback(_) => &[
                Ok,
                InvalidArgument,
                NotFound,
                PermissionDenied,
                ResourceExhausted,
            ],
            Call::CreateOrganization(_) => &[
                Ok,
                InvalidArgument,
                PermissionDenied,
                AlreadyExists,
                ResourceExhausted,
            ],
            Call::PutMember(_) | Call::RemoveMember(_) => &[
                Ok,
                InvalidArgument,
                PermissionDenied,
                FailedPrecondition,
                NotFound,
                ResourceExhausted,
            ],
            // query_text on a server without a text model.
            Call::SearchAiContext(_) => &[
                Ok,
                InvalidArgument,
                PermissionDenied,
                FailedPrecondition,
                ResourceExhausted,
            ],
            Call::VerifyMigrationIntegrity => &[Ok, PermissionDenied, ResourceExhausted],
            _ => &[Ok, InvalidArgument, PermissionDenied, ResourceExhausted],
        }
    }
}

// ------------------------------------------------------------ strategies

fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("x".repeat(10 * 1024)),
        Just("'; DROP TABLE time_series_metrics; --".to_string()),
        Just("'); DROP TABLE organizations; --".to_string()),
        Just("\"quoted\" 'single' `back`".to_string()),
        Just("nul\0byte".to_string()),
        Just("\0".to_string()),
        Just("%_\\".to_string()),
        Just("\u{202e}rtl \u{fffd} \u{1f600}".to_string()),
        Just("post".to_string()),
        Just("ai_context".to_string()),
        "[a-z_]{1,16}",
        any::<String>(),
    ]
    .boxed()
}

fn uuid_string(seeded: &Seeded) -> BoxedStrategy<String> {
    let known = vec![
        seeded.org.to_string(),
        seeded.owner.to_string(),
        seeded.entity.to_string(),
        seeded.org.to_string().to_uppercase(),
        format!("{{{}}}", seeded.org),
        seeded.org.simple().to_string(),
        Uuid::nil().to_string(),
        Uuid::max().to_string(),
        "not-a-uuid".to_string(),
    ];
    prop_oneof![
        4 => proptest::sample::select(known),
        2 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => hostile_string(),
    ]
    .boxed()
}

fn hostile_f32() -> BoxedStrategy<f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(-1.0),
        Just(2.0),
        Just(0.5),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
        any::<f32>(),
    ]
    .boxed()
}

fn hostile_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(42.0),
        any::<f64>(),
    ]
    .boxed()
}

/// Vectors of the interesting lengths (none, one, the indexed dimensions,
/// one with no index, 100,000), filled with zeros, NaN, infinities or values.
fn hostile_vector() -> BoxedStrategy<Vec<f32>> {
    let len = prop_oneof![
        Just(0usize),
        Just(1),
        Just(3),
        Just(384),
        Just(768),
        Just(1536),
        Just(4000),
        Just(100_000),
    ];
    #[derive(Clone, Copy, Debug)]
    enum Fill {
        Zeros,
        Nan,
        Inf,
        OneNan,
        Values(u32),
    }
    let fill = prop_oneof![
        Just(Fill::Zeros),
        Just(Fill::Nan),
        Just(Fill::Inf),
        Just(Fill::OneNan),
        any::<u32>().prop_map(Fill::Values),
        any::<u32>().prop_map(Fill::Values),
    ];
    (len, fill)
        .prop_map(|(len, fill)| match fill {
            Fill::Zeros => vec![0.0; len],
            Fill::Nan => vec![f32::NAN; len],
            Fill::Inf => vec![f32::INFINITY; len],
            Fill::OneNan => {
                let mut v = vec![0.25; len];
                if let Some(last) = v.last_mut() {
                    *last = f32::NAN;
                }
                v
            }
            Fill::Values(seed) => (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5
                })
                .collect(),
        })
        .boxed()
}

fn hostile_u32() -> BoxedStrategy<u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(10),
        Just(1000),
        Just(1001),
        Just(u32::MAX),
        any::<u32>(),
    ]
    .boxed()
}

fn hostile_enum() -> BoxedStrategy<i32> {
    prop_oneof![
        4 => 0i32..=4,
        1 => Just(-1),
        1 => Just(5),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
    ]
    .boxed()
}

fn hostile_timestamp() -> BoxedStrategy<Option<Timestamp>> {
    let now = chrono::Utc::now().timestamp();
    let seconds = prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1),
        Just(-62_135_596_800), // 0001-01-01
        Just(-62_135_596_801),
        Just(253_402_300_799), // 9999-12-31T23:59:59
        Just(253_402_300_800),
        Just(now),
        Just(now - 86_400 * 40),
        Just(now + 86_400 * 400),
        any::<i64>(),
    ];
    let nanos = prop_oneof![
        Just(0i32),
        Just(-1),
        Just(999_999_999),
        Just(1_000_000_000),
        Just(i32::MIN),
        Just(i32::MAX),
    ];
    proptest::option::of((seconds, nanos).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }))
        .boxed()
}

fn hostile_time_zone() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("UTC".to_string()),
        Just("Europe/Berlin".to_string()),
        Just("America/New_York".to_string()),
        Just("Mars/Olympus_Mons".to_string()),
        Just("+05:00".to_string()),
        Just("EST5EDT".to_string()),
        Just("utc".to_string()),
        Just("UTC'; SELECT pg_sleep(30); --".to_string()),
        Just("Europe/Berlin' OR '1'='1".to_string()),
        hostile_string(),
    ]
    .boxed()
}

fn hostile_page_token() -> BoxedStrategy<String> {
    use base64::Engine;
    let bytes = proptest::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        Just(String::new()),
        bytes
            .clone()
            .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        bytes
            .clone()
            .prop_map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)),
        bytes.prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        hostile_string(),
    ]
    .boxed()
}

/// A protobuf Struct: none, small, with NaN/infinite numbers, nested, or 10 MB.
fn hostile_metadata() -> BoxedStrategy<Option<Struct>> {
    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }
    fn strukt(fields: Vec<(String, Value)>) -> Struct {
        Struct {
            fields: fields.into_iter().collect(),
        }
    }
    prop_oneof![
        Just(None),
        (hostile_string(), hostile_string())
            .prop_map(|(k, v)| Some(strukt(vec![(k, value(Kind::StringValue(v)))]))),
        hostile_f64().prop_map(|n| Some(strukt(vec![(
            "confidence".into(),
            value(Kind::NumberValue(n))
        )]))),
        Just(Some(strukt(vec![("empty".into(), Value { kind: None })]))),
        (1usize..40).prop_map(|depth| {
            let mut v = value(Kind::NullValue(0));
            for _ in 0..depth {
                v = value(Kind::ListValue(ListValue { values: vec![v] }));
                v = value(Kind::StructValue(strukt(vec![("k".into(), v)])));
            }
            Some(strukt(vec![("deep".into(), v)]))
        }),
        Just(Some(strukt(vec![(
            "blob".into(),
            value(Kind::StringValue("m".repeat(10 * 1024 * 1024)))
        )]))),
    ]
    .boxed()
}

/// Most bytes one repeated-element batch may encode to: well past the
/// service's 16 MiB message limit, far from the machine's memory. Unbounded,
/// 100,000 copies of a 100,000-dimension embedding are 40 GB: that is what
/// made some seeds run for many minutes or run out of memory.
const MAX_BATCH_BYTES: usize = 48 << 20;

/// Batches of a few distinct elements, or one element repeated past the
/// limits (1001, 10,001 and 100,000; fewer copies of a large element, so the
/// request stays under [`MAX_BATCH_BYTES`]).
fn batch<T: prost::Message + Clone + fmt::Debug + 'static>(
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

fn entity_ref(s: &Seeded) -> BoxedStrategy<Option<proto::EntityRef>> {
    prop_oneof![
        1 => Just(None),
        6 => (hostile_string(), uuid_string(s))
            .prop_map(|(entity_type, entity_id)| Some(proto::EntityRef { entity_type, entity_id })),
    ]
    .boxed()
}

fn strings(s: BoxedStrategy<String>) -> BoxedStrategy<Vec<String>> {
    proptest::collection::vec(s, 0..3).boxed()
}

fn log_entry(s: &Seeded) -> BoxedStrategy<proto::LogAiContextRequest> {
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

fn permission_check(s: &Seeded) -> BoxedStrategy<proto::UserHasOrgPermissionRequest> {
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

/// One request generator per RPC of the five services.
fn call(s: &Seeded) -> BoxedStrategy<Call> {
    let find_similar = (
        uuid_string(s),
        entity_ref(s),
        hostile_f32(),
        hostile_u32(),
        strings(hostile_string()),
    )
        .prop_map(
            |(organization_id, entity, similarity_threshold, max_results, target_entity_types)| {
                Call::FindSimilarContent(proto::FindSimilarContentRequest {
                    organization_id,
                    entity,
                    similarity_threshold,
                    max_results,
                    target_entity_types,
                })
            },
        );
    let search_by_vector = (
        uuid_string(s),
        hostile_vector(),
        hostile_string(),
        hostile_f32(),
        hostile_u32(),
        strings(hostile_string()),
    )
        .prop_map(
            |(organization_id, vector, model, similarity_threshold, max_results, entity_types)| {
                Call::SearchByVector(proto::SearchByVectorRequest {
                    organization_id,
                    vector,
                    model,
                    similarity_threshold,
                    max_results,
                    entity_types,
                })
            },
        );
    let record = (entity_ref(s), hostile_vector(), hostile_string())
        .prop_map(|(entity, vector, model)| proto::EmbeddingRecord {
            entity,
            vector,
            model,
        })
        .boxed();
    let upsert = (uuid_string(s), batch(record)).prop_map(|(organization_id, embeddings)| {
        Call::UpsertEmbeddings(proto::UpsertEmbeddingsRequest {
            organization_id,
            embeddings,
        })
    });
    let entity = entity_ref(s).prop_map(Option::unwrap_or_default).boxed();
    let delete = (uuid_string(s), batch(entity)).prop_map(|(organization_id, entities)| {
        Call::DeleteEmbeddings(proto::DeleteEmbeddingsRequest {
            organization_id,
            entities,
        })
    });
    let point = (
        entity_ref(s),
        hostile_string(),
        hostile_f64(),
        hostile_timestamp(),
    )
        .prop_map(
            |(entity, metric_name, value, recorded_at)| proto::MetricPoint {
                entity,
                metric_name,
                value,
                recorded_at,
            },
        )
        .boxed();
    let record_metrics = (uuid_string(s), batch(point), hostile_string()).prop_map(
        |(organization_id, points, idempotency_key)| {
            Call::RecordMetrics(proto::RecordMetricsRequest {
                organization_id,
                idempotency_key,
                points,
            })
        },
    );
    let aggregated = (
        (uuid_string(s), entity_ref(s), hostile_string()),
        (hostile_enum(), hostile_timestamp(), hostile_timestamp()),
        hostile_time_zone(),
    )
        .prop_map(
            |((organization_id, entity, metric_name), (granularity, start, end), time_zone)| {
                Call::GetMetricsAggregated(proto::GetMetricsAggregatedRequest {
                    organization_id,
                    entity,
                    metric_name,
                    granularity,
                    start,
                    end,
                    time_zone,
                    ..Default::default()
                })
            },
        );
    let has_permission = permission_check(s).prop_map(Call::UserHasOrgPermission);
    let check_permissions = batch(permission_check(s))
        .prop_map(|checks| Call::CheckPermissions(proto::CheckPermissionsRequest { checks }));
    let slug = prop_oneof![
        2 => "[a-z0-9-]{1,20}".boxed(),
        1 => hostile_string(),
    ];
    let create_org =
        (hostile_string(), slug, uuid_string(s)).prop_map(|(name, slug, owner_user_id)| {
            Call::CreateOrganization(proto::CreateOrganizationRequest {
                name,
                slug,
                owner_user_id,
            })
        });
    let list_orgs = uuid_string(s).prop_map(|user_id| {
        Call::ListUserOrganizations(proto::ListUserOrganizationsRequest { user_id })
    });
    let put_member = (uuid_string(s), uuid_string(s), hostile_enum()).prop_map(
        |(organization_id, user_id, role)| {
            Call::PutMember(proto::PutMemberRequest {
                organization_id,
                user_id,
                role,
            })
        },
    );
    let remove_member = (uuid_string(s), uuid_string(s)).prop_map(|(organization_id, user_id)| {
        Call::RemoveMember(proto::RemoveMemberRequest {
            organization_id,
            user_id,
        })
    });
    let list_members = uuid_string(s).prop_map(|organization_id| {
        Call::ListMembers(proto::ListMembersRequest { organization_id })
    });
    let log = log_entry(s).prop_map(Call::LogAiContext);
    let log_stream =
        proptest::collection::vec(log_entry(s), 0..4).prop_map(Call::LogAiContextStream);
    let search_ai = (
        (uuid_string(s), hostile_vector(), hostile_string()),
        (hostile_f32(), hostile_u32(), uuid_string(s)),
        (strings(hostile_string()), hostile_string()),
        (
            hostile_string(),
            hostile_timestamp(),
            hostile_timestamp(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (organization_id, vector, model),
                (similarity_threshold, max_results, user_id),
                (source_types, query_text),
                (session_id, occurred_after, occurred_before, exclude_negative_feedback),
            )| {
                Call::SearchAiContext(proto::SearchAiContextRequest {
                    organization_id,
                    vector,
                    model,
                    similarity_threshold,
                    max_results,
                    user_id,
                    source_types,
                    query_text,
                    session_id,
                    occurred_after,
                    occurred_before,
                    exclude_negative_feedback,
                })
            },
        );
    let list_ai = (
        uuid_string(s),
        uuid_string(s),
        hostile_u32(),
        hostile_page_token(),
        hostile_string(),
    )
        .prop_map(
            |(organization_id, user_id, page_size, page_token, session_id)| {
                Call::ListAiContext(proto::ListAiContextRequest {
                    organization_id,
                    user_id,
                    page_size,
                    page_token,
                    session_id,
                })
            },
        );
    let feedback_value = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        any::<f64>(),
    ];
    let feedback = (
        (uuid_string(s), uuid_string(s), uuid_string(s)),
        (hostile_string(), feedback_value, hostile_string()),
        (uuid_string(s), hostile_timestamp(), any::<bool>()),
    )
        .prop_map(
            |(
                (organization_id, entry_id, feedback_id),
                (name, value, comment),
                (user_id, created_at, present),
            )| {
                Call::RecordAiFeedback(proto::RecordAiFeedbackRequest {
                    organization_id,
                    entry_id,
                    feedback: present.then_some(proto::AiFeedback {
                        feedback_id,
                        name,
                        value,
                        comment,
                        user_id,
                        created_at,
                    }),
                })
            },
        );
    let export = (
        (uuid_string(s), uuid_string(s), hostile_string()),
        (hostile_timestamp(), hostile_timestamp()),
    )
        .prop_map(
            |((organization_id, user_id, session_id), (occurred_after, occurred_before))| {
                Call::ExportAiContext(proto::ExportAiContextRequest {
                    organization_id,
                    user_id,
                    session_id,
                    occurred_after,
                    occurred_before,
                })
            },
        );
    let verify = Just(Call::VerifyMigrationIntegrity);
    let archive = hostile_u32().prop_map(|older_than_days| {
        Call::ArchiveOldMetrics(proto::ArchiveOldMetricsRequest { older_than_days })
    });
    prop_oneof![
        find_similar.boxed(),
        search_by_vector.boxed(),
        upsert.boxed(),
        delete.boxed(),
        record_metrics.boxed(),
        aggregated.boxed(),
        has_permission.boxed(),
        check_permissions.boxed(),
        create_org.boxed(),
        list_orgs.boxed(),
        put_member.boxed(),
        remove_member.boxed(),
        list_members.boxed(),
        log.boxed(),
        log_stream.boxed(),
        search_ai.boxed(),
        list_ai.boxed(),
        feedback.boxed(),
        export.boxed(),
        verify.boxed(),
        archive.boxed(),
    ]
    .boxed()
}

fn case(s: &Seeded) -> impl Strategy<Value = Case> {
    let who = prop_oneof![
        3 => Just(Who::Service),
        2 => Just(Who::Owner),
        1 => Just(Who::Stranger),
    ];
    (who, call(s)).prop_map(|(who, call)| Case(who, call))
}

// ------------------------------------------------------------- execution

/// The status code of one call (OK or the error's code).
async fn execute(s: &TestServer, token: &str, call: Call) -> Code {
    fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
        r.map_or_else(|e| e.code(), |_| Code::Ok)
    }
    match call {
        Call::FindSimilarContent(r) => {
            code(s.similarity().find_similar_content(authed(r, token)).await)
        }
        Call::SearchByVector(r) => code(s.similarity().search_by_vector(authed(r, token)).await),
        Call::UpsertEmbeddings(r) => code(s.similarity().upsert_embeddings(authed(r, token)).await),
        Call::DeleteEmbeddings(r) => code(s.similarity().delete_embeddings(authed(r, token)).await),
        Call::RecordMetrics(r) => code(s.metrics().record_metrics(authed(r, token)).await),
        Call::GetMetricsAggregated(r) => {
            code(s.metrics().get_metrics_aggregated(authed(r, token)).await)
        }
        Call::UserHasOrgPermission(r) => {
            code(s.orgs().user_has_org_permission(authed(r, token)).await)
        }
        Call::CheckPermissions(r) => code(s.orgs().check_permissions(authed(r, token)).await),
        Call::CreateOrganization(r) => code(s.orgs().create_organization(authed(r, token)).await),
        Call::ListUserOrganizations(r) => {
            code(s.orgs().list_user_organizations(authed(r, token)).await)
        }
        Call::PutMember(r) => code(s.orgs().put_member(authed(r, token)).await),
        Call::RemoveMember(r) => code(s.orgs().remove_member(authed(r, token)).await),
        Call::ListMembers(r) => code(s.orgs().list_members(authed(r, token)).await),
        Call::LogAiContext(r) => code(s.ai_context().log_ai_context(authed(r, token)).await),
        Call::LogAiContextStream(r) => code(
            s.ai_context()
                .log_ai_context_stream(authed(tokio_stream::iter(r), token))
                .await,
        ),
        Call::SearchAiContext(r) => code(s.ai_context().search_ai_context(authed(r, token)).await),
        Call::ListAiContext(r) => code(s.ai_context().list_ai_context(authed(r, token)).await),
        Call::RecordAiFeedback(r) => {
            code(s.ai_context().record_ai_feedback(authed(r, token)).await)
        }
        Call::ExportAiContext(r) => {
            match s.ai_context().export_ai_context(authed(r, token)).await {
                Ok(res) => {
                    // Read to the end: an error may come mid-stream.
                    let mut stream = res.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => break Code::Ok,
                            Err(e) => break e.code(),
                        }
                    }
                }
                Err(e) => e.code(),
            }
        }
        Call::VerifyMigrationIntegrity => code(
            s.maintenance()
                .verify_migration_integrity(authed(
                    proto::VerifyMigrationIntegrityRequest {},
                    token,
                ))
                .await,
        ),
        Call::ArchiveOldMetrics(r) => {
            code(s.maintenance().archive_old_metrics(authed(r, token)).await)
        }
    }
}

async fn public_tables(s: &TestServer) -> BTreeSet<String> {
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
        .fetch_all(&s.db.pool)
        .await
        .expect("listing tables")
        .into_iter()
        .collect()
}

/// One tenant with an embedded entity, a metric point and an AI context
/// entry, so that valid-looking requests reach deep validation.
async fn seed(s: &TestServer) -> Seeded {
    let t = s.new_tenant().await;
    let entity = Uuid::new_v4();
    let service = service_token();
    let entity_ref = proto::EntityRef {
        entity_type: "post".into(),
        entity_id: entity.to_string(),
    };
    s.similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: t.org.to_string(),
                embeddings: vec![proto::EmbeddingRecord {
                    entity: Some(entity_ref.clone()),
                    vector: (0..384).map(|i| (i as f32).sin()).collect(),
                    model: "m".into(),
                }],
            },
            &service,
        ))
        .await
        .expect("seeding an embedding");
    s.metrics()
        .record_metrics(authed(
            proto::RecordMetricsRequest {
                organization_id: t.org.to_string(),
                idempotency_key: String::new(),
                points: vec![proto::MetricPoint {
                    entity: Some(entity_ref),
                    metric_name: "likes".into(),
                    value: 3.0,
                    recorded_at: None,
                }],
            },
            &service,
        ))
        .await
        .expect("seeding a metric point");
    s.ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                organization_id: t.org.to_string(),
                user_id: t.user.to_string(),
                source_type: "chat".into(),
                context_summary: "seed".into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("seeding an AI context entry");
    Seeded {
        org: t.org,
        owner: t.user,
        entity,
    }
}

/// The bystander's deadline: generous for two shared cores, yet far below
/// what a starved client would see (a hostile request holding the service).
const BYSTANDER_DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn hostile_requests_to_every_rpc_get_contract_codes_and_never_crash_the_service() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = rt.block_on(TestServer::start());
    let seeded = rt.block_on(seed(&server));
    let tables_before = rt.block_on(public_tables(&server));
    let tokens = (
        service_token(),
        user_token(seeded.owner),
        user_token(Uuid::new_v4()),
    );

    // Another client, on a connection of its own, keeps asking a cheap
    // question while the hostile requests run: none of them may starve it.
    let stop_bystander = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = {
        let stop = stop_bystander.clone();
        let url = format!("http://{}", server.addr);
        let (org, owner) = (seeded.org, seeded.owner);
        let token = tokens.1.clone();
        rt.spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("an endpoint")
                .connect()
                .await
                .expect("the bystander's connection");
            let mut client =
                proto::organization_service_client::OrganizationServiceClient::new(channel);
            let (mut answered, mut slowest, mut failures) = (0u32, Duration::ZERO, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let mut req = authed(
                    proto::UserHasOrgPermissionRequest {
                        user_id: owner.to_string(),
                        organization_id: org.to_string(),
                        required_role: proto::Role::Viewer as i32,
                    },
                    &token,
                );
                req.set_timeout(BYSTANDER_DEADLINE);
                match client.user_has_org_permission(req).await {
                    Ok(r) if r.get_ref().allowed => answered += 1,
                    other => failures.push(format!("{other:?}")),
                }
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answered, slowest, failures)
        })
    };

    let mut runner = TestRunner::new(Config {
        cases: 256,
        max_shrink_iters: 200,
        // Shrinking a case that timed out could otherwise take hours.
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(&seeded), |Case(who, call)| {
        let token = match who {
            Who::Service => &tokens.0,
            Who::Owner => &tokens.1,
            Who::Stranger => &tokens.2,
        };
        let rpc = call.rpc();
        let allowed = call.allowed();
        // A generous bound: a hostile request must not hang the service.
        let got = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(60), execute(&server, token, call)).await
            })
            .map_err(|_| TestCaseError::fail(format!("{rpc}: no answer within 60 s")))?;
        if allowed.contains(&got) {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{rpc} answered {got:?}; the contract allows {allowed:?}"
            )))
        }
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, case)) => panic!("{why}\nminimal case: {case:?}"),
        Err(e) => panic!("{e}"),
    }
    stop_bystander.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, slowest, failures) = rt.block_on(bystander).expect("the bystander task");
    eprintln!("bystander: {answered} answers, slowest {slowest:?}");
    assert!(
        failures.is_empty(),
        "another client's calls failed or missed their {BYSTANDER_DEADLINE:?} deadline during the hostile requests: {failures:?}"
    );
    assert!(answered > 0, "the bystander got no answer at all");

    rt.block_on(async {
        assert_eq!(
            server.health("").await,
            Some(ServingStatus::Serving),
            "the service still serves after the hostile requests"
        );
        let tables_after = public_tables(&server).await;
        let gone: Vec<_> = tables_before.difference(&tables_after).collect();
        assert!(gone.is_empty(), "tables dropped by hostile input: {gone:?}");
        // The seeded tenant is intact and still answers through the API.
        let members = server
            .orgs()
            .list_members(authed(
                proto::ListMembersRequest {
                    organization_id: seeded.org.to_string(),
                },
                &tokens.0,
            ))
            .await
            .expect("listing the seeded organization's members")
            .into_inner();
        assert!(!members.members.is_empty());
    });
    drop(server);
}
