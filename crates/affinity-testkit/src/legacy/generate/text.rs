//! Captions and drafts made of a topic's phrases and the shared lines.

use rand::Rng;

use super::{pick, R};
use crate::legacy::words::{Topic, GENERIC_LINES, INTL_LINES, SPICY_LINES, TEMPLATES};

pub(super) fn caption_line(rng: &mut R, topic: &Topic) -> String {
    let emoji = *pick(rng, topic.emoji);
    let phrase = *pick(rng, topic.phrases);
    let line = pick(rng, TEMPLATES)
        .replace("{p}", phrase)
        .replace("{e}", emoji);
    let mut chars = line.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => line,
    }
}

pub(super) fn caption(rng: &mut R, topic: &Topic, tags: &[String]) -> String {
    let mut parts = vec![caption_line(rng, topic)];
    for _ in 0..rng.random_range(0..4) {
        let x: f64 = rng.random();
        let line = if x < 0.1 {
            pick(rng, INTL_LINES)
        } else if x < 0.18 {
            pick(rng, SPICY_LINES)
        } else {
            pick(rng, GENERIC_LINES)
        };
        parts.push((*line).to_string());
    }
    let sep = if rng.random_bool(0.5) { "\n\n" } else { " " };
    let mut s = parts.join(sep);
    if !tags.is_empty() && rng.random_bool(0.4) {
        s.push_str("\n.\n.\n.\n");
        let block: Vec<String> = tags.iter().map(|t| format!("#{t}")).collect();
        s.push_str(&block.join(" "));
    }
    s
}

/// A caption pasted from a blog post: at least `min_chars` characters.
pub(super) fn long_caption(rng: &mut R, topic: &Topic, min_chars: usize) -> String {
    let mut s = String::new();
    let mut chars = 0;
    while chars < min_chars {
        let para = caption(rng, topic, &[]);
        chars += para.chars().count() + 2;
        s.push_str(&para);
        s.push_str("\n\n");
    }
    s
}

pub(super) fn content(rng: &mut R, topic: &Topic) -> String {
    match rng.random_range(0..3) {
        0 => format!(
            "Hook: {}\nBody: {}\nCTA: {}",
            caption_line(rng, topic),
            pick(rng, topic.phrases),
            pick(rng, GENERIC_LINES)
        ),
        1 => format!(
            "## Notes\n\n- {}\n- {}\n- {}\n\nTODO: check music rights",
            pick(rng, topic.phrases),
            pick(rng, topic.phrases),
            pick(rng, SPICY_LINES)
        ),
        _ => format!(
            "{}\n\n{}",
            caption_line(rng, topic),
            caption_line(rng, topic)
        ),
    }
}
