"""`POST /api/v2/alerts`: Alertmanager's v2 receiving API, so a Prometheus `alerting:`
block or a Grafana contact point of type Alertmanager can send its alerts to Belfry
(services/alerting/external.py maps them onto Belfry's alerts).

The tenant is the API key's: `Authorization: Bearer <key>` (Prometheus `authorization:
credentials:`), or HTTP basic auth with the key as the password (Grafana's contact point
has only basic auth). Answers as Alertmanager does: 200 with an empty body; a 400 with a
JSON reason for a body that is not a valid alert list (Prometheus logs it and drops the
batch; it sends the alerts again at its next resend anyway); 503 while this instance is a
standby or its engine is not loaded (point Prometheus at every instance: it sends each
alert to all of them).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from services.alerting import external
from services.alerting.keys import DATABASE, ENGINE, SETTINGS
from services.alerting.routes.common import fail, json_response
from shared.auth import bearer_token, tenant_for_key


def _credentials(request: web.Request) -> str | None:
    """The API key of a bearer token, or the password of basic auth."""
    token = bearer_token(request)
    if token is not None:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep and password else None


async def _read_body(request: web.Request) -> Any:
    """The JSON body. NUL characters are refused where they would be kept (labels,
    annotations, generatorURL: external.parse_alerts), not in fields Belfry ignores."""
    if not request.can_read_body:
        fail(400, "a JSON body is required")
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        fail(400, f"body is not JSON: {exc}")


def _unauthorized(reason: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=orjson.dumps({"error": reason}).decode(),
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="belfry"'},
    )


async def post_alerts(request: web.Request) -> web.Response:
    key = _credentials(request)
    if key is None:
        raise _unauthorized(
            "missing credentials (Authorization: Bearer <api key>, or basic auth"
            " with the api key as the password)"
        )
    tenant = await tenant_for_key(await request.app[DATABASE].pool(), key)
    if tenant is None:
        raise _unauthorized("unknown or revoked api key")
    body = await _read_body(request)
    try:
        alerts = external.parse_alerts(body)
    except external.AlertsError as exc:
        fail(400, "invalid alerts", exc.fields)
    engine = request.app[ENGINE]
    if not engine.loaded:
        return json_response(
            {"error": f"not evaluating here ({engine.last_error}); send to every instance"}, 503
        )
    await external.receive(engine, tenant, alerts, request.app[SETTINGS].resolve_timeout)
    return web.Response(status=200)


def add_am_alert_routes(app: web.Application) -> None:
    app.router.add_post("/api/v2/alerts", post_alerts)
