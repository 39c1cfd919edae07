//! `posts`: who posted, where, when, with which counters, and what the app
//! made of it. Hashtags and media come from [`super::media`].

use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::json;

use super::media::{post_hashtags, post_media, Media};
use super::text::{caption, content, long_caption};
use super::{between, clamp_i32, maybe_with, new_uuid, pick, shortcode, R};
use crate::legacy::copy::iso;
use crate::legacy::embed::Emb;
use crate::legacy::model::{Counters, Post, User, DAY, END, HOUR, SEC};
use crate::legacy::words::{Topic, SUGGESTIONS, TOPICS};

/// Cumulative weights for picking users by activity.
fn pick_weighted(rng: &mut R, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

pub(super) fn gen_posts(rng: &mut R, users: &[User], n: usize) -> Vec<Post> {
    let mut cumulative = Vec::with_capacity(users.len());
    let mut acc = 0.0;
    for u in users {
        acc += u.activity;
        cumulative.push(acc);
    }
    let mut owners: Vec<usize> = (0..n).map(|_| pick_weighted(rng, &cumulative)).collect();
    // Posts 4 and 5 share a URL of their user's pool: same user.
    if n > 5 {
        owners[5] = owners[4];
    }
    owners
        .iter()
        .enumerate()
        .map(|(i, &u)| gen_post(rng, i, u, &users[u]))
        .collect()
}

/// One post. The first indices are pinned to the awkward cases, so that
/// every size holds them: 0 a draft with no media, awkward hashtags, a
/// caption full of escapes and no embedding; 1 a 10-image carousel with a
/// repeated URL and a URL with spaces, a caption over 10,000 characters; 2 a
/// TikTok post; 3 archived after publication; 4 and 5 the same user sharing a
/// pool URL; 6 published but never polled; 7 and 8 repeated polls (see
/// [`super::snapshots::gen_snapshots`]); 9 a draft without caption.
///
/// Each part draws from `rng` in turn: their order is the data's, so it
/// must not change.
fn gen_post(rng: &mut R, i: usize, user_idx: usize, user: &User) -> Post {
    let id = new_uuid(rng);
    let (main, second) = post_topics(rng, user);
    let topic = &TOPICS[main];
    let (platform, status, was_published) = post_status(rng, i);
    let Times {
        created_at,
        scheduled_at,
        published_at,
        updated_at,
    } = post_times(rng, user, status, was_published);
    let hashtags = post_hashtags(rng, i, topic, second);
    let is_tiktok = platform == "tiktok";
    let Media {
        urls: media_urls,
        media_type,
        thumbnail_url,
        video,
    } = post_media(rng, i, user, is_tiktok);
    let (external_id, permalink, shortcode) = if was_published {
        post_links(rng, i, user, is_tiktok, video)
    } else {
        (None, None, None)
    };
    // Counters only move once a post is out.
    let counters = if was_published {
        post_counters(rng, i, user)
    } else {
        Counters::default()
    };
    let insights = post_insights(rng, i, was_published, topic, second, updated_at);
    let caption = post_caption(rng, i, status, topic, &hashtags);
    let content = match i {
        0 => None,
        9 => Some(content(rng, topic)),
        _ => maybe_with(rng, 0.45, |rng| content(rng, topic)),
    };
    let embedding = post_embedding(rng, i, main, second);

    Post {
        id,
        user_id: user.id,
        platform,
        external_id,
        status,
        caption,
        content,
        hashtags,
        media_urls,
        media_type,
        thumbnail_url,
        permalink,
        scheduled_at,
        published_at,
        counters,
        insights,
        embedding,
        created_at,
        updated_at,
        user_idx,
        shortcode,
    }
}

/// The main and the second topic: mostly the user's own.
fn post_topics(rng: &mut R, user: &User) -> (usize, usize) {
    let main = if rng.random_bool(0.7) {
        user.topics.0
    } else {
        rng.random_range(0..TOPICS.len())
    };
    let second = if rng.random_bool(0.5) {
        user.topics.1
    } else {
        rng.random_range(0..TOPICS.len())
    };
    (main, second)
}

/// The platform, the status, and whether the post was ever published.
fn post_status(rng: &mut R, i: usize) -> (&'static str, &'static str, bool) {
    let platform = if i == 2 || (i > 9 && rng.random_bool(0.15)) {
        "tiktok"
    } else {
        "instagram"
    };
    let status = match i {
        0 | 9 => "draft",
        1 | 2 | 5..=8 => "published",
        3 => "archived",
        4 => "scheduled",
        _ => match rng.random_range(0..100) {
            0..15 => "draft",
            15..25 => "scheduled",
            25..85 => "published",
            _ => "archived",
        },
    };
    // Most archived posts were published first.
    let was_published =
        status == "published" || (status == "archived" && (rng.random_bool(0.8) || i == 3));
    (platform, status, was_published)
}

struct Times {
    created_at: i64,
    scheduled_at: Option<i64>,
    published_at: Option<i64>,
    updated_at: i64,
}

fn post_times(rng: &mut R, user: &User, status: &str, was_published: bool) -> Times {
    let created_at = between(rng, user.created_at, END);
    let mut scheduled_at = None;
    let mut published_at = None;
    if status == "scheduled" {
        scheduled_at = Some(created_at + between(rng, HOUR, 21 * DAY));
    } else if was_published {
        if rng.random_bool(0.3) {
            let at = created_at + between(rng, HOUR, 7 * DAY);
            scheduled_at = Some(at);
            published_at = Some(at + between(rng, 0, 90 * SEC));
        } else {
            published_at = Some(created_at + between(rng, 0, 3 * DAY));
        }
    }
    let updated_at = published_at.unwrap_or(created_at) + between(rng, 0, 30 * DAY);
    Times {
        created_at,
        scheduled_at,
        published_at,
        updated_at,
    }
}

/// A published post's external id, permalink and (on Instagram) shortcode.
fn post_links(
    rng: &mut R,
    i: usize,
    user: &User,
    is_tiktok: bool,
    video: bool,
) -> (Option<String>, Option<String>, Option<String>) {
    if is_tiktok {
        let ext =
            7_100_000_000_000_000_000u64 + i as u64 * 1_000_003 + rng.random_range(0..1_000_000u64);
        let link = format!("https://www.tiktok.com/@{}/video/{ext}", user.handle);
        (Some(ext.to_string()), Some(link), None)
    } else {
        let ext = 17_841_000_000_000_000u64 + i as u64 * 1000 + rng.random_range(0..1000u64);
        let sc = shortcode(rng);
        let kind = if video { "reel" } else { "p" };
        let link = format!("https://www.instagram.com/{kind}/{sc}/");
        (Some(ext.to_string()), Some(link), Some(sc))
    }
}

/// A published post's counters: reach from the user's followers, now and
/// then a viral one.
fn post_counters(rng: &mut R, i: usize, user: &User) -> Counters {
    let viral = if rng.random_bool(0.03) {
        rng.random_range(5.0..40.0)
    } else {
        1.0
    };
    let r = user.followers * rng.random_range(0.05..1.2) * viral;
    let l = r * rng.random_range(0.01..0.15);
    let reach = clamp_i32(r);
    let impressions = clamp_i32(r * rng.random_range(1.0..1.9));
    let likes = clamp_i32(l);
    let comments = clamp_i32(l * rng.random_range(0.003..0.08));
    let shares = clamp_i32(l * rng.random_range(0.0..0.06));
    let saves = clamp_i32(l * rng.random_range(0.0..0.12));
    let engagement_rate = engagement(
        rng,
        i != 6,
        [likes, comments, shares, saves].map(Some),
        Some(reach),
    );
    Counters {
        likes,
        comments,
        shares,
        saves,
        reach,
        impressions,
        engagement_rate,
    }
}

/// Engagement rate in thousandths of a percent, numeric(6,3)-safe; NULL when
/// the app could not compute it (and sometimes for no reason at all).
pub(super) fn engagement(
    rng: &mut R,
    allow: bool,
    interactions: [Option<i32>; 4],
    reach: Option<i32>,
) -> Option<i32> {
    let reach = reach.filter(|&r| r > 0)?;
    let sum: Option<i64> = interactions
        .iter()
        .map(|c| c.map(i64::from))
        .sum::<Option<i64>>();
    let sum = sum?;
    if !allow || rng.random_bool(0.08) {
        return None;
    }
    let milli = (sum as f64 / f64::from(reach) * 100_000.0).round();
    Some(milli.min(999_999.0) as i32)
}

/// The app's analysis of the post (JSON text), for some posts.
fn post_insights(
    rng: &mut R,
    i: usize,
    was_published: bool,
    topic: &Topic,
    second: usize,
    updated_at: i64,
) -> Option<String> {
    if i == 0 || rng.random_bool(if was_published { 0.2 } else { 0.7 }) {
        return None;
    }
    let topics: Vec<&str> = match rng.random_range(0..10) {
        0 => vec![],
        1..5 => vec![topic.name],
        _ => vec![topic.name, TOPICS[second].name],
    };
    let n_suggestions = rng.random_range(0..=3);
    let suggestions: Vec<&str> = SUGGESTIONS
        .choose_multiple(rng, n_suggestions)
        .copied()
        .collect();
    let sentiment = *pick(rng, &["positive", "neutral", "negative", "mixed"]);
    let score = (rng.random_range(-1.0f64..1.0) * 100.0).round() / 100.0;
    let analyzed = iso(updated_at + between(rng, 0, 5 * DAY));
    let model = *pick(rng, &["gpt-3.5-turbo", "gpt-4o-mini"]);
    Some(
        json!({
            "topics": topics,
            "sentiment": sentiment,
            "sentiment_score": score,
            "suggestions": suggestions,
            "model": model,
            "analyzed_at": analyzed,
        })
        .to_string(),
    )
}

fn post_caption(
    rng: &mut R,
    i: usize,
    status: &str,
    topic: &Topic,
    hashtags: &[String],
) -> Option<String> {
    match i {
        0 => Some(
            "Sunday reset 🧘‍♀️✨ My coach said: \"don't skip leg day\" ¯\\_(ツ)_/¯\tsaved in \
             C:\\Users\\me\r\nnext line: 日本語テキスト 👩🏽‍💻 Zoë's café — {braces}, [brackets]\n\n#selfcare"
                .to_string(),
        ),
        1 => Some(long_caption(rng, topic, 12_000)),
        9 => None,
        _ if rng.random_bool(0.004) => {
            let min = rng.random_range(10_000..25_000);
            Some(long_caption(rng, topic, min))
        }
        _ if rng.random_bool(if status == "draft" { 0.2 } else { 0.02 }) => None,
        _ => Some(caption(rng, topic, hashtags)),
    }
}

fn post_embedding(rng: &mut R, i: usize, main: usize, second: usize) -> Option<Emb> {
    match i {
        0 => None,
        1 => Some(true),
        _ => Some(rng.random_bool(0.7)),
    }
    .filter(|&e| e)
    .map(|_| Emb {
        seed: rng.random(),
        main,
        second,
        mix: rng.random_range(0.0..0.5),
    })
}
