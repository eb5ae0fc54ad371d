"""The api's OpenAPI document describes exactly the routes the app serves (no route
undocumented, nothing documented that is not served), as the alerting service's test
does for its own; and what it serves is the document generated from the contract types."""

from __future__ import annotations

import re

import yaml
from aiohttp import web

from services.api import openapi
from services.api.app import OPENAPI, create_app
from services.api.keys import ApiDeps
from services.api.settings import ApiSettings
from shared.probes import PROBE_PATHS
from tests.conftest import Started


def _served(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path not in PROBE_PATHS and route.method != "HEAD":
            # `{format:csv|ndjson}` is served as one route, documented as each path.
            for variant in _variants(path, info.get("pattern")):
                routes.add((variant, route.method.lower()))
    return routes


def _variants(path: str, pattern: re.Pattern[str] | None) -> list[str]:
    """`/{tenant}/export.{format}` with `format` one of csv|ndjson → both paths."""
    for name, options in re.findall(r"\(\?P<(\w+)>([\w|]+)\)", pattern.pattern if pattern else ""):
        if "|" in options:
            return [path.replace(f"{{{name}}}", option) for option in options.split("|")]
    return [path]


def test_openapi_documents_every_route(api_settings: ApiSettings) -> None:
    spec = yaml.safe_load(OPENAPI.read_text())
    served = _served(create_app(api_settings, ApiDeps(self_report=False)))
    documented = {
        (p, m)
        for p, ops in spec["paths"].items()
        for m in ops
        if m != "parameters" and p not in PROBE_PATHS
    }
    assert served - documented == set(), "routes not in openapi.yaml"
    assert documented - served == set(), "documented but not served"


async def test_the_served_document_is_the_generated_one(start_api: Started) -> None:
    api = await start_api()
    resp = await api.get("/api/v1/openapi.yaml")
    assert resp.status == 200 and resp.content_type == "application/yaml"
    assert await resp.text() == openapi.render()
