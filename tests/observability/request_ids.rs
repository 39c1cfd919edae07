//! A request id comes back with every response, errors and streams included, or is generated.
use crate::common;
use crate::common::server::{authed, service_token, TestServer};
use crate::permission_request;
use affinity::proto;
use tonic::metadata::MetadataMap;
use tonic::Code;
use uuid::Uuid;

fn request_id(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_request_id_comes_back_and_a_missing_one_is_generated() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;

    let mut req = authed(permission_request(t.user, t.org), &service_token());
    req.metadata_mut()
        .insert("x-request-id", "abc-123".parse().unwrap());
    let r = s.orgs().user_has_org_permission(req).await.unwrap();
    assert_eq!(request_id(r.metadata()).as_deref(), Some("abc-123"));

    let r = s
        .orgs()
        .user_has_org_permission(authed(permission_request(t.user, t.org), &service_token()))
        .await
        .unwrap();
    let generated = request_id(r.metadata()).expect("a generated request id");
    assert!(Uuid::parse_str(&generated).is_ok(), "{generated}");

    // Too long to be kept: replaced by a generated one.
    let mut req = authed(permission_request(t.user, t.org), &service_token());
    req.metadata_mut()
        .insert("x-request-id", "x".repeat(129).parse().unwrap());
    let r = s.orgs().user_has_org_permission(req).await.unwrap();
    let replaced = request_id(r.metadata()).expect("a request id");
    assert!(Uuid::parse_str(&replaced).is_ok(), "{replaced}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_and_streaming_calls_carry_the_request_id_too() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;

    // Denied: a stranger asks about the organization.
    let mut req = authed(
        permission_request(Uuid::new_v4(), t.org),
        &common::server::user_token(Uuid::new_v4()),
    );
    req.metadata_mut()
        .insert("x-request-id", "denied-1".parse().unwrap());
    let err = s.orgs().user_has_org_permission(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(request_id(err.metadata()).as_deref(), Some("denied-1"));

    // Unauthenticated (refused before any handler).
    let mut req = tonic::Request::new(permission_request(t.user, t.org));
    req.metadata_mut()
        .insert("x-request-id", "no-token-1".parse().unwrap());
    let err = s.orgs().user_has_org_permission(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(request_id(err.metadata()).as_deref(), Some("no-token-1"));

    // A client-streaming call.
    let mut req = authed(
        tokio_stream::iter(Vec::<proto::LogAiContextRequest>::new()),
        &service_token(),
    );
    req.metadata_mut()
        .insert("x-request-id", "stream-1".parse().unwrap());
    let got = s.ai_context().log_ai_context_stream(req).await;
    let metadata = match &got {
        Ok(r) => r.metadata(),
        Err(e) => e.metadata(),
    };
    assert_eq!(request_id(metadata).as_deref(), Some("stream-1"), "{got:?}");
}
