"""`AlertEngine.observe_samples` (one metric.v2 envelope at a time) keeps exactly what
`observe_sample` per sample keeps: watched metrics only, times clamped to the clock's now,
one series per label set whichever dict carries it, the memo of label keys bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.alerting import evaluator
from services.alerting.evaluator import AlertEngine
from shared.db import Database

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _engine() -> AlertEngine:
    engine = AlertEngine(
        Database("postgresql://unused@127.0.0.1:1/x"),  # never connected here
        clock=lambda: NOW,
        group_wait=0,
        external_url="http://b",
    )
    engine.samples.watch({("t", "m"): 300.0})
    return engine


def test_keeps_watched_samples_clamped_to_now_one_series_per_label_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(evaluator, "LABEL_KEYS_KEPT", 3)
    engine = _engine()
    now_ms = int(NOW.timestamp() * 1000)
    shared = {"a": "1"}
    samples = [
        ("m", shared, now_ms - 2000, 1.0, "gauge"),
        ("m", shared, now_ms - 1000, 2.0, "gauge"),
        ("m", {"a": "1"}, now_ms + 60_000, 3.0, "gauge"),  # another dict, same set; future
        ("other", shared, now_ms, 9.0, "gauge"),  # nobody watches it
        *[("m", {"a": str(i)}, now_ms, float(i), "gauge") for i in range(2, 8)],
    ]
    assert engine.observe_samples("t", samples, None) == 9
    series = {s.key: s for s in engine.samples.series("t", "m")}
    assert len(series) == 7 and len(engine._label_keys) <= 3
    first = series[(("a", "1"),)]
    assert first.points == [
        (NOW.timestamp() - 2, 1.0),
        (NOW.timestamp() - 1, 2.0),
        (NOW.timestamp(), 3.0),  # clamped to now
    ]
    assert engine.observe_samples("u", samples, None) == 0  # another tenant: not watched
