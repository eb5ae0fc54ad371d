-- A rule's `cooldown` holds a notification while the previous one of the same status for
-- the alert is younger than it: the engine needs when each status last went out.
ALTER TABLE alerts
    ADD COLUMN last_firing_at   timestamptz,   -- last `firing` notification (incl. repeats)
    ADD COLUMN last_resolved_at timestamptz;   -- last `resolved` notification
