-- Phase 07: get_metrics_aggregated in one SQL statement for day, week and
-- month buckets in zones with daily rollups (measured in BENCHMARKS.md).
--
-- Phase 05's function (now metrics_aggregated_stepwise) finds the parts of
-- the range each source covers step by step in PL/pgSQL, then aggregates
-- every row it reads again: ~0.5 ms for 90 days of an hourly post, of which
-- reading the 91 daily rows is ~0.15 ms. Here, with the same answers:
-- - the function is plain SQL, so PostgreSQL inlines it into the caller's
--   statement (planned once per connection for a prepared statement);
-- - the points are read only where neither rollup covers the range (parts
--   of UTC hours at its ends), by a function called only then: a range
--   that starts and ends on UTC hours plans and opens none of the
--   partitions of the points;
-- - day buckets take each whole local day's rollup row as it is; only the
--   two edge days, and week and month buckets, are aggregated;
-- - the last value of a bucket is the max of [time, id, value] (arrays
--   compare element by element; times and ids are exact in a double)
--   instead of a sort in every bucket.
-- Hour buckets, zones without daily rollups and in_organization_id NULL
-- still go to the stepwise function.

-- Phase 05's function under its new name: its body, which names its
-- arguments by the function's name, renamed with it.
DO $$
BEGIN
    EXECUTE replace(pg_get_functiondef(
        'get_metrics_aggregated(text, uuid, text, text, timestamptz, timestamptz, text, uuid)'::regprocedure),
        'get_metrics_aggregated', 'metrics_aggregated_stepwise');
END;
$$;

-- Small expressions (inlined where used).
CREATE FUNCTION metric_floor_hour(t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT date_trunc('hour', t, 'UTC') $$;

CREATE FUNCTION metric_ceil_hour(t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT date_trunc('hour', t + interval '1 hour' - interval '1 microsecond', 'UTC') $$;

-- The first local midnight at or after t (36 hours from a local midnight
-- is always in the next local day).
CREATE FUNCTION metric_day_at_or_after(t timestamptz, tz text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN date_trunc('day', t, tz) < t
                THEN date_trunc('day', date_trunc('day', t, tz) + interval '36 hours', tz)
                ELSE t END
$$;

-- The points of one series in [lo, hi). A function, not inlined: its
-- statement (and the partitions of the points) is planned and opened only
-- when it is called, and get_metrics_aggregated calls it only for the
-- parts of hours at the ends of a range.
CREATE FUNCTION metric_points_between(in_organization_id uuid, in_entity_type text, in_entity_id uuid,
                                      in_metric_name text, lo timestamptz, hi timestamptz)
RETURNS TABLE (recorded_at timestamptz, id bigint, value double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT m.recorded_at, m.id, m.value FROM time_series_metrics m
        WHERE m.organization_id = in_organization_id AND m.entity_type = in_entity_type
          AND m.entity_id = in_entity_id AND m.metric_name = in_metric_name
          AND m.recorded_at >= lo AND m.recorded_at < hi;
END;
$$;

-- As before (phases 03 and 05): the buckets of one series, oldest first;
-- in_organization_id NULL: every organization, from the points.
CREATE OR REPLACE FUNCTION get_metrics_aggregated(entity_type text, entity_id uuid, metric_name text,
                                       granularity text DEFAULT 'day',
                                       start_at timestamptz DEFAULT NULL,
                                       end_at timestamptz DEFAULT NULL,
                                       time_zone text DEFAULT 'UTC',
                                       in_organization_id uuid DEFAULT NULL)
RETURNS TABLE (bucket_start timestamptz, sum double precision, avg double precision,
               min double precision, max double precision, count bigint, last double precision)
LANGUAGE sql STABLE AS $$
WITH q AS (
    SELECT lower(coalesce(get_metrics_aggregated.granularity, 'day')) AS unit,
           coalesce(get_metrics_aggregated.start_at,
                    coalesce(get_metrics_aggregated.end_at, now()) - interval '30 days') AS t0,
           coalesce(get_metrics_aggregated.end_at, now()) AS t1,
           get_metrics_aggregated.time_zone AS tz
), r AS (
    -- Only when this statement answers; one row of bounds.
    -- [d0, d1): the whole local days. [t0, e1) and [e2, t1): the edges
    -- before and after them (one edge, e1 = e2 = t1, when the range lies in
    -- one local day). An edge holds no local midnight, hence no bucket
    -- boundary (day, week and month ones are local midnights): all of an
    -- edge's hours fall in one bucket.
    SELECT q.unit, q.tz, q.t0, q.t1, d.d0, d.d1, e.e1, e.e2,
           metric_ceil_hour(q.t0) AS h1a, metric_floor_hour(e.e1) AS h1b,
           metric_ceil_hour(e.e2) AS h2a, metric_floor_hour(q.t1) AS h2b
    FROM q
    CROSS JOIN LATERAL (SELECT metric_day_at_or_after(q.t0, q.tz) AS d0,
                               date_trunc('day', q.t1, q.tz) AS d1) d
    CROSS JOIN LATERAL (SELECT least(d.d0, q.t1) AS e1,
                               greatest(d.d1, least(d.d0, q.t1)) AS e2) e
    WHERE q.unit IN ('day', 'week', 'month') AND q.t0 < q.t1
      AND get_metrics_aggregated.in_organization_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM metric_rollup_zones z WHERE z.time_zone = q.tz)
), part AS (
    -- What is aggregated into buckets: the edges, and for week and month
    -- buckets the whole days too.
    SELECT date_trunc(r.unit, x.bucket_start, r.tz) AS b, x.sum AS s, x.count AS n,
           x.min AS lo, x.max AS hi, x.last_at AS la, x.last_id AS li, x.last_value AS lv
    FROM r JOIN metric_rollups_daily x
      ON x.organization_id = get_metrics_aggregated.in_organization_id
     AND x.entity_type = get_metrics_aggregated.entity_type
     AND x.entity_id = get_metrics_aggregated.entity_id
     AND x.metric_name = get_metrics_aggregated.metric_name
     AND x.time_zone = r.tz AND x.bucket_start >= r.d0 AND x.bucket_start < r.d1
    WHERE r.unit <> 'day'
    UNION ALL
    SELECT date_trunc(r.unit, x.bucket_start, r.tz), x.sum, x.count,
           x.min, x.max, x.last_at, x.last_id, x.last_value
    FROM r JOIN metric_rollups_hourly x
      ON x.organization_id = get_metrics_aggregated.in_organization_id
     AND x.entity_type = get_metrics_aggregated.entity_type
     AND x.entity_id = get_metrics_aggregated.entity_id
     AND x.metric_name = get_metrics_aggregated.metric_name
     AND ((x.bucket_start >= r.h1a AND x.bucket_start < r.h1b)
          OR (x.bucket_start >= r.h2a AND x.bucket_start < r.h2b))
    UNION ALL
    SELECT date_trunc(r.unit, m.recorded_at, r.tz), m.value, 1::bigint,
           m.value, m.value, m.recorded_at, m.id, m.value
    FROM r
    -- Each edge less its whole hours: before and after them (all of it
    -- when it has none).
    CROSS JOIN LATERAL (VALUES
        (r.t0, least(r.h1a, r.e1)), (greatest(r.h1b, least(r.h1a, r.e1)), r.e1),
        (r.e2, least(r.h2a, r.t1)), (greatest(r.h2b, least(r.h2a, r.t1)), r.t1)) AS piece (lo, hi)
    CROSS JOIN LATERAL metric_points_between(get_metrics_aggregated.in_organization_id,
                                             get_metrics_aggregated.entity_type,
                                             get_metrics_aggregated.entity_id,
                                             get_metrics_aggregated.metric_name,
                                             piece.lo, piece.hi) AS m
    WHERE piece.lo < piece.hi
)
SELECT x.bucket_start, x.sum, x.sum / x.count, x.min, x.max, x.count, x.last_value
FROM r JOIN metric_rollups_daily x
  ON x.organization_id = get_metrics_aggregated.in_organization_id
 AND x.entity_type = get_metrics_aggregated.entity_type
 AND x.entity_id = get_metrics_aggregated.entity_id
 AND x.metric_name = get_metrics_aggregated.metric_name
 AND x.time_zone = r.tz AND x.bucket_start >= r.d0 AND x.bucket_start < r.d1
WHERE r.unit = 'day'
UNION ALL
SELECT p.b, sum(p.s), sum(p.s) / sum(p.n), min(p.lo), max(p.hi), sum(p.n)::bigint,
       (max(ARRAY[date_part('epoch', p.la), p.li::float8, p.lv]))[3]
FROM part p
GROUP BY p.b
UNION ALL
SELECT s.*
FROM metrics_aggregated_stepwise(get_metrics_aggregated.entity_type, get_metrics_aggregated.entity_id,
                                 get_metrics_aggregated.metric_name, get_metrics_aggregated.granularity,
                                 get_metrics_aggregated.start_at, get_metrics_aggregated.end_at,
                                 get_metrics_aggregated.time_zone,
                                 get_metrics_aggregated.in_organization_id) AS s
WHERE NOT (lower(coalesce(get_metrics_aggregated.granularity, 'day')) IN ('day', 'week', 'month')
           AND coalesce(get_metrics_aggregated.start_at,
                        coalesce(get_metrics_aggregated.end_at, now()) - interval '30 days')
               < coalesce(get_metrics_aggregated.end_at, now())
           AND get_metrics_aggregated.in_organization_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM metric_rollup_zones z
                       WHERE z.time_zone = get_metrics_aggregated.time_zone))
ORDER BY 1
$$;
