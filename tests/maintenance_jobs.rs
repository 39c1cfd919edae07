//! Operations that run themselves: metric partitions created ahead (at start
//! and on a schedule) and archival of old metric points on a schedule, one
//! replica at a time.
mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use affinity::config::Schedule;
use affinity::store::maintenance::ARCHIVE_LOCK_KEY;
use chrono::{Datelike, Months, Utc};
use common::scrape;
use common::server::TestServer;
use common::wait::{eventually, seen};
use common::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

/// Every second (cron with seconds): the schedule of these tests.
fn every_second() -> Schedule {
    Schedule::from_str("* * * * * *").expect("a cron expression")
}

/// The partition of the UTC month `months` after the current one.
fn partition_name(months: u32) -> String {
    let first = Utc::now().date_naive().with_day(1).unwrap() + Months::new(months);
    format!("time_series_metrics_p{}", first.format("%Y%m"))
}

async fn partition_exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass('public.' || $1) IS NOT NULL")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The bound of every wait for the service's scheduled work.
const WAIT: Duration = Duration::from_secs(30);

/// `affinity_maintenance_runs_total` of one job and outcome (0 when absent).
async fn runs(addr: SocketAddr, job: &str, outcome: &str) -> f64 {
    let series = format!("affinity_maintenance_runs_total{{job=\"{job}\",outcome=\"{outcome}\"}}");
    common::sample(&scrape(addr).await, &series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_creates_the_coming_months_partitions_at_start_and_on_its_schedule() {
    let db = TestDb::migrated().await;
    // The migration made a few months ahead; a database migrated long ago
    // has none left: drop them (empty) to be in that state.
    for m in 1..=3 {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", partition_name(m)))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    assert!(!partition_exists(&db.pool, &partition_name(2)).await);

    let s = TestServer::start_with(db, |c| {
        c.partition_months_ahead = 5;
        c.partition_schedule = every_second();
    })
    .await;
    let pool = s.db.pool.clone();
    // At start (beside SERVING, not before it): wait, bounded.
    eventually(WAIT, || async {
        for m in 0..=5 {
            if !partition_exists(&pool, &partition_name(m)).await {
                return Err(format!("no partition {} yet", partition_name(m)));
            }
        }
        Ok(())
    })
    .await;

    // A point of the last month ahead lands in its own partition, not in the
    // default one.
    let org = s.new_tenant().await.org;
    let part: String = sqlx::query_scalar(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         VALUES ($1, 'post', $2, 'likes', 1, date_trunc('month', now()) + interval '5 months' + interval '3 days')
         RETURNING tableoid::regclass::text",
    )
    .bind(org)
    .bind(Uuid::new_v4())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(part, partition_name(5));

    // On the schedule: a partition gone while the service runs comes back.
    sqlx::query(&format!("DROP TABLE {}", partition_name(3)))
        .execute(&pool)
        .await
        .unwrap();
    eventually(WAIT, || async {
        seen(
            partition_exists(&pool, &partition_name(3)).await,
            "the dropped partition not recreated by the schedule",
        )
    })
    .await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_archival_moves_old_points_and_skips_while_another_replica_runs_it() {
    let db = TestDb::migrated().await;
    let org: Uuid = sqlx::query_scalar("SELECT ensure_user_profile($1)")
        .bind(Uuid::new_v4())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // 10 points 400+ days old, 5 from yesterday.
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT $1, 'post', $2, 'likes', g, now() - interval '400 days' - g * interval '1 day'
         FROM generate_series(1, 10) g
         UNION ALL
         SELECT $1, 'post', $2, 'likes', g, now() - interval '1 day' FROM generate_series(1, 5) g",
    )
    .bind(org)
    .bind(Uuid::new_v4())
    .execute(&db.pool)
    .await
    .unwrap();

    // "Another replica" is archiving: the test holds the archival lock.
    let mut other = db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ARCHIVE_LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();

    let s = TestServer::start_with_metrics_on(db, |c| {
        c.archive_schedule = every_second();
        c.metrics_retention_days = 30;
    })
    .await;
    let metrics = s.metrics_addr.expect("a metrics endpoint");
    let pool = s.db.pool.clone();
    let counts = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT (SELECT count(*) FROM time_series_metrics),
                    (SELECT count(*) FROM archive.time_series_metrics)",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    eventually(WAIT, || async {
        seen(
            runs(metrics, "archive", "skipped").await >= 1.0,
            "no scheduled run skipped while the lock is held",
        )
    })
    .await;
    assert_eq!(runs(metrics, "archive", "done").await, 0.0);
    assert_eq!(
        counts().await,
        (15, 0),
        "nothing moved while another run holds the lock"
    );

    other.commit().await.unwrap();
    eventually(WAIT, || async {
        seen(
            runs(metrics, "archive", "done").await >= 1.0,
            "no scheduled run done once the lock is free",
        )
    })
    .await;
    assert_eq!(
        counts().await,
        (5, 10),
        "the points past the retention moved, the others stayed"
    );
    assert_eq!(runs(metrics, "archive", "failed").await, 0.0);
    s.shutdown().await.unwrap();
}

#[test]
fn a_schedule_is_a_cron_expression_or_off() {
    assert!(Schedule::from_str("off").unwrap().is_off());
    assert!(!Schedule::from_str("0 2 * * 0").unwrap().is_off());
    let err = Schedule::from_str("every sunday").unwrap_err();
    assert!(err.contains("cron"), "{err}");
    // Sunday 02:00 UTC after a Tuesday noon: the coming Sunday.
    let tuesday = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let next = Schedule::from_str("0 2 * * 0")
        .unwrap()
        .next_after(tuesday)
        .unwrap();
    assert_eq!(next.to_rfc3339(), "2026-11-29T02:00:00+00:00");
}
