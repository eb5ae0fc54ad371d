"""The rule model: what a rule watches, how it aggregates, when it fires and whom it tells.

Rules are immutable values; the API and the YAML loader build them through
`services.alerting.rules.validate.rule_from_doc`, which is the only place that checks
them, and `Rule.to_doc()` is the JSON they are stored and shown as.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.alerting.rules.expr import Binary, Expr, Selector, selectors, watched
from services.alerting.rules.matcher import AGGREGATIONS as AGGREGATIONS
from services.alerting.rules.matcher import MATCH_OPS as MATCH_OPS
from services.alerting.rules.matcher import Matcher as Matcher

COMPARISONS = (">", ">=", "<", "<=", "==", "!=")
SEVERITIES = ("info", "warning", "critical")
NO_DATA_MODES = ("alert", "keep", "resolve")


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


@dataclass(frozen=True)
class Rule:
    id: str
    tenant: str
    name: str
    metric: str
    matchers: tuple[Matcher, ...] = ()
    aggregation: str = "last"
    window: float = 60.0  # seconds
    op: str = ">"
    threshold: float = 0.0
    for_: float = 0.0
    keep_firing_for: float = 0.0
    # Hysteresis: once firing, the alert stays until the value no longer passes this.
    clear_threshold: float | None = None
    no_data: str = "alert"
    no_data_windows: int = 3
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    channels: tuple[str, ...] = ()
    repeat_interval: float = 4 * 3600.0  # 0 = never repeat
    # Seconds after a notification of one status for an alert in which another of that
    # status is held (0 = none).
    cooldown: float = 0.0
    # Seconds a notification waits to be grouped with others of the rule; None = the
    # service's ALERTING_GROUP_WAIT_SECONDS.
    group_wait: float | None = None
    enabled: bool = True
    # An expression (rules/expr.py) instead of metric/matchers/aggregation/window; then
    # `metric` is its first metric and `window` its longest window.
    expr: Expr | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    @property
    def selector(self) -> Selector:
        return Selector(self.metric, self.matchers, self.aggregation, self.window)

    def watches(self) -> list[tuple[str, float]]:
        """(metric, window) for every metric the rule reads."""
        chosen = selectors(self.expr) if self.expr is not None else [self.selector]
        return [(name, s.window) for s in chosen for name in watched(s)]

    @property
    def condition(self) -> str:
        """The rule's condition in shorthand form (for display)."""
        if self.expr is not None:
            shown = self.expr.text()
            if isinstance(self.expr, Binary):  # its own parentheses, not needed here
                shown = shown[1:-1]
            text = f"{shown} {self.op} {self.threshold:g}"
        else:
            text = f"{self.selector.text()} {self.op} {self.threshold:g}"
        return f"{text} for {_dur(self.for_)}" if self.for_ else text

    def to_doc(self) -> dict[str, Any]:
        # An expression rule holds its metrics, matchers and windows in `expr` alone.
        simple = self.expr is None
        return {
            "id": self.id,
            "name": self.name,
            "metric": self.metric if simple else None,
            "matchers": [m.to_doc() for m in self.matchers] if simple else None,
            "aggregation": self.aggregation if simple else None,
            "window": self.window if simple else None,
            "op": self.op,
            "threshold": self.threshold,
            "for": self.for_,
            "keep_firing_for": self.keep_firing_for,
            "clear_threshold": self.clear_threshold,
            "no_data": {"mode": self.no_data, "windows": self.no_data_windows},
            "severity": self.severity,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "channels": list(self.channels),
            "repeat_interval": self.repeat_interval,
            "cooldown": self.cooldown,
            "group_wait": self.group_wait,
            "enabled": self.enabled,
            "expr": self.expr.to_doc() if self.expr is not None else None,
            "condition": self.condition,
        }


def _dur(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def fingerprint(rule_id: str, labels: Mapping[str, str]) -> str:
    """Stable id of one alert: a hash of the rule id and the series' labels."""
    body = orjson.dumps([rule_id, sorted(labels.items())])
    return hashlib.sha256(body).hexdigest()[:16]
