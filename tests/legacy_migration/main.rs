//! The migrations on a database in the legacy state, filled by the seeded
//! generator with realistic data and the awkward cases. These tests read the
//! `*_backup` and archived tables directly (not through
//! verify_migration_integrity) and find every legacy row represented with
//! equal values.
#[path = "../common/mod.rs"]
mod common;

mod backups;
mod chat_and_scrapes;
mod integrity;
mod organizations;
mod posts;

use affinity_testkit::legacy::LegacyConfig;
use common::TestDb;
use sqlx::PgPool;

async fn migrated_legacy() -> TestDb {
    let (db, _) = TestDb::legacy(&LegacyConfig::standard()).await;
    db.migrate().await;
    db
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
