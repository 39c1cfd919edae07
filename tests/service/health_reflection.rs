//! Health and reflection without a token, streamed replies not held back, NOT_SERVING at shutdown.
use std::time::Duration;

use futures::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::common::server::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer_without_a_token() {
    let s = TestServer::start().await;
    for service in [
        "",
        "affinity.v1.SimilarityService",
        "affinity.v1.MetricsService",
        "affinity.v1.OrganizationService",
        "affinity.v1.AiContextService",
        "affinity.v1.MaintenanceService",
    ] {
        assert_eq!(
            s.health(service).await,
            Some(ServingStatus::Serving),
            "{service:?}"
        );
    }
    // Server reflection, v1 and v1alpha (Python's grpcio-reflection speaks v1alpha).
    use tonic_reflection::pb::{v1, v1alpha};
    let mut c = v1::server_reflection_client::ServerReflectionClient::new(s.channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "affinity.v1.SimilarityService",
        "affinity.v1.AiContextService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let mut c = v1alpha::server_reflection_client::ServerReflectionClient::new(s.channel.clone());
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "affinity.v1.MetricsService".into(),
            ),
        ),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    assert!(matches!(
        resp.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

/// A large message the server streams while the call stays open reaches
/// the client, and so does the next. The server holds back the write of a
/// large message for the frames that usually follow it at once
/// (src/transport/coalesce.rs: the trailers of a reply); here none follow, as the
/// client has not finished sending, and the message must not wait for them.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_streamed_message_reaches_the_client_while_the_call_stays_open() {
    use tonic_reflection::pb::v1;
    let s = TestServer::start().await;
    let ask = |symbol: &str| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into()),
        ),
    };
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tx.unbounded_send(ask("affinity.v1.MetricsService"))
        .unwrap();
    let mut c = v1::server_reflection_client::ServerReflectionClient::new(s.channel.clone());
    let mut replies = c.server_reflection_info(rx).await.unwrap().into_inner();
    for next in ["affinity.v1.SimilarityService", ""] {
        // Not a latency target: a reply held back would never come.
        let reply = tokio::time::timeout(Duration::from_secs(20), replies.next())
            .await
            .expect("no reply while the call is open: the message was held back")
            .unwrap()
            .unwrap();
        let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
            reply.message_response
        else {
            panic!("unexpected reflection answer");
        };
        let size: usize = files.file_descriptor_proto.iter().map(Vec::len).sum();
        assert!(size > 1024, "a message h2 does not copy: {size} bytes");
        if !next.is_empty() {
            tx.unbounded_send(ask(next)).unwrap();
        }
    }
    drop(tx);
    assert!(replies.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_goes_not_serving_first_when_the_service_shuts_down() {
    let s = TestServer::start().await;
    let mut health = HealthClient::new(s.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let handle = tokio::spawn(s.shutdown());
    let next = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a health update");
    let next = next
        .expect("the watch stream sends NOT_SERVING before it ends")
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    handle.await.unwrap().unwrap();
}
