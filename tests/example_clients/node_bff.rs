//! The Node BFF checks a permission, shows related posts and a series, or nothing without the role.
use std::f32::consts::PI;

use crate::common::examples::{array_of, bff_node, f64_of, run_json, str_of};
use crate::common::server::{authed, service_token, user_token, TestServer};
use affinity::proto::{self, Role};
use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use tokio::process::Command;
use uuid::Uuid;

const DIM: usize = 384;

// ---------------------------------------------------------------- Node BFF

/// A unit vector whose cosine similarity with `at_angle(0)` is cos(degrees).
fn at_angle(degrees: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    let r = degrees * PI / 180.0;
    v[0] = r.cos();
    v[1] = r.sin();
    v
}

fn eref(entity_type: &str, id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: entity_type.to_string(),
        entity_id: id.to_string(),
    })
}

async fn upsert(s: &TestServer, token: &str, org: Uuid, items: &[(&str, Uuid, f32)]) {
    let embeddings = items
        .iter()
        .map(|(entity_type, id, degrees)| proto::EmbeddingRecord {
            entity: eref(entity_type, *id),
            vector: at_angle(*degrees),
            model: "text-embedding-test".into(),
        })
        .collect();
    s.similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: org.to_string(),
                embeddings,
            },
            token,
        ))
        .await
        .expect("upserting embeddings");
}

async fn record(
    s: &TestServer,
    token: &str,
    org: Uuid,
    points: &[(Uuid, &str, f64, DateTime<Utc>)],
) {
    let points = points
        .iter()
        .map(|(post, name, value, at)| proto::MetricPoint {
            entity: eref("post", *post),
            metric_name: name.to_string(),
            value: *value,
            recorded_at: Some(affinity::api::to_timestamp(*at)),
        })
        .collect::<Vec<_>>();
    let n = points.len() as u32;
    let r = s
        .metrics()
        .record_metrics(authed(
            proto::RecordMetricsRequest {
                organization_id: org.to_string(),
                idempotency_key: String::new(),
                points,
            },
            token,
        ))
        .await
        .expect("recording metrics")
        .into_inner();
    assert_eq!(r.recorded, n);
}

fn bff(s: &TestServer, token: &str, org: Uuid, user: Uuid, post: Uuid, role: &str) -> Command {
    let mut cmd = bff_node();
    cmd.env("AFFINITY_ADDR", s.addr.to_string())
        .env("AFFINITY_TOKEN", token)
        .env("AFFINITY_ORG_ID", org.to_string())
        .env("AFFINITY_USER_ID", user.to_string())
        .env("AFFINITY_POST_ID", post.to_string())
        .env("AFFINITY_REQUIRED_ROLE", role);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn bff_node_example_checks_permission_fetches_related_posts_and_draws_series() {
    bff_node(); // installed, or fail before starting anything
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = s.new_tenant().await;

    // Posts around the page's post; the three nearest are the related ones.
    let post = Uuid::new_v4();
    let [p10, p20, p30, p80, p120, chat, foreign] = [(); 7].map(|_| Uuid::new_v4());
    upsert(
        &s,
        &t.token,
        t.org,
        &[
            ("post", post, 0.0),
            ("post", p30, 30.0),
            ("post", p10, 10.0),
            ("post", p120, 120.0),
            ("post", p20, 20.0),
            ("post", p80, 80.0),         // below the BFF's 0.5 threshold
            ("chat_message", chat, 5.0), // not a post
        ],
    )
    .await;
    upsert(&s, &other.token, other.org, &[("post", foreign, 1.0)]).await;

    // Likes of the post on the last three days (at noon UTC), and points the
    // series must leave out: too old, another metric, another post.
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let day = |n: u64| midnight.checked_sub_days(Days::new(n)).unwrap();
    let noon = |n: u64| day(n) + chrono::Duration::hours(12);
    record(
        &s,
        &t.token,
        t.org,
        &[
            (post, "likes", 5.0, noon(3)),
            (post, "likes", 7.0, noon(3) + chrono::Duration::minutes(30)),
            (post, "likes", 11.0, noon(2)),
            (post, "likes", 2.0, noon(1) - chrono::Duration::hours(3)),
            (post, "likes", 3.0, noon(1)),
            (post, "likes", 4.0, noon(1) + chrono::Duration::hours(3)),
            (post, "likes", 100.0, noon(10)),
            (post, "comments", 50.0, noon(1)),
            (p10, "likes", 70.0, noon(1)),
        ],
    )
    .await;

    // The BFF holds a service_role token and asks about the page's viewer.
    let page = run_json(
        bff(&s, &service_token(), t.org, t.user, post, "ROLE_EDITOR"),
        "the Node BFF",
    )
    .await;

    assert_eq!(page["permission"]["allowed"], Value::Bool(true), "{page}");
    assert_eq!(str_of(&page, "/permission/role"), "ROLE_OWNER");
    assert_eq!(str_of(&page, "/permission/user_id"), t.user.to_string());

    let related = array_of(&page, "/related_posts");
    let ids: Vec<&str> = related
        .iter()
        .map(|r| r["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [p10, p20, p30].map(|p| p.to_string()),
        "the nearest posts, nearest first: {page}"
    );
    for (r, degrees) in related.iter().zip([10f64, 20.0, 30.0]) {
        let similarity = r["similarity"].as_f64().unwrap();
        let expected = degrees.to_radians().cos();
        assert!(
            (similarity - expected).abs() < 1e-4,
            "{similarity} for {degrees}°"
        );
    }

    let points = array_of(&page, "/series/points");
    let got: Vec<(DateTime<Utc>, f64, u64)> = points
        .iter()
        .map(|p| {
            let start = DateTime::parse_from_rfc3339(p["bucket_start"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc);
            (
                start,
                p["sum"].as_f64().unwrap(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(day(3), 12.0, 2), (day(2), 11.0, 1), (day(1), 9.0, 3)],
        "daily buckets of the likes recorded in the last 7 days: {page}"
    );
    assert_eq!(f64_of(&page, "/series/total"), 32.0);
    assert_eq!(f64_of(&page, "/series/points/2/min"), 2.0);
    assert_eq!(f64_of(&page, "/series/points/2/max"), 4.0);
    assert_eq!(f64_of(&page, "/series/points/2/last"), 4.0);

    // One bar per bucket, the largest sum the longest.
    let chart: Vec<&str> = array_of(&page, "/chart")
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let bars: Vec<usize> = chart.iter().map(|l| l.matches('#').count()).collect();
    assert_eq!(bars.len(), 3, "{chart:?}");
    assert!(bars[0] > bars[1] && bars[1] > bars[2], "{chart:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bff_node_example_shows_nothing_to_a_user_without_the_required_role() {
    bff_node(); // installed, or fail before starting anything
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let post = Uuid::new_v4();
    upsert(&s, &t.token, t.org, &[("post", post, 0.0)]).await;
    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;

    // A viewer, with their own token, on a page that needs an editor.
    let page = run_json(
        bff(&s, &user_token(viewer), t.org, viewer, post, "ROLE_EDITOR"),
        "the Node BFF",
    )
    .await;
    assert_eq!(page["permission"]["allowed"], Value::Bool(false), "{page}");
    assert_eq!(str_of(&page, "/permission/role"), "ROLE_VIEWER");
    assert_eq!(page["related_posts"], Value::Null, "{page}");
    assert_eq!(page["series"], Value::Null, "{page}");

    // Someone who is not a member at all, asked about by the backend.
    let stranger = Uuid::new_v4();
    let page = run_json(
        bff(&s, &service_token(), t.org, stranger, post, "ROLE_VIEWER"),
        "the Node BFF",
    )
    .await;
    assert_eq!(page["permission"]["allowed"], Value::Bool(false), "{page}");
    assert_eq!(str_of(&page, "/permission/role"), "ROLE_UNSPECIFIED");
    assert_eq!(page["related_posts"], Value::Null, "{page}");
}
