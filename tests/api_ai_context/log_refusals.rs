//! Logging refuses bad requests with the contract's codes and stores nothing of them.

use crate::common::server::{authed, code, user_token, TestServer};
use crate::{at_angle, count_entries, log_req, num, strukt, text};
use affinity::proto::{self, Role};
use prost_types::value::Kind;
use tonic::{Code, Request};
use uuid::Uuid;

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
