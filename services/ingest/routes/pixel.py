"""`GET|HEAD /{tenant}/pixel/{email_id}.gif`: the open-tracking pixel.

Always served: mail clients never retry, so a broker outage must not show as a broken
image. HEAD answers the same bytes' headers without recording an open.
"""

from __future__ import annotations

import base64

from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from services.ingest.keys import HOT, METRICS
from services.ingest.publisher import Outcome
from services.ingest.routes.common import error, request_hit
from shared.contracts import HIT_OPEN_V2
from shared.ids import EMAIL_ID_RE, valid_tenant

# The classic 43-byte transparent 1x1 GIF.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
assert len(GIF) == 43, "the pixel must stay the standard 43-byte GIF"

# A CIMultiDict of istr names: each response copies it without parsing a name again
# (half the cost of building the response from a plain dict).
HEADERS = CIMultiDict(
    {
        hdrs.CONTENT_TYPE: "image/gif",
        hdrs.CACHE_CONTROL: "no-store, no-cache, must-revalidate",
        istr("Pragma"): "no-cache",
        hdrs.EXPIRES: "0",
    }
)

# Valid tenant ids seen (a deployment has few): a set lookup instead of a regex match per
# pixel; bounded, so made-up ids can't grow it past _MAX_TENANTS.
_tenants: set[str] = set()
_MAX_TENANTS = 4096
_email_id_ok = EMAIL_ID_RE.fullmatch


def _new_tenant(tenant: str) -> bool:
    if not valid_tenant(tenant):
        return False
    if len(_tenants) < _MAX_TENANTS:
        _tenants.add(tenant)
    return True


def pixel_ids_ok(tenant: str, email_id: str) -> bool:
    """Both ids have a valid format (the fast path's check too)."""
    return (tenant in _tenants or _new_tenant(tenant)) and _email_id_ok(email_id) is not None


async def pixel(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    email_id = request.match_info["email_id"]
    if not pixel_ids_ok(tenant, email_id):
        request.app[METRICS].rejected_bad_id.inc()
        return error(404, "unknown tenant or email id format")
    if request.method == "GET":
        hot = request.app[HOT]
        try:
            outcome = await hot.publisher.submit(
                request_hit(request, hot.settings, HIT_OPEN_V2, tenant, email_id)
            )
        except RuntimeError:  # the publisher has closed (stopping): not kept, still served
            outcome = Outcome.DROPPED
        hot.metrics.opened[outcome].inc()
    return web.Response(body=GIF, headers=HEADERS)
