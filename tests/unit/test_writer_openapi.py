"""The committed OpenAPI document of the writer is what its generator writes
(services/writer/openapi.py, the probes' part shared with every service's): regenerate with

    .venv/bin/python -m services.writer.openapi > services/writer/openapi.yaml

It describes exactly the routes the writer's app serves, and the app serves it."""

from __future__ import annotations

import re

import orjson
import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.writer import openapi
from services.writer.app import OPENAPI, create_app
from services.writer.settings import WriterSettings
from shared.openapi_gen import drift, probe_paths
from shared.settings import CommonSettings

REGENERATE = ".venv/bin/python -m services.writer.openapi > services/writer/openapi.yaml"


def _app() -> web.Application:
    """The writer's app, built but not started (no broker, no database)."""
    return create_app(WriterSettings(common=CommonSettings.from_env("writer", {})))


def test_the_committed_document_is_the_generated_one() -> None:
    problem = drift(OPENAPI.read_text(), openapi.render(), REGENERATE)
    assert problem is None, problem


def test_every_reference_resolves() -> None:
    document = yaml.safe_load(openapi.render())
    named = set(re.findall(r"#/components/schemas/(\w+)", orjson.dumps(document).decode()))
    assert named and named <= set(document["components"]["schemas"])


def test_the_probes_are_stated_as_every_service_states_them() -> None:
    document = yaml.safe_load(openapi.render())
    ingest = yaml.safe_load(OPENAPI.parent.parent.joinpath("ingest/openapi.yaml").read_text())
    for path in probe_paths():
        assert document["paths"][path] == ingest["paths"][path], path


def test_the_document_describes_every_route_served() -> None:
    document = yaml.safe_load(OPENAPI.read_text())
    served = {
        (route.resource.canonical, route.method.lower())
        for route in _app().router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented


async def test_the_app_serves_the_committed_document() -> None:
    app = _app()
    match = await app.router.resolve(make_mocked_request("GET", "/v1/openapi.yaml", app=app))
    resp = await match.handler(make_mocked_request("GET", "/v1/openapi.yaml", app=app))
    assert isinstance(resp, web.Response) and resp.content_type == "application/yaml"
    assert resp.body == OPENAPI.read_bytes()
