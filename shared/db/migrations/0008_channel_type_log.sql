-- The `log` channel type (services/alerting/notify/channels/service_log.py): a notification as one
-- JSON line in the alerting service's log, `make run`'s default for `belfry-ops`.
ALTER TABLE alert_channels DROP CONSTRAINT alert_channels_type_check;
ALTER TABLE alert_channels ADD CONSTRAINT alert_channels_type_check
    CHECK (type IN ('webhook', 'slack', 'email', 'alertmanager', 'pagerduty', 'log'));
