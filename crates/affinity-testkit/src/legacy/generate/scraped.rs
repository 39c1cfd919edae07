//! The two overlapping scraper tables, `instagram_scraped_posts` (the old
//! scraper) and `scraped_instagram_data` (the new one, with a JSON payload):
//! accounts the users watch and the users' own posts, each scraped a few
//! times, spread over both tables.

use rand::seq::IndexedRandom;
use rand::Rng;

use super::scrape_rows::emit_group;
use super::text::caption;
use super::{between, clamp_i32, maybe_with, pick, shortcode, R};
use crate::legacy::model::{Post, ScrapedData, ScrapedPost, User, BASE, DAY, END};
use crate::legacy::words::{Topic, FIRST_NAMES, HANDLE_WORDS, TOPICS};

/// An Instagram post as the scrapers saw it.
pub(super) struct IgPost {
    pub(super) shortcode: String,
    pub(super) owner: String,
    pub(super) caption: Option<String>,
    pub(super) taken_at: i64,
    pub(super) likes: i32,
    pub(super) comments: i32,
    pub(super) typename: &'static str,
    pub(super) media_id: u64,
}

const TYPENAMES: &[&str] = &["GraphImage", "GraphSidecar", "GraphVideo"];

fn ig_post(rng: &mut R, owner: String, topic: &Topic, taken_at: i64, followers: f64) -> IgPost {
    let likes = clamp_i32(followers * rng.random_range(0.005..0.1));
    IgPost {
        shortcode: shortcode(rng),
        owner,
        caption: maybe_with(rng, 0.08, |rng| caption(rng, topic, &[])),
        taken_at,
        likes,
        comments: clamp_i32(f64::from(likes) * rng.random_range(0.005..0.05)),
        typename: TYPENAMES[rng.random_range(0..TYPENAMES.len())],
        media_id: rng.random_range(100_000_000_000_000_000u64..999_999_999_999_999_999),
    }
}

/// How one (user, shortcode) pair is spread over the two scraper tables:
/// `n1` rows in the first table, `n2` in the second; `newest_in_first`
/// forces which table holds the most recent scrape.
#[derive(Clone, Copy)]
pub(super) struct Spread {
    pub(super) n1: usize,
    pub(super) n2: usize,
    pub(super) newest_in_first: Option<bool>,
}

/// The rows of the two tables: `t1` the first, `t2` the second.
#[derive(Default)]
pub(super) struct Scrapes {
    pub(super) t1: Vec<ScrapedPost>,
    pub(super) t2: Vec<ScrapedData>,
}

pub(super) fn gen_scraped(
    rng: &mut R,
    users: &[User],
    posts: &[Post],
) -> (Vec<ScrapedPost>, Vec<ScrapedData>) {
    let mut ig_posts: Vec<IgPost> = Vec::new();
    let by_account = watched_accounts(rng, (users.len() / 25).max(8), &mut ig_posts);
    let own = users_own_posts(rng, users, posts, &mut ig_posts);
    let mut out = Scrapes::default();
    scrape_for_users(rng, users, &ig_posts, &by_account, &own, &mut out);
    scrape_without_user(rng, users.len(), &ig_posts, &mut out);
    let Scrapes { mut t1, mut t2 } = out;
    t1.sort_by_key(|r| r.scraped_at);
    t2.sort_by_key(|r| r.created_at);
    (t1, t2)
}

/// Accounts the users keep an eye on, each with its recent posts (added to
/// `ig_posts`): each account's indices there.
fn watched_accounts(rng: &mut R, n_accounts: usize, ig_posts: &mut Vec<IgPost>) -> Vec<Vec<usize>> {
    let mut by_account: Vec<Vec<usize>> = Vec::with_capacity(n_accounts);
    for a in 0..n_accounts {
        let owner = format!(
            "{}.{}{}",
            pick(rng, FIRST_NAMES).1,
            pick(rng, HANDLE_WORDS),
            a
        );
        let topic = &TOPICS[rng.random_range(0..TOPICS.len())];
        let followers = 10f64.powf(rng.random_range(3.5..6.5));
        let mut idx = Vec::new();
        for _ in 0..rng.random_range(5..=25) {
            let taken_at = between(rng, BASE - 60 * DAY, END - 30 * DAY);
            idx.push(ig_posts.len());
            ig_posts.push(ig_post(rng, owner.clone(), topic, taken_at, followers));
        }
        by_account.push(idx);
    }
    by_account
}

/// Users' own published Instagram posts are scraped too (same shortcode):
/// added to `ig_posts`, each user's indices there.
fn users_own_posts(
    rng: &mut R,
    users: &[User],
    posts: &[Post],
    ig_posts: &mut Vec<IgPost>,
) -> Vec<Vec<usize>> {
    let mut own: Vec<Vec<usize>> = vec![Vec::new(); users.len()];
    for p in posts {
        if let (Some(sc), Some(published)) = (&p.shortcode, p.published_at) {
            let u = &users[p.user_idx];
            let owner = u
                .instagram_username
                .clone()
                .unwrap_or_else(|| u.handle.clone());
            own[p.user_idx].push(ig_posts.len());
            ig_posts.push(IgPost {
                shortcode: sc.clone(),
                owner,
                caption: p.caption.clone(),
                taken_at: published,
                likes: p.counters.likes,
                comments: p.counters.comments,
                typename: if p.media_urls.len() > 1 {
                    "GraphSidecar"
                } else {
                    "GraphImage"
                },
                media_id: rng.random_range(100_000_000_000_000_000u64..999_999_999_999_999_999),
            });
        }
    }
    own
}

/// Some users' scrapes of their own and watched posts.
fn scrape_for_users(
    rng: &mut R,
    users: &[User],
    ig_posts: &[IgPost],
    by_account: &[Vec<usize>],
    own: &[Vec<usize>],
    out: &mut Scrapes,
) {
    // The first user's first pairs are the awkward cases the tests look for.
    let mut forced = [
        Spread {
            n1: 1,
            n2: 2,
            newest_in_first: Some(true),
        },
        Spread {
            n1: 1,
            n2: 3,
            newest_in_first: Some(false),
        },
        Spread {
            n1: 1,
            n2: 0,
            newest_in_first: None,
        },
        Spread {
            n1: 0,
            n2: 2,
            newest_in_first: None,
        },
    ]
    .into_iter();
    for (ui, u) in users.iter().enumerate() {
        if ui != 0 && !rng.random_bool(0.35) {
            continue;
        }
        let mut candidates: Vec<usize> = own[ui].clone();
        for _ in 0..rng.random_range(1..=4) {
            candidates.extend(&by_account[rng.random_range(0..by_account.len())]);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let k = if ui == 0 {
            rng.random_range(4..=8)
        } else {
            rng.random_range(1..=8)
        };
        let chosen: Vec<usize> = candidates.choose_multiple(rng, k).copied().collect();
        for ig in chosen {
            let spread = forced.next().unwrap_or_else(|| random_spread(rng));
            emit_group(rng, Some(u.id), &ig_posts[ig], spread, out);
        }
    }
}

/// Scrapes run without a user: NULL user_id. The first table's UNIQUE
/// (user_id, shortcode) does not stop repeats there, since NULLs differ.
fn scrape_without_user(rng: &mut R, n_users: usize, ig_posts: &[IgPost], out: &mut Scrapes) {
    for g in 0..(n_users / 20).max(3) {
        let ig = &ig_posts[rng.random_range(0..ig_posts.len())];
        let spread = if g == 0 {
            Spread {
                n1: 2,
                n2: 1,
                newest_in_first: None,
            }
        } else {
            random_spread(rng)
        };
        let start = out.t1.len();
        let start2 = out.t2.len();
        emit_group(rng, None, ig, spread, out);
        if g == 0 {
            // NULL counts and a NULL payload, guaranteed once.
            if let Some(r) = out.t1.get_mut(start) {
                r.like_count = None;
            }
            if let Some(r) = out.t2.get_mut(start2) {
                r.likes = None;
                r.raw = None;
            }
        }
    }
}

fn random_spread(rng: &mut R) -> Spread {
    let (n1, n2) = match rng.random_range(0..10) {
        0..3 => (1, 0),
        3..6 => (0, rng.random_range(1..=4)),
        _ => (1, rng.random_range(1..=4)),
    };
    Spread {
        n1,
        n2,
        newest_in_first: None,
    }
}
