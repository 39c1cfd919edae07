//! GetTopEntities: items ranked by a metric over a range, through a real
//! client, server and database, checked against the raw points.
mod common;

use affinity::proto::{self, Role, TopBy};
use chrono::{DateTime, Duration, Utc};
use common::server::{authed, user_token, TestServer};
use tonic::Code;
use uuid::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(affinity::api::to_timestamp(t))
}

async fn record(
    s: &TestServer,
    token: &str,
    org: Uuid,
    points: Vec<(Uuid, &str, f64, DateTime<Utc>)>,
) {
    let points = points
        .into_iter()
        .map(|(e, name, value, t)| proto::MetricPoint {
            entity: Some(proto::EntityRef {
                entity_type: "post".into(),
                entity_id: e.to_string(),
            }),
            metric_name: name.into(),
            value,
            recorded_at: ts(t),
        })
        .collect();
    let req = proto::RecordMetricsRequest {
        organization_id: org.to_string(),
        points,
        ..Default::default()
    };
    s.metrics()
        .record_metrics(authed(req, token))
        .await
        .expect("recording");
}

fn request(
    org: Uuid,
    by: TopBy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    n: u32,
) -> proto::GetTopEntitiesRequest {
    proto::GetTopEntitiesRequest {
        organization_id: org.to_string(),
        entity_type: "post".into(),
        metric_name: "likes".into(),
        by: by as i32,
        start: ts(start),
        end: ts(end),
        max_results: n,
    }
}

async fn top(
    s: &TestServer,
    token: &str,
    req: proto::GetTopEntitiesRequest,
) -> Result<Vec<(Uuid, f64)>, tonic::Status> {
    let answer = s
        .metrics()
        .get_top_entities(authed(req, token))
        .await?
        .into_inner();
    Ok(answer
        .entities
        .into_iter()
        .map(|r| {
            let e = r.entity.expect("an entity");
            assert_eq!(e.entity_type, "post");
            (e.entity_id.parse().expect("a uuid"), r.value)
        })
        .collect())
}

/// The same ranking computed from the raw points, nothing precomputed.
async fn raw(
    s: &TestServer,
    org: Uuid,
    by: TopBy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    n: i64,
) -> Vec<(Uuid, f64)> {
    sqlx::query_as(
        "WITH inside AS (
             SELECT entity_id, sum(value) AS total,
                    (array_agg(value ORDER BY recorded_at DESC, id DESC))[1] AS latest
             FROM time_series_metrics
             WHERE organization_id = $1 AND entity_type = 'post' AND metric_name = 'likes'
               AND recorded_at >= $2 AND recorded_at < $3
             GROUP BY entity_id
         ), before AS (
             SELECT DISTINCT ON (entity_id) entity_id, value
             FROM time_series_metrics
             WHERE organization_id = $1 AND entity_type = 'post' AND metric_name = 'likes'
               AND recorded_at < $2
             ORDER BY entity_id, recorded_at DESC, id DESC
         )
         SELECT i.entity_id, CASE $4 WHEN 1 THEN i.total WHEN 2 THEN i.latest
                                 ELSE i.latest - coalesce(b.value, 0) END AS v
         FROM inside i LEFT JOIN before b USING (entity_id)
         ORDER BY v DESC, i.entity_id LIMIT $5",
    )
    .bind(org)
    .bind(start)
    .bind(end)
    .bind(by as i32)
    .bind(n)
    .fetch_all(&s.db.pool)
    .await
    .expect("the raw ranking")
}

fn close(a: &[(Uuid, f64)], b: &[(Uuid, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ea, va), (eb, vb))| ea == eb && (va - vb).abs() <= 1e-9 * va.abs().max(1.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn items_rank_by_sum_last_and_growth_as_the_raw_points_do() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = s.new_tenant().await;
    // 40 posts, points every 37 minutes over 12 days with values that
    // differ per post; a few posts only before the range.
    let posts: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    let t0 = at("2026-04-01T00:00:00Z");
    let mut points = Vec::new();
    for (i, &p) in posts.iter().enumerate() {
        let mut when = t0 + Duration::minutes(i as i64 * 7);
        let mut total = 0.0;
        while when < t0 + Duration::days(12) {
            total += ((i * 13 + when.timestamp() as usize / 60) % 17) as f64;
            points.push((p, "likes", total, when));
            when += Duration::minutes(37 + (i as i64 % 5) * 60);
            if i % 10 == 9 && when > t0 + Duration::days(3) {
                break;
            }
        }
    }
    // Another metric and another organization's post, both high.
    points.push((posts[0], "comments", 1e9, t0 + Duration::days(5)));
    for chunk in points.chunks(1000) {
        record(&s, &t.token, t.org, chunk.to_vec()).await;
    }
    let stranger = Uuid::new_v4();
    record(
        &s,
        &other.token,
        other.org,
        vec![(stranger, "likes", 1e9, t0 + Duration::days(5))],
    )
    .await;

    // Ranges with whole days, whole hours and parts of hours at both ends,
    // and one inside a single hour.
    let ranges = [
        (at("2026-04-04T10:17:00Z"), at("2026-04-11T08:41:30Z")),
        (at("2026-04-02T00:00:00Z"), at("2026-04-09T00:00:00Z")),
        (at("2026-04-05T13:05:00Z"), at("2026-04-05T13:55:00Z")),
        (at("2026-04-03T23:30:00Z"), at("2026-04-05T00:30:00Z")),
    ];
    for (start, end) in ranges {
        for by in [TopBy::Sum, TopBy::Last, TopBy::Growth] {
            for n in [5, 1000] {
                let got = top(&s, &t.token, request(t.org, by, start, end, n))
                    .await
                    .expect("a ranking");
                let want = raw(&s, t.org, by, start, end, i64::from(n)).await;
                assert!(
                    close(&got, &want),
                    "{by:?} over {start}..{end} (top {n}):\n got {got:?}\nwant {want:?}"
                );
                assert!(got.iter().all(|(e, _)| *e != stranger));
            }
        }
    }
    // Unspecified means SUM; 0 means 10.
    let (start, end) = ranges[0];
    let default = top(
        &s,
        &t.token,
        request(t.org, TopBy::Unspecified, start, end, 0),
    )
    .await
    .expect("a ranking");
    assert_eq!(
        default,
        top(&s, &t.token, request(t.org, TopBy::Sum, start, end, 10))
            .await
            .expect("a ranking")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ties_are_broken_by_entity_id_and_viewers_may_rank() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let when = at("2026-04-05T12:00:00Z");
    let mut posts: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    record(
        &s,
        &t.token,
        t.org,
        posts.iter().map(|&p| (p, "likes", 5.0, when)).collect(),
    )
    .await;
    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    let got = top(
        &s,
        &user_token(viewer),
        request(t.org, TopBy::Sum, when, when + Duration::hours(1), 4),
    )
    .await
    .expect("a viewer's ranking");
    posts.sort();
    assert_eq!(
        got,
        posts[..4].iter().map(|&p| (p, 5.0)).collect::<Vec<_>>()
    );
    // Not a member: refused.
    let stranger = user_token(Uuid::new_v4());
    let refused = top(
        &s,
        &stranger,
        request(t.org, TopBy::Sum, when, when + Duration::hours(1), 4),
    )
    .await;
    assert_eq!(
        refused.expect_err("a stranger").code(),
        Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ranking_requests_are_refused_naming_the_field() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let (start, end) = (at("2026-04-01T00:00:00Z"), at("2026-04-02T00:00:00Z"));
    let cases: Vec<(proto::GetTopEntitiesRequest, &str)> = vec![
        (
            proto::GetTopEntitiesRequest {
                by: 9,
                ..request(t.org, TopBy::Sum, start, end, 5)
            },
            "by",
        ),
        (request(t.org, TopBy::Sum, start, end, 1001), "max_results"),
        (request(t.org, TopBy::Sum, end, start, 5), "start"),
        (
            proto::GetTopEntitiesRequest {
                entity_type: "Post!".into(),
                ..request(t.org, TopBy::Sum, start, end, 5)
            },
            "entity_type",
        ),
        (
            proto::GetTopEntitiesRequest {
                metric_name: String::new(),
                ..request(t.org, TopBy::Sum, start, end, 5)
            },
            "metric_name",
        ),
        (
            proto::GetTopEntitiesRequest {
                organization_id: "nope".into(),
                ..request(t.org, TopBy::Sum, start, end, 5)
            },
            "organization_id",
        ),
    ];
    for (req, field) in cases {
        let e = top(&s, &t.token, req).await.expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {}", e.message());
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
}
