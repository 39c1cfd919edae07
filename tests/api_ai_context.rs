//! AiContextService through a real client, server and database.
mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use affinity::proto::{self, Role};
use common::server::{authed, code, service_token, user_token, Tenant, TestServer};
use common::TestDb;
use prost_types::value::Kind;
use tonic::{Code, Request};
use uuid::Uuid;

const DIM: usize = 384;

fn log_req(org: Uuid, source_type: &str) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: source_type.to_string(),
        ..Default::default()
    }
}

/// A 384-dimensional unit vector whose cosine similarity with `axis(0)` is
/// cos(angle) (it lies in the plane of the first two axes).
fn at_angle(degrees: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    let r = degrees.to_radians();
    v[0] = r.cos();
    v[1] = r.sin();
    v
}

fn num(n: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

fn text(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn strukt(fields: Vec<(&str, prost_types::Value)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn count_entries(s: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ai_context_logs WHERE organization_id = $1")
        .bind(org)
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

async fn count_embeddings(s: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM embeddings WHERE organization_id = $1 AND entity_type = 'ai_context'",
    )
    .bind(org)
    .fetch_one(&s.db.pool)
    .await
    .unwrap()
}

async fn log(
    s: &TestServer,
    req: proto::LogAiContextRequest,
    token: &str,
) -> proto::LogAiContextResponse {
    s.ai_context()
        .log_ai_context(authed(req, token))
        .await
        .expect("logging")
        .into_inner()
}

async fn log_stream(
    s: &TestServer,
    msgs: Vec<proto::LogAiContextRequest>,
    token: &str,
) -> Result<proto::LogAiContextStreamResponse, tonic::Status> {
    s.ai_context()
        .log_ai_context_stream(authed(tokio_stream::iter(msgs), token))
        .await
        .map(|r| r.into_inner())
}

fn search_req(org: Uuid, vector: Vec<f32>) -> proto::SearchAiContextRequest {
    proto::SearchAiContextRequest {
        organization_id: org.to_string(),
        vector,
        similarity_threshold: -1.0,
        ..Default::default()
    }
}

fn list_req(org: Uuid) -> proto::ListAiContextRequest {
    proto::ListAiContextRequest {
        organization_id: org.to_string(),
        ..Default::default()
    }
}

/// Both denied, with the same message once the organization ids are blanked:
/// a non-member cannot tell an existing organization from a made-up one.
fn assert_denied_alike(real: tonic::Status, real_org: Uuid, fake: tonic::Status, fake_org: Uuid) {
    assert_eq!(real.code(), Code::PermissionDenied, "{real:?}");
    assert_eq!(fake.code(), Code::PermissionDenied, "{fake:?}");
    assert_eq!(
        real.message().replace(&real_org.to_string(), "<org>"),
        fake.message().replace(&fake_org.to_string(), "<org>")
    );
}

// ------------------------------------------------------------ LogAiContext

#[tokio::test(flavor = "multi_thread")]
async fn log_stores_an_entry_with_its_metadata_and_embedding() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let metadata = strukt(vec![
        ("model", text("gpt-4")),
        ("confidence", num(0.9)),
        ("tokens", num(1234.0)),
        (
            "flags",
            prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue {
                    values: vec![
                        text("a"),
                        prost_types::Value {
                            kind: Some(Kind::BoolValue(true)),
                        },
                        prost_types::Value {
                            kind: Some(Kind::NullValue(0)),
                        },
                    ],
                })),
            },
        ),
        (
            "nested",
            prost_types::Value {
                kind: Some(Kind::StructValue(strukt(vec![("depth", num(2.0))]))),
            },
        ),
    ]);
    let occurred_at = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_000,
    };
    let r = log(
        &s,
        proto::LogAiContextRequest {
            context_summary: "user asked about pricing".into(),
            ai_response: "it costs 5 €".into(),
            metadata: Some(metadata.clone()),
            embedding: at_angle(0.0),
            embedding_model: "text-embedding-3-small".into(),
            occurred_at: Some(occurred_at),
            ..log_req(t.org, "chat")
        },
        &t.token,
    )
    .await;
    assert!(!r.duplicate);
    let id: Uuid = r.id.parse().unwrap();

    let listed = s
        .ai_context()
        .list_ai_context(authed(list_req(t.org), &t.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let e = &listed.entries[0];
    assert_eq!(e.id, id.to_string());
    assert_eq!(e.organization_id, t.org.to_string());
    assert_eq!(
        e.user_id,
        t.user.to_string(),
        "an empty user_id is the caller"
    );
    assert_eq!(e.source_type, "chat");
    assert_eq!(e.context_summary, "user asked about pricing");
    assert_eq!(e.ai_response, "it costs 5 €");
    assert_eq!(e.metadata.as_ref(), Some(&metadata));
    assert_eq!(e.occurred_at, Some(occurred_at));
    assert!(listed.next_page_token.is_empty());

    let (etype, model, dim): (String, String, i32) = sqlx::query_as(
        "SELECT entity_type, model, dimension FROM embeddings WHERE organization_id = $1 AND entity_id = $2",
    )
    .bind(t.org)
    .bind(id)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (etype.as_str(), model.as_str(), dim),
        ("ai_context", "text-embedding-3-small", 384)
    );

    // Unset occurred_at is the server's now; no metadata is an empty object.
    let before = chrono::Utc::now();
    log(&s, log_req(t.org, "agent"), &t.token).await;
    let listed = s
        .ai_context()
        .list_ai_context(authed(list_req(t.org), &t.token))
        .await
        .unwrap()
        .into_inner();
    let newest = &listed.entries[0];
    assert_eq!(newest.source_type, "agent");
    let at = newest.occurred_at.unwrap();
    assert!(at.seconds >= before.timestamp() - 1);
    assert_eq!(newest.metadata, Some(prost_types::Struct::default()));
    assert_eq!(newest.context_summary, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_retry_returns_the_first_id_and_stores_nothing_new() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let req = proto::LogAiContextRequest {
        idempotency_key: "turn-42".into(),
        context_summary: "first".into(),
        embedding: at_angle(10.0),
        embedding_model: "m".into(),
        ..log_req(t.org, "chat")
    };
    let first = log(&s, req.clone(), &t.token).await;
    assert!(!first.duplicate);
    let retry = log(
        &s,
        proto::LogAiContextRequest {
            context_summary: "second".into(),
            ..req.clone()
        },
        &t.token,
    )
    .await;
    assert!(retry.duplicate);
    assert_eq!(retry.id, first.id);
    assert_eq!(count_entries(&s, t.org).await, 1);
    assert_eq!(count_embeddings(&s, t.org).await, 1);
    let summary: String = sqlx::query_scalar(
        "SELECT context_summary FROM ai_context_logs WHERE organization_id = $1",
    )
    .bind(t.org)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(summary, "first");

    // Concurrent retries: exactly one stores, all get the same id.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = s.ai_context();
        let req = authed(
            proto::LogAiContextRequest {
                idempotency_key: "race".into(),
                ..log_req(t.org, "chat")
            },
            &t.token,
        );
        calls.push(tokio::spawn(async move {
            client.log_ai_context(req).await.unwrap().into_inner()
        }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for c in calls {
        let r = c.await.unwrap();
        ids.insert(r.id);
        fresh += usize::from(!r.duplicate);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(count_entries(&s, t.org).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_logs_only_as_itself_and_service_role_as_anyone() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = Uuid::new_v4();

    let own = log(
        &s,
        proto::LogAiContextRequest {
            user_id: t.user.to_string(),
            ..log_req(t.org, "chat")
        },
        &t.token,
    )
    .await;
    assert!(!own.duplicate);
    let as_other = s
        .ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                user_id: other.to_string(),
                ..log_req(t.org, "chat")
            },
            &t.token,
        ))
        .await;
    assert_eq!(code(as_other), Code::PermissionDenied);

    // service_role names any user, even one never seen (its profile is created).
    let by_service = log(
        &s,
        proto::LogAiContextRequest {
            user_id: other.to_string(),
            ..log_req(t.org, "agent")
        },
        &service_token(),
    )
    .await;
    let owner: Uuid = sqlx::query_scalar(
        "SELECT user_id FROM ai_context_logs WHERE organization_id = $1 AND id = $2",
    )
    .bind(t.org)
    .bind(by_service.id.parse::<Uuid>().unwrap())
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(owner, other);
    // ... but must name one.
    let unnamed = s
        .ai_context()
        .log_ai_context(authed(log_req(t.org, "agent"), &service_token()))
        .await;
    assert_eq!(code(unnamed), Code::InvalidArgument);
    // An organization that does not exist, for service_role.
    let nowhere = s
        .ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                user_id: other.to_string(),
                ..log_req(Uuid::new_v4(), "agent")
            },
            &service_token(),
        ))
        .await;
    assert_eq!(code(nowhere), Code::NotFound);
    assert_eq!(count_entries(&s, t.org).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_refuses_bad_requests_with_the_contract_codes() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    let editor = Uuid::new_v4();
    s.add_member(t.org, editor, Role::Editor).await;
    let mut c = s.ai_context();

    // Authentication.
    assert_eq!(
        code(c.log_ai_context(Request::new(log_req(t.org, "chat"))).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            c.log_ai_context(authed(log_req(t.org, "chat"), "not.a.jwt"))
                .await
        ),
        Code::Unauthenticated
    );
    let wrong_secret = affinity::auth::mint(
        b"another-secret-of-at-least-32-bytes!!",
        t.user,
        "authenticated",
        3600,
    )
    .unwrap();
    assert_eq!(
        code(
            c.log_ai_context(authed(log_req(t.org, "chat"), &wrong_secret))
                .await
        ),
        Code::Unauthenticated
    );

    // Roles: a viewer may not log; an editor may.
    assert_eq!(
        code(
            c.log_ai_context(authed(log_req(t.org, "chat"), &user_token(viewer)))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            c.log_ai_context(authed(log_req(t.org, "chat"), &user_token(editor)))
                .await
        ),
        Code::Ok
    );

    let nan_meta = strukt(vec![("x", num(f64::NAN))]);
    let inf_meta = strukt(vec![(
        "x",
        prost_types::Value {
            kind: Some(Kind::ListValue(prost_types::ListValue {
                values: vec![num(f64::INFINITY)],
            })),
        },
    )]);
    let big_meta = strukt(vec![("blob", text(&"x".repeat(70 * 1024)))]);
    let mut nan_vec = at_angle(0.0);
    nan_vec[7] = f32::NAN;
    let cases: Vec<(&str, proto::LogAiContextRequest, Code)> = vec![
        (
            "malformed organization_id",
            proto::LogAiContextRequest {
                organization_id: "nope".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "empty organization_id",
            proto::LogAiContextRequest {
                organization_id: String::new(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "malformed user_id",
            proto::LogAiContextRequest {
                user_id: "12".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "empty source_type",
            log_req(t.org, ""),
            Code::InvalidArgument,
        ),
        (
            "long source_type",
            log_req(t.org, &"s".repeat(101)),
            Code::InvalidArgument,
        ),
        (
            "NUL in source_type",
            log_req(t.org, "a\0b"),
            Code::InvalidArgument,
        ),
        (
            "NUL in context_summary",
            proto::LogAiContextRequest {
                context_summary: "a\0b".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "NUL in ai_response",
            proto::LogAiContextRequest {
                ai_response: "\0".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "NaN in metadata",
            proto::LogAiContextRequest {
                metadata: Some(nan_meta),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "infinity in metadata",
            proto::LogAiContextRequest {
                metadata: Some(inf_meta),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "metadata too large",
            proto::LogAiContextRequest {
                metadata: Some(big_meta),
                ..log_req(t.org, "chat")
            },
            Code::ResourceExhausted,
        ),
        (
            "NaN in embedding",
            proto::LogAiContextRequest {
                embedding: nan_vec,
                embedding_model: "m".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "embedding without model",
            proto::LogAiContextRequest {
                embedding: at_angle(0.0),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "dimension without index",
            proto::LogAiContextRequest {
                embedding: vec![0.1, 0.2, 0.3],
                embedding_model: "m".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "long idempotency_key",
            proto::LogAiContextRequest {
                idempotency_key: "k".repeat(201),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "occurred_at out of range",
            proto::LogAiContextRequest {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: i64::MAX / 2,
                    nanos: 0,
                }),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
    ];
    for (what, req, want) in cases {
        let got = c.log_ai_context(authed(req, &t.token)).await;
        if let Err(status) = &got {
            assert!(
                !status.message().is_empty(),
                "{what}: a message a person can act on"
            );
        }
        assert_eq!(code(got), want, "{what}");
    }
    // Only the editor's entry was stored.
    assert_eq!(count_entries(&s, t.org).await, 1);
}

// ------------------------------------------------------ LogAiContextStream

#[tokio::test(flavor = "multi_thread")]
async fn stream_stores_thousands_of_entries_and_counts_duplicates() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    // A key already used by a unary call is a duplicate in the stream.
    let earlier = log(
        &s,
        proto::LogAiContextRequest {
            idempotency_key: "key-0".into(),
            ..log_req(t.org, "chat")
        },
        &t.token,
    )
    .await;

    let n = 2_000;
    let mut msgs = Vec::with_capacity(n);
    for i in 0..n {
        let mut m = proto::LogAiContextRequest {
            context_summary: format!("summary {i}"),
            metadata: Some(strukt(vec![("i", num(i as f64))])),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + i as i64,
                nanos: 0,
            }),
            ..log_req(t.org, if i % 2 == 0 { "chat" } else { "agent" })
        };
        // Every 4th message has a key; keys 0..100 are each used twice in the
        // stream (key-0 a third time: the unary call above).
        if i % 4 == 0 {
            m.idempotency_key = format!("key-{}", (i / 4) % 400);
        }
        if i % 10 == 0 {
            m.embedding = at_angle(i as f32 / 100.0);
            m.embedding_model = "m".into();
        }
        msgs.push(m);
    }
    // 500 keyed messages over 400 distinct keys: 100 repeats, and key-0 was
    // stored before the stream.
    let started = Instant::now();
    let r = log_stream(&s, msgs, &t.token).await.unwrap();
    let took = started.elapsed();
    eprintln!(
        "stream of {n} entries: {took:?} ({:.0}/s)",
        n as f64 / took.as_secs_f64()
    );
    assert_eq!(r.duplicates, 101);
    assert_eq!(r.stored, n as u64 - 101);
    assert_eq!(count_entries(&s, t.org).await, 1 + r.stored as i64);
    // Embeddings of the stored entries only: not of i = 0 (key-0 was taken
    // before the stream) nor of the in-stream repeats (keyed i >= 1600).
    let expected_embeddings: i64 = (0..n)
        .filter(|i| i % 10 == 0 && !(*i >= 1600 && i % 4 == 0) && *i != 0)
        .count() as i64;
    assert_eq!(count_embeddings(&s, t.org).await, expected_embeddings);
    // The key used before the stream still points at the first entry.
    let holder: Uuid = sqlx::query_scalar(
        "SELECT id FROM ai_context_logs WHERE organization_id = $1 AND idempotency_key = 'key-0'",
    )
    .bind(t.org)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(holder.to_string(), earlier.id);

    // Replaying the same stream stores nothing new but the keyless entries.
    let replay: Vec<_> = (0..8)
        .map(|i| proto::LogAiContextRequest {
            idempotency_key: format!("key-{i}"),
            ..log_req(t.org, "chat")
        })
        .chain(std::iter::once(log_req(t.org, "chat")))
        .collect();
    let r = log_stream(&s, replay, &t.token).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 8));

    // An empty stream stores nothing.
    let r = log_stream(&s, vec![], &t.token).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_is_all_or_none() {
    let s = TestServer::start_with(TestDb::empty().await, |c| c.max_batch = 1_500).await;
    let t = s.new_tenant().await;
    let viewer_org = s.new_tenant().await;
    s.add_member(viewer_org.org, t.user, Role::Viewer).await;
    let good = |i: usize| proto::LogAiContextRequest {
        idempotency_key: format!("k{i}"),
        ..log_req(t.org, "chat")
    };

    let bad_messages: Vec<(&str, proto::LogAiContextRequest, Code)> = vec![
        (
            "empty source_type",
            log_req(t.org, ""),
            Code::InvalidArgument,
        ),
        (
            "NaN vector",
            proto::LogAiContextRequest {
                embedding: vec![f32::NAN; DIM],
                embedding_model: "m".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "malformed organization_id",
            proto::LogAiContextRequest {
                organization_id: "x".into(),
                ..log_req(t.org, "chat")
            },
            Code::InvalidArgument,
        ),
        (
            "metadata too large",
            proto::LogAiContextRequest {
                metadata: Some(strukt(vec![("b", text(&"x".repeat(70 * 1024)))])),
                ..log_req(t.org, "chat")
            },
            Code::ResourceExhausted,
        ),
        (
            "another user",
            proto::LogAiContextRequest {
                user_id: Uuid::new_v4().to_string(),
                ..log_req(t.org, "chat")
            },
            Code::PermissionDenied,
        ),
        (
            "an organization where a viewer",
            log_req(viewer_org.org, "chat"),
            Code::PermissionDenied,
        ),
    ];
    for (what, bad, want) in bad_messages {
        let mut msgs: Vec<_> = (0..1_000).map(good).collect();
        msgs.insert(600, bad);
        let got = log_stream(&s, msgs, &t.token).await;
        assert_eq!(got.map_err(|e| e.code()).err(), Some(want), "{what}");
        assert_eq!(count_entries(&s, t.org).await, 0, "{what}: nothing stored");
    }

    // Over max_batch messages: refused whole.
    let got = log_stream(&s, (0..1_501).map(good).collect(), &t.token).await;
    assert_eq!(got.map_err(|e| e.code()).err(), Some(Code::InvalidArgument));
    assert_eq!(count_entries(&s, t.org).await, 0);
    // Exactly max_batch is fine.
    let r = log_stream(&s, (0..1_500).map(good).collect(), &t.token)
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (1_500, 0));

    // No token: nothing stored.
    let got = s
        .ai_context()
        .log_ai_context_stream(Request::new(tokio_stream::iter(vec![log_req(
            t.org, "chat",
        )])))
        .await;
    assert_eq!(code(got), Code::Unauthenticated);
    assert_eq!(count_entries(&s, t.org).await, 1_500);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_may_name_several_organizations() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let user = Uuid::new_v4();
    let msgs: Vec<_> = (0..300)
        .map(|i| proto::LogAiContextRequest {
            user_id: user.to_string(),
            idempotency_key: format!("k{}", (i / 2) % 100),
            ..log_req(if i % 2 == 0 { a.org } else { b.org }, "agent")
        })
        .collect();
    // Keys are per organization: k0..k99 in each of A and B, the rest repeats.
    let r = log_stream(&s, msgs, &service_token()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (200, 100));
    assert_eq!(count_entries(&s, a.org).await, 100);
    assert_eq!(count_entries(&s, b.org).await, 100);
}

// --------------------------------------------------------- SearchAiContext

#[tokio::test(flavor = "multi_thread")]
async fn search_returns_nearest_entries_first_with_filters() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other_user = Uuid::new_v4();
    s.add_member(t.org, other_user, Role::Editor).await;
    // angle -> (source_type, author, model)
    let entries = [
        (0.0, "chat", t.user, "m1"),
        (10.0, "agent", t.user, "m1"),
        (20.0, "chat", other_user, "m1"),
        (30.0, "generation", t.user, "m2"),
        (60.0, "chat", t.user, "m1"),
        (120.0, "chat", t.user, "m1"),
    ];
    let mut ids = Vec::new();
    for (angle, source, user, model) in entries {
        let r = log(
            &s,
            proto::LogAiContextRequest {
                user_id: user.to_string(),
                context_summary: format!("at {angle}"),
                embedding: at_angle(angle),
                embedding_model: model.into(),
                ..log_req(t.org, source)
            },
            &service_token(),
        )
        .await;
        ids.push(r.id);
    }
    // An entry without an embedding is never a search result.
    log(&s, log_req(t.org, "chat"), &t.token).await;

    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    let search = |req: proto::SearchAiContextRequest| {
        let mut c = s.ai_context();
        let token = user_token(viewer);
        async move {
            c.search_ai_context(authed(req, &token))
                .await
                .unwrap()
                .into_inner()
                .entries
        }
    };

    let all = search(search_req(t.org, at_angle(0.0))).await;
    let got: Vec<_> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        got, ids,
        "most similar first, every entry with an embedding"
    );
    for (e, (angle, ..)) in all.iter().zip(entries) {
        let want = angle.to_radians().cos();
        assert!(
            (e.similarity - want).abs() < 1e-3,
            "{} vs {want}",
            e.similarity
        );
    }
    assert_eq!(all[0].context_summary, "at 0");
    assert!(all[0].metadata.is_some() && all[0].occurred_at.is_some());

    // Threshold: cos(45°) ≈ 0.707 keeps 0..30 degrees.
    let near = search(proto::SearchAiContextRequest {
        similarity_threshold: 0.7,
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(near.len(), 4);
    // The default threshold 0 leaves out the entry at 120 degrees.
    let default_threshold = search(proto::SearchAiContextRequest {
        similarity_threshold: 0.0,
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(default_threshold.len(), 5);
    // max_results.
    let two = search(proto::SearchAiContextRequest {
        max_results: 2,
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(
        two.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&ids[0], &ids[1]]
    );
    // User filter.
    let theirs = search(proto::SearchAiContextRequest {
        user_id: other_user.to_string(),
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(
        theirs.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&ids[2]]
    );
    // Source type filter.
    let chats_and_generations = search(proto::SearchAiContextRequest {
        source_types: vec!["generation".into(), "agent".into()],
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(
        chats_and_generations
            .iter()
            .map(|e| &e.id)
            .collect::<Vec<_>>(),
        vec![&ids[1], &ids[3]]
    );
    // Model filter; empty model means any model of the dimension.
    let m2 = search(proto::SearchAiContextRequest {
        model: "m2".into(),
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(m2.iter().map(|e| &e.id).collect::<Vec<_>>(), vec![&ids[3]]);
    let unknown_model = search(proto::SearchAiContextRequest {
        model: "nobody".into(),
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert!(unknown_model.is_empty());
    // Another dimension with an index: nothing of that dimension.
    let wide = search(search_req(t.org, vec![0.5; 768])).await;
    assert!(wide.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_migrated_chat_messages() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    // A legacy chat message as phase 03 leaves it: an ai_context_logs row and
    // an embedding of entity_type 'chat_message' with the same id.
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO ai_context_logs (id, organization_id, user_id, source_type, context_summary)
         VALUES ($1, $2, $3, 'chat', 'legacy message')",
    )
    .bind(id)
    .bind(t.org)
    .bind(t.user)
    .execute(&s.db.pool)
    .await
    .unwrap();
    // An embedding of another entity type with the same id (a post) is not
    // AI context.
    for (entity_type, degrees) in [("chat_message", 5.0), ("post", 0.0)] {
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             VALUES ($1, $2, $3, 'legacy', 384, $4)",
        )
        .bind(t.org)
        .bind(entity_type)
        .bind(id)
        .bind(pgvector::Vector::from(at_angle(degrees)))
        .execute(&s.db.pool)
        .await
        .unwrap();
    }
    let got = s
        .ai_context()
        .search_ai_context(authed(search_req(t.org, at_angle(0.0)), &t.token))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id.to_string());
    assert_eq!(got[0].context_summary, "legacy message");
    assert!((got[0].similarity - 5f32.to_radians().cos()).abs() < 1e-3);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_refuses_bad_requests_with_the_contract_codes() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut c = s.ai_context();
    assert_eq!(
        code(
            c.search_ai_context(Request::new(search_req(t.org, at_angle(0.0))))
                .await
        ),
        Code::Unauthenticated
    );
    let mut nan = at_angle(0.0);
    nan[3] = f32::NAN;
    let mut inf = at_angle(0.0);
    inf[3] = f32::NEG_INFINITY;
    let cases: Vec<(&str, proto::SearchAiContextRequest)> = vec![
        (
            "malformed organization_id",
            proto::SearchAiContextRequest {
                organization_id: "x".into(),
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        ("empty vector", search_req(t.org, vec![])),
        ("NaN in vector", search_req(t.org, nan)),
        ("infinity in vector", search_req(t.org, inf)),
        ("dimension without index", search_req(t.org, vec![1.0; 5])),
        (
            "threshold above 1",
            proto::SearchAiContextRequest {
                similarity_threshold: 1.5,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "threshold below -1",
            proto::SearchAiContextRequest {
                similarity_threshold: -1.01,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "threshold NaN",
            proto::SearchAiContextRequest {
                similarity_threshold: f32::NAN,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "max_results over 1000",
            proto::SearchAiContextRequest {
                max_results: 1001,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "malformed user_id",
            proto::SearchAiContextRequest {
                user_id: "u".into(),
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "empty source type",
            proto::SearchAiContextRequest {
                source_types: vec![String::new()],
                ..search_req(t.org, at_angle(0.0))
            },
        ),
    ];
    for (what, req) in cases {
        assert_eq!(
            code(c.search_ai_context(authed(req, &t.token)).await),
            Code::InvalidArgument,
            "{what}"
        );
    }
    assert_eq!(
        code(
            c.search_ai_context(authed(
                proto::SearchAiContextRequest {
                    max_results: 1000,
                    ..search_req(t.org, at_angle(0.0))
                },
                &t.token
            ))
            .await
        ),
        Code::Ok
    );
}

// ----------------------------------------------------------- ListAiContext

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_newest_first_without_gaps_or_duplicates() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = Uuid::new_v4();
    // 23 entries; several share an occurred_at (ties are ordered by id).
    let msgs: Vec<_> = (0..23)
        .map(|i| proto::LogAiContextRequest {
            user_id: if i % 3 == 0 { other } else { t.user }.to_string(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + (i / 3) as i64,
                nanos: 500_000,
            }),
            context_summary: format!("{i}"),
            ..log_req(t.org, "chat")
        })
        .collect();
    let r = log_stream(&s, msgs, &service_token()).await.unwrap();
    assert_eq!(r.stored, 23);

    let page_through = |user: Option<Uuid>, page_size: u32| {
        let mut c = s.ai_context();
        let token = t.token.clone();
        let org = t.org;
        async move {
            let mut seen = Vec::new();
            let mut page_token = String::new();
            let mut pages = 0;
            loop {
                let r = c
                    .list_ai_context(authed(
                        proto::ListAiContextRequest {
                            user_id: user.map(|u| u.to_string()).unwrap_or_default(),
                            page_size,
                            page_token: page_token.clone(),
                            ..list_req(org)
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                pages += 1;
                let max = if page_size == 0 { 50 } else { page_size };
                assert!(r.entries.len() <= max as usize);
                seen.extend(r.entries);
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            (seen, pages)
        }
    };

    let (all, pages) = page_through(None, 5).await;
    assert_eq!(pages, 5);
    assert_eq!(all.len(), 23);
    let ids: HashSet<_> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 23, "no duplicates");
    let key = |e: &proto::AiContextEntry| {
        let t = e.occurred_at.unwrap();
        (t.seconds, t.nanos, e.id.parse::<Uuid>().unwrap())
    };
    for w in all.windows(2) {
        assert!(
            key(&w[0]) > key(&w[1]),
            "newest first, then by id descending"
        );
    }
    let from_db: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ai_context_logs WHERE organization_id = $1 ORDER BY occurred_at DESC, id DESC",
    )
    .bind(t.org)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.id.parse::<Uuid>().unwrap())
            .collect::<Vec<_>>(),
        from_db
    );

    // A page size that divides the count exactly ends with an empty token.
    let (all_23, pages) = page_through(None, 23).await;
    assert_eq!((all_23.len(), pages), (23, 1));
    // The default page size (50) takes everything at once.
    let (default_page, pages) = page_through(None, 0).await;
    assert_eq!((default_page.len(), pages), (23, 1));

    // User filter, paged.
    let (theirs, pages) = page_through(Some(other), 3).await;
    assert_eq!((theirs.len(), pages), (8, 3));
    assert!(theirs.iter().all(|e| e.user_id == other.to_string()));

    // An organization with no entries: empty page, no token.
    let empty = s.new_tenant().await;
    let r = s
        .ai_context()
        .list_ai_context(authed(list_req(empty.org), &empty.token))
        .await
        .unwrap()
        .into_inner();
    assert!(r.entries.is_empty() && r.next_page_token.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_refuses_bad_requests_with_the_contract_codes() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let msgs: Vec<_> = (0..3).map(|_| log_req(t.org, "chat")).collect();
    log_stream(&s, msgs, &t.token).await.unwrap();
    let mut c = s.ai_context();
    let first = c
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                page_size: 1,
                ..list_req(t.org)
            },
            &t.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());

    // A viewer reads.
    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    let seen = c
        .list_ai_context(authed(list_req(t.org), &user_token(viewer)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.entries.len(), 3);

    assert_eq!(
        code(c.list_ai_context(Request::new(list_req(t.org))).await),
        Code::Unauthenticated
    );
    let cases: Vec<(&str, proto::ListAiContextRequest)> = vec![
        (
            "malformed organization_id",
            proto::ListAiContextRequest {
                organization_id: "1234".into(),
                ..list_req(t.org)
            },
        ),
        (
            "malformed user_id",
            proto::ListAiContextRequest {
                user_id: "me".into(),
                ..list_req(t.org)
            },
        ),
        (
            "page_size over 1000",
            proto::ListAiContextRequest {
                page_size: 1001,
                ..list_req(t.org)
            },
        ),
        (
            "garbage page_token",
            proto::ListAiContextRequest {
                page_token: "%%%".into(),
                ..list_req(t.org)
            },
        ),
        (
            "truncated page_token",
            proto::ListAiContextRequest {
                page_token: first.next_page_token[..20].into(),
                ..list_req(t.org)
            },
        ),
        (
            "page_token of another filter",
            proto::ListAiContextRequest {
                page_token: first.next_page_token.clone(),
                user_id: t.user.to_string(),
                ..list_req(t.org)
            },
        ),
    ];
    for (what, req) in cases {
        assert_eq!(
            code(c.list_ai_context(authed(req, &t.token)).await),
            Code::InvalidArgument,
            "{what}"
        );
    }
}

// ---------------------------------------------------- tenant isolation

/// Two organizations with the same content: same vectors, same keys.
async fn twin_tenants(s: &TestServer) -> (Tenant, Tenant, Vec<String>, Vec<String>) {
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let mut ids = (Vec::new(), Vec::new());
    for (t, out) in [(&a, &mut ids.0), (&b, &mut ids.1)] {
        for i in 0..5 {
            let r = log(
                s,
                proto::LogAiContextRequest {
                    idempotency_key: format!("shared-{i}"),
                    embedding: at_angle(i as f32 * 5.0),
                    embedding_model: "m".into(),
                    ..log_req(t.org, "chat")
                },
                &t.token,
            )
            .await;
            assert!(
                !r.duplicate,
                "the same key in another organization is independent"
            );
            out.push(r.id);
        }
    }
    (a, b, ids.0, ids.1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_log_into_another_organization() {
    let s = TestServer::start().await;
    let (a, b, _, b_ids) = twin_tenants(&s).await;
    let mut c = s.ai_context();
    let fake = Uuid::new_v4();
    let real = c
        .log_ai_context(authed(log_req(b.org, "chat"), &a.token))
        .await
        .unwrap_err();
    let made_up = c
        .log_ai_context(authed(log_req(fake, "chat"), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    // A retry of B's key by A's user neither stores nor reveals B's id.
    let retry = c
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                idempotency_key: "shared-0".into(),
                ..log_req(b.org, "chat")
            },
            &a.token,
        ))
        .await;
    assert_eq!(code(retry), Code::PermissionDenied);
    // The same key in A is A's own entry, not B's.
    let in_a = log(
        &s,
        proto::LogAiContextRequest {
            idempotency_key: "shared-0".into(),
            ..log_req(a.org, "chat")
        },
        &a.token,
    )
    .await;
    assert!(in_a.duplicate);
    assert_ne!(in_a.id, b_ids[0]);
    assert_eq!(count_entries(&s, b.org).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_stream_into_another_organization() {
    let s = TestServer::start().await;
    let (a, b, _, _) = twin_tenants(&s).await;
    let fake = Uuid::new_v4();
    let mixed = vec![
        log_req(a.org, "chat"),
        log_req(b.org, "chat"),
        log_req(a.org, "chat"),
    ];
    let real = log_stream(&s, mixed, &a.token).await.unwrap_err();
    let made_up = log_stream(
        &s,
        vec![log_req(a.org, "chat"), log_req(fake, "chat")],
        &a.token,
    )
    .await
    .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    assert_eq!(
        count_entries(&s, a.org).await,
        5,
        "nothing of the stream stored in A"
    );
    assert_eq!(count_entries(&s, b.org).await, 5);
    // B's keys streamed in A are A's duplicates, counted against A only.
    let keys: Vec<_> = (0..5)
        .map(|i| proto::LogAiContextRequest {
            idempotency_key: format!("shared-{i}"),
            ..log_req(a.org, "chat")
        })
        .collect();
    let r = log_stream(&s, keys, &a.token).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 5));
    let keys: Vec<_> = (5..8)
        .map(|i| proto::LogAiContextRequest {
            idempotency_key: format!("shared-{i}"),
            ..log_req(a.org, "chat")
        })
        .collect();
    let r = log_stream(&s, keys, &a.token).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (3, 0));
    assert_eq!(count_entries(&s, b.org).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_never_crosses_organizations() {
    let s = TestServer::start().await;
    let (a, b, a_ids, _) = twin_tenants(&s).await;
    let mut c = s.ai_context();
    let fake = Uuid::new_v4();
    let real = c
        .search_ai_context(authed(search_req(b.org, at_angle(0.0)), &a.token))
        .await
        .unwrap_err();
    let made_up = c
        .search_ai_context(authed(search_req(fake, at_angle(0.0)), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    // Identical vectors in B never show up in A, for a user or service_role.
    for token in [a.token.clone(), service_token()] {
        let got = c
            .search_ai_context(authed(
                proto::SearchAiContextRequest {
                    max_results: 1000,
                    ..search_req(a.org, at_angle(0.0))
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), a_ids);
        assert!(got.iter().all(|e| e.organization_id == a.org.to_string()));
    }
    // Filtering by B's user in A finds nothing of B.
    let got = c
        .search_ai_context(authed(
            proto::SearchAiContextRequest {
                user_id: b.user.to_string(),
                ..search_req(a.org, at_angle(0.0))
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_never_crosses_organizations() {
    let s = TestServer::start().await;
    let (a, b, a_ids, _) = twin_tenants(&s).await;
    let mut c = s.ai_context();
    let fake = Uuid::new_v4();
    let real = c
        .list_ai_context(authed(list_req(b.org), &a.token))
        .await
        .unwrap_err();
    let made_up = c
        .list_ai_context(authed(list_req(fake), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    // service_role listing A sees A's entries only.
    let got = c
        .list_ai_context(authed(list_req(a.org), &service_token()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let mut got: Vec<_> = got.into_iter().map(|e| e.id).collect();
    got.sort();
    let mut want = a_ids.clone();
    want.sort();
    assert_eq!(got, want);
    // A page token taken from B's listing does not work in A.
    let b_page = c
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                page_size: 2,
                ..list_req(b.org)
            },
            &b.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!b_page.next_page_token.is_empty());
    for token in [a.token.clone(), service_token()] {
        let reused = c
            .list_ai_context(authed(
                proto::ListAiContextRequest {
                    page_token: b_page.next_page_token.clone(),
                    ..list_req(a.org)
                },
                &token,
            ))
            .await;
        assert_eq!(code(reused), Code::InvalidArgument);
    }
}
