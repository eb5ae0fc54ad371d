"""`GET /{tenant}/dashboard`: one self-contained page (HTML with its CSS and JS inline,
charts drawn as inline SVG by that JS; no CDN, so it works offline).

The page holds no data: its script reads the API key from the URL fragment
(`#key=blf_...`, never sent to a server) and fetches `/{tenant}/stats` with it, then
polls. So the page itself is served for any well-formed tenant id, without a key, and
says nothing about whether the tenant exists. A Content-Security-Policy pins the inline
script and style by hash and allows fetches to this origin only.
"""

from __future__ import annotations

import base64
import hashlib
import html
from functools import cache
from pathlib import Path

from aiohttp import web

from services.api.http import not_found
from services.api.keys import SETTINGS
from shared.ids import valid_tenant

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def _assets() -> tuple[str, str, str, str]:
    """(page template, CSS, JS, Content-Security-Policy), read once."""
    css = (ASSETS / "dashboard.css").read_text()
    js = (ASSETS / "dashboard.js").read_text()
    template = (ASSETS / "page.html").read_text()
    csp = (
        f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return template, css, js, csp


def render(tenant: str, poll_seconds: int, open_mode: bool) -> str:
    template, css, js, _ = _assets()
    # The per-page values first, the assets last: the inlined script must stay byte for
    # byte what the CSP hash covers. The tenant id pattern admits no markup; escape anyway.
    return (
        template.replace("{tenant}", html.escape(tenant))
        .replace("{poll}", str(poll_seconds))
        .replace("{open}", "true" if open_mode else "false")
        .replace("{css}", css)
        .replace("{js}", js)
    )


async def dashboard(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    if not valid_tenant(tenant):
        raise not_found("unknown tenant")
    settings = request.app[SETTINGS]
    csp = _assets()[3]
    return web.Response(
        text=render(tenant, settings.dashboard_poll_seconds, settings.little_bell_open),
        content_type="text/html",
        headers={
            "Content-Security-Policy": csp,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
