//! Over TLS only trusted clients get in, and with a client CA only clients it signed.
use crate::common::TestDb;
use crate::support::{create_org, health, wait_serving, Ca, TlsFiles, TlsServer};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread")]
async fn with_a_certificate_and_key_rpcs_and_health_answer_over_tls_and_plaintext_is_refused() {
    let db = TestDb::empty().await;
    let ca = Ca::new("affinity test CA");
    let files = TlsFiles::new(&ca.server(), None);
    let server = TlsServer::start(&db, &files).await;

    let tls = server.tls_channel(&ca, None);
    wait_serving(&tls).await;
    let org = create_org(tls.clone()).await.expect("an RPC over TLS");
    assert!(!org.id.is_empty());

    // A plaintext client gets nowhere on the TLS port.
    assert!(health(server.plaintext_channel()).await.is_err());
    assert!(create_org(server.plaintext_channel()).await.is_err());
    // Nor does a TLS client that does not trust the server's CA.
    let stranger = Ca::new("some other CA");
    assert!(health(server.tls_channel(&stranger, None)).await.is_err());

    // The TLS client still works after the refused ones.
    assert_eq!(health(tls).await.unwrap(), ServingStatus::Serving);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_a_certificate_signed_by_it_get_in() {
    let db = TestDb::empty().await;
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = TlsFiles::new(&server_ca.server(), Some(&client_ca));
    let server = TlsServer::start(&db, &files).await;

    let good = client_ca.client("bff");
    let with_cert = server.tls_channel(&server_ca, Some(&good));
    wait_serving(&with_cert).await;
    create_org(with_cert)
        .await
        .expect("an RPC with a client certificate signed by the client CA");

    // No client certificate: refused, for health as for every RPC.
    let without = server.tls_channel(&server_ca, None);
    assert!(health(without.clone()).await.is_err());
    assert!(create_org(without).await.is_err());
    // A certificate from another CA (here, the server's): refused.
    let foreign = server_ca.client("intruder");
    let with_foreign = server.tls_channel(&server_ca, Some(&foreign));
    assert!(health(with_foreign).await.is_err());

    server.shutdown().await;
}
