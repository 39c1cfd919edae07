-- Rollback of migrations 01-07 on a migrated legacy database, back to the
-- legacy schema (crates/affinity-testkit/src/legacy/schema.sql) with every
-- legacy row as it was at migration time. Run by `affinity migrate
-- --rollback` (src/db/rollback.rs) in
-- one transaction, after it has refused finalized databases and databases
-- built empty. Lost: whatever was written after the migration into the new
-- tables (posts_core, time_series_metrics, organizations, ai_context_logs,
-- ...). Kept: user_profiles rows created since (without organization_id).
--
-- Objects are dropped by name, without CASCADE: an object the migrations did
-- not create that depends on one of them makes the rollback fail (and change
-- nothing) rather than disappear silently. A new migration must add what it
-- creates here (and raise ROLLBACK_KNOWS_UP_TO in migrate.rs).

-- Legacy tables back where they were: renamed *_backup tables (phase 04)
-- and the obsolete tables moved to schema `archive` (phase 04) when they
-- were legacy tables (listed in the phase 01 snapshot); the empty ones phase
-- 04 created in their place go with the rest below.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['posts', 'post_analytics', 'chat_messages',
                             'instagram_scraped_posts', 'scraped_instagram_data'] LOOP
        IF to_regclass('public.' || t || '_backup') IS NOT NULL THEN
            IF to_regclass('public.' || t) IS NOT NULL THEN
                RAISE EXCEPTION 'both %_backup and % exist: which one is the legacy table?', t, t;
            END IF;
            EXECUTE format('ALTER TABLE %I RENAME TO %I', t || '_backup', t);
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['content_generations', 'hashtag_analytics'] LOOP
        -- (to_regclass raises when the schema does not exist)
        IF to_regnamespace('archive') IS NOT NULL AND to_regclass('archive.' || t) IS NOT NULL THEN
            IF EXISTS (SELECT 1 FROM migration_legacy_snapshot s WHERE s.table_name = t) THEN
                IF to_regclass('public.' || t) IS NOT NULL THEN
                    RAISE EXCEPTION 'both archive.% and public.% exist', t, t;
                END IF;
                EXECUTE format('ALTER TABLE archive.%I SET SCHEMA public', t);
            ELSE
                EXECUTE format('DROP TABLE archive.%I', t);
            END IF;
        END IF;
    END LOOP;
END;
$$;

-- Phase 03 added organization_id (and its foreign key) to user_profiles.
ALTER TABLE user_profiles DROP COLUMN IF EXISTS organization_id;

-- Phase 04 views.
DROP VIEW IF EXISTS posts_unified, analytics_dashboard, top_performing_posts;

-- Every table the phases created (partitions of time_series_metrics, and
-- triggers and indexes, go with their tables).
DROP TABLE IF EXISTS
    metric_digests_daily,                                                      -- 13
    ai_context_feedback,                                                       -- 12
    embedding_queue, item_texts,                                               -- 09
    metric_batch_keys,                                                         -- 06
    metric_rollups_daily, metric_rollups_hourly, metric_rollup_zones,          -- 05
    scraped_posts, migration_events,                                           -- 04
    ai_context_logs, organization_members, organizations,                      -- 03
    -- (migration 14 only sets how embeddings stores its vectors, and 15's
    -- index goes with item_texts)
    embeddings, vector_index_dimensions, time_series_metrics,                  -- 02
    post_media_links, media_files, post_insights, posts_content, posts_core,   -- 01
    migration_legacy_snapshot;

-- Every function the phases created.
DROP FUNCTION IF EXISTS
    metric_points_of_type, metric_totals_of_type, metric_latest_before, metric_percentiles,
    metric_digest_compression, metric_digest_values, metric_digests_on_insert,
    metric_digests_prepare_days, metric_digests_rebuild, metric_digests_on_delete,
    metric_digests_on_update, metric_digests_on_truncate, metric_digests_on_new_zone, -- 13
    search_tenant_tag, search_tenant_document, search_tenant_query,           -- 15
    search_prepare, search_document, search_query, search_snippet, search_hashtags,
    item_texts_attributes, item_texts_touch,                                  -- 10
    item_texts_version, item_texts_enqueue, post_text, posts_content_text,
    ai_context_text, ai_context_logs_text,                                    -- 09
    metric_points_announce,                                                   -- 08
    metrics_aggregated_stepwise, metric_floor_hour, metric_ceil_hour,
    metric_day_at_or_after, metric_points_between,                            -- 07
    add_metric_rollup_zone, drop_metric_rollup_zone, metric_rollups_on_insert,
    metric_rollups_recompute, metric_rollups_prepare_keys, metric_rollups_on_delete,
    metric_rollups_on_update, metric_rollups_on_truncate,                      -- 05
    archive_old_metrics, verify_migration_integrity, finalize_migration_cleanup, -- 04
    organization_members_keep_an_owner, ensure_user_profile, organization_members_notify,
    user_has_org_permission, find_similar_content, get_metrics_aggregated,     -- 03
    ensure_metric_partitions, embedding_index_expression, create_embedding_indexes,
    drop_embedding_indexes,                                                    -- 02
    relation_checksum, media_url_hash;                                         -- 01

DROP TYPE IF EXISTS org_role;

-- btree_gin, when migration 10 created it (its indexes went with item_texts,
-- and with them migration 11's settings of them).
DO $$
BEGIN
    IF obj_description((SELECT oid FROM pg_extension WHERE extname = 'btree_gin'), 'pg_extension')
       = 'created by affinity migration 10 (Search)' THEN
        DROP EXTENSION btree_gin;
    END IF;
END;
$$;

-- tdigest, when migration 13 created it.
DO $$
BEGIN
    IF obj_description((SELECT oid FROM pg_extension WHERE extname = 'tdigest'), 'pg_extension')
       = 'created by affinity migration 13 (Analytics)' THEN
        DROP EXTENSION tdigest;
    END IF;
END;
$$;

-- Schema `archive` (phase 04) with its table of archived metric points,
-- unless something else lives in it. (Names, not casts: a constant
-- 'archive'::regnamespace fails when the schema does not exist.)
DO $$
DECLARE
    ns oid := to_regnamespace('archive');
BEGIN
    IF ns IS NULL THEN
        RETURN;
    END IF;
    DROP TABLE IF EXISTS archive.time_series_metrics;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = ns)
       AND NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = ns)
       AND NOT EXISTS (SELECT 1 FROM pg_type WHERE typnamespace = ns) THEN
        DROP SCHEMA archive;
    END IF;
END;
$$;

-- No migration applied: the next `affinity migrate` starts again at phase 01.
DROP TABLE _sqlx_migrations;
