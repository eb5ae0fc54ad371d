"""The console's pages: `GET /{tenant}/dashboard` (email figures) and the alerts view
(`GET /{tenant}/console/alerts`, routed in services/api/console/alerts.py). Each is one
self-contained page: HTML with its CSS and JS inline, charts drawn as inline SVG by that
JS; no CDN, so it works offline. The pages share a head fragment (head.html, ranges.html)
and a script of helpers (common.js) inlined ahead of their own, assembled once here.

A page holds no data: its script reads the API key from the URL fragment
(`#key=blf_...`, never sent to a server) and fetches this origin's API with it (the
alerts view through the api's same-origin proxy to the alerting service). So a page is
served for any well-formed tenant id, without a key, and says nothing about whether the
tenant exists. A Content-Security-Policy pins the inline script and style by hash and
allows fetches to this origin only.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import web

from services.api.http import not_found
from services.api.keys import SETTINGS
from shared.ids import valid_tenant

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"


@dataclass(frozen=True, slots=True)
class PageSpec:
    template: str
    title: str
    sheets: tuple[str, ...]  # inlined in this order
    script: str
    # The key form's: how to open the page with a key, and what its button shows.
    auth_hint: str
    auth_what: str


PAGES: dict[str, PageSpec] = {
    "dashboard": PageSpec(
        "page.html",
        "Belfry · {tenant}",
        ("dashboard.css",),
        "dashboard.js",
        "Open this page as <code>/{tenant}/dashboard#key=&lt;your api key&gt;</code>, or paste"
        " the key here.",
        "figures",
    ),
    "alerts": PageSpec(
        "alerts.html",
        "Belfry · {tenant} · alerts",
        ("dashboard.css", "alerts.css"),
        "alerts.js",
        "Open this page as <code>/{tenant}/console/alerts#key=&lt;your api key&gt;</code>, or"
        " paste the key here.",
        "alerts",
    ),
    "health": PageSpec(
        "health.html",
        "Belfry · health",
        ("health.css",),
        "health.js",
        "This view is for Belfry's operators: open it as"
        " <code>/console/health#key=&lt;an API key of tenant belfry&gt;</code>, or paste the"
        " key here.",
        "health",
    ),
}
# Fragments a template includes as a `{name}` line: the head every page shares, the key
# form, and the range buttons with the live status of the pages that have a time range.
FRAGMENTS = ("head", "auth", "ranges")
# The helpers every page's script shares, inlined ahead of it in the same <script>.
COMMON_JS = "common.js"


@dataclass(frozen=True, slots=True)
class Page:
    template: str
    css: str
    js: str
    csp: str


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def _assets(name: str = "dashboard") -> Page:
    """A page's template, CSS, JS and Content-Security-Policy, read once."""
    spec = PAGES[name]
    css = "\n".join((ASSETS / sheet).read_text() for sheet in spec.sheets)
    js = (ASSETS / COMMON_JS).read_text() + (ASSETS / spec.script).read_text()
    csp = (
        f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return Page(_assemble(spec), css, js, csp)


def _assemble(spec: PageSpec) -> str:
    """A page's template with its fragments in, its texts set (still holding `{tenant}`)."""
    text = (ASSETS / spec.template).read_text()
    for fragment in FRAGMENTS:
        text = text.replace("{" + fragment + "}\n", (ASSETS / f"{fragment}.html").read_text())
    return (
        text.replace("{title}", spec.title)
        .replace("{auth_hint}", spec.auth_hint)
        .replace("{auth_what}", spec.auth_what)
    )


def render(tenant: str, poll_seconds: int, open_mode: bool, name: str = "dashboard") -> str:
    page = _assets(name)
    # The per-page values first, the assets last: the inlined script must stay byte for
    # byte what the CSP hash covers. The tenant id pattern admits no markup; escape anyway.
    return (
        page.template.replace("{tenant}", html.escape(tenant))
        .replace("{poll}", str(poll_seconds))
        .replace("{open}", "true" if open_mode else "false")
        .replace("{css}", page.css)
        .replace("{js}", page.js)
    )


def page_headers(name: str) -> dict[str, str]:
    """What every console page is served with: its own strict CSP, no referrer, no cache."""
    return {
        "Content-Security-Policy": _assets(name).csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


def page_response(request: web.Request, name: str) -> web.Response:
    tenant = request.match_info["tenant"]
    if not valid_tenant(tenant):
        raise not_found("unknown tenant")
    settings = request.app[SETTINGS]
    return web.Response(
        text=render(tenant, settings.dashboard_poll_seconds, settings.little_bell_open, name),
        content_type="text/html",
        headers=page_headers(name),
    )


async def dashboard(request: web.Request) -> web.Response:
    return page_response(request, "dashboard")
