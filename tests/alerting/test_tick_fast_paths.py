"""The tick's fast paths mean exactly what the slow ones do: a series' window
aggregations from its parallel lists and running reset-adjusted counter equal the
point-list functions (resets, late samples, pruning, delta counters), and `settle`
changes an alert exactly as `evaluate` would whenever it claims the alert."""

from __future__ import annotations

import random
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

import pytest

from services.alerting.engine.state import (
    ACKNOWLEDGED,
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    SILENCED,
    Alert,
    Observation,
    evaluate,
    settle,
)
from services.alerting.engine.windows import Series, aggregate
from services.alerting.rules import rule_from_doc
from services.alerting.rules.model import Rule

AGGREGATIONS = ("rate", "increase", "avg", "min", "max", "sum", "count", "last", "p50", "p95")
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _random_series(rng: random.Random, kind: str) -> tuple[Series, list[tuple[float, float]]]:
    series = Series({"a": "b"}, (("a", "b"),), kind=kind)
    points: list[tuple[float, float]] = []
    value, t = rng.uniform(0, 100), 0.0
    for _ in range(rng.randint(0, 60)):
        t += rng.choice((0.0, 1.0, 5.0, 15.0, 15.0, 15.0, 30.0))
        if kind == "counter":
            value = rng.uniform(0, 50) if rng.random() < 0.1 else value + rng.uniform(0, 20)
        else:
            value = rng.uniform(-50, 100)
        at = t - rng.uniform(0, 60) if rng.random() < 0.1 else t  # a late sample
        series.add(at, value)
        points.append((at, value))
        if rng.random() < 0.05:  # pruned as the store does, by the retention
            cut = series.last_seen - rng.uniform(60, 300)
            series.prune(cut)
            points = [p for p in points if p[0] >= cut]
    points.sort(key=lambda p: p[0])  # stable: equal times keep arrival order
    return series, points


@pytest.mark.parametrize("kind", ["counter", "gauge", "counter_delta"])
def test_series_aggregations_equal_the_point_functions(kind: str) -> None:
    rng = random.Random(f"windows-{kind}")
    for _ in range(400):
        series, points = _random_series(rng, kind)
        assert series.points == points
        end = series.last_seen + rng.uniform(-30, 30)
        start = end - rng.choice((30.0, 60.0, 120.0, 300.0))
        window = [p for p in points if start < p[0] <= end]
        assert series.window(start, end) == window
        for name in AGGREGATIONS:
            want = aggregate(name, window, (start, end), kind)
            got = series.aggregate(name, (start, end))
            if want is None:
                assert got is None, (name, window)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (name, window)


def _rules() -> list[Rule]:
    docs: list[dict[str, object]] = [
        {"condition": "x > 10"},
        {"condition": "x > 10 for 1m", "repeat_interval": "5m"},
        {"condition": "x < 10", "clear_threshold": 20},
        {"condition": "x > 10", "severity": "critical", "cooldown": "10m"},
    ]
    return [
        rule_from_doc({"name": f"r{i}", **doc}, tenant="t", rule_id=f"r{i}")
        for i, doc in enumerate(docs)
    ]


def test_settle_changes_an_alert_exactly_as_evaluate_would() -> None:
    rng = random.Random("settle")
    states = (INACTIVE, PENDING, FIRING, ACKNOWLEDGED, SILENCED, RESOLVED)
    settled = 0
    for _ in range(5000):
        rule = rng.choice(_rules())
        now = T0 + timedelta(seconds=rng.uniform(0, 3600))

        def ago(now: datetime = now) -> datetime | None:
            return rng.choice((None, now - timedelta(seconds=rng.uniform(0, 900))))

        alert = Alert(
            "fp",
            rule.id,
            "t",
            {"a": "b"},
            rule.severity if rng.random() < 0.9 else "info",
            state=rng.choice(states),
            value=rng.uniform(0, 30),
            pending_since=ago(),
            fired_at=ago(),
            last_breach_at=ago(),
            last_notified_at=ago(),
            last_firing_at=ago(),
            last_resolved_at=ago(),
            announced=rng.random() < 0.5,
            no_data=rng.random() < 0.1,
        )
        value = None if rng.random() < 0.2 else rng.uniform(0, 30)
        unsilenced = rng.random() < 0.7
        silence = None if unsilenced or rng.random() < 0.5 else "s1"
        after, changes = evaluate(alert, rule, Observation(value), now, silence)
        fast = replace(alert, labels=dict(alert.labels))
        if settle(fast, rule, value, now, unsilenced):
            settled += 1
            assert changes == []
            assert asdict(fast) == asdict(after)
    assert settled > 500  # the fast path was taken often enough to mean something
