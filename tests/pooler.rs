//! The service behind a real PgBouncer (Debian's 1.18) in transaction mode:
//! pointed at it without the direct URL, a refusal at start that names the
//! setting; two replicas whose caches follow changes over the direct URL;
//! a PgBouncer restart under load. Every RPC through it: pooler_rpcs.rs.
mod common;

use std::time::Duration;

use affinity::proto;
use common::changes::metrics_caught_up;
use common::load::MembersLoad;
use common::pooler::{pooled_db, through};
use common::server::{viewer_allowed, TestServer, SECRET};
use common::wait::{eventually, seen};
use uuid::Uuid;

/// How `server::run` with `config` ends at start: its error.
async fn refusal_at_start(config: affinity::config::Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let run = affinity::server::run_with_metrics(config, listener, None, std::future::pending());
    let ended = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the service gave up at start");
    format!("{:#}", ended.expect_err("refused to start"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_direct_url_without_database_url_is_refused_at_start_naming_both() {
    let data = tempfile::tempdir().expect("a data directory");
    let mut config = affinity_testkit::test_config(String::new(), SECRET);
    config.database_url = None;
    config.data_dir = Some(data.path().to_path_buf());
    config.direct_database_url = Some("postgres://localhost/affinity".into());
    let e = refusal_at_start(config).await;
    assert!(
        e.contains("AFFINITY_DIRECT_DATABASE_URL is set without DATABASE_URL"),
        "{e}"
    );
    // Refused before the embedded database was made there.
    assert_eq!(
        std::fs::read_dir(data.path())
            .expect("the directory")
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pointed_at_a_transaction_pooler_without_the_direct_url_the_service_refuses_to_start_naming_it(
) {
    let (db, bouncer) = pooled_db().await;
    let config = affinity_testkit::test_config(bouncer.url("affinity"), SECRET);
    let e = refusal_at_start(config).await;
    assert!(e.contains("AFFINITY_DIRECT_DATABASE_URL"), "{e}");
    assert!(e.contains("transaction-mode pooler"), "{e}");
    // It stopped before migrating anything.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(&db.pool)
    .await
    .expect("counting tables");
    assert_eq!(tables, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_pgbouncer_two_replicas_cache_and_a_change_through_one_reaches_the_other() {
    let (db, bouncer) = pooled_db().await;
    let tweak = through(&bouncer, &db);
    let s = TestServer::start_with(db, tweak).await;
    let other = s.replica_with(through(&bouncer, &s.db)).await;
    let t = s.new_tenant().await;
    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, proto::Role::Viewer).await;
    // That change's announcement (LISTEN is on the direct URL) has reached
    // the other replica; then its cache is warmed.
    metrics_caught_up(&other.channel, &s.db.pool, t.org).await;
    assert!(viewer_allowed(&other.channel, viewer, t.org).await);

    // The answer comes from its cache: a change the database does not
    // announce stays invisible there.
    let sql = |statement: &'static str| {
        let pool = s.db.pool.clone();
        async move {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    };
    sql("ALTER TABLE organization_members DISABLE TRIGGER organization_members_notify").await;
    sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
        .bind(t.org)
        .bind(viewer)
        .execute(&s.db.pool)
        .await
        .expect("deleting the member");
    metrics_caught_up(&other.channel, &s.db.pool, t.org).await;
    assert!(
        viewer_allowed(&other.channel, viewer, t.org).await,
        "from the cache"
    );
    sql("ALTER TABLE organization_members ENABLE TRIGGER organization_members_notify").await;
    s.add_member(t.org, viewer, proto::Role::Viewer).await;

    // A revocation through one replica reaches the other within a second.
    assert!(s.remove_member(t.org, viewer, &t.token).await);
    eventually(Duration::from_secs(1), || async {
        let got = viewer_allowed(&other.channel, viewer, t.org).await;
        seen(!got, "still allowed after the revocation")
    })
    .await;
    other.shutdown().await.expect("a clean stop");
    s.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pgbouncer_restart_under_load_fails_calls_unavailable_at_worst_and_they_recover() {
    let (db, mut bouncer) = pooled_db().await;
    let tweak = through(&bouncer, &db);
    let s = TestServer::start_with(db, tweak).await;
    let t = s.new_tenant().await;
    let load = MembersLoad::start(&s, &t, 4);
    let answered = |from: usize, n: usize| {
        let codes = load.codes();
        async move {
            let ok = codes
                .iter()
                .skip(from)
                .filter(|c| **c == tonic::Code::Ok)
                .count();
            seen(ok >= n, format!("{ok} answered of {}", codes.len()))
        }
    };
    eventually(Duration::from_secs(30), || answered(0, 20)).await;

    bouncer.kill().expect("killing pgbouncer");
    let killed_at = load.codes().len();
    eventually(Duration::from_secs(30), || {
        let codes = load.codes();
        async move {
            let failed = codes.iter().skip(killed_at).any(|c| *c != tonic::Code::Ok);
            let since = codes.len() - killed_at;
            seen(failed, format!("{since} calls since, none failed"))
        }
    })
    .await;
    bouncer.restart().await.expect("restarting pgbouncer");
    let restarted_at = load.codes().len();
    eventually(Duration::from_secs(30), || answered(restarted_at, 50)).await;
    let c = load.stop().await;
    let unexpected: Vec<_> = c
        .iter()
        .filter(|c| !matches!(c, tonic::Code::Ok | tonic::Code::Unavailable))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{unexpected:?} among {} calls",
        c.len()
    );
    // After the restart, the calls answer again for good.
    let tail = &c[c.len().saturating_sub(20)..];
    assert!(tail.iter().all(|c| *c == tonic::Code::Ok), "{tail:?}");
}

/// `affinity migrate` with `env`, and of the environment's database
/// settings only those.
async fn migrate_command(env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_affinity"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env_remove("AFFINITY_DIRECT_DATABASE_URL")
        .env("AFFINITY_JWT_SECRET", SECRET)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("running affinity migrate")
}

#[tokio::test(flavor = "multi_thread")]
async fn affinity_migrate_through_a_pooler_asks_for_the_direct_url_and_migrates_with_it() {
    let (db, bouncer) = pooled_db().await;
    let pooled = bouncer.url("affinity");
    let refused = migrate_command(&[("DATABASE_URL", &pooled)]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("AFFINITY_DIRECT_DATABASE_URL"), "{stderr}");

    let done = migrate_command(&[
        ("DATABASE_URL", &pooled),
        ("AFFINITY_DIRECT_DATABASE_URL", &db.url),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    let migrated: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .expect("the migrations' table");
    assert!(migrated > 0);
}
