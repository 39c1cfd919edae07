//! Test harness: every test gets its own throwaway PostgreSQL cluster
//! (initdb into a temporary directory, unix socket only), torn down at the end.
#![allow(dead_code)]

pub mod server;

use affinity::db::cluster::PgCluster;
use affinity::db::migrate;
use affinity::legacy::{self, LegacyConfig, LegacyStats};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;

pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    // Dropped last: stops the server and removes its directory.
    _cluster: PgCluster,
}

impl TestDb {
    /// A fresh cluster with an empty database `affinity`.
    pub async fn empty() -> TestDb {
        let cluster = PgCluster::start_temporary().expect("starting a throwaway PostgreSQL");
        let admin = connect(&cluster.url("postgres")).await;
        sqlx::query("CREATE DATABASE affinity")
            .execute(&admin)
            .await
            .expect("creating database");
        admin.close().await;
        let url = cluster.url("affinity");
        let pool = connect(&url).await;
        TestDb {
            pool,
            url,
            _cluster: cluster,
        }
    }

    /// A fresh database with every migration applied.
    pub async fn migrated() -> TestDb {
        let db = Self::empty().await;
        db.migrate().await;
        db
    }

    /// A fresh database in the legacy state, filled by the seeded generator
    /// (not migrated yet).
    pub async fn legacy(cfg: &LegacyConfig) -> (TestDb, LegacyStats) {
        let db = Self::empty().await;
        let stats = legacy::create_and_fill(&db.pool, cfg)
            .await
            .expect("filling the legacy database");
        (db, stats)
    }

    pub async fn migrate(&self) {
        migrate::run(&self.pool).await.expect("running migrations");
    }
}

/// Row count and an order-independent checksum of every row's text form,
/// computed here, independently of the migrations' own snapshot.
pub async fn table_fingerprint(pool: &PgPool, table: &str) -> (i64, String) {
    sqlx::query_as(&format!(
        "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text FROM {table} t"
    ))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("fingerprint of {table}: {e}"))
}

pub async fn connect(url: &str) -> PgPool {
    let opts = PgConnectOptions::from_str(url)
        .expect("url")
        .log_statements(tracing::log::LevelFilter::Off);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .expect("connecting to the test cluster")
}
