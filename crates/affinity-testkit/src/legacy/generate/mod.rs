//! Every table's rows from the seed, one random stream per table, and the
//! small helpers they share.

mod chats;
mod generations;
mod hashtags;
mod media;
mod posts;
mod scrape_rows;
mod scraped;
mod snapshots;
mod text;
mod users;

use anyhow::{ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::model::Data;
use super::LegacyConfig;
use chats::gen_chats;
use generations::gen_generations;
use hashtags::gen_hashtag_stats;
use posts::gen_posts;
use scraped::gen_scraped;
use snapshots::gen_snapshots;
use users::gen_users;

type R = ChaCha8Rng;

/// Every table's rows, from the seed alone.
pub(super) fn generate(cfg: &LegacyConfig) -> Result<Data> {
    ensure!(
        cfg.users > 0 || cfg.posts == 0,
        "posts need at least one user"
    );
    let mut master = R::seed_from_u64(cfg.seed);
    // One stream per table, so changing one table's generator leaves the
    // others' data as it was.
    let mut seeds = [0u64; 8];
    for s in &mut seeds {
        *s = master.random();
    }
    let [centroid_seed, s_users, s_posts, s_snap, s_chat, s_obsolete, s_scrape, _] = seeds;

    let users = gen_users(&mut R::seed_from_u64(s_users), cfg.users);
    let posts = gen_posts(&mut R::seed_from_u64(s_posts), &users, cfg.posts);
    let snapshots = gen_snapshots(&mut R::seed_from_u64(s_snap), &posts);
    let chats = gen_chats(&mut R::seed_from_u64(s_chat), &users);
    let mut rng = R::seed_from_u64(s_obsolete);
    let generations = gen_generations(&mut rng, &users);
    let hashtag_stats = gen_hashtag_stats(&mut rng, &users);
    let (scraped_posts, scraped_data) =
        gen_scraped(&mut R::seed_from_u64(s_scrape), &users, &posts);
    Ok(Data {
        centroid_seed,
        users,
        posts,
        snapshots,
        chats,
        generations,
        hashtag_stats,
        scraped_posts,
        scraped_data,
    })
}

fn new_uuid(rng: &mut R) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn pick<'a, T>(rng: &mut R, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// A time in [lo, hi), or lo when the range is empty.
fn between(rng: &mut R, lo: i64, hi: i64) -> i64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// `x` with probability `1 - p_null`, else NULL.
fn maybe<T>(rng: &mut R, p_null: f64, x: T) -> Option<T> {
    if rng.random_bool(p_null) {
        None
    } else {
        Some(x)
    }
}

/// Like [`maybe`], for values that need the generator themselves.
fn maybe_with<T>(rng: &mut R, p_null: f64, make: impl FnOnce(&mut R) -> T) -> Option<T> {
    if rng.random_bool(p_null) {
        None
    } else {
        Some(make(rng))
    }
}

fn hex(rng: &mut R, n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..n)
        .map(|_| char::from(HEX[rng.random_range(0..16)]))
        .collect()
}

fn shortcode(rng: &mut R) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..11)
        .map(|_| char::from(B64[rng.random_range(0..64)]))
        .collect()
}

fn clamp_i32(x: f64) -> i32 {
    x.clamp(0.0, 2_000_000_000.0) as i32
}
