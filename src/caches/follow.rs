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

/// A cache kept fresh by one channel's announcements, each of which names
/// an '<organization>:<item>' pair, or anything else for "everything".
pub trait Follower: Send + Sync {
    /// The channel its changes are announced on.
    fn channel(&self) -> &'static str;
    /// Drops what the cache holds about one item of an organization.
    fn invalidate(&self, org: Uuid, id: Uuid);
    /// Drops everything.
    fn clear(&self);
    /// Whether the cache may be used now.
    fn following(&self) -> &Following;
}

/// Whether a follower's cache may be used: only while its announcements
/// are being received.
#[derive(Default)]
pub struct Following(AtomicBool);

impl Following {
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Announcements are being received (`on`) or may be missed. Either way,
/// what the cache holds can no longer be trusted: it is emptied before it
/// is used again, and once it no longer is.
pub(crate) fn set_following(f: &dyn Follower, on: bool) {
    if on {
        f.clear();
        f.following().0.store(true, Ordering::Release);
    } else {
        f.following().0.store(false, Ordering::Release);
        f.clear();
    }
}

/// One announcement's payload: '<uuid>:<uuid>' drops one pair, anything
/// else (the '*' of a large statement) everything.
pub(crate) fn announced(f: &dyn Follower, payload: &str) {
    match uuid_pair(payload) {
        Some((org, id)) => f.invalidate(org, id),
        None => f.clear(),
    }
}

fn uuid_pair(payload: &str) -> Option<(Uuid, Uuid)> {
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
            set_following(f.as_ref(), false);
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
        set_following(f.as_ref(), true);
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
            announced(f.as_ref(), n.payload());
        }
    }
}
