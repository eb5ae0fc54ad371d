"""Log channel: the notification as one JSON line in the alerting service's own log.

No network, nothing to set up: the development default for Belfry's own `belfry-ops`
channel (`make run` creates it from infra/alerting/channels.dev.yaml), and a place to see
what a rule would send before a real receiver exists. It writes to the operators' log,
so it suits the operators' tenant (`belfry`); a tenant can't read that log.

Config: `{"level"?: "info" | "warning" | "error"}` (default `warning`).
"""

from __future__ import annotations

import logging
from typing import Any

from services.alerting.notify.channels import Outcome, SendContext
from services.alerting.notify.model import Notification, rfc3339

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
DEFAULT_LEVEL = "warning"
MESSAGE = "alert notification"

log = logging.getLogger("belfry.alerting.notify.log")


def build_fields(n: Notification) -> dict[str, Any]:
    """The log record's fields: what a webhook would carry, flat enough to grep."""
    return {
        "notification_id": n.id,
        "tenant": n.tenant,
        "channel": n.channel,
        "rule": n.rule_name,
        "rule_id": n.rule_id,
        "status": n.status,
        "severity": n.severity,
        "alerts": [
            {
                "fingerprint": a.fingerprint,
                "status": a.status,
                "labels": n.labels_of(a),
                "annotations": a.annotations,
                "value": a.value,
                "starts_at": rfc3339(a.starts_at),
                "ends_at": rfc3339(a.ends_at) if a.ends_at is not None else None,
                "generator_url": a.generator_url,
            }
            for a in n.alerts
        ],
    }


async def send(n: Notification, config: dict[str, Any], ctx: SendContext) -> Outcome:
    level = LEVELS[str(config.get("level") or DEFAULT_LEVEL)]  # null: absent
    log.log(level, MESSAGE, extra=build_fields(n))
    return Outcome(True)
