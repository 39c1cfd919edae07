//! On Citus every tenant-scoped RPC is a single-shard (router) query. While
//! every RPC runs once, the coordinator logs each statement the service
//! sends, with its parameters (`log_statement`), and each statement Citus
//! runs as more than one task (`citus.multi_task_query_log_level`). Then:
//! - every logged statement that has a plan is EXPLAINed again, with its
//!   logged parameters, on the same data: a Citus job of more than one task
//!   (the plan's "Task Count") fans out;
//! - the multi-task log adds what those plans cannot show: statements inside
//!   a schema function that runs on the coordinator (named by the calling
//!   statement).
//!
//! Either fails the test unless it is one of the named exceptions below
//! (README "On Citus" says why each fans out). The plans are not read as the
//! statements run (`auto_explain`): Citus's EXPLAIN then asks a worker for
//! its plan inside the service's own transaction, which broke its commits.
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::citus::{distributed_db, server_on};
use common::rpcs::every_rpc_answers;
use common::wait::{eventually, seen};

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

/// Whether `statement` is one of the named exceptions.
fn named_fan_out(statement: &str) -> bool {
    FAN_OUT
        .iter()
        .any(|(fragment, _)| statement.contains(fragment))
}

/// `sql` on one line, each run of white space one space.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The coordinator's log prefix for this test: time, process, application.
const LOG_LINE_PREFIX: &str = "%m [%p] <%a> ";

/// One message of the server's log: its process, application, level and
/// text, lines after the first joined back.
struct Record<'a> {
    pid: &'a str,
    application: &'a str,
    level: &'a str,
    text: String,
}

fn records(log: &str) -> Vec<Record<'_>> {
    let mut out: Vec<Record> = Vec::new();
    for line in log.lines() {
        // A message's further lines come each behind one tab.
        if let Some(more) = line.strip_prefix('\t') {
            if let Some(last) = out.last_mut() {
                last.text.push('\n');
                last.text.push_str(more);
            }
            continue;
        }
        let Some((pid, rest)) = line.split_once(" [").and_then(|(_, r)| r.split_once("] <")) else {
            continue;
        };
        let Some((application, rest)) = rest.split_once("> ") else {
            continue;
        };
        if let Some((level, text)) = rest.split_once(":  ") {
            out.push(Record {
                pid,
                application,
                level,
                text: text.to_owned(),
            });
        }
    }
    out
}

/// A statement the service sent, with its parameters as SQL literals
/// (None: sent as a simple query, which has none).
struct Sent {
    sql: String,
    parameters: Option<Vec<String>>,
}

/// The statements `log_statement` logged of the service's sessions (not
/// Citus's own, which reach the coordinator too: it holds the reference
/// tables' shards), each with the parameters logged after it.
fn sent_statements(records: &[Record]) -> Vec<Sent> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.application != "affinity" {
            continue;
        }
        let (kind, sql) = match (r.level, r.text.split_once(": ")) {
            ("LOG", Some((kind, sql))) if kind == "statement" || kind.starts_with("execute ") => {
                (kind, sql)
            }
            _ => continue,
        };
        let parameters = (kind != "statement").then(|| {
            records[i + 1..]
                .iter()
                .find(|d| d.pid == r.pid)
                .filter(|d| d.level == "DETAIL")
                .and_then(|d| d.text.strip_prefix("parameters: "))
                .map(parameters)
                .unwrap_or_default()
        });
        out.push(Sent {
            sql: sql.to_owned(),
            parameters,
        });
    }
    out
}

/// `$1 = 'a', $2 = NULL` (PostgreSQL's log of parameters): the values as
/// SQL literals, in order.
fn parameters(detail: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = detail;
    while let Some((_, after)) = rest.split_once(" = ") {
        if let Some(r) = after.strip_prefix("NULL") {
            out.push("NULL".to_owned());
            rest = r;
            continue;
        }
        let body = after.strip_prefix('\'').expect("a quoted parameter");
        // The closing quote: one not doubled.
        let mut end = 0;
        loop {
            end += body[end..].find('\'').expect("a closed parameter");
            if body[end + 1..].starts_with('\'') {
                end += 2;
            } else {
                break;
            }
        }
        out.push(format!("'{}'", &body[..end]));
        rest = &body[end + 1..];
    }
    out
}

/// `sent`'s statement with each `$n` outside quotes replaced by its
/// parameter (an untyped literal, typed by where it stands, as a parameter
/// is); a cursor's declaration becomes its query. None: no plan to read,
/// or not the service's statement: Citus logs the shard statements it runs
/// in the coordinator's own session (it holds the reference tables'
/// shards) as simple queries, parameters and all, which a client's simple
/// query cannot hold.
fn plannable(sent: &Sent) -> Option<String> {
    let sql = sent.sql.trim();
    let sql = match sql.split_once("CURSOR FOR") {
        Some((declare, query)) if declare.starts_with("DECLARE ") => query.trim(),
        _ => sql,
    };
    let first = sql.split_whitespace().next()?.to_ascii_uppercase();
    if !["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&first.as_str()) {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let (mut chars, mut quoted) = (sql.char_indices().peekable(), false);
    while let Some((at, c)) = chars.next() {
        let digits: String = match (quoted, c) {
            (false, '$') => std::iter::from_fn(|| chars.next_if(|(_, d)| d.is_ascii_digit()))
                .map(|(_, d)| d)
                .collect(),
            _ => String::new(),
        };
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(
                sent.parameters
                    .as_ref()?
                    .get(n - 1)
                    .unwrap_or_else(|| panic!("${n} without a logged parameter: {}", &sql[at..])),
            ),
            Err(_) => {
                quoted ^= c == '\'';
                out.push(c);
            }
        }
    }
    Some(out)
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

/// The statements of `records` that Citus ran as more than one task.
fn multi_task_statements(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if !r.text.contains("multi-task query about to be executed") {
            continue;
        }
        let statement = records[i + 1..]
            .iter()
            .filter(|s| s.pid == r.pid)
            .take_while(|s| s.level != "WARNING")
            .find(|s| s.level == "STATEMENT");
        if let Some(s) = statement {
            out.push(one_line(&s.text));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tenant_scoped_rpc_runs_on_one_shard_apart_from_the_named_exceptions() {
    let Some(db) = distributed_db().await else {
        return;
    };
    // Each logged line names its session's application (the service's is
    // "affinity"); a reload reaches the sessions forked after it.
    sqlx::raw_sql(&format!(
        "ALTER SYSTEM SET log_line_prefix = '{LOG_LINE_PREFIX}'"
    ))
    .execute(&db.pool)
    .await
    .expect("setting the log's prefix");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&db.pool)
        .await
        .expect("reloading");
    eventually(Duration::from_secs(30), || async {
        let now: String = sqlx::query_scalar("SELECT current_setting('log_line_prefix')")
            .fetch_one(&db.pool)
            .await
            .map_err(|e| e.to_string())?;
        seen(now == LOG_LINE_PREFIX, now)
    })
    .await;
    // For the server's sessions, opened after this.
    sqlx::raw_sql(
        "ALTER DATABASE affinity SET log_statement = 'all';
         ALTER DATABASE affinity SET citus.multi_task_query_log_level = 'warning';
         ALTER DATABASE affinity SET log_min_error_statement = 'warning'",
    )
    .execute(&db.pool)
    .await
    .expect("logging statements");
    let log = db.data_dir().join("server.log");
    let s = server_on(db).await;
    every_rpc_answers(&s).await;
    let log = std::fs::read_to_string(&log).expect("the coordinator's log");
    let records = records(&log);

    // Each distinct statement's plan, on the data the RPCs left.
    let (mut seen, mut plans, mut unplanned) = (HashSet::new(), Vec::new(), Vec::new());
    for sent in sent_statements(&records) {
        let Some(sql) = plannable(&sent) else {
            continue;
        };
        if !seen.insert(sql.clone()) {
            continue;
        }
        let explained: Result<serde_json::Value, _> =
            sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
                .fetch_one(&s.db.pool)
                .await;
        match explained {
            Ok(plan) => plans.push((one_line(&sent.sql), most_tasks(&plan))),
            Err(e) => unplanned.push(format!("{e}: {sql}")),
        }
    }
    let statements = multi_task_statements(&records);
    s.shutdown().await.expect("a clean stop");

    for (fragment, why) in FAN_OUT {
        let n = plans
            .iter()
            .filter(|(q, t)| *t > 1 && q.contains(fragment))
            .count();
        let m = statements.iter().filter(|s| s.contains(fragment)).count();
        eprintln!("{n} plans and {m} statements of more than one task: {why}");
    }
    let routed = plans.iter().filter(|(_, t)| *t == 1).count();
    eprintln!(
        "{} statements' plans read, {routed} of one task",
        plans.len()
    );

    assert!(
        unplanned.is_empty(),
        "statements not EXPLAINed: {unplanned:#?}"
    );
    let fanning: Vec<&(String, i64)> = plans
        .iter()
        .filter(|(q, t)| *t > 1 && !named_fan_out(q))
        .collect();
    assert!(
        fanning.is_empty(),
        "plans (statement, tasks) over more than one shard: {fanning:#?}"
    );
    let unexpected: Vec<&String> = statements.iter().filter(|s| !named_fan_out(s)).collect();
    assert!(
        unexpected.is_empty(),
        "statements run on more than one shard: {unexpected:#?}"
    );
    // Both kinds are read: the RPCs' plans of one task, and the poller's
    // reads of every shard in each.
    assert!(routed > 0, "no plan of one task read");
    assert!(
        plans
            .iter()
            .any(|(q, t)| *t > 1 && q.contains(FAN_OUT[0].0)),
        "no plan of the poller's fan-out read"
    );
    assert!(
        statements.iter().any(|s| s.contains(FAN_OUT[0].0)),
        "no multi-task statement logged at all: {statements:#?}"
    );
}
