-- Migration 12: AI context for agents: sessions in order, the entry an entry
-- follows from, and feedback on entries.

-- A session id is the caller's label for one conversation or agent run.
ALTER TABLE ai_context_logs
    ADD CONSTRAINT ai_context_logs_session_id_length CHECK (octet_length(session_id) <= 256);

-- The entry this one follows from, in the same organization (the key holds
-- the organization, so no entry can name another organization's). Deleting
-- the parent keeps the child, without its parent.
ALTER TABLE ai_context_logs
    ADD COLUMN parent_id uuid,
    ADD CONSTRAINT ai_context_logs_parent_fkey FOREIGN KEY (organization_id, parent_id)
        REFERENCES ai_context_logs (organization_id, id) ON DELETE SET NULL (parent_id);
CREATE INDEX ai_context_logs_parent_idx ON ai_context_logs (organization_id, parent_id)
    WHERE parent_id IS NOT NULL;

-- A session pages oldest first: (occurred_at, id) from a cursor.
CREATE INDEX ai_context_logs_session_idx ON ai_context_logs (organization_id, session_id, occurred_at, id)
    WHERE session_id IS NOT NULL;

-- Legacy chat messages (migration 03) had a session of their own: from the
-- kept backup while it exists, else from the copy migration 03 kept in
-- each entry's metadata. (The trigger of migration 10 carries it to the
-- entry's text, for search filters.)
DO $$
BEGIN
    IF to_regclass('public.chat_messages_backup') IS NOT NULL THEN
        UPDATE ai_context_logs a SET session_id = b.session_id::text
        FROM chat_messages_backup b
        JOIN user_profiles u ON u.id = b.user_id
        WHERE a.organization_id = u.organization_id AND a.id = b.id AND a.session_id IS NULL;
    END IF;
END;
$$;
UPDATE ai_context_logs SET session_id = metadata->>'session_id'
WHERE session_id IS NULL AND metadata->>'migrated_from' = 'chat_messages'
  AND metadata->>'session_id' IS NOT NULL;

-- Feedback: one row per (organization, feedback_id), the caller's id, so a
-- retry stores nothing new. The value is finite (NaN compares above
-- 'Infinity' in PostgreSQL, so it fails the check too).
CREATE TABLE ai_context_feedback (
    organization_id uuid NOT NULL,
    feedback_id     uuid NOT NULL,
    entry_id        uuid NOT NULL,
    name            text NOT NULL CHECK (name <> ''),
    value           double precision NOT NULL
                        CHECK (value > '-Infinity'::float8 AND value < 'Infinity'::float8),
    comment         text,
    user_id         uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, feedback_id),
    FOREIGN KEY (organization_id, entry_id)
        REFERENCES ai_context_logs (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX ai_context_feedback_entry_idx ON ai_context_feedback (organization_id, entry_id, created_at);
