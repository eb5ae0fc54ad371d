"""What the console's alerts view reads beyond the CRUD routes:

- `GET /api/v1/alerts/{fingerprint}/timeline`: one alert's transitions and the
  notifications that carried it (channel, status, every attempt with its error), merged
  in time order. A notification still in the outbox (not taken by delivery yet) shows as
  `queued`.
- `GET /api/v1/activity?since=&until=`: per rule, its alerts by state and its last
  transition; per channel, its last notification (status, error) and its counts by
  status; the episodes that started firing in the range by severity; and the
  evaluator's own figures (ticks, last error, last evaluation when the engine keeps it).

The delivery log (`notification_deliveries`) belongs to notify; if it is not there yet
(delivery never started on this database) the notifications come from the outbox only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from services.alerting.contracts import Activity, ChannelActivity, Evaluation, RuleActivity
from services.alerting.keys import DATABASE, DEPS, ENGINE, SETTINGS
from services.alerting.repos.alerts import PgAlertRepo, PgAlertStats
from services.alerting.repos.channels import PgChannelRepo
from services.alerting.repos.codec import Row
from services.alerting.repos.notifications import PgNotificationReads
from services.alerting.repos.rules import PgRuleRepo
from services.alerting.routes.common import fail, iso, json_response, parse_time, tenant_of


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _notification(row: Row) -> dict[str, Any]:
    return {
        "kind": "notification",
        "at": iso(row["created_at"]),
        "notification_id": str(row["notification_id"]),
        "channel": row["channel"],
        "channel_type": row["channel_type"],
        "alert_status": row["alert_status"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "delivered_at": iso(row["delivered_at"]),
        "tries": _loads(row["tries"]),
    }


async def timeline(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    fp = request.match_info["fingerprint"]
    db = request.app[DATABASE]
    if not await PgAlertStats(db).exists(tenant, fp):
        fail(404, "no such alert")
    transitions = await PgAlertRepo(db).history(tenant, fp, 500)
    events: list[dict[str, Any]] = [
        {
            "kind": "transition",
            "at": iso(t["at"]),
            "from": t["from_state"],
            "to": t["to_state"],
            "value": t["value"],
            "reason": t["reason"],
            "actor": t["actor"],
        }
        for t in transitions
    ]
    events += [_notification(r) for r in await PgNotificationReads(db).for_alert(tenant, fp)]
    # Stable: at equal times a transition stays before the notification it caused.
    events.sort(key=lambda e: datetime.fromisoformat(e["at"]))
    return json_response({"fingerprint": fp, "events": events})


def _range(request: web.Request) -> tuple[datetime, datetime]:
    query = request.query
    now = request.app[DEPS].clock()
    until = parse_time(query["until"], "until") if "until" in query else now
    since = parse_time(query["since"], "since") if "since" in query else until - timedelta(1)
    if since >= until:
        fail(400, "invalid parameters", {"since": "must be before until"})
    return since, until


def _channel(row: Row) -> ChannelActivity:
    last = None
    if row["status"] is not None:
        last = {
            "status": row["status"],
            "at": iso(row["created_at"]),
            "delivered_at": iso(row["delivered_at"]),
            "error": row["last_error"],
        }
    return ChannelActivity(row["name"], row["type"], row["enabled"], last, _loads(row["counts"]))


async def _channels(db: Any, tenant: str) -> list[ChannelActivity]:
    repo = PgChannelRepo(db)
    rows = await repo.activity(tenant)
    if rows is not None:
        return [_channel(r) for r in rows]
    return [  # no delivery log on this database
        ChannelActivity(r["name"], r["type"], r["enabled"], None, {})
        for r in await repo.of_tenant(tenant)
    ]


def _rule(r: Row) -> RuleActivity:
    return RuleActivity(
        id=str(r["id"]),
        name=r["name"],
        enabled=r["enabled"],
        severity=r["severity"],
        alerts=_loads(r["alerts"]),
        last_transition_at=iso(r["last_transition_at"]),
    )


async def activity(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    since, until = _range(request)
    db = request.app[DATABASE]
    rules = await PgRuleRepo(db).activity(tenant)
    fired = await PgAlertStats(db).fired_by_severity(tenant, since, until)
    engine = request.app[ENGINE]
    last_tick: datetime | None = engine.last_tick_at
    evaluation = Evaluation(
        interval_seconds=request.app[SETTINGS].eval_interval,
        ticks=engine.ticks,
        last_evaluated_at=iso(last_tick),
        last_error=engine.last_error,
    )
    return json_response(
        Activity(
            evaluation=evaluation,
            rules=[_rule(r) for r in rules],
            channels=await _channels(db, tenant),
            since=since.isoformat(),
            until=until.isoformat(),
            fired_by_severity=fired,
        )
    )


def add_timeline_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts/{fingerprint}/timeline", timeline)
    app.router.add_get("/api/v1/activity", activity)
