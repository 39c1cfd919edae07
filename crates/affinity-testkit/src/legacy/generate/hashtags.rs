//! `hashtag_analytics`: the obsolete per-user hashtag statistics.

use rand::Rng;

use super::{between, pick, R};
use crate::legacy::model::{HashtagStat, User, END};
use crate::legacy::words::TOPICS;

pub(super) fn gen_hashtag_stats(rng: &mut R, users: &[User]) -> Vec<HashtagStat> {
    if users.is_empty() {
        return Vec::new();
    }
    let n = users.len() / 5 + 10;
    (0..n)
        .map(|i| {
            let u = pick(rng, users);
            let user_id = if i == 0 || rng.random_bool(0.15) {
                None
            } else {
                Some(u.id)
            };
            let topic = &TOPICS[u.topics.0];
            let hashtag = (*pick(rng, topic.tags)).to_string();
            let avg_engagement = if i == 1 || rng.random_bool(0.15) {
                None
            } else {
                Some(rng.random_range(0..15_000))
            };
            HashtagStat {
                user_id,
                hashtag,
                post_count: rng.random_range(0..250),
                avg_engagement,
                updated_at: between(rng, u.created_at, END),
            }
        })
        .collect()
}
