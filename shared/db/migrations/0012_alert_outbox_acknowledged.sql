-- Acknowledging an alert in Belfry queues an `acknowledged` outbox item (published as
-- `alert.notification.v2`, only to channel types that have an acknowledge action, e.g.
-- PagerDuty's `event_action: acknowledge`).
ALTER TABLE alert_outbox_items DROP CONSTRAINT alert_outbox_items_status_check;
ALTER TABLE alert_outbox_items ADD CONSTRAINT alert_outbox_items_status_check
    CHECK (status IN ('firing', 'resolved', 'acknowledged'));
