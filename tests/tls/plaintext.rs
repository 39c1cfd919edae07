//! Plaintext on a non-loopback address is refused unless asked for, by the library and the binary.
use crate::common;
use crate::common::server::SECRET;
use crate::support::binary_exit;
use affinity_testkit::test_config;
use tokio::sync::oneshot;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_on_a_non_loopback_address_needs_to_be_asked_for() {
    // Through the library: refused with the documented message...
    let config = test_config("postgres://localhost/unused".into(), SECRET);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = affinity::server::run(config, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    for setting in ["non-loopback", "AFFINITY_TLS_CERT", "AFFINITY_PLAINTEXT"] {
        assert!(err.contains(setting), "{setting} missing from: {err}");
    }

    // ...and served when plaintext is asked for (health answers while the
    // unreachable database keeps it NOT_SERVING).
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://postgres@localhost/affinity?host={}&port=5432",
        dir.path().join("nowhere").display()
    );
    let mut config = test_config(url, SECRET);
    config.plaintext = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(affinity::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy();
    let status = common::server::await_health(channel, 100, |_| true).await;
    assert_eq!(status, Some(ServingStatus::NotServing));
    common::server::stop_server(stop, handle).await;
}

#[test]
fn the_binary_refuses_plaintext_on_a_non_loopback_address_unless_asked_for() {
    let (status, stderr) = binary_exit(&["serve", "--listen-addr", "0.0.0.0:0"], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to serve plaintext gRPC")
            && stderr.contains("AFFINITY_PLAINTEXT=true"),
        "{stderr}"
    );
}
