"""The ingest service's OpenAPI document, generated: the component schemas from the
contract types (services/ingest/contracts.py, and `ErrorItem` of intake/errors.py) by
msgspec.json.schema_components, the paths from the table in openapi_paths.py.

    .venv/bin/python -m services.ingest.openapi > services/ingest/openapi.yaml

The committed file is what `/v1/openapi.yaml` serves; tests/unit/test_ingest_openapi.py
fails when it differs from what this command writes.

The Struct-to-component step and the YAML rendering are shared/openapi_gen.py's, as for
the api and alerting documents; the probes' paths too (`probe_paths()`), their answers'
types are shared/probe_contracts.py's.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from services.ingest import contracts as c
from services.ingest import openapi_intake as i
from services.ingest import openapi_paths as p
from services.ingest.intake.errors import ErrorItem
from shared.openapi_gen import REF, probe_paths, render_yaml, struct_schemas
from shared.probe_contracts import TYPES as PROBE_TYPES

TYPES = (*c.TYPES, *PROBE_TYPES, ErrorItem)
# Components used only to state parameters (the path and query of the hit routes).
PARAMETER_TYPES = ("HitPath", "ClickQuery")


def generated() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the track body's schema, every component schema by name), from the types."""
    (track_body,), _ = msgspec.json.schema_components((c.TrackBody,), ref_template=REF)
    schemas = struct_schemas(TYPES)
    for schema in schemas.values():
        if schema.get("required") == []:  # msgspec's, for a Struct of optional fields
            del schema["required"]
    return track_body, schemas


def parameters(schemas: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The hit routes' parameters, each stated by its field of `HitPath` / `ClickQuery`."""
    path, query = schemas["HitPath"], schemas["ClickQuery"]
    out = {}
    for name, field in (("Tenant", "tenant"), ("EmailId", "email_id")):
        out[name] = {"name": field, "in": "path", "required": True}
        out[name]["schema"] = path["properties"][field]
    for name, field in (("ClickUrl", "url"), ("ClickSig", "sig")):
        schema = dict(query["properties"][field])
        param = {"name": field, "in": "query", "required": True}
        if "description" in schema and name == "ClickSig":
            param["description"] = schema.pop("description")
        out[name] = {**param, "schema": schema}
    return out


def paths(track_body: dict[str, Any]) -> dict[str, Any]:
    """Every route of the service, in the order of the routes table (app.py)."""
    return {
        "/v1/openapi.yaml": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI document", "content": {"application/yaml": {}}}
                },
            }
        },
        **p.hit_routes(),
        "/v1/track": {"post": p.track(track_body)},
        "/v1/metrics": {"post": i.otlp_metrics()},
        "/api/v1/write": {"post": i.remote_write()},
        "/v1/samples": {"post": i.samples()},
        "/v1/errors": {"post": i.errors_route()},
        "/v1/logs": {"post": i.otlp_logs()},
        **probe_paths(),
    }


def document() -> dict[str, Any]:
    track_body, schemas = generated()
    params = parameters(schemas)
    for name in PARAMETER_TYPES:
        del schemas[name]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Belfry ingest", "version": "1", "description": p.DESCRIPTION},
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths(track_body),
        "components": {
            "securitySchemes": p.SECURITY,
            "parameters": params,
            "responses": p.RESPONSES,
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render() -> str:
    """The document as YAML, in a stable order (what the committed file holds)."""
    return render_yaml(document(), aliases=False)


if __name__ == "__main__":
    sys.stdout.write(render())
