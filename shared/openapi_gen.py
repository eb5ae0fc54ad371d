"""Pieces every service's OpenAPI generator shares: an operation table row (`Op`) that
renders itself, parameter and reference helpers, component schemas from msgspec types,
and the YAML rendering the committed documents are compared in.

A service's own generator (services/<name>/openapi.py) holds its description, its shared
error answers and its table of operations; `python -m services.<name>.openapi` writes
the document, and a drift test fails when the committed copy differs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import yaml

from shared import probe_contracts as probes

REF = "#/components/schemas/{name}"
JSON = "application/json"


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def schema_of(shape: Any) -> Any:
    """A Struct type as its component's reference; a schema dict or a name as given."""
    if isinstance(shape, type) and issubclass(shape, msgspec.Struct):
        return ref(shape.__name__)
    if isinstance(shape, str):
        return ref(shape)
    return shape


@dataclass(frozen=True)
class Op:
    """One operation: its answer on success, the shared error answers it can give
    (`errors`), its request body (a contract type, or a schema) and parameters.
    `headers`: the success answer's headers (name -> schema)."""

    method: str
    path: str
    summary: str
    ok: tuple[str, str, Any] = ("200", "OK", None)
    errors: tuple[str, ...] = ("400", "401")
    body: Any = None
    body_required: bool = True
    params: tuple[dict[str, Any], ...] = ()
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    media: str = "application/json"
    security: list[dict[str, list[str]]] | None = None
    headers: dict[str, Any] | None = None

    def document(self, responses: Mapping[str, str]) -> dict[str, Any]:
        """The operation object; `responses`: status -> the shared answer's name."""
        status, text, shape = self.ok
        answer: dict[str, Any] = {"description": text}
        if self.headers:
            answer["headers"] = {k: {"schema": v} for k, v in self.headers.items()}
        if shape is not None:
            answer["content"] = {self.media: {"schema": schema_of(shape)}}
        elif self.media != "application/json":
            answer["content"] = {self.media: {}}
        doc: dict[str, Any] = {"summary": self.summary}
        if self.description:
            doc["description"] = self.description
        if self.security is not None:
            doc["security"] = self.security
        if self.params:
            doc["parameters"] = list(self.params)
        if self.body is not None:
            content = {"application/json": {"schema": schema_of(self.body)}}
            doc["requestBody"] = {"content": content}
            if self.body_required:
                doc["requestBody"]["required"] = True
        answers = {status: answer, **self.extra}
        for code in self.errors:
            answers[code] = {"$ref": f"#/components/responses/{responses[code]}"}
        doc["responses"] = dict(sorted(answers.items()))
        return doc


def paths_of(ops: Iterable[Op], responses: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The document's `paths`: every operation under its path, in table order."""
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = op.document(responses)
    return paths


def _probe(
    path: str, summary: str, ok: tuple[str, Any], bad: str | None = None, media: str = JSON
) -> Op:
    """One probe of shared/probes.py: no key, no shared error answer; `ok`: (the 200's
    description, its shape), `bad`: the 503's description (same shape), if it has one."""
    text, shape = ok
    unready = {"description": bad, "content": {media: {"schema": schema_of(shape)}}}
    extra = {"503": unready} if bad else {}
    return Op("get", path, summary, ("200", text, shape), (), media=media, security=[], extra=extra)


PROBES: tuple[Op, ...] = (
    _probe("/livez", "The process answers (no dependency checked)", ("Alive", probes.Status)),
    _probe(
        "/readyz",
        "Ready for traffic (every hard dependency checked)",
        ("Ready", probes.Status),
        "Not ready, with the reasons",
    ),
    _probe("/health", "Little Bell's health shape", ("Healthy", probes.Health), "Unhealthy"),
    _probe(
        "/health/detailed",
        "Every dependency with its latency",
        ("Healthy or degraded", probes.HealthDetailed),
        "Unhealthy",
    ),
    _probe(
        "/metrics",
        "Prometheus metrics (text format)",
        ("Metrics", {"type": "string"}),
        media="text/plain",
    ),
)
"""The probes every service serves (shared/probes.py), one operation each, as every
document states them: in an `Op` table (`*PROBES`) or as paths (`probe_paths()`)."""


def probe_paths() -> dict[str, dict[str, Any]]:
    """The probes' `paths`, for a document written as paths rather than an `Op` table."""
    return paths_of(PROBES, {})


BEARER = {"type": "http", "scheme": "bearer", "description": "API key blf_<id>_<secret>"}


def api_document(
    info: dict[str, str],
    server: str,
    paths: dict[str, Any],
    components: dict[str, Any],
    schemes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole OpenAPI 3.1 document: `info` (title, description), where it is served,
    its paths and components (responses, schemas); every operation needs the bearer API
    key unless it says otherwise, `schemes` adds other security schemes."""
    return {
        "openapi": "3.1.0",
        "info": {"title": info["title"], "version": "1", "description": info["description"]},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": dict(BEARER), **(schemes or {})},
            **components,
        },
    }


def path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "query", "schema": schema}
    if description:
        param["description"] = description
    return param


def error_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def struct_schemas(types: Iterable[Any]) -> dict[str, Any]:
    """The component schema of every type named (Structs, or unions of them) and every
    Struct they use, each as its document states it: msgspec's schema (title dropped)
    plus the Struct's documentation-only `doc_schema` keywords and `doc_fields` property
    schemas."""
    types = tuple(types)
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    classes = _structs_used(types)
    out = {}
    for name, schema in schemas.items():
        schema = {k: v for k, v in schema.items() if k != "title"}
        cls = classes.get(name)
        schema.update(getattr(cls, "doc_schema", {}))
        for prop, stated in getattr(cls, "doc_fields", {}).items():
            schema["properties"][prop] = stated
        out[name] = schema
    return out


def _structs_used(types: tuple[Any, ...]) -> dict[str, type[msgspec.Struct]]:
    """Every Struct class the types reach (fields, items, unions, bases), by name."""
    found: dict[str, type[msgspec.Struct]] = {}

    def visit(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                return
            found[info.cls.__name__] = info.cls
            for f in info.fields:
                visit(f.type)
            return
        for attr in ("item_type", "key_type", "value_type"):
            inner = getattr(info, attr, None)
            if inner is not None:
                visit(inner)
        for inner in getattr(info, "types", ()) or ():
            visit(inner)
        if isinstance(info, msgspec.inspect.Metadata):
            visit(info.type)

    for info in msgspec.inspect.multi_type_info(types):
        visit(info)
    return found


class _Dumper(yaml.SafeDumper):
    """Multi-line text (docstrings) as YAML block literals, as a person would write it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


class _PlainDumper(_Dumper):
    """Every repeated schema written out again, instead of as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def drift(committed: str, generated: str, regenerate: str) -> str | None:
    """Why a committed document is not the generated one (the start of the diff and the
    command that regenerates it), or None when they are the same: a drift test's
    message."""
    if committed == generated:
        return None
    diff = difflib.unified_diff(
        committed.splitlines(keepends=True),
        generated.splitlines(keepends=True),
        "committed",
        "generated",
    )
    return f"openapi.yaml drifted from the contracts; run {regenerate}\n{''.join(list(diff)[:80])}"


def render_yaml(document: dict[str, Any], *, aliases: bool = True) -> str:
    """A document as YAML, in a stable order (what a committed file holds); `aliases`:
    a schema object used twice is written once, as an anchor (`&id001`) and aliases."""
    return yaml.dump(
        document,
        Dumper=_Dumper if aliases else _PlainDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=None,
    )
