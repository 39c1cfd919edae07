-- Phase 02: unified metrics and embeddings.
--
-- time_series_metrics: one row per data point of any entity, range
-- partitioned by month on recorded_at (plus a default partition), so old
-- months can be archived or dropped whole. Every non-null counter of every
-- legacy post_analytics snapshot becomes a point, and every post's
-- post_insights counters a point at the post's updated_at.
--
-- embeddings: one table for the vectors of every entity type, model and
-- dimension, with an HNSW cosine index per supported dimension (partial
-- expression indexes: the planner uses them when a query filters on the
-- dimension and orders by the same cast expression).

CREATE TABLE time_series_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    entity_type text NOT NULL,
    entity_id   uuid NOT NULL,
    metric_name text NOT NULL,
    value       double precision NOT NULL,
    recorded_at timestamptz NOT NULL,
    source      text NOT NULL DEFAULT 'api',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, recorded_at)  -- a partitioned table's keys include the partition key
) PARTITION BY RANGE (recorded_at);

CREATE TABLE time_series_metrics_default PARTITION OF time_series_metrics DEFAULT;

-- Creates the monthly partitions (UTC months) covering [from_ts, to_ts] that
-- do not exist yet; returns how many it created. Points in the default
-- partition that fall in a new month are moved into it.
CREATE FUNCTION ensure_metric_partitions(from_ts timestamptz, to_ts timestamptz)
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
            INSERT INTO time_series_metrics OVERRIDING SYSTEM VALUE SELECT * FROM _parked_points;
            TRUNCATE _parked_points;
            created := created + 1;
        END IF;
        month_start := month_end;
    END LOOP;
    RETURN created;
END;
$$;

-- Partitions for the legacy data's whole span, and for the months around now.
DO $$
DECLARE
    lo timestamptz := now() - interval '1 month';
    hi timestamptz := now() + interval '3 months';
BEGIN
    IF to_regclass('public.post_analytics') IS NOT NULL THEN
        SELECT least(lo, min(recorded_at)), greatest(hi, max(recorded_at)) INTO lo, hi FROM post_analytics;
    END IF;
    SELECT least(lo, min(updated_at)), greatest(hi, max(updated_at)) INTO lo, hi FROM post_insights;
    PERFORM ensure_metric_partitions(lo, hi);
END;
$$;

DO $$
BEGIN
    IF to_regclass('public.post_analytics') IS NOT NULL THEN
        INSERT INTO time_series_metrics (entity_type, entity_id, metric_name, value, recorded_at, source)
        SELECT 'post', a.post_id, v.metric_name, v.value, a.recorded_at, 'post_analytics'
        FROM post_analytics a
        CROSS JOIN LATERAL (VALUES
            ('likes', a.likes::double precision),
            ('comments', a.comments::double precision),
            ('shares', a.shares::double precision),
            ('saves', a.saves::double precision),
            ('reach', a.reach::double precision),
            ('impressions', a.impressions::double precision),
            ('engagement_rate', a.engagement_rate::double precision)
        ) AS v(metric_name, value)
        WHERE v.value IS NOT NULL;
    END IF;

    INSERT INTO time_series_metrics (entity_type, entity_id, metric_name, value, recorded_at, source)
    SELECT 'post', i.post_id, v.metric_name, v.value, i.updated_at, 'post_insights'
    FROM post_insights i
    CROSS JOIN LATERAL (VALUES
        ('likes', i.likes_count::double precision),
        ('comments', i.comments_count::double precision),
        ('shares', i.shares_count::double precision),
        ('saves', i.saves_count::double precision),
        ('reach', i.reach::double precision),
        ('impressions', i.impressions::double precision),
        ('engagement_rate', i.engagement_rate::double precision)
    ) AS v(metric_name, value)
    WHERE v.value IS NOT NULL;
END;
$$;

CREATE INDEX time_series_metrics_series_idx
    ON time_series_metrics (entity_type, entity_id, metric_name, recorded_at);

-- The dimensions that have an HNSW index. Vectors of other dimensions can be
-- stored but not searched; the service reads this table to say so.
CREATE TABLE vector_index_dimensions (
    dimension  integer PRIMARY KEY CHECK (dimension BETWEEN 1 AND 4000),
    -- pgvector indexes `vector` up to 2000 dimensions, `halfvec` up to 4000.
    index_type text NOT NULL CHECK (index_type IN ('vector', 'halfvec'))
);
INSERT INTO vector_index_dimensions (dimension, index_type) VALUES
    (384, 'vector'), (768, 'vector'), (1024, 'vector'), (1536, 'vector'), (3072, 'halfvec');

CREATE TABLE embeddings (
    id          uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    entity_type text NOT NULL,
    entity_id   uuid NOT NULL,
    model       text NOT NULL CHECK (model <> ''),
    dimension   integer NOT NULL,
    embedding   vector NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT embeddings_dimension_matches CHECK (vector_dims(embedding) = dimension),
    CONSTRAINT embeddings_entity_model_key UNIQUE (entity_type, entity_id, model)
);

-- The cast expression a query must order by to use the index of a dimension.
CREATE FUNCTION embedding_index_expression(dim integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('embedding::%s(%s)', index_type, dimension)
    FROM vector_index_dimensions WHERE dimension = dim
$$;

-- (Re)creates the HNSW index of every supported dimension. Indexes are
-- built after bulk loads: far faster than inserting into an indexed table.
CREATE FUNCTION create_embedding_indexes() RETURNS void
LANGUAGE plpgsql
-- An HNSW graph built in memory, by parallel workers, is built many times
-- faster than one that spills (the 64MB default spills at a few thousand
-- 1536-dimensional vectors).
SET maintenance_work_mem = '512MB'
SET max_parallel_maintenance_workers = 2
AS $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT dimension, index_type FROM vector_index_dimensions ORDER BY dimension LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON embeddings USING hnsw ((%s) %s) WHERE dimension = %s',
                       'embeddings_hnsw_' || d.dimension, embedding_index_expression(d.dimension),
                       d.index_type || '_cosine_ops', d.dimension);
    END LOOP;
END;
$$;

CREATE FUNCTION drop_embedding_indexes() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT dimension FROM vector_index_dimensions LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', 'embeddings_hnsw_' || d.dimension);
    END LOOP;
END;
$$;

DO $$
BEGIN
    IF to_regclass('public.posts') IS NOT NULL THEN
        INSERT INTO embeddings (entity_type, entity_id, model, dimension, embedding, created_at, updated_at)
        SELECT 'post', id, 'legacy', vector_dims(embedding), embedding, created_at, updated_at
        FROM posts WHERE embedding IS NOT NULL;
    END IF;
    IF to_regclass('public.chat_messages') IS NOT NULL THEN
        INSERT INTO embeddings (entity_type, entity_id, model, dimension, embedding, created_at, updated_at)
        SELECT 'chat_message', id, 'legacy', vector_dims(embedding), embedding, created_at, created_at
        FROM chat_messages WHERE embedding IS NOT NULL;
    END IF;
END;
$$;

-- On a legacy database the indexes are built at the end of phase 03, once
-- the organization ids are filled in, so that filling that column does not
-- pay for HNSW maintenance on every row; phase 03 rebuilds them anyway.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM embeddings) THEN
        PERFORM create_embedding_indexes();
    END IF;
END;
$$;
