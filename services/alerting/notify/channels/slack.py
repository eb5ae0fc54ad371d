"""Slack channel: an incoming-webhook message with `text` (the notification line shown
in pushes) and `blocks` (severity, summary, labels, value, link), at most one message per
second per webhook URL (Slack's documented limit), and a 429's Retry-After honoured."""

from __future__ import annotations

from typing import Any

import orjson

from services.alerting.notify.channels import HttpRequest, Outcome, SendContext, post
from services.alerting.notify.model import Alert, Notification, when

MAX_ALERT_BLOCKS = 10
_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}


def escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) as its entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def title(n: Notification) -> str:
    count = f" ({len(n.alerts)} alerts)" if len(n.alerts) > 1 else ""
    return f"[{n.status.upper()}] {n.severity}: {n.rule_name}{count}"


def _summary(alert: Alert) -> str:
    return alert.annotations.get("summary") or alert.annotations.get("description") or ""


def _alert_block(n: Notification, alert: Alert) -> dict[str, Any]:
    lines = []
    summary = _summary(alert)
    if summary:
        lines.append(f"*{escape(summary)}*")
    labels = ", ".join(f"`{escape(k)}={escape(v)}`" for k, v in sorted(alert.labels.items()))
    if labels:
        lines.append(f"Labels: {labels}")
    if alert.value is not None:
        lines.append(f"Value: {alert.value:g}")
    lines.append(f"State: {alert.status}, {when(alert)}")
    if alert.generator_url:
        lines.append(f"<{alert.generator_url}|Open in Belfry>")
    return {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}


def build_payload(n: Notification, external_url: str) -> dict[str, Any]:
    head = title(n)
    summary = _summary(n.alerts[0])
    text = f"{head}: {summary}" if summary else head
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{head}"[:150], "emoji": True},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Status*\n{_EMOJI[n.status]} {n.status}"},
                {"type": "mrkdwn", "text": f"*Severity*\n{escape(n.severity)}"},
                {"type": "mrkdwn", "text": f"*Rule*\n{escape(n.rule_name)}"},
                {"type": "mrkdwn", "text": f"*Alerts*\n{len(n.alerts)}"},
            ],
        },
    ]
    blocks += [_alert_block(n, a) for a in n.alerts[:MAX_ALERT_BLOCKS]]
    if len(n.alerts) > MAX_ALERT_BLOCKS:
        more = len(n.alerts) - MAX_ALERT_BLOCKS
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {more} more"}]}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{external_url}|Belfry alerting>"}],
        }
    )
    return {"text": text, "blocks": blocks}


def build_request(
    n: Notification, config: dict[str, Any], external_url: str, trace_headers: dict[str, str]
) -> HttpRequest:
    headers = {**trace_headers, "Content-Type": "application/json"}
    return HttpRequest(str(config["url"]), headers, orjson.dumps(build_payload(n, external_url)))


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    request = build_request(n, config, ctx.settings.external_url, ctx.trace_headers)
    if ctx.limiter is not None:
        await ctx.limiter.wait(request.url)
    outcome = await post(ctx, request)
    if ctx.limiter is not None and outcome.status_code == 429 and outcome.retry_after:
        ctx.limiter.hold(request.url, outcome.retry_after)
    return outcome
