//! `post_analytics`: the poller's counter snapshots of published posts, with
//! gaps, NULL counters and repeated polls.

use rand::Rng;

use super::posts::engagement;
use super::{between, maybe, R};
use crate::legacy::model::{Post, Snapshot, DAY, HOUR, MIN};

pub(super) fn gen_snapshots(rng: &mut R, posts: &[Post]) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for (i, p) in posts.iter().enumerate() {
        let Some(published) = p.published_at else {
            continue;
        };
        // Post 6: published but never polled; 7 and 8: a repeated poll.
        let n = match i {
            6 => 0,
            7 | 8 => rng.random_range(3..=8),
            _ if rng.random_bool(0.15) => 0,
            _ => rng.random_range(1..=8),
        };
        if n == 0 {
            continue;
        }
        let mut fracs: Vec<f64> = (0..n).map(|_| rng.random_range(0.05..1.0)).collect();
        fracs.sort_by(f64::total_cmp);
        if rng.random_bool(0.7) {
            fracs[n - 1] = 1.0;
        }
        let dup_at = match i {
            7 | 8 => Some(rng.random_range(1..n)),
            _ if n > 1 && rng.random_bool(0.01) => Some(rng.random_range(1..n)),
            _ => None,
        };
        let c = &p.counters;
        let finals = [
            c.likes,
            c.comments,
            c.shares,
            c.saves,
            c.reach,
            c.impressions,
        ];
        let mut t = published + between(rng, 10 * MIN, 3 * HOUR);
        let mut prev: Option<([Option<i32>; 6], Option<i32>)> = None;
        for (k, &frac) in fracs.iter().enumerate() {
            if k > 0 {
                t += between(rng, HOUR, (k as i64 + 1) * 2 * DAY);
            }
            let mut recorded_at = t;
            // A repeated poll at the exact same instant: identical values for
            // post 7, newer (never smaller) values otherwise.
            if dup_at == Some(k) {
                if let Some(last) = out.last() {
                    recorded_at = last.recorded_at;
                    t = recorded_at;
                    if i == 7 {
                        if let Some((c, e)) = prev {
                            out.push(Snapshot {
                                post_id: p.id,
                                recorded_at,
                                counters: c,
                                engagement_rate: e,
                            });
                            continue;
                        }
                    }
                }
            }
            let mut counters = [None; 6];
            for (c, (&fin, p_null)) in counters
                .iter_mut()
                .zip(finals.iter().zip([0.05, 0.05, 0.15, 0.15, 0.08, 0.08]))
            {
                let v = (f64::from(fin) * frac).floor() as i32;
                *c = maybe(rng, p_null, v);
            }
            if i == 7 && k == 0 {
                counters[3] = None;
            }
            let e = engagement(
                rng,
                true,
                [counters[0], counters[1], counters[2], counters[3]],
                counters[4],
            );
            prev = Some((counters, e));
            out.push(Snapshot {
                post_id: p.id,
                recorded_at,
                counters,
                engagement_rate: e,
            });
        }
    }
    // The poller inserted in time order; a stable sort keeps repeated polls
    // in their order.
    out.sort_by_key(|s| s.recorded_at);
    out
}
