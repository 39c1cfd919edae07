//! CPU time this process spends per `store::metrics::aggregated` call (the
//! database's work is in its own processes): the service's share of a
//! GetMetricsAggregated call below the gRPC layer, measured in isolation.
//!
//! Against the benchmark's small data set (`cargo bench --bench service --
//! --size small --data-dir DIR` loads it; start its cluster with pg_ctl):
//!
//!     cargo run --release --example metrics_decode_cpu -- \
//!         "postgres://postgres@localhost/bench?host=DIR/pg"
//!
//! It asks for daily buckets over the 90 days before the newest rollup, in
//! Europe/Berlin, of the post with the most daily rollups, 5 x 3,000 times,
//! and prints user and system CPU per call.

use affinity::store::metrics::{aggregated, Aggregation};
use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection;
use uuid::Uuid;

/// (user, system) CPU seconds of this process.
fn cpu() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .context("usage: metrics_decode_cpu DATABASE_URL")?;
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    let (org, post, newest): (Uuid, Uuid, DateTime<Utc>) = sqlx::query_as(
        "SELECT organization_id, entity_id, max(bucket_start) FROM metric_rollups_daily
         WHERE entity_type = 'post' AND metric_name = 'impressions' AND time_zone = 'Europe/Berlin'
         GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .context("finding a post with daily rollups")?;
    let q = Aggregation {
        org,
        entity_type: "post",
        entity_id: post,
        metric_name: "impressions",
        granularity: "day",
        start: newest - TimeDelta::days(90),
        end: newest,
        time_zone: "Europe/Berlin",
    };
    for _ in 0..200 {
        aggregated(&mut conn, &q).await?;
    }
    const CALLS: usize = 3_000;
    for _ in 0..5 {
        let (u0, s0) = cpu();
        let mut buckets = 0;
        for _ in 0..CALLS {
            buckets += aggregated(&mut conn, &q).await?.len();
        }
        let (u1, s1) = cpu();
        println!(
            "{:.1} µs user + {:.1} µs system per call ({} buckets)",
            (u1 - u0) / CALLS as f64 * 1e6,
            (s1 - s0) / CALLS as f64 * 1e6,
            buckets / CALLS
        );
    }
    Ok(())
}
