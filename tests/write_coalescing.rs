//! What write coalescing (`affinity::transport::coalesce`) relies on, pinned
//! on HTTP/2 itself: h2 writes a DATA payload of 256 bytes or more apart
//! from the frames after it (a response's trailers), and copies a smaller
//! one into the same write. An h2 upgrade that changes this fails here.
//! And the service with coalescing off (`AFFINITY_COALESCE_WRITES=off`)
//! still answers whole.

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use affinity::config::Switch;
use affinity::proto;
use affinity::transport::coalesce::CoalescedWrites;
use common::server::{aggregation, authed, TestServer};
use common::TestDb;
use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// A stream that counts the writes reaching it. Like a socket, it takes a
/// vectored write whole, as one (h2 chains large payloads only for such
/// streams).
struct Counted {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let whole: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.poll_write(cx, &whole)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How many writes an h2 server makes for one response (headers, a DATA
/// frame of `payload` bytes, trailers, queued together as a gRPC handler's
/// are), its connection's writes coalesced or not.
async fn writes_for_one_response(payload: usize, coalesce: bool) -> usize {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let server_io = CoalescedWrites::new(
        Counted {
            io: server_io,
            writes: writes.clone(),
        },
        coalesce,
    );
    let (received, got_all) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut client, connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::post("http://affinity/any").body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let mut body = response.await.unwrap().into_body();
        let mut bytes = 0;
        while let Some(chunk) = body.data().await {
            bytes += chunk.unwrap().len();
        }
        let trailers = body.trailers().await.unwrap();
        let _ = received.send((bytes, trailers.is_some()));
    });

    let mut server = h2::server::handshake(server_io).await.unwrap();
    let (_, mut respond) = server.accept().await.unwrap().unwrap();
    let before = writes.load(Ordering::SeqCst);
    let mut stream = respond
        .send_response(http::Response::new(()), false)
        .unwrap();
    stream
        .send_data(Bytes::from(vec![7u8; payload]), false)
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    stream.send_trailers(trailers).unwrap();
    // The connection writes as it is polled, until the client has it all.
    let accept_more = async { while server.accept().await.is_some() {} };
    let got = tokio::select! {
        biased;
        got = got_all => got.unwrap(),
        () = accept_more => panic!("the client went away before the response's end"),
    };
    assert_eq!(got, (payload, true), "the client got the whole response");
    writes.load(Ordering::SeqCst) - before
}

#[tokio::test]
async fn h2_writes_a_data_payload_of_256_bytes_or_more_apart_from_the_trailers_after_it() {
    for payload in [256, 300, 4096] {
        assert_eq!(
            writes_for_one_response(payload, false).await,
            2,
            "{payload} bytes"
        );
    }
}

#[tokio::test]
async fn h2_copies_a_data_payload_under_256_bytes_into_the_write_of_the_trailers() {
    for payload in [1, 100, 255] {
        assert_eq!(
            writes_for_one_response(payload, false).await,
            1,
            "{payload} bytes"
        );
    }
}

#[tokio::test]
async fn coalesced_writes_send_a_response_with_a_large_payload_in_one_write() {
    for payload in [1, 300, 4096] {
        assert_eq!(
            writes_for_one_response(payload, true).await,
            1,
            "{payload} bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_write_coalescing_responses_large_and_small_arrive_whole() {
    let server = TestServer::start_with(TestDb::for_server().await, |c| {
        c.coalesce_writes = Switch::Off;
    })
    .await;
    let tenant = server.new_tenant().await;
    // Far over h2's 256 bytes: written apart from its trailers.
    let checks: Vec<proto::UserHasOrgPermissionRequest> = (0..100)
        .map(|_| proto::UserHasOrgPermissionRequest {
            user_id: tenant.user.to_string(),
            organization_id: tenant.org.to_string(),
            required_role: proto::Role::Viewer as i32,
        })
        .collect();
    let answers = server
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest { checks },
            &tenant.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(answers.len(), 100);
    assert!(answers.iter().all(|a| a.allowed));
    let buckets = server
        .metrics()
        .get_metrics_aggregated(authed(aggregation(tenant.org), &tenant.token))
        .await
        .unwrap()
        .into_inner()
        .buckets;
    assert!(buckets.is_empty());
}
