"""Prometheus metrics of the alerting core (notification delivery has its own, in notify/)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVALUATIONS = Counter(
    "belfry_alerting_evaluations",
    "Rule evaluations (one per enabled rule per tick)",
)
ALERTS = Gauge(
    "belfry_alerting_alerts",
    "Alerts by state and severity after the last evaluation",
    ["state", "severity"],
)
TRANSITIONS = Counter(
    "belfry_alerting_transitions",
    "Alert state transitions, by the state entered",
    ["state"],
)
SAMPLES = Counter(
    "belfry_alerting_samples",
    "Metric event samples consumed, by outcome (kept: a rule watches the metric)",
    ["outcome"],
)
DEAD_LETTERED = Counter(
    "belfry_alerting_dead_lettered",
    "Metric messages or events sent to the dead-letter queue, by stage",
    ["stage"],
)
NOTIFICATIONS_PUBLISHED = Counter(
    "belfry_alerting_notifications_published",
    "Notification messages published to the notify exchange (broker confirmed)",
    ["channel_type"],
)
TICK_SECONDS = Histogram(
    "belfry_alerting_tick_duration_seconds",
    "Duration of one evaluation tick (all rules, including the database write)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
