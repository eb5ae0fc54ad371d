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

from aiohttp import web

from services.alerting.contracts import AlertCounts, NotificationCount, StateSeverityCount, Stats
from services.alerting.keys import DATABASE, DEPS
from services.alerting.repos.alerts import PgAlertStats
from services.alerting.repos.notifications import PgNotificationReads
from services.alerting.routes.common import fail, json_response, parse_time, tenant_of


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
    db = request.app[DATABASE]
    alerts = PgAlertStats(db)
    by = await alerts.by_state_and_severity(tenant)
    by_state: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for row in by:
        by_state[row["state"]] = by_state.get(row["state"], 0) + row["n"]
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + row["n"]
    mttr, mtbf = await alerts.mttr_mtbf(tenant, since, until)
    notifications = await PgNotificationReads(db).counts(tenant, since, until)
    return json_response(
        Stats(
            since=since.isoformat(),
            until=until.isoformat(),
            alerts=AlertCounts(
                by_state,
                by_severity,
                [StateSeverityCount(r["state"], r["severity"], r["n"]) for r in by],
            ),
            transitions=await alerts.transitions_by_state(tenant, since, until),
            mttr_seconds=mttr,
            mtbf_seconds=mtbf,
            notifications=[
                NotificationCount(r["channel"], r["channel_type"], r["outcome"], r["n"])
                for r in notifications
            ],
        )
    )


def add_stats_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/stats", stats)
