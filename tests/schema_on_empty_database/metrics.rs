//! Metric buckets follow the time zone across DST changes; old points are archived.
use uuid::Uuid;

use crate::common::TestDb;
use crate::new_user;

#[tokio::test]
async fn metric_buckets_follow_the_time_zone_across_daylight_saving_changes() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    let post = Uuid::new_v4();
    // One point per hour, value = hour index, from 2024-03-29 to 2024-04-02 UTC:
    // Europe/Paris moves to summer time on Sunday 2024-03-31 (a 23-hour day).
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT $1, 'post', $2, 'likes', g, timestamptz '2024-03-29 00:00+00' + g * interval '1 hour'
         FROM generate_series(0, 95) g",
    )
    .bind(org)
    .bind(post)
    .execute(&db.pool)
    .await
    .unwrap();
    let days: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT to_char(bucket_start AT TIME ZONE 'Europe/Paris', 'YYYY-MM-DD HH24:MI'), count, last, max
         FROM get_metrics_aggregated('post', $1, 'likes', 'day',
                                     '2024-03-29 00:00+00', '2024-04-02 00:00+00', 'Europe/Paris')",
    )
    .bind(post)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let counts: Vec<(&str, i64)> = days.iter().map(|d| (d.0.as_str(), d.1)).collect();
    assert_eq!(
        counts,
        vec![
            ("2024-03-29 00:00", 23),
            ("2024-03-30 00:00", 24),
            ("2024-03-31 00:00", 23),
            ("2024-04-01 00:00", 24),
            ("2024-04-02 00:00", 2)
        ]
    );
    // `last` is the latest point of the bucket (values increase with time here).
    assert!(days.iter().all(|d| d.2 == d.3));
    // Weeks start on Monday: 2024-03-25 and 2024-04-01.
    let weeks: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(bucket_start AT TIME ZONE 'Europe/Paris', 'Dy YYYY-MM-DD')
         FROM get_metrics_aggregated('post', $1, 'week', 'week', '2024-03-29 00:00+00', '2024-04-02 00:00+00', 'Europe/Paris')",
    )
    .bind(post)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(weeks.is_empty(), "wrong metric name gives no buckets");
    let weeks: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(bucket_start AT TIME ZONE 'Europe/Paris', 'Dy YYYY-MM-DD')
         FROM get_metrics_aggregated('post', $1, 'likes', 'week', '2024-03-29 00:00+00', '2024-04-02 00:00+00', 'Europe/Paris')",
    )
    .bind(post)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(weeks, vec!["Mon 2024-03-25", "Mon 2024-04-01"]);
    // Unknown granularity and time zone are refused with invalid_parameter_value.
    for (g, tz) in [("fortnight", "UTC"), ("day", "Mars/Olympus_Mons")] {
        let err = sqlx::query(
            "SELECT * FROM get_metrics_aggregated('post', $1, 'likes', $2, NULL, NULL, $3)",
        )
        .bind(post)
        .bind(g)
        .bind(tz)
        .fetch_all(&db.pool)
        .await
        .unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("22023"), "{g} {tz}: {err}");
    }
}

#[tokio::test]
async fn archive_old_metrics_moves_points_past_the_retention() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    let post = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT $1, 'post', $2, 'likes', g, now() - (g + 0.5) * interval '1 day' FROM generate_series(0, 99) g",
    )
    .bind(org)
    .bind(post)
    .execute(&db.pool)
    .await
    .unwrap();
    let archive = || async {
        sqlx::query_scalar::<_, i64>("SELECT archive_old_metrics(interval '30 days')")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    assert_eq!(archive().await, 70); // 30.5 to 99.5 days old
    let (hot, archived): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM time_series_metrics), (SELECT count(*) FROM archive.time_series_metrics)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((hot, archived), (30, 70));
    assert_eq!(archive().await, 0);
}
