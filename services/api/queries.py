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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.api.timerange import BUCKETS, Scope, bucket_starts, floor

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


# The same figures from the rollups (migrations 0013, 0014) for a range holding at least
# one whole UTC day: whole days, then whole hours come from the rollups, only the partial
# hours at either end from `events` (an hour at most on each side; uniques read the
# partial days' activity rows). $1 tenant, $2 from, $3 to.
REASON = f"CASE WHEN {HUMAN} THEN '' ELSE coalesce(verdict_reason, 'unknown') END"

# Per bucket the series' four counts (kind / reason NULL), and per kind and reason ('' =
# human) the totals (bucket NULL): a year of days is 365 + a dozen rows, not 365 x a dozen.
# $4 / $5 and $6 / $7 hours from stats_hour, $8 / $9 days from stats_day (empty for hourly
# buckets), $10 bucket; the partial hours at either end from `events`.
COUNTS_ROLLUP = f"""
WITH c AS (
    SELECT date_trunc($10, at, 'UTC') AS bucket, kind, reason, n FROM (
        SELECT day::timestamp AT TIME ZONE 'UTC' AS at, kind, reason, n FROM stats_day
        WHERE tenant_id = $1 AND day >= $8::date AND day < $9::date
          AND kind IN ('open', 'click')
        UNION ALL
        SELECT hour, kind, reason, n FROM stats_hour
        WHERE tenant_id = $1 AND kind IN ('open', 'click')
          AND ((hour >= $4 AND hour < $5) OR (hour >= $6 AND hour < $7))
        UNION ALL
        SELECT occurred_at, kind, {REASON}, 1 FROM events
        WHERE tenant_id = $1
          AND ((occurred_at >= $2 AND occurred_at < $4) OR (occurred_at >= $7 AND occurred_at < $3))
    ) u
)
SELECT bucket, NULL AS kind, NULL AS reason, NULL::bigint AS n,
       coalesce(sum(n) FILTER (WHERE kind = 'open' AND reason = ''), 0)::bigint AS human_opens,
       coalesce(sum(n) FILTER (WHERE kind = 'open' AND reason <> ''), 0)::bigint AS machine_opens,
       coalesce(sum(n) FILTER (WHERE kind = 'click' AND reason = ''), 0)::bigint AS human_clicks,
       coalesce(sum(n) FILTER (WHERE kind = 'click' AND reason <> ''), 0)::bigint
           AS machine_clicks
FROM c GROUP BY bucket
UNION ALL
SELECT NULL, kind, reason, sum(n)::bigint, NULL, NULL, NULL, NULL
FROM c GROUP BY kind, reason HAVING sum(n) <> 0
"""

# $4 / $5 whole days; $6 keys. Emails active in the whole days: the (email, day) pairs
# whose previous active day is before them. Plus, from the partial days at either end:
# the emails active in [from, first whole day) and not again before the whole days end,
# and those active in [end of whole days, to) and not since `from`.
UNIQUES_ROLLUP = """
WITH mid AS (
    SELECT key, sum(n)::bigint AS n FROM stats_uniq
    WHERE tenant_id = $1 AND key = ANY($6::text[])
      AND day >= ($4 AT TIME ZONE 'UTC')::date AND day < ($5 AT TIME ZONE 'UTC')::date
      AND prev_day < ($4 AT TIME ZONE 'UTC')::date
    GROUP BY key
),
head AS (
    SELECT key, count(*) AS n FROM stats_activity
    WHERE $2 < $4 AND (tenant_id || ' ' || key)
          = ANY(array(SELECT $1 || ' ' || k FROM unnest($6::text[]) k))
      AND day = ($2 AT TIME ZONE 'UTC')::date AND last_at >= $2
      AND (next_day IS NULL OR next_day >= ($5 AT TIME ZONE 'UTC')::date)
    GROUP BY key
),
tail AS (
    SELECT key, count(*) AS n FROM stats_activity
    WHERE $5 < $3 AND (tenant_id || ' ' || key)
          = ANY(array(SELECT $1 || ' ' || k FROM unnest($6::text[]) k))
      AND day = ($3 AT TIME ZONE 'UTC')::date AND first_at < $3
      AND (prev_last_at IS NULL OR prev_last_at < $2)
    GROUP BY key
)
SELECT k AS key, (coalesce(mid.n, 0) + coalesce(head.n, 0) + coalesce(tail.n, 0))::bigint AS n
FROM unnest($6::text[]) k LEFT JOIN mid ON mid.key = k LEFT JOIN head ON head.key = k
     LEFT JOIN tail ON tail.key = k
"""

# $4 / $5 whole days, $6 limit, $7 / $8 whole hours: whole days from stats_link_day, the
# partial days' whole hours from stats_link_hour, the partial hours from `events`.
TOP_LINKS_ROLLUP = f"""
SELECT min(url) AS url, sum(clicks)::bigint AS clicks, sum(human)::bigint AS human_clicks,
       'u' || replace(url_key::text, '-', '') AS key
FROM (
    SELECT url_key, url, clicks, human_clicks AS human FROM stats_link_day
    WHERE tenant_id = $1
      AND day >= ($4 AT TIME ZONE 'UTC')::date AND day < ($5 AT TIME ZONE 'UTC')::date
    UNION ALL
    SELECT url_key, url, clicks, human_clicks FROM stats_link_hour
    WHERE tenant_id = $1 AND ((hour >= $7 AND hour < $4) OR (hour >= $5 AND hour < $8))
    UNION ALL
    SELECT md5(url)::uuid, url, 1, ({HUMAN})::int FROM events
    WHERE kind = 'click' AND url IS NOT NULL AND tenant_id = $1
      AND ((occurred_at >= $2 AND occurred_at < $7) OR (occurred_at >= $8 AND occurred_at < $3))
) l
GROUP BY url_key
HAVING sum(clicks) > 0  -- cells back to zero (erasure, relabels) until retention prunes them
ORDER BY human_clicks DESC, clicks DESC, url
LIMIT $6
"""

# The first-open cohort from the rollups (migration 0014). $4 / $5 the whole hours, $6 / $7
# the whole days inside [from, to) as timestamps, $8 / $9 as (UTC) dates. Registrations of
# whole days come from stats_cohort: per open-delay bucket, how many emails first opened
# before the whole days end, and their delays' sum; so do their first clicks. One by one
# from stats_email, with the old rules: registrations in the partial days, emails with a
# hit before their registration (their first hit in range may not be their first ever,
# which `events` says), and those of whole days first opened / clicked in [end of whole
# days, to).
COHORT_ROLLUP = f"""
WITH agg AS (
    SELECT kind, bucket, sum(n)::bigint AS n, sum(delay) AS delay FROM stats_cohort
    WHERE tenant_id = $1 AND reg_day >= $8 AND reg_day < $9 AND hit_day < $9
    GROUP BY kind, bucket HAVING sum(n) <> 0
),
edge AS (
    SELECT email_id, created_at, first_human_open AS fo, first_human_click AS fc
    FROM stats_email
    WHERE tenant_id = $1 AND (first_human_open < $3 OR first_human_click < $3)
      AND ((created_at >= $2 AND created_at < $6) OR (created_at >= $7 AND created_at < $3))
    UNION ALL
    SELECT email_id, created_at, first_human_open, first_human_click FROM stats_email
    WHERE tenant_id = $1 AND created_at >= $6 AND created_at < $7
      AND (first_human_open < created_at OR first_human_click < created_at)
      AND (first_human_open < $3 OR first_human_click < $3)
),
edge_hits AS (
    SELECT c.created_at,
           CASE WHEN c.fo IS NULL OR c.fo >= $2 THEN CASE WHEN c.fo < $3 THEN c.fo END
                ELSE (SELECT min(e.occurred_at) FROM events e
                      WHERE e.tenant_id = $1 AND e.email_id = c.email_id AND e.kind = 'open'
                        AND e.{HUMAN} AND e.occurred_at >= $2 AND e.occurred_at < $3)
           END AS first_open,
           CASE WHEN c.fc IS NULL OR c.fc >= $2 THEN coalesce(c.fc < $3, false)
                ELSE EXISTS (SELECT 1 FROM events e
                      WHERE e.tenant_id = $1 AND e.email_id = c.email_id AND e.kind = 'click'
                        AND e.{HUMAN} AND e.occurred_at >= $2 AND e.occurred_at < $3)
           END AS clicked
    FROM edge c
),
late AS (
    SELECT created_at, first_human_open AS first_open, false AS clicked FROM stats_email
    WHERE tenant_id = $1 AND first_human_open >= $7 AND first_human_open < $3
      AND created_at >= $6 AND created_at < $7 AND first_human_open >= created_at
      AND (first_human_click IS NULL OR first_human_click >= created_at)
    UNION ALL
    SELECT created_at, NULL, true FROM stats_email
    WHERE tenant_id = $1 AND first_human_click >= $7 AND first_human_click < $3
      AND created_at >= $6 AND created_at < $7 AND first_human_click >= created_at
      AND (first_human_open IS NULL OR first_human_open >= created_at)
),
single AS (
    SELECT first_open, clicked,
           CASE WHEN first_open >= created_at
                THEN belfry_delay_bucket(created_at, first_open) END AS bucket,
           CASE WHEN first_open >= created_at
                THEN extract(epoch FROM first_open - created_at) END AS delay
    FROM (SELECT * FROM edge_hits UNION ALL SELECT * FROM late) i
)
SELECT
    ((SELECT coalesce(sum(n), 0) FROM stats_day
      WHERE tenant_id = $1 AND kind = 'email' AND day >= $8 AND day < $9)
     + (SELECT coalesce(sum(n), 0) FROM stats_hour
        WHERE tenant_id = $1 AND kind = 'email'
          AND ((hour >= $4 AND hour < $6) OR (hour >= $7 AND hour < $5)))
     + (SELECT count(*) FROM emails WHERE tenant_id = $1
        AND ((created_at >= $2 AND created_at < $4) OR (created_at >= $5 AND created_at < $3)))
    )::bigint AS registered,
    ((SELECT coalesce(sum(n), 0) FROM agg WHERE kind = 'o')
     + (SELECT count(first_open) FROM single))::bigint AS opened,
    ((SELECT coalesce(sum(n), 0) FROM agg WHERE kind = 'c')
     + (SELECT count(*) FROM single WHERE clicked))::bigint AS clicked,
    (SELECT coalesce(sum(delay), 0) FROM agg WHERE kind = 'o')
     + (SELECT coalesce(sum(delay), 0) FROM single) AS delay_sum,
    array(SELECT bucket FROM agg WHERE kind = 'o' ORDER BY bucket) AS buckets,
    array(SELECT n FROM agg WHERE kind = 'o' ORDER BY bucket) AS counts,
    array(SELECT bucket FROM single WHERE bucket IS NOT NULL ORDER BY delay) AS single_buckets,
    array(SELECT delay::float8 FROM single WHERE bucket IS NOT NULL ORDER BY delay)
        AS single_delays
"""

# The delays (as the raw query computes them) of the emails stats_cohort counts in the
# given buckets: the median's. $1 tenant, $2 buckets, $3 / $4 the whole days.
COHORT_DELAYS = """
SELECT array_agg(extract(epoch FROM first_human_open - created_at)::float8) FROM stats_email
WHERE tenant_id = $1 AND belfry_delay_bucket(created_at, first_human_open) = ANY($2::int[])
  AND created_at >= $3 AND created_at < $4 AND first_human_open < $4
  AND created_at IS NOT NULL AND first_human_open >= created_at
  AND (first_human_click IS NULL OR first_human_click >= created_at)
"""

KINDS = ("open", "click")
SERIES_FIELDS = ("human_opens", "machine_opens", "human_clicks", "machine_clicks")


@dataclass
class Figures:
    """What one answer is made of, from either source."""

    totals: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in KINDS})
    cohort: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    series: dict[datetime, dict[str, int]] = field(default_factory=dict)


def _ceil(at: datetime, bucket: str) -> datetime:
    floored = floor(at, bucket)
    return floored if floored == at else floored + BUCKETS[bucket]


def rollup_bounds(scope: Scope) -> tuple[datetime, datetime, datetime, datetime] | None:
    """(first whole hour, end of whole hours, first whole day, end of whole days) inside
    the scope; None when the rollups cannot answer it (one email, or no whole day)."""
    if scope.email_id is not None or scope.start is None or scope.end is None:
        return None
    day_start, day_end = _ceil(scope.start, "day"), floor(scope.end, "day")
    if day_start >= day_end:
        return None
    return _ceil(scope.start, "hour"), floor(scope.end, "hour"), day_start, day_end


async def _raw_figures(
    conn: asyncpg.Connection, tenant: str, scope: Scope, top_links: int
) -> Figures:
    """The figures scanned from `events` (one email, short ranges, and the oracle)."""
    args = (tenant, scope.start, scope.end, scope.email_id)
    out = Figures()
    out.totals = dict(await conn.fetchrow(TOTALS, *args))
    for row in await conn.fetch(MACHINE_REASONS, *args):
        out.reasons[row["kind"]][row["reason"]] = row["n"]
    out.cohort = dict(await conn.fetchrow(COHORT, *args))
    out.links = [dict(row) for row in await conn.fetch(TOP_LINKS, *args, top_links)]
    for row in await conn.fetch(SERIES, *args, scope.bucket):
        out.series[row["bucket"]] = {k: v for k, v in row.items() if k != "bucket"}
    return out


def _count_ranges(bucket: str, bounds: tuple[datetime, ...]) -> tuple[Any, ...]:
    """COUNTS_ROLLUP's $4..$10: for daily buckets the whole days from stats_day and only
    the partial days' whole hours from stats_hour; for hourly ones every whole hour."""
    hour_start, hour_end, day_start, day_end = bounds
    if bucket == "day":
        hours = (hour_start, day_start, day_end, hour_end)
        return (*hours, day_start.date(), day_end.date(), bucket)
    return (hour_start, hour_end, hour_end, hour_end, day_start.date(), day_start.date(), bucket)


def percentile_cont_median(ordered: list[float], n: int, below: int) -> float:
    """Postgres' percentile_cont(0.5) over n values, of which `ordered` holds those of
    ranks below .. below + len(ordered) - 1 (0-based), sorted: the same float."""
    low, high = ordered[(n - 1) // 2 - below], ordered[n // 2 - below]
    return low if low == high else low + (high - low) * 0.5


async def _cohort(
    conn: asyncpg.Connection, args: tuple[Any, ...], bounds: tuple[datetime, ...]
) -> dict[str, Any]:
    """COHORT's figures from stats_cohort: the median from the bucket counts, then the
    delays of the one (or two) buckets holding it."""
    hour_start, hour_end, day_start, day_end = bounds
    days = (day_start, day_end, day_start.date(), day_end.date())
    row = await conn.fetchrow(COHORT_ROLLUP, *args, hour_start, hour_end, *days)
    counts: dict[int, int] = defaultdict(int, zip(row["buckets"], row["counts"], strict=True))
    for bucket in row["single_buckets"]:
        counts[bucket] += 1
    n = sum(counts.values())
    out = {"registered": row["registered"], "opened": row["opened"], "clicked": row["clicked"]}
    out |= {"delays": n, "median_delay": None, "mean_delay": None}
    if not n:
        return out
    out["mean_delay"] = float(row["delay_sum"]) / n
    wanted: set[int] = set()
    below = seen = 0
    for bucket in sorted(counts):
        if seen + counts[bucket] > (n - 1) // 2 and seen <= n // 2:
            below = below if wanted else seen
            wanted.add(bucket)
        seen += counts[bucket]
    exact = await conn.fetchval(COHORT_DELAYS, args[0], sorted(wanted), day_start, day_end)
    singles = zip(row["single_buckets"], row["single_delays"], strict=True)
    ordered = sorted([*(exact or ()), *(d for b, d in singles if b in wanted)])
    out["median_delay"] = percentile_cont_median(ordered, n, below)
    return out


async def _uniques(
    conn: asyncpg.Connection,
    args: tuple[Any, ...],
    day_start: datetime,
    day_end: datetime,
    keys: list[str],
) -> dict[str, int]:
    tenant, start, end = args[:3]
    rows = await conn.fetch(UNIQUES_ROLLUP, tenant, start, end, day_start, day_end, keys)
    return {row["key"]: row["n"] for row in rows}


async def _rollup_figures(
    conn: asyncpg.Connection,
    tenant: str,
    scope: Scope,
    top_links: int,
    bounds: tuple[datetime, datetime, datetime, datetime],
) -> Figures:
    """The figures from the rollups, exactly equal to `_raw_figures`."""
    hour_start, hour_end, day_start, day_end = bounds
    args = (tenant, scope.start, scope.end)
    out = Figures()
    totals: dict[str, int] = defaultdict(int)
    for row in await conn.fetch(COUNTS_ROLLUP, *args, *_count_ranges(scope.bucket, bounds)):
        kind, reason, n = row["kind"], row["reason"], row["n"]
        if kind is None:
            out.series[row["bucket"]] = {k: row[k] for k in SERIES_FIELDS}
            continue
        totals[f"{kind}s"] += n
        if reason:
            out.reasons[kind][reason] = n
        else:
            totals[f"human_{kind}s"] += n
    links = await conn.fetch(
        TOP_LINKS_ROLLUP, *args, day_start, day_end, top_links, hour_start, hour_end
    )
    keys = ["o", "ho", "c", "hc", *(row["key"] for row in links)]
    uniques = await _uniques(conn, args, day_start, day_end, keys)
    for kind, key in (("open", "o"), ("click", "c")):
        totals.setdefault(f"{kind}s", 0)
        totals.setdefault(f"human_{kind}s", 0)
        totals[f"unique_{kind}s"] = uniques[key]
        totals[f"unique_human_{kind}s"] = uniques[f"h{key}"]
    out.totals = dict(totals)
    out.links = [
        {"url": r["url"], "clicks": r["clicks"], "human_clicks": r["human_clicks"],
         "unique_emails": uniques[r["key"]]}
        for r in links
    ]  # fmt: skip
    out.cohort = await _cohort(conn, args, bounds)
    return out


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


async def figures(
    conn: asyncpg.Connection, tenant: str, scope: Scope, top_links: int = 10, *, raw: bool = False
) -> Figures:
    """The figures of a scope: from the rollups when they can answer it, else (or with
    `raw`, the oracle of the tests and the benchmark) from `events`."""
    bounds = None if raw else rollup_bounds(scope)
    if bounds is None:
        return await _raw_figures(conn, tenant, scope, top_links)
    return await _rollup_figures(conn, tenant, scope, top_links, bounds)


async def tenant_stats(
    conn: asyncpg.Connection, tenant: str, scope: Scope, top_links: int = 10, *, raw: bool = False
) -> dict[str, Any]:
    """Every figure of the stats answer (see the module docstring for definitions)."""
    f = await figures(conn, tenant, scope, top_links, raw=raw)
    totals, cohort = f.totals, f.cohort

    def kind(name: str) -> dict[str, Any]:
        total = totals[f"{name}s"]
        return {
            "total": total,
            "unique": totals[f"unique_{name}s"],
            "human": totals[f"human_{name}s"],
            "unique_human": totals[f"unique_human_{name}s"],
            "machine": total - totals[f"human_{name}s"],
            "machine_by_reason": dict(sorted(f.reasons[name].items())),
        }

    if scope.start is not None and scope.end is not None:
        starts = bucket_starts(scope.start, scope.end, scope.bucket)
    else:
        starts = sorted(f.series)
    zero = dict.fromkeys(SERIES_FIELDS, 0)
    series = [{"t": _iso(at), **zero, **f.series.get(at, {})} for at in starts]
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
        "top_links": f.links,
        "series": series,
    }


async def stats_snapshot(
    db: asyncpg.Pool, tenant: str, scope: Scope, top_links: int = 10
) -> dict[str, Any]:
    """`tenant_stats` in one read-only snapshot, so the figures of one answer agree with
    each other. No JIT: the edge subqueries' estimates make it compile for ~0.3 s a query
    that runs in tens of ms; custom plans: the ranges decide which partitions and rows."""
    async with db.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute("SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan")
        return await tenant_stats(conn, tenant, scope, top_links)
