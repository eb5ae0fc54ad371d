"""The stats of one tenant over one scope (time range, optionally one email), in SQL.

Definitions (README, "Stats"):
- an event is *human* unless its verdict is `machine`; events stored before the
  classifier existed have no verdict and count as human;
- opens / clicks: every open / click event in [from, to); unique: distinct email ids;
- registered: emails registered in [from, to) (for one email: 1 if it is registered);
- click-through rate: of the registered emails, the share with a human click in range;
  click-to-open rate: emails with a human click / emails with a human open, both among
  the registered ones (null when the denominator is 0);
- first-open delay: per registered email, its registration to its first human open in
  range; median and mean over the emails that have one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg

from services.api.timerange import Scope, bucket_starts

HUMAN = "verdict IS DISTINCT FROM 'machine'"
# $1 tenant, $2 from, $3 to, $4 email id (NULL: every email). Open bounds are NULL.
EVENTS_SCOPE = """
    tenant_id = $1
    AND ($2::timestamptz IS NULL OR occurred_at >= $2)
    AND ($3::timestamptz IS NULL OR occurred_at < $3)
    AND ($4::text IS NULL OR email_id = $4)
"""
EMAILS_SCOPE = """
    tenant_id = $1
    AND ($4::text IS NOT NULL OR (
        ($2::timestamptz IS NULL OR created_at >= $2)
        AND ($3::timestamptz IS NULL OR created_at < $3)))
    AND ($4::text IS NULL OR id = $4)
"""

# One pass, grouped per email and kind, instead of four count(DISTINCT ...) sorts: a
# year of a busy tenant (1M events) takes a third of the time.
TOTALS = f"""
WITH per_email AS (
    SELECT email_id, kind, count(*) AS n, count(*) FILTER (WHERE {HUMAN}) AS human
    FROM events WHERE {EVENTS_SCOPE}
    GROUP BY email_id, kind
)
SELECT
    coalesce(sum(n) FILTER (WHERE kind = 'open'), 0)::bigint AS opens,
    count(*) FILTER (WHERE kind = 'open') AS unique_opens,
    coalesce(sum(human) FILTER (WHERE kind = 'open'), 0)::bigint AS human_opens,
    count(*) FILTER (WHERE kind = 'open' AND human > 0) AS unique_human_opens,
    coalesce(sum(n) FILTER (WHERE kind = 'click'), 0)::bigint AS clicks,
    count(*) FILTER (WHERE kind = 'click') AS unique_clicks,
    coalesce(sum(human) FILTER (WHERE kind = 'click'), 0)::bigint AS human_clicks,
    count(*) FILTER (WHERE kind = 'click' AND human > 0) AS unique_human_clicks
FROM per_email
"""

MACHINE_REASONS = f"""
SELECT kind, coalesce(verdict_reason, 'unknown') AS reason, count(*) AS n
FROM events WHERE verdict = 'machine' AND {EVENTS_SCOPE}
GROUP BY 1, 2
"""

# Human activity is aggregated per email first and then joined to the registered emails
# (a hash join of two small sets), not probed per email across every monthly partition.
COHORT = f"""
WITH cohort AS (SELECT id, created_at FROM emails WHERE {EMAILS_SCOPE}),
per_email AS (
    SELECT email_id,
           min(occurred_at) FILTER (WHERE kind = 'open') AS first_open,
           bool_or(kind = 'click') AS clicked
    FROM events
    WHERE {HUMAN} AND {EVENTS_SCOPE}
    GROUP BY email_id
),
activity AS (
    SELECT c.id, c.created_at, p.first_open, p.clicked
    FROM cohort c JOIN per_email p ON p.email_id = c.id
),
delays AS (
    SELECT extract(epoch FROM first_open - created_at)::float8 AS d
    FROM activity WHERE first_open IS NOT NULL AND first_open >= created_at
)
SELECT
    (SELECT count(*) FROM cohort) AS registered,
    (SELECT count(*) FROM activity WHERE first_open IS NOT NULL) AS opened,
    (SELECT count(*) FROM activity WHERE clicked) AS clicked,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM delays) AS median_delay,
    (SELECT avg(d) FROM delays) AS mean_delay,
    (SELECT count(*) FROM delays) AS delays
"""

TOP_LINKS = f"""
SELECT url,
       count(*) AS clicks,
       count(*) FILTER (WHERE {HUMAN}) AS human_clicks,
       count(DISTINCT email_id) AS unique_emails
FROM events WHERE kind = 'click' AND url IS NOT NULL AND {EVENTS_SCOPE}
GROUP BY url
ORDER BY human_clicks DESC, clicks DESC, url
LIMIT $5
"""

SERIES = f"""
SELECT date_trunc($5, occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
       count(*) FILTER (WHERE kind = 'open' AND {HUMAN}) AS human_opens,
       count(*) FILTER (WHERE kind = 'open' AND verdict = 'machine') AS machine_opens,
       count(*) FILTER (WHERE kind = 'click' AND {HUMAN}) AS human_clicks,
       count(*) FILTER (WHERE kind = 'click' AND verdict = 'machine') AS machine_clicks
FROM events WHERE {EVENTS_SCOPE}
GROUP BY 1
"""


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


async def tenant_stats(
    conn: asyncpg.Connection, tenant: str, scope: Scope, top_links: int = 10
) -> dict[str, Any]:
    """Every figure of the stats answer (see the module docstring for definitions)."""
    args = (tenant, scope.start, scope.end, scope.email_id)
    totals = await conn.fetchrow(TOTALS, *args)
    reasons: dict[str, dict[str, int]] = {"open": {}, "click": {}}
    for row in await conn.fetch(MACHINE_REASONS, *args):
        reasons[row["kind"]][row["reason"]] = row["n"]
    cohort = await conn.fetchrow(COHORT, *args)
    links = await conn.fetch(TOP_LINKS, *args, top_links)
    series_rows = await conn.fetch(SERIES, *args, scope.bucket)

    def kind(name: str) -> dict[str, Any]:
        total = totals[f"{name}s"]
        return {
            "total": total,
            "unique": totals[f"unique_{name}s"],
            "human": totals[f"human_{name}s"],
            "unique_human": totals[f"unique_human_{name}s"],
            "machine": total - totals[f"human_{name}s"],
            "machine_by_reason": dict(sorted(reasons[name].items())),
        }

    by_bucket: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in series_rows:
        by_bucket[row["bucket"]] = {k: v for k, v in row.items() if k != "bucket"}
    if scope.start is not None and scope.end is not None:
        starts = bucket_starts(scope.start, scope.end, scope.bucket)
    else:
        starts = sorted(by_bucket)
    zero = {"human_opens": 0, "machine_opens": 0, "human_clicks": 0, "machine_clicks": 0}
    series = [{"t": _iso(at), **zero, **by_bucket.get(at, {})} for at in starts]
    registered = cohort["registered"]
    return {
        "tenant": tenant,
        "email_id": scope.email_id,
        "from": _iso(scope.start),
        "to": _iso(scope.end),
        "bucket": scope.bucket,
        "registered_emails": registered,
        "opens": kind("open"),
        "clicks": kind("click"),
        "rates": {
            "click_through": _rate(cohort["clicked"], registered),
            "click_to_open": _rate(cohort["clicked"], cohort["opened"]),
        },
        "first_open_delay_seconds": {
            "median": cohort["median_delay"],
            "mean": cohort["mean_delay"],
            "emails": cohort["delays"],
        },
        "top_links": [dict(row) for row in links],
        "series": series,
    }
