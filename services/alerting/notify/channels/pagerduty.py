"""PagerDuty channel (Events API v2): one event per alert of the notification, POSTed to
the events URL (`ALERTING_PAGERDUTY_EVENTS_URL`, or the channel's `url`).

`dedup_key` is the alert's fingerprint, so PagerDuty keeps one incident per alert:
`trigger` on firing (a repeat updates the same incident), `acknowledge` when someone
acknowledges the alert in Belfry (an `alert.notification.v2` `acknowledged`), `resolve`
on resolved.
Belfry's severities map onto PagerDuty's (critical, error, warning, info), per channel
overridable. Events go one after the other; a failure stops the notification there and
its retry sends every event again, which PagerDuty takes as the same events (dedup key).
"""

from __future__ import annotations

from typing import Any

import orjson

from services.alerting.notify.channels import HttpRequest, Outcome, SendContext, post
from services.alerting.notify.model import Alert, Notification, rfc3339

MAX_SUMMARY = 1024
MAX_SOURCE = 255
DEFAULT_SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}
ACTIONS = {"firing": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}


def summary(n: Notification, alert: Alert) -> str:
    """The incident's title: the alert's summary annotation, else rule and labels."""
    text = alert.annotations.get("summary") or alert.annotations.get("description")
    if not text:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        text = f"{n.rule_name}: {labels}" if labels else n.rule_name
    return f"[{alert.status.upper()}] {text}"[:MAX_SUMMARY]


def source(alert: Alert, config: dict[str, Any]) -> str:
    """Where it happened: the channel's `source`, else the alert's instance or service."""
    value = config.get("source") or alert.labels.get("instance") or alert.labels.get("service")
    return str(value or "belfry")[:MAX_SOURCE]


def severity(alert: Alert, config: dict[str, Any]) -> str:
    mapping = {**DEFAULT_SEVERITIES, **(config.get("severities") or {})}
    return str(mapping.get(alert.severity, "warning"))


def build_event(
    n: Notification, alert: Alert, config: dict[str, Any], external_url: str
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": config["routing_key"],
        "event_action": ACTIONS[alert.status],
        "dedup_key": alert.fingerprint,
        "client": "Belfry",
        "client_url": external_url,
        "payload": {
            "summary": summary(n, alert),
            "source": source(alert, config),
            "severity": severity(alert, config),
            "timestamp": rfc3339(alert.starts_at),
            "group": n.rule_name[:MAX_SOURCE],
            "custom_details": {
                "labels": n.labels_of(alert),
                "annotations": alert.annotations,
                "value": alert.value,
                "status": alert.status,
                **({"ends_at": rfc3339(alert.ends_at)} if alert.ends_at else {}),
            },
        },
    }
    if alert.generator_url.startswith(("http://", "https://")):
        event["links"] = [{"href": alert.generator_url, "text": "Belfry alert"}]
    return event


def build_requests(n: Notification, config: dict[str, Any], ctx: SendContext) -> list[HttpRequest]:
    url = str(config.get("url") or ctx.settings.pagerduty_events_url)
    headers = {**ctx.trace_headers, "Content-Type": "application/json"}
    return [
        HttpRequest(
            url, headers, orjson.dumps(build_event(n, a, config, ctx.settings.external_url))
        )
        for a in n.alerts
    ]


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    outcome = Outcome(False, error="no alerts")
    for request in build_requests(n, config, ctx):
        outcome = await post(ctx, request)
        if not outcome.delivered:
            return outcome
    return outcome
