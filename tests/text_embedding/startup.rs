//! The service refuses to start with an embedding dimension that has no index.
use std::time::Duration;

use crate::common;
use crate::common::text::model_server;
use crate::common::TestDb;

#[tokio::test]
async fn the_service_refuses_to_start_with_a_dimension_that_has_no_index() {
    let db = TestDb::empty().await;
    let mut config = affinity_testkit::test_config(db.url.clone(), common::server::SECRET);
    affinity_testkit::with_text_model(&mut config, &model_server().base_url());
    config.text.embedding_dimensions = Some(100);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        affinity::server::run(config, listener, std::future::pending()),
    )
    .await
    .expect("the service gives up at start");
    let message = format!("{:#}", ended.expect_err("no index for 100 dimensions"));
    assert!(
        message.contains("AFFINITY_EMBEDDING_DIMENSIONS"),
        "{message}"
    );
    assert!(
        message.contains("384") && message.contains("1536"),
        "{message}"
    );
}
