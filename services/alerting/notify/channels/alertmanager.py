"""Alertmanager channel: POST the alerts to `{url}/api/v2/alerts`, for teams that route
with their own Alertmanager. Firing alerts go without `endsAt` (Alertmanager then keeps
them for its resolve_timeout); resolved ones carry their end, which resolves them."""

from __future__ import annotations

from typing import Any

import orjson

from services.alerting.notify.channels import HttpRequest, Outcome, SendContext, post
from services.alerting.notify.model import Notification, rfc3339


def build_alerts(n: Notification) -> list[dict[str, Any]]:
    alerts = []
    for a in n.alerts:
        alert: dict[str, Any] = {
            "labels": n.labels_of(a),
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
        }
        if a.status == "resolved" and a.ends_at is not None:
            alert["endsAt"] = rfc3339(a.ends_at)
        if a.generator_url:
            alert["generatorURL"] = a.generator_url
        alerts.append(alert)
    return alerts


def build_request(
    n: Notification, config: dict[str, Any], trace_headers: dict[str, str]
) -> HttpRequest:
    headers: dict[str, str] = dict(config.get("headers") or {})
    headers.update(trace_headers)
    headers["Content-Type"] = "application/json"
    url = str(config["url"]).rstrip("/") + "/api/v2/alerts"
    return HttpRequest(url, headers, orjson.dumps(build_alerts(n)))


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    return await post(ctx, build_request(n, config, ctx.trace_headers))
