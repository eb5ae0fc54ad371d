"""The one retry schedule (shared/backoff.py): base after the first failure, doubled per
failure up to the cap, jittered within 0.5..1.5, back to base after a reset."""

from __future__ import annotations

import random

from shared.backoff import Backoff


class _Mid(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2  # no jitter: the schedule itself


def test_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, _Mid())
    assert [backoff.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.failed() == 0.5


def test_jitter_stays_within_half_and_one_and_a_half() -> None:
    backoff = Backoff(1.0, 1.0, random.Random(3))
    delays = [backoff.failed() for _ in range(500)]
    assert 0.5 <= min(delays) < 0.6 and 1.4 < max(delays) <= 1.5


def test_a_huge_run_of_failures_does_not_overflow() -> None:
    backoff = Backoff(0.1, 30.0, _Mid())
    backoff.failures = 10_000
    assert backoff.delay() == 30.0
