"""NotifySettings: how notifications are delivered (retries, timeouts, egress policy).

Embedded in the alerting service's settings as `.notify`; `from_env` reads the
`ALERTING_*` variables through the service's `shared.settings.Env`, so a bad value stops
start-up with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from shared.settings import Env, SettingsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_EXTERNAL_URL = "http://localhost:8082"
DEFAULT_PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def default_external_url(host: str, port: int) -> str:
    """Where the service listens, as a link: the configured host and port, the machine's
    host name for a wildcard address (what Prometheus does for its external URL)."""
    if host in WILDCARD_HOSTS:
        host = socket.gethostname() or "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{port}" if port else f"http://{host}"


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
    # `externalURL` of webhook payloads, the link back in Slack and email, and the base
    # of each alert's generatorURL; from the environment, unset means
    # `default_external_url(ALERTING_HOST, ALERTING_PORT)`.
    external_url: str = DEFAULT_EXTERNAL_URL
    # PagerDuty Events API v2 endpoint (a channel's `url` overrides it, e.g. an EU account).
    pagerduty_events_url: str = DEFAULT_PAGERDUTY_EVENTS_URL
    # Active alerts are sent to Alertmanager channels again this often, with `endsAt`
    # ALERTMANAGER_ENDS_AFTER intervals ahead, as Prometheus does: Alertmanager then keeps
    # them active while Belfry fires them, and expires them if Belfry goes away.
    alertmanager_resend: float = 60.0

    @classmethod
    def from_env(cls, env: Env) -> NotifySettings:
        # Unset: derived from ALERTING_HOST and ALERTING_PORT (as the service reads them).
        listen = default_external_url(
            env.text("ALERTING_HOST", "0.0.0.0"),
            env.integer("ALERTING_PORT", 8082, lo=0, hi=65535),
        )
        external = env.url("ALERTING_EXTERNAL_URL", listen, ("http", "https"))
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
            pagerduty_events_url=env.url(
                "ALERTING_PAGERDUTY_EVENTS_URL", DEFAULT_PAGERDUTY_EVENTS_URL, ("http", "https")
            ),
            alertmanager_resend=env.number("ALERTING_ALERTMANAGER_RESEND_SECONDS", 60.0, lo=0.1),
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
