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
-- with its positions (phrases are checked on them), plus the tag's own
-- lexeme ('<tag>:'), which every item of the organization carries. A
-- document whose tagged form would not fit a tsvector (a word near the
-- 2,047-byte limit, or about a megabyte of words) carries '<tag>:' and
-- '<tag>' only: every query asks for '<tag>' too, so such items are always
-- candidates, and their own document decides.
CREATE FUNCTION search_tenant_document(org uuid, doc tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN d.longest + 13 < 2047 AND d.bytes + 13 * d.n < 1048576
        THEN regexp_replace(doc::text, '''((?:[^'']|'''')*)''', '''' || d.tag || ':\1''', 'g')::tsvector
             || quote_literal(d.tag || ':')::tsvector
        ELSE quote_literal(d.tag || ':')::tsvector || quote_literal(d.tag)::tsvector
    END
    FROM (SELECT search_tenant_tag(org) AS tag, count(*) AS n,
                 coalesce(sum(octet_length(u.lexeme)), 0) AS bytes,
                 coalesce(max(octet_length(u.lexeme)), 0) AS longest
          FROM unnest(doc) AS u) AS d
$$;

-- What a person typed (search_query) for that index: each lexeme behind the
-- tag, or '<tag>' (the documents too large to tag). A query that requires
-- no word ("-sugar") is asked within '<tag>:' (else GIN would read every
-- organization's items). A query without words stays empty: nothing.
CREATE FUNCTION search_tenant_query(org uuid, q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN numnode(s.q) = 0 THEN s.q
        ELSE (SELECT CASE WHEN querytree(t.q) = 'T'
                          THEN quote_literal(s.tag || ':')::tsquery && t.q
                          ELSE t.q || quote_literal(s.tag)::tsquery END
              FROM (SELECT regexp_replace(s.q::text, '''((?:[^'']|'''')*)''',
                                          '''' || s.tag || ':\1''', 'g')::tsquery AS q) AS t)
    END
    FROM (SELECT search_query(q) AS q, search_tenant_tag(org) AS tag) AS s
$$;

CREATE INDEX item_texts_tenant_document_idx ON item_texts
    USING gin (search_tenant_document(organization_id, document)) WITH (fastupdate = off);
DROP INDEX item_texts_document_idx;
