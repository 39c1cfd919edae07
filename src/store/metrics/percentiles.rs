//! Percentiles of the points of each bucket of an aggregation.

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Aggregation, Bucket};

/// Each bucket's percentiles (in the order of `percentiles`), oldest
/// bucket first; buckets without points are left out. The schema's
/// `metric_percentiles` (migration 13): per-day t-digests for whole days
/// where the database has the extension, else exact.
pub async fn of(
    conn: &mut PgConnection,
    q: &Aggregation<'_>,
    percentiles: &[f64],
) -> sqlx::Result<Vec<(DateTime<Utc>, Vec<f64>)>> {
    sql::query_as(
        "SELECT p.bucket_start, p.percentiles
         FROM metric_percentiles($1::text, $2::uuid, $3::text, $4::text, $5::timestamptz,
                                 $6::timestamptz, $7::text, $8::uuid, $9::float8[]) AS p",
    )
    .bind(q.entity_type)
    .bind(q.entity_id)
    .bind(q.metric_name)
    .bind(q.granularity)
    .bind(q.start)
    .bind(q.end)
    .bind(q.time_zone)
    .bind(q.org)
    .bind(percentiles)
    .fetch_all(&mut *conn)
    .await
}

/// Puts each bucket's percentiles in it. A bucket the percentiles lack
/// (not possible when both were read in one snapshot) gets NaNs rather
/// than another bucket's values.
pub fn attach(buckets: &mut [Bucket], values: Vec<(DateTime<Utc>, Vec<f64>)>, n: usize) {
    let mut values = values.into_iter().peekable();
    for b in buckets.iter_mut() {
        while values.next_if(|(t, _)| *t < b.bucket_start).is_some() {}
        b.percentiles = match values.next_if(|(t, _)| *t == b.bucket_start) {
            Some((_, v)) if v.len() == n => v,
            _ => vec![f64::NAN; n],
        };
    }
}
