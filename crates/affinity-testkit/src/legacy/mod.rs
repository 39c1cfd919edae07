//! A seeded, deterministic generator of realistic legacy data.
//!
//! [`create_and_fill`] builds the legacy schema ([`LEGACY_SCHEMA`]) in an empty
//! database and loads it with data shaped like production: skewed activity,
//! NULLs where the app left them, messy text (emoji, quotes, backslashes,
//! tabs, CRLF, very long captions), shared media URLs, embeddings that
//! cluster by topic, counter snapshots with gaps, and the two overlapping
//! scraper tables. Tests use it to prove the migrations lose no row.
//!
//! Everything comes from one seed: the same [`LegacyConfig`] always yields
//! byte-identical data (no `now()`, no random defaults). Rows are loaded with
//! `COPY ... FROM STDIN` in text format.
//!
//! Inside: `generate` makes every table's rows (`model`) from the seed, with
//! words from `words`; `load` streams them in the COPY text format (`copy`),
//! computing the embeddings on the way (`embed`).

mod copy;
mod embed;
mod generate;
mod load;
mod model;
mod words;

use anyhow::{Context, Result};
use sqlx::PgPool;

use embed::{Embedder, DIM};
use generate::generate;
use load::{
    copy_rows, write_chat, write_generation, write_hashtag_stat, write_post, write_scraped_data,
    write_scraped_post, write_snapshot, write_user, COPY_ANALYTICS, COPY_CHAT, COPY_GENERATIONS,
    COPY_HASHTAGS, COPY_POSTS, COPY_SCRAPED_DATA, COPY_SCRAPED_POSTS, COPY_USERS,
};

/// The legacy schema (several statements; run it with `sqlx::raw_sql`).
pub const LEGACY_SCHEMA: &str = include_str!("schema.sql");

/// What to generate: the seed and the size.
#[derive(Debug, Clone)]
pub struct LegacyConfig {
    pub seed: u64,
    pub users: usize,
    pub posts: usize,
}

impl LegacyConfig {
    /// The size the tests use: a few thousand users and posts.
    pub fn standard() -> Self {
        Self {
            seed: 42,
            users: 2000,
            posts: 6000,
        }
    }

    /// A small data set for fast tests; still holds every awkward case.
    pub fn small() -> Self {
        Self {
            seed: 7,
            users: 60,
            posts: 200,
        }
    }
}

/// Rows actually inserted, per table.
#[derive(Debug, Clone, Default)]
pub struct LegacyStats {
    pub user_profiles: u64,
    pub posts: u64,
    pub post_analytics: u64,
    pub chat_messages: u64,
    pub content_generations: u64,
    pub hashtag_analytics: u64,
    pub instagram_scraped_posts: u64,
    pub scraped_instagram_data: u64,
}

/// Creates the legacy schema (executes [`LEGACY_SCHEMA`]) in the connected,
/// empty database and fills it.
pub async fn create_and_fill(pool: &PgPool, cfg: &LegacyConfig) -> Result<LegacyStats> {
    sqlx::raw_sql(LEGACY_SCHEMA)
        .execute(pool)
        .await
        .context("creating the legacy schema")?;
    let data = generate(cfg)?;
    let emb = Embedder::new(data.centroid_seed);
    let mut vec_buf = vec![0f32; DIM];

    // FK order: users first, then everything that references them.
    let user_profiles = copy_rows(pool, COPY_USERS, &data.users, write_user).await?;
    let posts = copy_rows(pool, COPY_POSTS, &data.posts, |b, p| {
        write_post(b, p, &emb, &mut vec_buf)
    })
    .await?;
    let post_analytics = copy_rows(pool, COPY_ANALYTICS, &data.snapshots, write_snapshot).await?;
    let chat_messages = copy_rows(pool, COPY_CHAT, &data.chats, |b, m| {
        write_chat(b, m, &emb, &mut vec_buf)
    })
    .await?;
    let content_generations =
        copy_rows(pool, COPY_GENERATIONS, &data.generations, write_generation).await?;
    let hashtag_analytics =
        copy_rows(pool, COPY_HASHTAGS, &data.hashtag_stats, write_hashtag_stat).await?;
    let instagram_scraped_posts = copy_rows(
        pool,
        COPY_SCRAPED_POSTS,
        &data.scraped_posts,
        write_scraped_post,
    )
    .await?;
    let scraped_instagram_data = copy_rows(
        pool,
        COPY_SCRAPED_DATA,
        &data.scraped_data,
        write_scraped_data,
    )
    .await?;
    let stats = LegacyStats {
        user_profiles,
        posts,
        post_analytics,
        chat_messages,
        content_generations,
        hashtag_analytics,
        instagram_scraped_posts,
        scraped_instagram_data,
    };

    // Fresh statistics, so the first queries on the legacy data plan sensibly.
    sqlx::raw_sql("ANALYZE")
        .execute(pool)
        .await
        .context("analyzing the legacy tables")?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_all(cfg: &LegacyConfig) -> Vec<u8> {
        let data = generate(cfg).expect("generate");
        let emb = Embedder::new(data.centroid_seed);
        let mut scratch = vec![0f32; DIM];
        let mut b = Vec::new();
        data.users.iter().for_each(|r| write_user(&mut b, r));
        for p in &data.posts {
            write_post(&mut b, p, &emb, &mut scratch);
        }
        data.snapshots
            .iter()
            .for_each(|r| write_snapshot(&mut b, r));
        for m in &data.chats {
            write_chat(&mut b, m, &emb, &mut scratch);
        }
        data.generations
            .iter()
            .for_each(|r| write_generation(&mut b, r));
        data.hashtag_stats
            .iter()
            .for_each(|r| write_hashtag_stat(&mut b, r));
        data.scraped_posts
            .iter()
            .for_each(|r| write_scraped_post(&mut b, r));
        data.scraped_data
            .iter()
            .for_each(|r| write_scraped_data(&mut b, r));
        b
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = render_all(&LegacyConfig::small());
        assert_eq!(a, render_all(&LegacyConfig::small()));
        let other = LegacyConfig {
            seed: 8,
            ..LegacyConfig::small()
        };
        assert_ne!(a, render_all(&other));
    }

    #[test]
    fn tiny_configs_do_not_panic() {
        for (users, posts) in [(0, 0), (1, 0), (1, 1), (2, 3), (3, 12)] {
            let cfg = LegacyConfig {
                seed: 1,
                users,
                posts,
            };
            render_all(&cfg);
        }
        assert!(generate(&LegacyConfig {
            seed: 1,
            users: 0,
            posts: 1
        })
        .is_err());
    }
}
