//! The legacy data generator: row counts, every awkward case the migrations
//! must survive, determinism, and the load time of the standard size.
mod common;

use affinity_testkit::legacy::{create_and_fill, LegacyConfig, LegacyStats};
use sqlx::PgPool;
use std::time::Instant;

const TABLES: [&str; 8] = [
    "user_profiles",
    "posts",
    "post_analytics",
    "chat_messages",
    "content_generations",
    "hashtag_analytics",
    "instagram_scraped_posts",
    "scraped_instagram_data",
];

fn stats_by_table(s: &LegacyStats) -> [(&'static str, u64); 8] {
    [
        ("user_profiles", s.user_profiles),
        ("posts", s.posts),
        ("post_analytics", s.post_analytics),
        ("chat_messages", s.chat_messages),
        ("content_generations", s.content_generations),
        ("hashtag_analytics", s.hashtag_analytics),
        ("instagram_scraped_posts", s.instagram_scraped_posts),
        ("scraped_instagram_data", s.scraped_instagram_data),
    ]
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn flag(pool: &PgPool, sql: &str) -> bool {
    sqlx::query_scalar::<_, bool>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn assert_stats_match(pool: &PgPool, stats: &LegacyStats) {
    for (table, n) in stats_by_table(stats) {
        let actual = count(pool, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(actual as u64, n, "row count of {table}");
        assert!(n > 0, "{table} is empty");
    }
}

/// Each case: a description and a query that is true when the case is present.
const CASES: &[(&str, &str)] = &[
    // user_profiles
    ("user without full_name", "SELECT bool_or(full_name IS NULL) FROM user_profiles"),
    ("user without instagram_username", "SELECT bool_or(instagram_username IS NULL) FROM user_profiles"),
    ("user without email", "SELECT bool_or(email IS NULL) FROM user_profiles"),
    ("plans free, pro and business",
     "SELECT array_agg(DISTINCT plan ORDER BY plan) = '{business,free,pro}' FROM user_profiles"),
    ("user with zero posts",
     "SELECT EXISTS (SELECT 1 FROM user_profiles u WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id))"),
    // posts: lifecycle
    ("all four statuses",
     "SELECT array_agg(DISTINCT status ORDER BY status) = '{archived,draft,published,scheduled}' FROM posts"),
    ("instagram and tiktok posts",
     "SELECT array_agg(DISTINCT platform ORDER BY platform) = '{instagram,tiktok}' FROM posts"),
    ("drafts have no external_id",
     "SELECT bool_and(external_id IS NULL AND published_at IS NULL) FROM posts WHERE status = 'draft'"),
    ("published posts have external_id, published_at, permalink",
     "SELECT bool_and(external_id IS NOT NULL AND published_at IS NOT NULL AND permalink IS NOT NULL) \
      FROM posts WHERE status = 'published'"),
    ("scheduled posts have scheduled_at",
     "SELECT bool_and(scheduled_at IS NOT NULL AND external_id IS NULL) FROM posts WHERE status = 'scheduled'"),
    ("archived posts with and without external_id",
     "SELECT bool_or(external_id IS NULL) AND bool_or(external_id IS NOT NULL) FROM posts WHERE status = 'archived'"),
    // posts: hashtags
    ("post without hashtags", "SELECT bool_or(cardinality(hashtags) = 0) FROM posts"),
    ("post with several hashtags", "SELECT bool_or(cardinality(hashtags) >= 5) FROM posts"),
    ("at most 10 hashtags", "SELECT max(cardinality(hashtags)) <= 10 FROM posts"),
    ("hashtags that need quoting survive the array literal",
     "SELECT EXISTS (SELECT 1 FROM posts WHERE hashtags @> \
      ARRAY['summer vibes', 'a,b', 'say \"hi\"', '{braces}', 'back\\slash', 'NULL', '日本旅行', 'café'])"),
    ("no NULL array element", "SELECT NOT EXISTS (SELECT 1 FROM posts, unnest(hashtags || media_urls) x WHERE x IS NULL)"),
    // posts: media
    ("post with no media URL", "SELECT bool_or(cardinality(media_urls) = 0) FROM posts"),
    ("post with one media URL", "SELECT bool_or(cardinality(media_urls) = 1) FROM posts"),
    ("post with five or more media URLs", "SELECT bool_or(cardinality(media_urls) >= 5) FROM posts"),
    ("at most 10 media URLs", "SELECT max(cardinality(media_urls)) <= 10 FROM posts"),
    ("a URL twice in the same post",
     "SELECT EXISTS (SELECT 1 FROM posts p WHERE cardinality(p.media_urls) > \
      (SELECT count(DISTINCT u) FROM unnest(p.media_urls) u))"),
    ("a URL shared by several posts of the same user",
     "SELECT EXISTS (SELECT 1 FROM posts p, unnest(p.media_urls) u \
      GROUP BY p.user_id, u HAVING count(DISTINCT p.id) > 1)"),
    ("media URLs with a comma and with a space",
     "SELECT bool_or(u LIKE '%,%') AND bool_or(u LIKE '% %') FROM posts, unnest(media_urls) u"),
    ("every media_type and NULL",
     "SELECT count(DISTINCT media_type) = 4 AND bool_or(media_type IS NULL) FROM posts"),
    ("thumbnail NULL and not NULL",
     "SELECT bool_or(thumbnail_url IS NULL) AND bool_or(thumbnail_url IS NOT NULL) FROM posts"),
    // posts: counters and AI output
    ("published posts with counters", "SELECT max(likes_count) > 0 AND max(impressions) >= max(reach) FROM posts"),
    ("engagement_rate NULL and not NULL",
     "SELECT bool_or(engagement_rate IS NULL) AND bool_or(engagement_rate IS NOT NULL) FROM posts WHERE published_at IS NOT NULL"),
    ("insights NULL and with a topics array",
     "SELECT bool_or(insights IS NULL) AND bool_or(jsonb_typeof(insights -> 'topics') = 'array' \
      AND insights ? 'sentiment' AND insights ? 'suggestions') FROM posts"),
    // posts: text
    ("caption with an emoji", "SELECT bool_or(caption ~ '[🌀-🫶]') FROM posts"),
    ("caption with multi-byte text", "SELECT bool_or(caption ~ '[ぁ-ヿ]' AND caption LIKE '%é%') FROM posts"),
    ("caption with quotes, backslash, tab, newline and CR",
     "SELECT bool_or(strpos(caption, '\"') > 0 AND strpos(caption, '¯\\_(ツ)_/¯') > 0 \
      AND strpos(caption, E'\\t') > 0 AND strpos(caption, E'\\r\\n') > 0) FROM posts"),
    ("caption of 10,000 characters or more", "SELECT max(length(caption)) >= 10000 FROM posts"),
    ("caption NULL", "SELECT bool_or(caption IS NULL) FROM posts"),
    ("content NULL and not NULL", "SELECT bool_or(content IS NULL) AND bool_or(content IS NOT NULL) FROM posts"),
    // posts: embeddings
    ("embedding NULL and not NULL", "SELECT bool_or(embedding IS NULL) AND bool_or(embedding IS NOT NULL) FROM posts"),
    ("about 70% of posts embedded",
     "SELECT avg((embedding IS NOT NULL)::int) BETWEEN 0.6 AND 0.8 FROM posts"),
    ("unit embeddings of 1536 dimensions",
     "SELECT bool_and(vector_dims(embedding) = 1536 AND abs(vector_norm(embedding) - 1) < 0.001) \
      FROM posts WHERE embedding IS NOT NULL"),
    ("embeddings cluster by topic",
     "WITH e AS (SELECT id, embedding, insights -> 'topics' -> 0 AS topic FROM posts \
        WHERE embedding IS NOT NULL AND jsonb_array_length(insights -> 'topics') > 0 ORDER BY id LIMIT 300) \
      SELECT avg(1 - (a.embedding <=> b.embedding)) FILTER (WHERE a.topic = b.topic) > 0.4 \
         AND avg(1 - (a.embedding <=> b.embedding)) FILTER (WHERE a.topic <> b.topic) < 0.2 \
      FROM e a JOIN e b ON a.id < b.id"),
    // post_analytics
    ("published post without analytics",
     "SELECT EXISTS (SELECT 1 FROM posts p WHERE p.published_at IS NOT NULL \
      AND NOT EXISTS (SELECT 1 FROM post_analytics a WHERE a.post_id = p.id))"),
    ("at most 8 snapshots per post",
     "SELECT max(n) <= 8 FROM (SELECT count(*) n FROM post_analytics GROUP BY post_id) c"),
    ("snapshots only after publication",
     "SELECT bool_and(a.recorded_at >= p.published_at) FROM post_analytics a JOIN posts p ON p.id = a.post_id"),
    ("snapshot with a NULL counter",
     "SELECT bool_or(likes IS NULL OR comments IS NULL OR shares IS NULL OR saves IS NULL \
      OR reach IS NULL OR impressions IS NULL) FROM post_analytics"),
    ("snapshot engagement_rate NULL and not NULL",
     "SELECT bool_or(engagement_rate IS NULL) AND bool_or(engagement_rate IS NOT NULL) FROM post_analytics"),
    ("two snapshots of a post at the same recorded_at",
     "SELECT count(*) >= 2 FROM (SELECT 1 FROM post_analytics GROUP BY post_id, recorded_at HAVING count(*) > 1) d"),
    ("counters never decrease",
     "SELECT NOT EXISTS (SELECT 1 FROM ( \
        SELECT likes, saves, reach, \
          max(likes) OVER w AS pl, max(saves) OVER w AS ps, max(reach) OVER w AS pr \
        FROM post_analytics \
        WINDOW w AS (PARTITION BY post_id ORDER BY recorded_at, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) s \
      WHERE likes < pl OR saves < ps OR reach < pr)"),
    ("snapshots never exceed the post's counters",
     "SELECT bool_and(a.likes <= p.likes_count AND a.impressions <= p.impressions) \
      FROM post_analytics a JOIN posts p ON p.id = a.post_id"),
    // chat_messages
    ("chat message with and without embedding",
     "SELECT bool_or(embedding IS NULL) AND bool_or(embedding IS NOT NULL) FROM chat_messages"),
    ("roles user, assistant, system",
     "SELECT array_agg(DISTINCT role ORDER BY role) = '{assistant,system,user}' FROM chat_messages"),
    ("sessions of several messages",
     "SELECT max(n) >= 3 FROM (SELECT count(*) n FROM chat_messages GROUP BY session_id) s"),
    // obsolete tables
    ("content_generations with NULL user_id",
     "SELECT bool_or(user_id IS NULL) AND bool_or(user_id IS NOT NULL) FROM content_generations"),
    ("content_generations with NULL generated_content and model",
     "SELECT bool_or(generated_content IS NULL) AND bool_or(model IS NULL) FROM content_generations"),
    ("hashtag_analytics with NULL user_id and NULL avg_engagement",
     "SELECT bool_or(user_id IS NULL) AND bool_or(avg_engagement IS NULL) FROM hashtag_analytics"),
    // the two scraper tables
    ("same (user, shortcode) in both tables with different like counts",
     "SELECT EXISTS (SELECT 1 FROM instagram_scraped_posts a JOIN scraped_instagram_data b \
      ON b.user_id = a.user_id AND b.post_shortcode = a.shortcode WHERE a.like_count <> b.likes)"),
    ("pairs where the first table is newer",
     "SELECT EXISTS (SELECT 1 FROM instagram_scraped_posts a WHERE a.user_id IS NOT NULL \
      AND EXISTS (SELECT 1 FROM scraped_instagram_data b WHERE b.user_id = a.user_id AND b.post_shortcode = a.shortcode) \
      AND a.scraped_at > (SELECT max(created_at) FROM scraped_instagram_data b \
                          WHERE b.user_id = a.user_id AND b.post_shortcode = a.shortcode))"),
    ("pairs where the second table is newer",
     "SELECT EXISTS (SELECT 1 FROM instagram_scraped_posts a WHERE a.user_id IS NOT NULL \
      AND a.scraped_at < (SELECT max(created_at) FROM scraped_instagram_data b \
                          WHERE b.user_id = a.user_id AND b.post_shortcode = a.shortcode))"),
    ("shortcodes only in the first table",
     "SELECT EXISTS (SELECT 1 FROM instagram_scraped_posts a WHERE NOT EXISTS \
      (SELECT 1 FROM scraped_instagram_data b WHERE b.post_shortcode = a.shortcode))"),
    ("shortcodes only in the second table",
     "SELECT EXISTS (SELECT 1 FROM scraped_instagram_data b WHERE NOT EXISTS \
      (SELECT 1 FROM instagram_scraped_posts a WHERE a.shortcode = b.post_shortcode))"),
    ("several rows of one (user, shortcode) in the second table, distinct payloads",
     "SELECT EXISTS (SELECT 1 FROM scraped_instagram_data WHERE user_id IS NOT NULL \
      GROUP BY user_id, post_shortcode \
      HAVING count(*) >= 3 AND count(DISTINCT created_at) = count(*) AND count(DISTINCT raw) >= 2)"),
    ("NULL user_id in both tables",
     "SELECT (SELECT bool_or(user_id IS NULL) FROM instagram_scraped_posts) \
         AND (SELECT bool_or(user_id IS NULL) FROM scraped_instagram_data)"),
    ("raw NULL and not NULL",
     "SELECT bool_or(raw IS NULL) AND bool_or(raw IS NOT NULL) FROM scraped_instagram_data"),
    ("NULL counts in both tables",
     "SELECT (SELECT bool_or(like_count IS NULL) FROM instagram_scraped_posts) \
         AND (SELECT bool_or(likes IS NULL) FROM scraped_instagram_data)"),
    ("no tie between the scrape times of a (user, shortcode)",
     "SELECT NOT EXISTS (SELECT 1 FROM ( \
        SELECT user_id, shortcode AS sc, scraped_at AS t FROM instagram_scraped_posts \
        UNION ALL SELECT user_id, post_shortcode, created_at FROM scraped_instagram_data) x \
      GROUP BY user_id, sc, t HAVING count(*) > 1)"),
    ("own posts scraped too",
     "SELECT EXISTS (SELECT 1 FROM posts p JOIN instagram_scraped_posts a ON a.user_id = p.user_id \
      AND p.permalink LIKE '%/' || a.shortcode || '/')"),
];

async fn assert_awkward_cases(pool: &PgPool) {
    let mut missing = Vec::new();
    for (what, sql) in CASES {
        if !flag(pool, sql).await {
            missing.push(*what);
        }
    }
    assert!(missing.is_empty(), "cases missing: {missing:#?}");
}

async fn checksums(pool: &PgPool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM {table} t");
        let sum: String = sqlx::query_scalar(&sql)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.push((table.to_string(), sum));
    }
    out
}

#[tokio::test]
async fn the_small_configuration_fills_every_table_as_counted_with_every_awkward_case() {
    let db = common::TestDb::empty().await;
    let stats = create_and_fill(&db.pool, &LegacyConfig::small())
        .await
        .expect("filling");
    println!("small(): {stats:?}");
    assert_stats_match(&db.pool, &stats).await;
    assert_awkward_cases(&db.pool).await;
}

#[tokio::test]
async fn the_same_seed_fills_the_same_data_and_another_seed_changes_every_table() {
    let a = common::TestDb::empty().await;
    let b = common::TestDb::empty().await;
    let sa = create_and_fill(&a.pool, &LegacyConfig::small())
        .await
        .expect("filling a");
    let sb = create_and_fill(&b.pool, &LegacyConfig::small())
        .await
        .expect("filling b");
    assert_eq!(stats_by_table(&sa), stats_by_table(&sb));
    let sums = checksums(&a.pool).await;
    assert_eq!(sums, checksums(&b.pool).await);

    // And the seed matters.
    let c = common::TestDb::empty().await;
    let other = LegacyConfig {
        seed: 8,
        ..LegacyConfig::small()
    };
    create_and_fill(&c.pool, &other).await.expect("filling c");
    let other_sums = checksums(&c.pool).await;
    for ((table, x), (_, y)) in sums.iter().zip(&other_sums) {
        assert_ne!(x, y, "{table} does not depend on the seed");
    }
}

#[tokio::test]
async fn the_standard_configuration_fills_every_table_as_counted_within_30_seconds() {
    let db = common::TestDb::empty().await;
    let started = Instant::now();
    let stats = create_and_fill(&db.pool, &LegacyConfig::standard())
        .await
        .expect("filling");
    let elapsed = started.elapsed();
    println!("standard(): {elapsed:.2?} {stats:?}");
    assert!(elapsed.as_secs() < 30, "standard() took {elapsed:?}");
    assert_stats_match(&db.pool, &stats).await;
    assert_awkward_cases(&db.pool).await;
}
