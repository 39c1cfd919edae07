//! UpsertEmbeddings and DeleteEmbeddings: deletes take every model, upserts replace, are all-or-none, and the last duplicate wins.

use crate::common::server::{authed, code, service_token, TestServer};
use crate::support::{
    count_rows, delete, eref, member, random_vec, rec, rng, similar_req, stored, upsert,
};
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn delete_embeddings_removes_every_model_of_the_named_entities() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(4);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let batch = vec![
        rec("post", a, "m1", &random_vec(&mut r, 384)),
        rec("post", a, "m2", &random_vec(&mut r, 768)),
        rec("post", b, "m1", &random_vec(&mut r, 384)),
        rec("chat_message", a, "m1", &random_vec(&mut r, 384)),
        rec("post", c, "m1", &random_vec(&mut r, 384)),
    ];
    upsert(&s, &t.token, t.org, batch).await.unwrap();
    let editor = member(&s, t.org, Role::Editor).await;
    let n = delete(
        &s,
        &editor,
        t.org,
        vec![
            eref("post", a),
            eref("post", b),
            eref("post", a),
            eref("post", Uuid::new_v4()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        n, 3,
        "both models of post a, post b; duplicates and unknowns count nothing"
    );
    let left: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT entity_type, entity_id FROM embeddings WHERE organization_id = $1 ORDER BY 1, 2",
    )
    .bind(t.org)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(left, vec![("chat_message".into(), a), ("post".into(), c)]);
    assert_eq!(
        delete(&s, &editor, t.org, vec![eref("post", a)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        code(
            s.similarity()
                .find_similar_content(authed(similar_req(t.org, "post", b), &editor))
                .await
        ),
        Code::NotFound
    );
    s.shutdown().await.unwrap();
}

// ------------------------------------------------------- upsert semantics

#[tokio::test(flavor = "multi_thread")]
async fn upsert_replaces_and_is_all_or_none() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(5);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let v1 = random_vec(&mut r, 384);
    upsert(&s, &t.token, t.org, vec![rec("post", a, "m", &v1)])
        .await
        .unwrap();
    let (created, updated): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT created_at, updated_at FROM embeddings WHERE entity_id = $1")
            .bind(a)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();

    // Replace: same key, new vector, even a new dimension.
    let v2 = random_vec(&mut r, 768);
    upsert(&s, &t.token, t.org, vec![rec("post", a, "m", &v2)])
        .await
        .unwrap();
    assert_eq!(stored(&s, t.org, "post", a, "m").await.unwrap(), v2);
    let (created2, updated2, dim): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        i32,
    ) = sqlx::query_as(
        "SELECT created_at, updated_at, dimension FROM embeddings WHERE entity_id = $1",
    )
    .bind(a)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!((created2, dim), (created, 768));
    assert!(updated2 > updated);
    assert_eq!(count_rows(&s, t.org).await, 1);

    // One bad record anywhere in a batch: nothing of the batch is written.
    let mut nan = random_vec(&mut r, 384);
    nan[7] = f32::NAN;
    let bad_batches = vec![
        vec![
            rec("post", a, "m", &v1),
            rec("post", b, "m", &v1),
            rec("post", Uuid::new_v4(), "m", &nan),
        ],
        vec![rec("post", b, "m", &v1), rec("post", a, "", &v1)],
        vec![
            rec("post", b, "m", &v1),
            rec("post", a, "m", &random_vec(&mut r, 100)),
        ],
        vec![
            rec("post", b, "m", &v1),
            proto::EmbeddingRecord {
                entity: Some(proto::EntityRef {
                    entity_type: "post".into(),
                    entity_id: "not-a-uuid".into(),
                }),
                vector: v1.clone(),
                model: "m".into(),
            },
        ],
        vec![
            rec("post", b, "m", &v1),
            proto::EmbeddingRecord {
                entity: None,
                vector: v1.clone(),
                model: "m".into(),
            },
        ],
    ];
    for batch in bad_batches {
        let err = upsert(&s, &t.token, t.org, batch).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("embeddings["),
            "names the record: {}",
            err.message()
        );
        assert_eq!(count_rows(&s, t.org).await, 1, "nothing written");
        assert_eq!(
            stored(&s, t.org, "post", a, "m").await.unwrap(),
            v2,
            "nothing replaced"
        );
    }

    // service_role into an organization that does not exist: NOT_FOUND, nothing written.
    let err = upsert(
        &s,
        &service_token(),
        Uuid::new_v4(),
        vec![rec("post", b, "m", &v1)],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(total, 1);
    s.shutdown().await.unwrap();
}

/// Decision: several records for the same (entity, model) in one request
/// are accepted; the last one wins, as if applied in order, and every record
/// counts in `upserted`.
#[tokio::test(flavor = "multi_thread")]
async fn upsert_duplicate_keys_in_one_request_last_wins() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(6);
    let a = Uuid::new_v4();
    let (v1, v2, v3, w) = (
        random_vec(&mut r, 384),
        random_vec(&mut r, 384),
        random_vec(&mut r, 1024),
        random_vec(&mut r, 384),
    );
    let n = upsert(
        &s,
        &t.token,
        t.org,
        vec![
            rec("post", a, "m", &v1),
            rec("post", a, "other", &w),
            rec("post", a, "m", &v2),
            rec("chat_message", a, "m", &w),
            rec("post", a, "m", &v3),
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    assert_eq!(count_rows(&s, t.org).await, 3);
    assert_eq!(stored(&s, t.org, "post", a, "m").await.unwrap(), v3);
    assert_eq!(stored(&s, t.org, "post", a, "other").await.unwrap(), w);
    assert_eq!(stored(&s, t.org, "chat_message", a, "m").await.unwrap(), w);
    s.shutdown().await.unwrap();
}
