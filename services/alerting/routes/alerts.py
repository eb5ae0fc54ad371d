"""Alerts: list with filters, one alert with its transition history, ack and resolve."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.alerting.engine.state import SEVERITIES_FOR_METRICS, STATES, StateError
from services.alerting.keys import DATABASE, ENGINE
from services.alerting.routes.common import (
    fail,
    iso,
    json_response,
    parse_limit,
    parse_uuid,
    read_json,
    tenant_of,
)
from services.alerting.store import dumps, loads

_SELECT = """
SELECT a.fingerprint, a.rule_id, r.name AS rule_name, r.spec, a.labels, a.state, a.severity,
       a.value, a.no_data, a.pending_since, a.fired_at, a.resolved_at, a.last_notified_at,
       a.announced, a.acknowledged_by, a.acknowledged_at, a.silence_id, a.annotations,
       a.created_at, a.updated_at
FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
"""


def alert_json(row: Any, value: float | None = None) -> dict[str, Any]:
    spec = loads(row["spec"])
    series = loads(row["labels"])
    labels = {
        "alertname": row["rule_name"],
        "severity": row["severity"],
        **spec.get("labels", {}),
        **series,
    }
    return {
        "fingerprint": row["fingerprint"],
        "rule_id": str(row["rule_id"]),
        "rule": row["rule_name"],
        "state": row["state"],
        "severity": row["severity"],
        "labels": labels,
        "series_labels": series,
        "annotations": loads(row["annotations"]),
        "value": row["value"] if value is None else value,
        "no_data": row["no_data"],
        "pending_since": iso(row["pending_since"]),
        "fired_at": iso(row["fired_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "last_notified_at": iso(row["last_notified_at"]),
        "announced": row["announced"],
        "acknowledged_by": row["acknowledged_by"],
        "acknowledged_at": iso(row["acknowledged_at"]),
        "silence_id": None if row["silence_id"] is None else str(row["silence_id"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


async def list_alerts(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    query = request.query
    where, args = ["a.tenant_id = $1"], [tenant]
    errors: dict[str, str] = {}

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    states = query.getall("state", [])
    for state in states:
        if state not in STATES:
            errors["state"] = f"must be one of {', '.join(STATES)}"
    if states:
        where.append(f"a.state = ANY({arg(states)}::text[])")
    severities = query.getall("severity", [])
    for severity in severities:
        if severity not in SEVERITIES_FOR_METRICS:
            errors["severity"] = f"must be one of {', '.join(SEVERITIES_FOR_METRICS)}"
    if severities:
        where.append(f"a.severity = ANY({arg(severities)}::text[])")
    rule = query.get("rule")
    if rule:
        rule_id = parse_uuid(rule)
        where.append(
            f"(r.name = {arg(rule)}" + (f" OR r.id = {arg(rule_id)}::uuid)" if rule_id else ")")
        )
    labels: dict[str, str] = {}
    for item in query.getall("label", []):
        name, sep, value = item.partition("=")
        if not sep or not name:
            errors["label"] = "must be name=value"
        elif name == "alertname":
            where.append(f"r.name = {arg(value)}")
        else:
            labels[name] = value
    if labels:
        where.append(f"a.labels @> {arg(dumps(labels))}::jsonb")
    limit = parse_limit(request)
    if errors:
        fail(400, "invalid parameters", errors)
    pool = await request.app[DATABASE].pool()
    rows = await pool.fetch(
        f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY a.updated_at DESC, a.fingerprint"
        f" LIMIT {limit}",
        *args,
    )
    engine = request.app[ENGINE]
    return json_response(
        {"alerts": [alert_json(r, engine.current_value(r["fingerprint"])) for r in rows]}
    )


async def _fetch(request: web.Request, tenant: str) -> Any:
    pool = await request.app[DATABASE].pool()
    row = await pool.fetchrow(
        f"{_SELECT} WHERE a.fingerprint = $1 AND a.tenant_id = $2",
        request.match_info["fingerprint"],
        tenant,
    )
    if row is None:
        fail(404, "no such alert")
    return row


async def get_alert(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    row = await _fetch(request, tenant)
    pool = await request.app[DATABASE].pool()
    history = await pool.fetch(
        "SELECT from_state, to_state, at, value, reason, actor FROM alert_transitions"
        " WHERE fingerprint = $1 ORDER BY id",
        row["fingerprint"],
    )
    body = alert_json(row, request.app[ENGINE].current_value(row["fingerprint"]))
    body["history"] = [
        {
            "from": h["from_state"],
            "to": h["to_state"],
            "at": iso(h["at"]),
            "value": h["value"],
            "reason": h["reason"],
            "actor": h["actor"],
        }
        for h in history
    ]
    return json_response(body)


async def _act(request: web.Request, action: str) -> web.Response:
    tenant = await tenant_of(request)
    body: Any = {}
    if request.can_read_body and request.content_length:
        body = await read_json(request)
    if not isinstance(body, dict):
        fail(400, "body must be a JSON object")
    actor = body.get("by", "api")
    if not isinstance(actor, str) or not 1 <= len(actor) <= 200:
        fail(400, "invalid request", {"by": "must be a string of 1 to 200 characters"})
    try:
        alert = await request.app[ENGINE].act(
            tenant, request.match_info["fingerprint"], action, actor
        )
    except StateError as exc:
        fail(409, str(exc))
    if alert is None:
        fail(404, "no such alert")
    return json_response(alert_json(await _fetch(request, tenant), alert.value))


async def ack_alert(request: web.Request) -> web.Response:
    return await _act(request, "ack")


async def resolve_alert(request: web.Request) -> web.Response:
    return await _act(request, "resolve")


def add_alert_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/{fingerprint}", get_alert)
    app.router.add_post("/api/v1/alerts/{fingerprint}/ack", ack_alert)
    app.router.add_post("/api/v1/alerts/{fingerprint}/resolve", resolve_alert)
