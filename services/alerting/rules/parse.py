"""Parsers for what operators type: durations (`5m`, `1h30m`, `500ms`, or seconds) and
shorthand conditions (`error_rate > 5 for 5m`, `p95(api_latency{service="api"}[5m]) > 0.5`,
`belfry_http_error_rate > 5%`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from services.alerting.rules.model import AGGREGATIONS, Matcher

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # what openapi.yaml's Duration pattern says
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Beyond any sensible rule or silence, and small enough that adding it to a date stays
# within what Python and Postgres store.
MAX_DURATION = 100 * 365 * 86400.0
MAX_CONDITION = 4096  # characters

_AGG = "|".join(AGGREGATIONS)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_CONDITION = re.compile(
    rf"""\s*(?:(?P<agg>{_AGG})\s*\(\s*)?
    (?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*
    (?:\{{(?P<matchers>[^}}]*)\}}\s*)?
    (?:\[(?P<window>[^\]]+)\]\s*)?
    (?(agg)\)\s*)
    (?P<op>>=|<=|==|!=|>|<)\s*
    (?P<threshold>{_NUMBER})\s*(?P<percent>%)?\s*
    (?:for\s+(?P<for>\S+)\s*)?$""",
    re.VERBOSE,
)
_MATCHER = re.compile(
    r"""\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*
    (?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<bare>[^,"'\s]+))\s*(?:,|$)""",
    re.VERBOSE,
)


class ParseError(ValueError):
    pass


def parse_duration(raw: Any, maximum: float = MAX_DURATION) -> float:
    """Seconds from `90`, `90.5`, `"30s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"`; finite,
    not negative and at most `maximum`."""
    if isinstance(raw, bool):
        raise ParseError("must be a duration like 30s, 5m, 1h or a number of seconds")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise ParseError("must be a finite duration")
        if raw < 0:
            raise ParseError("must not be negative")
        if raw > maximum:
            raise ParseError(f"must be at most {maximum:g} seconds")
        return float(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise ParseError("must be a duration like 30s, 5m, 1h or a number of seconds")
    text = raw.strip()
    if _SECONDS.fullmatch(text):
        return parse_duration(float(text), maximum)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ParseError(f"not a duration: {text[:40]!r} (use e.g. 30s, 5m, 1h30m)")
    return parse_duration(total, maximum)


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """`service="api", route=~"/v1/.*"` → matchers."""
    matchers: list[Matcher] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _MATCHER.match(text, pos)
        if match is None or match.end() == pos:
            raise ParseError(f"bad label matcher at {text[pos : pos + 30]!r}")
        value = match["dq"] if match["dq"] is not None else match["sq"]
        value = match["bare"] if value is None else re.sub(r"\\(.)", r"\1", value)
        matchers.append(Matcher(match["label"], match["op"], value))
        pos = match.end()
    return tuple(matchers)


@dataclass(frozen=True, slots=True)
class Condition:
    metric: str
    op: str
    threshold: float
    aggregation: str | None = None
    matchers: tuple[Matcher, ...] = ()
    window: float | None = None
    for_: float | None = None


def parse_condition(text: str) -> Condition:
    """A shorthand condition; `5%` means 0.05 (rates are ratios)."""
    if not isinstance(text, str):
        raise ParseError("must be a string like 'error_rate > 5 for 5m'")
    if len(text) > MAX_CONDITION:
        raise ParseError(f"must be at most {MAX_CONDITION} characters")
    match = _CONDITION.fullmatch(text)
    if match is None:
        raise ParseError(
            'expected \'[agg(]metric[{label="value"}][[window]][)] <op> <number>[%]'
            f" [for <duration>]', got {text[:80]!r}"
        )
    threshold = float(match["threshold"])
    if match["percent"]:
        threshold /= 100
    if not math.isfinite(threshold):  # 1e999 parses as infinity, which JSON cannot store
        raise ParseError(f"threshold {match['threshold'][:40]} is not a finite number")
    return Condition(
        metric=match["metric"],
        op=match["op"],
        threshold=threshold,
        aggregation=match["agg"],
        matchers=parse_matchers(match["matchers"]) if match["matchers"] else (),
        window=parse_duration(match["window"]) if match["window"] else None,
        for_=parse_duration(match["for"]) if match["for"] else None,
    )
