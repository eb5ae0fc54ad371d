"""Alerts: list with filters, one alert with its transition history, ack and resolve."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.alerting.contracts import (
    Actor,
    Alert,
    AlertDetail,
    Alerts,
    Transition,
)
from services.alerting.engine.state import SEVERITIES_FOR_METRICS, STATES, StateError
from services.alerting.keys import DATABASE, ENGINE
from services.alerting.repos.alerts import AlertFilter, AlertRepo, PgAlertRepo
from services.alerting.repos.codec import Row, loads
from services.alerting.routes.common import (
    fail,
    found,
    iso,
    json_response,
    parse_limit,
    parse_uuid,
    read_json,
    tenant_of,
)
from shared.decoding import field_values


def alert_json(row: Row, value: float | None = None) -> Alert:
    spec = loads(row["spec"])
    series = loads(row["labels"])
    labels = {
        "alertname": row["rule_name"],
        "severity": row["severity"],
        **spec.get("labels", {}),
        **series,
    }
    return Alert(
        fingerprint=row["fingerprint"],
        rule_id=str(row["rule_id"]),
        rule=row["rule_name"],
        state=row["state"],
        severity=row["severity"],
        labels=labels,
        series_labels=series,
        annotations=loads(row["annotations"]),
        value=row["value"] if value is None else value,
        no_data=row["no_data"],
        pending_since=iso(row["pending_since"]),
        fired_at=iso(row["fired_at"]),
        resolved_at=iso(row["resolved_at"]),
        last_notified_at=iso(row["last_notified_at"]),
        announced=row["announced"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=iso(row["acknowledged_at"]),
        silence_id=None if row["silence_id"] is None else str(row["silence_id"]),
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


def alert_filter(query: Any) -> AlertFilter:
    """The list's filters from the query string; else a 400 naming each bad parameter."""
    errors: dict[str, str] = {}
    states = query.getall("state", [])
    if any(state not in STATES for state in states):
        errors["state"] = f"must be one of {', '.join(STATES)}"
    severities = query.getall("severity", [])
    if any(severity not in SEVERITIES_FOR_METRICS for severity in severities):
        errors["severity"] = f"must be one of {', '.join(SEVERITIES_FOR_METRICS)}"
    rule = query.get("rule") or None
    alertnames: list[str] = []
    labels: dict[str, str] = {}
    for item in query.getall("label", []):
        name, sep, value = item.partition("=")
        if not sep or not name:
            errors["label"] = "must be name=value"
        elif name == "alertname":
            alertnames.append(value)
        else:
            labels[name] = value
    if errors:
        fail(400, "invalid parameters", errors)
    rule_id = parse_uuid(rule) if rule else None
    return AlertFilter(states, severities, rule, rule_id, alertnames, labels)


async def list_alerts(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    limit = parse_limit(request)
    where = alert_filter(request.query)
    rows = await _repo(request).search(tenant, where, limit)
    engine = request.app[ENGINE]
    return json_response(
        Alerts([alert_json(r, engine.current_value(r["fingerprint"])) for r in rows])
    )


def _repo(request: web.Request) -> PgAlertRepo:
    return PgAlertRepo(request.app[DATABASE])


async def fetch(repo: AlertRepo, tenant: str, fingerprint: str) -> Row:
    return found(await repo.get(tenant, fingerprint), "alert")


async def get_alert(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    repo = _repo(request)
    row = await fetch(repo, tenant, request.match_info["fingerprint"])
    history = await repo.history(tenant, row["fingerprint"], None)
    alert = alert_json(row, request.app[ENGINE].current_value(row["fingerprint"]))
    transitions = [
        Transition(
            h["from_state"], h["to_state"], h["at"].isoformat(), h["value"], h["reason"], h["actor"]
        )
        for h in history
    ]
    return json_response(AlertDetail(**msgspec.structs.asdict(alert), history=transitions))


async def _act(request: web.Request, action: str) -> web.Response:
    tenant = await tenant_of(request)
    body: Any = {}
    if request.can_read_body and request.content_length:
        body = await read_json(request)
    if not isinstance(body, dict):
        fail(400, "body must be a JSON object")
    values, errors = field_values(Actor, body, {"by": "must be a string of 1 to 200 characters"})
    if errors:
        fail(400, "invalid request", errors)
    actor = values.get("by", "api")
    try:
        alert = await request.app[ENGINE].act(
            tenant, request.match_info["fingerprint"], action, actor
        )
    except StateError as exc:
        fail(409, str(exc))
    alert = found(alert, "alert")
    row = await fetch(_repo(request), tenant, request.match_info["fingerprint"])
    return json_response(alert_json(row, alert.value))


async def ack_alert(request: web.Request) -> web.Response:
    return await _act(request, "ack")


async def resolve_alert(request: web.Request) -> web.Response:
    return await _act(request, "resolve")


def add_alert_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/{fingerprint}", get_alert)
    app.router.add_post("/api/v1/alerts/{fingerprint}/ack", ack_alert)
    app.router.add_post("/api/v1/alerts/{fingerprint}/resolve", resolve_alert)
