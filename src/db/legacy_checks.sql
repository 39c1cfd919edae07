-- Legacy data the phases cannot carry, named before phase 01 writes
-- anything (run by src/db/migrate.rs in the migrations' transaction, only
-- when phase 01 is pending). Each check lists at most 20 offending ids; all
-- failing checks are reported together. An empty database (no legacy
-- `posts`) has nothing to check.
DO $$
DECLARE
    problems text[] := '{}';
    bad text;
BEGIN
    IF to_regclass('public.posts') IS NULL THEN
        RETURN;
    END IF;

    -- Phase 01 copies posts.user_id into posts_core, which references
    -- user_profiles: a post whose user is gone (the legacy foreign key
    -- dropped or bypassed) has no owner and no organization.
    SELECT string_agg(id::text, ', ') INTO bad FROM (
        SELECT p.id FROM posts p
        WHERE NOT EXISTS (SELECT 1 FROM user_profiles u WHERE u.id = p.user_id)
        ORDER BY p.id LIMIT 20) x;
    IF bad IS NOT NULL THEN
        problems := problems || ('phase 01 (posts normalization): posts whose user_id is not in user_profiles: ' || bad);
    END IF;

    -- Phase 01 unnests media_urls into media_files.url (NOT NULL).
    SELECT string_agg(id::text, ', ') INTO bad FROM (
        SELECT id FROM posts WHERE array_position(media_urls, NULL) IS NOT NULL
        ORDER BY id LIMIT 20) x;
    IF bad IS NOT NULL THEN
        problems := problems || ('phase 01 (posts normalization): posts with a NULL element in media_urls: ' || bad);
    END IF;

    -- The legacy schema keeps (platform, external_id) unique; phase 03 keeps
    -- it unique per organization, and every user's posts go to the user's
    -- personal organization: two posts of one user with the same platform id
    -- cannot both be carried. (Two users' posts sharing a platform id can:
    -- they land in different organizations.)
    SELECT string_agg(ids, '; ') INTO bad FROM (
        SELECT format('%s %s of user %s: %s', platform, external_id, user_id,
                      string_agg(id::text, ', ' ORDER BY id)) AS ids
        FROM posts WHERE external_id IS NOT NULL
        GROUP BY user_id, platform, external_id HAVING count(*) > 1
        ORDER BY user_id, platform, external_id LIMIT 20) x;
    IF bad IS NOT NULL THEN
        problems := problems || ('phase 03 (organizations): posts of one user sharing a platform id (platform external_id of user: post ids): ' || bad);
    END IF;

    -- Phase 02 turns analytics snapshots into metric points of their post;
    -- phase 03 gives each point its post's organization.
    IF to_regclass('public.post_analytics') IS NOT NULL THEN
        SELECT string_agg(id::text, ', ') INTO bad FROM (
            SELECT a.id FROM post_analytics a
            WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = a.post_id)
            ORDER BY a.id LIMIT 20) x;
        IF bad IS NOT NULL THEN
            problems := problems || ('phase 02 (metrics): post_analytics rows whose post_id is not in posts: ' || bad);
        END IF;
    END IF;

    -- Phase 03 makes chat messages AI context entries of their user's
    -- organization: one without its user would be left behind.
    IF to_regclass('public.chat_messages') IS NOT NULL THEN
        SELECT string_agg(id::text, ', ') INTO bad FROM (
            SELECT c.id FROM chat_messages c
            WHERE NOT EXISTS (SELECT 1 FROM user_profiles u WHERE u.id = c.user_id)
            ORDER BY c.id LIMIT 20) x;
        IF bad IS NOT NULL THEN
            problems := problems || ('phase 03 (AI context): chat_messages whose user_id is not in user_profiles: ' || bad);
        END IF;
    END IF;

    -- Phase 04 merges the scrapes into scraped_posts, which references user_profiles.
    IF to_regclass('public.instagram_scraped_posts') IS NOT NULL THEN
        SELECT string_agg(id::text, ', ') INTO bad FROM (
            SELECT s.id FROM instagram_scraped_posts s
            WHERE s.user_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM user_profiles u WHERE u.id = s.user_id)
            ORDER BY s.id LIMIT 20) x;
        IF bad IS NOT NULL THEN
            problems := problems || ('phase 04 (cleanup): instagram_scraped_posts whose user_id is not in user_profiles: ' || bad);
        END IF;
    END IF;
    IF to_regclass('public.scraped_instagram_data') IS NOT NULL THEN
        SELECT string_agg(id::text, ', ') INTO bad FROM (
            SELECT s.id FROM scraped_instagram_data s
            WHERE s.user_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM user_profiles u WHERE u.id = s.user_id)
            ORDER BY s.id LIMIT 20) x;
        IF bad IS NOT NULL THEN
            problems := problems || ('phase 04 (cleanup): scraped_instagram_data whose user_id is not in user_profiles: ' || bad);
        END IF;
    END IF;

    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'the legacy data breaks assumptions of the migrations: %',
            array_to_string(problems, ' | ')
            USING ERRCODE = 'AF003',
                  HINT = 'fix or remove these rows in the legacy database, then migrate again';
    END IF;
END;
$$;
