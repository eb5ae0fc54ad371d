-- Alert notification delivery (services/alerting/notify): one row per notification
-- (one alert group x one channel; the id is the Standard Webhooks `webhook-id`, stable
-- across retries and replays) and one row per delivery attempt. No foreign keys: a
-- notification outlives the channel or rule it was sent for, and the log stays readable.

CREATE TABLE notification_deliveries (
    notification_id uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    channel         text NOT NULL,
    channel_type    text NOT NULL,
    rule_id         text NOT NULL,
    alert_status    text NOT NULL DEFAULT 'firing',
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'refused')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    -- The notification envelope as received: what a replay republishes.
    payload         jsonb NOT NULL
);

CREATE INDEX notification_deliveries_tenant_created
    ON notification_deliveries (tenant_id, created_at DESC);
CREATE INDEX notification_deliveries_tenant_status
    ON notification_deliveries (tenant_id, status, created_at DESC);

-- A log, not a state: a message redelivered after a crash may record its attempt twice,
-- which is what really happened. `outcome` is delivered | retried | failed | refused.
CREATE TABLE notification_attempts (
    id              bigserial PRIMARY KEY,
    notification_id uuid NOT NULL,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL,
    status_code     integer,
    latency_ms      double precision NOT NULL DEFAULT 0,
    error           text,
    outcome         text NOT NULL CHECK (outcome IN ('delivered', 'retried', 'failed', 'refused'))
);

CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id, id);
CREATE INDEX notification_attempts_at ON notification_attempts (at);
