"""Dead letters: what every Belfry consumer sends to its DLQ, with the reason in headers.

One header set for all queues (`python -m services.writer dlq list` and the runbook read
it): `x-belfry-reason` (at most 500 characters), `x-belfry-stage` (decode, validate,
deliver, ...), `x-belfry-source-queue`, `x-belfry-failed-at` and, when the failed
message had one, `x-belfry-original-message-id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts import BATCH_V1


def dead_letter_message(
    body: bytes,
    reason: str,
    stage: str,
    source: AbstractIncomingMessage | None,
    queue: str,
    *,
    message_type: str = BATCH_V1,
    extra: Mapping[str, Any] | None = None,
) -> aio_pika.Message:
    """A persistent message of `body` for the DLQ of `queue`, saying why it failed."""
    headers: dict[str, Any] = {
        "x-belfry-reason": reason[:500],
        "x-belfry-stage": stage,
        "x-belfry-source-queue": queue,
        "x-belfry-failed-at": datetime.now(UTC).isoformat(),
        **(extra or {}),
    }
    if source is not None and source.message_id:
        headers["x-belfry-original-message-id"] = source.message_id
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=message_type,
        headers=headers,
    )
