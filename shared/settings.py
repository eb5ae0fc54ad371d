"""Settings shared by every service, read from the environment once, in `__main__`.

Each service owns one frozen settings object that embeds `CommonSettings`. Parsing
helpers raise `SettingsError` with the variable's name and what was expected, so a bad
value stops start-up with one clear line instead of a stack trace later.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from shared import __version__

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/belfry"
_PREFIX_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Env:
    """Typed reads of an environment mapping; every error names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def text(self, name: str, default: str) -> str:
        value = self._env.get(name)
        return default if value is None or value == "" else value

    def integer(
        self, name: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        value = self._converted(name, int, "an integer")
        if value is None:
            return default
        if lo is not None and value < lo:
            raise SettingsError(f"{name} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise SettingsError(f"{name} must be <= {hi}, got {value}")
        return value

    def number(self, name: str, default: float, *, lo: float = 0.0) -> float:
        value = self._converted(name, float, "a number")
        if value is None:
            return default
        if not math.isfinite(value) or value < lo:
            raise SettingsError(f"{name} must be a finite number >= {lo}, got {self._env[name]!r}")
        return value

    def _converted(self, name: str, convert: Callable[[str], T], what: str) -> T | None:
        """`name`'s value converted, None when unset or empty; SettingsError saying it
        must be `what` when it does not convert."""
        raw = self._env.get(name)
        if raw is None or raw == "":
            return None
        try:
            return convert(raw)
        except ValueError:
            raise SettingsError(f"{name} must be {what}, got {raw!r}") from None

    def flag(self, name: str, default: bool) -> bool:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.text(name, default)
        try:
            parts = urlsplit(value)
            ok = parts.scheme in schemes and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise SettingsError(
                f"{name} must be a {'/'.join(schemes)} URL with a host, got {redact_url(value)!r}"
            )
        return value

    def networks(self, name: str, default: str = "") -> tuple[ipaddress._BaseNetwork, ...]:
        raw = self.text(name, default)
        nets = []
        for item in filter(None, (p.strip() for p in raw.split(","))):
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(
                    f"{name} must be a comma-separated CIDR list, bad item {item!r}"
                ) from None
        return tuple(nets)


def _fraction(env: Env, name: str) -> float:
    value = env.number(name, 0.0)
    if value > 1:
        raise SettingsError(f"{name} must be between 0 and 1, got {value}")
    return value


def _positive(env: Env, name: str, default: float) -> float:
    """Seconds that must be above zero (a zero timeout would close every connection)."""
    value = env.number(name, default)
    if value <= 0:
        raise SettingsError(f"{name} must be a number of seconds > 0, got {value}")
    return value


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if password:
        netloc = parts.netloc.replace(f":{password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


@dataclass(frozen=True, slots=True)
class CommonSettings:
    """Fields every service has: where the broker and database are, and who we are."""

    service: str
    amqp_url: str = DEFAULT_AMQP_URL
    database_url: str = DEFAULT_DATABASE_URL
    # Prefix of every exchange and queue name, so tests and tenants share one broker.
    prefix: str = "belfry"
    log_level: str = "INFO"
    version: str = __version__
    environment: str = "dev"
    # Seconds between "not ready" and closing the listener on SIGTERM, so a load
    # balancer stops routing to us before we stop accepting.
    shutdown_grace: float = 0.0
    # Seconds between two rounds of self-reported metric events (shared.selfreport).
    metrics_interval: float = 5.0
    # Share of requests logged as access-log lines (0 = none): sampled so they don't
    # cost the hot path.
    access_log_sample: float = 0.0
    # Client IPs in spans cut to their network (/24, /48): telemetry keeps no full IPs.
    truncate_ips: bool = False
    # Seconds a connection has to deliver a complete request head (request line and
    # headers), counted from connecting or from the first byte of a request: slowloris
    # clients are closed instead of held.
    http_header_timeout: float = 10.0
    # Connections one process holds at once; more are answered 503 and closed, so a flood
    # of connections cannot exhaust file descriptors or memory.
    http_max_connections: int = 4096
    # Seconds an idle keep-alive connection stays open between requests. Longer than
    # the idle timeout of the proxy in front (nginx upstream keep-alive: 60 s).
    http_keepalive_timeout: float = 75.0

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str]) -> CommonSettings:
        env = Env(environ)
        prefix = env.text("BELFRY_PREFIX", "belfry")
        if not _PREFIX_RE.fullmatch(prefix):
            raise SettingsError(
                f"BELFRY_PREFIX must match {_PREFIX_RE.pattern} (lowercase, <= 32 chars), "
                f"got {prefix!r}"
            )
        level = env.text("LOG_LEVEL", "INFO").upper()
        if level not in _LEVELS:
            raise SettingsError(f"LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {level!r}")
        return cls(
            service=service,
            amqp_url=env.url("AMQP_URL", DEFAULT_AMQP_URL, ("amqp", "amqps")),
            database_url=env.url("DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql", "postgres")),
            prefix=prefix,
            log_level=level,
            environment=env.text("BELFRY_ENVIRONMENT", "dev"),
            shutdown_grace=env.number("SHUTDOWN_GRACE_SECONDS", 0.0),
            metrics_interval=env.number("METRICS_REPORT_INTERVAL_SECONDS", 5.0, lo=0.1),
            access_log_sample=_fraction(env, "ACCESS_LOG_SAMPLE"),
            truncate_ips=env.flag("TELEMETRY_TRUNCATE_IPS", False),
            http_header_timeout=_positive(env, "HTTP_HEADER_TIMEOUT_SECONDS", 10.0),
            http_max_connections=env.integer("HTTP_MAX_CONNECTIONS", 4096, lo=1, hi=1_000_000),
            http_keepalive_timeout=_positive(env, "HTTP_KEEPALIVE_TIMEOUT_SECONDS", 75.0),
        )
