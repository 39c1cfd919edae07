//! Test harness: every test gets its own throwaway PostgreSQL cluster
//! (initdb into a temporary directory, unix socket only), torn down at the end.
#![allow(dead_code)]

pub mod changes;
pub mod citus;
pub mod examples;
pub mod load;
pub mod pooler;
pub mod process;
pub mod rpcs;
pub mod search;
pub mod server;
pub mod text;
pub mod wait;

use affinity::db::cluster::ClusterOptions;
use affinity::db::migrate;
use affinity_testkit::cluster::TempCluster;
use affinity_testkit::legacy::{self, LegacyConfig, LegacyStats};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;

pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    // Dropped last: stops the server and removes its directory.
    cluster: TempCluster,
    /// A Citus coordinator's workers (`cluster` is the coordinator).
    _workers: Vec<TempCluster>,
}

impl TestDb {
    /// A fresh cluster with an empty database `affinity`.
    pub async fn empty() -> TestDb {
        let cluster = TempCluster::start().expect("starting a throwaway PostgreSQL");
        Self::create_in(cluster).await
    }

    /// A fresh, empty database whose server the test may stop and start
    /// again ([`TestDb::cluster`]), and whose commits survive a crash of the
    /// server: `synchronous_commit` on (the throwaway default is off, which
    /// loses the last commits when PostgreSQL is killed). fsync stays off:
    /// the operating system does not crash in these tests.
    pub async fn empty_durable() -> TestDb {
        let cluster = TempCluster::start_with(&ClusterOptions {
            ephemeral: true,
            // Given after the ephemeral settings, so it wins.
            settings: vec![("synchronous_commit".into(), "on".into())],
        })
        .expect("starting a throwaway PostgreSQL");
        Self::create_in(cluster).await
    }

    async fn create_in(cluster: TempCluster) -> TestDb {
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
            cluster,
            _workers: Vec::new(),
        }
    }

    /// A fresh database `affinity` on a new Citus cluster (a coordinator
    /// and two workers, Citus created, the workers added), not migrated;
    /// None, said in one line, where Citus cannot run (see
    /// [`affinity_testkit::citus::available_or_say_why`]).
    pub async fn on_citus() -> Option<TestDb> {
        if !affinity_testkit::citus::available_or_say_why() {
            return None;
        }
        let citus = affinity_testkit::citus::CitusCluster::start(2, "affinity")
            .await
            .expect("a Citus cluster");
        let url = citus.url();
        let (cluster, workers) = citus.into_nodes();
        let pool = connect(&url).await;
        Some(TestDb {
            pool,
            url,
            cluster,
            _workers: workers,
        })
    }

    /// A fresh database for a test's server: empty (the server migrates
    /// it), or, where `AFFINITY_TESTS_ON_CITUS=1` (scripts/test.sh's Citus
    /// pass), migrated and distributed on a new Citus cluster.
    pub async fn for_server() -> TestDb {
        if std::env::var("AFFINITY_TESTS_ON_CITUS").as_deref() != Ok("1") {
            return Self::empty().await;
        }
        let db = Self::on_citus()
            .await
            .expect("AFFINITY_TESTS_ON_CITUS=1 where Citus cannot run");
        db.migrate().await;
        affinity::db::citus::distribute(&db.pool)
            .await
            .expect("distributing the schema");
        db
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

    /// The (coordinator's) data directory, where its server.log is.
    pub fn data_dir(&self) -> &std::path::Path {
        self.cluster.data_dir()
    }

    /// The cluster, to stop and start its server.
    pub fn cluster(&mut self) -> &mut TempCluster {
        &mut self.cluster
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

/// The value of one series (name and labels exactly as exposed) in a
/// [`scrape`], or None when absent.
pub fn sample(scraped: &str, series: &str) -> Option<f64> {
    scraped
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// [`table_fingerprint`] of every table (partitions included) in every
/// schema but PostgreSQL's own, by qualified name.
pub async fn all_table_fingerprints(
    pool: &PgPool,
) -> std::collections::BTreeMap<String, (i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("listing tables");
    let mut out = std::collections::BTreeMap::new();
    for t in tables {
        let fp = table_fingerprint(pool, &t).await;
        out.insert(t, fp);
    }
    out
}

/// Every object of the database outside PostgreSQL's own schemas, one line
/// each: schemas, relations (tables, partitions, views, indexes, sequences),
/// columns, constraints, triggers, functions and types.
pub async fn catalog(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "WITH ns AS (
             SELECT oid, nspname FROM pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema')
               AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%')
         SELECT format('schema %s', nspname) FROM ns
         UNION ALL
         SELECT format('relation %s.%s kind %s', ns.nspname, c.relname, c.relkind)
         FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
         UNION ALL
         SELECT format('column %s.%s.%s %s not null %s default %s', ns.nspname, c.relname, a.attname,
                       format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       pg_get_expr(d.adbin, d.adrelid))
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped
         UNION ALL
         SELECT format('constraint %s.%s %s', ns.nspname, con.conname, pg_get_constraintdef(con.oid))
         FROM pg_constraint con JOIN ns ON ns.oid = con.connamespace
         UNION ALL
         SELECT format('trigger %s on %s', t.tgname, t.tgrelid::regclass)
         FROM pg_trigger t WHERE NOT t.tgisinternal
         UNION ALL
         SELECT format('function %s.%s(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
         FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
         UNION ALL
         SELECT format('type %s.%s', ns.nspname, t.typname)
         FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("listing the catalog")
}

/// Runs the `affinity` binary against `db` (DATABASE_URL, a JWT secret, an
/// ephemeral port) and waits at most `limit` for it to exit.
pub async fn run_binary(db: &TestDb, args: &[&str], limit: std::time::Duration) -> BinaryRun {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_affinity"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env(
            "AFFINITY_JWT_SECRET",
            "a-secret-for-the-migration-tests-0123456789",
        )
        .env("AFFINITY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("AFFINITY_METRICS_ADDR")
        .env_remove("AFFINITY_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the affinity binary");
    // Drained while it runs, so that a full pipe cannot stall it.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for affinity") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`affinity {}` still running after {limit:?}; stderr:\n{}",
                args.join(" "),
                err.join().unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    BinaryRun {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

#[derive(Debug)]
pub struct BinaryRun {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The cosine similarity of two vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Runs `statement`, an `ALTER TABLE … ENABLE|DISABLE TRIGGER`, on one
/// connection of `pool`, on Citus too: Citus alters a distributed table's
/// triggers only with `citus.enable_unsafe_triggers` on (on plain
/// PostgreSQL the setting is an unused placeholder).
pub async fn alter_trigger(pool: &PgPool, statement: &str) {
    let mut conn = pool.acquire().await.expect("a connection");
    sqlx::raw_sql("SET citus.enable_unsafe_triggers = on")
        .execute(&mut *conn)
        .await
        .expect("allowing trigger changes");
    sqlx::raw_sql(statement)
        .execute(&mut *conn)
        .await
        .expect(statement);
    sqlx::raw_sql("RESET citus.enable_unsafe_triggers")
        .execute(&mut *conn)
        .await
        .expect("resetting the setting");
}

/// An organization `org` (its row written directly) holding `rows` posts'
/// random 1536-dimensional vectors, drawn with `random()` on `conn` (seed
/// it there to draw the same ones again).
pub async fn random_vectors_1536(conn: &mut sqlx::PgConnection, org: uuid::Uuid, rows: i64) {
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'o', $1::text)")
        .bind(org)
        .execute(&mut *conn)
        .await
        .expect("an organization");
    sqlx::query(
        "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
         SELECT $1, 'post', gen_random_uuid(), 'm', 1536,
                (SELECT array_agg(random() - 0.5)::vector FROM generate_series(1, 1536) WHERE g > 0)
         FROM generate_series(1, $2) g",
    )
    .bind(org)
    .bind(rows)
    .execute(&mut *conn)
    .await
    .expect("random vectors");
}
