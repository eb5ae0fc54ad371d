"""GET /api/v1/stats?since=&until=: alerts by state and severity (now), transitions, MTTR
and MTBF over the range, and notifications by channel and outcome over the range.

MTTR: mean time from an episode's start (firing) to its `resolved`, over the episodes
resolved in the range. MTBF: mean time from a `resolved` to the same alert's next
`firing`, over the firings in the range. Notification outcomes come from the delivery log
(notify's `notification_deliveries`); before that exists, from the outbox (published or
pending).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web

from services.alerting.keys import DATABASE, DEPS
from services.alerting.routes.common import fail, json_response, parse_time, tenant_of

MTBF = """
SELECT avg(extract(epoch FROM at - prev_resolved)) FROM (
    SELECT at, to_state, from_state,
           max(at) FILTER (WHERE to_state = 'resolved')
               OVER (PARTITION BY fingerprint ORDER BY id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_resolved
    FROM alert_transitions WHERE tenant_id = $1 AND at <= $3
) t
WHERE at >= $2 AND to_state IN ('firing', 'silenced')
  AND from_state IN ('pending', 'inactive', 'resolved') AND prev_resolved IS NOT NULL
"""


async def stats(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    now = request.app[DEPS].clock()
    until = parse_time(request.query["until"], "until") if "until" in request.query else now
    since = (
        parse_time(request.query["since"], "since")
        if "since" in request.query
        else until - timedelta(days=1)
    )
    if since >= until:
        fail(400, "invalid parameters", {"since": "must be before until"})
    pool = await request.app[DATABASE].pool()
    by = await pool.fetch(
        "SELECT state, severity, count(*) AS n FROM alerts WHERE tenant_id = $1"
        " GROUP BY state, severity ORDER BY state, severity",
        tenant,
    )
    by_state: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for row in by:
        by_state[row["state"]] = by_state.get(row["state"], 0) + row["n"]
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + row["n"]
    transitions = await pool.fetch(
        "SELECT to_state, count(*) AS n FROM alert_transitions"
        " WHERE tenant_id = $1 AND at >= $2 AND at <= $3 GROUP BY to_state",
        tenant,
        since,
        until,
    )
    mttr = await pool.fetchval(
        "SELECT avg(extract(epoch FROM at - fired_at)) FROM alert_transitions"
        " WHERE tenant_id = $1 AND at >= $2 AND at <= $3 AND to_state = 'resolved'"
        " AND fired_at IS NOT NULL",
        tenant,
        since,
        until,
    )
    mtbf = await pool.fetchval(MTBF, tenant, since, until)
    return json_response(
        {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "alerts": {
                "by_state": by_state,
                "by_severity": by_severity,
                "by_state_and_severity": [
                    {"state": r["state"], "severity": r["severity"], "count": r["n"]} for r in by
                ],
            },
            "transitions": {r["to_state"]: r["n"] for r in transitions},
            "mttr_seconds": None if mttr is None else float(mttr),
            "mtbf_seconds": None if mtbf is None else float(mtbf),
            "notifications": await _notifications(pool, tenant, since, until),
        }
    )


async def _notifications(pool: asyncpg.Pool, tenant: str, since: Any, until: Any) -> list[Any]:
    try:
        rows = await pool.fetch(
            "SELECT channel, channel_type, status AS outcome, count(*) AS n"
            " FROM notification_deliveries"
            " WHERE tenant_id = $1 AND created_at >= $2 AND created_at <= $3"
            " GROUP BY 1, 2, 3 ORDER BY 1, 3",
            tenant,
            since,
            until,
        )
    except asyncpg.UndefinedTableError:  # delivery log not there: the outbox's view
        rows = await pool.fetch(
            "SELECT channel, channel_type,"
            " CASE WHEN sent_at IS NULL THEN 'pending' ELSE 'published' END AS outcome,"
            " count(*) AS n FROM alert_outbox"
            " WHERE tenant_id = $1 AND created_at >= $2 AND created_at <= $3"
            " GROUP BY 1, 2, 3 ORDER BY 1, 3",
            tenant,
            since,
            until,
        )
    return [
        {
            "channel": r["channel"],
            "channel_type": r["channel_type"],
            "outcome": r["outcome"],
            "count": r["n"],
        }
        for r in rows
    ]


def add_stats_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/stats", stats)
