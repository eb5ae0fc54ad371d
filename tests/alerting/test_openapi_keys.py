"""Object keys in the alerting API's request bodies: the document refuses a NUL in any of
them, as the service does (routes/common.py refuses a NUL in any key or string of a body:
Postgres cannot store it). A key the document admits but the service refuses fails
schemathesis with ST202 (a schema-valid request answered 400), as a NUL in an ignored key
of a rule's `no_data` object did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import msgspec
import pytest

from services.alerting.contracts_rules import RuleInput
from services.alerting.external import AlertsError, parse_alerts
from services.alerting.openapi import document
from services.alerting.rules.validate import nul_field

NUL_KEY = "a\x00b"
DOC = document()
SCHEMAS = DOC["components"]["schemas"]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    return SCHEMAS[ref.rsplit("/", 1)[1]] if ref.startswith("#/components/schemas/") else node


def _refuses_nul_keys(node: dict[str, Any], seen: frozenset[int] = frozenset()) -> bool:
    """Whether `node` refuses every object with a NUL key: no other keys than its named
    ones, or key names that exclude NUL (itself, by its $ref, any allOf part, or every
    anyOf/oneOf alternative)."""
    if id(node) in seen:
        return False
    seen |= {id(node)}
    if node.get("additionalProperties") is False:
        return True
    names = node.get("propertyNames")
    if names is not None and not _valid(names, NUL_KEY):
        return True
    parts = [_resolve(node)] if "$ref" in node else []
    alternatives: list[list[Any]] = [node[k] for k in ("anyOf", "oneOf") if node.get(k)]
    return any(_refuses_nul_keys(p, seen) for p in [*parts, *node.get("allOf", [])]) or any(
        all(_refuses_nul_keys(p, seen) for p in alts) for alts in alternatives
    )


def _property_refuses(node: dict[str, Any], name: str, depth: int = 0) -> bool:
    """Whether `node` says its property `name` refuses NUL keys (as `_refuses_nul_keys`)."""
    if depth > 8:
        return False
    node = _resolve(node)
    own = node.get("properties", {}).get(name)
    if own is not None and _refuses_nul_keys(own):
        return True
    alternatives: list[list[Any]] = [node[k] for k in ("anyOf", "oneOf") if node.get(k)]
    return any(_property_refuses(p, name, depth + 1) for p in node.get("allOf", [])) or any(
        all(_property_refuses(p, name, depth + 1) for p in alts) for alts in alternatives
    )


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator({**schema, "components": DOC["components"]}).is_valid(
        value
    )


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return "object" in kinds or any(k in node for k in ("properties", "additionalProperties"))


def _open_objects(
    node: Any, where: str, covered: bool, seen: set[str], context: tuple[Any, ...] = ()
) -> Iterator[str]:
    """Paths of the object schemas reachable from `node` that admit a NUL key: `covered`
    when a schema for the same value refuses them, `context` the schemas that enclose
    `node` for the same value (an anyOf, oneOf or allOf)."""
    if not isinstance(node, dict):
        return
    covered = covered or _refuses_nul_keys(node)
    if "$ref" in node:
        key = f"{node['$ref']}:{covered}"
        if key not in seen:
            seen.add(key)
            yield from _open_objects(_resolve(node), node["$ref"], covered, seen)
    if _is_object(node) and not covered:
        yield where
    here = (*context, node)
    for combinator in ("allOf", "anyOf", "oneOf"):
        for i, part in enumerate(node.get(combinator, [])):
            yield from _open_objects(part, f"{where}/{combinator}/{i}", covered, seen, here)
    for name, part in node.get("properties", {}).items():
        told = any(_property_refuses(c, name) for c in here)
        yield from _open_objects(part, f"{where}/{name}", told, seen)
    for child in ("additionalProperties", "items"):
        yield from _open_objects(node.get(child), f"{where}/{child}", False, seen)


def _request_bodies() -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            for media in op.get("requestBody", {}).get("content", {}).values():
                yield f"{method.upper()} {path}", media["schema"]


# Where a NUL key is accepted: an Alertmanager alert's other fields are ignored as they
# come, never stored (routes/am_alerts.py checks only the fields it keeps).
ACCEPTED = {"POST /api/v2/alerts": ["#/components/schemas/AmAlert"]}


@pytest.mark.parametrize(("operation", "schema"), list(_request_bodies()))
def test_every_request_body_object_refuses_a_nul_key(operation: str, schema: Any) -> None:
    assert list(_open_objects(schema, operation, False, set())) == ACCEPTED.get(operation, [])


@pytest.mark.parametrize(
    "body",
    [
        {"name": "r", "condition": "cpu > 1", "no_data": {"mode": "keep", NUL_KEY: 1}},
        {"name": "r", "condition": "cpu > 1", "labels": {NUL_KEY: "x"}},
        {"name": "r", "condition": "cpu > 1", "annotations": {NUL_KEY: "x"}},
    ],
)
def test_a_rule_with_a_nul_key_is_refused_and_the_document_says_so(body: dict[str, Any]) -> None:
    assert nul_field(body) is not None  # what every route refuses first
    assert not _valid({"$ref": "#/components/schemas/RuleInput"}, body)
    clean = {k: v for k, v in body.items() if k not in ("labels", "annotations", "no_data")}
    assert _valid({"$ref": "#/components/schemas/RuleInput"}, clean)


@pytest.mark.parametrize("field", ["labels", "annotations", "matchers"])
def test_the_rule_type_refuses_a_nul_in_a_label_name(field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"in `\\$.{field}`"):
        msgspec.convert({"name": "r", field: {NUL_KEY: "x"}}, RuleInput)


def test_an_alertmanager_alert_with_a_nul_key_is_refused_by_the_document() -> None:
    alert = {"labels": {"alertname": "x"}, "annotations": {NUL_KEY: "x"}}
    with pytest.raises(AlertsError) as refused:
        parse_alerts([alert])
    assert refused.value.fields == {"0.annotations.a\x00b": "must not contain NUL characters"}
    assert not _valid({"$ref": "#/components/schemas/AmAlert"}, alert)
    assert _valid({"$ref": "#/components/schemas/AmAlert"}, {**alert, "annotations": {"a": "x"}})
