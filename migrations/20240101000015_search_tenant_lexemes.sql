-- Migration 15: full-text posting lists of one organization each.
--
-- Migration 10's index, GIN over (organization_id, document) through
-- btree_gin, keeps one posting list per word across every organization and
-- one per organization across all its items: a search decoded the
-- organization's whole list (every item it has) and each word's list (every
-- organization's items with that word) to intersect them (BENCHMARKS.md,
-- search). Here each lexeme is qualified by its organization's tag
-- ('5f9b232f0a1c:espresso') and the query is rewritten the same way, so a
-- word's list holds its organization's items only.

-- An organization's tag: the last 12 hex digits of its id (random in
-- version 4 and 7 ids alike). Two organizations sharing one only share
-- posting lists: the search checks each row's organization_id.
CREATE FUNCTION search_tenant_tag(org uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT right(org::text, 12)
$$;

-- An item's document as the index keeps it: each lexeme behind the tag,
-- plus the tag's own lexeme ('<tag>:'), which every item of the
-- organization carries. No positions: the index narrows, and each row's
-- own document decides phrases (store::search). A document whose tagged
-- form would not fit a tsvector (a word near the 2,047-byte limit, or about
-- a megabyte of words) carries '<tag>:' and '<tag>' only: every query asks
-- for '<tag>' too, so such items are always candidates. PL/pgSQL, as it
-- runs for each row written: its plan is kept per session, where an SQL
-- function with a query is planned again at each statement.
CREATE FUNCTION search_tenant_document(org uuid, doc tsvector) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    tag text := search_tenant_tag(org);
    prefix int := octet_length(tag) + 1;
    lexemes text[] := tsvector_to_array(doc);
    fits boolean := octet_length(array_to_string(lexemes, '')) + prefix * cardinality(lexemes) < 1048576;
    lexeme text;
BEGIN
    FOREACH lexeme IN ARRAY lexemes LOOP
        EXIT WHEN NOT fits;
        fits := octet_length(lexeme) + prefix <= 2047;
    END LOOP;
    IF NOT fits THEN
        RETURN array_to_tsvector(ARRAY[tag || ':', tag]);
    END IF;
    -- '<tag>:a', '<tag>:b', ..., then '<tag>:' (the empty string appended).
    -- Lexemes hold no control character, so chr(1) can join them.
    RETURN array_to_tsvector(string_to_array(
        tag || ':' || array_to_string(lexemes || ''::text, chr(1) || tag || ':'), chr(1)));
END;
$$;

-- What a person typed (search_query) as the index can answer it: the
-- query's required part (querytree: its negations dropped), each lexeme
-- behind the tag, phrases as plain conjunctions, or '<tag>' (the documents
-- too large to tag): a condition every match meets, which the row's own
-- document then refines. A query that requires no word ("-sugar") reads
-- '<tag>:', every item of the organization. A query without words stays
-- empty: nothing. One expression, so that PostgreSQL inlines it (planned
-- once with the statement, not as a query of its own at each call).
CREATE FUNCTION search_tenant_query(org uuid, q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN numnode(search_query(q)) = 0 THEN search_query(q)
        WHEN querytree(search_query(q)) = 'T' THEN quote_literal(search_tenant_tag(org) || ':')::tsquery
        ELSE regexp_replace(
                 regexp_replace(querytree(search_query(q)), '''((?:[^'']|'''')*)''',
                                '''' || search_tenant_tag(org) || ':\1''', 'g'),
                 ' <(?:-|[0-9]+)> ', ' & ', 'g')::tsquery
             || quote_literal(search_tenant_tag(org))::tsquery
    END
$$;

CREATE INDEX item_texts_tenant_document_idx ON item_texts
    USING gin (search_tenant_document(organization_id, document)) WITH (fastupdate = off);
DROP INDEX item_texts_document_idx;
