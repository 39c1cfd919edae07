//! Loading: each table's rows streamed through one `COPY ... FROM STDIN`.

use anyhow::{ensure, Context, Result};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;

use super::copy::Line;
use super::embed::Embedder;
use super::model::{
    ChatMessage, Generation, HashtagStat, Post, ScrapedData, ScrapedPost, Snapshot, User,
};

/// Bytes buffered before a `CopyData` message is sent.
const CHUNK: usize = 4 << 20;

pub(super) const COPY_USERS: &str = "COPY user_profiles (id, email, full_name, avatar_url, \
    instagram_username, plan, created_at, updated_at) FROM STDIN";
pub(super) const COPY_POSTS: &str =
    "COPY posts (id, user_id, platform, external_id, status, caption, \
    content, hashtags, media_urls, media_type, thumbnail_url, permalink, scheduled_at, \
    published_at, likes_count, comments_count, shares_count, saves_count, reach, impressions, \
    engagement_rate, insights, embedding, created_at, updated_at) FROM STDIN";
pub(super) const COPY_ANALYTICS: &str =
    "COPY post_analytics (post_id, recorded_at, likes, comments, \
    shares, saves, reach, impressions, engagement_rate) FROM STDIN";
pub(super) const COPY_CHAT: &str = "COPY chat_messages (id, user_id, session_id, role, content, \
    embedding, created_at) FROM STDIN";
pub(super) const COPY_GENERATIONS: &str = "COPY content_generations (id, user_id, prompt, \
    generated_content, model, created_at) FROM STDIN";
pub(super) const COPY_HASHTAGS: &str = "COPY hashtag_analytics (user_id, hashtag, post_count, \
    avg_engagement, updated_at) FROM STDIN";
pub(super) const COPY_SCRAPED_POSTS: &str =
    "COPY instagram_scraped_posts (id, user_id, shortcode, \
    owner_username, caption, like_count, comment_count, media_url, taken_at, scraped_at) \
    FROM STDIN";
pub(super) const COPY_SCRAPED_DATA: &str = "COPY scraped_instagram_data (user_id, post_shortcode, \
    username, caption_text, likes, comments, display_url, posted_at, raw, created_at) \
    FROM STDIN";

/// Streams `rows` through one `COPY ... FROM STDIN`; returns the rows inserted.
pub(super) async fn copy_rows<T>(
    pool: &PgPool,
    statement: &str,
    rows: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T),
) -> Result<u64> {
    let mut copy = pool
        .copy_in_raw(statement)
        .await
        .with_context(|| format!("starting {statement}"))?;
    let mut buf = Vec::with_capacity(CHUNK + (64 << 10));
    for row in rows {
        write(&mut buf, row);
        if buf.len() >= CHUNK {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_slice()).await?;
    }
    let n = copy
        .finish()
        .await
        .with_context(|| format!("finishing {statement}"))?;
    ensure!(
        n == rows.len() as u64,
        "{statement}: {n} rows inserted, {} sent",
        rows.len()
    );
    Ok(n)
}

pub(super) fn write_user(buf: &mut Vec<u8>, u: &User) {
    let mut l = Line::new(buf);
    l.uuid(u.id);
    l.opt_text(u.email.as_deref());
    l.opt_text(u.full_name.as_deref());
    l.opt_text(u.avatar_url.as_deref());
    l.opt_text(u.instagram_username.as_deref());
    l.text(u.plan);
    l.ts(u.created_at);
    l.ts(u.updated_at);
    l.end();
}

pub(super) fn write_post(buf: &mut Vec<u8>, p: &Post, emb: &Embedder, scratch: &mut [f32]) {
    let mut l = Line::new(buf);
    l.uuid(p.id);
    l.uuid(p.user_id);
    l.text(p.platform);
    l.opt_text(p.external_id.as_deref());
    l.text(p.status);
    l.opt_text(p.caption.as_deref());
    l.opt_text(p.content.as_deref());
    l.text_array(&p.hashtags);
    l.text_array(&p.media_urls);
    l.opt_text(p.media_type);
    l.opt_text(p.thumbnail_url.as_deref());
    l.opt_text(p.permalink.as_deref());
    l.opt_ts(p.scheduled_at);
    l.opt_ts(p.published_at);
    let c = &p.counters;
    l.int(c.likes.into());
    l.int(c.comments.into());
    l.int(c.shares.into());
    l.int(c.saves.into());
    l.int(c.reach.into());
    l.int(c.impressions.into());
    l.numeric3(c.engagement_rate);
    l.opt_text(p.insights.as_deref());
    match &p.embedding {
        Some(e) => {
            emb.fill(e, scratch);
            l.vector(scratch);
        }
        None => l.null(),
    }
    l.ts(p.created_at);
    l.ts(p.updated_at);
    l.end();
}

pub(super) fn write_snapshot(buf: &mut Vec<u8>, s: &Snapshot) {
    let mut l = Line::new(buf);
    l.uuid(s.post_id);
    l.ts(s.recorded_at);
    for v in s.counters {
        l.opt_int(v);
    }
    l.numeric3(s.engagement_rate);
    l.end();
}

pub(super) fn write_chat(buf: &mut Vec<u8>, m: &ChatMessage, emb: &Embedder, scratch: &mut [f32]) {
    let mut l = Line::new(buf);
    l.uuid(m.id);
    l.uuid(m.user_id);
    l.uuid(m.session_id);
    l.text(m.role);
    l.text(&m.content);
    match &m.embedding {
        Some(e) => {
            emb.fill(e, scratch);
            l.vector(scratch);
        }
        None => l.null(),
    }
    l.ts(m.created_at);
    l.end();
}

pub(super) fn write_generation(buf: &mut Vec<u8>, g: &Generation) {
    let mut l = Line::new(buf);
    l.uuid(g.id);
    l.opt_uuid(g.user_id);
    l.text(&g.prompt);
    l.opt_text(g.generated_content.as_deref());
    l.opt_text(g.model);
    l.ts(g.created_at);
    l.end();
}

pub(super) fn write_hashtag_stat(buf: &mut Vec<u8>, h: &HashtagStat) {
    let mut l = Line::new(buf);
    l.opt_uuid(h.user_id);
    l.text(&h.hashtag);
    l.int(h.post_count.into());
    l.numeric3(h.avg_engagement);
    l.ts(h.updated_at);
    l.end();
}

pub(super) fn write_scraped_post(buf: &mut Vec<u8>, s: &ScrapedPost) {
    let mut l = Line::new(buf);
    l.uuid(s.id);
    l.opt_uuid(s.user_id);
    l.text(&s.shortcode);
    l.text(&s.owner_username);
    l.opt_text(s.caption.as_deref());
    l.opt_int(s.like_count);
    l.opt_int(s.comment_count);
    l.opt_text(s.media_url.as_deref());
    l.opt_ts(s.taken_at);
    l.ts(s.scraped_at);
    l.end();
}

pub(super) fn write_scraped_data(buf: &mut Vec<u8>, s: &ScrapedData) {
    let mut l = Line::new(buf);
    l.opt_uuid(s.user_id);
    l.text(&s.post_shortcode);
    l.text(&s.username);
    l.opt_text(s.caption_text.as_deref());
    l.opt_int(s.likes);
    l.opt_int(s.comments);
    l.opt_text(s.display_url.as_deref());
    l.opt_ts(s.posted_at);
    l.opt_text(s.raw.as_deref());
    l.ts(s.created_at);
    l.end();
}
