"""Channel senders: each module builds its request (pure) and sends it.

`Outcome` is what every send returns; the consumer turns it into an attempt record, a
retry or a final state. `post` is the one HTTP send of the HTTP channels (webhook,
Slack, Alertmanager): no redirects followed, a whole-request timeout, the response body
read only as far as an error message needs, and egress refusals told apart.

Connection errors are recorded as one generic text: the delivery log is the tenant's
to read, and telling refused, reset and non-HTTP answers apart would let a tenant map
the networks the allow-list admits. The detail goes to the DEBUG log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from services.alerting.notify.retry import parse_retry_after, retryable_status
from services.alerting.notify.settings import NotifySettings
from services.alerting.notify.ssrf import EgressPolicy, refusal

log = logging.getLogger("belfry.alerting.notify")

USER_AGENT = "Belfry-Alerting/1"
ERROR_BODY_BYTES = 300
CONNECTION_FAILED = "connection failed"
# Channel types with an acknowledge action of their own (PagerDuty's `acknowledge` event):
# the only ones an `acknowledged` notification (alert.notification.v2) is made for.
ACKNOWLEDGING_TYPES = frozenset({"pagerduty"})


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    refused: bool = False


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SendContext:
    """What a send needs besides the notification and its channel's config."""

    settings: NotifySettings
    session: aiohttp.ClientSession | None
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    # `traceparent` (and `tracestate`) of the client span, for outgoing requests.
    trace_headers: dict[str, str] = field(default_factory=dict)
    ssl_context: Any = None
    # Slack's one-message-per-second-per-URL limiter (None for other channel types).
    limiter: RateLimiter | None = None
    # The egress guard and DNS for channels that connect by themselves (SMTP); HTTP
    # channels get both through the session's connector.
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    resolver: AbstractResolver | None = None


def connection_failed(exc: BaseException, **context: object) -> str:
    """The generic error text of a failed connection; the detail only at DEBUG."""
    log.debug(
        "notification connection failed",
        extra={"error": f"{type(exc).__name__}: {exc}"[:500], **context},
    )
    return CONNECTION_FAILED


def _error_text(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


async def post(ctx: SendContext, request: HttpRequest) -> Outcome:
    if ctx.session is None:
        raise RuntimeError("no HTTP session")
    timeout = aiohttp.ClientTimeout(total=ctx.settings.request_timeout)
    headers = {"User-Agent": USER_AGENT, **request.headers}
    try:
        async with ctx.session.post(
            request.url,
            data=request.body,
            headers=headers,
            allow_redirects=False,
            timeout=timeout,
        ) as resp:
            status = resp.status
            body = await resp.content.read(ERROR_BODY_BYTES)
            retry_after_header = resp.headers.get("Retry-After")
            location = resp.headers.get("Location", "")
    except TimeoutError:
        return Outcome(
            False, error=f"timed out after {ctx.settings.request_timeout:g}s", retryable=True
        )
    except (aiohttp.ClientError, OSError) as exc:
        refused = refusal(exc)
        if refused is not None:
            return Outcome(False, error=refused, refused=True)
        return Outcome(False, error=connection_failed(exc), retryable=True)
    if 200 <= status < 300:
        return Outcome(True, status_code=status)
    if 300 <= status < 400:
        return Outcome(
            False,
            status_code=status,
            error=f"HTTP {status} redirect (to {location[:200]!r}) not followed",
        )
    if retryable_status(status):
        return Outcome(
            False,
            status_code=status,
            error=_error_text(status, body),
            retryable=True,
            retry_after=parse_retry_after(retry_after_header, ctx.clock()),
        )
    return Outcome(False, status_code=status, error=_error_text(status, body))


class RateLimiter:
    """At most one send per `interval` seconds per key (a Slack webhook URL), on the
    injectable clock. Concurrent senders reserve consecutive slots, so a burst is spread
    out instead of sent at once; a 429's Retry-After pushes the key's next slot back."""

    MAX_KEYS = 10_000

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}

    async def wait(self, key: str) -> float:
        """Wait for this key's next slot; returns the seconds waited."""
        now = self._clock()
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + self.interval
        if len(self._next) > self.MAX_KEYS:  # forget keys whose slot has passed
            self._next = {k: t for k, t in self._next.items() if t > now}
        if slot > now:
            await self._sleep(slot - now)
        return slot - now

    def hold(self, key: str, seconds: float) -> None:
        """No send to `key` before `seconds` from now (the server asked for it)."""
        until = self._clock() + seconds
        self._next[key] = max(self._next.get(key, until), until)
