"""NotifyDeps: what tests may replace in delivery (time, randomness, DNS, TLS)."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver


@dataclass
class NotifyDeps:
    # Wall-clock seconds: webhook timestamps, Retry-After dates, attempt times, and the
    # Slack rate limiter (which sleeps with `sleep` until its slot).
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    # Jitter of retry delays.
    rng: random.Random = field(default_factory=random.Random)
    # DNS for outgoing HTTP (None: aiohttp's default). The egress guard checks the
    # addresses it returns at connect time, so a fake resolver tests DNS rebinding.
    resolver: AbstractResolver | None = None
    # TLS for outgoing HTTPS and SMTP (None: the system's default verification).
    ssl_context: ssl.SSLContext | None = None
