-- Phase 05: performance. Metric rollups maintained as points arrive, so
-- that long aggregations read a few hundred rows instead of every point;
-- and a longer HNSW candidate list, so filtered similarity searches keep
-- their recall in large organizations.
--
-- Rollups:
-- - metric_rollups_hourly: every series (organization, entity, metric) per
--   UTC hour: sum, count, min, max and the last point (recorded_at, id,
--   value).
-- - metric_rollups_daily: the same per local day, for each time zone listed
--   in metric_rollup_zones (always UTC; the service adds the zones it is
--   configured with). Local days nest in local weeks and months, so they
--   serve day, week and month buckets in their zone, across DST changes.
-- Both are kept by statement triggers on time_series_metrics (INSERT adds;
-- UPDATE, DELETE recompute the touched buckets from the points; TRUNCATE
-- empties). get_metrics_aggregated reads the daily rollups for whole local
-- days, the hourly ones for whole hours that fall in one bucket, and the
-- points themselves only for the rest (partial hours at the range's edges,
-- hours cut by a bucket boundary in zones like Asia/Kolkata); the answer
-- equals the aggregation of the points (sums may differ in the last bits of
-- a double, being added in another order).
-- Statements on a partition itself bypass the parent's statement triggers:
-- only ensure_metric_partitions does that, and it moves points without
-- changing them (it tells the triggers to skip their re-insertion).

CREATE TABLE metric_rollup_zones (
    time_zone text PRIMARY KEY,
    added_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE metric_rollups_hourly (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    entity_type     text NOT NULL,
    entity_id       uuid NOT NULL,
    metric_name     text NOT NULL,
    bucket_start    timestamptz NOT NULL,
    sum             double precision NOT NULL,
    count           bigint NOT NULL,
    min             double precision NOT NULL,
    max             double precision NOT NULL,
    last_at         timestamptz NOT NULL,
    last_id         bigint NOT NULL,
    last_value      double precision NOT NULL,
    PRIMARY KEY (organization_id, entity_type, entity_id, metric_name, bucket_start)
);

CREATE TABLE metric_rollups_daily (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    entity_type     text NOT NULL,
    entity_id       uuid NOT NULL,
    metric_name     text NOT NULL,
    time_zone       text NOT NULL REFERENCES metric_rollup_zones (time_zone) ON DELETE CASCADE,
    bucket_start    timestamptz NOT NULL,
    sum             double precision NOT NULL,
    count           bigint NOT NULL,
    min             double precision NOT NULL,
    max             double precision NOT NULL,
    last_at         timestamptz NOT NULL,
    last_id         bigint NOT NULL,
    last_value      double precision NOT NULL,
    PRIMARY KEY (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start)
);
CREATE INDEX metric_rollups_daily_zone_idx ON metric_rollups_daily (time_zone);


-- ------------------------------------------------------------ maintenance

-- New points: added to the buckets they fall in. Rows sorted by key, so
-- concurrent writers lock buckets in one order.
CREATE FUNCTION metric_rollups_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('affinity.rollups_skip', true) = 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO metric_rollups_hourly AS r
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
                                  THEN EXCLUDED.last_value ELSE r.last_value END;
    INSERT INTO metric_rollups_daily AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
           date_trunc('day', p.recorded_at, z.time_zone),
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM new_points p CROSS JOIN metric_rollup_zones z
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
                                  THEN EXCLUDED.last_value ELSE r.last_value END;
    RETURN NULL;
END;
$$;

-- Recomputes, from the points, the buckets listed in the temporary tables
-- _rollup_hours and _rollup_days (filled by the triggers below), then
-- empties them.
CREATE FUNCTION metric_rollups_recompute() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM metric_rollups_hourly r USING _rollup_hours k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.bucket_start);
    INSERT INTO metric_rollups_hourly AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, k.bucket_start,
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM _rollup_hours k
    JOIN time_series_metrics p
      ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
         = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
     AND p.recorded_at >= k.bucket_start AND p.recorded_at < k.bucket_start + interval '1 hour'
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, bucket_start) DO UPDATE
    SET sum = EXCLUDED.sum, count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max,
        last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id, last_value = EXCLUDED.last_value;

    DELETE FROM metric_rollups_daily r USING _rollup_days k
    WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.time_zone, r.bucket_start)
        = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start);
    INSERT INTO metric_rollups_daily AS r
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, k.time_zone, k.bucket_start,
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM _rollup_days k
    JOIN time_series_metrics p
      ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
         = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
     -- 36 hours from a local midnight is always in the next local day.
     AND p.recorded_at >= k.bucket_start
     AND p.recorded_at < date_trunc('day', k.bucket_start + interval '36 hours', k.time_zone)
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
    SET sum = EXCLUDED.sum, count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max,
        last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id, last_value = EXCLUDED.last_value;
    TRUNCATE _rollup_hours, _rollup_days;
END;
$$;

CREATE FUNCTION metric_rollups_prepare_keys() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _rollup_hours (
        organization_id uuid, entity_type text, entity_id uuid, metric_name text, bucket_start timestamptz
    ) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS _rollup_days (
        organization_id uuid, entity_type text, entity_id uuid, metric_name text, time_zone text,
        bucket_start timestamptz
    ) ON COMMIT DROP;
END;
$$;

-- Deleted points (archival, organizations removed): their buckets recomputed.
CREATE FUNCTION metric_rollups_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_rollups_prepare_keys();
    INSERT INTO _rollup_hours
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name,
                    date_trunc('hour', p.recorded_at, 'UTC')
    FROM old_points p;
    INSERT INTO _rollup_days
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                    date_trunc('day', p.recorded_at, z.time_zone)
    FROM old_points p CROSS JOIN metric_rollup_zones z;
    PERFORM metric_rollups_recompute();
    RETURN NULL;
END;
$$;

-- Changed points: the buckets they left and the ones they entered.
CREATE FUNCTION metric_rollups_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_rollups_prepare_keys();
    INSERT INTO _rollup_hours
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name,
                    date_trunc('hour', p.recorded_at, 'UTC')
    FROM (SELECT * FROM old_points UNION ALL SELECT * FROM new_points) p;
    INSERT INTO _rollup_days
    SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                    date_trunc('day', p.recorded_at, z.time_zone)
    FROM (SELECT * FROM old_points UNION ALL SELECT * FROM new_points) p
    CROSS JOIN metric_rollup_zones z;
    PERFORM metric_rollups_recompute();
    RETURN NULL;
END;
$$;

CREATE FUNCTION metric_rollups_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE metric_rollups_hourly, metric_rollups_daily;
    RETURN NULL;
END;
$$;

CREATE TRIGGER metric_rollups_insert AFTER INSERT ON time_series_metrics
    REFERENCING NEW TABLE AS new_points FOR EACH STATEMENT EXECUTE FUNCTION metric_rollups_on_insert();
CREATE TRIGGER metric_rollups_delete AFTER DELETE ON time_series_metrics
    REFERENCING OLD TABLE AS old_points FOR EACH STATEMENT EXECUTE FUNCTION metric_rollups_on_delete();
CREATE TRIGGER metric_rollups_update AFTER UPDATE ON time_series_metrics
    REFERENCING OLD TABLE AS old_points NEW TABLE AS new_points
    FOR EACH STATEMENT EXECUTE FUNCTION metric_rollups_on_update();
CREATE TRIGGER metric_rollups_truncate AFTER TRUNCATE ON time_series_metrics
    FOR EACH STATEMENT EXECUTE FUNCTION metric_rollups_on_truncate();

CREATE OR REPLACE FUNCTION ensure_metric_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    month_end   timestamptz;
    part        text;
    created     integer := 0;
BEGIN
    WHILE month_start <= to_ts LOOP
        month_end := ((month_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        part := 'time_series_metrics_p' || to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM');
        IF to_regclass('public.' || part) IS NULL THEN
            -- A new partition may not overlap rows in the default one: park them.
            CREATE TEMP TABLE IF NOT EXISTS _parked_points (LIKE time_series_metrics) ON COMMIT DROP;
            WITH moved AS (
                DELETE FROM time_series_metrics_default
                WHERE recorded_at >= month_start AND recorded_at < month_end
                RETURNING *
            )
            INSERT INTO _parked_points SELECT * FROM moved;
            EXECUTE format('CREATE TABLE %I PARTITION OF time_series_metrics FOR VALUES FROM (%L) TO (%L)',
                           part, month_start, month_end);
            -- The same points, moved: the rollups already hold them.
            PERFORM set_config('affinity.rollups_skip', 'on', true);
            INSERT INTO time_series_metrics OVERRIDING SYSTEM VALUE SELECT * FROM _parked_points;
            PERFORM set_config('affinity.rollups_skip', 'off', true);
            TRUNCATE _parked_points;
            created := created + 1;
        END IF;
        month_start := month_end;
    END LOOP;
    RETURN created;
END;
$$;

-- Keeps daily rollups for `zone` (an IANA name, matched as written) from now
-- on, built from every point there is. Returns false when it already had
-- them. Writers of points wait while the zone is built, so none is missed.
CREATE FUNCTION add_metric_rollup_zone(zone text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM now() AT TIME ZONE zone;   -- 22023 for a name that is not a zone
    IF EXISTS (SELECT 1 FROM metric_rollup_zones z WHERE z.time_zone = zone) THEN
        RETURN false;
    END IF;
    LOCK TABLE time_series_metrics IN SHARE MODE;
    INSERT INTO metric_rollup_zones (time_zone) VALUES (zone) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO metric_rollups_daily
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, zone,
           date_trunc('day', p.recorded_at, zone),
           sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
    FROM time_series_metrics p
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN true;
END;
$$;

-- Stops keeping daily rollups for `zone`; its queries read hourly rollups.
CREATE FUNCTION drop_metric_rollup_zone(zone text) RETURNS boolean LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM metric_rollup_zones z WHERE z.time_zone = zone RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone)
$$;

-- The points there are already (migrated or recorded before this phase).
LOCK TABLE time_series_metrics IN SHARE MODE;
INSERT INTO metric_rollups_hourly
SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name,
       date_trunc('hour', p.recorded_at, 'UTC'),
       sum(p.value), count(*), min(p.value), max(p.value),
               (array_agg(p.recorded_at ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.id ORDER BY p.recorded_at DESC, p.id DESC))[1],
               (array_agg(p.value ORDER BY p.recorded_at DESC, p.id DESC))[1]
FROM time_series_metrics p
GROUP BY 1, 2, 3, 4, 5;
SELECT add_metric_rollup_zone('UTC');

-- ------------------------------------------------------------ reading

-- As before (phase 03), now reading rollups: daily ones for the whole local
-- days of the range when the zone has them (not for hour buckets), hourly
-- ones for the whole UTC hours left that lie in one bucket, and points for
-- the rest. in_organization_id NULL: every organization, from the points.
CREATE OR REPLACE FUNCTION get_metrics_aggregated(entity_type text, entity_id uuid, metric_name text,
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
    d0 timestamptz;
    d1 timestamptz;
    days tstzmultirange := '{}';
    hours tstzmultirange;
    rest tstzmultirange;
BEGIN
    IF unit NOT IN ('hour', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'unknown granularity "%": use hour, day, week or month', granularity
            USING ERRCODE = '22023';
    END IF;
    -- Raises 22023 "time zone not recognized" even when no point matches.
    PERFORM now() AT TIME ZONE time_zone;
    IF begin_ts >= stop THEN
        RETURN;
    END IF;
    IF in_organization_id IS NULL THEN
        RETURN QUERY
            SELECT date_trunc(unit, m.recorded_at, time_zone) AS b,
                   sum(m.value), avg(m.value), min(m.value), max(m.value), count(*),
                   (array_agg(m.value ORDER BY m.recorded_at DESC, m.id DESC))[1]
            FROM time_series_metrics m
            WHERE m.entity_type = get_metrics_aggregated.entity_type
              AND m.entity_id = get_metrics_aggregated.entity_id
              AND m.metric_name = get_metrics_aggregated.metric_name
              AND m.recorded_at >= begin_ts AND m.recorded_at < stop
            GROUP BY 1
            ORDER BY 1;
        RETURN;
    END IF;

    IF unit <> 'hour' AND EXISTS (SELECT 1 FROM metric_rollup_zones z WHERE z.time_zone = time_zone) THEN
        d0 := date_trunc('day', begin_ts, time_zone);
        IF d0 < begin_ts THEN
            d0 := date_trunc('day', d0 + interval '36 hours', time_zone);
        END IF;
        d1 := date_trunc('day', stop, time_zone);
        IF d0 < d1 THEN
            days := tstzmultirange(tstzrange(d0, d1));
        END IF;
    END IF;
    rest := tstzmultirange(tstzrange(begin_ts, stop)) - days;
    -- Whole UTC hours of the rest, less those a bucket boundary cuts (a
    -- boundary off the hour: local midnight in Asia/Kolkata is 18:30 UTC).
    IF unit = 'hour' THEN
        -- Every hour is next to a boundary: each is checked.
        SELECT coalesce(range_agg(tstzrange(g.h, g.h + interval '1 hour')), '{}') INTO hours
        FROM unnest(rest) AS s(r),
             generate_series(date_trunc('hour', lower(s.r) + interval '1 hour' - interval '1 microsecond', 'UTC'),
                             upper(s.r) - interval '1 hour', interval '1 hour') AS g(h)
        WHERE date_trunc('hour', g.h, time_zone)
            = date_trunc('hour', g.h + interval '1 hour' - interval '1 microsecond', time_zone);
    ELSE
        SELECT coalesce(range_agg(tstzrange(
                   date_trunc('hour', lower(s.r) + interval '1 hour' - interval '1 microsecond', 'UTC'),
                   date_trunc('hour', upper(s.r), 'UTC')))
                 FILTER (WHERE date_trunc('hour', lower(s.r) + interval '1 hour' - interval '1 microsecond', 'UTC')
                               < date_trunc('hour', upper(s.r), 'UTC')), '{}')
        INTO hours
        FROM unnest(rest) AS s(r);
        -- Boundaries come from stepping one unit at a time in local time,
        -- over the rest only (whole local days have no hours to check).
        -- Around a daylight-saving change a step can land an hour off a
        -- boundary: the hours next to each one found are checked exactly.
        SELECT hours - coalesce(range_agg(tstzrange(h.h, h.h + interval '1 hour')), '{}')
        INTO hours
        FROM (SELECT DISTINCT date_trunc('hour', date_trunc(unit, l AT TIME ZONE time_zone, time_zone), 'UTC') AS b
              FROM unnest(rest) AS s(r),
                   generate_series(date_trunc(unit, lower(s.r) AT TIME ZONE time_zone),
                                   upper(s.r) AT TIME ZONE time_zone, ('1 ' || unit)::interval) AS l) c,
             LATERAL (VALUES (c.b - interval '1 hour'), (c.b), (c.b + interval '1 hour')) AS h(h)
        WHERE date_trunc(unit, h.h, time_zone)
           <> date_trunc(unit, h.h + interval '1 hour' - interval '1 microsecond', time_zone);
    END IF;
    rest := rest - hours;

    RETURN QUERY
        SELECT p.b, sum(p.s), sum(p.s) / sum(p.n), min(p.lo), max(p.hi), sum(p.n)::bigint,
               (array_agg(p.lv ORDER BY p.la DESC, p.li DESC))[1]
        FROM (
            SELECT date_trunc(unit, d.bucket_start, time_zone) AS b, d.sum AS s, d.count AS n,
                   d.min AS lo, d.max AS hi, d.last_at AS la, d.last_id AS li, d.last_value AS lv
            FROM metric_rollups_daily d
            WHERE d.organization_id = in_organization_id
              AND d.entity_type = get_metrics_aggregated.entity_type
              AND d.entity_id = get_metrics_aggregated.entity_id
              AND d.metric_name = get_metrics_aggregated.metric_name
              AND d.time_zone = get_metrics_aggregated.time_zone
              AND d.bucket_start >= d0 AND d.bucket_start < d1
            UNION ALL
            -- One index range scan per range (OFFSET 0 keeps the subquery
            -- from being flattened into a join that reads the whole series).
            SELECT date_trunc(unit, h.bucket_start, time_zone), h.sum, h.count,
                   h.min, h.max, h.last_at, h.last_id, h.last_value
            FROM unnest(hours) AS r(r)
            CROSS JOIN LATERAL (
                SELECT * FROM metric_rollups_hourly x
                WHERE x.organization_id = in_organization_id
                  AND x.entity_type = get_metrics_aggregated.entity_type
                  AND x.entity_id = get_metrics_aggregated.entity_id
                  AND x.metric_name = get_metrics_aggregated.metric_name
                  AND x.bucket_start >= lower(r.r) AND x.bucket_start < upper(r.r)
                OFFSET 0) h
            UNION ALL
            SELECT date_trunc(unit, m.recorded_at, time_zone), m.value, 1::bigint,
                   m.value, m.value, m.recorded_at, m.id, m.value
            FROM unnest(rest) AS r(r)
            CROSS JOIN LATERAL (
                SELECT x.recorded_at, x.id, x.value FROM time_series_metrics x
                WHERE x.organization_id = in_organization_id
                  AND x.entity_type = get_metrics_aggregated.entity_type
                  AND x.entity_id = get_metrics_aggregated.entity_id
                  AND x.metric_name = get_metrics_aggregated.metric_name
                  AND x.recorded_at >= lower(r.r) AND x.recorded_at < upper(r.r)
                OFFSET 0) m
        ) p
        GROUP BY p.b
        ORDER BY p.b;
END;
$$;

-- ------------------------------------------------------------ similarity

-- The HNSW candidate list (hnsw.ef_search) is at least 200, up from 40:
-- with an organization filter in front of it, a list of 40 held too few of
-- the organization's rows to keep recall@10 at 0.95 in organizations of
-- 5-40% of the rows (measured in BENCHMARKS.md). Otherwise as in phase 03.
CREATE OR REPLACE FUNCTION find_similar_content(input_entity_type text, input_entity_id uuid,
                                     similarity_threshold double precision DEFAULT 0.8,
                                     max_results integer DEFAULT 10,
                                     target_entity_types text[] DEFAULT NULL,
                                     in_organization_id uuid DEFAULT NULL)
RETURNS TABLE (organization_id uuid, entity_type text, entity_id uuid, similarity double precision)
LANGUAGE plpgsql STABLE
-- Filtered HNSW scans go on until enough rows pass the filters. The query
-- is planned with pgvector's default candidate list (40) and run with a
-- longer one (set between planning and the first row): the planner's cost
-- of an HNSW scan grows with hnsw.ef_search, and at 200 it picks exact scans
-- of 10,000-row organizations, 40 times slower. Both settings are restored
-- when the function returns.
SET hnsw.iterative_scan = 'strict_order'
SET hnsw.ef_search = 40
AS $$
DECLARE
    src record;
    expr text;
    per_source text[] := '{}';
    nearest refcursor;
BEGIN
    IF max_results IS NULL OR max_results < 1 THEN
        RETURN;
    END IF;
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
    OPEN nearest FOR EXECUTE format(
        $q$SELECT s.organization_id, s.entity_type, s.entity_id, max(s.similarity)::double precision
           FROM (%s) s
           WHERE s.similarity >= $2
           GROUP BY 1, 2, 3
           ORDER BY 4 DESC, 2, 3
           LIMIT $1$q$,
        array_to_string(per_source, ' UNION ALL '))
    USING max_results, similarity_threshold, coalesce(target_entity_types, ARRAY[input_entity_type]),
          input_entity_type, input_entity_id;
    -- Planned; the scans start at the first FETCH.
    PERFORM set_config('hnsw.ef_search', least(greatest(max_results, 200), 1000)::text, true);
    LOOP
        FETCH nearest INTO organization_id, entity_type, entity_id, similarity;
        EXIT WHEN NOT FOUND;
        RETURN NEXT;
    END LOOP;
    CLOSE nearest;
END;
$$;
