-- Migration 11: the search indexes of item_texts take new entries as they
-- are written.
--
-- Every TEXT or HYBRID search reads item_texts_document_idx (and a hashtag
-- filter item_texts_hashtags_idx). With GIN's fastupdate, PostgreSQL's
-- default, new entries wait in a pending list of up to
-- gin_pending_list_limit (4 MB) that every search scans in full until VACUUM
-- merges it: a query for a rare term paid for the whole list (BENCHMARKS.md,
-- search). Without it a write updates the index at once, a little slower,
-- and a search reads only the index.

ALTER INDEX item_texts_document_idx SET (fastupdate = off);
ALTER INDEX item_texts_hashtags_idx SET (fastupdate = off);

-- What waits in the lists now is merged once.
SELECT gin_clean_pending_list('item_texts_document_idx'::regclass);
SELECT gin_clean_pending_list('item_texts_hashtags_idx'::regclass);
