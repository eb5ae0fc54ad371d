"""How the hot path's helpers report failures in logs: a never-empty error text, and a
throttle so an error that repeats per batch (a full disk, a dead broker) costs one log
line per interval with a count of what was left out, not one line per batch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def error_text(exc: BaseException) -> str:
    """`Type: message`, never empty: `TimeoutError()` and friends say only their type
    in str(), which logged as `"error":""` or `TimeoutError: `."""
    message = str(exc).strip()
    if isinstance(exc, OSError) and exc.errno is not None and not exc.strerror:
        message = f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
    elif isinstance(exc, TimeoutError) and not message:
        message = "timed out"
    elif not message:
        cause = exc.__cause__ or exc.__context__
        if cause is not None:  # e.g. aiormq's bare StopAsyncIteration over a reset
            return f"{type(exc).__name__} from {error_text(cause)}"
        message = repr(exc.args) if exc.args else "no message"
    return f"{type(exc).__name__}: {message}"


class LogThrottle:
    """Let one line through per `interval` seconds; `allow()` returns None to suppress,
    else how many were suppressed since the last line that went through."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def allow(self) -> int | None:
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self.interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
