//! Items of a type ranked by one metric over a range (GetTopEntities),
//! from the rollups wherever they cover the range (migration 13).

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// What an item is ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    /// The sum of its points in the range.
    Sum,
    /// Its latest point in the range.
    Last,
    /// Its latest point in the range less its latest before the range (0
    /// when it has none before).
    Growth,
}

/// The question, validated.
#[derive(Debug, Clone)]
pub struct Ranking<'a> {
    pub org: Uuid,
    pub entity_type: &'a str,
    pub metric_name: &'a str,
    pub by: RankBy,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub limit: i64,
}

/// Items with a point of the metric in the range, highest value first,
/// ties by entity id (ascending).
pub async fn top<'e>(db: impl PgExecutor<'e>, q: &Ranking<'_>) -> sqlx::Result<Vec<(Uuid, f64)>> {
    let value = match q.by {
        RankBy::Sum => "t.total",
        RankBy::Last => "t.latest[3]",
        RankBy::Growth => {
            "t.latest[3] - coalesce((metric_latest_before($1, $2, t.entity_id, $3, $4))[3], 0)"
        }
    };
    // `value` is one of the constants above; every input is a parameter.
    let sql = format!(
        "SELECT r.entity_id, r.value
         FROM (SELECT t.entity_id, {value} AS value
               FROM metric_totals_of_type($1, $2, $3, $4, $5) AS t) AS r
         ORDER BY r.value DESC, r.entity_id
         LIMIT $6"
    );
    sql::query_as(&sql)
        .bind(q.org)
        .bind(q.entity_type)
        .bind(q.metric_name)
        .bind(q.start)
        .bind(q.end)
        .bind(q.limit)
        .fetch_all(db)
        .await
}
