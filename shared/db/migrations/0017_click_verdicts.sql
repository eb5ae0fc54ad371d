-- The writer's two click rules that read other rows (services/writer/verdicts.py), as one
-- function whose reads are all bounded lookups, whatever the planner's statistics say.
-- Before, under a flood of hits to one email (an attacker, a broken client), the burst
-- rule compared each new click with every click of that email in the same seconds, and
-- with stale statistics (a new month's partition, before autovacuum's first ANALYZE) both
-- rules could scan every click of the partition once per click of the batch: the writer's
-- cost per hit grew with the flood, for every tenant.

-- Clicks of one email in time order; opens (most rows) are never read this way.
CREATE INDEX events_click_time ON events (tenant_id, email_id, occurred_at) WHERE kind = 'click';

-- The batch's clicks, as the writer inserted them (each column an array), and the clicks
-- their arrival relabels, with the reason: `click_too_soon` (within too_soon of the email's
-- registration), else `all_links_at_once` (another link of the email clicked within
-- `burst` of it, looking at the `scan` clicks nearest on each side). Only clicks still
-- judged human are returned. The SET clauses leave the planner one kind of plan: index
-- lookups in nested loops and LIMITs in index order. A sort or a scan would read the
-- whole flood, and with a partition's statistics not yet gathered the planner chose them.
CREATE FUNCTION belfry_click_verdicts(
    ids uuid[], times timestamptz[], tenants text[], emails text[], urls text[],
    verdicts text[], too_soon interval, burst interval, scan integer
) RETURNS TABLE (event_id uuid, event_at timestamptz, reason text)
LANGUAGE sql STABLE ROWS 1
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off
AS $$
WITH batch AS MATERIALIZED (
    SELECT * FROM unnest(ids, times, tenants, emails, urls, verdicts)
        AS b(id, occurred_at, tenant_id, email_id, url, verdict)
), soon AS MATERIALIZED (
    SELECT b.id, b.occurred_at
    FROM batch b JOIN emails m ON m.tenant_id = b.tenant_id AND m.id = b.email_id
    WHERE b.verdict = 'human' AND b.occurred_at < m.created_at + too_soon
), pairs AS MATERIALIZED (
    -- A burst's pair always holds its later click, so pairing each new click with its
    -- neighbours finds every burst its arrival makes (earlier batches' clicks included).
    SELECT b.id AS a_id, b.occurred_at AS a_at, b.verdict AS a_verdict,
           o.id AS b_id, o.occurred_at AS b_at, o.verdict AS b_verdict
    FROM batch b CROSS JOIN LATERAL (
        (SELECT o.id, o.occurred_at, o.url, o.verdict FROM events o
         WHERE o.tenant_id = b.tenant_id AND o.email_id = b.email_id AND o.kind = 'click'
           AND o.occurred_at BETWEEN b.occurred_at - burst AND b.occurred_at
           AND o.id <> b.id
         ORDER BY o.occurred_at DESC LIMIT scan)
        UNION ALL
        (SELECT o.id, o.occurred_at, o.url, o.verdict FROM events o
         WHERE o.tenant_id = b.tenant_id AND o.email_id = b.email_id AND o.kind = 'click'
           AND o.occurred_at > b.occurred_at AND o.occurred_at <= b.occurred_at + burst
         ORDER BY o.occurred_at LIMIT scan)
    ) o
    WHERE o.url <> b.url
), burst AS (
    SELECT p.a_id AS id, p.a_at AS occurred_at FROM pairs p WHERE p.a_verdict = 'human'
    UNION
    SELECT p.b_id, p.b_at FROM pairs p WHERE p.b_verdict = 'human'
)
SELECT s.id, s.occurred_at, 'click_too_soon' FROM soon s
UNION ALL
SELECT x.id, x.occurred_at, 'all_links_at_once' FROM burst x
WHERE NOT EXISTS (SELECT 1 FROM soon s WHERE s.id = x.id AND s.occurred_at = x.occurred_at)
$$;
