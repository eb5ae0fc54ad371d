-- Notification delivery (services/alerting/notify):
-- * PagerDuty (Events API v2) is a channel type.
-- * A `resolved` notification is `skipped` on a channel that never got the `firing` of
--   any of its alerts (delivery there failed or was refused): a channel is never told
--   that something it never heard of is over.
ALTER TABLE alert_channels DROP CONSTRAINT alert_channels_type_check;
ALTER TABLE alert_channels ADD CONSTRAINT alert_channels_type_check
    CHECK (type IN ('webhook', 'slack', 'email', 'alertmanager', 'pagerduty'));

ALTER TABLE notification_deliveries DROP CONSTRAINT notification_deliveries_status_check;
ALTER TABLE notification_deliveries ADD CONSTRAINT notification_deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'refused', 'skipped'));

-- Which alerts a delivery carried, and in which firing episode (starts_at), so the
-- `resolved` of an alert finds whether its `firing` reached the same channel.
CREATE INDEX notification_deliveries_channel_alerts
    ON notification_deliveries (tenant_id, channel, alert_status, status);
