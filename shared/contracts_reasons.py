"""Why an envelope was refused, in the contract's words: msgspec's messages (`Expected
`str`, got `int` - at `$.data.ua``) mapped by field to the reasons the dead-letter
headers have always carried (`data.ua must be a string of at most 1024 characters`).

The reasons raised by the types' own checks (`__post_init__`) are already in those
words and pass through; `metric.v2` and `error.v1` keep msgspec's wording with a `data.`
path, as their hooks gave it before.
"""

from __future__ import annotations

import re
from typing import Any

from shared.contracts_types import (
    ALERT_NOTIFICATION_V2,
    ALERT_STATUSES,
    ALERT_STATUSES_V2,
    MAX_IP_LEN,
    MAX_PURPOSE_LEN,
    MAX_UA_LEN,
)
from shared.errors_contract import ERROR_V1
from shared.samples import METRIC_V2

# msgspec's own messages start so; anything else is a reason a type's check raised.
_NATIVE = (
    "Expected ",
    "Object missing required field",
    "Object contains unknown field",
    "Invalid ",
    "JSON is malformed",
    "Input data was truncated",
)
_TIMESTAMPS = ("occurred_at", "received_at", "starts_at", "ends_at")
_INDEX = re.compile(r"\[[^\]]*\]")
_STR_MAP = "{path} must be an object of strings"
_NON_EMPTY = "{path} must be a non-empty string"

# Field (list indexes and dict keys as `[]`) -> reason; {path} is the field as found.
REASONS = {
    "": "envelope is not an object",
    "id": "id must be a UUID string",
    "tenant": "tenant is missing or not a valid tenant id",
    "data": "data must be an object",
    "trace": "trace must be an object",
    "data.email_id": "data.email_id is missing or not a valid email id",
    "data.ip": f"data.ip must be a string of at most {MAX_IP_LEN} characters",
    "data.ua": f"data.ua must be a string of at most {MAX_UA_LEN} characters",
    "data.url": "data.url must be an http(s) URL",
    "data.hints": "data.hints must be an object",
    "data.hints.purpose": f"data.hints.purpose must be a string of at most {MAX_PURPOSE_LEN}",
    "data.hints.dnt": "data.hints.dnt must be true or false",
    "data.hints.gpc": "data.hints.gpc must be true or false",
    "data.name": "data.name must be a string",
    "data.value": "data.value must be a number",
    "data.labels": _STR_MAP,
    "data.labels[]": "data.labels must be an object of strings",
    "data.notification_id": "data.notification_id must be a UUID string",
    **{f"data.{f}": _NON_EMPTY for f in ("channel", "channel_type", "rule_id", "rule_name")},
    "data.group_key": _NON_EMPTY,
    "data.status": "{path} must be {allowed}",
    "data.group_labels": _STR_MAP,
    "data.group_labels[]": "data.group_labels must be an object of strings",
    "data.alerts": "data.alerts must be a non-empty array",
    "data.alerts[]": "{path} must be an object",
    "data.alerts[].fingerprint": "{path} must be a string",
    "data.alerts[].status": "{path} must be {allowed}",
    "data.alerts[].labels": _STR_MAP,
    "data.alerts[].annotations": _STR_MAP,
    "data.alerts[].value": "{path} must be a number or null",
}


def reason(message: str, doc: dict[str, Any]) -> str:
    """The reason for msgspec's `message` about decoding envelope `doc`."""
    text, _, where = message.partition(" - at `")
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    if text.startswith(_NATIVE[1]):  # missing: the field itself is what's wrong
        path = _join(path, text.split("`")[1])
    elif text.startswith(_NATIVE[2]):
        field = text.split("`")[1]
        return f"{path} has unknown fields: {field[:80]}"
    if doc.get("type") in (METRIC_V2, ERROR_V1) and path.startswith("data"):
        return f"{text} - at `{path}`"[:300]  # their own wording, as before
    if not text.startswith(_NATIVE):
        return text[:300]  # a type's check: the reason already
    last = path.rsplit(".", 1)[-1]
    if last in _TIMESTAMPS:
        return _timestamp_reason(text, path, last, doc)
    template = REASONS.get(_INDEX.sub("[]", path)[:200])
    if template is None:
        return f"{text} - at `{path}`"[:300]
    statuses = ALERT_STATUSES_V2 if doc.get("type") == ALERT_NOTIFICATION_V2 else ALERT_STATUSES
    allowed = " or ".join(repr(s) for s in statuses)
    return template.format(path=path, allowed=allowed)


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _timestamp_reason(text: str, path: str, field: str, doc: dict[str, Any]) -> str:
    if "timezone" in text:
        return f"{field} must carry a UTC offset"
    raw = _lookup(doc, path)
    if not isinstance(raw, str):
        return f"{field} must be an RFC 3339 string"
    return f"{field} is not an RFC 3339 timestamp: {raw[:40]!r}"


def _lookup(doc: Any, path: str) -> Any:
    """The value at `path` (`data.alerts[0].starts_at`) in `doc`, or None."""
    for part in re.findall(r"[^.\[\]]+", path):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc
