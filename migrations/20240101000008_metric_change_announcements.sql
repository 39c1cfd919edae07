-- Every change to metric points is announced (at commit) on the channel
-- `affinity_metrics`, so that each replica's cache of aggregations drops
-- what it holds for that entity: one notification '<organization_id>:<entity_id>'
-- per entity a statement touched, or '*' (drop everything) when a statement
-- touched more than 1,000 entities or truncated the table. Whoever writes
-- (any replica, a tool, archival, a cascade from a deleted organization),
-- the announcement follows, as for memberships (phase 03).

CREATE FUNCTION metric_points_announce() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entities text[];
    entity   text;
BEGIN
    -- ensure_metric_partitions moves points without changing them.
    IF current_setting('affinity.rollups_skip', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('affinity_metrics', '*');
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(k) INTO entities FROM (
            SELECT DISTINCT p.organization_id || ':' || p.entity_id AS k FROM new_points p LIMIT 1001
        ) s;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(k) INTO entities FROM (
            SELECT DISTINCT p.organization_id || ':' || p.entity_id AS k FROM old_points p LIMIT 1001
        ) s;
    ELSE
        SELECT array_agg(k) INTO entities FROM (
            SELECT DISTINCT p.organization_id || ':' || p.entity_id AS k
            FROM (SELECT organization_id, entity_id FROM old_points
                  UNION ALL SELECT organization_id, entity_id FROM new_points) p
            LIMIT 1001
        ) s;
    END IF;
    IF cardinality(entities) > 1000 THEN
        PERFORM pg_notify('affinity_metrics', '*');
    ELSIF entities IS NOT NULL THEN
        FOREACH entity IN ARRAY entities LOOP
            PERFORM pg_notify('affinity_metrics', entity);
        END LOOP;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER metric_points_announce_insert AFTER INSERT ON time_series_metrics
    REFERENCING NEW TABLE AS new_points FOR EACH STATEMENT EXECUTE FUNCTION metric_points_announce();
CREATE TRIGGER metric_points_announce_delete AFTER DELETE ON time_series_metrics
    REFERENCING OLD TABLE AS old_points FOR EACH STATEMENT EXECUTE FUNCTION metric_points_announce();
CREATE TRIGGER metric_points_announce_update AFTER UPDATE ON time_series_metrics
    REFERENCING OLD TABLE AS old_points NEW TABLE AS new_points
    FOR EACH STATEMENT EXECUTE FUNCTION metric_points_announce();
CREATE TRIGGER metric_points_announce_truncate AFTER TRUNCATE ON time_series_metrics
    FOR EACH STATEMENT EXECUTE FUNCTION metric_points_announce();
