-- The metric rollup and digest triggers as Citus runs them, and the
-- creation of monthly partitions: applied by `affinity distribute` after
-- citus_triggers.sql (whose citus_shard_of these use; see there why each
-- statement names a shard).

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

-- The rollups of the keys given (the trigger reads them from its transition
-- tables, visible to it alone; as values, not in temporary tables: Citus
-- cannot commit in two phases a transaction that used one, and deleting
-- points of several organizations takes two phases), computed again from
-- the points of the co-located shard. A key is read as a row of its rollup
-- table (the key columns set, the others NULL).
CREATE OR REPLACE FUNCTION citus_rollups_recompute(source oid, hours jsonb, days jsonb) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$
    DELETE FROM %1$s r USING jsonb_populate_recordset(NULL::metric_rollups_hourly, $1) AS k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.bucket_start);
    $q$, citus_shard_of('metric_rollups_hourly', source)) USING hours;
    EXECUTE format($q$
    INSERT INTO %1$s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, k.bucket_start,
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM jsonb_populate_recordset(NULL::metric_rollups_hourly, $1) AS k
    JOIN %2$s p
      ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
         = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
     AND p.recorded_at >= k.bucket_start AND p.recorded_at < k.bucket_start + interval '1 hour'
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, bucket_start) DO UPDATE
    SET sum = EXCLUDED.sum, count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max,
        last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id, last_value = EXCLUDED.last_value
    $q$, citus_shard_of('metric_rollups_hourly', source),
         citus_shard_of('time_series_metrics', source)) USING hours;
    EXECUTE format($q$
    DELETE FROM %1$s r USING jsonb_populate_recordset(NULL::metric_rollups_daily, $1) AS k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.time_zone, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start)
    $q$, citus_shard_of('metric_rollups_daily', source)) USING days;
    EXECUTE format($q$
    INSERT INTO %1$s AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, k.time_zone, k.bucket_start,
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM jsonb_populate_recordset(NULL::metric_rollups_daily, $1) AS k
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
         citus_shard_of('time_series_metrics', source)) USING days;
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
    hours jsonb;
    days jsonb;
BEGIN
    EXECUTE format($q$
    SELECT jsonb_agg(k) FROM (
        SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name,
                        date_trunc('hour', p.recorded_at, 'UTC') AS bucket_start
        FROM (%s) p) k
    $q$, changed) INTO hours;
    EXECUTE format($q$
    SELECT jsonb_agg(k) FROM (
        SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                        date_trunc('day', p.recorded_at, z.time_zone) AS bucket_start
        FROM (%s) p CROSS JOIN %s z) k
    $q$, changed, citus_shard_of('metric_rollup_zones', TG_RELID)) INTO days;
    PERFORM citus_rollups_recompute(TG_RELID, hours, days);
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

-- The digests of the days given, built again (as the rollups above).
CREATE OR REPLACE FUNCTION citus_digests_rebuild(source oid, days jsonb) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$
    DELETE FROM %s r USING jsonb_populate_recordset(NULL::metric_rollups_daily, $1) AS k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.time_zone, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start)
    $q$, citus_shard_of('metric_digests_daily', source)) USING days;
    EXECUTE format($q$
    INSERT INTO %s AS r
    SELECT k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start,
           tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
    FROM jsonb_populate_recordset(NULL::metric_rollups_daily, $1) AS k
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
         citus_shard_of('time_series_metrics', source)) USING days;
END;
$fn$;

-- metric_digests_on_delete and metric_digests_on_update: the same.
DO $do$
DECLARE
    body text := $body$
DECLARE
    changed text := CASE TG_OP WHEN 'DELETE' THEN 'SELECT * FROM old_points'
                    ELSE 'SELECT * FROM old_points UNION ALL SELECT * FROM new_points' END;
    days jsonb;
BEGIN
    EXECUTE format($q$
    SELECT jsonb_agg(k) FROM (
        SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                        date_trunc('day', p.recorded_at, z.time_zone) AS bucket_start
        FROM (%s) p CROSS JOIN %s z) k
    $q$, changed, citus_shard_of('metric_rollup_zones', TG_RELID)) INTO days;
    PERFORM citus_digests_rebuild(TG_RELID, days);
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

-- Monthly partitions: creating one is DDL on every shard after a write to
-- the default partition's shards in the same transaction, which Citus runs
-- over one connection per node only (sequential mode). The moved points are
-- already in the rollups: the triggers on the workers learn to skip them
-- from a SET LOCAL, which Citus carries to the workers (a set_config stays
-- on the coordinator), given before the first worker is reached.
DO $$
DECLARE
    def text := pg_get_functiondef('ensure_metric_partitions(timestamptz, timestamptz)'::regprocedure);
    patched text;
BEGIN
    patched := replace(replace(replace(replace(def,
        E'BEGIN\n    WHILE', E'BEGIN\n    SET LOCAL citus.multi_shard_modify_mode TO sequential;\n'
                         || E'    SET LOCAL citus.propagate_set_commands TO local;\n'
                         || E'    SET LOCAL affinity.rollups_skip TO on;\n    WHILE'),
        E'\n    RETURN created;', E'\n    SET LOCAL affinity.rollups_skip TO off;\n    RETURN created;'),
        E'            PERFORM set_config(''affinity.rollups_skip'', ''on'', true);\n', ''),
        E'            PERFORM set_config(''affinity.rollups_skip'', ''off'', true);\n', '');
    IF (length(patched) - length(replace(patched, 'SET LOCAL', ''))) <> 4 * length('SET LOCAL')
       OR patched LIKE '%set_config%' THEN
        RAISE EXCEPTION 'ensure_metric_partitions() is not the one this patch expects';
    END IF;
    EXECUTE patched;
END;
$$;
