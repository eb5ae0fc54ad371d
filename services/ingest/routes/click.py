"""`GET /{tenant}/click/{email_id}?url=…&sig=…`: the signed click redirect.

Redirects only when the signature covers this tenant, email and URL (or the tenant's
unsigned-domain allow-list admits the URL during a Little Bell migration). Anything
else gets a 400 with the reason — JSON, or a small escaped HTML page for browsers —
and never a redirect: an unsigned `?url=` is an open redirect.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from aiohttp import web

from services.ingest.keys import HOT, METRICS
from services.ingest.routes.common import error, request_hit
from services.ingest.settings import IngestSettings
from shared.contracts import HIT_CLICK_V2
from shared.ids import valid_email_id, valid_tenant
from shared.signing import normalize_target, target_problem, verify_click


def unsigned_allowed(settings: IngestSettings, tenant: str, url: str) -> bool:
    domains = settings.unsigned_click_domains.get(tenant)
    if not domains:
        return False
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def _refuse(request: web.Request, reason: str) -> web.Response:
    request.app[METRICS].click_refused.inc()
    if "text/html" in request.headers.get("Accept", ""):
        page = (
            "<!doctype html><meta charset=utf-8><title>Link not valid</title>"
            f"<h1>This link is not valid</h1><p>{html.escape(reason)}</p>"
        )
        return web.Response(text=page, status=400, content_type="text/html")
    return error(400, reason)


async def click(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    email_id = request.match_info["email_id"]
    if not (valid_tenant(tenant) and valid_email_id(email_id)):
        request.app[METRICS].rejected_bad_id.inc()
        return error(404, "unknown tenant or email id format")
    url = request.query.get("url")
    if not url:
        return _refuse(request, "url is required")
    problem = target_problem(url)
    if problem:
        return _refuse(request, problem)
    hot = request.app[HOT]
    sig = request.query.get("sig")
    if sig:
        if not verify_click(hot.settings.signing, tenant, email_id, url, sig):
            return _refuse(request, "signature does not match this link")
    elif not unsigned_allowed(hot.settings, tenant, url):
        return _refuse(request, "link is not signed")
    if request.method == "GET":
        event = request_hit(request, hot.settings, HIT_CLICK_V2, tenant, email_id)
        event["data"]["url"] = normalize_target(url)  # as signed links carry it
        hot.metrics.clicked[await hot.publisher.submit(event)].inc()
    return web.Response(
        status=302,
        headers={"Location": url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
