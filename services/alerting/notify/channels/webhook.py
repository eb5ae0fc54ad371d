"""Webhook channel: the Alertmanager v4 JSON, signed the Standard Webhooks way.

Receivers written for Alertmanager's webhook work unchanged; the signature headers let
them check the sender: `webhook-id` (the notification id, the same on every retry and
replay, so a receiver can drop duplicates), `webhook-timestamp` (seconds, fresh each
attempt), and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
one per configured secret, space-separated, so a secret can rotate without a gap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from services.alerting.notify.channels import HttpRequest, Outcome, SendContext, post
from services.alerting.notify.config import SECRET_PREFIX
from services.alerting.notify.model import ZERO_TIME, Notification, rfc3339


def build_payload(n: Notification, external_url: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.channel,
        "groupLabels": n.group_labels,
        "commonLabels": n.common("labels"),
        "commonAnnotations": n.common("annotations"),
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": n.labels_of(a),
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at) if a.ends_at is not None else ZERO_TIME,
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in n.alerts
        ],
    }


def sign(msg_id: str, timestamp: int, body: bytes, secrets: list[str]) -> str:
    """The `webhook-signature` header value: one `v1,<b64>` per secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    out = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        out.append("v1," + base64.b64encode(digest).decode())
    return " ".join(out)


def build_request(
    n: Notification,
    config: dict[str, Any],
    *,
    timestamp: int,
    external_url: str,
    trace_headers: dict[str, str],
) -> HttpRequest:
    body = orjson.dumps(build_payload(n, external_url))
    headers: dict[str, str] = dict(config.get("headers") or {})
    headers.update(trace_headers)
    headers["Content-Type"] = "application/json"
    headers["webhook-id"] = n.id
    headers["webhook-timestamp"] = str(timestamp)
    secrets = list(config.get("secrets") or [])
    if secrets:
        headers["webhook-signature"] = sign(n.id, timestamp, body, secrets)
    return HttpRequest(str(config["url"]), headers, body)


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    request = build_request(
        n,
        config,
        timestamp=int(ctx.clock()),
        external_url=ctx.settings.external_url,
        trace_headers=ctx.trace_headers,
    )
    return await post(ctx, request)
