//! The load's row generators: embeddings (binary COPY), a year of metric points, AI context.

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;

use super::{busy_post, Sink};
use crate::world::{self, uid, Kind, VectorModel, World, METRICS};

/// Binary COPY rows of one embedding set: text parsing of 300M floats would
/// dominate the load; pgvector's binary form is two int16 then float4s.
pub(super) fn embeddings(
    sink: &mut Sink,
    world: &World,
    dim: usize,
    model: &str,
    kind: Kind,
    etype: &str,
) -> Result<()> {
    let vectors = VectorModel::new(world, dim);
    let mut r = world::rng(world.seed, &format!("vectors-{dim}"));
    let mut v = vec![0f32; dim];
    let b = sink.buf();
    b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    b.extend_from_slice(&[0u8; 8]); // flags, header extension length
    for i in 0..world.scale.embeddings_per_dim {
        let org = world.org_of_item(i);
        vectors.sample(org, &mut r, &mut v);
        let b = sink.buf();
        b.extend_from_slice(&6i16.to_be_bytes());
        field(b, world.org_id(org).as_bytes());
        field(b, etype.as_bytes());
        field(b, uid(world.seed, kind, i as u64).as_bytes());
        field(b, model.as_bytes());
        field(b, &(dim as i32).to_be_bytes());
        b.extend_from_slice(&(4 + 4 * dim as i32).to_be_bytes());
        b.extend_from_slice(&(dim as i16).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        for x in &v {
            b.extend_from_slice(&x.to_be_bytes());
        }
        sink.maybe_flush()?;
    }
    sink.buf().extend_from_slice(&(-1i16).to_be_bytes());
    Ok(())
}

fn field(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    b.extend_from_slice(bytes);
}

/// A year of points in time order (so rows reach one monthly partition at a
/// time): hourly posts every hour, daily posts at midnight UTC, and the busy
/// post every `busy_step_secs`. Values are whole numbers, so sums are exact
/// whatever order a rollup adds them in.
pub(super) fn metrics(sink: &mut Sink, world: &World, t_start: DateTime<Utc>) -> Result<()> {
    let s = &world.scale;
    let mut r = world::rng(world.seed, "metrics");
    let posts = s.hourly_posts + s.daily_posts;
    let ids: Vec<String> = (0..posts)
        .map(|j| {
            let org = world.org_id(world.org_of_metric_post(j));
            let post = uid(world.seed, Kind::MetricPost, j as u64);
            format!("{org}\tpost\t{post}\t")
        })
        .collect();
    let rates: Vec<f64> = (0..posts * METRICS.len())
        .map(|_| r.random_range(1.0..50.0f64).floor())
        .collect();
    let busy = format!("{}\tpost\t{}\t", world.org_id(0), busy_post(world));
    for h in 0..365 * 24 {
        let hour = (t_start + TimeDelta::hours(h))
            .format("%Y-%m-%d %H:")
            .to_string();
        let day = h / 24;
        let posts_now = if h % 24 == 0 { posts } else { s.hourly_posts };
        for (j, id) in ids.iter().enumerate().take(posts_now) {
            let hourly = j < s.hourly_posts;
            for (m, name) in METRICS.iter().enumerate() {
                let rate = rates[j * METRICS.len() + m];
                let t = (if hourly { h + 1 } else { 24 * (day + 1) }) as f64;
                let value = (rate * t + r.random_range(0.0..rate)).floor();
                let line = format!("{id}{name}\t{value}\t{hour}00:00+00\tbench\n");
                sink.buf().extend_from_slice(line.as_bytes());
            }
        }
        let mut sec = 0;
        while sec < 3600 {
            let value = r.random_range(0..1000);
            let line = format!(
                "{busy}{}\t{value}\t{hour}{:02}:{:02}+00\tbench\n",
                METRICS[0],
                sec / 60,
                sec % 60
            );
            sink.buf().extend_from_slice(line.as_bytes());
            sec += s.busy_step_secs;
        }
        sink.maybe_flush()?;
    }
    Ok(())
}

const WORDS: [&str; 32] = [
    "the",
    "post",
    "caption",
    "audience",
    "reach",
    "engagement",
    "summer",
    "launch",
    "video",
    "story",
    "brand",
    "campaign",
    "hashtag",
    "followers",
    "growth",
    "weekly",
    "report",
    "draft",
    "schedule",
    "reply",
    "comment",
    "insight",
    "trend",
    "creative",
    "product",
    "review",
    "idea",
    "morning",
    "evening",
    "question",
    "answer",
    "plan",
];

fn words(r: &mut impl Rng, n: usize, out: &mut String) {
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[r.random_range(0..WORDS.len())]);
    }
}

/// Entries over the past year, each by a member of its organization; half
/// carry an idempotency key.
pub(super) fn ai_context(sink: &mut Sink, world: &World, t_end: DateTime<Utc>) -> Result<()> {
    let mut r = world::rng(world.seed, "ai-context");
    let sources = ["chat", "agent", "generation"];
    let mut text = String::new();
    for i in 0..world.scale.ai_entries {
        let org = world::pick(&world.weights, r.random());
        let members = &world.members[org];
        let user = members[r.random_range(0..members.len())];
        let at = t_end - TimeDelta::seconds(r.random_range(0..365 * 86_400));
        text.clear();
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t",
            uid(world.seed, Kind::AiEntry, i as u64),
            world.org_id(org),
            world.user_id(user),
            sources[i % sources.len()]
        ));
        let n = r.random_range(8..24);
        words(&mut r, n, &mut text);
        text.push('\t');
        let n = r.random_range(20..60);
        words(&mut r, n, &mut text);
        text.push_str(&format!(
            "\t{{\"model\": \"gpt-4o\", \"confidence\": {:.2}, \"tokens\": {}}}\t",
            r.random_range(0.5..1.0f64),
            r.random_range(50..2000)
        ));
        if i % 2 == 0 {
            text.push_str(&format!("bench-{i}"));
        } else {
            text.push_str("\\N");
        }
        text.push_str(&at.format("\t%Y-%m-%d %H:%M:%S+00\n").to_string());
        sink.buf().extend_from_slice(text.as_bytes());
        sink.maybe_flush()?;
    }
    Ok(())
}
