//! The testkit's Citus cluster is real: a coordinator and two workers that
//! spread a distributed table's shards over both workers, with pgvector on
//! every node.

use affinity_testkit::citus::{available_or_say_why, CitusCluster};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_and_two_workers_spread_a_distributed_table_with_vectors_over_both_workers() {
    if !available_or_say_why() {
        return;
    }
    let citus = CitusCluster::start(2, "affinity")
        .await
        .expect("a Citus cluster");
    let mut c = PgConnection::connect(&citus.url())
        .await
        .expect("the coordinator");
    for sql in [
        "CREATE EXTENSION vector",
        "CREATE TABLE items (org uuid, id uuid, v vector(3), PRIMARY KEY (org, id))",
        "SELECT create_distributed_table('items', 'org')",
    ] {
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let orgs: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    for (i, org) in orgs.iter().enumerate() {
        sqlx::query("INSERT INTO items VALUES ($1, $2, $3::vector)")
            .bind(org)
            .bind(Uuid::new_v4())
            .bind(format!("[{i},1,1]"))
            .execute(&mut c)
            .await
            .expect("inserting a row");
    }
    let workers: Vec<(String, i64)> = sqlx::query_as(
        "SELECT nodename, count(*) FROM citus_shards WHERE table_name = 'items'::regclass
         GROUP BY nodename ORDER BY nodename",
    )
    .fetch_all(&mut c)
    .await
    .expect("citus_shards");
    assert_eq!(workers.len(), 2, "shards on both workers: {workers:?}");
    // The tenants' rows are on both.
    let holding: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT p.nodename) FROM unnest($1::uuid[]) AS o(org)
         JOIN pg_dist_shard_placement p
           ON p.shardid = get_shard_id_for_distribution_column('items', o.org)",
    )
    .bind(&orgs)
    .fetch_one(&mut c)
    .await
    .expect("the tenants' placements");
    assert_eq!(holding, 2);
    // A tenant's nearest neighbour: answered by the worker holding it.
    let nearest: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT id FROM items WHERE org = $1
         ORDER BY v <-> '[7,1,1]' LIMIT 1) nearest",
    )
    .bind(orgs[7])
    .fetch_one(&mut c)
    .await
    .expect("a vector query through the coordinator");
    assert_eq!(nearest, 1);
}
