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

use anyhow::{ensure, Context, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;
use uuid::Uuid;

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

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Bytes buffered before a `CopyData` message is sent.
const CHUNK: usize = 4 << 20;

const COPY_USERS: &str = "COPY user_profiles (id, email, full_name, avatar_url, \
    instagram_username, plan, created_at, updated_at) FROM STDIN";
const COPY_POSTS: &str = "COPY posts (id, user_id, platform, external_id, status, caption, \
    content, hashtags, media_urls, media_type, thumbnail_url, permalink, scheduled_at, \
    published_at, likes_count, comments_count, shares_count, saves_count, reach, impressions, \
    engagement_rate, insights, embedding, created_at, updated_at) FROM STDIN";
const COPY_ANALYTICS: &str = "COPY post_analytics (post_id, recorded_at, likes, comments, \
    shares, saves, reach, impressions, engagement_rate) FROM STDIN";
const COPY_CHAT: &str = "COPY chat_messages (id, user_id, session_id, role, content, \
    embedding, created_at) FROM STDIN";
const COPY_GENERATIONS: &str = "COPY content_generations (id, user_id, prompt, \
    generated_content, model, created_at) FROM STDIN";
const COPY_HASHTAGS: &str = "COPY hashtag_analytics (user_id, hashtag, post_count, \
    avg_engagement, updated_at) FROM STDIN";
const COPY_SCRAPED_POSTS: &str = "COPY instagram_scraped_posts (id, user_id, shortcode, \
    owner_username, caption, like_count, comment_count, media_url, taken_at, scraped_at) \
    FROM STDIN";
const COPY_SCRAPED_DATA: &str = "COPY scraped_instagram_data (user_id, post_shortcode, \
    username, caption_text, likes, comments, display_url, posted_at, raw, created_at) \
    FROM STDIN";

/// Streams `rows` through one `COPY ... FROM STDIN`; returns the rows inserted.
async fn copy_rows<T>(
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

fn write_user(buf: &mut Vec<u8>, u: &User) {
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

fn write_post(buf: &mut Vec<u8>, p: &Post, emb: &Embedder, scratch: &mut [f32]) {
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
    l.int(p.likes.into());
    l.int(p.comments.into());
    l.int(p.shares.into());
    l.int(p.saves.into());
    l.int(p.reach.into());
    l.int(p.impressions.into());
    l.numeric3(p.engagement_rate);
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

fn write_snapshot(buf: &mut Vec<u8>, s: &Snapshot) {
    let mut l = Line::new(buf);
    l.uuid(s.post_id);
    l.ts(s.recorded_at);
    for v in s.counters {
        l.opt_int(v);
    }
    l.numeric3(s.engagement_rate);
    l.end();
}

fn write_chat(buf: &mut Vec<u8>, m: &ChatMessage, emb: &Embedder, scratch: &mut [f32]) {
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

fn write_generation(buf: &mut Vec<u8>, g: &Generation) {
    let mut l = Line::new(buf);
    l.uuid(g.id);
    l.opt_uuid(g.user_id);
    l.text(&g.prompt);
    l.opt_text(g.generated_content.as_deref());
    l.opt_text(g.model);
    l.ts(g.created_at);
    l.end();
}

fn write_hashtag_stat(buf: &mut Vec<u8>, h: &HashtagStat) {
    let mut l = Line::new(buf);
    l.opt_uuid(h.user_id);
    l.text(&h.hashtag);
    l.int(h.post_count.into());
    l.numeric3(h.avg_engagement);
    l.ts(h.updated_at);
    l.end();
}

fn write_scraped_post(buf: &mut Vec<u8>, s: &ScrapedPost) {
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

fn write_scraped_data(buf: &mut Vec<u8>, s: &ScrapedData) {
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

// ---------------------------------------------------------------------------
// COPY text format
// ---------------------------------------------------------------------------

/// One line of COPY text format: tab-separated fields, `\N` for NULL.
struct Line<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Line<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.buf.push(b'\t');
        }
        self.first = false;
    }

    fn null(&mut self) {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
    }

    fn text(&mut self, s: &str) {
        self.sep();
        escape_copy(self.buf, s);
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    fn uuid(&mut self, u: Uuid) {
        self.sep();
        let mut tmp = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.buf
            .extend_from_slice(u.hyphenated().encode_lower(&mut tmp).as_bytes());
    }

    fn opt_uuid(&mut self, u: Option<Uuid>) {
        match u {
            Some(u) => self.uuid(u),
            None => self.null(),
        }
    }

    fn int(&mut self, n: i64) {
        self.sep();
        push_int(self.buf, n);
    }

    fn opt_int(&mut self, n: Option<i32>) {
        match n {
            Some(n) => self.int(n.into()),
            None => self.null(),
        }
    }

    fn ts(&mut self, us: i64) {
        self.sep();
        push_ts(self.buf, us);
    }

    fn opt_ts(&mut self, us: Option<i64>) {
        match us {
            Some(us) => self.ts(us),
            None => self.null(),
        }
    }

    /// numeric(6,3) from thousandths.
    fn numeric3(&mut self, milli: Option<i32>) {
        match milli {
            Some(m) => {
                self.sep();
                push_numeric3(self.buf, m);
            }
            None => self.null(),
        }
    }

    fn text_array(&mut self, items: &[String]) {
        self.sep();
        escape_copy(self.buf, &array_literal(items));
    }

    fn vector(&mut self, v: &[f32]) {
        self.sep();
        push_vector(self.buf, v);
    }

    fn end(self) {
        self.buf.push(b'\n');
    }
}

/// Escapes a value for the COPY text format (the characters that would
/// otherwise end the field, the row, or start an escape).
fn escape_copy(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

/// A PostgreSQL array literal of text. Every element is quoted, so commas,
/// braces, spaces and the word NULL stay plain text.
fn array_literal(items: &[String]) -> String {
    let mut s = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    s.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
    }
    s.push('}');
    s
}

fn push_int(buf: &mut Vec<u8>, n: i64) {
    if n < 0 {
        buf.push(b'-');
    }
    push_uint(buf, n.unsigned_abs());
}

fn push_uint(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `n` zero-padded to `width` digits.
fn push_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut n = n;
    let mut i = tmp.len();
    while n > 0 {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = (tmp.len() - width).min(i);
    buf.extend_from_slice(&tmp[start..]);
}

fn push_numeric3(buf: &mut Vec<u8>, milli: i32) {
    if milli < 0 {
        buf.push(b'-');
    }
    let m = u64::from(milli.unsigned_abs());
    push_uint(buf, m / 1000);
    buf.push(b'.');
    push_padded(buf, m % 1000, 3);
}

/// A pgvector literal, each component rounded to 6 decimals (about 4 to 6
/// significant digits for unit vectors of this size) and printed without
/// trailing zeros.
fn push_vector(buf: &mut Vec<u8>, v: &[f32]) {
    buf.push(b'[');
    for (i, &x) in v.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let n = (f64::from(x) * 1e6).round() as i64;
        if n < 0 {
            buf.push(b'-');
        }
        let a = n.unsigned_abs();
        push_uint(buf, a / 1_000_000);
        let mut frac = a % 1_000_000;
        if frac != 0 {
            let mut width = 6;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            buf.push(b'.');
            push_padded(buf, frac, width);
        }
    }
    buf.push(b']');
}

/// A timestamptz literal in UTC with microseconds, independent of the
/// session's TimeZone.
fn push_ts(buf: &mut Vec<u8>, us: i64) {
    let (y, mo, d, h, mi, s, micro) = civil(us);
    push_padded(buf, y as u64, 4);
    buf.push(b'-');
    push_padded(buf, mo.into(), 2);
    buf.push(b'-');
    push_padded(buf, d.into(), 2);
    buf.push(b' ');
    push_padded(buf, h.into(), 2);
    buf.push(b':');
    push_padded(buf, mi.into(), 2);
    buf.push(b':');
    push_padded(buf, s.into(), 2);
    buf.push(b'.');
    push_padded(buf, micro.into(), 6);
    buf.extend_from_slice(b"+00");
}

/// ISO 8601 text for timestamps inside JSON payloads.
fn iso(us: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(us);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Splits microseconds since the Unix epoch into UTC calendar fields
/// (Howard Hinnant's days-to-civil algorithm).
fn civil(us: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = us.div_euclid(1_000_000);
    let micro = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, micro)
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

const DIM: usize = 1536;
/// Noise relative to a topic centroid: two posts of the same topic land at a
/// cosine similarity around 0.6, posts of unrelated topics around 0.
const NOISE: f32 = 0.8;

/// What an embedding is made of; the vector itself is computed while writing
/// (6 KB each would be a lot to keep around for no reason).
#[derive(Debug, Clone)]
struct Emb {
    seed: u64,
    main: usize,
    second: usize,
    mix: f32,
}

struct Embedder {
    centroids: Vec<Vec<f32>>,
}

impl Embedder {
    fn new(seed: u64) -> Self {
        let mut sm = SplitMix(seed);
        let centroids = (0..TOPICS.len())
            .map(|_| (0..DIM).map(|_| sm.unit()).collect())
            .collect();
        Self { centroids }
    }

    /// A unit vector: the main topic's centroid, a bit of a second topic and
    /// noise.
    fn fill(&self, e: &Emb, out: &mut [f32]) {
        let mut sm = SplitMix(e.seed);
        let a = &self.centroids[e.main % self.centroids.len()];
        let b = &self.centroids[e.second % self.centroids.len()];
        let mut norm = 0f32;
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + e.mix * y + NOISE * sm.unit();
            norm += *o * *o;
        }
        let inv = 1.0 / norm.sqrt().max(f32::MIN_POSITIVE);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// A tiny fast generator for the bulk noise of embeddings (ChaCha is
/// needlessly slow for ten million floats in a debug build).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

// ---------------------------------------------------------------------------
// The data model
// ---------------------------------------------------------------------------

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2024-01-01T00:00:00Z.
const BASE: i64 = 1_704_067_200 * SEC;
/// 2025-06-30T00:00:00Z.
const END: i64 = 1_751_241_600 * SEC;

struct Data {
    centroid_seed: u64,
    users: Vec<User>,
    posts: Vec<Post>,
    snapshots: Vec<Snapshot>,
    chats: Vec<ChatMessage>,
    generations: Vec<Generation>,
    hashtag_stats: Vec<HashtagStat>,
    scraped_posts: Vec<ScrapedPost>,
    scraped_data: Vec<ScrapedData>,
}

struct User {
    id: Uuid,
    email: Option<String>,
    full_name: Option<String>,
    avatar_url: Option<String>,
    instagram_username: Option<String>,
    plan: &'static str,
    created_at: i64,
    updated_at: i64,
    // Generation only.
    handle: String,
    followers: f64,
    /// Relative posting activity; 0 for users who never post.
    activity: f64,
    topics: (usize, usize),
    url_style: u8,
    url_pool: Vec<String>,
}

struct Post {
    id: Uuid,
    user_id: Uuid,
    platform: &'static str,
    external_id: Option<String>,
    status: &'static str,
    caption: Option<String>,
    content: Option<String>,
    hashtags: Vec<String>,
    media_urls: Vec<String>,
    media_type: Option<&'static str>,
    thumbnail_url: Option<String>,
    permalink: Option<String>,
    scheduled_at: Option<i64>,
    published_at: Option<i64>,
    likes: i32,
    comments: i32,
    shares: i32,
    saves: i32,
    reach: i32,
    impressions: i32,
    engagement_rate: Option<i32>,
    insights: Option<String>,
    embedding: Option<Emb>,
    created_at: i64,
    updated_at: i64,
    // Generation only.
    user_idx: usize,
    shortcode: Option<String>,
}

struct Snapshot {
    post_id: Uuid,
    recorded_at: i64,
    /// likes, comments, shares, saves, reach, impressions.
    counters: [Option<i32>; 6],
    engagement_rate: Option<i32>,
}

struct ChatMessage {
    id: Uuid,
    user_id: Uuid,
    session_id: Uuid,
    role: &'static str,
    content: String,
    embedding: Option<Emb>,
    created_at: i64,
}

struct Generation {
    id: Uuid,
    user_id: Option<Uuid>,
    prompt: String,
    generated_content: Option<String>,
    model: Option<&'static str>,
    created_at: i64,
}

struct HashtagStat {
    user_id: Option<Uuid>,
    hashtag: String,
    post_count: i32,
    avg_engagement: Option<i32>,
    updated_at: i64,
}

struct ScrapedPost {
    id: Uuid,
    user_id: Option<Uuid>,
    shortcode: String,
    owner_username: String,
    caption: Option<String>,
    like_count: Option<i32>,
    comment_count: Option<i32>,
    media_url: Option<String>,
    taken_at: Option<i64>,
    scraped_at: i64,
}

struct ScrapedData {
    user_id: Option<Uuid>,
    post_shortcode: String,
    username: String,
    caption_text: Option<String>,
    likes: Option<i32>,
    comments: Option<i32>,
    display_url: Option<String>,
    posted_at: Option<i64>,
    raw: Option<String>,
    created_at: i64,
}

// ---------------------------------------------------------------------------
// Word banks
// ---------------------------------------------------------------------------

struct Topic {
    name: &'static str,
    phrases: &'static [&'static str],
    tags: &'static [&'static str],
    emoji: &'static [&'static str],
}

const TOPICS: [Topic; 16] = [
    Topic {
        name: "fitness",
        phrases: &[
            "leg day",
            "a 6am run",
            "my protein smoothie",
            "this HIIT workout",
            "a slow yoga flow",
            "a new deadlift PR",
        ],
        tags: &[
            "fitness",
            "gym",
            "workout",
            "fitfam",
            "yoga",
            "running",
            "motivation",
        ],
        emoji: &["💪", "🏋️", "🔥", "🧘‍♀️", "🏃‍♀️"],
    },
    Topic {
        name: "travel",
        phrases: &[
            "sunset in Lisbon",
            "this hidden beach",
            "the train through the Alps",
            "the market in Marrakech",
            "a weekend in Kyoto",
            "our road trip",
        ],
        tags: &[
            "travel",
            "wanderlust",
            "travelgram",
            "explore",
            "roadtrip",
            "beachlife",
        ],
        emoji: &["✈️", "🌍", "🏝️", "🗺️", "🌅"],
    },
    Topic {
        name: "food",
        phrases: &[
            "homemade pasta",
            "my sourdough starter",
            "ramen night",
            "vegan brownies",
            "taco Tuesday",
            "this brunch spread",
        ],
        tags: &["food", "foodie", "recipe", "homecooking", "vegan", "brunch"],
        emoji: &["🍝", "🍜", "🥑", "🍰", "🌮"],
    },
    Topic {
        name: "fashion",
        phrases: &[
            "the fall lookbook",
            "thrifted denim",
            "a capsule wardrobe",
            "street style in Milan",
            "the new drop",
        ],
        tags: &["fashion", "ootd", "style", "streetstyle", "thrift"],
        emoji: &["👗", "👠", "🧥", "🕶️"],
    },
    Topic {
        name: "tech",
        phrases: &[
            "my new desk setup",
            "this mechanical keyboard",
            "AI tools I use daily",
            "the side project launch",
            "productivity apps",
        ],
        tags: &["tech", "setup", "coding", "ai", "startup", "productivity"],
        emoji: &["💻", "⌨️", "🤖", "🚀"],
    },
    Topic {
        name: "photography",
        phrases: &[
            "golden hour",
            "shooting on 35mm film",
            "a long exposure",
            "this portrait session",
            "blue hour in the city",
        ],
        tags: &[
            "photography",
            "photooftheday",
            "filmisnotdead",
            "goldenhour",
            "portrait",
        ],
        emoji: &["📸", "🎞️", "🌄"],
    },
    Topic {
        name: "pets",
        phrases: &[
            "puppy zoomies",
            "the longest cat nap",
            "adoption day",
            "the dog park",
            "his new toy",
        ],
        tags: &[
            "dogsofinstagram",
            "catsofinstagram",
            "pets",
            "adoptdontshop",
            "puppy",
        ],
        emoji: &["🐶", "🐱", "🐾", "🦴"],
    },
    Topic {
        name: "beauty",
        phrases: &[
            "my skincare routine",
            "no-makeup makeup",
            "the summer glow",
            "this nail art",
        ],
        tags: &["skincare", "beauty", "makeup", "glowup", "nails"],
        emoji: &["💄", "✨", "💅", "🧴"],
    },
    Topic {
        name: "music",
        phrases: &[
            "the studio session",
            "our new single",
            "live at the Roxy",
            "a vinyl haul",
            "this guitar cover",
        ],
        tags: &["music", "newmusic", "livemusic", "vinyl", "guitar"],
        emoji: &["🎸", "🎶", "🎤", "🎧"],
    },
    Topic {
        name: "parenting",
        phrases: &[
            "the first day of school",
            "toddler art",
            "a family hike",
            "bedtime stories",
        ],
        tags: &["momlife", "parenting", "dadlife", "familytime", "kids"],
        emoji: &["👶", "👨‍👩‍👧", "🧸"],
    },
    Topic {
        name: "finance",
        phrases: &[
            "the monthly budget check-in",
            "index funds 101",
            "side hustle income",
            "saving for a house",
        ],
        tags: &["personalfinance", "investing", "budgeting", "money", "fire"],
        emoji: &["💸", "📈", "💰"],
    },
    Topic {
        name: "gaming",
        phrases: &[
            "the ranked grind",
            "this retro console",
            "a speedrun attempt",
            "the new controller",
        ],
        tags: &["gaming", "gamer", "twitch", "retrogaming", "esports"],
        emoji: &["🎮", "🕹️", "👾"],
    },
    Topic {
        name: "home",
        phrases: &[
            "the living room makeover",
            "my plant corner",
            "DIY shelves",
            "a cozy reading nook",
        ],
        tags: &["homedecor", "interiordesign", "diy", "plants", "cozyhome"],
        emoji: &["🏡", "🪴", "🛋️"],
    },
    Topic {
        name: "sustainability",
        phrases: &[
            "zero waste swaps",
            "the beach cleanup",
            "compost 101",
            "buying secondhand first",
        ],
        tags: &[
            "sustainability",
            "zerowaste",
            "ecofriendly",
            "climateaction",
            "slowfashion",
        ],
        emoji: &["🌱", "♻️", "🌎"],
    },
    Topic {
        name: "coffee",
        phrases: &[
            "latte art practice",
            "a slow pour-over",
            "the new roastery",
            "cold brew season",
        ],
        tags: &["coffee", "coffeetime", "latteart", "barista", "cafe"],
        emoji: &["☕", "🥐"],
    },
    Topic {
        name: "art",
        phrases: &[
            "a watercolor study",
            "my sketchbook tour",
            "the mural in progress",
            "commissions opening",
        ],
        tags: &["art", "artist", "illustration", "sketchbook", "watercolor"],
        emoji: &["🎨", "🖌️", "✏️"],
    },
];

const GENERIC_TAGS: &[&str] = &[
    "instagood",
    "reels",
    "explorepage",
    "love",
    "photooftheday",
    "instadaily",
    "fyp",
    "viral",
];

/// Hashtags a buggy client really stored: spaces, commas, quotes, braces, a
/// backslash, the word NULL, non-ASCII, and the same tag twice.
const AWKWARD_TAGS: &[&str] = &[
    "summer vibes",
    "a,b",
    "say \"hi\"",
    "{braces}",
    "back\\slash",
    "NULL",
    "日本旅行",
    "café",
    "travel",
    "travel",
];

const TEMPLATES: &[&str] = &[
    "{p} {e}",
    "Nothing beats {p} {e}",
    "Day 3 of {p} and I'm hooked {e}",
    "{p} — swipe for details ➡️",
    "POV: {p} {e}{e}",
    "Tried {p} for the first time today. Thoughts? {e}",
    "Our guide to {p} is finally live! Link in bio {e}",
    "Throwback to {p} {e}",
    "{p}, but make it cozy {e}",
];

const GENERIC_LINES: &[&str] = &[
    "Link in bio.",
    "Save this for later 📌",
    "Tag someone who needs this!",
    "Which one is your favorite: 1, 2 or 3?",
    "Drop a ❤️ if you agree.",
    "More on stories.",
    "Thank you for 10k! 🙏",
    "New post every Tuesday.",
    "Who's joining me next time?",
];

const INTL_LINES: &[&str] = &[
    "Danke für 10k Follower – ihr seid großartig 💛",
    "今日のカフェ巡り☕️ 最高でした！",
    "¡Qué día tan increíble en la playa! 🌊",
    "Merci à tous, à bientôt à Paris 🇫🇷",
    "Привет из Санкт-Петербурга! ❄️",
    "شكرا لكم جميعا ❤️",
    "오늘도 화이팅! 💪",
    "Ελπίζω να σας αρέσει 🌞",
    "Cảm ơn các bạn rất nhiều 🙏",
    "Zażółć gęślą jaźń 🇵🇱",
];

/// Text that is hard to escape: quotes, backslashes, tabs, CRLF, braces.
const SPICY_LINES: &[&str] = &[
    "My coach said: \"don't skip leg day\" 😅",
    "It's the 'little things' that count.",
    "¯\\_(ツ)_/¯",
    "Saved to C:\\Users\\me\\Pictures\\insta — old habits.",
    "Recipe:\n- flour\t500 g\n- water\t350 g\n- salt\t10 g",
    "Line one\r\nLine two (sent from my old phone)",
    "Use \\n for new lines, they said. It's fine.",
    "{braces} and [brackets] and, commas, everywhere",
    "Quote of the day: “Stay hungry, stay foolish.”",
    "50% off 🤑 — code \"SUMMER24\" at checkout",
];

const SUGGESTIONS: &[&str] = &[
    "Post between 6 and 8 pm for more reach",
    "Add a call to action like \"Save this\"",
    "Use 3–5 niche hashtags instead of 30 generic ones",
    "Start with a stronger hook in the first line",
    "Try a carousel: they get 1.4× more saves",
    "Reply to comments in the first hour 💬",
    "Add alt text for accessibility",
];

const FIRST_NAMES: &[(&str, &str)] = &[
    ("Emma", "emma"),
    ("Liam", "liam"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Søren", "soren"),
    ("Łukasz", "lukasz"),
    ("François", "francois"),
    ("Aoife", "aoife"),
    ("Mei", "mei"),
    ("Yuki", "yuki"),
    ("Priya", "priya"),
    ("Mohammed", "mohammed"),
    ("Olga", "olga"),
    ("Noah", "noah"),
    ("Chloé", "chloe"),
    ("Mateo", "mateo"),
    ("Amara", "amara"),
    ("Jonas", "jonas"),
];

const LAST_NAMES: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("O'Brien", "obrien"),
    ("García", "garcia"),
    ("Müller", "muller"),
    ("Nguyễn", "nguyen"),
    ("Kowalski", "kowalski"),
    ("Tanaka", "tanaka"),
    ("Rossi", "rossi"),
    ("Dubois", "dubois"),
    ("Haddad", "haddad"),
    ("Johansson", "johansson"),
    ("Patel", "patel"),
];

const HANDLE_WORDS: &[&str] = &[
    "travels", "eats", "studio", "daily", "official", "creates", "lab", "journal", "co", "hq",
];

const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "icloud.com",
    "yahoo.com",
    "proton.me",
];

const MODELS: &[&str] = &[
    "gpt-3.5-turbo",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-4o-mini",
    "claude-3-haiku",
];

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

type R = ChaCha8Rng;

/// Every table's rows, from the seed alone.
fn generate(cfg: &LegacyConfig) -> Result<Data> {
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

fn gen_users(rng: &mut R, n: usize) -> Vec<User> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let (first, first_ascii) = *pick(rng, FIRST_NAMES);
        let (last, last_ascii) = *pick(rng, LAST_NAMES);
        let handle = match rng.random_range(0..3) {
            0 => format!("{first_ascii}.{}", pick(rng, HANDLE_WORDS)),
            1 => format!("{first_ascii}_{last_ascii}{}", rng.random_range(1..100)),
            _ => format!("the{first_ascii}{}", pick(rng, HANDLE_WORDS)),
        };
        // The index keeps emails unique; some clients kept the user's casing.
        let email = if rng.random_bool(0.05) {
            format!(
                "{first}.{last_ascii}{i}@{}",
                pick(rng, EMAIL_DOMAINS).to_uppercase()
            )
        } else {
            format!("{first_ascii}.{last_ascii}{i}@{}", pick(rng, EMAIL_DOMAINS))
        };
        let email = maybe(rng, 0.05, email).filter(|_| i != 3);
        let full_name = maybe(rng, 0.1, format!("{first} {last}")).filter(|_| i != 1);
        let instagram_username = maybe(rng, 0.15, handle.clone()).filter(|_| i != 2);
        let id = new_uuid(rng);
        let avatar_url = maybe_with(rng, 0.3, |rng| {
            format!("https://avatars.affinity.app/{}.png", hex(rng, 16))
        });
        let plan = match i {
            0 => "free",
            1 => "pro",
            2 => "business",
            _ => match rng.random_range(0..100) {
                0..65 => "free",
                65..90 => "pro",
                _ => "business",
            },
        };
        let created_at = between(rng, BASE, BASE + (END - BASE) * 4 / 5);
        let updated_at = created_at + between(rng, 0, 120 * DAY);
        let followers = 10f64.powf(1.5 + 4.5 * rng.random::<f64>().powi(2));
        // Some users never post (8% by choice, more by chance); the first
        // always does, the last never.
        let activity = if i == 0 {
            1.0
        } else if (i == n - 1) || rng.random_bool(0.08) {
            0.0
        } else {
            1.0 + 8.0 * rng.random::<f64>().powi(3)
        };
        let main = rng.random_range(0..TOPICS.len());
        let second = rng.random_range(0..TOPICS.len());
        let url_style = rng.random_range(0..3u8);
        let mut user = User {
            id,
            email,
            full_name,
            avatar_url,
            instagram_username,
            plan,
            created_at,
            updated_at,
            handle,
            followers,
            activity,
            topics: (main, second),
            url_style,
            url_pool: Vec::new(),
        };
        let pool_size = rng.random_range(2..=10);
        user.url_pool = (0..pool_size)
            .map(|_| media_url(rng, &user, false))
            .collect();
        users.push(user);
    }
    users
}

/// A media URL in one of the styles the app used over time; the Cloudinary
/// style carries commas in its path.
fn media_url(rng: &mut R, user: &User, video: bool) -> String {
    let ext = if video { "mp4" } else { "jpg" };
    match user.url_style {
        0 => format!(
            "https://cdn.affinity.app/u/{}/{}.{ext}",
            user.handle,
            hex(rng, 16)
        ),
        1 => format!(
            "https://res.cloudinary.com/affinity/{}/upload/c_fill,w_1080,h_1350/v{}/{}/{}.{ext}",
            if video { "video" } else { "image" },
            rng.random_range(1_600_000_000u64..1_750_000_000),
            user.handle,
            hex(rng, 12)
        ),
        _ => format!(
            "https://xyzcompany.supabase.co/storage/v1/object/public/media/{}/{}.{ext}",
            user.id,
            hex(rng, 20)
        ),
    }
}

/// Cumulative weights for picking users by activity.
fn pick_weighted(rng: &mut R, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

fn gen_posts(rng: &mut R, users: &[User], n: usize) -> Vec<Post> {
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

fn caption_line(rng: &mut R, topic: &Topic) -> String {
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

fn caption(rng: &mut R, topic: &Topic, tags: &[String]) -> String {
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
fn long_caption(rng: &mut R, topic: &Topic, min_chars: usize) -> String {
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

fn content(rng: &mut R, topic: &Topic) -> String {
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

/// One post. The first indices are pinned to the awkward cases, so that
/// every size holds them: 0 a draft with no media, awkward hashtags, a
/// caption full of escapes and no embedding; 1 a 10-image carousel with a
/// repeated URL and a URL with spaces, a caption over 10,000 characters; 2 a
/// TikTok post; 3 archived after publication; 4 and 5 the same user sharing a
/// pool URL; 6 published but never polled; 7 and 8 repeated polls (see
/// [`gen_snapshots`]); 9 a draft without caption.
fn gen_post(rng: &mut R, i: usize, user_idx: usize, user: &User) -> Post {
    let id = new_uuid(rng);
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
    let topic = &TOPICS[main];

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

    // Hashtags: 0..=10 distinct tags, a few clients stored the '#'.
    let hashtags: Vec<String> = if i == 0 {
        AWKWARD_TAGS.iter().map(|t| (*t).to_string()).collect()
    } else {
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
    };

    // Media: mostly one image, carousels of up to 10, some reuse of the
    // user's own pool (brand assets) so URLs repeat across posts.
    let is_tiktok = platform == "tiktok";
    let mut media_type: Option<&'static str> = None;
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
    if n_media == 1 {
        media_type = if is_tiktok {
            Some("video")
        } else {
            match rng.random_range(0..100) {
                0..60 => Some("image"),
                60..75 => Some("video"),
                75..95 => Some("reel"),
                _ => None,
            }
        };
    } else if n_media > 1 {
        media_type = maybe(rng, 0.1, "carousel");
    }
    let video = matches!(media_type, Some("video" | "reel"));
    let mut media_urls: Vec<String> = Vec::with_capacity(n_media);
    for _ in 0..n_media {
        let reuse = rng
            .random_bool(0.25)
            .then(|| pick(rng, &user.url_pool).clone());
        // The same URL twice in one post is rare, not the rule.
        let url = match reuse {
            Some(u) if !media_urls.contains(&u) || rng.random_bool(0.05) => u,
            _ => media_url(rng, user, video),
        };
        media_urls.push(url);
    }
    if i == 1 {
        // The same image twice in one carousel, and an upload with spaces.
        media_urls[7] = media_urls[3].clone();
        media_urls[8] = format!(
            "https://cdn.affinity.app/uploads/{}/IMG 4032 (1).JPG",
            user.handle
        );
    }
    if (i == 4 || i == 5) && !user.url_pool.is_empty() {
        if media_urls.is_empty() {
            media_urls.push(String::new());
            media_type = Some("image");
        }
        media_urls[0] = user.url_pool[0].clone();
    }
    let thumbnail_url = match media_type {
        Some("video" | "reel") => maybe_with(rng, 0.15, |rng| media_url(rng, user, false)),
        Some(_) => media_urls.first().cloned().filter(|_| rng.random_bool(0.7)),
        None => None,
    };

    let (external_id, permalink, shortcode) = if was_published {
        if is_tiktok {
            let ext = 7_100_000_000_000_000_000u64
                + i as u64 * 1_000_003
                + rng.random_range(0..1_000_000u64);
            let link = format!("https://www.tiktok.com/@{}/video/{ext}", user.handle);
            (Some(ext.to_string()), Some(link), None)
        } else {
            let ext = 17_841_000_000_000_000u64 + i as u64 * 1000 + rng.random_range(0..1000u64);
            let sc = shortcode(rng);
            let kind = if video { "reel" } else { "p" };
            let link = format!("https://www.instagram.com/{kind}/{sc}/");
            (Some(ext.to_string()), Some(link), Some(sc))
        }
    } else {
        (None, None, None)
    };

    // Counters only move once a post is out.
    let (mut likes, mut comments, mut shares, mut saves, mut reach, mut impressions) =
        (0, 0, 0, 0, 0, 0);
    let mut engagement_rate = None;
    if was_published {
        let viral = if rng.random_bool(0.03) {
            rng.random_range(5.0..40.0)
        } else {
            1.0
        };
        let r = user.followers * rng.random_range(0.05..1.2) * viral;
        let l = r * rng.random_range(0.01..0.15);
        reach = clamp_i32(r);
        impressions = clamp_i32(r * rng.random_range(1.0..1.9));
        likes = clamp_i32(l);
        comments = clamp_i32(l * rng.random_range(0.003..0.08));
        shares = clamp_i32(l * rng.random_range(0.0..0.06));
        saves = clamp_i32(l * rng.random_range(0.0..0.12));
        engagement_rate = engagement(
            rng,
            i != 6,
            [likes, comments, shares, saves].map(Some),
            Some(reach),
        );
    }

    let insights = if i == 0 || rng.random_bool(if was_published { 0.2 } else { 0.7 }) {
        None
    } else {
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
    };

    let caption = match i {
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
        _ => Some(caption(rng, topic, &hashtags)),
    };
    let content = match i {
        0 => None,
        9 => Some(content(rng, topic)),
        _ => maybe_with(rng, 0.45, |rng| content(rng, topic)),
    };

    let embedding = match i {
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
    });

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
        likes,
        comments,
        shares,
        saves,
        reach,
        impressions,
        engagement_rate,
        insights,
        embedding,
        created_at,
        updated_at,
        user_idx,
        shortcode,
    }
}

/// Engagement rate in thousandths of a percent, numeric(6,3)-safe; NULL when
/// the app could not compute it (and sometimes for no reason at all).
fn engagement(
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

fn gen_snapshots(rng: &mut R, posts: &[Post]) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for (i, p) in posts.iter().enumerate() {
        let Some(published) = p.published_at else {
            continue;
        };
        // Post 6: published but never polled; 7 and 8: a repeated poll.
        let n = match i {
            6 => 0,
            7 | 8 => rng.random_range(3..=8),
            _ if rng.random_bool(0.15) => 0,
            _ => rng.random_range(1..=8),
        };
        if n == 0 {
            continue;
        }
        let mut fracs: Vec<f64> = (0..n).map(|_| rng.random_range(0.05..1.0)).collect();
        fracs.sort_by(f64::total_cmp);
        if rng.random_bool(0.7) {
            fracs[n - 1] = 1.0;
        }
        let dup_at = match i {
            7 | 8 => Some(rng.random_range(1..n)),
            _ if n > 1 && rng.random_bool(0.01) => Some(rng.random_range(1..n)),
            _ => None,
        };
        let finals = [
            p.likes,
            p.comments,
            p.shares,
            p.saves,
            p.reach,
            p.impressions,
        ];
        let mut t = published + between(rng, 10 * MIN, 3 * HOUR);
        let mut prev: Option<([Option<i32>; 6], Option<i32>)> = None;
        for (k, &frac) in fracs.iter().enumerate() {
            if k > 0 {
                t += between(rng, HOUR, (k as i64 + 1) * 2 * DAY);
            }
            let mut recorded_at = t;
            // A repeated poll at the exact same instant: identical values for
            // post 7, newer (never smaller) values otherwise.
            if dup_at == Some(k) {
                if let Some(last) = out.last() {
                    recorded_at = last.recorded_at;
                    t = recorded_at;
                    if i == 7 {
                        if let Some((c, e)) = prev {
                            out.push(Snapshot {
                                post_id: p.id,
                                recorded_at,
                                counters: c,
                                engagement_rate: e,
                            });
                            continue;
                        }
                    }
                }
            }
            let mut counters = [None; 6];
            for (c, (&fin, p_null)) in counters
                .iter_mut()
                .zip(finals.iter().zip([0.05, 0.05, 0.15, 0.15, 0.08, 0.08]))
            {
                let v = (f64::from(fin) * frac).floor() as i32;
                *c = maybe(rng, p_null, v);
            }
            if i == 7 && k == 0 {
                counters[3] = None;
            }
            let e = engagement(
                rng,
                true,
                [counters[0], counters[1], counters[2], counters[3]],
                counters[4],
            );
            prev = Some((counters, e));
            out.push(Snapshot {
                post_id: p.id,
                recorded_at,
                counters,
                engagement_rate: e,
            });
        }
    }
    // The poller inserted in time order; a stable sort keeps repeated polls
    // in their order.
    out.sort_by_key(|s| s.recorded_at);
    out
}

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

fn gen_chats(rng: &mut R, users: &[User]) -> Vec<ChatMessage> {
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

fn gen_generations(rng: &mut R, users: &[User]) -> Vec<Generation> {
    if users.is_empty() {
        return Vec::new();
    }
    let n = users.len() * 3 / 20 + 10;
    (0..n)
        .map(|i| {
            let u = pick(rng, users);
            // Deleted users left their generations behind (ON DELETE SET NULL).
            let user_id = if i == 0 || rng.random_bool(0.1) {
                None
            } else {
                Some(u.id)
            };
            let topic = &TOPICS[if rng.random_bool(0.7) {
                u.topics.0
            } else {
                rng.random_range(0..TOPICS.len())
            }];
            let tone = *pick(rng, &["playful", "professional", "Gen Z", "inspirational"]);
            let prompt = format!(
                "Write an Instagram caption about {} in a {tone} tone. Max 3 emoji {}",
                pick(rng, topic.phrases),
                pick(rng, topic.emoji)
            );
            let generated_content = if i == 1 || rng.random_bool(0.1) {
                None
            } else {
                Some(caption(rng, topic, &[]))
            };
            let model = if i == 2 || rng.random_bool(0.05) {
                None
            } else {
                Some(*pick(rng, MODELS))
            };
            Generation {
                id: new_uuid(rng),
                user_id,
                prompt,
                generated_content,
                model,
                created_at: between(rng, u.created_at, END),
            }
        })
        .collect()
}

fn gen_hashtag_stats(rng: &mut R, users: &[User]) -> Vec<HashtagStat> {
    if users.is_empty() {
        return Vec::new();
    }
    let n = users.len() / 5 + 10;
    (0..n)
        .map(|i| {
            let u = pick(rng, users);
            let user_id = if i == 0 || rng.random_bool(0.15) {
                None
            } else {
                Some(u.id)
            };
            let topic = &TOPICS[u.topics.0];
            let hashtag = (*pick(rng, topic.tags)).to_string();
            let avg_engagement = if i == 1 || rng.random_bool(0.15) {
                None
            } else {
                Some(rng.random_range(0..15_000))
            };
            HashtagStat {
                user_id,
                hashtag,
                post_count: rng.random_range(0..250),
                avg_engagement,
                updated_at: between(rng, u.created_at, END),
            }
        })
        .collect()
}

/// An Instagram post as the scrapers saw it.
struct IgPost {
    shortcode: String,
    owner: String,
    caption: Option<String>,
    taken_at: i64,
    likes: i32,
    comments: i32,
    typename: &'static str,
    media_id: u64,
}

const TYPENAMES: &[&str] = &["GraphImage", "GraphSidecar", "GraphVideo"];

fn signed_cdn_url(rng: &mut R, media_id: u64) -> String {
    format!(
        "https://scontent-lhr8-{}.cdninstagram.com/v/t51.2885-15/{media_id}_n.jpg?stp=dst-jpg_e35&_nc_ht=scontent-lhr8-1.cdninstagram.com&oh=00_{}&oe={}",
        rng.random_range(1..3),
        hex(rng, 32),
        hex(rng, 8).to_uppercase()
    )
}

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
struct Spread {
    n1: usize,
    n2: usize,
    newest_in_first: Option<bool>,
}

fn gen_scraped(
    rng: &mut R,
    users: &[User],
    posts: &[Post],
) -> (Vec<ScrapedPost>, Vec<ScrapedData>) {
    // Accounts the users keep an eye on, each with its recent posts.
    let n_accounts = (users.len() / 25).max(8);
    let mut ig_posts: Vec<IgPost> = Vec::new();
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
    // Users' own published Instagram posts are scraped too (same shortcode).
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
                likes: p.likes,
                comments: p.comments,
                typename: if p.media_urls.len() > 1 {
                    "GraphSidecar"
                } else {
                    "GraphImage"
                },
                media_id: rng.random_range(100_000_000_000_000_000u64..999_999_999_999_999_999),
            });
        }
    }

    let mut t1 = Vec::new();
    let mut t2 = Vec::new();
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
            candidates.extend(&by_account[rng.random_range(0..n_accounts)]);
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
            emit_group(rng, Some(u.id), &ig_posts[ig], spread, &mut t1, &mut t2);
        }
    }
    // Scrapes run without a user: NULL user_id. The first table's UNIQUE
    // (user_id, shortcode) does not stop repeats there, since NULLs differ.
    for g in 0..(users.len() / 20).max(3) {
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
        let start = t1.len();
        let start2 = t2.len();
        emit_group(rng, None, ig, spread, &mut t1, &mut t2);
        if g == 0 {
            // NULL counts and a NULL payload, guaranteed once.
            if let Some(r) = t1.get_mut(start) {
                r.like_count = None;
            }
            if let Some(r) = t2.get_mut(start2) {
                r.likes = None;
                r.raw = None;
            }
        }
    }
    t1.sort_by_key(|r| r.scraped_at);
    t2.sort_by_key(|r| r.created_at);
    (t1, t2)
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

/// Writes the scrapes of one post for one user (or none): `n1 + n2`
/// observations at distinct times with growing counts, spread over the two
/// tables.
fn emit_group(
    rng: &mut R,
    user_id: Option<Uuid>,
    ig: &IgPost,
    spread: Spread,
    t1: &mut Vec<ScrapedPost>,
    t2: &mut Vec<ScrapedData>,
) {
    let Spread {
        n1,
        n2,
        newest_in_first,
    } = spread;
    let m = n1 + n2;
    if m == 0 {
        return;
    }
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
        if first {
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
            t1.push(ScrapedPost {
                id: new_uuid(rng),
                user_id,
                shortcode: ig.shortcode.clone(),
                owner_username: ig.owner.clone(),
                caption,
                like_count,
                comment_count,
                media_url: url,
                taken_at,
                scraped_at: t,
            });
        } else {
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
                        "edge_media_preview_like": { "count": like_count },
                        "edge_media_to_comment": { "count": comment_count },
                        "edge_media_to_caption": {
                            "edges": caption_edges
                        },
                        "display_url": url,
                        "is_video": ig.typename == "GraphVideo",
                        "taken_at_timestamp": taken_at.map(|s| s / SEC),
                        "scraper": { "version": version, "fetched_at": iso(t) },
                    })
                    .to_string(),
                )
            };
            t2.push(ScrapedData {
                user_id,
                post_shortcode: ig.shortcode.clone(),
                username: ig.owner.clone(),
                caption_text: ig.caption.clone(),
                likes: like_count,
                comments: comment_count,
                display_url: url,
                posted_at: taken_at,
                raw,
                created_at: t,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(s: &str) -> String {
        let mut b = Vec::new();
        escape_copy(&mut b, s);
        String::from_utf8(b).expect("utf8")
    }

    #[test]
    fn copy_escaping() {
        assert_eq!(render("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
        assert_eq!(render("😀 \"q\""), "😀 \"q\"");
    }

    #[test]
    fn array_literals_quote_everything() {
        let items: Vec<String> = ["a,b", "say \"hi\"", "back\\slash", "NULL", "{x}", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            array_literal(&items),
            r#"{"a,b","say \"hi\"","back\\slash","NULL","{x}",""}"#
        );
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn numbers_and_vectors() {
        let mut b = Vec::new();
        push_numeric3(&mut b, 12_345);
        b.push(b' ');
        push_numeric3(&mut b, 7);
        b.push(b' ');
        push_numeric3(&mut b, -999_999);
        b.push(b' ');
        push_vector(&mut b, &[0.5, -0.0123456, 0.0, 1.0, -0.000_000_4]);
        assert_eq!(
            String::from_utf8(b).expect("utf8"),
            "12.345 0.007 -999.999 [0.5,-0.012346,0,1,0]"
        );
    }

    #[test]
    fn timestamps_match_chrono() {
        let mut rng = R::seed_from_u64(1);
        for _ in 0..1000 {
            let us = rng.random_range(-2_000_000_000_000_000i64..4_000_000_000_000_000);
            let mut b = Vec::new();
            push_ts(&mut b, us);
            let expected = chrono::DateTime::from_timestamp_micros(us)
                .expect("in range")
                .format("%Y-%m-%d %H:%M:%S%.6f+00")
                .to_string();
            assert_eq!(String::from_utf8(b).expect("utf8"), expected);
        }
    }

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
