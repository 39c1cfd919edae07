//! The rows one group of scrapes writes: one post seen a few times, by one
//! user or none, over the two scraper tables.

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use super::scraped::{IgPost, Scrapes, Spread};
use super::{between, hex, maybe, maybe_with, new_uuid, pick, R};
use crate::legacy::copy::iso;
use crate::legacy::model::{ScrapedData, ScrapedPost, BASE, DAY, END, HOUR, MIN, SEC};

/// What one scrape saw.
struct Seen {
    at: i64,
    url: Option<String>,
    taken_at: Option<i64>,
    like_count: Option<i32>,
    comment_count: Option<i32>,
}

/// Writes the scrapes of one post for one user (or none): `n1 + n2`
/// observations at distinct times with growing counts, spread over the two
/// tables.
pub(super) fn emit_group(
    rng: &mut R,
    user_id: Option<Uuid>,
    ig: &IgPost,
    spread: Spread,
    out: &mut Scrapes,
) {
    if spread.n1 + spread.n2 == 0 {
        return;
    }
    let in_first = tables_in_order(rng, spread);
    // Distinct, strictly increasing times: "most recent" is never a tie.
    let mut t = between(rng, ig.taken_at.max(BASE) + HOUR, END - 45 * DAY);
    let mut likes = (f64::from(ig.likes) * rng.random_range(0.3..0.8)) as i32;
    let mut comments = (f64::from(ig.comments) * rng.random_range(0.3..0.8)) as i32;
    let version_first = *pick(rng, &["1.4.2", "1.5.0"]);
    for &first in &in_first {
        t += between(rng, 10 * MIN, 20 * DAY);
        likes = likes.saturating_add(rng.random_range(1..=(ig.likes / 5).max(3)));
        comments = comments.saturating_add(rng.random_range(0..=(ig.comments / 5).max(1)));
        let url = maybe_with(rng, 0.05, |rng| signed_cdn_url(rng, ig.media_id));
        let taken_at = maybe(rng, 0.05, ig.taken_at);
        let like_count = maybe(rng, 0.06, likes);
        let comment_count = maybe(rng, 0.06, comments);
        let seen = Seen {
            at: t,
            url,
            taken_at,
            like_count,
            comment_count,
        };
        if first {
            out.t1.push(old_scraper_row(rng, user_id, ig, seen));
        } else {
            out.t2
                .push(new_scraper_row(rng, user_id, ig, seen, version_first));
        }
    }
}

/// For each scrape in time order, whether it lands in the first table.
fn tables_in_order(rng: &mut R, spread: Spread) -> Vec<bool> {
    let Spread {
        n1,
        n2,
        newest_in_first,
    } = spread;
    let m = n1 + n2;
    let mut in_first: Vec<bool> = (0..m).map(|k| k < n1).collect();
    in_first.shuffle(rng);
    match newest_in_first {
        Some(true) if !in_first[m - 1] => {
            if let Some(j) = in_first.iter().position(|&f| f) {
                in_first.swap(j, m - 1);
            }
        }
        Some(false) if in_first[m - 1] => {
            if let Some(j) = in_first.iter().position(|&f| !f) {
                in_first.swap(j, m - 1);
            }
        }
        _ => {}
    }
    in_first
}

fn old_scraper_row(rng: &mut R, user_id: Option<Uuid>, ig: &IgPost, seen: Seen) -> ScrapedPost {
    // The old scraper sometimes cut captions short.
    let caption = ig.caption.as_ref().map(|c| {
        if c.chars().count() > 80 && rng.random_bool(0.3) {
            let mut s: String = c.chars().take(80).collect();
            s.push('…');
            s
        } else {
            c.clone()
        }
    });
    ScrapedPost {
        id: new_uuid(rng),
        user_id,
        shortcode: ig.shortcode.clone(),
        owner_username: ig.owner.clone(),
        caption,
        like_count: seen.like_count,
        comment_count: seen.comment_count,
        media_url: seen.url,
        taken_at: seen.taken_at,
        scraped_at: seen.at,
    }
}

fn new_scraper_row(
    rng: &mut R,
    user_id: Option<Uuid>,
    ig: &IgPost,
    seen: Seen,
    version_first: &str,
) -> ScrapedData {
    let raw = if rng.random_bool(0.1) {
        None
    } else {
        let version = if rng.random_bool(0.5) {
            "2.0.1"
        } else {
            version_first
        };
        let caption_edges: Vec<Value> = ig
            .caption
            .iter()
            .map(|c| json!({ "node": { "text": c } }))
            .collect();
        Some(
            json!({
                "__typename": ig.typename,
                "id": ig.media_id.to_string(),
                "shortcode": ig.shortcode,
                "owner": { "username": ig.owner },
                "edge_media_preview_like": { "count": seen.like_count },
                "edge_media_to_comment": { "count": seen.comment_count },
                "edge_media_to_caption": {
                    "edges": caption_edges
                },
                "display_url": seen.url,
                "is_video": ig.typename == "GraphVideo",
                "taken_at_timestamp": seen.taken_at.map(|s| s / SEC),
                "scraper": { "version": version, "fetched_at": iso(seen.at) },
            })
            .to_string(),
        )
    };
    ScrapedData {
        user_id,
        post_shortcode: ig.shortcode.clone(),
        username: ig.owner.clone(),
        caption_text: ig.caption.clone(),
        likes: seen.like_count,
        comments: seen.comment_count,
        display_url: seen.url,
        posted_at: seen.taken_at,
        raw,
        created_at: seen.at,
    }
}

fn signed_cdn_url(rng: &mut R, media_id: u64) -> String {
    format!(
        "https://scontent-lhr8-{}.cdninstagram.com/v/t51.2885-15/{media_id}_n.jpg?stp=dst-jpg_e35&_nc_ht=scontent-lhr8-1.cdninstagram.com&oh=00_{}&oe={}",
        rng.random_range(1..3),
        hex(rng, 32),
        hex(rng, 8).to_uppercase()
    )
}
