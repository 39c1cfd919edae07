//! Test harness: every test gets its own throwaway PostgreSQL cluster
//! (initdb into a temporary directory, unix socket only), torn down at the end.
#![allow(dead_code)]

use affinity::db::cluster::PgCluster;
use affinity::db::migrate::MIGRATOR;
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
        MIGRATOR.run(&db.pool).await.expect("running migrations");
        db
    }
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
