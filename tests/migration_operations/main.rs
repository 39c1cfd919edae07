//! Operating the migrations with the real binary: every pending phase in one
//! transaction with progress logs, refusal of legacy data the phases cannot
//! carry (naming phase and rows, changing nothing), `affinity migrate
//! --rollback`, `affinity verify` and `affinity finalize`.
#[path = "../common/mod.rs"]
mod common;

mod refusals;
mod rollback;
mod runner;
mod verify_finalize;

use std::time::Duration;

use common::{all_table_fingerprints, catalog, BinaryRun};
use sqlx::PgPool;

pub(crate) const LIMIT: Duration = Duration::from_secs(300);

/// Everything observable of a database's contents and schema.
pub(crate) async fn state(
    pool: &PgPool,
) -> (
    Vec<String>,
    std::collections::BTreeMap<String, (i64, String)>,
) {
    (catalog(pool).await, all_table_fingerprints(pool).await)
}

pub(crate) async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub(crate) async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub(crate) fn assert_failed_with(run: &BinaryRun, needles: &[&str]) {
    assert!(!run.status.success(), "exited 0; stderr:\n{}", run.stderr);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "{n:?} not in stderr:\n{}",
            run.stderr
        );
    }
}

pub(crate) fn assert_succeeded(run: &BinaryRun) {
    assert!(
        run.status.success(),
        "{}; stdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}
