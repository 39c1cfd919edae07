//! Follows the database's change announcements (LISTEN/NOTIFY) for the
//! per-replica caches: one connection, one channel per cache.
//!
//! Triggers announce every change at commit, whoever made it. A cache is
//! used only while announcements are being received: before the first
//! LISTEN and while the connection is re-established, each cache is off,
//! and it is emptied when following resumes (what was announced meanwhile
//! is gone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    let ready = Ready::new(ready);
    keep_following(&followers, "change notifications interrupted", || {
        follow_once(&pool, &followers, &ready)
    })
    .await
}

/// Tells the task that started following, once, that the caches are on.
pub(crate) struct Ready(Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl Ready {
    pub(crate) fn new(tx: tokio::sync::oneshot::Sender<()>) -> Self {
        Ready(Mutex::new(Some(tx)))
    }

    /// The followers' caches are on: they follow every change from now.
    pub(crate) fn following(&self, followers: &[Arc<dyn Follower>]) {
        for f in followers {
            set_following(f.as_ref(), true);
        }
        let tx = self.0.lock().ok().and_then(|mut t| t.take());
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
    }
}

/// Runs `once` (one spell of following, ended by an error or a lost
/// connection) again and again, the caches off between spells; after an
/// error it waits, longer each time in a row (up to 5 s).
pub(crate) async fn keep_following<F, Fut>(followers: &[Arc<dyn Follower>], trouble: &str, once: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<()>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = once().await;
        if followers.iter().any(|f| f.following().is_on()) {
            backoff = Duration::from_millis(100);
        }
        for f in followers {
            set_following(f.as_ref(), false);
        }
        if let Err(e) = ended {
            tracing::warn!(error = %e, "{trouble}; the permission and metrics caches are off until they resume");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// One listening connection: returns when it is lost.
async fn follow_once(
    pool: &PgPool,
    followers: &[Arc<dyn Follower>],
    ready: &Ready,
) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    let channels: Vec<&str> = followers.iter().map(|f| f.channel()).collect();
    listener.listen_all(channels).await?;
    ready.following(followers);
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
