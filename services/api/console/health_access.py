"""Who may open the health view: Belfry's operators, i.e. an API key of tenant `belfry`
(the tenant Belfry's own services report to, shared.selfreport.TENANT).

No key, or an unknown or revoked one: 401. A live key of any other tenant: 403 (the
view is about the whole system, not a tenant, so there is nothing to hide by a 404).

The view matters most when something is down, Postgres included, and a key is checked
in Postgres. So a `belfry` key that passed in the last `REMEMBER_SECONDS` is still let
in while the database is unavailable; with the database up every request is checked
afresh, so a revoked key stops working at once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from services.api.keys import DATABASE
from shared.auth import bearer_token, require_tenant
from shared.db import UNAVAILABLE
from shared.selfreport import TENANT as OPERATOR_TENANT

REMEMBER_SECONDS = 300.0
REMEMBER_KEYS = 64


@dataclass
class RecentKeys:
    """SHA-256 of recently verified operator keys -> when that stops counting."""

    until: dict[bytes, float] = field(default_factory=dict)

    def remember(self, token: str) -> None:
        now = time.monotonic()
        self.until = {k: t for k, t in self.until.items() if t > now}
        if len(self.until) >= REMEMBER_KEYS:
            self.until.pop(min(self.until, key=self.until.__getitem__))
        self.until[_digest(token)] = now + REMEMBER_SECONDS

    def known(self, token: str) -> bool:
        return self.until.get(_digest(token), 0.0) > time.monotonic()


RECENT = web.AppKey("console_recent_operator_keys", RecentKeys)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _forbidden() -> web.HTTPForbidden:
    reason = (
        f"the health view is for Belfry's operators: use an API key of tenant {OPERATOR_TENANT}"
    )
    return web.HTTPForbidden(
        text=orjson.dumps({"error": reason}).decode(), content_type="application/json"
    )


async def require_operator(request: web.Request) -> None:
    """Returns when the request carries a live `belfry` key; raises 401 or 403."""
    recent = request.app[RECENT]
    try:
        tenant = await require_tenant(request, await request.app[DATABASE].pool())
    except UNAVAILABLE:
        token = bearer_token(request)
        if token is not None and recent.known(token):
            return
        raise  # the api's middleware answers 503 with the reason
    if tenant != OPERATOR_TENANT:
        raise _forbidden()
    token = bearer_token(request)
    assert token is not None  # require_tenant passed
    recent.remember(token)
