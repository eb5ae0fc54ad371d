"""Keeping Alertmanager's view alive: every `ALERTING_ALERTMANAGER_RESEND_SECONDS`, each
alert still active in Belfry whose firing was delivered to an Alertmanager channel is
sent to that channel again, with `endsAt` a few intervals ahead (Prometheus's resend).

Without it Alertmanager resolves an alert at its `resolve_timeout` (5 minutes by
default) while Belfry still fires it. Resends are not notifications: they are not in
the delivery log and not retried (the next interval is the retry); a failing channel
is logged at most once per minute. Every alerting instance resends (Alertmanager takes
the same alert twice as one), through the same egress guard as deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from services.alerting.notify.channels import SendContext, alertmanager, post
from services.alerting.notify.model import Alert, receiver_labels, rfc3339
from services.alerting.notify.store import DeliveryStore
from shared.failures import LogThrottle, error_text

log = logging.getLogger("belfry.alerting.notify")


class AlertmanagerResender:
    def __init__(self, store: DeliveryStore, context: SendContext) -> None:
        self.store = store
        self.context = context
        self.interval = context.settings.alertmanager_resend
        self.passes = 0
        self.sent = 0  # alerts sent again, all channels
        self._throttle = LogThrottle(60.0)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alerting-alertmanager-resend")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.context.sleep(self.interval)
            try:
                await self.resend()
            except Exception as exc:  # database away: the next interval tries again
                if self._throttle.allow() is not None:
                    log.warning("alertmanager resend failed", extra={"error": error_text(exc)})

    async def resend(self) -> int:
        """One pass: every active alert to its Alertmanager channels; returns how many."""
        rows = await self.store.active_on_alertmanager()
        by_channel: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        configs: dict[tuple[str, str], dict[str, Any]] = {}
        ends = rfc3339(alertmanager.firing_ends_at(self.context))
        for row in rows:
            key = (row["tenant"], row["channel"])
            configs[key] = row["config"] if isinstance(row["config"], dict) else {}
            alert = Alert.from_data(row["alert"])
            body: dict[str, Any] = {
                "labels": receiver_labels(str(row["rule"]), alert),
                "annotations": alert.annotations,
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": ends,
            }
            if alert.generator_url:
                body["generatorURL"] = alert.generator_url
            by_channel[key].append(body)
        sent = 0
        for key, alerts in by_channel.items():
            try:
                request = alertmanager.request_for(configs[key], alerts, {})
            except KeyError:  # no url: the channel's config is broken; delivery says so
                continue
            outcome = await post(self.context, request)
            if outcome.delivered:
                sent += len(alerts)
            elif self._throttle.allow() is not None:
                log.warning(
                    "alertmanager resend failed",
                    extra={"tenant": key[0], "channel": key[1], "error": outcome.error},
                )
        self.passes += 1
        self.sent += sent
        return sent
