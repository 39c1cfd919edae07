//! A per-replica cache of membership roles, the answer to almost every
//! authorization and permission check.
//!
//! Entries are dropped when PostgreSQL announces a change to that membership
//! (the `organization_members_notify` trigger sends '<org>:<user>' on the
//! `affinity_membership` channel at commit, whichever replica or tool wrote
//! it), so a revocation reaches every replica within milliseconds. The cache
//! is used only while this replica is listening (`super::follow`): before
//! the first LISTEN and while the connection is re-established, every lookup
//! goes to the database, and the cache is emptied (notifications may have
//! been missed).
//! A time-to-live bounds staleness should anything else go wrong.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use uuid::Uuid;

use super::follow::{Follower, Following};
use crate::db::pool::CountedPool;
use crate::observability::CacheCounters;
use crate::store::organizations::{self as store, OrgRole};

pub const CHANNEL: &str = "affinity_membership";
const MAX_ENTRIES: u64 = 200_000;
const TIME_TO_LIVE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct MembershipCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// (organization, user) -> role; None: not a member (cached too, so
    /// that repeated denials cost no query either).
    roles: Cache<(Uuid, Uuid), Option<OrgRole>>,
    /// Bumped by every invalidation: a lookup that raced one is not cached.
    epoch: AtomicU64,
    /// Whether change notifications are being received right now.
    listening: Following,
    counters: CacheCounters,
}

impl MembershipCache {
    /// A cache counting its hits, misses and bypasses into `counters`.
    pub fn with_counters(counters: CacheCounters) -> Self {
        MembershipCache {
            inner: Arc::new(Inner {
                roles: Cache::builder()
                    .max_capacity(MAX_ENTRIES)
                    .time_to_live(TIME_TO_LIVE)
                    .build(),
                epoch: AtomicU64::new(0),
                listening: Following::default(),
                counters,
            }),
        }
    }

    /// The role of `user` in `org`, from the cache or the database.
    pub async fn role(
        &self,
        pool: &CountedPool,
        org: Uuid,
        user: Uuid,
    ) -> sqlx::Result<Option<OrgRole>> {
        if let Some(role) = self.inner.roles.get(&(org, user)) {
            self.inner.counters.hit.inc();
            return Ok(role);
        }
        self.count_misses(1);
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let mut conn = pool.acquire_call(None).await?;
        let role = store::member_role(&mut *conn, org, user).await?;
        conn.finish().await?;
        self.remember(epoch, org, user, role);
        Ok(role)
    }

    /// Roles of many (user, org) pairs, in order: cached ones from memory,
    /// the rest in one query.
    pub async fn roles(
        &self,
        pool: &CountedPool,
        pairs: &[(Uuid, Uuid)],
    ) -> sqlx::Result<Vec<Option<OrgRole>>> {
        let mut out: Vec<Option<Option<OrgRole>>> = pairs
            .iter()
            .map(|(user, org)| self.inner.roles.get(&(*org, *user)))
            .collect();
        let missing: Vec<(Uuid, Uuid)> = pairs
            .iter()
            .zip(&out)
            .filter(|(_, hit)| hit.is_none())
            .map(|(p, _)| *p)
            .collect();
        self.inner
            .counters
            .hit
            .inc_by((pairs.len() - missing.len()) as u64);
        if !missing.is_empty() {
            self.count_misses(missing.len() as u64);
            let epoch = self.inner.epoch.load(Ordering::Acquire);
            let mut conn = pool.acquire_call(None).await?;
            let fetched = store::member_roles(&mut *conn, &missing).await?;
            conn.finish().await?;
            let mut fetched = missing.iter().zip(fetched);
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                if let Some((&(user, org), role)) = fetched.next() {
                    self.remember(epoch, org, user, role);
                    *slot = Some(role);
                }
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    /// Lookups the cache could not answer: misses while it is on, bypasses
    /// while it is off (nothing is cached then).
    fn count_misses(&self, n: u64) {
        if self.is_listening() {
            self.inner.counters.miss.inc_by(n);
        } else {
            self.inner.counters.bypass.inc_by(n);
        }
    }

    fn is_listening(&self) -> bool {
        self.inner.listening.is_on()
    }

    fn remember(&self, epoch: u64, org: Uuid, user: Uuid, role: Option<OrgRole>) {
        // An invalidation since the read began may concern this very entry.
        if self.inner.epoch.load(Ordering::Acquire) == epoch && self.is_listening() {
            self.inner.roles.insert((org, user), role);
        }
    }
}

impl Follower for MembershipCache {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    /// Drops one membership (after a change this replica committed, or one
    /// announced).
    fn invalidate(&self, org: Uuid, user: Uuid) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.roles.invalidate(&(org, user));
    }

    fn clear(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.roles.invalidate_all();
    }

    fn following(&self) -> &Following {
        &self.inner.listening
    }
}
