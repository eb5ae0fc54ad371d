"""NotifySettings: how notifications are delivered (retries, timeouts, egress policy).

Embedded in the alerting service's settings as `.notify`; `from_env` reads the
`ALERTING_*` variables through the service's `shared.settings.Env`, so a bad value stops
start-up with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from shared.settings import Env, SettingsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_EXTERNAL_URL = "http://localhost:8082"


@dataclass(frozen=True, slots=True)
class NotifySettings:
    # Attempts per notification, the first included; then the dead-letter queue.
    max_attempts: int = 8
    # Backoff before attempt n+1: base * factor**(n-1), capped, times a jitter in
    # [1 - jitter, 1 + jitter] so retries of many notifications spread out.
    backoff_base: float = 1.0
    backoff_factor: float = 4.0
    backoff_max: float = 3600.0
    backoff_jitter: float = 0.2
    # A Retry-After beyond this is cut to it (the longest delay bucket holds an hour).
    retry_after_max: float = 3600.0
    # Whole request (connect, send, response) for HTTP channels; SMTP conversation too.
    request_timeout: float = 10.0
    # Unacked notifications per channel type: how many deliveries run at once.
    prefetch: int = 8
    # Slack: at least this many seconds between two messages to one webhook URL.
    slack_min_interval: float = 1.0
    # Outgoing connections to private/loopback/link-local/metadata/... addresses are
    # refused unless one of these networks admits them (ALERTING_EGRESS_ALLOW_CIDRS).
    egress_allow: tuple[Network, ...] = ()
    # `externalURL` of webhook payloads and the link back in Slack and email.
    external_url: str = DEFAULT_EXTERNAL_URL

    @classmethod
    def from_env(cls, env: Env) -> NotifySettings:
        external = env.url("ALERTING_EXTERNAL_URL", DEFAULT_EXTERNAL_URL, ("http", "https"))
        settings = cls(
            max_attempts=env.integer("ALERTING_NOTIFY_MAX_ATTEMPTS", 8, lo=1, hi=50),
            backoff_base=env.number("ALERTING_NOTIFY_BACKOFF_BASE_SECONDS", 1.0, lo=0.001),
            backoff_factor=env.number("ALERTING_NOTIFY_BACKOFF_FACTOR", 4.0, lo=1.0),
            backoff_max=env.number("ALERTING_NOTIFY_BACKOFF_MAX_SECONDS", 3600.0, lo=0.001),
            backoff_jitter=env.number("ALERTING_NOTIFY_BACKOFF_JITTER", 0.2),
            retry_after_max=env.number("ALERTING_NOTIFY_RETRY_AFTER_MAX_SECONDS", 3600.0),
            request_timeout=env.number("ALERTING_NOTIFY_TIMEOUT_SECONDS", 10.0, lo=0.1),
            prefetch=env.integer("ALERTING_NOTIFY_PREFETCH", 8, lo=1, hi=1000),
            slack_min_interval=env.number("ALERTING_SLACK_MIN_INTERVAL_SECONDS", 1.0),
            egress_allow=tuple(
                n
                for n in env.networks("ALERTING_EGRESS_ALLOW_CIDRS")
                if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network)
            ),
            external_url=external.rstrip("/"),
        )
        if settings.backoff_jitter >= 1:
            raise SettingsError(
                f"ALERTING_NOTIFY_BACKOFF_JITTER must be below 1, got {settings.backoff_jitter}"
            )
        if settings.backoff_max > 3600 or settings.retry_after_max > 3600:
            raise SettingsError(
                "ALERTING_NOTIFY_BACKOFF_MAX_SECONDS and ALERTING_NOTIFY_RETRY_AFTER_MAX_SECONDS"
                " must be at most 3600 (the longest delay queue)"
            )
        return settings
