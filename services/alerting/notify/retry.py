"""When to retry a delivery, and after how long.

Pure functions of (attempt, settings, randomness, clock), so the schedule is tested
without waiting. Retried: network errors, timeouts, 429 and 5xx. Not retried: other 4xx,
3xx (redirects are never followed: a webhook that moved must be reconfigured, and
following one could lead the request anywhere), and refusals of the egress guard.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

from services.alerting.notify.settings import NotifySettings


def retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def backoff(attempt: int, settings: NotifySettings, rng: random.Random) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): exponential, capped,
    jittered."""
    base = settings.backoff_base * settings.backoff_factor ** max(0, attempt - 1)
    capped = min(base, settings.backoff_max)
    jitter = settings.backoff_jitter
    return max(0.0, capped * rng.uniform(1 - jitter, 1 + jitter))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), or None
    when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(
    attempt: int,
    retry_after: float | None,
    settings: NotifySettings,
    rng: random.Random,
) -> float:
    """The delay before the next attempt: what the server asked for (capped), else the
    backoff. A server's Retry-After is honoured as a minimum, never shortened by jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), settings.retry_after_max)
    return backoff(attempt, settings, rng)
