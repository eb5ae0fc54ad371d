"""The ingest service's OpenAPI document, generated: the component schemas from the
contract types (services/ingest/contracts.py, and `ErrorItem` of intake/errors.py) by
msgspec.json.schema_components, the paths from the table in openapi_paths.py.

    .venv/bin/python -m services.ingest.openapi > services/ingest/openapi.yaml

The committed file is what `/v1/openapi.yaml` serves; tests/unit/test_ingest_openapi.py
fails when it differs from what this command writes.

(services/alerting/openapi.py does the same for alerting; the YAML rendering and the
Struct-to-component step could move to one shared helper.)
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import yaml

from services.ingest import contracts as c
from services.ingest import openapi_intake as i
from services.ingest import openapi_paths as p
from services.ingest.intake.errors import ErrorItem

REF = "#/components/schemas/{name}"
TYPES = (*c.TYPES, ErrorItem)
# Components used only to state parameters (the path and query of the hit routes).
PARAMETER_TYPES = ("HitPath", "ClickQuery")


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def _structs() -> dict[str, type[msgspec.Struct]]:
    """The Struct types of the document by name (to find their doc_* metadata)."""
    found: dict[str, type[msgspec.Struct]] = {}
    pending: list[type[msgspec.Struct]] = [msgspec.Struct]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("services.ingest"):
                found[sub.__name__] = sub
    return found


def document_schema(cls: type[msgspec.Struct] | None, schema: dict[str, Any]) -> dict[str, Any]:
    """A component as the document states it: msgspec's schema of the Struct, plus its
    documentation-only `doc_schema` keywords and `doc_fields` property schemas."""
    schema = {k: v for k, v in schema.items() if k != "title" and v != []}  # required: []
    schema.update(getattr(cls, "doc_schema", {}))
    for field, stated in getattr(cls, "doc_fields", {}).items():
        schema["properties"][field] = stated
    return schema


def generated() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the track body's schema, every component schema by name), from the types."""
    (track_body, *_), schemas = msgspec.json.schema_components(
        (c.TrackBody, *TYPES), ref_template=REF
    )
    structs = _structs()
    schemas = {name: document_schema(structs.get(name), s) for name, s in schemas.items()}
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
        **p.probes(),
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


class _Dumper(yaml.SafeDumper):
    """Multi-line text as YAML block literals, as a person would write it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render() -> str:
    """The document as YAML, in a stable order (what the committed file holds)."""
    return yaml.dump(
        document(),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=None,
    )


if __name__ == "__main__":
    sys.stdout.write(render())
