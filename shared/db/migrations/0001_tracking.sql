-- Tenants, the emails they track, and every open and click (hit) event.

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE emails (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    subject     text,
    recipient   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- Hits. No foreign keys: ingest has no database and records hits for any well-formed
-- tenant/email id; the api joins on what it knows. The key includes occurred_at because
-- a partitioned table's unique keys must contain the partition key; id + occurred_at are
-- both fixed at ingest, so a redelivered event still conflicts with its first copy.
CREATE TABLE events (
    id              uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    tenant_id       text NOT NULL,
    email_id        text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('open', 'click')),
    ip              inet,
    user_agent      text,
    url             text,
    props           jsonb,
    -- Machine-open verdict (human / machine + reason), filled by the classifier.
    verdict         text CHECK (verdict IN ('human', 'machine')),
    verdict_reason  text,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_tenant_time ON events (tenant_id, occurred_at);
CREATE INDEX events_tenant_email_time ON events (tenant_id, email_id, occurred_at);

-- Catches anything outside the monthly partitions so an insert never fails on a date.
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Monthly partition for the month containing `at`, created if missing. Returns NULL
-- (rows then stay in events_default) when the default partition already holds rows of
-- that month, which would make the CREATE fail; it must never block an insert.
CREATE FUNCTION belfry_ensure_events_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    start_month timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    part text := 'events_' || to_char(start_month AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(part));
    IF to_regclass(part) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            part, start_month, start_month + interval '1 month');
    END IF;
    RETURN part;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'events_default holds rows of %; partition not created', part;
    RETURN NULL;
END $$;

-- The current and next month exist from the start.
SELECT belfry_ensure_events_partition(now());
SELECT belfry_ensure_events_partition(now() + interval '1 month');
