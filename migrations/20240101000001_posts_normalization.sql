-- Phase 01: posts normalization.
--
-- The wide legacy `posts` row is split by concern: identity and lifecycle
-- (posts_core), text (posts_content), media (media_files + post_media_links,
-- one row per distinct URL of a user, display order kept), and the counters
-- snapshot with AI insights (post_insights).
--
-- On a legacy database (a `posts` table exists) the rows are copied over;
-- the legacy tables stay untouched until phase 04 renames them *_backup.
-- On an empty database the same file builds the new tables directly.

CREATE EXTENSION IF NOT EXISTS vector;

-- Users come from the auth provider (Supabase auth.users); the profile row is
-- shared with the legacy schema, so it is created only on an empty database.
CREATE TABLE IF NOT EXISTS user_profiles (
    id                 uuid PRIMARY KEY,
    email              text UNIQUE,
    full_name          text,
    avatar_url         text,
    instagram_username text,
    plan               text NOT NULL DEFAULT 'free',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Row counts and checksums of every legacy table, taken before any phase
-- changes anything: verify_migration_integrity() proves against them that
-- the backups and archives still hold every legacy row.
CREATE TABLE migration_legacy_snapshot (
    table_name text PRIMARY KEY,
    row_count  bigint NOT NULL,
    checksum   numeric NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now()
);

-- Order-independent checksum of a relation's rows (sum of 64-bit hashes of
-- each row's text form): streams, so it works on tables of any size.
CREATE FUNCTION relation_checksum(rel regclass, OUT row_count bigint, OUT checksum numeric)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    EXECUTE format('SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) FROM %s t', rel)
        INTO row_count, checksum;
END;
$$;

DO $$
DECLARE
    t text;
    bad text;
BEGIN
    IF to_regclass('public.posts') IS NULL THEN
        RETURN;  -- empty database: nothing to carry over
    END IF;

    -- Refuse data the new schema cannot hold, naming the rows, before
    -- anything is written (the transaction leaves the database as it was).
    SELECT string_agg(id::text, ', ') INTO bad
    FROM (SELECT id FROM posts WHERE array_position(media_urls, NULL) IS NOT NULL LIMIT 20) x;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'phase 01 (posts normalization): posts with a NULL element in media_urls: %', bad;
    END IF;

    FOREACH t IN ARRAY ARRAY['user_profiles', 'posts', 'post_analytics', 'chat_messages',
                             'content_generations', 'hashtag_analytics',
                             'instagram_scraped_posts', 'scraped_instagram_data'] LOOP
        IF to_regclass('public.' || t) IS NOT NULL THEN
            INSERT INTO migration_legacy_snapshot (table_name, row_count, checksum)
            SELECT t, c.row_count, c.checksum FROM relation_checksum(('public.' || t)::regclass) c;
        END IF;
    END LOOP;
END;
$$;

CREATE TABLE posts_core (
    id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    platform      text NOT NULL DEFAULT 'instagram',
    external_id   text,                       -- the platform's id once published
    status        text NOT NULL DEFAULT 'draft',
    permalink     text,
    -- The post's format and cover as the legacy post had them: they belong
    -- to the post (a carousel is a post-level type), not to one media file.
    media_type    text,
    thumbnail_url text,
    scheduled_at  timestamptz,
    published_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posts_core_user_id_idx ON posts_core (user_id);

CREATE TABLE posts_content (
    post_id  uuid NOT NULL PRIMARY KEY REFERENCES posts_core (id) ON DELETE CASCADE,
    caption  text,
    content  text,
    hashtags text[] NOT NULL DEFAULT '{}'
);

-- The key of a media URL. convert_to() is only STABLE in general, but with a
-- fixed target encoding its result never changes, so this wrapper can be
-- IMMUTABLE and used in a generated column.
CREATE FUNCTION media_url_hash(url text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT sha256(convert_to(url, 'UTF8')) $$;

CREATE TABLE media_files (
    id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    url           text NOT NULL,
    -- URLs can be longer than a btree entry allows: uniqueness goes through a hash.
    url_sha256    bytea NOT NULL GENERATED ALWAYS AS (media_url_hash(url)) STORED,
    media_type    text,
    thumbnail_url text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX media_files_user_url_key ON media_files (user_id, url_sha256);

CREATE TABLE post_media_links (
    post_id       uuid NOT NULL REFERENCES posts_core (id) ON DELETE CASCADE,
    media_file_id uuid NOT NULL REFERENCES media_files (id) ON DELETE CASCADE,
    position      integer NOT NULL CHECK (position >= 1), -- 1-based display order
    PRIMARY KEY (post_id, position)
);
CREATE INDEX post_media_links_media_file_idx ON post_media_links (media_file_id);

CREATE TABLE post_insights (
    post_id         uuid NOT NULL PRIMARY KEY REFERENCES posts_core (id) ON DELETE CASCADE,
    likes_count     integer NOT NULL DEFAULT 0,
    comments_count  integer NOT NULL DEFAULT 0,
    shares_count    integer NOT NULL DEFAULT 0,
    saves_count     integer NOT NULL DEFAULT 0,
    reach           integer NOT NULL DEFAULT 0,
    impressions     integer NOT NULL DEFAULT 0,
    engagement_rate numeric(6, 3),
    insights        jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF to_regclass('public.posts') IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO posts_core (id, user_id, platform, external_id, status, permalink, media_type,
                            thumbnail_url, scheduled_at, published_at, created_at, updated_at)
    SELECT id, user_id, platform, external_id, status, permalink, media_type,
           thumbnail_url, scheduled_at, published_at, created_at, updated_at
    FROM posts;

    INSERT INTO posts_content (post_id, caption, content, hashtags)
    SELECT id, caption, content, hashtags FROM posts;

    -- One media file per distinct URL of a user; its type and thumbnail are
    -- those of the earliest post that used it.
    INSERT INTO media_files (user_id, url, media_type, thumbnail_url, created_at)
    SELECT DISTINCT ON (p.user_id, u.url)
           p.user_id, u.url, p.media_type, p.thumbnail_url, p.created_at
    FROM posts p
    CROSS JOIN LATERAL unnest(p.media_urls) AS u(url)
    ORDER BY p.user_id, u.url, p.created_at, p.id;

    INSERT INTO post_media_links (post_id, media_file_id, position)
    SELECT p.id, m.id, u.position
    FROM posts p
    CROSS JOIN LATERAL unnest(p.media_urls) WITH ORDINALITY AS u(url, position)
    JOIN media_files m
      ON m.user_id = p.user_id AND m.url_sha256 = media_url_hash(u.url);

    INSERT INTO post_insights (post_id, likes_count, comments_count, shares_count, saves_count,
                               reach, impressions, engagement_rate, insights, updated_at)
    SELECT id, likes_count, comments_count, shares_count, saves_count,
           reach, impressions, engagement_rate, insights, updated_at
    FROM posts;
END;
$$;
