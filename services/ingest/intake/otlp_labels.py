"""OTLP attributes as labels: the resource's (`service.name` -> `service`,
`service.instance.id`, else `host.name` -> `instance`) and each data point's.

Every other resource attribute becomes a label too, sanitised (`k8s.namespace.name` ->
`k8s_namespace_name`), except those that describe the process rather than the service
and would make a new series at every restart or fill the label budget: `telemetry.*`
(the SDK's own), `process.*` (pid, command line), `os.*`, `host.*` (but host.name, above),
`container.*`. A data point's attributes win over the resource's on a clash. Two keys that
sanitise to the same name are joined with `;`, as Prometheus's OTLP translator does. An
empty value means "no label", as in Prometheus. Values: strings as they are, booleans
`true`/`false`, numbers in decimal, bytes in base64, arrays and maps as compact JSON.

Attribute lists arrive as raw bytes (otlp_schema.py); a data point's are converted once
per distinct list and cached (cache.py): the labels dicts handed out are shared, so
nothing may mutate a sample's labels.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from services.ingest.intake.cache import LabelCache
from services.ingest.intake.names import format_float, label_value_problem, otlp_label_name
from services.ingest.intake.result import BAD_LABEL, TOO_MANY_LABELS
from shared.samples import MAX_LABELS

# (reason code, what is wrong): why a set of attributes can't be labels.
Problem = tuple[str, str]
_SKIPPED_PREFIXES = ("telemetry.", "process.", "os.", "host.", "container.")
_MAX_DEPTH = 8
# A data point's raw attributes -> (its own labels or the problem, the resource labels
# last merged with, the merged labels). Resource labels are cached by their raw bytes
# too, so a series gets the same merged dict at every export: what the tenant limits
# remember per labels dict (limits.py) then holds across requests.
_point_cache: LabelCache[tuple[dict[str, str] | Problem, dict[str, str] | None, Any]] = LabelCache()
_resource_cache: LabelCache[dict[str, str] | Problem] = LabelCache(max_entries=1024)


def _parsed(raw: Any) -> list[Any] | Problem:
    try:
        return [KeyValue.FromString(item) for item in raw]
    except DecodeError:
        return BAD_LABEL, "an attribute is not a decodable KeyValue"


def resource_labels(raw: Any) -> dict[str, str] | Problem:
    """The labels every point of a resource carries, or the problem refusing them all
    (shared: one dict per distinct resource, never to be mutated)."""
    key = tuple(raw)
    cached = _resource_cache.get(key)
    if cached is None:
        cached = _resource_labels(raw)
        _resource_cache.put(key, cached)
    return cached


def _resource_labels(raw: Any) -> dict[str, str] | Problem:
    attributes = _parsed(raw)
    if isinstance(attributes, tuple):
        return attributes
    service = instance = host = None
    picked = []
    for kv in attributes:
        key = kv.key
        if key == "service.name":
            service = kv.value
        elif key == "service.instance.id":
            instance = kv.value
        elif key == "host.name":
            host = kv.value
        elif not key.startswith(_SKIPPED_PREFIXES):
            picked.append(kv)
    if len(picked) + 2 > MAX_LABELS:
        return TOO_MANY_LABELS, f"resource has more than {MAX_LABELS} attributes"
    labels: dict[str, str] = {}
    problem = add_attributes(labels, picked)
    if problem:
        return problem
    for name, value in (("service", service), ("instance", instance or host)):
        if value is not None:
            text = attribute_text(value)
            if text is None or label_value_problem(text):
                return BAD_LABEL, f"resource attribute for {name}: not a usable value"
            if text:
                labels[name] = text
    return labels


def point_labels(base: dict[str, str], raw: Any) -> dict[str, str] | Problem:
    """A data point's labels (the resource's, then its own attributes), or a problem."""
    if not raw:
        return base
    if len(base) + len(raw) > MAX_LABELS:
        return TOO_MANY_LABELS, f"more than {MAX_LABELS} labels"
    key = tuple(raw)
    entry = _point_cache.get(key)
    if entry is not None:
        if entry[1] is base:  # the entry holds `base`, so its id is not reused: a safe `is`
            return entry[2]
        if isinstance(entry[0], tuple):
            return entry[0]
    own = _own_labels(key) if entry is None else entry[0]
    if isinstance(own, tuple):
        _point_cache.put(key, (own, None, None))
        return own
    merged = {**base, **own}
    _point_cache.put(key, (own, base, merged))
    return merged


def _own_labels(raw: tuple[bytes, ...]) -> dict[str, str] | Problem:
    attributes = _parsed(raw)
    if isinstance(attributes, tuple):
        return attributes
    own: dict[str, str] = {}
    return add_attributes(own, attributes) or own


def add_attributes(labels: dict[str, str], attributes: Any) -> Problem | None:
    for kv in attributes:
        name = otlp_label_name(kv.key)
        if name is None:
            return BAD_LABEL, f"attribute name {kv.key[:60]!r} can't be a label name"
        text = attribute_text(kv.value)
        if text is None:
            return BAD_LABEL, f"attribute {kv.key[:60]!r}: value nested too deep"
        if not text:
            continue
        problem = label_value_problem(text)
        if problem:
            return BAD_LABEL, f"attribute {kv.key[:60]!r}: {problem}"
        old = labels.get(name)
        labels[name] = text if old is None else f"{old};{text}"
    return None


def attribute_text(value: Any) -> str | None:
    """An AnyValue as label text ('' when unset); None if nested deeper than we follow."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which is None:
        return ""
    plain = _plain(value, which, 0)
    if isinstance(plain, str):
        return plain
    if plain is _TOO_DEEP:
        return None
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, int):
        return str(plain)
    if isinstance(plain, float):
        return format_float(plain)
    try:
        return orjson.dumps(plain).decode()
    except orjson.JSONEncodeError:  # NaN is fine for orjson (null); depth is bounded above
        return None


_TOO_DEEP = object()


def _plain(value: Any, which: str | None, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return _TOO_DEEP
    if which == "string_value":
        return value.string_value
    if which in ("bool_value", "int_value", "double_value"):
        return getattr(value, which)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "array_value":
        items = [_plain(v, v.WhichOneof("value"), depth + 1) for v in value.array_value.values]
        return _TOO_DEEP if any(i is _TOO_DEEP for i in items) else items
    if which == "kvlist_value":
        pairs = {
            kv.key: _plain(kv.value, kv.value.WhichOneof("value"), depth + 1)
            for kv in value.kvlist_value.values
        }
        return _TOO_DEEP if any(v is _TOO_DEEP for v in pairs.values()) else pairs
    return None
