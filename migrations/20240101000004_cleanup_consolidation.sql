-- Phase 04: cleanup and consolidation.
--
-- - The two generations of Instagram scraper tables become one table,
--   scraped_posts: one row per (user, shortcode) with the most recently
--   scraped values and every raw payload.
-- - Obsolete tables (content_generations, hashtag_analytics) move to the
--   `archive` schema with their rows; they are never dropped.
-- - The legacy posts, post_analytics, chat_messages and scraper tables are
--   renamed *_backup and kept until finalize_migration_cleanup() has proven,
--   through verify_migration_integrity(), that every row of theirs lives on.
-- - Compatibility views: posts_unified (the legacy posts row, plus
--   organization_id), analytics_dashboard, top_performing_posts.
-- - archive_old_metrics() moves old metric points out of the hot table.

CREATE SCHEMA IF NOT EXISTS archive;

-- What the migration did, for verify and finalize.
CREATE TABLE migration_events (
    event text PRIMARY KEY,
    at    timestamptz NOT NULL DEFAULT now()
);

-- ------------------------------------------------------------ scraped posts
CREATE TABLE scraped_posts (
    id              uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    -- The user's default organization; NULL with the user (unowned scrapes).
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid REFERENCES user_profiles (id) ON DELETE CASCADE,
    shortcode       text NOT NULL,
    owner_username  text NOT NULL,
    caption         text,
    like_count      integer,
    comment_count   integer,
    media_url       text,
    taken_at        timestamptz,
    scraped_at      timestamptz NOT NULL,          -- the most recent scrape
    scrape_count    integer NOT NULL DEFAULT 1,    -- scrapes merged into this row
    -- Every raw payload, oldest first: {"source", "source_id", "scraped_at", "payload"}.
    raw_payloads    jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT scraped_posts_user_shortcode_key UNIQUE NULLS NOT DISTINCT (user_id, shortcode)
);
CREATE INDEX scraped_posts_organization_idx ON scraped_posts (organization_id, scraped_at DESC);

DO $$
BEGIN
    IF to_regclass('public.instagram_scraped_posts') IS NULL
       OR to_regclass('public.scraped_instagram_data') IS NULL THEN
        RETURN;
    END IF;
    WITH scrapes AS (
        SELECT user_id, shortcode, owner_username, caption, like_count, comment_count, media_url,
               taken_at, scraped_at AS at, NULL::jsonb AS raw,
               'instagram_scraped_posts' AS source, id::text AS source_id
        FROM instagram_scraped_posts
        UNION ALL
        SELECT user_id, post_shortcode, username, caption_text, likes, comments, display_url,
               posted_at, created_at, raw, 'scraped_instagram_data', id::text
        FROM scraped_instagram_data
    ),
    latest AS (
        SELECT DISTINCT ON (user_id, shortcode) *
        FROM scrapes
        ORDER BY user_id, shortcode, at DESC, source, source_id DESC
    ),
    merged AS (
        SELECT user_id, shortcode, count(*) AS scrape_count,
               coalesce(jsonb_agg(jsonb_build_object('source', source, 'source_id', source_id,
                                                     'scraped_at', at, 'payload', raw)
                                  ORDER BY at, source, source_id) FILTER (WHERE raw IS NOT NULL),
                        '[]') AS raw_payloads
        FROM scrapes
        GROUP BY user_id, shortcode
    )
    INSERT INTO scraped_posts (organization_id, user_id, shortcode, owner_username, caption, like_count,
                               comment_count, media_url, taken_at, scraped_at, scrape_count, raw_payloads)
    SELECT u.organization_id, l.user_id, l.shortcode, l.owner_username, l.caption, l.like_count,
           l.comment_count, l.media_url, l.taken_at, l.at, m.scrape_count, m.raw_payloads
    FROM latest l
    JOIN merged m ON m.user_id IS NOT DISTINCT FROM l.user_id AND m.shortcode = l.shortcode
    LEFT JOIN user_profiles u ON u.id = l.user_id;
END;
$$;

-- ---------------------------------------------------------------- archive
DO $$
BEGIN
    IF to_regclass('public.content_generations') IS NOT NULL THEN
        ALTER TABLE content_generations SET SCHEMA archive;
    ELSE
        CREATE TABLE archive.content_generations (
            id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id           uuid REFERENCES user_profiles (id) ON DELETE SET NULL,
            prompt            text NOT NULL,
            generated_content text,
            model             text,
            created_at        timestamptz NOT NULL DEFAULT now()
        );
    END IF;
    IF to_regclass('public.hashtag_analytics') IS NOT NULL THEN
        ALTER TABLE hashtag_analytics SET SCHEMA archive;
    ELSE
        CREATE TABLE archive.hashtag_analytics (
            id             bigserial PRIMARY KEY,
            user_id        uuid REFERENCES user_profiles (id) ON DELETE CASCADE,
            hashtag        text NOT NULL,
            post_count     integer NOT NULL DEFAULT 0,
            avg_engagement numeric(6, 3),
            updated_at     timestamptz NOT NULL DEFAULT now()
        );
    END IF;
END;
$$;

-- Metric points past the retention (archive_old_metrics).
CREATE TABLE archive.time_series_metrics (
    LIKE public.time_series_metrics INCLUDING DEFAULTS,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id, recorded_at)
);
CREATE INDEX time_series_metrics_series_idx
    ON archive.time_series_metrics (organization_id, entity_type, entity_id, metric_name, recorded_at);

-- Moves the points recorded before now() - retention to
-- archive.time_series_metrics, in one transaction; returns how many moved.
CREATE FUNCTION archive_old_metrics(retention interval DEFAULT interval '365 days')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved_count bigint;
BEGIN
    IF retention IS NULL OR retention < interval '0' THEN
        RAISE EXCEPTION 'retention must be a positive interval, got %', retention USING ERRCODE = '22023';
    END IF;
    WITH moved AS (
        DELETE FROM public.time_series_metrics WHERE recorded_at < now() - retention
        RETURNING id, entity_type, entity_id, metric_name, value, recorded_at, source, created_at, organization_id
    )
    INSERT INTO archive.time_series_metrics
        (id, entity_type, entity_id, metric_name, value, recorded_at, source, created_at, organization_id)
    SELECT * FROM moved;
    GET DIAGNOSTICS moved_count = ROW_COUNT;
    RETURN moved_count;
END;
$$;

-- ---------------------------------------------------------------- backups
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['posts', 'post_analytics', 'chat_messages',
                             'instagram_scraped_posts', 'scraped_instagram_data'] LOOP
        IF to_regclass('public.' || t) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_backup');
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM migration_legacy_snapshot) THEN
        INSERT INTO migration_events (event) VALUES ('legacy_migrated');
    END IF;
END;
$$;

-- ---------------------------------------------------------------- views

-- The legacy `posts` row, column for column, plus organization_id.
CREATE VIEW posts_unified AS
SELECT p.id, p.user_id, p.platform, p.external_id, p.status,
       c.caption, c.content, coalesce(c.hashtags, '{}') AS hashtags,
       coalesce(media.urls, '{}') AS media_urls,
       p.media_type, p.thumbnail_url, p.permalink, p.scheduled_at, p.published_at,
       coalesce(i.likes_count, 0) AS likes_count, coalesce(i.comments_count, 0) AS comments_count,
       coalesce(i.shares_count, 0) AS shares_count, coalesce(i.saves_count, 0) AS saves_count,
       coalesce(i.reach, 0) AS reach, coalesce(i.impressions, 0) AS impressions,
       i.engagement_rate, i.insights, emb.embedding,
       p.created_at, p.updated_at, p.organization_id
FROM posts_core p
LEFT JOIN posts_content c ON c.organization_id = p.organization_id AND c.post_id = p.id
LEFT JOIN post_insights i ON i.organization_id = p.organization_id AND i.post_id = p.id
LEFT JOIN LATERAL (
    SELECT array_agg(m.url ORDER BY l.position) AS urls
    FROM post_media_links l
    JOIN media_files m ON m.organization_id = l.organization_id AND m.id = l.media_file_id
    WHERE l.organization_id = p.organization_id AND l.post_id = p.id
) media ON true
LEFT JOIN LATERAL (
    -- The post's current 1536-dimensional embedding (the legacy column's type).
    SELECT e.embedding::vector(1536) AS embedding
    FROM embeddings e
    WHERE e.organization_id = p.organization_id AND e.entity_type = 'post' AND e.entity_id = p.id
      AND e.dimension = 1536
    ORDER BY e.updated_at DESC, e.model
    LIMIT 1
) emb ON true;

-- One row per post: its counters, engagement and how much history it has.
CREATE VIEW analytics_dashboard AS
SELECT p.organization_id, p.user_id, p.id AS post_id, p.platform, p.status, p.published_at,
       c.caption, i.likes_count, i.comments_count, i.shares_count, i.saves_count,
       i.reach, i.impressions, i.engagement_rate,
       i.likes_count + i.comments_count + i.shares_count + i.saves_count AS total_engagement,
       m.metric_points, m.last_recorded_at
FROM posts_core p
JOIN post_insights i ON i.organization_id = p.organization_id AND i.post_id = p.id
LEFT JOIN posts_content c ON c.organization_id = p.organization_id AND c.post_id = p.id
LEFT JOIN LATERAL (
    SELECT count(*) AS metric_points, max(t.recorded_at) AS last_recorded_at
    FROM time_series_metrics t
    WHERE t.organization_id = p.organization_id AND t.entity_type = 'post' AND t.entity_id = p.id
) m ON true;

-- Published posts ranked within their organization by engagement rate.
CREATE VIEW top_performing_posts AS
SELECT p.organization_id, p.id AS post_id, p.user_id, p.platform, p.published_at, c.caption,
       i.likes_count, i.comments_count, i.shares_count, i.saves_count, i.reach, i.impressions,
       i.engagement_rate,
       rank() OVER (PARTITION BY p.organization_id
                    ORDER BY i.engagement_rate DESC NULLS LAST, i.likes_count DESC) AS rank_in_organization
FROM posts_core p
JOIN post_insights i ON i.organization_id = p.organization_id AND i.post_id = p.id
LEFT JOIN posts_content c ON c.organization_id = p.organization_id AND c.post_id = p.id
WHERE p.status = 'published';

-- ---------------------------------------------------------------- integrity

-- Every check of the migration, passed or not: legacy rows represented with
-- equal values (read from the *_backup tables and the archive), the backups
-- and archives unchanged since the snapshot of phase 01, foreign keys, and
-- organization ids. On a database built empty every check passes.
CREATE FUNCTION verify_migration_integrity()
RETURNS TABLE (check_name text, passed boolean, details text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    snap record;
    cur record;
    n bigint;
    extra bigint;
    total bigint;
    sample text;
    backups_present boolean := to_regclass('public.posts_backup') IS NOT NULL;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM migration_legacy_snapshot) THEN
        RETURN QUERY SELECT 'legacy_data', true, 'no legacy data: schema built on an empty database';
    ELSIF NOT backups_present THEN
        SELECT format('backups dropped by finalize_migration_cleanup() at %s', at) INTO sample
        FROM migration_events WHERE event = 'finalized';
        RETURN QUERY SELECT 'legacy_backups', sample IS NOT NULL,
                            coalesce(sample, 'the *_backup tables are missing and the migration was never finalized');
    ELSE
        -- Backups and archives hold exactly the rows the legacy tables had.
        FOR snap IN SELECT * FROM migration_legacy_snapshot ORDER BY table_name LOOP
            IF snap.table_name = 'user_profiles' THEN
                CONTINUE;  -- lives on, with organization_id added
            END IF;
            SELECT c.row_count, c.checksum INTO cur FROM relation_checksum((
                CASE WHEN snap.table_name IN ('content_generations', 'hashtag_analytics')
                     THEN 'archive.' || snap.table_name
                     ELSE 'public.' || snap.table_name || '_backup' END)::regclass) c;
            RETURN QUERY SELECT 'legacy_rows_kept:' || snap.table_name,
                                cur.row_count = snap.row_count AND cur.checksum = snap.checksum,
                                format('%s rows at migration, %s now%s', snap.row_count, cur.row_count,
                                       CASE WHEN cur.checksum <> snap.checksum THEN ', contents differ' ELSE '' END);
        END LOOP;

        SELECT count(*) INTO n FROM user_profiles;
        SELECT row_count INTO total FROM migration_legacy_snapshot WHERE table_name = 'user_profiles';
        RETURN QUERY SELECT 'user_profiles_kept', n >= total,
                            format('%s profiles at migration, %s now', total, n);

        -- posts: every legacy row equal, column by column, in posts_unified.
        SELECT count(*), (array_agg(b.id))[1:5]::text INTO n, sample
        FROM posts_backup b
        WHERE NOT EXISTS (
            SELECT 1 FROM posts_unified u
            WHERE u.id = b.id
              AND (u.user_id, u.platform, u.external_id, u.status, u.caption, u.content, u.hashtags,
                   u.media_urls, u.media_type, u.thumbnail_url, u.permalink, u.scheduled_at,
                   u.published_at, u.likes_count, u.comments_count, u.shares_count, u.saves_count,
                   u.reach, u.impressions, u.engagement_rate, u.insights, u.created_at, u.updated_at)
                  IS NOT DISTINCT FROM
                  (b.user_id, b.platform, b.external_id, b.status, b.caption, b.content, b.hashtags,
                   b.media_urls, b.media_type, b.thumbnail_url, b.permalink, b.scheduled_at,
                   b.published_at, b.likes_count, b.comments_count, b.shares_count, b.saves_count,
                   b.reach, b.impressions, b.engagement_rate, b.insights, b.created_at, b.updated_at));
        SELECT count(*) INTO total FROM posts_backup;
        RETURN QUERY SELECT 'posts', n = 0,
                            format('%s legacy posts, %s missing or different%s', total, n,
                                   CASE WHEN n > 0 THEN ' (e.g. ' || sample || ')' ELSE '' END);

        -- Counters of every analytics snapshot, one point each (hot or archived).
        WITH expected AS (
            SELECT a.post_id, a.recorded_at, v.metric_name, v.value
            FROM post_analytics_backup a
            CROSS JOIN LATERAL (VALUES ('likes', a.likes::double precision),
                                       ('comments', a.comments::double precision),
                                       ('shares', a.shares::double precision),
                                       ('saves', a.saves::double precision),
                                       ('reach', a.reach::double precision),
                                       ('impressions', a.impressions::double precision),
                                       ('engagement_rate', a.engagement_rate::double precision)) v(metric_name, value)
            WHERE v.value IS NOT NULL),
        actual AS (
            SELECT entity_id, recorded_at, metric_name, value FROM public.time_series_metrics
            WHERE source = 'post_analytics' AND entity_type = 'post'
            UNION ALL
            SELECT entity_id, recorded_at, metric_name, value FROM archive.time_series_metrics
            WHERE source = 'post_analytics' AND entity_type = 'post'),
        missing AS (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual),
        extra AS (SELECT * FROM actual EXCEPT ALL SELECT * FROM expected)
        SELECT (SELECT count(*) FROM missing), (SELECT count(*) FROM extra), (SELECT count(*) FROM expected)
        INTO n, extra, total;
        RETURN QUERY SELECT 'post_analytics_metrics', n = 0 AND extra = 0,
                            format('%s legacy analytics counters, %s without their point, %s points without their counter',
                                   total, n, extra);

        -- Each legacy post's counters, one point each at the post's updated_at.
        WITH expected AS (
            SELECT b.id, b.updated_at, v.metric_name, v.value
            FROM posts_backup b
            CROSS JOIN LATERAL (VALUES ('likes', b.likes_count::double precision),
                                       ('comments', b.comments_count::double precision),
                                       ('shares', b.shares_count::double precision),
                                       ('saves', b.saves_count::double precision),
                                       ('reach', b.reach::double precision),
                                       ('impressions', b.impressions::double precision),
                                       ('engagement_rate', b.engagement_rate::double precision)) v(metric_name, value)
            WHERE v.value IS NOT NULL),
        actual AS (
            SELECT entity_id, recorded_at, metric_name, value FROM public.time_series_metrics
            WHERE source = 'post_insights' AND entity_type = 'post'
            UNION ALL
            SELECT entity_id, recorded_at, metric_name, value FROM archive.time_series_metrics
            WHERE source = 'post_insights' AND entity_type = 'post'),
        missing AS (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual)
        SELECT count(*), (SELECT count(*) FROM expected) INTO n, total FROM missing;
        RETURN QUERY SELECT 'post_insights_metrics', n = 0,
                            format('%s legacy post counters, %s without their point', total, n);

        -- Every legacy embedding, same vector, in the owner's organization.
        SELECT count(*) FILTER (WHERE e.id IS NULL), count(*) INTO n, total
        FROM posts_backup b
        JOIN user_profiles u ON u.id = b.user_id
        LEFT JOIN embeddings e ON e.organization_id = u.organization_id AND e.entity_type = 'post'
             AND e.entity_id = b.id AND e.model = 'legacy' AND e.embedding = b.embedding
        WHERE b.embedding IS NOT NULL;
        RETURN QUERY SELECT 'post_embeddings', n = 0,
                            format('%s legacy post embeddings, %s missing or different', total, n);

        SELECT count(*) FILTER (WHERE e.id IS NULL), count(*) INTO n, total
        FROM chat_messages_backup b
        JOIN user_profiles u ON u.id = b.user_id
        LEFT JOIN embeddings e ON e.organization_id = u.organization_id AND e.entity_type = 'chat_message'
             AND e.entity_id = b.id AND e.model = 'legacy' AND e.embedding = b.embedding
        WHERE b.embedding IS NOT NULL;
        RETURN QUERY SELECT 'chat_message_embeddings', n = 0,
                            format('%s legacy chat message embeddings, %s missing or different', total, n);

        -- Chat history lives on as AI context entries with the same ids.
        SELECT count(*) FILTER (WHERE a.id IS NULL), count(*) INTO n, total
        FROM chat_messages_backup b
        JOIN user_profiles u ON u.id = b.user_id
        LEFT JOIN ai_context_logs a ON a.organization_id = u.organization_id AND a.id = b.id
             AND a.user_id = b.user_id AND a.occurred_at = b.created_at
             AND a.metadata->>'role' = b.role AND a.metadata->>'session_id' = b.session_id::text
             AND CASE WHEN b.role = 'assistant' THEN a.ai_response ELSE a.context_summary END = b.content;
        RETURN QUERY SELECT 'chat_messages', n = 0,
                            format('%s legacy chat messages, %s missing or different in ai_context_logs', total, n);

        -- Scrapes: one row per (user, shortcode) holding the latest values and every raw payload.
        WITH scrapes AS (
            SELECT user_id, shortcode, owner_username, caption, like_count, comment_count, media_url,
                   taken_at, scraped_at AS at, NULL::jsonb AS raw,
                   'instagram_scraped_posts' AS source, id::text AS source_id
            FROM instagram_scraped_posts_backup
            UNION ALL
            SELECT user_id, post_shortcode, username, caption_text, likes, comments, display_url,
                   posted_at, created_at, raw, 'scraped_instagram_data', id::text
            FROM scraped_instagram_data_backup),
        latest AS (
            SELECT DISTINCT ON (user_id, shortcode) * FROM scrapes
            ORDER BY user_id, shortcode, at DESC, source, source_id DESC)
        SELECT count(*) INTO n FROM latest l
        WHERE NOT EXISTS (
            SELECT 1 FROM scraped_posts s
            WHERE s.user_id IS NOT DISTINCT FROM l.user_id AND s.shortcode = l.shortcode
              AND (s.owner_username, s.caption, s.like_count, s.comment_count, s.media_url, s.taken_at, s.scraped_at)
                  IS NOT DISTINCT FROM
                  (l.owner_username, l.caption, l.like_count, l.comment_count, l.media_url, l.taken_at, l.at));
        SELECT count(*) INTO total FROM scraped_instagram_data_backup b
        WHERE b.raw IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM scraped_posts s, jsonb_array_elements(s.raw_payloads) p
            WHERE s.user_id IS NOT DISTINCT FROM b.user_id AND s.shortcode = b.post_shortcode
              AND p->>'source_id' = b.id::text AND p->'payload' = b.raw);
        RETURN QUERY SELECT 'scraped_posts', n = 0 AND total = 0,
                            format('%s (user, shortcode) pairs without their latest values, %s raw payloads missing',
                                   n, total);

        -- Every migrated row carries its owner's personal organization.
        SELECT count(*) INTO n FROM posts_backup b
        JOIN user_profiles u ON u.id = b.user_id
        WHERE NOT EXISTS (SELECT 1 FROM posts_core p WHERE p.id = b.id AND p.organization_id = u.organization_id)
           OR EXISTS (SELECT 1 FROM posts_core p WHERE p.id = b.id AND p.organization_id <> u.organization_id);
        SELECT count(*) INTO total FROM time_series_metrics m
        WHERE m.source IN ('post_analytics', 'post_insights')
          AND NOT EXISTS (SELECT 1 FROM posts_backup b JOIN user_profiles u ON u.id = b.user_id
                          WHERE b.id = m.entity_id AND u.organization_id = m.organization_id);
        RETURN QUERY SELECT 'organization_ids', n = 0 AND total = 0,
                            format('%s legacy posts and %s legacy metric points outside their owner''s organization',
                                   n, total);
    END IF;

    -- Every user: exactly one personal organization, owned by them, and
    -- their default organization.
    SELECT count(*) INTO n FROM user_profiles u
    WHERE (SELECT count(*) FROM organizations o WHERE o.personal_owner_id = u.id) <> 1
       OR NOT EXISTS (SELECT 1 FROM organizations o
                      JOIN organization_members m ON m.organization_id = o.id AND m.user_id = u.id
                                                  AND m.role = 'owner'
                      WHERE o.personal_owner_id = u.id AND o.id = u.organization_id);
    SELECT count(*) INTO total FROM user_profiles;
    RETURN QUERY SELECT 'personal_organizations', n = 0,
                        format('%s users, %s without exactly one personal organization they own', total, n);

    -- Every organization has an owner.
    SELECT count(*) INTO n FROM organizations o
    WHERE NOT EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = o.id AND m.role = 'owner');
    RETURN QUERY SELECT 'organization_owners', n = 0, format('%s organizations without an owner', n);

    -- Foreign keys are enforced, and the polymorphic post references resolve.
    SELECT count(*), string_agg(conrelid::regclass || '.' || conname, ', ') INTO n, sample
    FROM pg_constraint WHERE contype = 'f' AND NOT convalidated;
    SELECT count(*) INTO total FROM embeddings e
    WHERE e.entity_type = 'post' AND e.model = 'legacy'
      AND NOT EXISTS (SELECT 1 FROM posts_core p WHERE p.organization_id = e.organization_id AND p.id = e.entity_id);
    RETURN QUERY SELECT 'foreign_keys', n = 0 AND total = 0,
                        format('%s foreign keys not validated%s, %s legacy post embeddings without their post',
                               n, coalesce(' (' || sample || ')', ''), total);
END;
$$;

-- Drops the *_backup tables, but only when every integrity check passes;
-- otherwise raises, naming the failed checks, and drops nothing.
CREATE FUNCTION finalize_migration_cleanup() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    failed text;
BEGIN
    SELECT string_agg(check_name || ' (' || details || ')', '; ') INTO failed
    FROM verify_migration_integrity() WHERE NOT passed;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'integrity checks failed, nothing was dropped: %', failed
            USING ERRCODE = 'AF002';
    END IF;
    IF to_regclass('public.posts_backup') IS NULL THEN
        RETURN 'nothing to drop';
    END IF;
    DROP TABLE IF EXISTS post_analytics_backup, posts_backup, chat_messages_backup,
               instagram_scraped_posts_backup, scraped_instagram_data_backup;
    INSERT INTO migration_events (event) VALUES ('finalized');
    RETURN 'dropped posts_backup, post_analytics_backup, chat_messages_backup, '
           'instagram_scraped_posts_backup, scraped_instagram_data_backup';
END;
$$;
