//! Metric rollups (migration 05): `get_metrics_aggregated` reads daily and
//! hourly rollups kept by triggers, and answers exactly what aggregating the
//! points answers, whatever was inserted, deleted, updated or moved.
mod common;

use affinity::config::Config;
use common::server::TestServer;
use common::TestDb;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use uuid::Uuid;

const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/Santiago",    // DST changes at midnight
    "America/St_Johns",    // -03:30
    "Asia/Kolkata",        // +05:30: hours cut by local midnight
    "Asia/Kathmandu",      // +05:45
    "Australia/Lord_Howe", // 30-minute DST
];

/// The aggregation of the points themselves, and a function counting, over
/// every (granularity, zone, range) of `cases`, the buckets where
/// `get_metrics_aggregated` and it disagree (sums and averages to 1e-6: they
/// are added in another order).
const REFERENCE: &str = r#"
SET check_function_bodies = off; -- pg_temp.cases comes later
CREATE FUNCTION pg_temp.raw(u text, tz text, s timestamptz, e timestamptz, eid uuid)
RETURNS TABLE (b timestamptz, sum float8, avg float8, min float8, max float8, count bigint, last float8)
LANGUAGE sql AS $$
  SELECT date_trunc(u, m.recorded_at, tz), sum(m.value), avg(m.value), min(m.value), max(m.value),
         count(*), (array_agg(m.value ORDER BY m.recorded_at DESC, m.id DESC))[1]
  FROM time_series_metrics m
  WHERE m.entity_type = 'post' AND m.entity_id = eid AND m.metric_name = 'impressions'
    AND m.recorded_at >= s AND m.recorded_at < e
  GROUP BY 1 $$;
CREATE FUNCTION pg_temp.fmt(b timestamptz, sum float8, avg float8, min float8, max float8, count bigint, last float8)
RETURNS text LANGUAGE sql AS $$
  SELECT format('%s|%s|%s|%s|%s|%s|%s', b, round(sum::numeric, 6), round(avg::numeric, 6), min, max, count, last) $$;
CREATE FUNCTION pg_temp.disagreements(org uuid)
RETURNS TABLE (label text, bad bigint, buckets bigint)
LANGUAGE sql AS $$
  SELECT format('%s %s [%s, %s) %s', c.u, c.tz, c.s, c.e, c.eid), d.bad, d.n
  FROM pg_temp.cases c,
  LATERAL (SELECT
    (SELECT count(*) FROM (
       (SELECT pg_temp.fmt(r.b, r.sum, r.avg, r.min, r.max, r.count, r.last)
        FROM pg_temp.raw(c.u, c.tz, c.s, c.e, c.eid) r
        EXCEPT ALL
        SELECT pg_temp.fmt(g.bucket_start, g.sum, g.avg, g.min, g.max, g.count, g.last)
        FROM get_metrics_aggregated('post', c.eid, 'impressions', c.u, c.s, c.e, c.tz, org) g)
       UNION ALL
       (SELECT pg_temp.fmt(g.bucket_start, g.sum, g.avg, g.min, g.max, g.count, g.last)
        FROM get_metrics_aggregated('post', c.eid, 'impressions', c.u, c.s, c.e, c.tz, org) g
        EXCEPT ALL
        SELECT pg_temp.fmt(r.b, r.sum, r.avg, r.min, r.max, r.count, r.last)
        FROM pg_temp.raw(c.u, c.tz, c.s, c.e, c.eid) r)) z) AS bad,
    (SELECT count(*) FROM pg_temp.raw(c.u, c.tz, c.s, c.e, c.eid)) AS n) d $$;
"#;

fn series() -> Vec<Uuid> {
    (1..=3u128)
        .map(|i| Uuid::from_u128(0x005e_41e5_0000 + i))
        .collect()
}

/// A connection (temporary functions live in its session) to a migrated
/// database holding an organization, daily rollups in six zones, and points of
/// three series over ~13 months, written by several statements, with equal
/// timestamps, far-future points moved between partitions, deletions and
/// updates.
async fn seeded() -> (TestDb, PoolConnection<Postgres>, Uuid) {
    let db = TestDb::migrated().await;
    let mut c = db.pool.acquire().await.unwrap();
    let org: Uuid = sqlx::query_scalar("SELECT ensure_user_profile($1)")
        .bind(Uuid::new_v4())
        .fetch_one(&mut *c)
        .await
        .unwrap();
    // Daily rollups (read in one statement, migration 07) in every zone
    // but Asia/Kolkata, whose day, week and month buckets take the
    // stepwise path with hourly rollups cut at its half-hour midnights.
    for zone in ZONES
        .iter()
        .filter(|z| !["UTC", "Asia/Kolkata"].contains(z))
    {
        let added: bool = sqlx::query_scalar("SELECT add_metric_rollup_zone($1)")
            .bind(zone)
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert!(added, "{zone}");
    }
    let statements = [
        "SELECT setseed(0.42)".to_string(),
        // Past the partitions: the default partition takes them, until
        // ensure_metric_partitions moves them into their own month.
        format!(
            "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
             SELECT $1, 'post', ($2::uuid[])[1 + i % 3], 'impressions', i, {AT} + interval '800 days' + i * interval '41 minutes'
             FROM generate_series(1, 600) i"
        ),
        format!(
            "SELECT ensure_metric_partitions({AT} + interval '790 days', {AT} + interval '830 days')"
        ),
        // Equal timestamps: `last` is the one with the highest id.
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT $1, 'post', ($2::uuid[])[1], 'impressions', i, '2025-03-30 00:30:00+00'
         FROM generate_series(1, 5) i"
            .to_string(),
    ];
    for sql in statements {
        let q = sqlx::query(&sql);
        let q = if sql.contains("$1") {
            q.bind(org).bind(series())
        } else {
            q
        };
        q.execute(&mut *c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for _ in 0..4 {
        sqlx::query(&format!(
            "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
             SELECT $1, 'post', ($2::uuid[])[1 + i % 3], 'impressions',
                    round((random() * 100)::numeric, 2)::float8, {AT} - random() * interval '380 days'
             FROM generate_series(1, 6000) i"
        ))
        .bind(org)
        .bind(series())
        .execute(&mut *c)
        .await
        .unwrap();
    }
    // Deleted and changed points: their buckets are recomputed.
    for sql in [
        "DELETE FROM time_series_metrics WHERE id % 17 = 0",
        "UPDATE time_series_metrics SET value = value + 1, recorded_at = recorded_at + interval '7 minutes'
         WHERE id % 23 = 0",
    ] {
        sqlx::query(sql).execute(&mut *c).await.unwrap();
    }
    sqlx::raw_sql(REFERENCE).execute(&mut *c).await.unwrap();
    (db, c, org)
}

const AT: &str = "'2025-11-24 10:00:00+00'::timestamptz";

/// Every granularity and zone, over ranges with random ends and ranges that
/// start and end on local midnights.
async fn make_cases(c: &mut PoolConnection<Postgres>) {
    sqlx::query(&format!(
        "CREATE TEMP TABLE cases AS
         SELECT u, tz, s, e, ($1::uuid[])[1 + (n % 3)] AS eid
         FROM unnest($2::text[]) tz,
              unnest(ARRAY['hour', 'day', 'week', 'month']) u,
              LATERAL (
                  SELECT n, s, s + (0.2 + random()) * interval '150 days' AS e
                  FROM (SELECT n, {AT} - random() * interval '400 days' AS s
                        FROM generate_series(1, 3) n) r
                  UNION ALL
                  SELECT 4, date_trunc('day', {AT} - interval '390 days', tz),
                         date_trunc('day', {AT} - interval '20 days', tz)
                  UNION ALL
                  SELECT 5, {AT} + interval '795 days', {AT} + interval '830 days'
              ) r"
    ))
    .bind(series())
    .bind(ZONES.map(String::from).to_vec())
    .execute(&mut **c)
    .await
    .unwrap();
}

/// Buckets (each counted twice: missing on one side, extra on the other)
/// where the two disagree, over every case, with the cases that disagree;
/// and the buckets compared.
async fn disagreements(c: &mut PoolConnection<Postgres>, org: Uuid) -> (i64, i64, Vec<String>) {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as("SELECT * FROM pg_temp.disagreements($1)")
        .bind(org)
        .fetch_all(&mut **c)
        .await
        .unwrap();
    let bad = rows.iter().map(|r| r.1).sum();
    let buckets = rows.iter().map(|r| r.2).sum();
    let cases = rows
        .into_iter()
        .filter(|r| r.1 > 0)
        .map(|r| format!("{}: {} of {}", r.0, r.1, r.2))
        .collect();
    (bad, buckets, cases)
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregations_from_rollups_equal_aggregations_of_the_points() {
    let (_db, mut c, org) = seeded().await;
    make_cases(&mut c).await;
    let (bad, buckets, cases) = disagreements(&mut c, org).await;
    assert_eq!(
        bad, 0,
        "buckets differing from the points' aggregation: {cases:#?}"
    );
    assert!(buckets > 20_000, "only {buckets} buckets compared");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_aggregations_read_the_rollups_not_the_points() {
    // Falsified rollups change the answers: daily ones in Europe/Berlin,
    // hourly ones elsewhere (Asia/Kolkata days are hours and a half hour).
    let (_db, mut c, org) = seeded().await;
    for (zone, falsify, compared) in [
        (
            "Berlin",
            "UPDATE metric_rollups_daily SET sum = sum + 1 WHERE time_zone = 'Europe/Berlin'",
            "DELETE FROM pg_temp.cases WHERE tz <> 'Europe/Berlin' OR u = 'hour'",
        ),
        (
            "Kolkata",
            "UPDATE metric_rollups_hourly SET max = max + 1000",
            "DELETE FROM pg_temp.cases WHERE tz <> 'Asia/Kolkata' OR u <> 'day'",
        ),
    ] {
        make_cases(&mut c).await;
        for statement in [falsify, compared] {
            sqlx::query(statement).execute(&mut *c).await.unwrap();
        }
        let (bad, buckets, _) = disagreements(&mut c, org).await;
        assert!(bad > buckets, "{bad} of {buckets} {zone} buckets differ");
        sqlx::query("DROP TABLE pg_temp.cases")
            .execute(&mut *c)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_added_later_gets_rollups_of_every_point_there_is() {
    let (_db, mut c, org) = seeded().await;
    let added: Vec<bool> = sqlx::query_scalar(
        "SELECT add_metric_rollup_zone('Asia/Tokyo') UNION ALL SELECT add_metric_rollup_zone('Asia/Tokyo')",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    assert_eq!(added, vec![true, false]);
    let (rollup_points, days): (i64, i64) = sqlx::query_as(
        "SELECT sum(count)::bigint, count(*) FROM metric_rollups_daily WHERE time_zone = 'Asia/Tokyo'",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    let (points, point_days): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (entity_id, date_trunc('day', recorded_at, 'Asia/Tokyo')))
         FROM time_series_metrics",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    assert_eq!((rollup_points, days), (points, point_days));
    let bad_zone = sqlx::query("SELECT add_metric_rollup_zone('Mars/Olympus_Mons')")
        .execute(&mut *c)
        .await
        .unwrap_err();
    assert!(bad_zone.to_string().contains("time zone"), "{bad_zone}");
    // Tokyo now answers from its daily rollups, equal to the points.
    sqlx::query("UPDATE metric_rollups_daily SET count = count WHERE time_zone = 'Asia/Tokyo'")
        .execute(&mut *c)
        .await
        .unwrap();
    make_cases(&mut c).await;
    sqlx::query("UPDATE pg_temp.cases SET tz = 'Asia/Tokyo'")
        .execute(&mut *c)
        .await
        .unwrap();
    assert_eq!(disagreements(&mut c, org).await.0, 0);
}

/// Points the rollups hold: hourly ones (None) or a zone's daily ones.
async fn rollup_points(c: &mut PoolConnection<Postgres>, zone: Option<&str>) -> i64 {
    let sql = match zone {
        Some(_) => "SELECT coalesce(sum(count), 0)::bigint FROM metric_rollups_daily WHERE time_zone = $1",
        None => "SELECT coalesce(sum(count), 0)::bigint FROM metric_rollups_hourly WHERE $1::text IS NULL",
    };
    sqlx::query_scalar(sql)
        .bind(zone)
        .fetch_one(&mut **c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_and_truncated_points_leave_the_rollups() {
    let (_db, mut c, _org) = seeded().await;
    let moved: i64 = sqlx::query_scalar("SELECT archive_old_metrics(interval '200 days')")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert!(moved > 1000);
    let points: i64 = sqlx::query_scalar("SELECT count(*) FROM time_series_metrics")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    for zone in [None, Some("UTC"), Some("Europe/Berlin")] {
        assert_eq!(rollup_points(&mut c, zone).await, points, "{zone:?}");
    }
    sqlx::query("TRUNCATE time_series_metrics")
        .execute(&mut *c)
        .await
        .unwrap();
    for zone in [None, Some("UTC"), Some("Europe/Berlin")] {
        assert_eq!(rollup_points(&mut c, zone).await, 0, "{zone:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_adds_its_configured_rollup_zones_at_start() {
    let s = TestServer::start_with(TestDb::for_server().await, |c: &mut Config| {
        c.metric_rollup_zones = vec!["UTC".into(), " Asia/Tokyo".into(), "".into()];
    })
    .await;
    let zones: Vec<String> =
        sqlx::query_scalar("SELECT time_zone FROM metric_rollup_zones ORDER BY time_zone")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(zones, vec!["Asia/Tokyo", "UTC"]);
    s.shutdown().await.unwrap();
}
