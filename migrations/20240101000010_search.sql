-- Search over item_texts (SimilarityService.Search): a full-text document
-- per item with its GIN index, and what SearchFilter reads, kept on each
-- item's text so that filters apply inside the search (one table, indexed).
--
-- Text search configuration: 'simple' (lower case, every word kept, no
-- stemming, no stop words). Posts mix languages and the text model is
-- multilingual: one language's stemmer or stop list would mangle the
-- others' words (German "die", French "été"), and names, handles and codes
-- must match as typed. Meaning (plurals, paraphrases) is the vector side's.

-- Two-column GIN indexes: the organization and the document in one index.
-- Marked when this migration creates it, so that the rollback removes it
-- only then.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin') THEN
        CREATE EXTENSION btree_gin;
        COMMENT ON EXTENSION btree_gin IS 'created by affinity migration 10 (Search)';
    END IF;
END;
$$;

-- AI context entries' sessions (the API sets them with a later issue; the
-- filter reads them already).
ALTER TABLE ai_context_logs ADD COLUMN session_id text;

-- The parser reads "SKU-4471" as 'sku' and the integer '-4471', so "4471"
-- would not find it: a hyphen between a letter or digit and a digit is a
-- space, in documents and queries alike ("-word" still negates a query).
CREATE FUNCTION search_prepare(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT regexp_replace(t, '([[:alnum:]])-(?=[[:digit:]])', '\1 ', 'g')
$$;

-- An item's document: its words, plus each hyphen- or underscore-joined
-- word written without them, so "@brewlab_mtl" is found by "brewlab_mtl",
-- "brewlab mtl", "brewlabmtl" and "brewlab", "SKU-4471" by "sku4471".
CREATE FUNCTION search_document(body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_tsvector('simple'::regconfig, search_prepare(body))
        || to_tsvector('simple'::regconfig, coalesce(
               (SELECT string_agg(translate(m[1], '-_', ''), ' ')
                FROM regexp_matches(body, '([[:alnum:]]+(?:[-_][[:alnum:]]+)+)', 'g') AS m), ''))
$$;

-- What a person typed, as a query: websearch syntax ("quoted phrase", or,
-- -word), '#' and '@' ignored as the parser ignores them in documents.
CREATE FUNCTION search_query(q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT websearch_to_tsquery('simple'::regconfig, search_prepare(q))
$$;

-- The best passage of a body for a query, its terms between U+0002 and U+0003.
CREATE FUNCTION search_snippet(body text, q tsquery) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ts_headline('simple'::regconfig, body, q,
                       'StartSel=' || chr(2) || ', StopSel=' || chr(3)
                       || ', MaxWords=35, MinWords=15, MaxFragments=1')
$$;

ALTER TABLE item_texts
    ADD COLUMN user_id     uuid,     -- a post's author, an entry's user
    ADD COLUMN platform    text,     -- posts
    ADD COLUMN source_type text,     -- AI context entries
    ADD COLUMN session_id  text,     -- AI context entries
    ADD COLUMN hashtags    text[],   -- posts: lower case, without '#'
    ADD COLUMN document    tsvector GENERATED ALWAYS AS (search_document(body)) STORED;

-- A post's hashtags as filters compare them.
CREATE FUNCTION search_hashtags(tags text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT lower(ltrim(btrim(h), '#'))), '{}')
    FROM unnest(tags) AS h
    WHERE ltrim(btrim(h), '#') <> ''
$$;

-- Existing texts: their attributes from their own tables.
UPDATE item_texts t
SET user_id = p.user_id, platform = p.platform, hashtags = search_hashtags(c.hashtags)
FROM posts_core p
JOIN posts_content c ON c.organization_id = p.organization_id AND c.post_id = p.id
WHERE t.entity_type = 'post' AND p.organization_id = t.organization_id AND p.id = t.entity_id;

UPDATE item_texts t
SET user_id = a.user_id, source_type = a.source_type, session_id = a.session_id
FROM ai_context_logs a
WHERE t.entity_type = 'ai_context' AND a.organization_id = t.organization_id AND a.id = t.entity_id;

-- Whenever an item's text is written, its attributes are read from its
-- own table (the triggers that write posts' and entries' texts run after
-- those rows are written, so they read the new values).
CREATE FUNCTION item_texts_attributes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.entity_type = 'post' THEN
        SELECT p.user_id, p.platform, p.created_at, search_hashtags(c.hashtags)
        INTO NEW.user_id, NEW.platform, NEW.created_at, NEW.hashtags
        FROM posts_core p
        LEFT JOIN posts_content c ON c.organization_id = p.organization_id AND c.post_id = p.id
        WHERE p.organization_id = NEW.organization_id AND p.id = NEW.entity_id;
    ELSIF NEW.entity_type = 'ai_context' THEN
        SELECT a.user_id, a.source_type, a.session_id, a.occurred_at
        INTO NEW.user_id, NEW.source_type, NEW.session_id, NEW.created_at
        FROM ai_context_logs a
        WHERE a.organization_id = NEW.organization_id AND a.id = NEW.entity_id;
    END IF;
    -- (SELECT INTO with no row sets NULLs; created_at may not be NULL.)
    NEW.created_at := coalesce(NEW.created_at, now());
    RETURN NEW;
END;
$$;
CREATE TRIGGER item_texts_attributes BEFORE INSERT OR UPDATE ON item_texts
    FOR EACH ROW EXECUTE FUNCTION item_texts_attributes();

-- Attributes that change without the text: the author, platform or date of
-- a post, the user, source, session or time of an entry.
CREATE FUNCTION item_texts_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE item_texts SET updated_at = updated_at
    WHERE organization_id = NEW.organization_id AND entity_type = TG_ARGV[0] AND entity_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER posts_core_search_attributes
    AFTER UPDATE OF user_id, platform, created_at ON posts_core
    FOR EACH ROW EXECUTE FUNCTION item_texts_touch('post');
CREATE TRIGGER ai_context_logs_search_attributes
    AFTER UPDATE OF user_id, source_type, session_id, occurred_at ON ai_context_logs
    FOR EACH ROW EXECUTE FUNCTION item_texts_touch('ai_context');

CREATE INDEX item_texts_document_idx ON item_texts USING gin (organization_id, document);
CREATE INDEX item_texts_hashtags_idx ON item_texts USING gin (organization_id, hashtags)
    WHERE hashtags IS NOT NULL;
CREATE INDEX item_texts_created_idx ON item_texts (organization_id, created_at);
CREATE INDEX item_texts_user_idx ON item_texts (organization_id, user_id, created_at)
    WHERE user_id IS NOT NULL;
CREATE INDEX item_texts_session_idx ON item_texts (organization_id, session_id, created_at)
    WHERE session_id IS NOT NULL;
