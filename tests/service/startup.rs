//! Startup on a legacy, a migrated and an unreachable database; the JWT secret it requires.
use affinity::proto::{self, Role};
use affinity_testkit::legacy::LegacyConfig;
use affinity_testkit::test_config;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::common::server::{authed, await_health, code, service_token, stop_server, TestServer};
use crate::common::TestDb;
use crate::{spawn_server, unreachable_database_url};

#[tokio::test(flavor = "multi_thread")]
async fn the_service_migrates_a_legacy_database_at_startup_and_serves_it() {
    let (db, stats) = TestDb::legacy(&LegacyConfig::small()).await;
    let s = TestServer::start_on(db).await;
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts_unified")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(posts as u64, stats.posts);
    // A legacy user is the owner of their personal organization, through the API.
    let user: Uuid = sqlx::query_scalar("SELECT user_id FROM posts_core LIMIT 1")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    let list = s
        .orgs()
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: user.to_string(),
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.memberships.len(), 1);
    assert_eq!(list.memberships[0].role, Role::Owner as i32);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_starts_on_an_already_migrated_database_without_migrating_again() {
    let db = TestDb::migrated().await;
    let before: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let s = TestServer::start_on(db).await;
    let after: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY 1")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        after.len(),
        affinity::db::migrate::MIGRATOR.migrations.len()
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn until_the_database_is_reachable_health_is_not_serving_and_calls_are_unavailable() {
    // A database URL whose socket directory does not exist: the service
    // keeps retrying, serves health, and refuses calls cleanly.
    let dir = tempfile::tempdir().unwrap();
    let url = unreachable_database_url(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, handle) = spawn_server(url, listener.into());
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let status = await_health(channel.clone(), 50, |_| true).await;
    assert_eq!(status, Some(ServingStatus::NotServing));
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let r = orgs
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: Uuid::new_v4().to_string(),
            },
            &service_token(),
        ))
        .await;
    assert_eq!(code(r), Code::Unavailable);
    // Shutdown works while it is still retrying.
    stop_server(stop, handle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_database_url_the_jwt_secret_is_required() {
    let mut config = test_config("postgres://localhost/none".into(), "");
    config.jwt_secret = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = affinity::server::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AFFINITY_JWT_SECRET"), "{err}");
}
