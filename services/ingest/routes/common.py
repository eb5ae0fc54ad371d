"""Helpers the ingest routes share: JSON errors, ingest-token checks and the hit envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from services.ingest.clientip import client_ip
from services.ingest.settings import IngestSettings
from shared.auth import bearer_token
from shared.contracts import MAX_PURPOSE_LEN, now_iso
from shared.ids import new_event_id
from shared.ingest_tokens import verify_token
from shared.signing import SigningKeys


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error(status: int, reason: str, **extra: Any) -> web.Response:
    return json_response({"error": reason, **extra}, status)


def unauthorized(reason: str) -> web.Response:
    response = error(401, reason)
    response.headers["WWW-Authenticate"] = 'Bearer realm="belfry-ingest"'
    return response


def token_tenant(request: web.Request, keys: SigningKeys | None) -> str | web.Response | None:
    """The tenant of the request's ingest token (shared.ingest_tokens); None when it
    presents none; a 401 answer when the token it presents does not verify."""
    token = bearer_token(request)
    if token is None:
        return None
    tenant = verify_token(keys, token)
    return unauthorized("invalid or revoked ingest token") if tenant is None else tenant


def request_hints(headers: Mapping[str, str]) -> dict[str, Any] | None:
    """What the request says about itself (hit v2 `hints`): a prefetch announces itself
    (read by the writer's machine-open classifier); DNT / Sec-GPC ask not to keep personal
    fields (applied by the writer per tenant settings). None for most requests."""
    hints: dict[str, Any] | None = None
    purpose = (
        headers.get("Sec-Purpose")
        or headers.get("Purpose")
        or headers.get("X-Purpose")
        or headers.get("X-Moz")
    )
    if purpose:
        hints = {"purpose": purpose[:MAX_PURPOSE_LEN]}
    if headers.get("DNT") == "1":
        hints = hints or {}
        hints["dnt"] = True
    if headers.get("Sec-GPC") == "1":
        hints = hints or {}
        hints["gpc"] = True
    return hints


def request_hit(
    request: web.Request, settings: IngestSettings, kind: str, tenant: str, email_id: str
) -> dict[str, Any]:
    """Envelope for a hit seen in this request (pixel or click).

    The hot path of every pixel: the envelope is the dict `make_envelope` builds (same
    keys, same order), written out here to save the call."""
    headers = request.headers
    data: dict[str, Any] = {"email_id": email_id}
    # request.remote: the connection's peer address, which aiohttp reads once per
    # connection (not a transport call per request).
    if settings.trusted_proxies:
        ip = client_ip(
            request.remote,
            headers.get("X-Forwarded-For"),
            headers.get("X-Real-IP"),
            settings.trusted_proxies,
        )
    else:
        ip = client_ip(request.remote, None, None, ())
    if ip:
        data["ip"] = ip
    ua = headers.get("User-Agent")
    if ua:
        data["ua"] = ua[:1024]
    hints = request_hints(headers)
    if hints:
        data["hints"] = hints
    now = now_iso()
    return {
        "id": new_event_id(),
        "type": kind,
        "tenant": tenant,
        "occurred_at": now,
        "received_at": now,
        "data": data,
    }
