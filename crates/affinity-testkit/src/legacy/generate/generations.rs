//! `content_generations`: the obsolete caption generator's log.

use rand::Rng;

use super::text::caption;
use super::{between, new_uuid, pick, R};
use crate::legacy::model::{Generation, User, END};
use crate::legacy::words::{MODELS, TOPICS};

pub(super) fn gen_generations(rng: &mut R, users: &[User]) -> Vec<Generation> {
    if users.is_empty() {
        return Vec::new();
    }
    let n = users.len() * 3 / 20 + 10;
    (0..n)
        .map(|i| {
            let u = pick(rng, users);
            // Deleted users left their generations behind (ON DELETE SET NULL).
            let user_id = if i == 0 || rng.random_bool(0.1) {
                None
            } else {
                Some(u.id)
            };
            let topic = &TOPICS[if rng.random_bool(0.7) {
                u.topics.0
            } else {
                rng.random_range(0..TOPICS.len())
            }];
            let tone = *pick(rng, &["playful", "professional", "Gen Z", "inspirational"]);
            let prompt = format!(
                "Write an Instagram caption about {} in a {tone} tone. Max 3 emoji {}",
                pick(rng, topic.phrases),
                pick(rng, topic.emoji)
            );
            let generated_content = if i == 1 || rng.random_bool(0.1) {
                None
            } else {
                Some(caption(rng, topic, &[]))
            };
            let model = if i == 2 || rng.random_bool(0.05) {
                None
            } else {
                Some(*pick(rng, MODELS))
            };
            Generation {
                id: new_uuid(rng),
                user_id,
                prompt,
                generated_content,
                model,
                created_at: between(rng, u.created_at, END),
            }
        })
        .collect()
}
