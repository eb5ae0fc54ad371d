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

import asyncpg
import orjson
from aiohttp import web

from services.alerting.keys import DATABASE, DEPS, ENGINE, SETTINGS
from services.alerting.routes.common import fail, iso, json_response, parse_time, tenant_of

# A notification's envelope lists its alerts; `@>` finds the ones naming this fingerprint.
_DELIVERIES = """
SELECT d.notification_id, d.channel, d.channel_type, d.alert_status, d.status, d.attempts,
       d.last_error, d.created_at, d.delivered_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                   'attempt', t.attempt, 'at', t.at, 'outcome', t.outcome,
                   'status_code', t.status_code, 'error', t.error) ORDER BY t.id)
                 FROM notification_attempts t WHERE t.notification_id = d.notification_id),
                '[]'::jsonb) AS tries
FROM notification_deliveries d
WHERE d.tenant_id = $1 AND d.payload->'data'->'alerts' @> $2::jsonb
ORDER BY d.created_at LIMIT 500
"""
_QUEUED = """
SELECT o.notification_id, o.channel, o.channel_type, o.status AS alert_status,
       'queued' AS status, o.attempts, o.last_error, o.created_at, NULL::timestamptz
       AS delivered_at, '[]'::jsonb AS tries
FROM alert_outbox o
WHERE o.tenant_id = $1 AND o.envelope->'data'->'alerts' @> $2::jsonb {unlogged}
ORDER BY o.created_at LIMIT 500
"""
_UNLOGGED = (
    "AND NOT EXISTS (SELECT 1 FROM notification_deliveries d"
    " WHERE d.notification_id = o.notification_id)"
)


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _notification(row: Any) -> dict[str, Any]:
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


async def _notifications(pool: asyncpg.Pool, tenant: str, fp: str) -> list[dict[str, Any]]:
    match = orjson.dumps([{"fingerprint": fp}]).decode()
    try:
        rows = list(await pool.fetch(_DELIVERIES, tenant, match))
        rows += await pool.fetch(_QUEUED.format(unlogged=_UNLOGGED), tenant, match)
    except asyncpg.UndefinedTableError:  # no delivery log on this database
        rows = list(await pool.fetch(_QUEUED.format(unlogged=""), tenant, match))
    return [_notification(r) for r in rows]


async def timeline(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    fp = request.match_info["fingerprint"]
    pool = await request.app[DATABASE].pool()
    exists = await pool.fetchval(
        "SELECT 1 FROM alerts WHERE fingerprint = $1 AND tenant_id = $2", fp, tenant
    )
    if exists is None:
        fail(404, "no such alert")
    transitions = await pool.fetch(
        "SELECT from_state, to_state, at, value, reason, actor FROM alert_transitions"
        " WHERE fingerprint = $1 AND tenant_id = $2 ORDER BY id DESC LIMIT 500",
        fp,
        tenant,
    )
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
        for t in reversed(transitions)
    ]
    events += await _notifications(pool, tenant, fp)
    # Stable: at equal times a transition stays before the notification it caused.
    events.sort(key=lambda e: datetime.fromisoformat(e["at"]))
    return json_response({"fingerprint": fp, "events": events})


_RULES = """
SELECT r.id, r.spec->>'name' AS name, r.enabled, r.spec->>'severity' AS severity,
       coalesce((SELECT jsonb_object_agg(s.state, s.n) FROM (
           SELECT a.state, count(*) AS n FROM alerts a WHERE a.rule_id = r.id GROUP BY 1) s),
           '{}'::jsonb) AS alerts,
       (SELECT max(t.at) FROM alert_transitions t WHERE t.rule_id = r.id) AS last_transition_at
FROM alert_rules r WHERE r.tenant_id = $1 ORDER BY r.spec->>'name' LIMIT 1000
"""
_CHANNELS = """
SELECT c.name, c.type, c.enabled, last.status, last.created_at, last.delivered_at,
       last.last_error,
       coalesce((SELECT jsonb_object_agg(s.status, s.n) FROM (
           SELECT d.status, count(*) AS n FROM notification_deliveries d
           WHERE d.tenant_id = c.tenant_id AND d.channel = c.name GROUP BY 1) s),
           '{}'::jsonb) AS counts
FROM alert_channels c
LEFT JOIN LATERAL (
    SELECT d.status, d.created_at, d.delivered_at, d.last_error FROM notification_deliveries d
    WHERE d.tenant_id = c.tenant_id AND d.channel = c.name
    ORDER BY d.created_at DESC LIMIT 1) last ON true
WHERE c.tenant_id = $1 ORDER BY c.name LIMIT 1000
"""


# Episodes that began in the range: a transition into firing (or silenced, its quiet
# twin) from a state that is not itself part of an episode.
_FIRED = """
SELECT a.severity, count(*) AS n FROM alert_transitions t JOIN alerts a USING (fingerprint)
WHERE t.tenant_id = $1 AND t.at >= $2 AND t.at <= $3 AND t.to_state IN ('firing', 'silenced')
  AND t.from_state IN ('pending', 'inactive', 'resolved')
GROUP BY 1
"""


def _range(request: web.Request) -> tuple[datetime, datetime]:
    query = request.query
    now = request.app[DEPS].clock()
    until = parse_time(query["until"], "until") if "until" in query else now
    since = parse_time(query["since"], "since") if "since" in query else until - timedelta(1)
    if since >= until:
        fail(400, "invalid parameters", {"since": "must be before until"})
    return since, until


def _channel(row: Any) -> dict[str, Any]:
    last = None
    if row["status"] is not None:
        last = {
            "status": row["status"],
            "at": iso(row["created_at"]),
            "delivered_at": iso(row["delivered_at"]),
            "error": row["last_error"],
        }
    return {
        "name": row["name"],
        "type": row["type"],
        "enabled": row["enabled"],
        "last_notification": last,
        "counts": _loads(row["counts"]),
    }


async def activity(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    since, until = _range(request)
    pool = await request.app[DATABASE].pool()
    rules = await pool.fetch(_RULES, tenant)
    fired = await pool.fetch(_FIRED, tenant, since, until)
    try:
        channels = [_channel(r) for r in await pool.fetch(_CHANNELS, tenant)]
    except asyncpg.UndefinedTableError:
        rows = await pool.fetch(
            "SELECT name, type, enabled FROM alert_channels WHERE tenant_id = $1 ORDER BY name",
            tenant,
        )
        channels = [{**dict(r), "last_notification": None, "counts": {}} for r in rows]
    engine = request.app[ENGINE]
    last_tick: datetime | None = engine.last_tick_at
    return json_response(
        {
            "evaluation": {
                "interval_seconds": request.app[SETTINGS].eval_interval,
                "ticks": engine.ticks,
                "last_evaluated_at": iso(last_tick),
                "last_error": engine.last_error,
            },
            "rules": [
                {
                    "id": str(r["id"]),
                    "name": r["name"],
                    "enabled": r["enabled"],
                    "severity": r["severity"],
                    "alerts": _loads(r["alerts"]),
                    "last_transition_at": iso(r["last_transition_at"]),
                }
                for r in rules
            ],
            "channels": channels,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "fired_by_severity": {r["severity"]: r["n"] for r in fired},
        }
    )


def add_timeline_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts/{fingerprint}/timeline", timeline)
    app.router.add_get("/api/v1/activity", activity)
