-- The alerting engine's sample windows, so a restart does not empty them (a `for: 5m`
-- that was pending fires on time, a `rate` has its earlier samples). An append-only log
-- of the samples the rules watch, written by the evaluator in batches (COPY) on each
-- tick and at shutdown, read back at start, pruned to the longest rule window.
-- UNLOGGED: no WAL per sample (they are a cache of what the rules read; a Postgres crash
-- empties the table, which costs the windows what a restart without it would).
-- `labels` is the canonical JSON of the sorted label pairs (the series' identity).
CREATE UNLOGGED TABLE alert_samples (
    tenant_id text NOT NULL,
    metric    text NOT NULL,
    labels    text NOT NULL,
    kind      text NOT NULL,
    ts        double precision NOT NULL,   -- epoch seconds
    value     double precision NOT NULL
);
CREATE INDEX alert_samples_ts ON alert_samples (ts);
