//! A real Citus cluster (a coordinator and two workers) with the schema
//! migrated and distributed, and the `affinity` commands that do it.
#![allow(dead_code)]

use super::server::{TestServer, SECRET};
use super::text::model_server;
use super::TestDb;

/// `affinity <command>` on `url`: its exit status and output.
pub async fn command(name: &str, url: &str) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_affinity"))
        .arg(name)
        .env_remove("AFFINITY_DIRECT_DATABASE_URL")
        .env("DATABASE_URL", url)
        .env("AFFINITY_JWT_SECRET", SECRET)
        .output()
        .await
        .expect("running affinity");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A migrated, distributed database on a new Citus cluster; None where
/// Citus cannot run.
pub async fn distributed_db() -> Option<TestDb> {
    let db = TestDb::on_citus().await?;
    let (ok, out) = command("migrate", &db.url).await;
    assert!(ok, "{out}");
    let (ok, out) = command("distribute", &db.url).await;
    assert!(ok, "{out}");
    Some(db)
}

/// A server (with the text model) on `db`'s coordinator.
pub async fn server_on(db: TestDb) -> TestServer {
    let model = model_server().base_url();
    TestServer::start_with(db, |c| affinity_testkit::with_text_model(c, &model)).await
}

/// [`distributed_db`] and a server on it.
pub async fn distributed_server() -> Option<TestServer> {
    Some(server_on(distributed_db().await?).await)
}
