"""A JSON request body decoded through its contract type (a msgspec Struct) field by
field, so that every field's problem is reported at once, in the `{"error", "fields"}`
shape every service answers invalid input with.

msgspec's own decode stops at the first problem; a client fixing a form wants them all.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any

import msgspec


def field_values(
    cls: type[msgspec.Struct],
    doc: Any,
    messages: Mapping[str, str] | None = None,
    unknown: str = "unknown field",
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each field of `doc` converted to its type on its own: (values that converted, by
    their JSON names; errors by field path).
    `messages`: the problem to report for a field whose own value is refused (missing
    or of the wrong type), instead of msgspec's wording. `unknown`: the problem of a
    field the type does not have, when it forbids unknown fields."""
    messages = messages or {}
    if not isinstance(doc, Mapping):
        return {}, {"body": "must be a JSON object"}
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = typing.get_type_hints(cls, include_extras=True)
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if info.forbid_unknown_fields:
        known = {f.encode_name for f in info.fields}
        errors.update({str(k): unknown for k in doc if k not in known})
    for field in info.fields:
        name = field.encode_name
        if name not in doc:
            if field.required:
                errors[name] = messages.get(name, "required")
            continue
        try:
            values[name] = msgspec.convert(doc[name], hints[field.name])
        except msgspec.ValidationError as exc:
            where, problem = located(str(exc))
            errors[name + where] = messages.get(name, problem) if not where else problem
    return values, errors


_AT = re.compile(r"^(?P<problem>.*) - at `(?:key` in `)?\$(?P<path>[^`]*)`$", re.DOTALL)


def located(message: str) -> tuple[str, str]:
    """msgspec's "Expected `str`, got `int` - at `$[0].label`" as (".0.label", problem);
    a refused key ("... - at `key` in `$[0]`") is reported at its object."""
    match = _AT.match(message)
    if match is None:
        return "", message
    path = match["path"].replace("[...]", "").replace("][", ".").replace("[", ".")
    return path.replace("]", ""), match["problem"]
