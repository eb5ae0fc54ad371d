"""`GET /console/health`: the health view's page, self-contained like the email dashboard
(its CSS and JS inline, pinned by hash in a strict Content-Security-Policy; no CDN).

The page holds no data: its script reads the API key from the URL fragment
(`#key=blf_...`, never sent to a server) and calls `/console/api/...` with it. So the
page itself is served without a key.
"""

from __future__ import annotations

from functools import cache

from aiohttp import web

from services.api.keys import SETTINGS
from services.api.routes.dashboard import ASSETS, _sha256


@cache
def _assets() -> tuple[str, str]:
    """(the page with its CSS and JS inlined but the poll interval, its CSP), read once."""
    css = (ASSETS / "health.css").read_text()
    js = (ASSETS / "health.js").read_text()
    template = (ASSETS / "health.html").read_text()
    # The dashboard's policy, with this page's hashes (see the lead's note on sharing it).
    csp = (
        f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    # The assets last: the inlined script must stay byte for byte what the hash covers.
    return template.replace("{css}", css).replace("{js}", js), csp


def render(poll_seconds: int) -> str:
    page, _ = _assets()
    # {poll} sits in the template before the assets, so this replaces nothing inside them.
    head, sep, rest = page.partition("{poll}")
    return head + str(poll_seconds) + rest if sep else page


async def health_page(request: web.Request) -> web.Response:
    csp = _assets()[1]
    return web.Response(
        text=render(request.app[SETTINGS].dashboard_poll_seconds),
        content_type="text/html",
        headers={
            "Content-Security-Policy": csp,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
