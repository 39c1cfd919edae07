-- Migration 13: analytics. Items ranked by a metric over a range
-- (GetTopEntities) read the rollups of every item of a type at once, and
-- per-day percentile sketches serve percentiles for long ranges.

-- Ranking reads one metric of every item of a type over a range: whole UTC
-- days from the daily rollups, whole hours at the range's ends from the
-- hourly ones, the points of the parts of hours left. These indexes lead
-- with what the ranking knows (the series' key leads with the item). Only
-- key columns: a rollup row updated in place keeps its index entries.
CREATE INDEX metric_rollups_daily_ranking_idx
    ON metric_rollups_daily (organization_id, entity_type, metric_name, bucket_start)
    WHERE time_zone = 'UTC';
CREATE INDEX metric_rollups_hourly_ranking_idx
    ON metric_rollups_hourly (organization_id, entity_type, metric_name, bucket_start);
CREATE INDEX time_series_metrics_ranking_idx
    ON time_series_metrics (organization_id, entity_type, metric_name, recorded_at);

-- The points of one metric of every item of a type in [lo, hi). A
-- function, like metric_points_between (migration 07): planned, and the
-- partitions opened, only when a range has parts of hours to read.
CREATE FUNCTION metric_points_of_type(in_organization_id uuid, in_entity_type text,
                                      in_metric_name text, lo timestamptz, hi timestamptz)
RETURNS TABLE (entity_id uuid, recorded_at timestamptz, id bigint, value double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT m.entity_id, m.recorded_at, m.id, m.value FROM time_series_metrics m
        WHERE m.organization_id = in_organization_id AND m.entity_type = in_entity_type
          AND m.metric_name = in_metric_name
          AND m.recorded_at >= lo AND m.recorded_at < hi;
END;
$$;

-- Every item of a type with a point of the metric in [t0, t1): the sum of
-- its points there and its latest point ([epoch, id, value], the greatest
-- one is the latest). Read from the rollups wherever they cover the range.
CREATE FUNCTION metric_totals_of_type(in_organization_id uuid, in_entity_type text,
                                      in_metric_name text, t0 timestamptz, t1 timestamptz)
RETURNS TABLE (entity_id uuid, total double precision, latest double precision[])
LANGUAGE sql STABLE AS $$
WITH d AS (
    SELECT metric_day_at_or_after(t0, 'UTC') AS d0, date_trunc('day', t1, 'UTC') AS d1
), e AS (
    -- As in get_metrics_aggregated: [d0, d1) the whole days, [t0, e1) and
    -- [e2, t1) the edges.
    SELECT d.d0, d.d1, least(d.d0, t1) AS e1, greatest(d.d1, least(d.d0, t1)) AS e2 FROM d
), r AS (
    SELECT e.*, metric_ceil_hour(t0) AS h1a, metric_floor_hour(e.e1) AS h1b,
           metric_ceil_hour(e.e2) AS h2a, metric_floor_hour(t1) AS h2b
    FROM e
    WHERE t0 < t1
), part AS (
    SELECT x.entity_id, x.sum AS s,
           ARRAY[date_part('epoch', x.last_at), x.last_id::float8, x.last_value] AS l
    FROM r JOIN metric_rollups_daily x
      ON x.organization_id = in_organization_id AND x.entity_type = in_entity_type
     AND x.metric_name = in_metric_name AND x.time_zone = 'UTC'
     AND x.bucket_start >= r.d0 AND x.bucket_start < r.d1
    UNION ALL
    SELECT x.entity_id, x.sum,
           ARRAY[date_part('epoch', x.last_at), x.last_id::float8, x.last_value]
    FROM r JOIN metric_rollups_hourly x
      ON x.organization_id = in_organization_id AND x.entity_type = in_entity_type
     AND x.metric_name = in_metric_name
     AND ((x.bucket_start >= r.h1a AND x.bucket_start < r.h1b)
          OR (x.bucket_start >= r.h2a AND x.bucket_start < r.h2b))
    UNION ALL
    SELECT m.entity_id, m.value, ARRAY[date_part('epoch', m.recorded_at), m.id::float8, m.value]
    FROM r
    CROSS JOIN LATERAL (VALUES
        (t0, least(r.h1a, r.e1)), (greatest(r.h1b, least(r.h1a, r.e1)), r.e1),
        (r.e2, least(r.h2a, t1)), (greatest(r.h2b, least(r.h2a, t1)), t1)) AS piece (lo, hi)
    CROSS JOIN LATERAL metric_points_of_type(in_organization_id, in_entity_type, in_metric_name,
                                             piece.lo, piece.hi) AS m
    WHERE piece.lo < piece.hi
)
SELECT p.entity_id, sum(p.s), max(p.l) FROM part p GROUP BY p.entity_id
$$;

-- The latest point of one series before t ([epoch, id, value]; NULL: none):
-- the latest whole UTC day before t's day from the daily rollups, then
-- that day's whole hours, then the points of t's hour.
CREATE FUNCTION metric_latest_before(in_organization_id uuid, in_entity_type text, in_entity_id uuid,
                                     in_metric_name text, t timestamptz)
RETURNS double precision[]
LANGUAGE sql STABLE AS $$
SELECT max(l) FROM (
    (SELECT ARRAY[date_part('epoch', x.last_at), x.last_id::float8, x.last_value] AS l
     FROM metric_rollups_daily x
     WHERE x.organization_id = in_organization_id AND x.entity_type = in_entity_type
       AND x.entity_id = in_entity_id AND x.metric_name = in_metric_name AND x.time_zone = 'UTC'
       AND x.bucket_start < date_trunc('day', t, 'UTC')
     ORDER BY x.bucket_start DESC LIMIT 1)
    UNION ALL
    (SELECT ARRAY[date_part('epoch', x.last_at), x.last_id::float8, x.last_value]
     FROM metric_rollups_hourly x
     WHERE x.organization_id = in_organization_id AND x.entity_type = in_entity_type
       AND x.entity_id = in_entity_id AND x.metric_name = in_metric_name
       AND x.bucket_start >= date_trunc('day', t, 'UTC') AND x.bucket_start < metric_floor_hour(t)
     ORDER BY x.bucket_start DESC LIMIT 1)
    UNION ALL
    SELECT ARRAY[date_part('epoch', m.recorded_at), m.id::float8, m.value]
    FROM metric_points_between(in_organization_id, in_entity_type, in_entity_id, in_metric_name,
                               metric_floor_hour(t), t) AS m
) AS candidates
$$;

-- ------------------------------------------------------------ percentiles
-- metric_percentiles: each bucket's percentiles (in the order asked) of the
-- points of one series, as get_metrics_aggregated buckets them. Here exact:
-- percentile_cont over the points. When the t-digest extension can be
-- created (Debian's postgresql-15-tdigest), the block below replaces it
-- with one that reads per-day t-digests for whole days. NaN points have no
-- rank: they are left out.
CREATE FUNCTION metric_percentiles(in_entity_type text, in_entity_id uuid, in_metric_name text,
                                   unit text, t0 timestamptz, t1 timestamptz, tz text,
                                   in_organization_id uuid, fractions double precision[])
RETURNS TABLE (bucket_start timestamptz, percentiles double precision[])
LANGUAGE sql STABLE AS $$
SELECT date_trunc(unit, m.recorded_at, tz),
       percentile_cont(fractions) WITHIN GROUP (ORDER BY m.value)
FROM time_series_metrics m
WHERE m.organization_id = in_organization_id AND m.entity_type = in_entity_type
  AND m.entity_id = in_entity_id AND m.metric_name = in_metric_name
  AND m.recorded_at >= t0 AND m.recorded_at < t1 AND m.value <> 'NaN'
GROUP BY 1
ORDER BY 1
$$;

DO $outer$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'tdigest') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'tdigest') THEN
            RAISE NOTICE 'the tdigest extension is not installed: percentiles are computed from the points';
            RETURN;
        END IF;
        BEGIN
            CREATE EXTENSION tdigest;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'not allowed to create the tdigest extension: percentiles are computed from the points';
            RETURN;
        END;
        COMMENT ON EXTENSION tdigest IS 'created by affinity migration 13 (Analytics)';
    END IF;

    -- One t-digest of each series' points per local day, for every zone
    -- with daily rollups. `integral`: every point of the day is a whole
    -- number (percentiles of such series are rounded to one: a value the
    -- series can take, as percentile ranks of counts expect).
    CREATE TABLE metric_digests_daily (
        organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        entity_type     text NOT NULL,
        entity_id       uuid NOT NULL,
        metric_name     text NOT NULL,
        time_zone       text NOT NULL REFERENCES metric_rollup_zones (time_zone) ON DELETE CASCADE,
        bucket_start    timestamptz NOT NULL,
        digest          tdigest NOT NULL,
        integral        boolean NOT NULL,
        PRIMARY KEY (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start)
    );
    CREATE INDEX metric_digests_daily_zone_idx ON metric_digests_daily (time_zone);

    -- The compression of every digest (larger: more accurate, larger
    -- digests; measured in BENCHMARKS.md).
    CREATE FUNCTION metric_digest_compression() RETURNS integer
    LANGUAGE sql IMMUTABLE AS 'SELECT 500';

    -- Percentiles of a merged digest, rounded when every point is whole.
    CREATE FUNCTION metric_digest_values(v double precision[], integral boolean)
    RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $f$
        SELECT CASE WHEN integral
                    THEN (SELECT array_agg(round(x) ORDER BY n) FROM unnest(v) WITH ORDINALITY AS u (x, n))
                    ELSE v END
    $f$;

    -- New points: merged into their days' digests. (NaN is left out: the
    -- extension does not take it.)
    CREATE FUNCTION metric_digests_on_insert() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        IF current_setting('affinity.rollups_skip', true) = 'on' THEN
            RETURN NULL;
        END IF;
        INSERT INTO metric_digests_daily AS r
        SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
               date_trunc('day', p.recorded_at, z.time_zone),
               tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
        FROM new_points p CROSS JOIN metric_rollup_zones z
        WHERE p.value <> 'NaN'
        GROUP BY 1, 2, 3, 4, 5, 6
        ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
        SET digest = tdigest_union(r.digest, EXCLUDED.digest), integral = r.integral AND EXCLUDED.integral;
        RETURN NULL;
    END;
    $f$;

    -- The days listed in _digest_days (days of changed or deleted points,
    -- archival too) rebuilt from the points left: a digest cannot forget a
    -- point.
    CREATE FUNCTION metric_digests_prepare_days() RETURNS void LANGUAGE plpgsql AS $f$
    BEGIN
        CREATE TEMP TABLE IF NOT EXISTS _digest_days (
            organization_id uuid, entity_type text, entity_id uuid, metric_name text, time_zone text,
            bucket_start timestamptz
        ) ON COMMIT DROP;
    END;
    $f$;

    CREATE FUNCTION metric_digests_rebuild() RETURNS void LANGUAGE plpgsql AS $f$
    BEGIN
        DELETE FROM metric_digests_daily r USING _digest_days k
        WHERE (r.organization_id, r.entity_type, r.entity_id, r.metric_name, r.time_zone, r.bucket_start)
            = (k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start);
        INSERT INTO metric_digests_daily AS r
        SELECT k.organization_id, k.entity_type, k.entity_id, k.metric_name, k.time_zone, k.bucket_start,
               tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
        FROM _digest_days k
        JOIN time_series_metrics p
          ON (p.organization_id, p.entity_type, p.entity_id, p.metric_name)
             = (k.organization_id, k.entity_type, k.entity_id, k.metric_name)
         AND p.recorded_at >= k.bucket_start
         AND p.recorded_at < date_trunc('day', k.bucket_start + interval '36 hours', k.time_zone)
        WHERE p.value <> 'NaN'
        GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (organization_id, entity_type, entity_id, metric_name, time_zone, bucket_start) DO UPDATE
        SET digest = EXCLUDED.digest, integral = EXCLUDED.integral;
        TRUNCATE _digest_days;
    END;
    $f$;

    CREATE FUNCTION metric_digests_on_delete() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        PERFORM metric_digests_prepare_days();
        INSERT INTO _digest_days
        SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                        date_trunc('day', p.recorded_at, z.time_zone)
        FROM old_points p CROSS JOIN metric_rollup_zones z;
        PERFORM metric_digests_rebuild();
        RETURN NULL;
    END;
    $f$;

    CREATE FUNCTION metric_digests_on_update() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        PERFORM metric_digests_prepare_days();
        INSERT INTO _digest_days
        SELECT DISTINCT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
                        date_trunc('day', p.recorded_at, z.time_zone)
        FROM (SELECT * FROM old_points UNION ALL SELECT * FROM new_points) p
        CROSS JOIN metric_rollup_zones z;
        PERFORM metric_digests_rebuild();
        RETURN NULL;
    END;
    $f$;

    CREATE FUNCTION metric_digests_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        TRUNCATE metric_digests_daily;
        RETURN NULL;
    END;
    $f$;

    -- A zone given daily rollups (add_metric_rollup_zone, which holds off
    -- writers meanwhile) gets its digests from every point there is.
    CREATE FUNCTION metric_digests_on_new_zone() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        INSERT INTO metric_digests_daily
        SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, NEW.time_zone,
               date_trunc('day', p.recorded_at, NEW.time_zone),
               tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
        FROM time_series_metrics p
        WHERE p.value <> 'NaN'
        GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END;
    $f$;

    CREATE TRIGGER metric_digests_insert AFTER INSERT ON time_series_metrics
        REFERENCING NEW TABLE AS new_points FOR EACH STATEMENT EXECUTE FUNCTION metric_digests_on_insert();
    CREATE TRIGGER metric_digests_delete AFTER DELETE ON time_series_metrics
        REFERENCING OLD TABLE AS old_points FOR EACH STATEMENT EXECUTE FUNCTION metric_digests_on_delete();
    CREATE TRIGGER metric_digests_update AFTER UPDATE ON time_series_metrics
        REFERENCING OLD TABLE AS old_points NEW TABLE AS new_points
        FOR EACH STATEMENT EXECUTE FUNCTION metric_digests_on_update();
    CREATE TRIGGER metric_digests_truncate AFTER TRUNCATE ON time_series_metrics
        FOR EACH STATEMENT EXECUTE FUNCTION metric_digests_on_truncate();
    CREATE TRIGGER metric_digests_new_zone AFTER INSERT ON metric_rollup_zones
        FOR EACH ROW EXECUTE FUNCTION metric_digests_on_new_zone();

    -- The points there are already, in every zone with rollups.
    LOCK TABLE time_series_metrics IN SHARE MODE;
    INSERT INTO metric_digests_daily
    SELECT p.organization_id, p.entity_type, p.entity_id, p.metric_name, z.time_zone,
           date_trunc('day', p.recorded_at, z.time_zone),
           tdigest(p.value, metric_digest_compression()), bool_and(p.value = trunc(p.value))
    FROM time_series_metrics p CROSS JOIN metric_rollup_zones z
    WHERE p.value <> 'NaN'
    GROUP BY 1, 2, 3, 4, 5, 6;

    -- Day, week and month buckets in a zone with rollups: whole local days
    -- from their digests, the partial days at the range's ends from their
    -- points, merged per bucket. Anything else: exact, as above.
    CREATE OR REPLACE FUNCTION metric_percentiles(in_entity_type text, in_entity_id uuid,
                                                  in_metric_name text, unit text, t0 timestamptz,
                                                  t1 timestamptz, tz text, in_organization_id uuid,
                                                  fractions double precision[])
    RETURNS TABLE (bucket_start timestamptz, percentiles double precision[])
    LANGUAGE sql STABLE AS $f$
    WITH r AS (
        SELECT d.d0, d.d1, least(d.d0, t1) AS e1, greatest(d.d1, least(d.d0, t1)) AS e2
        FROM (SELECT metric_day_at_or_after(t0, tz) AS d0, date_trunc('day', t1, tz) AS d1) d
        WHERE unit IN ('day', 'week', 'month') AND t0 < t1
          AND EXISTS (SELECT 1 FROM metric_rollup_zones z WHERE z.time_zone = tz)
    ), part AS (
        SELECT date_trunc(unit, x.bucket_start, tz) AS b, x.digest AS d, x.integral AS i
        FROM r JOIN metric_digests_daily x
          ON x.organization_id = in_organization_id AND x.entity_type = in_entity_type
         AND x.entity_id = in_entity_id AND x.metric_name = in_metric_name
         AND x.time_zone = tz AND x.bucket_start >= r.d0 AND x.bucket_start < r.d1
        UNION ALL
        SELECT date_trunc(unit, m.recorded_at, tz),
               tdigest(m.value, metric_digest_compression()), bool_and(m.value = trunc(m.value))
        FROM r
        CROSS JOIN LATERAL (VALUES (t0, r.e1), (r.e2, t1)) AS piece (lo, hi)
        CROSS JOIN LATERAL metric_points_between(in_organization_id, in_entity_type, in_entity_id,
                                                 in_metric_name, piece.lo, piece.hi) AS m
        WHERE piece.lo < piece.hi AND m.value <> 'NaN'
        GROUP BY 1
    )
    SELECT p.b, metric_digest_values(tdigest_percentile(p.d, fractions), bool_and(p.i))
    FROM part p
    GROUP BY p.b
    UNION ALL
    SELECT date_trunc(unit, m.recorded_at, tz),
           percentile_cont(fractions) WITHIN GROUP (ORDER BY m.value)
    FROM time_series_metrics m
    WHERE NOT EXISTS (SELECT 1 FROM r)
      AND m.organization_id = in_organization_id AND m.entity_type = in_entity_type
      AND m.entity_id = in_entity_id AND m.metric_name = in_metric_name
      AND m.recorded_at >= t0 AND m.recorded_at < t1 AND m.value <> 'NaN'
    GROUP BY 1
    ORDER BY 1
    $f$;
END;
$outer$;
