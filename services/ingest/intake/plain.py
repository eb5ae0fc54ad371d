"""`POST /v1/samples`: the plain JSON form, for a curl or a cron job.

Body: `[{"name", "value", "labels"?, "ts"?, "kind"?}]`:

- `name`: a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), checked, never rewritten;
- `value`: a finite number (JSON has no NaN; a boolean is not a number here);
- `labels`: an object of strings (names `[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed);
- `ts`: epoch seconds (a number, fractions kept to the ms) or an RFC 3339 string with an
  offset, at most 5 minutes ahead; absent: when ingest received it;
- `kind`: `gauge` (default), `counter`, `counter_delta`, `histogram_bucket` (needs an
  `le` label), `summary_quantile` (needs `quantile`).

Each item is decoded through `contracts.PlainSample` and checked alone: a bad one is listed
by index with the reason (the same reason codes as the other protocols, plus the message),
the others go on. A `tenant` field is ignored: the tenant is the ingest token's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from math import isfinite
from typing import Any

import msgspec

from services.ingest.contracts import PlainSample
from services.ingest.intake.names import label_value_problem
from services.ingest.intake.result import (
    BAD_LABEL,
    BAD_NAME,
    BAD_POINT,
    BAD_TIMESTAMP,
    NON_FINITE,
    TOO_MANY_LABELS,
    DecodeResult,
)
from shared.decoding import located
from shared.samples import KINDS, MAX_LABELS, MAX_TS_MS, Sample, valid_label_name, valid_metric_name

FUTURE_SKEW_MS = 5 * 60 * 1000


class _Refused(ValueError):
    """args = (reason code, message for the sender)."""


@dataclass(slots=True)
class PlainResult(DecodeResult):
    """A DecodeResult that also lists each refused item: `[{"index", "error"}]`."""

    errors: list[dict[str, Any]] = field(default_factory=list)


def decode_plain(items: list[Any], now_ms: int) -> PlainResult:
    out = PlainResult()
    for index, item in enumerate(items):
        try:
            out.samples.append(_sample(item, now_ms))
        except _Refused as exc:
            reason, message = exc.args
            out.reject(reason, message)
            out.errors.append({"index": index, "error": message})
    return out


_FIELDS = frozenset(PlainSample.__struct_fields__)  # the JSON names: the same
# A field whose value its type refuses, reported as before the types: (reason, message).
_REFUSALS = {
    "name": (BAD_NAME, "name must be a metric name like http_requests_total"),
    "value": (BAD_POINT, "value must be a number"),
    "kind": (BAD_POINT, f"kind must be one of {', '.join(KINDS)}"),
    "ts": (BAD_TIMESTAMP, "ts must be epoch seconds or an RFC 3339 string"),
}
_MISSING = re.compile(r"^Object missing required field `(?P<field>\w+)`")


def _decoded(item: Any) -> PlainSample:
    """The item as its contract type (services/ingest/contracts.py), or _Refused."""
    if not isinstance(item, dict):
        raise _Refused(BAD_POINT, "item must be an object")
    unknown = item.keys() - _FIELDS
    if unknown:
        raise _Refused(BAD_POINT, f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    try:
        return msgspec.convert(item, PlainSample)
    except msgspec.ValidationError as exc:
        where, problem = located(str(exc))
        missing = _MISSING.match(problem)
        field = missing["field"] if missing else where.lstrip(".").split(".")[0]
        if field == "labels":
            _labels(item["labels"])  # names the label and its problem
        raise _Refused(*_REFUSALS.get(field, (BAD_POINT, problem))) from None


def _sample(item: Any, now_ms: int) -> Sample:
    sample = _decoded(item)
    if not valid_metric_name(sample.name):
        raise _Refused(*_REFUSALS["name"])
    if not isfinite(sample.value):  # an int past 1e308 becomes inf
        raise _Refused(NON_FINITE, "value must be finite")
    labels = _labels(sample.labels)
    ts = _millis(sample.ts, now_ms) if sample.ts is not None else now_ms
    try:
        return Sample(sample.name, sample.value, ts, labels, sample.kind)
    except ValueError as exc:  # a bucket without `le`, a quantile without `quantile`
        raise _Refused(BAD_POINT, str(exc)) from None


def _labels(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _Refused(BAD_LABEL, "labels must be an object of strings")
    if len(raw) > MAX_LABELS:
        raise _Refused(TOO_MANY_LABELS, f"{len(raw)} labels (at most {MAX_LABELS})")
    for key, value in raw.items():
        if not valid_label_name(key):
            raise _Refused(BAD_LABEL, f"label name {key[:40]!r} is not a label name")
        if not isinstance(value, str):
            raise _Refused(BAD_LABEL, f"label {key} must be a string")
        problem = label_value_problem(value)
        if problem:
            raise _Refused(BAD_LABEL, f"label {key}: {problem}")
    # An empty value means "no label", as in Prometheus.
    return {k: v for k, v in raw.items() if v} if "" in raw.values() else raw


def _millis(raw: str | float, now_ms: int) -> int:
    if isinstance(raw, float):
        if not isfinite(raw) or not 0 <= raw * 1000 <= MAX_TS_MS:
            raise _Refused(BAD_TIMESTAMP, "ts is out of range")
        ms = int(raw * 1000)
    else:
        try:
            stamp = datetime.fromisoformat(raw)
        except ValueError:
            raise _Refused(BAD_TIMESTAMP, "ts is not an RFC 3339 timestamp") from None
        if stamp.tzinfo is None:
            raise _Refused(BAD_TIMESTAMP, "ts must carry a UTC offset")
        try:
            ms = int(stamp.timestamp() * 1000)
        except (OverflowError, ValueError, OSError):
            raise _Refused(BAD_TIMESTAMP, "ts is out of range") from None
        if ms < 0:
            raise _Refused(BAD_TIMESTAMP, "ts is before 1970")
    if ms > now_ms + FUTURE_SKEW_MS:
        raise _Refused(BAD_TIMESTAMP, "ts is in the future")
    return ms
