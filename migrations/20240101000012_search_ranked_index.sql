-- Migration 12: TEXT's best matches straight from an index.
--
-- Ranked through the GIN index, a search reads every matching row from
-- the table to rank it (ts_rank needs the row's document), so a query
-- matching thousands of items costs thousands of row reads (BENCHMARKS.md,
-- search). A RUM index (the rum extension, Postgres Professional) keeps
-- each lexeme's positions in the index and returns matches in rank order
-- (`document <=> query`): only the best ones are read from the table.
--
-- Optional: created only where the rum extension is available (Debian's
-- postgresql-15-rum, which scripts/install-deps.sh installs; several
-- managed services offer it). Without it, nothing changes: TEXT ranks
-- through the GIN index as before (the service looks for this index when
-- it starts). The GIN index stays either way: the planner takes it when an
-- organization or a filter holds few of the matches, which a RUM index on
-- the document alone (it has no operator class for uuid) cannot narrow.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'rum') THEN
        RAISE NOTICE 'the rum extension is not available: TEXT ranks through the GIN index';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'rum') THEN
        BEGIN
            CREATE EXTENSION rum;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'the rum extension may not be created here: TEXT ranks through the GIN index';
            RETURN;
        END;
        COMMENT ON EXTENSION rum IS 'created by affinity migration 12 (Search)';
    END IF;
    CREATE INDEX item_texts_document_rum_idx ON item_texts USING rum (document rum_tsvector_ops);
END;
$$;
