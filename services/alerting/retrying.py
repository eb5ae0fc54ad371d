"""How the alerting loops (evaluation ticks, the outbox relay, start-up) retry while
Postgres or the broker is away: shared/backoff.py's delays (the schedule of the broker
connection and the writer too), and logs of state changes — one line when a loop starts
failing, one when it recovers, and between them at most one reminder per `remind`
seconds with the count of failed attempts — instead of one line per attempt."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from shared.backoff import Backoff
from shared.failures import LogThrottle, error_text


class Failures:
    """The failure state of one retrying loop: `failed(exc)` returns the delay before the
    next attempt (and logs if the state changed or a reminder is due); `succeeded()` ends
    a failing period (and logs the recovery)."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        base: float,
        cap: float,
        remind: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.log = log
        self.what = what
        self.remind = remind
        self._clock = clock
        self._backoff = Backoff(base, cap, rng)
        self._since = 0.0
        self._throttle = LogThrottle(remind, clock)

    @property
    def failures(self) -> int:
        return self._backoff.failures

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def delay(self) -> float:
        return self._backoff.delay()

    def failed(self, exc: BaseException) -> float:
        self._backoff.failures += 1
        extra = {"error": error_text(exc)[:300], "failures": self.failures}
        if self.failures == 1:
            self._since = self._clock()
            self._throttle = LogThrottle(self.remind, self._clock)
            self._throttle.allow()
            self.log.warning(f"{self.what} failing: retrying with backoff", extra=extra)
        elif self._throttle.allow() is not None:
            extra["failing_seconds"] = round(self._clock() - self._since, 1)
            self.log.warning(f"{self.what} still failing", extra=extra)
        return self.delay()

    def succeeded(self) -> None:
        if not self.failures:
            return
        self.log.info(
            f"{self.what} recovered",
            extra={
                "failures": self.failures,
                "failing_seconds": round(self._clock() - self._since, 1),
            },
        )
        self._backoff.reset()
