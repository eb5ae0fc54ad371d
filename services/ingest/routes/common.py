"""Helpers the ingest routes share: JSON errors and the hit envelope."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from services.ingest.clientip import client_ip
from services.ingest.settings import IngestSettings
from shared.contracts import make_envelope, now_iso
from shared.ids import new_event_id


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error(status: int, reason: str, **extra: Any) -> web.Response:
    return json_response({"error": reason, **extra}, status)


def request_hit(
    request: web.Request, settings: IngestSettings, kind: str, tenant: str, email_id: str
) -> dict[str, Any]:
    """Envelope for a hit seen in this request (pixel or click)."""
    headers = request.headers
    peer = request.transport.get_extra_info("peername") if request.transport else None
    data: dict[str, Any] = {"email_id": email_id}
    ip = client_ip(
        peer[0] if peer else None,
        headers.get("X-Forwarded-For"),
        headers.get("X-Real-IP"),
        settings.trusted_proxies,
    )
    if ip:
        data["ip"] = ip
    ua = headers.get("User-Agent")
    if ua:
        data["ua"] = ua[:1024]
    # Prefetchers announce themselves; the machine-open classifier reads this.
    purpose = headers.get("Sec-Purpose") or headers.get("Purpose")
    if purpose:
        data["props"] = {"purpose": purpose[:64]}
    now = now_iso()
    return make_envelope(new_event_id(), kind, tenant, now, now, data)
