-- The text of every searchable item, in one place per organization, and
-- the vectorizer's queue (pgai's Vectorizer is the model: the queue is
-- filled in the transaction that writes the text; workers claim from it).
--
-- What is embedded, as a passage:
--   post        caption, content and hashtags ('#tag #tag'), joined by blank lines
--   ai_context  context_summary and ai_response, joined by a blank line
--   any type    the text given to IndexTexts

CREATE TABLE item_texts (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    entity_type     text NOT NULL CHECK (entity_type <> ''),
    entity_id       uuid NOT NULL,
    body            text NOT NULL CHECK (body <> ''),
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Raised whenever the body changes: a vector records the version it was
    -- made from, and one of an older version never replaces a newer one.
    version         bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (organization_id, entity_type, entity_id)
);

CREATE TABLE embedding_queue (
    organization_id uuid NOT NULL,
    entity_type     text NOT NULL,
    entity_id       uuid NOT NULL,
    version         bigint NOT NULL,            -- the text version to embed
    attempts        integer NOT NULL DEFAULT 0, -- failed attempts of that version
    not_before      timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,                -- a worker's lease
    claimed_by      text,
    last_error      text,
    failed_at       timestamptz,                -- set aside: only an operator requeues it
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, entity_type, entity_id),
    FOREIGN KEY (organization_id, entity_type, entity_id)
        REFERENCES item_texts (organization_id, entity_type, entity_id) ON DELETE CASCADE
);
CREATE INDEX embedding_queue_ready_idx ON embedding_queue (not_before) WHERE failed_at IS NULL;

-- The text version a vector was made from (NULL: a client's own vector).
ALTER TABLE embeddings ADD COLUMN text_version bigint;

-- A changed body gets a new version and goes (back) into the queue, in the
-- writing transaction; a failed or claimed entry starts over.
CREATE FUNCTION item_texts_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER item_texts_version BEFORE UPDATE ON item_texts
    FOR EACH ROW EXECUTE FUNCTION item_texts_version();

CREATE FUNCTION item_texts_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NULL;
    END IF;
    INSERT INTO embedding_queue (organization_id, entity_type, entity_id, version)
    VALUES (NEW.organization_id, NEW.entity_type, NEW.entity_id, NEW.version)
    ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE
    SET version = EXCLUDED.version, attempts = 0, not_before = now(), claimed_until = NULL,
        claimed_by = NULL, last_error = NULL, failed_at = NULL, enqueued_at = now();
    RETURN NULL;
END;
$$;
CREATE TRIGGER item_texts_enqueue AFTER INSERT OR UPDATE OF body ON item_texts
    FOR EACH ROW EXECUTE FUNCTION item_texts_enqueue();

-- The searchable text of a post ('' when it has none).
CREATE FUNCTION post_text(caption text, content text, hashtags text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT concat_ws(E'\n\n', nullif(btrim(caption), ''), nullif(btrim(content), ''),
                     nullif(array_to_string(ARRAY(SELECT '#' || h FROM unnest(hashtags) h
                                                  WHERE btrim(h) <> ''), ' '), ''))
$$;

-- The application writes posts_content directly (plain SQL, Supabase): its
-- text follows into item_texts in the same transaction.
CREATE FUNCTION posts_content_text() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    body text;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF TG_OP = 'DELETE' OR (OLD.organization_id, OLD.post_id) <> (NEW.organization_id, NEW.post_id) THEN
            DELETE FROM item_texts
            WHERE organization_id = OLD.organization_id AND entity_type = 'post' AND entity_id = OLD.post_id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN NULL;
        END IF;
    END IF;
    body := post_text(NEW.caption, NEW.content, NEW.hashtags);
    IF body = '' THEN
        DELETE FROM item_texts
        WHERE organization_id = NEW.organization_id AND entity_type = 'post' AND entity_id = NEW.post_id;
        RETURN NULL;
    END IF;
    INSERT INTO item_texts (organization_id, entity_type, entity_id, body, created_at)
    SELECT NEW.organization_id, 'post', NEW.post_id, body,
           coalesce((SELECT p.created_at FROM posts_core p
                     WHERE p.organization_id = NEW.organization_id AND p.id = NEW.post_id), now())
    ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE SET body = EXCLUDED.body
    WHERE item_texts.body IS DISTINCT FROM EXCLUDED.body;
    RETURN NULL;
END;
$$;
CREATE TRIGGER posts_content_text
    AFTER INSERT OR DELETE OR UPDATE OF caption, content, hashtags, organization_id, post_id ON posts_content
    FOR EACH ROW EXECUTE FUNCTION posts_content_text();

-- AI context entries: their words, whoever writes them. (An entry logged
-- with its own vector is embedded by the text model too, so that text
-- queries reach it; its own vector stays under its own model.)
CREATE FUNCTION ai_context_text(summary text, response text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT concat_ws(E'\n\n', nullif(btrim(summary), ''), nullif(btrim(response), ''))
$$;

CREATE FUNCTION ai_context_logs_text() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    body text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM item_texts
        WHERE organization_id = OLD.organization_id AND entity_type = 'ai_context' AND entity_id = OLD.id;
        RETURN NULL;
    END IF;
    body := ai_context_text(NEW.context_summary, NEW.ai_response);
    IF body = '' THEN
        DELETE FROM item_texts
        WHERE organization_id = NEW.organization_id AND entity_type = 'ai_context' AND entity_id = NEW.id;
        RETURN NULL;
    END IF;
    INSERT INTO item_texts (organization_id, entity_type, entity_id, body, created_at)
    VALUES (NEW.organization_id, 'ai_context', NEW.id, body, NEW.occurred_at)
    ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE SET body = EXCLUDED.body
    WHERE item_texts.body IS DISTINCT FROM EXCLUDED.body;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ai_context_logs_text
    AFTER INSERT OR DELETE OR UPDATE OF context_summary, ai_response ON ai_context_logs
    FOR EACH ROW EXECUTE FUNCTION ai_context_logs_text();

-- Backfill: the texts already there (a migrated legacy database's posts and
-- chat history), queued by the trigger above. The service queues again, at
-- start, whatever has no vector of its text model (a new model's name).
INSERT INTO item_texts (organization_id, entity_type, entity_id, body, created_at)
SELECT c.organization_id, 'post', c.post_id, post_text(c.caption, c.content, c.hashtags), p.created_at
FROM posts_content c
JOIN posts_core p ON p.organization_id = c.organization_id AND p.id = c.post_id
WHERE post_text(c.caption, c.content, c.hashtags) <> '';

INSERT INTO item_texts (organization_id, entity_type, entity_id, body, created_at)
SELECT organization_id, 'ai_context', id, ai_context_text(context_summary, ai_response), occurred_at
FROM ai_context_logs
WHERE ai_context_text(context_summary, ai_response) <> '';
