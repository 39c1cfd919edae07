//! Searches use each dimension's HNSW index, are not starved by filters and fill large limits.

use std::collections::HashSet;

use crate::common::server::TestServer;
use crate::common::{cosine, random_vectors_1536, TestDb};
use crate::support::{assert_sorted, ids, random_vec, rec, rng, search, search_req, upsert};
use affinity::store::similarity as store;
use uuid::Uuid;

// ------------------------------------------------- index use and quality

/// The search SQL orders by each dimension's index expression, so every
/// supported dimension's HNSW index is usable.
#[tokio::test(flavor = "multi_thread")]
async fn search_sql_uses_the_hnsw_index_of_each_dimension() {
    let db = TestDb::migrated().await;
    let dims: Vec<i32> =
        sqlx::query_scalar("SELECT dimension FROM vector_index_dimensions ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(dims.contains(&3072) && dims.contains(&384));
    for dim in dims {
        let cast = store::index_cast(&db.pool, dim).await.unwrap().unwrap();
        let expected: String = sqlx::query_scalar("SELECT embedding_index_expression($1)")
            .bind(dim)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(cast.expression(), expected);
        for (by_model, by_type) in [(false, false), (true, false), (false, true), (true, true)] {
            let sql = store::search_sql(cast, by_model, by_type, None);
            let mut tx = db.pool.begin().await.unwrap();
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("SET LOCAL enable_sort = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            let explain = format!("EXPLAIN {sql}");
            let mut q = sqlx::query_scalar::<_, String>(&explain)
                .bind(Uuid::new_v4())
                .bind(dim)
                .bind(pgvector::Vector::from(vec![0.5f32; dim as usize]))
                .bind(10i64);
            if by_model {
                q = q.bind("m");
            }
            if by_type {
                q = q.bind(vec!["post".to_string()]);
            }
            let plan = q.fetch_all(&mut *tx).await.unwrap().join("\n");
            assert!(
                plan.contains(&format!("embeddings_hnsw_{dim}")),
                "dimension {dim}: {plan}"
            );
        }
    }
    assert_eq!(store::index_cast(&db.pool, 100).await.unwrap(), None);
}

/// 1536-dimensional vectors (6 kB) stay in their rows, so the planner sees
/// what an exact scan of a large organization costs and searches it through
/// its HNSW index (here a halfvec one) with the service's planning settings;
/// out of line (the default storage before migration 14) the same query
/// planned an exact scan of every row.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_organizations_1536_dimensional_search_is_planned_on_the_hnsw_index() {
    let db = TestDb::migrated().await;
    let storage: String = sqlx::query_scalar(
        "SELECT attstorage::text FROM pg_attribute
         WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        storage, "m",
        "embeddings.embedding is stored MAIN (in line)"
    );
    // Half the rows in the organization searched, as in the benchmark.
    let (large, other) = (Uuid::new_v4(), Uuid::new_v4());
    // With a halfvec index (its cast makes an exact scan dearer still).
    sqlx::raw_sql(
        "SELECT drop_embedding_indexes();
         UPDATE vector_index_dimensions SET index_type = 'halfvec' WHERE dimension = 1536",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    for org in [large, other] {
        random_vectors_1536(&mut conn, org, 10_000).await;
    }
    drop(conn);
    sqlx::raw_sql("SELECT create_embedding_indexes(); ANALYZE embeddings")
        .execute(&db.pool)
        .await
        .unwrap();
    let cast = store::index_cast(&db.pool, 1536).await.unwrap().unwrap();
    let sql = store::search_sql(cast, true, false, None);
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('hnsw.iterative_scan', 'strict_order', true),
                set_config('hnsw.ef_search', $1, true)",
    )
    .bind(affinity::store::PLANNING_EF_SEARCH.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    let plan = sqlx::query_scalar::<_, String>(&format!("EXPLAIN {sql}"))
        .bind(large)
        .bind(1536)
        .bind(pgvector::Vector::from(vec![0.01f32; 1536]))
        .bind(10i64)
        .bind("m")
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("embeddings_hnsw_1536"), "{plan}");
}

/// Filters on organization and model do not starve the HNSW scan, and large
/// max_results are filled (iterative scan, ef_search >= max_results): with
/// the plans PostgreSQL picks, and with the HNSW index forced on every query
/// (on a data set this small the planner often prefers an exact scan).
#[tokio::test(flavor = "multi_thread")]
async fn search_is_not_starved_by_filters_and_fills_large_limits() {
    let s = TestServer::start().await;
    starvation_checks(&s).await;
    s.shutdown().await.unwrap();

    let db = TestDb::migrated().await;
    sqlx::query("ALTER DATABASE affinity SET enable_seqscan = off")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ALTER DATABASE affinity SET enable_sort = off")
        .execute(&db.pool)
        .await
        .unwrap();
    let s = TestServer::start_on(db).await;
    starvation_checks(&s).await;
    s.shutdown().await.unwrap();
}

async fn starvation_checks(s: &TestServer) {
    let ta = s.new_tenant().await;
    let tb = s.new_tenant().await;
    let mut r = rng(12);
    let mut big = Vec::new();
    for _ in 0..1200 {
        big.push(rec("post", Uuid::new_v4(), "big", &random_vec(&mut r, 384)));
    }
    upsert(s, &tb.token, tb.org, big.clone()).await.unwrap();
    for chunk in big.chunks(600) {
        let again: Vec<_> = chunk
            .iter()
            .map(|e| rec("post", Uuid::new_v4(), "big", &e.vector))
            .collect();
        upsert(s, &ta.token, ta.org, again).await.unwrap();
    }
    let small: Vec<(Uuid, Vec<f32>)> = (0..25)
        .map(|_| (Uuid::new_v4(), random_vec(&mut r, 384)))
        .collect();
    upsert(
        s,
        &ta.token,
        ta.org,
        small
            .iter()
            .map(|(id, v)| rec("note", *id, "small", v))
            .collect(),
    )
    .await
    .unwrap();
    sqlx::query("ANALYZE embeddings")
        .execute(&s.db.pool)
        .await
        .unwrap();

    let q = random_vec(&mut r, 384);
    // A rare model in a big organization: all 25, in exact order.
    let mut req = search_req(ta.org, &q);
    req.model = "small".into();
    req.max_results = 25;
    let got = search(s, &ta.token, req).await.unwrap();
    let mut exact: Vec<(f64, Uuid)> = small.iter().map(|(id, v)| (cosine(&q, v), *id)).collect();
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(
        got.iter().map(|i| i.1).collect::<Vec<_>>(),
        exact.iter().map(|e| e.1).collect::<Vec<_>>()
    );
    // A rare type, any model.
    let mut req = search_req(ta.org, &q);
    req.entity_types = vec!["note".into()];
    req.max_results = 1000;
    assert_eq!(search(s, &ta.token, req).await.unwrap().len(), 25);
    // 1000 results of 1225.
    let mut req = search_req(ta.org, &q);
    req.max_results = 1000;
    let got = search(s, &ta.token, req).await.unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(ids(&got).len(), 1000);
    assert_sorted(&got);
    // Recall of the top 10 against an exact scan, over a few queries.
    let all_a: Vec<(Uuid, Vec<f32>)> = {
        let rows: Vec<(Uuid, pgvector::Vector)> = sqlx::query_as(
            "SELECT entity_id, embedding FROM embeddings WHERE organization_id = $1 AND model = 'big'",
        )
        .bind(ta.org)
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
        rows.into_iter().map(|(id, v)| (id, v.to_vec())).collect()
    };
    let mut found = 0;
    for _ in 0..10 {
        let q = random_vec(&mut r, 384);
        let mut exact: Vec<(f64, Uuid)> =
            all_a.iter().map(|(id, v)| (cosine(&q, v), *id)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: HashSet<Uuid> = exact.iter().take(10).map(|e| e.1).collect();
        let mut req = search_req(ta.org, &q);
        req.model = "big".into();
        let got = search(s, &ta.token, req).await.unwrap();
        found += ids(&got).intersection(&want).count();
    }
    assert!(found >= 90, "recall@10 {found}/100");
}
