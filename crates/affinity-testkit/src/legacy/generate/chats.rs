//! `chat_messages`: assistant sessions, some messages with embeddings.

use rand::Rng;

use super::text::{caption, caption_line};
use super::{between, new_uuid, pick, R};
use crate::legacy::embed::Emb;
use crate::legacy::model::{ChatMessage, User, END, MIN, SEC};
use crate::legacy::words::{Topic, TOPICS};

const SYSTEM_PROMPTS: &[&str] = &[
    "You are Affinity, a helpful assistant for Instagram creators. Be concise.",
    "You are a social media strategist. Answer in the user's language.",
];

fn user_message(rng: &mut R, topic: &Topic) -> String {
    let p = *pick(rng, topic.phrases);
    let e = *pick(rng, topic.emoji);
    match rng.random_range(0..8) {
        0 => format!("Can you write a caption about {p}?"),
        1 => format!("Give me 5 hashtag ideas for {p} 🙏"),
        2 => format!("What's the best time to post {} content?", topic.name),
        3 => format!("Rewrite this: \"{p} {e}\" but funnier"),
        4 => "why did my reach drop last week??".to_string(),
        5 => format!("Translate to Spanish: {p}"),
        6 => "Make it shorter pls".to_string(),
        _ => format!("Here's my draft:\n\n{}", caption(rng, topic, &[])),
    }
}

fn assistant_message(rng: &mut R, topic: &Topic) -> String {
    match rng.random_range(0..5) {
        0 => format!(
            "Here are a few ideas:\n1. {}\n2. {}\n3. {}",
            caption_line(rng, topic),
            caption_line(rng, topic),
            caption_line(rng, topic)
        ),
        1 => format!(
            "Sure! Try this caption:\n\n\"{}\"",
            caption(rng, topic, &[])
        ),
        2 => "Based on your last 30 posts, engagement peaks around 6–8 pm on weekdays.".to_string(),
        3 => {
            let tags: Vec<String> = topic.tags.iter().map(|t| format!("#{t}")).collect();
            format!("Hashtags: {}", tags.join(" "))
        }
        _ => "Your reach dropped 12% — mostly fewer Reels. Try 3 Reels a week and reply to \
              comments in the first hour 💬"
            .to_string(),
    }
}

pub(super) fn gen_chats(rng: &mut R, users: &[User]) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    let mut forced = true;
    for (ui, u) in users.iter().enumerate() {
        if ui != 0 && !rng.random_bool(0.4) {
            continue;
        }
        for _ in 0..rng.random_range(1..=3) {
            let session_id = new_uuid(rng);
            let main = if rng.random_bool(0.7) {
                u.topics.0
            } else {
                rng.random_range(0..TOPICS.len())
            };
            let topic = &TOPICS[main];
            let mut t = between(rng, u.created_at, END);
            let n = rng.random_range(2..=7);
            let with_system = forced || rng.random_bool(0.3);
            let mut roles: Vec<&'static str> = Vec::with_capacity(n + 1);
            if with_system {
                roles.push("system");
            }
            roles.extend((0..n).map(|k| if k % 2 == 0 { "user" } else { "assistant" }));
            for (k, &role) in roles.iter().enumerate() {
                let content = match role {
                    "system" => (*pick(rng, SYSTEM_PROMPTS)).to_string(),
                    "user" => user_message(rng, topic),
                    _ => assistant_message(rng, topic),
                };
                let embedded = match (role, forced) {
                    ("system", _) => false,
                    // The first session: its first user message has an
                    // embedding, its first answer has none.
                    (_, true) => k == 1,
                    ("user", _) => rng.random_bool(0.6),
                    _ => rng.random_bool(0.35),
                };
                let embedding = embedded.then(|| Emb {
                    seed: rng.random(),
                    main,
                    second: u.topics.1,
                    mix: rng.random_range(0.0..0.3),
                });
                out.push(ChatMessage {
                    id: new_uuid(rng),
                    user_id: u.id,
                    session_id,
                    role,
                    content,
                    embedding,
                    created_at: t,
                });
                t += between(rng, 2 * SEC, 4 * MIN);
            }
            forced = false;
        }
    }
    out.sort_by_key(|m| m.created_at);
    out
}
