//! Follows the change announcements of a Citus deployment, where the
//! triggers run on the workers and write each announcement as a row of
//! `change_announcements` (a NOTIFY there could not reach this LISTEN, and
//! Citus refuses one in a two-phase commit): polled here, every shard at
//! once, a few times a second. As with LISTEN (`follow`), the caches are on
//! only while polls succeed, and emptied when polling resumes.
//!
//! A row becomes visible when its transaction commits, which may be after
//! rows written later: each poll reads again the last [`OVERLAP`] (rows
//! seen are skipped by their key). A transaction committing more than that
//! after its trigger ran, or a worker whose clock is that far behind, goes
//! unseen; the service's own writes are single short statements.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::follow::{announced, keep_following, Follower, Ready};
use crate::store::announcements;

/// How often the announcements are read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How far back each poll reads again (see the module).
pub const OVERLAP: chrono::Duration = chrono::Duration::seconds(10);
/// How long announcements are kept for replicas that poll.
const KEEP: chrono::Duration = chrono::Duration::minutes(10);
/// How often a replica deletes the announcements past [`KEEP`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Polls the followers' announcements until the task is aborted; `ready`
/// is told once the first poll succeeded.
pub async fn poll(
    pool: PgPool,
    followers: Vec<Arc<dyn Follower>>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let ready = Ready::new(ready);
    keep_following(&followers, "change announcements unreadable", || async {
        let Err(e) = poll_until_failure(&pool, &followers, &ready).await;
        Err(e)
    })
    .await
}

async fn poll_until_failure(
    pool: &PgPool,
    followers: &[Arc<dyn Follower>],
    ready: &Ready,
) -> sqlx::Result<Infallible> {
    let mut watermark = announcements::now(pool).await?;
    let mut seen: HashMap<(Uuid, i64), DateTime<Utc>> = HashMap::new();
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned = tokio::time::Instant::now();
    let mut first = true;
    loop {
        ticker.tick().await;
        let rows = announcements::since(pool, watermark - OVERLAP).await?;
        if first {
            // Changes before this poll may be missing: start from empty.
            ready.following(followers);
            first = false;
        }
        for a in rows {
            watermark = watermark.max(a.announced_at);
            if seen
                .insert((a.organization_id, a.id), a.announced_at)
                .is_some()
            {
                continue;
            }
            if let Some(f) = followers.iter().find(|f| f.channel() == a.channel) {
                announced(f.as_ref(), &a.payload);
            }
        }
        seen.retain(|_, at| *at > watermark - OVERLAP);
        if pruned.elapsed() >= PRUNE_EVERY {
            announcements::prune(pool, watermark - KEEP).await?;
            pruned = tokio::time::Instant::now();
        }
    }
}
