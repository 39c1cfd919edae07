//! Organizations never see, change or delete each other's embeddings.

use std::collections::HashSet;

use crate::common::server::{authed, code, service_token, TestServer};
use crate::support::{
    count_rows, delete, eref, ids, random_vec, rec, rng, search, search_req, similar, similar_req,
    stored, upsert,
};
use tonic::Code;
use uuid::Uuid;

// ------------------------------------------------------ cross-organization

#[tokio::test(flavor = "multi_thread")]
async fn organizations_never_see_each_other() {
    let s = TestServer::start().await;
    let ta = s.new_tenant().await;
    let tb = s.new_tenant().await;
    let (a, b) = (ta.org, tb.org);
    let svc = service_token();
    let mut r = rng(10);

    // Identical vectors in both organizations; some entity ids in both too.
    let shared: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let only_a: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let only_b: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let vecs: Vec<Vec<f32>> = (0..10).map(|_| random_vec(&mut r, 384)).collect();
    let in_a: Vec<Uuid> = shared.iter().chain(&only_a).copied().collect();
    let in_b: Vec<Uuid> = shared.iter().chain(&only_b).copied().collect();
    let batch = |ids: &[Uuid]| -> Vec<_> {
        ids.iter()
            .zip(&vecs)
            .map(|(id, v)| rec("post", *id, "m", v))
            .collect()
    };
    upsert(&s, &ta.token, a, batch(&in_a)).await.unwrap();
    upsert(&s, &tb.token, b, batch(&in_b)).await.unwrap();
    let set_a: HashSet<Uuid> = in_a.iter().copied().collect();

    // A user of A naming organization B: PERMISSION_DENIED on all four.
    let mut c = s.similarity();
    assert_eq!(
        code(
            c.find_similar_content(authed(similar_req(b, "post", only_b[0]), &ta.token))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            c.search_by_vector(authed(search_req(b, &vecs[0]), &ta.token))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        upsert(&s, &ta.token, b, batch(&in_a))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        delete(&s, &ta.token, b, vec![eref("post", only_b[0])])
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // A user of A naming A but B's entity: NOT_FOUND, nothing of B. Also for service_role.
    for tok in [&ta.token, &svc] {
        for id in &only_b {
            let err = c
                .find_similar_content(authed(similar_req(a, "post", *id), tok))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::NotFound);
            assert!(!err.message().contains(&b.to_string()));
        }
    }
    // An id in both: only A's neighbours, computed from A's vector.
    for tok in [&ta.token, &svc] {
        for src in &shared {
            let mut q = similar_req(a, "post", *src);
            q.max_results = 1000;
            let got = similar(&s, tok, q).await.unwrap();
            assert_eq!(got.len(), 9);
            assert!(ids(&got).is_subset(&set_a));
            assert!(!ids(&got).contains(src));
        }
    }

    // Search in A, even by service_role with B's identical vectors: only A's items.
    for tok in [&ta.token, &svc] {
        for (i, v) in vecs.iter().enumerate() {
            let mut q = search_req(a, v);
            q.max_results = 1000;
            let got = search(&s, tok, q).await.unwrap();
            assert_eq!(ids(&got), set_a);
            assert_eq!(got.len(), 10, "each item once");
            assert_eq!(got[0].1, in_a[i]);
            let mut q = search_req(a, v);
            q.max_results = 1;
            q.similarity_threshold = 0.999;
            assert_eq!(search(&s, tok, q).await.unwrap()[0].1, in_a[i]);
        }
    }

    // Upsert in A with B's ids: creates A's rows, leaves B's alone.
    let before_b = sqlx::query_scalar::<_, String>(
        "SELECT string_agg(embedding::text || updated_at::text, ',' ORDER BY entity_id) FROM embeddings WHERE organization_id = $1",
    )
    .bind(b)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    let fresh = random_vec(&mut r, 384);
    upsert(
        &s,
        &ta.token,
        a,
        vec![
            rec("post", only_b[0], "m", &fresh),
            rec("post", shared[0], "m", &fresh),
        ],
    )
    .await
    .unwrap();
    assert_eq!(stored(&s, a, "post", only_b[0], "m").await.unwrap(), fresh);
    assert_eq!(stored(&s, a, "post", shared[0], "m").await.unwrap(), fresh);
    assert_eq!(
        stored(&s, b, "post", shared[0], "m").await.unwrap(),
        vecs[0]
    );

    // Delete in A, by A's owner and by service_role: B keeps its rows.
    let n = delete(
        &s,
        &ta.token,
        a,
        shared.iter().map(|id| eref("post", *id)).collect(),
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    let n = delete(
        &s,
        &svc,
        a,
        only_b.iter().map(|id| eref("post", *id)).collect(),
    )
    .await
    .unwrap();
    assert_eq!(n, 1, "only the row A made for B's id");
    assert_eq!(count_rows(&s, a).await, 5);
    assert_eq!(count_rows(&s, b).await, 10);
    let after_b = sqlx::query_scalar::<_, String>(
        "SELECT string_agg(embedding::text || updated_at::text, ',' ORDER BY entity_id) FROM embeddings WHERE organization_id = $1",
    )
    .bind(b)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(before_b, after_b, "B untouched by anything done in A");
    // B's items are still found in B, and A's deleted sources are gone from A only.
    let got = similar(&s, &tb.token, similar_req(b, "post", shared[0]))
        .await
        .unwrap();
    assert_eq!(got.len(), 9);
    assert_eq!(
        code(
            c.find_similar_content(authed(similar_req(a, "post", shared[0]), &ta.token))
                .await
        ),
        Code::NotFound
    );
    s.shutdown().await.unwrap();
}
