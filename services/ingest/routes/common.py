"""Helpers the ingest routes share: JSON errors, ingest-token checks and the hit envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import hdrs, web
from multidict import istr

from services.ingest.clientip import client_ip
from services.ingest.contracts import Error
from services.ingest.settings import IngestSettings
from shared.auth import bearer_token
from shared.contracts import MAX_PURPOSE_LEN, make_envelope, now_iso
from shared.ids import new_event_id
from shared.ingest_tokens import verify_token
from shared.signing import SigningKeys


def typed_response(
    answer: msgspec.Struct, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """An answer of a contract type (services/ingest/contracts.py) as JSON."""
    return web.Response(
        body=msgspec.json.encode(answer),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error(status: int, reason: str) -> web.Response:
    return typed_response(Error(reason), status)


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


# Header names as istr: a CIMultiDict finds them without folding the name's case on each
# lookup (a fifth of the cost; every pixel looks up eight of them).
_SEC_PURPOSE, _PURPOSE, _X_PURPOSE, _X_MOZ, _DNT, _SEC_GPC, _X_REAL_IP = map(
    istr, ("Sec-Purpose", "Purpose", "X-Purpose", "X-Moz", "DNT", "Sec-GPC", "X-Real-IP")
)


def request_hints(headers: Mapping[str, str]) -> dict[str, Any] | None:
    """What the request says about itself (hit v2 `hints`): a prefetch announces itself
    (read by the writer's machine-open classifier); DNT / Sec-GPC ask not to keep personal
    fields (applied by the writer per tenant settings). None for most requests."""
    hints: dict[str, Any] | None = None
    purpose = (
        headers.get(_SEC_PURPOSE)
        or headers.get(_PURPOSE)
        or headers.get(_X_PURPOSE)
        or headers.get(_X_MOZ)
    )
    if purpose:
        hints = {"purpose": purpose[:MAX_PURPOSE_LEN]}
    if headers.get(_DNT) == "1":
        hints = hints or {}
        hints["dnt"] = True
    if headers.get(_SEC_GPC) == "1":
        hints = hints or {}
        hints["gpc"] = True
    return hints


def request_hit(
    request: web.Request, settings: IngestSettings, kind: str, tenant: str, email_id: str
) -> dict[str, Any]:
    """Envelope for a hit seen in this request (pixel or click): the hot path of every pixel."""
    # request.remote: the connection's peer address, which aiohttp reads once per
    # connection (not a transport call per request).
    return hit_envelope(request.headers, request.remote, settings, kind, tenant, email_id)


def hit_envelope(
    headers: Mapping[str, str],
    remote: str | None,
    settings: IngestSettings,
    kind: str,
    tenant: str,
    email_id: str,
) -> dict[str, Any]:
    """Envelope for a hit with these request headers (case-insensitive, as aiohttp's)
    from the peer `remote`."""
    data: dict[str, Any] = {"email_id": email_id}
    if settings.trusted_proxies:
        ip = client_ip(
            remote,
            headers.get(hdrs.X_FORWARDED_FOR),
            headers.get(_X_REAL_IP),
            settings.trusted_proxies,
        )
    else:
        ip = client_ip(remote, None, None, ())
    if ip:
        data["ip"] = ip
    ua = headers.get(hdrs.USER_AGENT)
    if ua:
        data["ua"] = ua[:1024]
    hints = request_hints(headers)
    if hints:
        data["hints"] = hints
    now = now_iso()
    return make_envelope(new_event_id(), kind, tenant, now, now, data)
