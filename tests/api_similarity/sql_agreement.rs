//! The FindSimilarContent RPC answers exactly what the schema's `find_similar_content` does.

use std::collections::HashSet;

use crate::common::server::TestServer;
use crate::support::{
    assert_sorted, ids, near, random_vec, rec, rng, similar, similar_req, upsert, Items,
};
use uuid::Uuid;

// --------------------------------------------------- agreement with the SQL

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_rpc_and_sql_function_agree() {
    let s = TestServer::start().await;
    let ta = s.new_tenant().await;
    let tb = s.new_tenant().await;
    let mut r = rng(11);
    let types = ["post", "chat_message", "ai_context"];

    // A few hundred vectors in clusters (so similarities spread over [-1, 1]),
    // two models of two dimensions; B gets copies of some with the same ids.
    let centers: Vec<Vec<f32>> = (0..6).map(|_| random_vec(&mut r, 384)).collect();
    let centers768: Vec<Vec<f32>> = (0..3).map(|_| random_vec(&mut r, 768)).collect();
    let mut batch = Vec::new();
    let mut sources = Vec::new();
    for i in 0..300 {
        let id = Uuid::new_v4();
        let et = types[i % 3];
        let c = &centers[i % centers.len()];
        let sign = if i % 7 == 0 { -1.0 } else { 1.0 };
        let v: Vec<f32> = near(&mut r, c, 0.2 + 0.6 * (i % 5) as f32 / 4.0)
            .into_iter()
            .map(|x| x * sign)
            .collect();
        batch.push(rec(et, id, "small", &v));
        if i % 3 == 0 {
            let w = near(&mut r, &centers768[i % 3], 0.5);
            batch.push(rec(et, id, "large", &w));
        }
        if i % 10 == 0 {
            sources.push((et, id));
        }
    }
    assert_eq!(
        upsert(&s, &ta.token, ta.org, batch.clone()).await.unwrap() as usize,
        batch.len()
    );
    let b_batch: Vec<_> = batch.iter().step_by(2).cloned().collect();
    upsert(&s, &tb.token, tb.org, b_batch).await.unwrap();
    let set_b: HashSet<Uuid> = {
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT entity_id FROM embeddings WHERE organization_id = $1 EXCEPT
             SELECT entity_id FROM embeddings WHERE organization_id = $2",
        )
        .bind(tb.org)
        .bind(ta.org)
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
        rows.into_iter().collect()
    };
    assert!(
        set_b.is_empty(),
        "B's ids are all A's too, so only the function keeps them apart"
    );

    let params: [(f32, u32, &[&str]); 7] = [
        (-1.0, 1000, &[]),
        (0.0, 0, &[]),
        (0.5, 25, &[]),
        (0.9, 1000, &[]),
        (-1.0, 1, &["post"]),
        (0.2, 100, &["post", "chat_message", "ai_context"]),
        (-0.5, 50, &["ai_context", "note"]),
    ];
    let mut compared = 0;
    let mut nonempty = 0;
    for (et, id) in &sources {
        for (th, k, targets) in params {
            let mut q = similar_req(ta.org, et, *id);
            q.similarity_threshold = th;
            q.max_results = k;
            q.target_entity_types = targets.iter().map(|t| t.to_string()).collect();
            let rpc = similar(&s, &ta.token, q).await.unwrap();

            let sql: Vec<(Uuid, String, Uuid, f64)> =
                sqlx::query_as("SELECT * FROM find_similar_content($1, $2, $3, $4, $5, $6)")
                    .bind(*et)
                    .bind(*id)
                    .bind(f64::from(th))
                    .bind(if k == 0 { 10 } else { k as i32 })
                    .bind(if targets.is_empty() {
                        None
                    } else {
                        Some(targets.iter().map(|t| t.to_string()).collect::<Vec<_>>())
                    })
                    .bind(ta.org)
                    .fetch_all(&s.db.pool)
                    .await
                    .unwrap();
            assert!(sql.iter().all(|row| row.0 == ta.org));
            let sql: Items = sql
                .into_iter()
                .map(|(_, t, i, sim)| (t, i, sim as f32))
                .collect();
            assert_eq!(
                rpc, sql,
                "source {et} {id}, threshold {th}, max {k}, targets {targets:?}"
            );
            assert!(!ids(&rpc).contains(id), "never the source");
            assert!(rpc.iter().all(|i| i.2 >= th));
            assert_sorted(&rpc);
            compared += 1;
            nonempty += usize::from(!rpc.is_empty());
        }
    }
    assert_eq!(compared, 30 * params.len());
    assert!(
        nonempty > compared / 2,
        "the comparison is not of empty lists: {nonempty}/{compared}"
    );
    s.shutdown().await.unwrap();
}
