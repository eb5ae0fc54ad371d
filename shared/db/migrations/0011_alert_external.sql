-- Alerts received from outside (Prometheus, Grafana) through the Alertmanager v2 API
-- (services/alerting/external.py): when each one expires unless it is sent again
-- (`endsAt`, or the receive time + the resolve timeout), and where it came from. The
-- alert itself is an ordinary row of `alerts` (of a per-alertname external rule).
CREATE TABLE alert_external (
    fingerprint   text PRIMARY KEY REFERENCES alerts (fingerprint) ON DELETE CASCADE,
    tenant_id     text NOT NULL,
    ends_at       timestamptz NOT NULL,
    generator_url text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);
