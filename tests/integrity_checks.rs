//! The integrity checks read the same way by VerifyMigrationIntegrity and
//! by `affinity verify`: one query, one reading of its rows.
mod common;

use affinity::proto;
use common::server::{authed, service_token, TestServer};
use common::{run_binary, TestDb};

#[tokio::test(flavor = "multi_thread")]
async fn a_check_that_cannot_decide_fails_in_the_rpc_and_in_the_cli_alike() {
    let db = TestDb::migrated().await;
    // A check whose `passed` is NULL: it has not passed.
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION verify_migration_integrity()
         RETURNS TABLE (check_name text, passed boolean, details text)
         LANGUAGE sql AS $$
             SELECT 'decided'::text, true, 'fine'::text
             UNION ALL SELECT 'undecided', NULL::boolean, NULL::text
         $$",
    )
    .execute(&db.pool)
    .await
    .expect("replacing verify_migration_integrity()");

    let run = run_binary(&db, &["verify"], std::time::Duration::from_secs(120)).await;
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    for (name, passed) in [("decided", "yes"), ("undecided", "NO")] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(&format!(" {passed} "))),
            "{name} should read {passed}:\n{}",
            run.stdout
        );
    }

    let server = TestServer::start_on(db).await;
    let answer = server
        .maintenance()
        .verify_migration_integrity(authed(
            proto::VerifyMigrationIntegrityRequest {},
            &service_token(),
        ))
        .await
        .expect("verifying integrity")
        .into_inner();
    assert!(!answer.all_passed);
    let read: Vec<(&str, bool)> = answer
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.passed))
        .collect();
    assert_eq!(read, [("decided", true), ("undecided", false)]);
}
