//! Follows the database's change announcements (LISTEN/NOTIFY) for the
//! per-replica caches: one connection, one channel per cache.
//!
//! Triggers announce every change at commit, whoever made it. A cache is
//! used only while announcements are being received: before the first
//! LISTEN and while the connection is re-established, each cache is off,
//! and it is emptied when following resumes (what was announced meanwhile
//! is gone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use uuid::Uuid;

/// A cache kept fresh by one channel's announcements.
pub trait Follower: Send + Sync {
    /// The channel its changes are announced on.
    fn channel(&self) -> &'static str;
    /// One announcement's payload.
    fn announced(&self, payload: &str);
    /// Announcements are being received (true) or may be missed (false).
    /// Either way, what the cache holds can no longer be trusted.
    fn set_following(&self, following: bool);
}

/// Whether a follower's cache may be used: only while its announcements
/// are being received.
#[derive(Default)]
pub struct Following(AtomicBool);

impl Following {
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Turns it on or off; `clear` empties the cache before it is used
    /// again, and once it no longer is.
    pub fn set(&self, on: bool, clear: impl FnOnce()) {
        if on {
            clear();
            self.0.store(true, Ordering::Release);
        } else {
            self.0.store(false, Ordering::Release);
            clear();
        }
    }
}

/// The payload '<uuid>:<uuid>' both caches' triggers send.
pub fn uuid_pair(payload: &str) -> Option<(Uuid, Uuid)> {
    let (a, b) = payload.split_once(':')?;
    Some((Uuid::parse_str(a).ok()?, Uuid::parse_str(b).ok()?))
}

/// Follows the followers' channels until the task is aborted; `ready` is
/// told once the first LISTEN is in place.
pub async fn follow(
    pool: PgPool,
    followers: Vec<Arc<dyn Follower>>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow_once(&pool, &followers, &mut ready).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "change notifications interrupted; the permission and metrics caches are off until they resume");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        for f in &followers {
            f.set_following(false);
        }
    }
}

/// One listening connection: returns when it is lost.
async fn follow_once(
    pool: &PgPool,
    followers: &[Arc<dyn Follower>],
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    let channels: Vec<&str> = followers.iter().map(|f| f.channel()).collect();
    listener.listen_all(channels).await?;
    for f in followers {
        f.set_following(true);
    }
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    loop {
        // None: the connection was lost (sqlx reconnects on the next call,
        // but what was sent meanwhile is gone).
        let Some(n) = listener.try_recv().await? else {
            return Ok(());
        };
        if let Some(f) = followers.iter().find(|f| f.channel() == n.channel()) {
            f.announced(n.payload());
        }
    }
}
