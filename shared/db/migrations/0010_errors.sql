-- Error events (`error.v1`, shared/errors_contract.py): exceptions applications report
-- through ingest's `/v1/errors` and `/v1/logs`, stored by the writer, grouped by
-- fingerprint in the api (`/{tenant}/errors/...`).
--
-- Not partitioned, unlike events: an application's errors are orders of magnitude fewer
-- than email hits, the api reads them per tenant and fingerprint or time range (the
-- indexes below), and a plain table needs no partition upkeep in the writer's path.
-- The key is (id, occurred_at), as for events: both are fixed at ingest, so a redelivered
-- event conflicts with its first copy (`ON CONFLICT DO NOTHING`: exactly once), and the
-- table can be partitioned by occurred_at later without changing the key.
CREATE TABLE errors (
    id           uuid NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    tenant_id    text NOT NULL,
    fingerprint  text NOT NULL,
    type         text NOT NULL DEFAULT '',
    message      text NOT NULL DEFAULT '',
    stack        text NOT NULL DEFAULT '',
    labels       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, occurred_at)
);

-- One fingerprint's count, first/last seen and latest sample.
CREATE INDEX errors_tenant_fingerprint_time ON errors (tenant_id, fingerprint, occurred_at);
-- A tenant's errors over a time range (the stats).
CREATE INDEX errors_tenant_time ON errors (tenant_id, occurred_at);
