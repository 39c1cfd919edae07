//! Streamed logging: thousands at once, duplicates counted, all or none, several organizations.

use crate::common::server::{code, service_token, TestServer};
use crate::common::TestDb;
use crate::{
    at_angle, count_embeddings, count_entries, log, log_req, log_stream, num, strukt, text, DIM,
};
use affinity::proto::{self, Role};
use std::time::Instant;
use tonic::{Code, Request};
use uuid::Uuid;

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
