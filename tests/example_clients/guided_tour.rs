//! The README's guided tour runs every step against a live server.
use crate::common::examples::{array_of, f64_of, python_script, run_json, str_of};
use crate::common::server::user_token;
use crate::common::text::{text_server, MODEL};
use serde_json::Value;
use uuid::Uuid;

// ------------------------------------------------------------ guided tour

/// The README's guided tour (`examples/agent-python/tour.py`), step by step
/// against a live server, as a user with a token from `affinity token`'s
/// signer: every step answers, and the numbers are the ones the tour's data
/// implies.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_guided_tour_runs_every_step_against_a_live_server() {
    let mut tour = python_script("tour.py");
    let s = text_server().await;
    let user = Uuid::new_v4();
    tour.env("AFFINITY_ADDR", s.addr.to_string())
        .env("AFFINITY_TOKEN", user_token(user))
        .env("AFFINITY_USER_ID", user.to_string())
        .env("AFFINITY_TOUR_DATABASE", &s.db.url);
    let out = run_json(tour, "the guided tour").await;

    assert!(!str_of(&out, "/organization_id").is_empty());
    assert_eq!(out["allowed"], Value::Bool(true));
    assert_eq!(str_of(&out, "/role"), "ROLE_OWNER");
    // The post about a latte art workshop, written in SQL and embedded by
    // the service, is nearest the note about latte art.
    let similar = array_of(&out, "/similar");
    assert_eq!(similar.len(), 3, "{out}");
    assert_eq!(
        similar.first().and_then(Value::as_str),
        Some("latte"),
        "{out}"
    );
    // A week of hourly points 1..=168, in 7 or 8 Berlin days (8 unless the
    // week starts at Berlin midnight).
    assert_eq!(f64_of(&out, "/points_aggregated"), 168.0);
    assert_eq!(f64_of(&out, "/likes_sum"), (168.0 * 169.0) / 2.0);
    let buckets = f64_of(&out, "/buckets");
    assert!(buckets == 7.0 || buckets == 8.0, "{out}");
    let found = array_of(&out, "/context_found");
    assert_eq!(
        found.first().and_then(Value::as_str),
        Some("User asked when to post the latte art class"),
        "{out}"
    );
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_context_logs WHERE user_id = $1")
        .bind(user)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(logged, 2);
    // The post is the application's: written by the tour in SQL, in the
    // database as any post, its vector made by the service's text model.
    let post: Uuid = str_of(&out, "/post_id").parse().unwrap();
    let embedded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM posts_core p
           JOIN embeddings e ON e.organization_id = p.organization_id
                            AND e.entity_type = 'post' AND e.entity_id = p.id
          WHERE p.id = $1 AND p.user_id = $2 AND e.model = $3",
    )
    .bind(post)
    .bind(user)
    .bind(MODEL)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(embedded, 1);
}
