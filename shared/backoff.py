"""The one retry schedule of every loop that waits for RabbitMQ or Postgres to come back
(the broker connection, the writer's inserts, the alerting loops): exponential from
`base`, doubled per failure, capped at `cap`, times a jitter of 0.5..1.5 so that two
instances don't retry in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = max(cap, base)
        self._rng = rng or random.Random()
        self.failures = 0

    def delay(self) -> float:
        """Seconds to wait after the current run of failures (base after the first)."""
        exponent = min(max(self.failures - 1, 0), 60)
        return min(self.base * 2**exponent, self.cap) * self._rng.uniform(0.5, 1.5)

    def failed(self) -> float:
        """Count a failure; the delay before the next attempt."""
        self.failures += 1
        return self.delay()

    def reset(self) -> None:
        self.failures = 0
