//! On Citus every tenant-scoped RPC is a single-shard (router) query. While
//! every RPC runs once, the coordinator logs two things of the service's
//! statements:
//! - the plan of each statement as it ran (`auto_explain`, JSON): a Citus
//!   job of more than one task (its EXPLAIN's "Task Count") fans out;
//! - each statement Citus ran as more than one task, also where that was a
//!   statement inside a schema function run on the coordinator, which the
//!   calling statement's plan does not show
//!   (`citus.multi_task_query_log_level`, with the calling statement).
//!
//! Either kind fails the test unless it is one of the named exceptions below
//! (README "On Citus" says why each fans out).
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

/// A statement's plan as `auto_explain` logged it.
struct Plan {
    query: String,
    /// The most tasks of any Citus job in the plan (0: no Citus job).
    tasks: i64,
}

/// The plans `auto_explain` logged in `log`: each a `plan:` line and, on
/// the lines after it (each behind a tab), the plan as a JSON object.
fn logged_plans(log: &str) -> Vec<Plan> {
    let mut out = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        if !(line.contains("LOG:  duration: ") && line.ends_with(" plan:")) {
            continue;
        }
        let mut json = String::new();
        while let Some(more) = lines.next_if(|l| l.starts_with('\t')) {
            json.push_str(&more[1..]);
            json.push('\n');
        }
        let plan: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("a plan that is not JSON ({e}): {json}"));
        out.push(Plan {
            query: plan["Query Text"].as_str().unwrap_or_default().to_owned(),
            tasks: most_tasks(&plan),
        });
    }
    out
}

/// The largest "Task Count" (Citus's, of a job; "Map Task Count" and
/// "Merge Task Count" of a repartition too) anywhere in `plan`.
fn most_tasks(plan: &serde_json::Value) -> i64 {
    use serde_json::Value;
    match plan {
        Value::Object(fields) => fields
            .iter()
            .map(|(key, v)| match key.ends_with("Task Count") {
                true => v.as_i64().unwrap_or(i64::MAX),
                false => most_tasks(v),
            })
            .max()
            .unwrap_or(0),
        Value::Array(items) => items.iter().map(most_tasks).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether `statement` is one of the named exceptions.
fn named_fan_out(statement: &str) -> bool {
    FAN_OUT
        .iter()
        .any(|(fragment, _)| statement.contains(fragment))
}

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
    // For the server's sessions, opened after this. `LOAD` checks the
    // module is there and its settings' names and values.
    sqlx::raw_sql(
        "LOAD 'auto_explain';
         ALTER DATABASE affinity SET session_preload_libraries = 'auto_explain';
         ALTER DATABASE affinity SET auto_explain.log_min_duration = 0;
         ALTER DATABASE affinity SET auto_explain.log_format = 'json';
         ALTER DATABASE affinity SET citus.multi_task_query_log_level = 'warning';
         ALTER DATABASE affinity SET log_min_error_statement = 'warning'",
    )
    .execute(&db.pool)
    .await
    .expect("logging plans and multi-task statements");
    let log = db.data_dir().join("server.log");
    let s = server_on(db).await;
    every_rpc_answers(&s).await;
    let log = std::fs::read_to_string(&log).expect("the coordinator's log");
    s.shutdown().await.expect("a clean stop");

    let plans = logged_plans(&log);
    let statements = multi_task_statements(&log);
    for (fragment, why) in FAN_OUT {
        let n = plans
            .iter()
            .filter(|p| p.tasks > 1 && p.query.contains(fragment))
            .count();
        let m = statements.iter().filter(|s| s.contains(fragment)).count();
        eprintln!("{n} plans and {m} statements of more than one task: {why}");
    }
    let routed = plans.iter().filter(|p| p.tasks == 1).count();
    eprintln!("{} plans read, {routed} of them of one task", plans.len());

    let unexpected_plans: Vec<(&str, i64)> = plans
        .iter()
        .filter(|p| p.tasks > 1 && !named_fan_out(&p.query))
        .map(|p| (p.query.as_str(), p.tasks))
        .collect();
    assert!(
        unexpected_plans.is_empty(),
        "plans (statement, tasks) that run on more than one shard: {unexpected_plans:#?}"
    );
    let unexpected: Vec<&String> = statements.iter().filter(|s| !named_fan_out(s)).collect();
    assert!(
        unexpected.is_empty(),
        "statements run on more than one shard: {unexpected:#?}"
    );
    // Both logs do name what they should: the RPCs' single-shard plans, and
    // the poller's reads of every shard, in each.
    assert!(routed > 0, "no plan of one task logged");
    assert!(
        plans
            .iter()
            .any(|p| p.tasks > 1 && p.query.contains(FAN_OUT[0].0)),
        "no plan of the poller's fan-out logged"
    );
    assert!(
        statements.iter().any(|s| s.contains(FAN_OUT[0].0)),
        "no multi-task statement logged at all: {statements:#?}"
    );
}
