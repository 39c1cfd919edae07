-- The schema's read functions as Citus runs them: `affinity distribute`
-- applies this after citus_triggers.sql (plain PostgreSQL keeps the
-- migrations' versions, which its planner inlines).
--
-- Citus runs no SQL-language function over distributed tables with
-- parameters, so each of these becomes a PL/pgSQL function returning the
-- same query: Citus plans it, and with the organization given it is a
-- router query, sent whole to the node holding that organization's shards.
DO $$
DECLARE
    f regprocedure;
    def text;
    body text;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql')
          AND p.proname IN ('get_metrics_aggregated', 'metric_totals_of_type',
                            'metric_latest_before', 'metric_percentiles',
                            'user_has_org_permission')
    LOOP
        def := pg_get_functiondef(f);
        body := regexp_replace(substring(def FROM '\$function\$(.*)\$function\$'), ';?\s*$', '');
        body := CASE WHEN (SELECT proretset FROM pg_proc WHERE oid = f)
                     THEN E'\n#variable_conflict use_column\nBEGIN\nRETURN QUERY ' || body || E';\nEND;\n'
                     ELSE E'\n#variable_conflict use_column\nBEGIN\nRETURN (' || body || E');\nEND;\n' END;
        def := regexp_replace(def, '\mLANGUAGE sql\M', 'LANGUAGE plpgsql');
        EXECUTE substring(def FROM '^(.*?)\$function\$') || '$function$' || body || '$function$';
    END LOOP;
END;
$$;

-- The functions those call for the points at a range's edges run on the
-- worker, inside the router query: there a query of a distributed table is
-- a distributed query inside a shard's query, which Citus runs only when
-- allowed. Allowed for these reads alone: they read the shard of the same
-- organization, on the same node (local execution, in the worker's own
-- transaction and snapshot), and write nothing, so none of the hazards
-- that make Citus refuse it by default (writes a nested query cannot see,
-- connections of another node) applies.
ALTER FUNCTION metric_points_between(uuid, text, uuid, text, timestamptz, timestamptz)
    SET citus.allow_nested_distributed_execution = on;
ALTER FUNCTION metric_points_of_type(uuid, text, text, timestamptz, timestamptz)
    SET citus.allow_nested_distributed_execution = on;
ALTER FUNCTION metrics_aggregated_stepwise(text, uuid, text, text, timestamptz, timestamptz, text, uuid)
    SET citus.allow_nested_distributed_execution = on;

-- verify_migration_integrity's checks of users and owners read reference
-- tables with correlated subqueries, which Citus does not plan; here they
-- are joins to grouped subqueries, with the same meaning. (Its checks of
-- the legacy rows run only while the backups exist, and `distribute`
-- refuses a schema whose migration is not finalized.)
DO $$
DECLARE
    def text := pg_get_functiondef('verify_migration_integrity()'::regprocedure);
    a integer := position('    -- Every user: exactly one personal organization' IN def);
    b integer := position('    -- Foreign keys are enforced' IN def);
BEGIN
    IF a = 0 OR b < a THEN
        RAISE EXCEPTION 'verify_migration_integrity() is not the one this patch expects';
    END IF;
    EXECUTE left(def, a - 1) || $new$    -- Every user: exactly one personal organization, owned by them, and
    -- their default organization.
    SELECT count(*) INTO n FROM user_profiles u
    LEFT JOIN (SELECT o.personal_owner_id AS uid, count(*) AS n FROM organizations o GROUP BY 1) p
           ON p.uid = u.id
    LEFT JOIN (SELECT DISTINCT m.user_id AS uid, o.id AS org FROM organizations o
               JOIN organization_members m ON m.organization_id = o.id
                                          AND m.user_id = o.personal_owner_id AND m.role = 'owner') w
           ON w.uid = u.id AND w.org = u.organization_id
    WHERE coalesce(p.n, 0) <> 1 OR w.uid IS NULL;
    SELECT count(*) INTO total FROM user_profiles;
    RETURN QUERY SELECT 'personal_organizations', n = 0,
                        format('%s users, %s without exactly one personal organization they own', total, n);

    -- Every organization has an owner.
    SELECT count(*) INTO n FROM organizations o
    LEFT JOIN (SELECT DISTINCT m.organization_id FROM organization_members m WHERE m.role = 'owner') w
           ON w.organization_id = o.id
    WHERE w.organization_id IS NULL;
    RETURN QUERY SELECT 'organization_owners', n = 0, format('%s organizations without an owner', n);

$new$ || substr(def, b);
END;
$$;
