-- Migration 16: full-text ranks read from the index (RUM), where the rum
-- extension is installed (Debian's postgresql-15-rum).
--
-- Migration 15's GIN index finds an organization's matches, but ranking
-- them (ts_rank) reads every match's row: a broad query ("great review")
-- visits thousands of rows to return 50 (BENCHMARKS.md, search). A RUM index
-- keeps each lexeme's positions in its posting lists, ranks the matches
-- there (`<=>`, a distance: 1 / rank) and returns them best first, so only
-- the rows returned are read. Without the extension (or the right to
-- create it) nothing changes: migration 15's index stays and the service
-- ranks rows as before (store::search::TextRanking).

-- An item's document as the ranked index keeps it: as
-- search_tenant_document's, each lexeme behind the organization's tag and
-- the tag's own lexeme ('<tag>:'), but with the document's positions and
-- weights, which the rank reads. A document whose tagged form might not fit
-- a tsvector (its lexemes and positions near the 1 MB limit, or a word
-- near 2,047 bytes) carries '<tag>:' and '<tag>' only, as there: every
-- tenant query asks for '<tag>' too, so it stays a candidate. COST: the
-- planner must not choose to compute it for every match (a sort) over
-- reading the index's order.
CREATE FUNCTION search_tenant_ranked(org uuid, doc tsvector) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 5000 AS $$
DECLARE
    tag text := search_tenant_tag(org);
    prefix int := octet_length(tag) + 1;
    fits boolean;
BEGIN
    -- Each lexeme's bytes, its tag, and up to 4 + 2 per position of
    -- length, alignment and positions: more than a tsvector stores.
    SELECT coalesce(sum(octet_length(u.lexeme) + prefix + 4 + 2 * cardinality(u.positions)), 0) < 1048576 - 4096
           AND coalesce(max(octet_length(u.lexeme)), 0) + prefix <= 2047
      INTO fits
      FROM unnest(doc) AS u;
    IF NOT fits THEN
        RETURN array_to_tsvector(ARRAY[tag || ':', tag]);
    END IF;
    -- The tsvector's text form: 'lexeme':1A,5D ..., quotes doubled and
    -- backslashes escaped, then '<tag>:' (no positions).
    RETURN (SELECT (coalesce(string_agg(
                        '''' || replace(replace(tag || ':' || u.lexeme, '\', '\\'), '''', '''''') || ''''
                        || coalesce(':' || (SELECT string_agg(p::text || w, ',')
                                            FROM unnest(u.positions, u.weights) AS x(p, w)), ''),
                        ' '), '')
                    || ' ''' || tag || ':''')::tsvector
            FROM unnest(doc) AS u);
END;
$$;

-- The query whose distance to an item's own document equals the ranked
-- index's distance of its tagged form to search_tenant_query's: the
-- query's required part (querytree), phrases as conjunctions, untagged.
-- NULL when the query requires no word ("-sugar"): its matches all rank 0.
CREATE FUNCTION search_rank_query(q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN numnode(search_query(q)) = 0 THEN search_query(q)
        WHEN querytree(search_query(q)) = 'T' THEN NULL
        ELSE regexp_replace(querytree(search_query(q)), ' <(?:-|[0-9]+)> ', ' & ', 'g')::tsquery
    END
$$;

DO $outer$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'rum') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'rum') THEN
            RAISE NOTICE 'the rum extension is not installed: full-text matches are ranked from their rows';
            RETURN;
        END IF;
        BEGIN
            CREATE EXTENSION rum;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'not allowed to create the rum extension: full-text matches are ranked from their rows';
            RETURN;
        END;
        COMMENT ON EXTENSION rum IS 'created by affinity migration 16 (Search)';
    END IF;

    CREATE INDEX item_texts_tenant_ranked_idx ON item_texts
        USING rum (search_tenant_ranked(organization_id, document) rum_tsvector_ops);
    -- The ranked index answers every query the GIN index did.
    DROP INDEX item_texts_tenant_document_idx;
END;
$outer$;
