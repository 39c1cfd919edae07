//! On Citus every tenant-scoped RPC is a single-shard (router) query: the
//! coordinator logs each statement that Citus planned into more than one
//! task (`citus.multi_task_query_log_level`), while every RPC runs once;
//! any such statement fails the test unless it is one of the named
//! exceptions below (README "On Citus" says why each fans out).
mod common;

use common::citus::{distributed_db, server_on};
use common::rpcs::every_rpc_answers;

/// Statements that read or write every shard by design, each known by a
/// fragment of its text, and why.
const FAN_OUT: &[(&str, &str)] = &[
    (
        "FROM change_announcements WHERE announced_at",
        "the caches' poller reads (and prunes) the announcements of every organization",
    ),
    (
        "SELECT organization_id FROM embedding_queue",
        "the vectorizer finds the organizations with queued work, then claims in each",
    ),
    (
        "AS oldest_pending_secs FROM embedding_queue",
        "the vectorizer's gauges count the whole queue",
    ),
    (
        "INSERT INTO embedding_queue (organization_id, entity_type, entity_id, version) SELECT t.",
        "the vectorizer, at start, queues the texts its model has not embedded, in every organization",
    ),
    (
        "verify_migration_integrity()",
        "VerifyMigrationIntegrity checks the whole database",
    ),
    (
        "archive_old_metrics(",
        "ArchiveOldMetrics moves every organization's old points",
    ),
    (
        "ensure_metric_partitions(",
        "a new monthly partition is created on every shard",
    ),
    (
        "m.user_id = $1",
        "ListUserOrganizations: a user's memberships, in any organization",
    ),
    (
        "unnest($1::uuid[], $2::uuid[])",
        "CheckPermissions: pairs of any organizations",
    ),
];

/// The statements of `log` that Citus ran as more than one task.
fn multi_task_statements(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.contains("multi-task query about to be executed") {
            continue;
        }
        // The HINT, then the STATEMENT, which may span lines.
        while let Some(next) = lines.next() {
            if let Some((_, text)) = next.split_once("STATEMENT:  ") {
                let mut text = text.to_owned();
                while let Some(more) = lines.next_if(|l| l.starts_with(['\t', ' '])) {
                    text.push(' ');
                    text.push_str(more.trim());
                }
                out.push(text);
                break;
            }
            if next.contains("multi-task query about to be executed") {
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tenant_scoped_rpc_runs_on_one_shard_apart_from_the_named_exceptions() {
    let Some(db) = distributed_db().await else {
        return;
    };
    // For the server's sessions, opened after this.
    sqlx::raw_sql(
        "ALTER DATABASE affinity SET citus.multi_task_query_log_level = 'warning';
         ALTER DATABASE affinity SET log_min_error_statement = 'warning'",
    )
    .execute(&db.pool)
    .await
    .expect("logging multi-task statements");
    let log = db.data_dir().join("server.log");
    let s = server_on(db).await;
    every_rpc_answers(&s).await;
    let log = std::fs::read_to_string(&log).expect("the coordinator's log");
    s.shutdown().await.expect("a clean stop");

    let statements = multi_task_statements(&log);
    for (fragment, why) in FAN_OUT {
        let n = statements.iter().filter(|s| s.contains(fragment)).count();
        eprintln!("{n} multi-task statements: {why}");
    }
    let unexpected: Vec<&String> = statements
        .iter()
        .filter(|s| !FAN_OUT.iter().any(|(fragment, _)| s.contains(fragment)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "statements run on more than one shard: {unexpected:#?}"
    );
    // The log does name fan-outs: the poller's reads at least.
    assert!(
        statements.iter().any(|s| s.contains(FAN_OUT[0].0)),
        "no multi-task statement logged at all: {statements:#?}"
    );
}
