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

-- Change announcements: a NOTIFY on a worker fails every transaction Citus
-- commits in two phases, and would not reach the coordinator's LISTEN
-- anyway. The service does not use its caches on a distributed schema.
CREATE OR REPLACE FUNCTION organization_members_notify() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION metric_points_announce() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
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

-- Metric rollups and digests.

CREATE OR REPLACE FUNCTION metric_rollups_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF current_setting('affinity.rollups_skip', true) = 'on' THEN
        RETURN NULL;
    END IF;
    EXECUTE format($q$
    INSERT INTO %s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name,
           date_trunc('hour', p.recorded_at, 'UTC'),
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM new_points p
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, bucket_start) DO UPDATE
            SET sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count,
                min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max),
                last_at = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_id) > (r.last_at, r.last_id)
                               THEN EXCLUDED.last_at ELSE r.last_at END,
                last_id = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_id) > (r.last_at, r.last_id)
                               THEN EXCLUDED.last_id ELSE r.last_id END,
                last_value = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_id) > (r.last_at, r.last_id)
                                  THEN EXCLUDED.last_value ELSE r.last_value END
    $q$, citus_shard_of('metric_rollups_hourly', TG_RELID));
    EXECUTE format($q$
    INSERT INTO %s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
           date_trunc('day', p.recorded_at, z.time_zone),
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM new_points p CROSS JOIN %s z
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
            SET sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count,
                min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max),
                last_at = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_id) > (r.last_at, r.last_id)
                               THEN EXCLUDED.last_at ELSE r.last_at END,
                last_id = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_id) > (r.last_at, r.last_id)
                               THEN EXCLUDED.last_id ELSE r.last_id END,
                last_value = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_id) > (r.last_at, r.last_id)
                                  THEN EXCLUDED.last_value ELSE r.last_value END
    $q$, citus_shard_of('metric_rollups_daily', TG_RELID),
         citus_shard_of('metric_rollup_zones', TG_RELID));
    RETURN NULL;
END;
$fn$;

-- The rollups of the keys in the prepared temporary tables (filled by the
-- trigger: its transition tables are visible to it alone), computed again
-- from the points of the co-located shard.
CREATE OR REPLACE FUNCTION citus_rollups_recompute(source oid) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$
    DELETE FROM %1$s r USING _rollup_hours k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.bucket_start);
    $q$, citus_shard_of('metric_rollups_hourly', source));
    EXECUTE format($q$
    INSERT INTO %1$s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, k.bucket_start,
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM _rollup_hours k
    JOIN %2$s p
      ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
         = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
     AND p.recorded_at >= k.bucket_start AND p.recorded_at < k.bucket_start + interval '1 hour'
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, bucket_start) DO UPDATE
    SET sum = EXCLUDED.sum, count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max,
        last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id, last_value = EXCLUDED.last_value
    $q$, citus_shard_of('metric_rollups_hourly', source),
         citus_shard_of('time_series_metrics', source));
    EXECUTE format($q$
    DELETE FROM %1$s r USING _rollup_days k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.time_zone, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start)
    $q$, citus_shard_of('metric_rollups_daily', source));
    EXECUTE format($q$
    INSERT INTO %1$s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, k.time_zone, k.bucket_start,
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM _rollup_days k
    JOIN %2$s p
      ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
         = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
     AND p.recorded_at >= k.bucket_start
     AND p.recorded_at < date_trunc('day', k.bucket_start + interval '36 hours', k.time_zone)
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
    SET sum = EXCLUDED.sum, count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max,
        last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id, last_value = EXCLUDED.last_value
    $q$, citus_shard_of('metric_rollups_daily', source),
         citus_shard_of('time_series_metrics', source));
    TRUNCATE _rollup_hours, _rollup_days;
END;
$fn$;

-- metric_rollups_on_delete and metric_rollups_on_update: one body (a
-- trigger's transition tables are visible to its own function only, so the
-- two cannot call a shared one).
DO $do$
DECLARE
    body text := $body$
DECLARE
    changed text := CASE TG_OP WHEN 'DELETE' THEN 'SELECT * FROM old_points'
                    ELSE 'SELECT * FROM old_points UNION ALL SELECT * FROM new_points' END;
BEGIN
    PERFORM metric_rollups_prepare_keys();
    EXECUTE format($q$
    INSERT INTO _rollup_hours
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name,
                    date_trunc('hour', p.recorded_at, 'UTC')
    FROM (%s) p
    $q$, changed);
    EXECUTE format($q$
    INSERT INTO _rollup_days
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                    date_trunc('day', p.recorded_at, z.time_zone)
    FROM (%s) p CROSS JOIN %s z
    $q$, changed, citus_shard_of('metric_rollup_zones', TG_RELID));
    PERFORM citus_rollups_recompute(TG_RELID);
    RETURN NULL;
END;
$body$;
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION metric_rollups_on_delete() RETURNS trigger LANGUAGE plpgsql AS %L', body);
    EXECUTE format('CREATE OR REPLACE FUNCTION metric_rollups_on_update() RETURNS trigger LANGUAGE plpgsql AS %L', body);
END;
$do$;

CREATE OR REPLACE FUNCTION metric_rollups_on_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('TRUNCATE %s, %s', citus_shard_of('metric_rollups_hourly', TG_RELID),
                   citus_shard_of('metric_rollups_daily', TG_RELID));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION metric_digests_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF current_setting('affinity.rollups_skip', true) = 'on' THEN
        RETURN NULL;
    END IF;
    EXECUTE format($q$
    INSERT INTO %s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
           date_trunc('day', p.recorded_at, z.time_zone),
           tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
    FROM new_points p CROSS JOIN %s z
    WHERE p.value <> 'NaN'
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
    SET digest = tdigest_union(r.digest, EXCLUDED.digest), integral = r.integral AND EXCLUDED.integral
    $q$, citus_shard_of('metric_digests_daily', TG_RELID),
         citus_shard_of('metric_rollup_zones', TG_RELID));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION citus_digests_rebuild(source oid) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$
    DELETE FROM %s r USING _digest_days k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.time_zone, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start)
    $q$, citus_shard_of('metric_digests_daily', source));
    EXECUTE format($q$
    INSERT INTO %s AS r
    SELECT k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start,
           tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
    FROM _digest_days k
    JOIN %s p
      ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
         = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
     AND p.recorded_at >= k.bucket_start
     AND p.recorded_at < date_trunc('day', k.bucket_start + interval '36 hours', k.time_zone)
    WHERE p.value <> 'NaN'
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
    SET digest = EXCLUDED.digest, integral = EXCLUDED.integral
    $q$, citus_shard_of('metric_digests_daily', source),
         citus_shard_of('time_series_metrics', source));
    TRUNCATE _digest_days;
END;
$fn$;

-- metric_digests_on_delete and metric_digests_on_update: the same.
DO $do$
DECLARE
    body text := $body$
DECLARE
    changed text := CASE TG_OP WHEN 'DELETE' THEN 'SELECT * FROM old_points'
                    ELSE 'SELECT * FROM old_points UNION ALL SELECT * FROM new_points' END;
BEGIN
    PERFORM metric_digests_prepare_days();
    EXECUTE format($q$
    INSERT INTO _digest_days
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                    date_trunc('day', p.recorded_at, z.time_zone)
    FROM (%s) p CROSS JOIN %s z
    $q$, changed, citus_shard_of('metric_rollup_zones', TG_RELID));
    PERFORM citus_digests_rebuild(TG_RELID);
    RETURN NULL;
END;
$body$;
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION metric_digests_on_delete() RETURNS trigger LANGUAGE plpgsql AS %L', body);
    EXECUTE format('CREATE OR REPLACE FUNCTION metric_digests_on_update() RETURNS trigger LANGUAGE plpgsql AS %L', body);
END;
$do$;

CREATE OR REPLACE FUNCTION metric_digests_on_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('TRUNCATE %s', citus_shard_of('metric_digests_daily', TG_RELID));
    RETURN NULL;
END;
$fn$;

-- A zone added later gets no digests of the points before it on Citus (it
-- would read every shard from a reference table's trigger): that zone's
-- percentiles are then computed exactly, as for any bucket without one.
CREATE OR REPLACE FUNCTION metric_digests_on_new_zone() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN NULL;
END;
$fn$;
