"""The committed OpenAPI document of the api is what its generator writes
(services/api/openapi.py, from the contract types): regenerate with

    .venv/bin/python -m services.api.openapi > services/api/openapi.yaml
"""

from __future__ import annotations

import re

import orjson
import pytest
import yaml

from services.api import openapi
from services.api.app import OPENAPI
from shared.openapi_gen import drift

REGENERATE = ".venv/bin/python -m services.api.openapi > services/api/openapi.yaml"


def test_the_committed_document_is_the_generated_one() -> None:
    problem = drift(OPENAPI.read_text(), openapi.render(), REGENERATE)
    if problem:
        pytest.fail(problem, pytrace=False)


def test_every_reference_resolves_and_the_bodies_are_the_contract_types() -> None:
    document = yaml.safe_load(openapi.render())
    schemas = document["components"]["schemas"]
    text = orjson.dumps(document).decode()
    named = set(re.findall(r"#/components/schemas/(\w+)", text))
    assert named <= set(schemas), named - set(schemas)
    answers = set(re.findall(r"#/components/responses/(\w+)", text))
    assert answers <= set(document["components"]["responses"])
    post = document["paths"]["/{tenant}/emails"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EmailInput"
    }
    assert "required" not in post["requestBody"]  # no body at all registers an email too
    settings = schemas["SettingsInput"]
    assert settings["additionalProperties"] is False
    assert set(settings["properties"]) == {"ip_mode", "respect_dnt", "retention_months"}
    assert schemas["Stats"]["required"][:4] == ["tenant", "email_id", "from", "to"]
