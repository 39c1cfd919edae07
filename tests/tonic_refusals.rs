//! tonic refuses some requests before any handler runs, in codes the
//! contract says otherwise (`affinity::error::refusals_in_contract_codes`
//! rewrites them by their wording). These tests pin that wording on a bare
//! tonic server: a tonic upgrade that rewords a refusal fails here instead
//! of silently changing the codes clients get.

use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Decoding limit of the bare server, in bytes.
const LIMIT: usize = 16;

/// A bare tonic health server (none of affinity's layers), limited to
/// [`LIMIT`]-byte requests, and a channel to it.
async fn bare_server() -> Channel {
    let (_, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(health.max_decoding_message_size(LIMIT))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The gRPC status and message the rewriter leaves on the wire for `raw`,
/// a status as tonic's own refusal sends it.
fn rewritten(raw: tonic::Status) -> (String, String) {
    let res = affinity::error::refusals_in_contract_codes(raw.into_http::<tonic::body::Body>());
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

#[tokio::test]
async fn an_oversized_request_is_refused_as_out_of_range_in_words_the_rewriter_turns_into_resource_exhausted(
) {
    let mut client = HealthClient::new(bare_server().await);
    let raw = client
        .check(HealthCheckRequest {
            service: "x".repeat(4 * LIMIT),
        })
        .await
        .expect_err("over the decoding limit");
    assert_eq!(raw.code(), Code::OutOfRange, "{raw:?}");
    let (code, message) = rewritten(raw.clone());
    assert_eq!(code, "8", "not rewritten: {raw:?}");
    assert!(message.contains("AFFINITY_MAX_MESSAGE_BYTES"), "{message}");
}

/// What a client sends where HealthCheckRequest's `service` (a string) is
/// expected: field 1 as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongWireType {
    #[prost(uint64, tag = "1")]
    service: u64,
}

#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_refused_as_internal_in_words_the_rewriter_turns_into_invalid_argument(
) {
    let mut grpc = tonic::client::Grpc::new(bare_server().await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<WrongWireType, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let raw = grpc
        .unary(
            tonic::Request::new(WrongWireType { service: 7 }),
            path,
            codec,
        )
        .await
        .expect_err("not a HealthCheckRequest");
    assert_eq!(raw.code(), Code::Internal, "{raw:?}");
    let (code, message) = rewritten(raw.clone());
    assert_eq!(code, "3", "not rewritten: {raw:?}");
    assert!(message.contains("not%20valid%20protobuf"), "{message}");
}
