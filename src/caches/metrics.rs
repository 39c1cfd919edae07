//! A per-replica cache of metric aggregations: dashboards ask for the same
//! chart again and again, and its answer changes only when points change.
//!
//! The `metric_points_announce` trigger (phase 08) announces, at commit, every
//! entity whose points a statement changed ('<org>:<entity>' on the
//! `affinity_metrics` channel; '*' for many or a TRUNCATE), whoever wrote
//! them; this replica's own writes are also dropped at once, before it
//! replies. Entities share 4,096 generation counters: an announcement bumps
//! its entity's counter, and an answer is served only while the counters it
//! was read under are unchanged, so an answer read before a change is never
//! served after that change's announcement, even if it arrives mid-query.
//! Off while announcements are not being received (`super::follow`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use uuid::Uuid;

use super::follow::{Follower, Following};
use crate::observability::CacheCounters;
use crate::store::metrics::Bucket;

pub const CHANNEL: &str = "affinity_metrics";
const STRIPES: usize = 4096;
/// The last safety net, should an announcement be lost some other way.
const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// One aggregation, as asked: the answer's every input besides the points.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub org: Uuid,
    pub entity_id: Uuid,
    pub entity_type: Box<str>,
    pub metric_name: Box<str>,
    pub granularity: &'static str,
    pub time_zone: &'static str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The percentiles asked for, as bits (f64 is not `Eq`).
    pub percentiles: Box<[u64]>,
}

#[derive(Clone)]
struct Entry {
    buckets: Arc<[Bucket]>,
    stamp: Stamp,
}

/// The counters an answer was read under: the cache-wide epoch and its
/// entity's generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    epoch: u64,
    generation: u64,
}

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<[Bucket]>),
    /// Read the database, then [`MetricsCache::put`] with this stamp.
    Miss(Stamp),
    /// The cache is off or was skipped: read the database, keep nothing.
    Bypass,
}

#[derive(Clone)]
pub struct MetricsCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// None: configured off.
    answers: Option<Cache<Key, Entry>>,
    /// Bumped by a clear (and when following starts or stops).
    epoch: AtomicU64,
    generations: Box<[AtomicU64]>,
    following: Following,
    counters: CacheCounters,
}

impl MetricsCache {
    /// A cache of at most `max_bytes` of answers (0: off).
    pub fn new(max_bytes: u64, counters: CacheCounters) -> Self {
        let answers = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &Key, e: &Entry| weight(k, e))
                .time_to_live(TIME_TO_LIVE)
                .build()
        });
        MetricsCache {
            inner: Arc::new(Inner {
                answers,
                epoch: AtomicU64::new(0),
                generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
                following: Following::default(),
                counters,
            }),
        }
    }

    /// An answer to `key`, unless the client asked for a fresh read
    /// (`fresh`), the cache is off, or changes are not being followed.
    pub fn get(&self, key: &Key, fresh: bool) -> Lookup {
        let Some(answers) = &self.inner.answers else {
            return self.skip();
        };
        if !self.inner.following.is_on() {
            return self.skip();
        }
        let stamp = self.stamp(key.org, key.entity_id);
        if !fresh {
            if let Some(e) = answers.get(key) {
                if e.stamp == stamp {
                    self.inner.counters.hit.inc();
                    return Lookup::Hit(e.buckets);
                }
            }
        }
        self.inner.counters.miss.inc();
        Lookup::Miss(stamp)
    }

    /// A call that does not use the cache (off, not following, or an
    /// open-ended range), counted.
    pub fn skip(&self) -> Lookup {
        self.inner.counters.bypass.inc();
        Lookup::Bypass
    }

    /// Keeps an answer read under `stamp`, unless a change was announced
    /// since (it would be stale already). Following stopping or starting
    /// bumps the epoch too, so the stamp covers that as well.
    pub fn put(&self, key: Key, stamp: Stamp, buckets: Arc<[Bucket]>) {
        let Some(answers) = &self.inner.answers else {
            return;
        };
        if self.stamp(key.org, key.entity_id) == stamp {
            answers.insert(key, Entry { buckets, stamp });
        }
    }

    fn stamp(&self, org: Uuid, entity_id: Uuid) -> Stamp {
        Stamp {
            epoch: self.inner.epoch.load(Ordering::Acquire),
            generation: self.inner.generations[stripe(org, entity_id)].load(Ordering::Acquire),
        }
    }
}

impl Follower for MetricsCache {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    /// Drops the answers about one entity's points (after a change this
    /// replica committed, or one announced).
    fn invalidate(&self, org: Uuid, entity_id: Uuid) {
        self.inner.generations[stripe(org, entity_id)].fetch_add(1, Ordering::AcqRel);
    }

    fn clear(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(answers) = &self.inner.answers {
            answers.invalidate_all();
        }
    }

    fn following(&self) -> &Following {
        &self.inner.following
    }
}

fn stripe(org: Uuid, entity_id: Uuid) -> usize {
    let h = org.as_u128() ^ entity_id.as_u128().rotate_left(64);
    ((h as u64 ^ (h >> 64) as u64) % STRIPES as u64) as usize
}

/// Roughly the bytes an entry holds.
fn weight(k: &Key, e: &Entry) -> u32 {
    let bytes = std::mem::size_of::<Key>()
        + k.entity_type.len()
        + k.metric_name.len()
        + std::mem::size_of::<Entry>()
        + std::mem::size_of_val(&*k.percentiles)
        + std::mem::size_of_val(&*e.buckets)
        + e.buckets
            .iter()
            .map(|b| std::mem::size_of_val(&*b.percentiles))
            .sum::<usize>()
        + 64;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caches::follow::{announced, set_following};
    use chrono::TimeZone;

    fn key(org: Uuid, entity: Uuid) -> Key {
        Key {
            org,
            entity_id: entity,
            entity_type: "post".into(),
            metric_name: "views".into(),
            granularity: "day",
            time_zone: "UTC",
            start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
            percentiles: Box::new([]),
        }
    }

    fn answer(sum: f64) -> Arc<[Bucket]> {
        Arc::from(vec![Bucket {
            bucket_start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            sum,
            avg: sum,
            min: sum,
            max: sum,
            count: 1,
            last: sum,
            percentiles: Vec::new(),
        }])
    }

    fn following() -> MetricsCache {
        let c = MetricsCache::new(1 << 20, CacheCounters::default());
        set_following(&c, true);
        c
    }

    fn fill(c: &MetricsCache, k: &Key, sum: f64) {
        match c.get(k, false) {
            Lookup::Miss(stamp) => c.put(k.clone(), stamp, answer(sum)),
            _ => panic!("expected a miss"),
        }
    }

    fn hit_sum(c: &MetricsCache, k: &Key) -> Option<f64> {
        match c.get(k, false) {
            Lookup::Hit(b) => Some(b[0].sum),
            _ => None,
        }
    }

    #[test]
    fn an_answer_is_served_until_its_entity_changes() {
        let c = following();
        let (org, post, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (k, k_other) = (key(org, post), key(org, other));
        fill(&c, &k, 1.0);
        fill(&c, &k_other, 2.0);
        assert_eq!(hit_sum(&c, &k), Some(1.0));
        announced(&c, &format!("{org}:{post}"));
        assert_eq!(hit_sum(&c, &k), None);
        // Another entity's answer stays (unless it shares the counter).
        if stripe(org, other) != stripe(org, post) {
            assert_eq!(hit_sum(&c, &k_other), Some(2.0));
        }
    }

    #[test]
    fn an_answer_read_before_an_announcement_is_not_kept() {
        let c = following();
        let (org, post) = (Uuid::new_v4(), Uuid::new_v4());
        let k = key(org, post);
        let Lookup::Miss(stamp) = c.get(&k, false) else {
            panic!("expected a miss")
        };
        // The change is announced while the query runs.
        c.invalidate(org, post);
        c.put(k.clone(), stamp, answer(1.0));
        assert_eq!(hit_sum(&c, &k), None);
    }

    #[test]
    fn nothing_is_served_or_kept_while_changes_are_not_followed() {
        let c = following();
        let k = key(Uuid::new_v4(), Uuid::new_v4());
        fill(&c, &k, 1.0);
        set_following(&c, false);
        assert!(matches!(c.get(&k, false), Lookup::Bypass));
        // Following again starts empty: announcements may have been missed.
        set_following(&c, true);
        assert_eq!(hit_sum(&c, &k), None);
    }

    #[test]
    fn a_star_or_unreadable_announcement_drops_everything() {
        let c = following();
        let k = key(Uuid::new_v4(), Uuid::new_v4());
        for payload in ["*", "not an entity"] {
            fill(&c, &k, 1.0);
            announced(&c, payload);
            assert_eq!(hit_sum(&c, &k), None, "after {payload:?}");
        }
    }

    #[test]
    fn a_fresh_read_skips_the_answer_and_replaces_it() {
        let c = following();
        let k = key(Uuid::new_v4(), Uuid::new_v4());
        fill(&c, &k, 1.0);
        let Lookup::Miss(stamp) = c.get(&k, true) else {
            panic!("a fresh read must miss")
        };
        c.put(k.clone(), stamp, answer(2.0));
        assert_eq!(hit_sum(&c, &k), Some(2.0));
    }

    #[test]
    fn a_cache_of_zero_bytes_is_off() {
        let c = MetricsCache::new(0, CacheCounters::default());
        set_following(&c, true);
        assert!(matches!(
            c.get(&key(Uuid::new_v4(), Uuid::new_v4()), false),
            Lookup::Bypass
        ));
    }
}
