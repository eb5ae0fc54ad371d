-- Alerting: rules, alerts (one per rule x label set), their transition history, silences,
-- notification channels, and the outbox that turns transitions into notification
-- messages. A transition and its outbox items are written in the same transaction as the
-- state change, so a crash never loses a `resolved` and a restart never re-sends a `firing`.

CREATE TABLE alert_rules (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    spec        jsonb NOT NULL,            -- the validated rule document (services.alerting.rules)
    enabled     boolean NOT NULL DEFAULT true,
    source      text NOT NULL DEFAULT 'api',  -- 'api' or 'file'
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE alerts (
    fingerprint     text PRIMARY KEY,      -- stable hash of rule id + series labels
    rule_id         uuid NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    labels          jsonb NOT NULL,        -- the series labels (rule labels are added on output)
    state           text NOT NULL CHECK (state IN
                        ('inactive', 'pending', 'firing', 'acknowledged', 'silenced', 'resolved')),
    severity        text NOT NULL,
    value           double precision,
    pending_since   timestamptz,
    fired_at        timestamptz,           -- start of the current/last firing episode
    resolved_at     timestamptz,
    last_breach_at  timestamptz,
    last_notified_at timestamptz,
    announced       boolean NOT NULL DEFAULT false,  -- a `firing` went out and no `resolved` yet
    no_data         boolean NOT NULL DEFAULT false,
    acknowledged_by text,
    acknowledged_at timestamptz,
    silence_id      uuid,
    annotations     jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX alerts_tenant_state ON alerts (tenant_id, state);
CREATE INDEX alerts_rule ON alerts (rule_id);

CREATE TABLE alert_transitions (
    id          bigserial PRIMARY KEY,
    fingerprint text NOT NULL REFERENCES alerts (fingerprint) ON DELETE CASCADE,
    tenant_id   text NOT NULL,
    rule_id     uuid NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL,
    value       double precision,
    reason      text NOT NULL DEFAULT '',
    fired_at    timestamptz,               -- for to_state = 'resolved': when the episode began
    actor       text                       -- who, for ack/resolve through the API
);

CREATE INDEX alert_transitions_alert ON alert_transitions (fingerprint, id);
CREATE INDEX alert_transitions_tenant_at ON alert_transitions (tenant_id, at);

CREATE TABLE alert_silences (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    matchers    jsonb NOT NULL,            -- [{label, op, value}]
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    author      text NOT NULL,
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE INDEX alert_silences_tenant ON alert_silences (tenant_id, ends_at);

CREATE TABLE alert_channels (
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    type        text NOT NULL CHECK (type IN ('webhook', 'slack', 'email', 'alertmanager')),
    config      jsonb NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- One row per alert that changed to a notifiable status (firing, resolved, a repeat).
-- Rows of one rule and status wait up to group_wait, then become one notification per
-- channel (alert_outbox) in one transaction.
CREATE TABLE alert_outbox_items (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL,
    rule_id     uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('firing', 'resolved')),
    fingerprint text NOT NULL,
    alert       jsonb NOT NULL,            -- the alert as the notification shows it
    rule        jsonb NOT NULL,            -- {name, channels}: kept even if the rule goes away
    traceparent text,
    created_at  timestamptz NOT NULL,
    grouped_at  timestamptz
);

CREATE INDEX alert_outbox_items_pending ON alert_outbox_items (tenant_id, rule_id, status)
    WHERE grouped_at IS NULL;

-- One row per notification message (group x channel); the relay publishes pending rows
-- and marks them sent once the broker confirmed.
CREATE TABLE alert_outbox (
    notification_id uuid PRIMARY KEY,      -- stable forever: the webhook-id
    tenant_id       text NOT NULL,
    rule_id         uuid NOT NULL,
    channel         text NOT NULL,
    channel_type    text NOT NULL,
    status          text NOT NULL,         -- firing | resolved (of the notification)
    envelope        jsonb NOT NULL,        -- the alert.notification.v1 envelope as published
    traceparent     text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text
);

CREATE INDEX alert_outbox_pending ON alert_outbox (created_at) WHERE sent_at IS NULL;
CREATE INDEX alert_outbox_tenant_created ON alert_outbox (tenant_id, created_at);
