"""Prometheus metrics of the alerting core (notification delivery has its own, in notify/).

One `AlertingMetrics` per app, on the app's registry (shared.prom): the composition root
builds it and hands it to the engine, the metric consumer and the outbox relay.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.selfreport import queue_messages_gauge


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "belfry_alerting_evaluations",
            "Rule evaluations (one per enabled rule per tick)",
            registry=registry,
        )
        self.alerts = Gauge(
            "belfry_alerting_alerts",
            "Alerts by state and severity after the last evaluation",
            ["state", "severity"],
            registry=registry,
        )
        self.transitions = Counter(
            "belfry_alerting_transitions",
            "Alert state transitions, by the state entered",
            ["state"],
            registry=registry,
        )
        self.samples = Counter(
            "belfry_alerting_samples",
            "Metric event samples consumed, by outcome (kept: a rule watches the metric)",
            ["outcome"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "belfry_alerting_dead_lettered",
            "Metric messages or events sent to the dead-letter queue, by stage",
            ["stage"],
            registry=registry,
        )
        self.notifications_published = Counter(
            "belfry_alerting_notifications_published",
            "Notification messages published to the notify exchange (broker confirmed)",
            ["channel_type"],
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "belfry_alerting_tick_duration_seconds",
            "Duration of one evaluation tick (all rules, including the database write)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        # belfry_queue_messages{queue}: the self-reports' poll of the alerting and notify queues.
        self.queue_messages = queue_messages_gauge(registry)
        # Bound once: the consumer counts every sample.
        self.samples_kept = self.samples.labels("kept")
        self.samples_ignored = self.samples.labels("ignored")


def unserved() -> AlertingMetrics:
    """Metrics on a registry of their own, served nowhere: for a part built without an
    app (unit tests)."""
    return AlertingMetrics(CollectorRegistry())
