-- The writer's rows of a batch as one array of records: `unnest($1::belfry_event_in[])`.
-- An array of 12-field records costs the client a fraction of twelve column arrays
-- (asyncpg checks every element of an array for nesting, one record instead of twelve
-- values per row). `ip` and `props` travel as text and are cast on insert, as before.
CREATE TYPE belfry_event_in AS (
    id             uuid,
    occurred_at    timestamptz,
    received_at    timestamptz,
    tenant_id      text,
    email_id       text,
    kind           text,
    ip             text,
    user_agent     text,
    url            text,
    props          text,
    verdict        text,
    verdict_reason text
);
