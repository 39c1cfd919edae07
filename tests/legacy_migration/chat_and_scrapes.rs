//! Chat history becomes AI context with the same ids; scraped posts keep latest values, payloads.
use crate::{migrated_legacy, scalar_i64};

#[tokio::test]
async fn chat_history_becomes_ai_context_with_the_same_ids() {
    let db = migrated_legacy().await;
    let total = scalar_i64(&db.pool, "SELECT count(*) FROM chat_messages_backup").await;
    assert!(total > 0);
    let kept = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         WHERE a.user_id = c.user_id AND a.source_type = 'chat' AND a.occurred_at = c.created_at
           AND a.metadata->>'role' = c.role AND (a.metadata->>'session_id')::uuid = c.session_id
           AND c.content = CASE WHEN c.role = 'assistant' THEN a.ai_response ELSE a.context_summary END",
    )
    .await;
    assert_eq!(kept, total);
    // Each carries its conversation's session (migration 12), so old
    // conversations page in order by session_id; and so does its text, which
    // search filters read.
    let in_session = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         JOIN item_texts t ON t.organization_id = a.organization_id AND t.entity_type = 'ai_context'
                          AND t.entity_id = a.id
         WHERE a.session_id = c.session_id::text AND t.session_id = a.session_id",
    )
    .await;
    let with_text = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         JOIN item_texts t ON t.organization_id = a.organization_id AND t.entity_type = 'ai_context'
                          AND t.entity_id = a.id",
    )
    .await;
    assert_eq!(in_session, with_text);
    let sessions = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         WHERE a.session_id = c.session_id::text",
    )
    .await;
    assert_eq!(
        sessions, total,
        "every legacy chat message keeps its session"
    );
}

#[tokio::test]
async fn scraped_posts_hold_the_latest_values_and_every_raw_payload() {
    let db = migrated_legacy().await;
    // One row per (user, shortcode) of either table.
    let pairs = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM (SELECT user_id, shortcode FROM instagram_scraped_posts_backup
                               UNION SELECT user_id, post_shortcode FROM scraped_instagram_data_backup) p",
    )
    .await;
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM scraped_posts").await,
        pairs
    );
    // The generator has shortcodes in both tables with different counts.
    let overlapping = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM instagram_scraped_posts_backup a JOIN scraped_instagram_data_backup b
           ON b.user_id IS NOT DISTINCT FROM a.user_id AND b.post_shortcode = a.shortcode
         WHERE b.likes IS DISTINCT FROM a.like_count",
    )
    .await;
    assert!(overlapping > 0);
    // The values are those of the most recent scrape of either table.
    let stale = scalar_i64(
        &db.pool,
        "WITH scrapes AS (
             SELECT user_id, shortcode, like_count, comment_count, caption, scraped_at AS at FROM instagram_scraped_posts_backup
             UNION ALL
             SELECT user_id, post_shortcode, likes, comments, caption_text, created_at FROM scraped_instagram_data_backup),
         latest AS (SELECT DISTINCT ON (user_id, shortcode) * FROM scrapes ORDER BY user_id, shortcode, at DESC)
         SELECT count(*) FROM latest l JOIN scraped_posts s
           ON s.user_id IS NOT DISTINCT FROM l.user_id AND s.shortcode = l.shortcode
         WHERE (s.like_count, s.comment_count, s.caption, s.scraped_at)
               IS DISTINCT FROM (l.like_count, l.comment_count, l.caption, l.at)",
    )
    .await;
    assert_eq!(stale, 0);
    // Every raw payload, in the consolidated row of its (user, shortcode).
    let missing = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM scraped_instagram_data_backup b WHERE b.raw IS NOT NULL AND NOT EXISTS (
             SELECT 1 FROM scraped_posts s, jsonb_array_elements(s.raw_payloads) p
             WHERE s.user_id IS NOT DISTINCT FROM b.user_id AND s.shortcode = b.post_shortcode
               AND p->'payload' = b.raw)",
    )
    .await;
    assert_eq!(missing, 0);
    let payloads = scalar_i64(
        &db.pool,
        "SELECT sum(jsonb_array_length(raw_payloads)) FROM scraped_posts",
    )
    .await;
    assert_eq!(
        payloads,
        scalar_i64(
            &db.pool,
            "SELECT count(raw) FROM scraped_instagram_data_backup"
        )
        .await
    );
}
