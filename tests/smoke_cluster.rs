mod common;

#[tokio::test]
async fn throwaway_cluster_serves_pgvector() {
    let db = common::TestDb::empty().await;
    sqlx::query("CREATE EXTENSION vector")
        .execute(&db.pool)
        .await
        .unwrap();
    let v: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(v.starts_with("0.8"), "{v}");
}
