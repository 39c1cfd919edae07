//! find_similar_content and the HNSW indexes: nearest first, one organization, index per dimension.
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestDb;
use crate::{new_user, unit_vector, vector_literal};

/// One embedding to store: organization, entity type, entity id, model,
/// vector.
type EmbeddingRow = (Uuid, &'static str, Uuid, &'static str, Vec<f32>);

/// Stores each of `rows` with plain SQL.
async fn put_embeddings(pool: &PgPool, rows: &[EmbeddingRow]) {
    for (org, entity_type, id, model, v) in rows {
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             VALUES ($1, $2, $3, $4, $5, $6::vector)",
        )
        .bind(org)
        .bind(entity_type)
        .bind(id)
        .bind(model)
        .bind(v.len() as i32)
        .bind(vector_literal(v))
        .execute(pool)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn each_supported_dimension_is_searched_through_its_hnsw_index() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    // Bulk load, then build the indexes and ANALYZE, as a real table would be.
    // From about 2,000 rows of a dimension the planner prefers its index on its own.
    sqlx::query("SELECT drop_embedding_indexes()")
        .execute(&db.pool)
        .await
        .unwrap();
    for dim in [384usize, 768, 1024, 1536, 3072] {
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             SELECT $1, 'post', gen_random_uuid(), 'm', $2,
                    (SELECT array_agg(random()::real) FROM generate_series(1, $2) WHERE g > 0)::real[]::vector
             FROM generate_series(1, 2500) g",
        )
        .bind(org)
        .bind(dim as i32)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::query("SELECT create_embedding_indexes()")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE embeddings")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    // Without hints: at this size the planner picks the 384 index by itself.
    assert_plan_uses_hnsw(&mut conn, org, 384).await;
    // Every exact plan needs a Sort on the distance; only an HNSW index that
    // matches the query's cast expression and predicate can deliver rows in
    // that order. With sorting disabled, each dimension's plan must therefore
    // be its index scan (which path wins for a given organization size is a
    // cost choice: an exact scan for few rows).
    sqlx::query("SET enable_sort = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for dim in [384, 768, 1024, 1536, 3072] {
        assert_plan_uses_hnsw(&mut conn, org, dim).await;
    }
}

/// EXPLAIN of the nearest-neighbour query that find_similar_content runs per
/// source embedding, which must scan `embeddings_hnsw_<dim>`.
async fn assert_plan_uses_hnsw(conn: &mut sqlx::PgConnection, org: Uuid, dim: usize) {
    let expr: String = sqlx::query_scalar("SELECT embedding_index_expression($1)")
        .bind(dim as i32)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let cast = expr.split("::").nth(1).unwrap().to_string();
    let q = format!(
        "EXPLAIN SELECT e.entity_id, 1 - ({expr} <=> '{v}'::{cast}) FROM embeddings e
         WHERE e.organization_id = '{org}' AND e.dimension = {dim} AND e.model = 'm'
         ORDER BY {expr} <=> '{v}'::{cast} LIMIT 10",
        v = vector_literal(&unit_vector(dim, 3, 0.1))
    );
    let plan: Vec<String> = sqlx::query_scalar(&q).fetch_all(&mut *conn).await.unwrap();
    let plan: Vec<&str> = plan
        .iter()
        .map(|l| l.split("'[").next().unwrap_or(l))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains(&format!("Index Scan using embeddings_hnsw_{dim}")),
        "dimension {dim}:\n{plan}"
    );
}

#[tokio::test]
async fn find_similar_content_leaves_out_the_source_and_other_organizations() {
    let db = TestDb::migrated().await;
    let (_, org_a) = new_user(&db.pool).await;
    let (_, org_b) = new_user(&db.pool).await;
    let source = Uuid::new_v4();
    let near = Uuid::new_v4();
    let far = Uuid::new_v4();
    let other_model = Uuid::new_v4();
    let chat = Uuid::new_v4();
    let in_b = Uuid::new_v4();
    put_embeddings(
        &db.pool,
        &[
            (org_a, "post", source, "m1", unit_vector(384, 0, 0.0)),
            (org_a, "post", near, "m1", unit_vector(384, 0, 0.02)),
            (org_a, "post", far, "m1", unit_vector(384, 5, 0.0)),
            // Same direction, other model: never compared with m1.
            (org_a, "post", other_model, "m2", unit_vector(384, 0, 0.0)),
            (org_a, "chat_message", chat, "m1", unit_vector(384, 0, 0.0)),
            // Identical vector in organization B: must never show up.
            (org_b, "post", in_b, "m1", unit_vector(384, 0, 0.0)),
        ],
    )
    .await;

    let rows: Vec<(Uuid, String, Uuid, f64)> =
        sqlx::query_as("SELECT * FROM find_similar_content('post', $1, -1, 10)")
            .bind(source)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.2).collect();
    assert_eq!(
        ids,
        vec![near, far],
        "most similar first, no source, no other org/model/type"
    );
    assert!(rows.iter().all(|r| r.0 == org_a));
    assert!(rows[0].3 > 0.9 && rows[0].3 <= 1.0 + 1e-6, "{rows:?}");

    // The threshold leaves out the far item; max_results caps.
    let above: Vec<Uuid> =
        sqlx::query_scalar("SELECT entity_id FROM find_similar_content('post', $1, 0.8, 10)")
            .bind(source)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(above, vec![near]);
    let one: i64 =
        sqlx::query_scalar("SELECT count(*) FROM find_similar_content('post', $1, -1, 1)")
            .bind(source)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(one, 1);
    // Other target types on request.
    let chats: Vec<Uuid> = sqlx::query_scalar(
        "SELECT entity_id FROM find_similar_content('post', $1, 0.5, 10, ARRAY['chat_message'])",
    )
    .bind(source)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(chats, vec![chat]);
    // An item with no embedding: no rows.
    let none: i64 =
        sqlx::query_scalar("SELECT count(*) FROM find_similar_content('post', $1, -1, 10)")
            .bind(Uuid::new_v4())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(none, 0);
}

#[tokio::test]
async fn find_similar_content_leaves_the_callers_search_settings_alone() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    let source = Uuid::new_v4();
    put_embeddings(
        &db.pool,
        &[
            (org, "post", source, "m", unit_vector(384, 0, 0.0)),
            (org, "post", Uuid::new_v4(), "m", unit_vector(384, 1, 0.0)),
        ],
    )
    .await;
    let mut tx = db.pool.begin().await.unwrap();
    // Inside the function: ef_search follows max_results; outside it is restored.
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM find_similar_content('post', $1, -1, 700)")
            .bind(source)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(n, 1);
    let (ef, iterative): (String, String) = sqlx::query_as(
        "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((ef.as_str(), iterative.as_str()), ("40", "off"));
    tx.rollback().await.unwrap();
}
