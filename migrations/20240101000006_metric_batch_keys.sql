-- Idempotent RecordMetrics: a batch sent with an idempotency_key is recorded
-- once per organization; a retry with the same key records nothing again.
-- One row per keyed batch, written in the same statement as its points, so
-- the key exists exactly when the points do. Distributed by organization_id
-- like every tenant table.
CREATE TABLE metric_batch_keys (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    points          integer NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, idempotency_key)
);
