//! The service behind a real PgBouncer in transaction mode: the pooler
//! before a test's database, and the settings that put a server behind it.
#![allow(dead_code)]

use affinity::config::Config;
use affinity_testkit::pgbouncer::PgBouncer;

use super::TestDb;

/// Fewer server connections than the service's pool has clients: calls
/// share server connections, as behind a real deployment's pooler.
pub const SERVER_CONNECTIONS: u32 = 3;

/// A fresh database, PgBouncer before it.
pub async fn pooled_db() -> (TestDb, PgBouncer) {
    let mut db = TestDb::empty().await;
    let bouncer = PgBouncer::start(db.cluster().socket_dir(), SERVER_CONNECTIONS)
        .await
        .expect("starting pgbouncer");
    (db, bouncer)
}

/// DATABASE_URL through `bouncer`, the direct URL beside it.
pub fn through(bouncer: &PgBouncer, db: &TestDb) -> impl FnOnce(&mut Config) {
    let (pooled, direct) = (bouncer.url("affinity"), db.url.clone());
    move |c| {
        c.database_url = Some(pooled);
        c.direct_database_url = Some(direct);
    }
}
