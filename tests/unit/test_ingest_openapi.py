"""The committed OpenAPI document of the ingest service is what its generator writes
(services/ingest/openapi.py, from services/ingest/contracts.py): regenerate with

    .venv/bin/python -m services.ingest.openapi > services/ingest/openapi.yaml
"""

from __future__ import annotations

import re

import orjson
import yaml

from services.ingest import openapi
from services.ingest.app import OPENAPI
from shared.openapi_gen import drift

REGENERATE = ".venv/bin/python -m services.ingest.openapi > services/ingest/openapi.yaml"


def test_the_committed_document_is_the_generated_one() -> None:
    problem = drift(OPENAPI.read_text(), openapi.render(), REGENERATE)
    assert problem is None, problem


def test_every_reference_resolves() -> None:
    document = yaml.safe_load(openapi.render())
    text = orjson.dumps(document).decode()
    components = document["components"]
    for kind in ("schemas", "responses", "parameters"):
        named = set(re.findall(rf"#/components/{kind}/(\w+)", text))
        assert named <= set(components[kind]), named - set(components[kind])


def test_the_typed_bodies_are_stated_by_their_types() -> None:
    document = yaml.safe_load(openapi.render())
    schemas = document["components"]["schemas"]
    track = document["paths"]["/v1/track"]["post"]["requestBody"]["content"]["application/json"]
    assert track["schema"]["items"]["anyOf"] == [
        {"$ref": "#/components/schemas/OpenHit"},
        {"$ref": "#/components/schemas/ClickHit"},
    ]
    click = schemas["ClickHit"]
    assert click["additionalProperties"] is False
    assert click["required"] == ["type", "tenant", "email_id", "url"]
    assert click["properties"]["type"] == {"enum": ["click"]}
    assert schemas["OpenHit"]["properties"]["url"] == {"type": "null", "default": None}
    # Numbers as numbers (the hand-written document had "1.0e300" read as text).
    assert schemas["PlainSample"]["properties"]["value"]["maximum"] == 1e300
    sig = document["components"]["parameters"]["ClickSig"]
    assert sig["in"] == "query" and sig["schema"]["pattern"].startswith("^[A-Za-z0-9_-]{1,16}")
