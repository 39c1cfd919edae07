-- Phase 03: organizations, multi-tenancy and AI context.
--
-- Every legacy user gets a personal organization of their own, as its owner,
-- and every row of theirs its id: one shared "default organization" would let
-- every user see every other user's content, which the legacy database never
-- allowed. Tenant tables carry organization_id in their primary keys and in
-- the foreign keys between them, so the schema stays distributable by
-- organization_id (Citus); user_profiles and organizations stay reference
-- tables.

-- Declaration order is the hierarchy: each role includes every lower one.
CREATE TYPE org_role AS ENUM ('viewer', 'editor', 'admin', 'owner');

CREATE TABLE organizations (
    id                uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    name              text NOT NULL CHECK (name <> ''),
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{1,100}$'),
    -- Set on a user's personal organization (at most one per user).
    personal_owner_id uuid UNIQUE REFERENCES user_profiles (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization_members (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    role            org_role NOT NULL,
    joined_at       timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user_idx ON organization_members (user_id);

-- An organization never loses its last owner (unless it is itself being
-- deleted). The organization row is locked first, so that two concurrent
-- removals of its two owners cannot both succeed.
CREATE FUNCTION organization_members_keep_an_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.role <> 'owner' OR (TG_OP = 'UPDATE' AND NEW.role = 'owner'
                               AND NEW.organization_id = OLD.organization_id) THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM organizations WHERE id = OLD.organization_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- the organization itself is being deleted
    END IF;
    IF NOT EXISTS (SELECT 1 FROM organization_members
                   WHERE organization_id = OLD.organization_id AND role = 'owner') THEN
        RAISE EXCEPTION 'organization % would be left without an owner', OLD.organization_id
            USING ERRCODE = 'AF001', HINT = 'make another member an owner first';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER organization_members_keep_an_owner
    AFTER UPDATE OR DELETE ON organization_members
    FOR EACH ROW EXECUTE FUNCTION organization_members_keep_an_owner();

-- The user's default organization (their personal one).
ALTER TABLE user_profiles ADD COLUMN organization_id uuid;

INSERT INTO organizations (name, slug, personal_owner_id, created_at, updated_at)
SELECT coalesce(nullif(btrim(full_name), ''), nullif(btrim(instagram_username), ''),
                nullif(btrim(email), ''), 'Personal workspace'),
       'personal-' || id::text, id, created_at, created_at
FROM user_profiles;

INSERT INTO organization_members (organization_id, user_id, role, joined_at, updated_at)
SELECT o.id, o.personal_owner_id, 'owner', o.created_at, o.created_at
FROM organizations o WHERE o.personal_owner_id IS NOT NULL;

UPDATE user_profiles u SET organization_id = o.id
FROM organizations o WHERE o.personal_owner_id = u.id;

ALTER TABLE user_profiles
    ALTER COLUMN organization_id SET NOT NULL,
    -- Deferred: a new user's profile and personal organization refer to
    -- each other and are created in one transaction (ensure_user_profile).
    ADD CONSTRAINT user_profiles_organization_id_fkey FOREIGN KEY (organization_id)
        REFERENCES organizations (id) DEFERRABLE INITIALLY DEFERRED;

-- The profile (and personal organization) of a user id, created on first
-- sight: any auth-provider user id is valid wherever a user id is taken.
-- Returns the user's default organization.
CREATE FUNCTION ensure_user_profile(uid uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    org uuid;
BEGIN
    SELECT organization_id INTO org FROM user_profiles WHERE id = uid;
    IF FOUND THEN
        RETURN org;
    END IF;
    org := gen_random_uuid();
    INSERT INTO user_profiles (id, organization_id) VALUES (uid, org)
        ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN  -- created concurrently
        SELECT organization_id INTO org FROM user_profiles WHERE id = uid;
        RETURN org;
    END IF;
    INSERT INTO organizations (id, name, slug, personal_owner_id)
        VALUES (org, 'Personal workspace', 'personal-' || uid::text, uid);
    INSERT INTO organization_members (organization_id, user_id, role) VALUES (org, uid, 'owner');
    RETURN org;
END;
$$;

-- Created after the legacy memberships above, which need no announcement.
-- Every membership change is announced (at commit) on the channel
-- `affinity_membership` as '<organization_id>:<user_id>', so that each
-- replica's permission cache drops that entry at once.
CREATE FUNCTION organization_members_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    m organization_members;
BEGIN
    m := coalesce(NEW, OLD);
    PERFORM pg_notify('affinity_membership', m.organization_id || ':' || m.user_id);
    IF TG_OP = 'UPDATE' AND (OLD.organization_id, OLD.user_id) <> (NEW.organization_id, NEW.user_id) THEN
        PERFORM pg_notify('affinity_membership', OLD.organization_id || ':' || OLD.user_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER organization_members_notify
    AFTER INSERT OR UPDATE OR DELETE ON organization_members
    FOR EACH ROW EXECUTE FUNCTION organization_members_notify();

-- ---------------------------------------------------------------- tenant ids
-- Filled from the owning user's personal organization, then made NOT NULL and
-- part of the keys. HNSW indexes are rebuilt after the embeddings update.
SELECT drop_embedding_indexes();

ALTER TABLE posts_core ADD COLUMN organization_id uuid;
UPDATE posts_core p SET organization_id = u.organization_id FROM user_profiles u WHERE u.id = p.user_id;

ALTER TABLE posts_content ADD COLUMN organization_id uuid;
UPDATE posts_content c SET organization_id = p.organization_id FROM posts_core p WHERE p.id = c.post_id;

ALTER TABLE post_insights ADD COLUMN organization_id uuid;
UPDATE post_insights i SET organization_id = p.organization_id FROM posts_core p WHERE p.id = i.post_id;

ALTER TABLE media_files ADD COLUMN organization_id uuid;
UPDATE media_files m SET organization_id = u.organization_id FROM user_profiles u WHERE u.id = m.user_id;

ALTER TABLE post_media_links ADD COLUMN organization_id uuid;
UPDATE post_media_links l SET organization_id = p.organization_id FROM posts_core p WHERE p.id = l.post_id;

ALTER TABLE time_series_metrics ADD COLUMN organization_id uuid;
UPDATE time_series_metrics m SET organization_id = p.organization_id
FROM posts_core p WHERE m.entity_type = 'post' AND p.id = m.entity_id;

ALTER TABLE embeddings ADD COLUMN organization_id uuid;
UPDATE embeddings e SET organization_id = p.organization_id
FROM posts_core p WHERE e.entity_type = 'post' AND p.id = e.entity_id;
DO $$
BEGIN
    IF to_regclass('public.chat_messages') IS NOT NULL THEN
        UPDATE embeddings e SET organization_id = u.organization_id
        FROM chat_messages c JOIN user_profiles u ON u.id = c.user_id
        WHERE e.entity_type = 'chat_message' AND c.id = e.entity_id;
    END IF;
END;
$$;

-- Name the rows that found no organization, rather than fail on NOT NULL.
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(x, '; ') INTO bad FROM (
        SELECT format('time_series_metrics %s %s', entity_type, entity_id) AS x
        FROM time_series_metrics WHERE organization_id IS NULL
        UNION ALL
        SELECT format('embeddings %s %s', entity_type, entity_id)
        FROM embeddings WHERE organization_id IS NULL
        LIMIT 20) t;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'phase 03 (organizations): rows whose owner could not be found: %', bad;
    END IF;
END;
$$;

-- Re-key: organization_id leads every tenant key and foreign key.
ALTER TABLE posts_content DROP CONSTRAINT posts_content_post_id_fkey;
ALTER TABLE post_insights DROP CONSTRAINT post_insights_post_id_fkey;
ALTER TABLE post_media_links DROP CONSTRAINT post_media_links_post_id_fkey,
                             DROP CONSTRAINT post_media_links_media_file_id_fkey;

ALTER TABLE posts_core
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT posts_core_pkey,
    ADD PRIMARY KEY (organization_id, id),
    ADD CONSTRAINT posts_core_organization_id_fkey FOREIGN KEY (organization_id)
        REFERENCES organizations (id) ON DELETE CASCADE;
-- Lookups by post id alone (the compatibility views, legacy callers).
CREATE INDEX posts_core_id_idx ON posts_core (id);
CREATE UNIQUE INDEX posts_core_platform_external_id_key
    ON posts_core (organization_id, platform, external_id) WHERE external_id IS NOT NULL;

ALTER TABLE posts_content
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT posts_content_pkey,
    ADD PRIMARY KEY (organization_id, post_id),
    ADD FOREIGN KEY (organization_id, post_id) REFERENCES posts_core (organization_id, id) ON DELETE CASCADE;

ALTER TABLE post_insights
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT post_insights_pkey,
    ADD PRIMARY KEY (organization_id, post_id),
    ADD FOREIGN KEY (organization_id, post_id) REFERENCES posts_core (organization_id, id) ON DELETE CASCADE;

ALTER TABLE media_files
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT media_files_pkey,
    ADD PRIMARY KEY (organization_id, id),
    ADD FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE;
DROP INDEX media_files_user_url_key;
CREATE UNIQUE INDEX media_files_user_url_key ON media_files (organization_id, user_id, url_sha256);

ALTER TABLE post_media_links
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT post_media_links_pkey,
    ADD PRIMARY KEY (organization_id, post_id, position),
    ADD FOREIGN KEY (organization_id, post_id) REFERENCES posts_core (organization_id, id) ON DELETE CASCADE,
    ADD FOREIGN KEY (organization_id, media_file_id) REFERENCES media_files (organization_id, id) ON DELETE CASCADE;
DROP INDEX post_media_links_media_file_idx;
CREATE INDEX post_media_links_media_file_idx ON post_media_links (organization_id, media_file_id);

ALTER TABLE time_series_metrics
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT time_series_metrics_pkey,
    ADD PRIMARY KEY (organization_id, id, recorded_at),
    ADD FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE;
DROP INDEX time_series_metrics_series_idx;
CREATE INDEX time_series_metrics_series_idx
    ON time_series_metrics (organization_id, entity_type, entity_id, metric_name, recorded_at);

ALTER TABLE embeddings
    ALTER COLUMN organization_id SET NOT NULL,
    DROP CONSTRAINT embeddings_pkey,
    DROP CONSTRAINT embeddings_entity_model_key,
    ADD PRIMARY KEY (organization_id, id),
    ADD CONSTRAINT embeddings_entity_model_key UNIQUE (organization_id, entity_type, entity_id, model),
    ADD FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE;
-- Exact scans within one organization (small organizations, filters).
CREATE INDEX embeddings_org_dimension_model_idx ON embeddings (organization_id, dimension, model);

SELECT create_embedding_indexes();

-- ---------------------------------------------------------------- AI context
CREATE TABLE ai_context_logs (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    source_type     text NOT NULL CHECK (source_type <> ''),
    context_summary text,
    ai_response     text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE UNIQUE INDEX ai_context_logs_idempotency_key
    ON ai_context_logs (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX ai_context_logs_recent_idx ON ai_context_logs (organization_id, occurred_at DESC, id DESC);
CREATE INDEX ai_context_logs_user_recent_idx
    ON ai_context_logs (organization_id, user_id, occurred_at DESC, id DESC);

-- Legacy chat history is AI context: each message becomes an entry with the
-- same id (its embedding stays entity_type 'chat_message'), the user's and
-- system's words as context_summary, the assistant's as ai_response.
DO $$
BEGIN
    IF to_regclass('public.chat_messages') IS NOT NULL THEN
        INSERT INTO ai_context_logs (id, organization_id, user_id, source_type, context_summary,
                                     ai_response, metadata, occurred_at, created_at)
        SELECT c.id, u.organization_id, c.user_id, 'chat',
               CASE WHEN c.role <> 'assistant' THEN c.content END,
               CASE WHEN c.role = 'assistant' THEN c.content END,
               jsonb_build_object('migrated_from', 'chat_messages', 'session_id', c.session_id, 'role', c.role),
               c.created_at, c.created_at
        FROM chat_messages c JOIN user_profiles u ON u.id = c.user_id;
    END IF;
END;
$$;

-- ---------------------------------------------------------------- functions

-- Whether a user holds at least `required_role` ('viewer' | 'editor' |
-- 'admin' | 'owner') in an organization.
CREATE FUNCTION user_has_org_permission(check_user_id uuid, check_org_id uuid,
                                        required_role text DEFAULT 'viewer')
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM organization_members m
        WHERE m.organization_id = check_org_id AND m.user_id = check_user_id
          AND m.role >= required_role::org_role)
$$;

-- Items similar to one that has an embedding. Only embeddings of the same
-- model and dimension are compared, only within the source item's
-- organization, and the source item itself is never returned. Where the
-- source has embeddings of several models, an item's similarity is its best.
-- target_entity_types NULL: the source's own type. in_organization_id
-- narrows the source to one organization (the service always passes it).
CREATE FUNCTION find_similar_content(input_entity_type text, input_entity_id uuid,
                                     similarity_threshold double precision DEFAULT 0.8,
                                     max_results integer DEFAULT 10,
                                     target_entity_types text[] DEFAULT NULL,
                                     in_organization_id uuid DEFAULT NULL)
RETURNS TABLE (organization_id uuid, entity_type text, entity_id uuid, similarity double precision)
LANGUAGE plpgsql STABLE
-- Filtered HNSW scans go on until enough rows pass the filters; the
-- candidate list is at least as long as the result (set below). Both
-- settings are restored when the function returns.
SET hnsw.iterative_scan = 'strict_order'
SET hnsw.ef_search = 40
AS $$
DECLARE
    src record;
    expr text;
    per_source text[] := '{}';
BEGIN
    IF max_results IS NULL OR max_results < 1 THEN
        RETURN;
    END IF;
    PERFORM set_config('hnsw.ef_search', least(greatest(max_results, 40), 1000)::text, true);
    -- One nearest-neighbour query per source embedding (model, dimension),
    -- ordered by the cast expression of that dimension's HNSW index.
    FOR src IN
        SELECT e.organization_id, e.model, e.dimension, e.embedding FROM embeddings e
        WHERE e.entity_type = input_entity_type AND e.entity_id = input_entity_id
          AND (in_organization_id IS NULL OR e.organization_id = in_organization_id)
        ORDER BY e.organization_id, e.model
    LOOP
        expr := coalesce(embedding_index_expression(src.dimension), 'embedding');
        per_source := per_source || format(
            $q$(SELECT e.organization_id, e.entity_type, e.entity_id,
                       1 - (%1$s <=> %2$L::%3$s) AS similarity
                FROM embeddings e
                WHERE e.organization_id = %4$L AND e.dimension = %5$s AND e.model = %6$L
                  AND e.entity_type = ANY ($3) AND NOT (e.entity_type = $4 AND e.entity_id = $5)
                ORDER BY %1$s <=> %2$L::%3$s
                LIMIT $1)$q$,
            expr, src.embedding::text, coalesce(split_part(nullif(expr, 'embedding'), '::', 2), 'vector'),
            src.organization_id, src.dimension, src.model);
    END LOOP;
    IF cardinality(per_source) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        $q$SELECT s.organization_id, s.entity_type, s.entity_id, max(s.similarity)::double precision
           FROM (%s) s
           WHERE s.similarity >= $2
           GROUP BY 1, 2, 3
           ORDER BY 4 DESC, 2, 3
           LIMIT $1$q$,
        array_to_string(per_source, ' UNION ALL '))
    USING max_results, similarity_threshold, coalesce(target_entity_types, ARRAY[input_entity_type]),
          input_entity_type, input_entity_id;
END;
$$;

-- Time-bucketed aggregates of one metric of one entity. granularity: hour |
-- day | week (weeks start on Monday) | month; bucket boundaries follow the
-- IANA time_zone, so daylight-saving days are 23 or 25 hours long. Buckets
-- without points are left out; `last` is the value with the latest
-- recorded_at. in_organization_id NULL: every organization.
CREATE FUNCTION get_metrics_aggregated(entity_type text, entity_id uuid, metric_name text,
                                       granularity text DEFAULT 'day',
                                       start_at timestamptz DEFAULT NULL,
                                       end_at timestamptz DEFAULT NULL,
                                       time_zone text DEFAULT 'UTC',
                                       in_organization_id uuid DEFAULT NULL)
RETURNS TABLE (bucket_start timestamptz, sum double precision, avg double precision,
               min double precision, max double precision, count bigint, last double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_variable
DECLARE
    unit text := lower(coalesce(granularity, 'day'));
    stop timestamptz := coalesce(end_at, now());
    begin_ts timestamptz := coalesce(start_at, coalesce(end_at, now()) - interval '30 days');
BEGIN
    IF unit NOT IN ('hour', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'unknown granularity "%": use hour, day, week or month', granularity
            USING ERRCODE = '22023';
    END IF;
    -- Raises 22023 "time zone not recognized" even when no point matches.
    PERFORM now() AT TIME ZONE time_zone;
    RETURN QUERY
        SELECT date_trunc(unit, m.recorded_at, time_zone) AS b,
               sum(m.value), avg(m.value), min(m.value), max(m.value), count(*),
               (array_agg(m.value ORDER BY m.recorded_at DESC, m.id DESC))[1]
        FROM time_series_metrics m
        WHERE m.entity_type = get_metrics_aggregated.entity_type
          AND m.entity_id = get_metrics_aggregated.entity_id
          AND m.metric_name = get_metrics_aggregated.metric_name
          AND m.recorded_at >= begin_ts AND m.recorded_at < stop
          AND (in_organization_id IS NULL OR m.organization_id = in_organization_id)
        GROUP BY 1
        ORDER BY 1;
END;
$$;
