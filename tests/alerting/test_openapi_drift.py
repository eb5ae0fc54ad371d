"""The committed OpenAPI document of the alerting service is what its generator writes
(services/alerting/openapi.py, from the contract types): regenerate with

    .venv/bin/python -m services.alerting.openapi > services/alerting/openapi.yaml
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import orjson
import yaml

from services.alerting import openapi
from services.alerting.routes import OPENAPI

REGENERATE = ".venv/bin/python -m services.alerting.openapi > services/alerting/openapi.yaml"


def test_the_committed_document_is_the_generated_one() -> None:
    committed = Path(OPENAPI).read_text()
    generated = openapi.render()
    if committed != generated:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    generated.splitlines(keepends=True),
                    "committed",
                    "generated",
                )
            )[:80]
        )
        raise AssertionError(f"openapi.yaml drifted from the contracts; run {REGENERATE}\n{diff}")


def test_every_reference_resolves_and_the_typed_bodies_are_components() -> None:
    document = yaml.safe_load(openapi.render())
    schemas = document["components"]["schemas"]
    named = set(re.findall(r"#/components/schemas/(\w+)", orjson.dumps(document).decode()))
    assert named <= set(schemas), named - set(schemas)
    silence = schemas["SilenceInput"]
    assert silence["required"] == ["matchers", "author"]
    assert silence["additionalProperties"] is False
    post = document["paths"]["/api/v1/silences"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SilenceInput"
    }
