"""`GET /console/health`: the health view's page, self-contained like the email dashboard
(its CSS and JS inline, pinned by hash in a strict Content-Security-Policy; no CDN): one
of the pages of services/api/routes/dashboard.py.

The page holds no data: its script reads the API key from the URL fragment
(`#key=blf_...`, never sent to a server) and calls `/console/api/...` with it. So the
page itself is served without a key, and for no tenant.
"""

from __future__ import annotations

from aiohttp import web

from services.api.keys import SETTINGS
from services.api.routes.dashboard import page_headers, render


async def health_page(request: web.Request) -> web.Response:
    poll = request.app[SETTINGS].dashboard_poll_seconds
    return web.Response(
        text=render("", poll, False, "health"),
        content_type="text/html",
        headers=page_headers("health"),
    )
