//! The schema on a real Citus cluster (a coordinator and two workers, each
//! a throwaway PostgreSQL with Citus and pgvector): `affinity distribute`
//! makes the migrated schema a Citus one.
//! Where Citus cannot run (not installed and no tarball to build it from),
//! each test says so in one line and passes.
mod common;

use affinity::db::citus::{REFERENCE_TABLES, TENANT_TABLES};
use common::server::SECRET;
use common::TestDb;

/// `affinity <command>` on `url`: its exit status and output.
async fn command(name: &str, url: &str) -> (bool, String) {
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

#[tokio::test(flavor = "multi_thread")]
async fn distribute_makes_reference_tables_and_co_locates_every_tenant_table_by_organization_once()
{
    let Some(db) = TestDb::on_citus().await else {
        return;
    };
    let (ok, out) = command("migrate", &db.url).await;
    assert!(ok, "{out}");
    let (ok, out) = command("distribute", &db.url).await;
    assert!(ok, "{out}");
    assert!(out.contains("distributed:"), "{out}");

    let tables: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT table_name::text, citus_table_type, distribution_column, colocation_id
         FROM citus_tables ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("citus_tables");
    let of = |name: &str| tables.iter().find(|t| t.0 == name);
    for t in REFERENCE_TABLES {
        let row = of(t).unwrap_or_else(|| panic!("{t} is not a Citus table: {tables:?}"));
        assert_eq!(row.1, "reference", "{row:?}");
    }
    let colocation = of(TENANT_TABLES[0]).map(|t| t.3);
    for t in TENANT_TABLES {
        let row = of(t).unwrap_or_else(|| panic!("{t} is not a Citus table: {tables:?}"));
        assert_eq!(
            (row.1.as_str(), row.2.as_str(), Some(row.3)),
            ("distributed", "organization_id", colocation),
            "{row:?}"
        );
    }
    // Every table of the schema has a place: nothing left local but the
    // migrations' own bookkeeping.
    let local: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition
           AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("the local tables");
    assert_eq!(
        local,
        [
            "_sqlx_migrations",
            "migration_events",
            "migration_legacy_snapshot"
        ],
        "tables neither distributed nor reference"
    );

    let (ok, out) = command("distribute", &db.url).await;
    assert!(ok, "{out}");
    assert!(out.contains("already distributed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn distribute_on_plain_postgresql_is_refused_naming_citus() {
    let db = TestDb::migrated().await;
    let (ok, out) = command("distribute", &db.url).await;
    assert!(!ok, "{out}");
    assert!(out.contains("CREATE EXTENSION citus"), "{out}");
}
