"""Prometheus metrics of notification delivery, and the self-reported failure figure.

Names are fixed: dashboards and the default rule pack read them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.selfreport import Sample

OUTCOMES = ("delivered", "retried", "failed", "refused")

NOTIFICATIONS = Counter(
    "belfry_alerting_notifications",
    "Notification delivery attempts by channel type and outcome",
    ["channel_type", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "belfry_alerting_delivery_seconds",
    "Duration of one delivery attempt (request and response, or SMTP conversation)",
    ["channel_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

FAILED_FIGURE = "belfry_notifications_failed"
_failed_since_report = 0


def count(channel_type: str, outcome: str) -> None:
    global _failed_since_report
    NOTIFICATIONS.labels(channel_type, outcome).inc()
    if outcome in ("failed", "refused"):
        _failed_since_report += 1


async def failure_figures() -> list[Sample]:
    """Collector for shared.selfreport.MetricReporter: notifications that finally failed
    (or were refused) since the previous round, so the default rules can alert on them."""
    global _failed_since_report
    failed, _failed_since_report = _failed_since_report, 0
    return [Sample(FAILED_FIGURE, float(failed))]
