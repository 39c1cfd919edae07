//! Test harness: every test gets its own throwaway PostgreSQL cluster
//! (initdb into a temporary directory, unix socket only), torn down at the end.
#![allow(dead_code)]

pub mod process;
pub mod server;

use affinity::db::cluster::{ClusterOptions, PgCluster};
use affinity::db::migrate::MIGRATOR;
use affinity::legacy::{self, LegacyConfig, LegacyStats};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;

pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    // Dropped last: stops the server and removes its directory.
    cluster: PgCluster,
}

impl TestDb {
    /// A fresh cluster with an empty database `affinity`.
    pub async fn empty() -> TestDb {
        let cluster = PgCluster::start_temporary().expect("starting a throwaway PostgreSQL");
        Self::create_in(cluster).await
    }

    /// A fresh, empty database whose server the test may stop and start
    /// again ([`TestDb::cluster`]), and whose commits survive a crash of the
    /// server: `synchronous_commit` on (the throwaway default is off, which
    /// loses the last commits when PostgreSQL is killed). fsync stays off:
    /// the operating system does not crash in these tests.
    pub async fn empty_durable() -> TestDb {
        let cluster = PgCluster::start_temporary_with(&ClusterOptions {
            ephemeral: true,
            // Given after the ephemeral settings, so it wins.
            settings: vec![("synchronous_commit".into(), "on".into())],
        })
        .expect("starting a throwaway PostgreSQL");
        Self::create_in(cluster).await
    }

    async fn create_in(cluster: PgCluster) -> TestDb {
        let admin = connect(&cluster.url("postgres")).await;
        sqlx::query("CREATE DATABASE affinity")
            .execute(&admin)
            .await
            .expect("creating database");
        admin.close().await;
        let url = cluster.url("affinity");
        let pool = connect(&url).await;
        TestDb { pool, url, cluster }
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

    /// The cluster, to stop and start its server.
    pub fn cluster(&mut self) -> &mut PgCluster {
        &mut self.cluster
    }

    pub async fn migrate(&self) {
        MIGRATOR.run(&self.pool).await.expect("running migrations");
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

/// `GET /metrics` of a metrics endpoint over a plain TCP connection: the body.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
