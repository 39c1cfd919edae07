-- The schema's trigger functions as Citus runs them: `affinity distribute`
-- replaces the migrations' versions with these (plain PostgreSQL keeps its
-- own, static and faster). On Citus a trigger fires on a shard, on a worker,
-- where naming another table (a distributed or reference one) would be a
-- distributed query inside a shard's query, which Citus refuses; so each
-- statement names the co-located shard of the table it touches, found by
-- citus_shard_of, and runs as dynamic SQL.

-- The shard of `target` co-located with the shard `source` (a trigger's
-- TG_RELID): the one covering the same hash range, or a reference table's
-- only shard. `target` itself when `source` is no shard.
CREATE OR REPLACE FUNCTION citus_shard_of(target regclass, source oid) RETURNS text
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    source_shard bigint;
    low text;
    shard text;
BEGIN
    SELECT s.shardid, s.shardminvalue INTO source_shard, low
    FROM pg_class c
    JOIN pg_dist_shard s ON s.shardid = substring(c.relname FROM '_(\d+)$')::bigint
    WHERE c.oid = source;
    IF source_shard IS NULL THEN
        RETURN target::text;
    END IF;
    SELECT shard_name(target, s.shardid) INTO shard
    FROM pg_dist_shard s
    WHERE s.logicalrelid = target AND (s.shardminvalue = low OR s.shardminvalue IS NULL);
    IF shard IS NULL THEN
        RAISE EXCEPTION 'no shard of % beside shard %', target, source_shard;
    END IF;
    RETURN shard;
END;
$fn$;

-- Change announcements: a NOTIFY on a worker would fail every transaction
-- Citus commits in two phases, and could not reach a LISTEN on the
-- coordinator. Here each is a row of change_announcements (co-located, so
-- written in the changing transaction, on its shard), with the NOTIFY's
-- channel and payload; the service polls them (src/caches/poll.rs).
CREATE OR REPLACE FUNCTION citus_announce(source oid, org uuid, channel text, payloads text[])
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    -- A shard has no column defaults (Citus fills them in on the
    -- coordinator); each node's copy of the sequence counts in its own range.
    EXECUTE format('INSERT INTO %s (organization_id, id, channel, payload)
                    SELECT $1, nextval(''change_announcements_id_seq''), $2, p FROM unnest($3) AS p',
                   citus_shard_of('change_announcements', source))
    USING org, channel, payloads;
END;
$fn$;

CREATE OR REPLACE FUNCTION organization_members_notify() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    m organization_members;
BEGIN
    m := coalesce(NEW, OLD);
    PERFORM citus_announce(TG_RELID, m.organization_id, 'affinity_membership',
                           ARRAY[m.organization_id || ':' || m.user_id]);
    IF TG_OP = 'UPDATE' AND (OLD.organization_id, OLD.user_id) <> (NEW.organization_id, NEW.user_id) THEN
        PERFORM citus_announce(TG_RELID, OLD.organization_id, 'affinity_membership',
                               ARRAY[OLD.organization_id || ':' || OLD.user_id]);
    END IF;
    RETURN NULL;
END;
$fn$;

-- As migration 08's: one payload per entity, '*' past 1,000 entities or on
-- a TRUNCATE. A row needs an organization of its shard: a '*' names one the
-- statement touched, or, for a TRUNCATE, one with members on the shard
-- (none: no organization's data was there).
CREATE OR REPLACE FUNCTION metric_points_announce() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    changed text := CASE TG_OP WHEN 'INSERT' THEN 'SELECT * FROM new_points'
                               WHEN 'DELETE' THEN 'SELECT * FROM old_points'
                    ELSE 'SELECT * FROM old_points UNION ALL SELECT * FROM new_points' END;
    entities text[];
    org uuid;
BEGIN
    IF current_setting('affinity.rollups_skip', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('SELECT organization_id FROM %s LIMIT 1',
                       citus_shard_of('organization_members', TG_RELID)) INTO org;
        entities := ARRAY['*'];
    ELSE
        EXECUTE format($q$
        SELECT (array_agg(k))[1]::uuid, array_agg(k || ':' || e) FROM (
            SELECT DISTINCT p.organization_id::text AS k, p.entity_id::text AS e FROM (%s) p LIMIT 1001
        ) s
        $q$, changed) INTO org, entities;
        IF cardinality(entities) > 1000 THEN
            entities := ARRAY['*'];
        END IF;
    END IF;
    IF org IS NOT NULL THEN
        PERFORM citus_announce(TG_RELID, org, 'affinity_metrics', entities);
    END IF;
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION organization_members_keep_an_owner() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    found_org boolean;
    owners boolean;
BEGIN
    IF OLD.role <> 'owner' OR (TG_OP = 'UPDATE' AND NEW.role = 'owner'
                               AND NEW.organization_id = OLD.organization_id) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT true FROM %s WHERE id = $1 FOR UPDATE',
                   citus_shard_of('organizations', TG_RELID))
        INTO found_org USING OLD.organization_id;
    IF found_org IS NULL THEN
        RETURN NULL;  -- the organization itself is being deleted
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE organization_id = $1 AND role = ''owner'')',
                   citus_shard_of('organization_members', TG_RELID))
        INTO owners USING OLD.organization_id;
    IF NOT owners THEN
        RAISE EXCEPTION 'organization % would be left without an owner', OLD.organization_id
            USING ERRCODE = 'AF001', HINT = 'make another member an owner first';
    END IF;
    RETURN NULL;
END;
$fn$;

-- Texts and the queue.

CREATE OR REPLACE FUNCTION citus_item_text_delete(source oid, org uuid, kind text, id uuid) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('DELETE FROM %s WHERE organization_id = $1 AND entity_type = $2 AND entity_id = $3',
                   citus_shard_of('item_texts', source))
        USING org, kind, id;
END;
$fn$;

CREATE OR REPLACE FUNCTION citus_item_text_put(source oid, org uuid, kind text, id uuid, body text,
                                               created timestamptz) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('INSERT INTO %1$s AS t (organization_id, entity_type, entity_id, body, created_at)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE SET body = EXCLUDED.body
                    WHERE t.body IS DISTINCT FROM EXCLUDED.body',
                   citus_shard_of('item_texts', source))
        USING org, kind, id, body, created;
END;
$fn$;

CREATE OR REPLACE FUNCTION ai_context_logs_text() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    body text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM citus_item_text_delete(TG_RELID, OLD.organization_id, 'ai_context', OLD.id);
        RETURN NULL;
    END IF;
    body := ai_context_text(NEW.context_summary, NEW.ai_response);
    IF body = '' THEN
        PERFORM citus_item_text_delete(TG_RELID, NEW.organization_id, 'ai_context', NEW.id);
        RETURN NULL;
    END IF;
    PERFORM citus_item_text_put(TG_RELID, NEW.organization_id, 'ai_context', NEW.id, body,
                                NEW.occurred_at);
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION posts_content_text() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    body text;
    created timestamptz;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF TG_OP = 'DELETE' OR (OLD.organization_id, OLD.post_id) <> (NEW.organization_id, NEW.post_id) THEN
            PERFORM citus_item_text_delete(TG_RELID, OLD.organization_id, 'post', OLD.post_id);
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN NULL;
        END IF;
    END IF;
    body := post_text(NEW.caption, NEW.content, NEW.hashtags);
    IF body = '' THEN
        PERFORM citus_item_text_delete(TG_RELID, NEW.organization_id, 'post', NEW.post_id);
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT created_at FROM %s WHERE organization_id = $1 AND id = $2',
                   citus_shard_of('posts_core', TG_RELID))
        INTO created USING NEW.organization_id, NEW.post_id;
    PERFORM citus_item_text_put(TG_RELID, NEW.organization_id, 'post', NEW.post_id, body,
                                coalesce(created, now()));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION item_texts_touch() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('UPDATE %s SET updated_at = updated_at
                    WHERE organization_id = $1 AND entity_type = $2 AND entity_id = $3',
                   citus_shard_of('item_texts', TG_RELID))
        USING NEW.organization_id, TG_ARGV[0], NEW.id;
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION item_texts_attributes() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.entity_type = 'post' THEN
        EXECUTE format('SELECT p.user_id, p.platform, p.created_at, search_hashtags(c.hashtags)
                        FROM %s p
                        LEFT JOIN %s c ON c.organization_id = p.organization_id AND c.post_id = p.id
                        WHERE p.organization_id = $1 AND p.id = $2',
                       citus_shard_of('posts_core', TG_RELID),
                       citus_shard_of('posts_content', TG_RELID))
            INTO NEW.user_id, NEW.platform, NEW.created_at, NEW.hashtags
            USING NEW.organization_id, NEW.entity_id;
    ELSIF NEW.entity_type = 'ai_context' THEN
        EXECUTE format('SELECT a.user_id, a.source_type, a.session_id, a.occurred_at
                        FROM %s a WHERE a.organization_id = $1 AND a.id = $2',
                       citus_shard_of('ai_context_logs', TG_RELID))
            INTO NEW.user_id, NEW.source_type, NEW.session_id, NEW.created_at
            USING NEW.organization_id, NEW.entity_id;
    END IF;
    NEW.created_at := coalesce(NEW.created_at, now());
    RETURN NEW;
END;
$fn$;

CREATE OR REPLACE FUNCTION item_texts_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NULL;
    END IF;
    EXECUTE format('INSERT INTO %s (organization_id, entity_type, entity_id, version)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE
                    SET version = EXCLUDED.version, attempts = 0, not_before = now(),
                        claimed_until = NULL, claimed_by = NULL, last_error = NULL,
                        failed_at = NULL, enqueued_at = now()',
                   citus_shard_of('embedding_queue', TG_RELID))
        USING NEW.organization_id, NEW.entity_type, NEW.entity_id, NEW.version;
    RETURN NULL;
END;
$fn$;
