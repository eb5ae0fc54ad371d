"""Alertmanager channel: POST the alerts to `{url}/api/v2/alerts`, for teams that route
with their own Alertmanager.

As Prometheus does, a firing alert carries an `endsAt` ENDS_AFTER resend intervals
ahead (`ALERTING_ALERTMANAGER_RESEND_SECONDS`), and `resend.py` sends every active alert
again each interval: Alertmanager keeps it active while Belfry fires it, whatever its
`resolve_timeout`, and lets it expire if Belfry stops talking. A resolved alert carries
its real end, which resolves it at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.alerting.notify.channels import HttpRequest, Outcome, SendContext, post
from services.alerting.notify.model import Alert, Notification, rfc3339

# Prometheus: endsAt = now + 4 * max(resend delay, evaluation interval).
ENDS_AFTER = 4


def firing_ends_at(ctx: SendContext) -> datetime:
    """The `endsAt` of a firing alert sent now."""
    ahead = ENDS_AFTER * ctx.settings.alertmanager_resend
    return datetime.fromtimestamp(ctx.clock(), UTC) + timedelta(seconds=ahead)


def build_alert(n: Notification, a: Alert, firing_ends: datetime | None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": n.labels_of(a),
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
    }
    if a.status == "resolved" and a.ends_at is not None:
        alert["endsAt"] = rfc3339(a.ends_at)
    elif a.status == "firing" and firing_ends is not None:
        alert["endsAt"] = rfc3339(firing_ends)
    if a.generator_url:
        alert["generatorURL"] = a.generator_url
    return alert


def build_alerts(n: Notification, firing_ends: datetime | None = None) -> list[dict[str, Any]]:
    return [build_alert(n, a, firing_ends) for a in n.alerts]


def request_for(
    config: dict[str, Any], alerts: list[dict[str, Any]], trace_headers: dict[str, str]
) -> HttpRequest:
    headers: dict[str, str] = dict(config.get("headers") or {})
    headers.update(trace_headers)
    headers["Content-Type"] = "application/json"
    url = str(config["url"]).rstrip("/") + "/api/v2/alerts"
    return HttpRequest(url, headers, orjson.dumps(alerts))


def build_request(
    n: Notification,
    config: dict[str, Any],
    trace_headers: dict[str, str],
    firing_ends: datetime | None = None,
) -> HttpRequest:
    return request_for(config, build_alerts(n, firing_ends), trace_headers)


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    return await post(ctx, build_request(n, config, ctx.trace_headers, firing_ends_at(ctx)))
