//! What a post shows besides its text: hashtags, media URLs, media type and
//! thumbnail.

use rand::seq::IndexedRandom;
use rand::Rng;

use super::users::media_url;
use super::{maybe, maybe_with, pick, R};
use crate::legacy::model::User;
use crate::legacy::words::{Topic, AWKWARD_TAGS, GENERIC_TAGS, TOPICS};

/// Hashtags: 0..=10 distinct tags, a few clients stored the '#'.
pub(super) fn post_hashtags(rng: &mut R, i: usize, topic: &Topic, second: usize) -> Vec<String> {
    if i == 0 {
        return AWKWARD_TAGS.iter().map(|t| (*t).to_string()).collect();
    }
    let k = if rng.random_bool(0.12) {
        0
    } else {
        rng.random_range(1..=10)
    };
    let mut pool: Vec<&str> = topic
        .tags
        .iter()
        .chain(TOPICS[second].tags)
        .chain(GENERIC_TAGS)
        .copied()
        .collect();
    // Main and second topic may be the same one.
    pool.sort_unstable();
    pool.dedup();
    let hash = rng.random_bool(0.05);
    pool.choose_multiple(rng, k)
        .map(|t| {
            if hash {
                format!("#{t}")
            } else {
                (*t).to_string()
            }
        })
        .collect()
}

pub(super) struct Media {
    pub(super) urls: Vec<String>,
    pub(super) media_type: Option<&'static str>,
    pub(super) thumbnail_url: Option<String>,
    /// From the media type as first drawn (a post's links follow it).
    pub(super) video: bool,
}

/// Media: mostly one image, carousels of up to 10, some reuse of the
/// user's own pool (brand assets) so URLs repeat across posts.
pub(super) fn post_media(rng: &mut R, i: usize, user: &User, is_tiktok: bool) -> Media {
    let n_media = match i {
        0 => 0,
        1 => 10,
        _ if is_tiktok => usize::from(!rng.random_bool(0.1)),
        _ => match rng.random_range(0..100) {
            0..8 => 0,
            8..63 => 1,
            _ => rng.random_range(2..=10),
        },
    };
    let mut media_type = draw_media_type(rng, n_media, is_tiktok);
    let video = matches!(media_type, Some("video" | "reel"));
    let mut urls: Vec<String> = Vec::with_capacity(n_media);
    for _ in 0..n_media {
        let reuse = rng
            .random_bool(0.25)
            .then(|| pick(rng, &user.url_pool).clone());
        // The same URL twice in one post is rare, not the rule.
        let url = match reuse {
            Some(u) if !urls.contains(&u) || rng.random_bool(0.05) => u,
            _ => media_url(rng, user, video),
        };
        urls.push(url);
    }
    if i == 1 {
        // The same image twice in one carousel, and an upload with spaces.
        urls[7] = urls[3].clone();
        urls[8] = format!(
            "https://cdn.affinity.app/uploads/{}/IMG 4032 (1).JPG",
            user.handle
        );
    }
    if (i == 4 || i == 5) && !user.url_pool.is_empty() {
        if urls.is_empty() {
            urls.push(String::new());
            media_type = Some("image");
        }
        urls[0] = user.url_pool[0].clone();
    }
    let thumbnail_url = match media_type {
        Some("video" | "reel") => maybe_with(rng, 0.15, |rng| media_url(rng, user, false)),
        Some(_) => urls.first().cloned().filter(|_| rng.random_bool(0.7)),
        None => None,
    };
    Media {
        urls,
        media_type,
        thumbnail_url,
        video,
    }
}

fn draw_media_type(rng: &mut R, n_media: usize, is_tiktok: bool) -> Option<&'static str> {
    if n_media == 1 {
        if is_tiktok {
            Some("video")
        } else {
            match rng.random_range(0..100) {
                0..60 => Some("image"),
                60..75 => Some("video"),
                75..95 => Some("reel"),
                _ => None,
            }
        }
    } else if n_media > 1 {
        maybe(rng, 0.1, "carousel")
    } else {
        None
    }
}
