"""Per-tenant privacy, applied when a hit is stored.

A tenant's `tenants.settings` (managed by the api service) says how much of a reader to
keep: `ip_mode` `full` | `truncated` (/24 IPv4, /48 IPv6) | `none`, and `respect_dnt`
(default true): a hit whose request sent `DNT: 1` or `Sec-GPC: 1` keeps neither address
nor user agent. The verdict is decided before, from the full data, so honest counts don't
depend on what is kept. Settings are read once per tenant per `ttl` seconds (a tenant's
change applies within that time) on an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from shared.httpobs import truncate_ip

IP_MODES = ("full", "truncated", "none")


@dataclass(frozen=True, slots=True)
class Privacy:
    ip_mode: str = "full"
    respect_dnt: bool = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Privacy:
        """Tolerant: an unknown or missing value falls back to the default (the api
        validates what it writes; the writer must never fail a batch over it)."""
        settings = settings or {}
        ip_mode = settings.get("ip_mode", "full")
        respect = settings.get("respect_dnt", True)
        return cls(
            ip_mode if ip_mode in IP_MODES else "full",
            respect if isinstance(respect, bool) else True,
        )

    def apply(
        self, ip: str | None, ua: str | None, hints: Mapping[str, Any] | None
    ) -> tuple[str | None, str | None]:
        """The (ip, user agent) to store."""
        private = bool(hints and (hints.get("dnt") or hints.get("gpc")))
        return self.keep(ip, ua, private)

    def keep(self, ip: str | None, ua: str | None, private: bool) -> tuple[str | None, str | None]:
        """`apply` once the hints are read: `private` is a Do Not Track or GPC request."""
        if private and self.respect_dnt:
            return None, None
        if ip is not None and self.ip_mode != "full":
            ip = truncate_ip(ip) if self.ip_mode == "truncated" else None
        return ip, ua


DEFAULT = Privacy()


class TenantPrivacy:
    """Cache of each tenant's Privacy, refreshed after `ttl` seconds."""

    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, Privacy]] = {}

    async def for_tenants(
        self, conn: asyncpg.Connection, tenants: Iterable[str]
    ) -> dict[str, Privacy]:
        now = self.clock()
        wanted = set(tenants)
        stale = [t for t in wanted if t not in self._cache or self._cache[t][0] <= now]
        if stale:
            rows = await conn.fetch(
                "SELECT id, settings FROM tenants WHERE id = ANY($1::text[])", stale
            )
            found = {r["id"]: r["settings"] for r in rows}
            for tenant in stale:
                raw = found.get(tenant)
                settings = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
                self._cache[tenant] = (now + self.ttl, Privacy.from_settings(settings))
        return {t: self._cache[t][1] for t in wanted}
