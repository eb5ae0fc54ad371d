"""Prometheus metrics of notification delivery, and the self-reported failure figure.

Names are fixed: dashboards and the default rule pack read them. The `owner` label says
whose failure it is, so a tenant's broken channel never pages Belfry's operators:

- `belfry`: a channel of Belfry's own tenant (`belfry`: the operators' alerts), or a
  failure Belfry caused whoever's channel it was (the handler failed: database, broker,
  internal error; a notification message Belfry itself made invalid);
- `tenant`: a tenant's channel failing on its own (refused by the egress guard, the
  subscriber's errors and timeouts, DNS, a missing, disabled or invalid channel).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.selfreport import TENANT as BELFRY_TENANT
from shared.selfreport import Sample

# Outcomes: delivered, retried, failed, refused; `skipped`: a resolved for a channel that
# never got the firing (nothing to resolve); `error`: the handler failed before the
# delivery was settled, the message goes round again.
OWNERS = ("belfry", "tenant")
FAILED_FIGURE = "belfry_notifications_failed"


def owner_of(tenant: str) -> str:
    """The owner of a delivery outcome of `tenant`'s channel (Belfry's or a tenant's)."""
    return "belfry" if tenant == BELFRY_TENANT else "tenant"


class NotifyMetrics:
    """Notification delivery's metrics of one app, on its registry (shared.prom), and
    the failures counted for its self-reports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "belfry_alerting_notifications",
            "Notification delivery attempts by channel type, outcome and whose failure it is"
            " (owner: belfry = Belfry's own channels or a failure Belfry caused; tenant = a"
            " tenant's channel)",
            ["channel_type", "outcome", "owner"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "belfry_alerting_delivery_seconds",
            "Duration of one delivery attempt (request and response, or SMTP conversation)",
            ["channel_type"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self._failed_since_report = dict.fromkeys(OWNERS, 0)

    def count(self, channel_type: str, outcome: str, owner: str) -> None:
        self.notifications.labels(channel_type, outcome, owner).inc()
        if outcome in ("failed", "refused"):
            self._failed_since_report[owner] += 1

    async def failure_figures(self) -> list[Sample]:
        """Collector for shared.selfreport.MetricReporter: notifications that finally
        failed (or were refused) since the previous round, per owner; the default rule
        pack alerts on `owner="belfry"` only."""
        samples = []
        for owner in OWNERS:
            failed, self._failed_since_report[owner] = self._failed_since_report[owner], 0
            samples.append(Sample(FAILED_FIGURE, float(failed), {"owner": owner}))
        return samples


def unserved() -> NotifyMetrics:
    """Metrics on a registry of their own, served nowhere: for a NotifyService built
    without an app (tests)."""
    return NotifyMetrics(CollectorRegistry())
