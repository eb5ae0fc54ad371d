"""Building a `Rule` from a JSON/YAML document, with an error per field.

Accepted document (every field but `name` and the condition is optional)::

    {"name": "high error rate",
     "condition": "belfry_http_error_rate > 5% for 5m",      # shorthand, or the fields:
     "metric": "...", "matchers": [{"label", "op", "value"}] | {"label": "value"},
     "aggregation": "avg", "window": "5m", "op": ">", "threshold": 0.05, "for": "5m",
     # or, instead of metric/matchers/aggregation/window, an expression (rules/expr.py):
     "expr": {"op": "/", "left": {...}, "right": {...}},
     "keep_firing_for": "1m", "clear_threshold": 0.03,
     "no_data": {"mode": "alert|keep|resolve", "windows": 3} | "alert",
     "severity": "warning", "labels": {}, "annotations": {"summary": "{{ value }}"},
     "channels": ["ops"], "repeat_interval": "4h", "cooldown": "10m", "group_wait": "0s",
     "enabled": true}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from services.alerting.rules.expr import Selector, check, selectors
from services.alerting.rules.exprdoc import expr_from_doc
from services.alerting.rules.exprparse import parse_expr_condition
from services.alerting.rules.model import (
    AGGREGATIONS,
    COMPARISONS,
    MATCH_OPS,
    NO_DATA_MODES,
    SEVERITIES,
    Matcher,
    Rule,
)
from services.alerting.rules.parse import (
    LABEL_NAME,
    MAX_CONDITION,
    METRIC_NAME,
    ParseError,
    parse_condition,
    parse_duration,
)
from services.alerting.rules.regex import regex_problem
from services.alerting.rules.template import template_errors
from shared.jsonnum import json_int

FIELDS = frozenset(
    {
        "id",
        "name",
        "condition",
        "metric",
        "matchers",
        "aggregation",
        "window",
        "op",
        "threshold",
        "for",
        "keep_firing_for",
        "clear_threshold",
        "no_data",
        "severity",
        "labels",
        "annotations",
        "channels",
        "repeat_interval",
        "cooldown",
        "group_wait",
        "enabled",
        "tenant",
        "expr",
    }
)
# Set by a condition; giving one of them beside it is ambiguous.
CONDITION_FIELDS = ("metric", "matchers", "aggregation", "window", "op", "threshold", "for", "expr")
# Held by an expression instead.
SELECTOR_FIELDS = ("metric", "matchers", "aggregation", "window")
RESERVED_LABELS = frozenset({"alertname", "severity"})
MAX_WINDOW = 24 * 3600.0
MAX_RULE_DURATION = 366 * 86400.0  # for, keep_firing_for, repeat_interval, cooldown
MAX_GROUP_WAIT = 3600.0  # a notification held longer than an hour is a lost one
MAX_VALUE = 4096  # characters of a label, annotation or matcher value
MAX_ENTRIES = 64  # labels, annotations, matchers
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class RuleError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def nul_field(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) in a JSON/YAML document that holds a
    NUL character, which Postgres refuses in text and jsonb; None when there is none."""
    if isinstance(value, str):
        return path or "body" if "\x00" in value else None
    items: Any = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return where
        found = nul_field(item, where)
        if found is not None:
            return found
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str_map(value: Any, field: str, errors: dict[str, str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors[field] = "must be an object of strings"
        return {}
    if len(value) > MAX_ENTRIES:
        errors[field] = f"must have at most {MAX_ENTRIES} entries"
        return {}
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not LABEL_NAME.fullmatch(key):
            errors[f"{field}.{key}"] = "not a valid name ([a-zA-Z_][a-zA-Z0-9_]*)"
        elif not isinstance(item, str) or len(item) > MAX_VALUE:
            errors[f"{field}.{key}"] = f"must be a string of at most {MAX_VALUE} characters"
        else:
            out[key] = item
    return out


def matchers_from_doc(value: Any, errors: dict[str, str]) -> tuple[Matcher, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):  # {"service": "api"} means service="api"
        value = [{"label": k, "op": "=", "value": v} for k, v in value.items()]
    if not isinstance(value, list):
        errors["matchers"] = "must be a list of {label, op, value} or an object of label values"
        return ()
    if len(value) > MAX_ENTRIES:
        errors["matchers"] = f"must have at most {MAX_ENTRIES} matchers"
        return ()
    out = []
    for i, item in enumerate(value):
        where = f"matchers.{i}"
        if not isinstance(item, dict):
            errors[where] = "must be an object {label, op, value}"
            continue
        label, op, text = item.get("label"), item.get("op", "="), item.get("value")
        if not isinstance(label, str) or not LABEL_NAME.fullmatch(label):
            errors[f"{where}.label"] = "must be a label name"
        elif op not in MATCH_OPS:
            errors[f"{where}.op"] = f"must be one of {', '.join(MATCH_OPS)}"
        elif not isinstance(text, str):
            errors[f"{where}.value"] = "must be a string"
        else:
            out.append(Matcher(label, op, text))
    return check_matchers(tuple(out), "matchers", errors)


def check_matchers(
    matchers: tuple[Matcher, ...], field: str, errors: dict[str, str]
) -> tuple[Matcher, ...]:
    """`matchers` if each value is bounded and each regex one RE2 runs; else errors."""
    for i, matcher in enumerate(matchers):
        where = f"{field}.{i}.value" if field == "matchers" else field
        problem = None
        if len(matcher.value) > MAX_VALUE:
            problem = f"must be at most {MAX_VALUE} characters"
        elif matcher.op in ("=~", "!~"):
            problem = regex_problem(matcher.value)
        if problem:
            errors[where] = problem if field == "matchers" else f"{matcher.label}: {problem}"
    return matchers


def _duration(
    doc: Mapping[str, Any],
    field: str,
    default: float,
    errors: dict[str, str],
    maximum: float = MAX_RULE_DURATION,
) -> float:
    if doc.get(field) is None:
        return default
    try:
        return parse_duration(doc[field], maximum)
    except ParseError as exc:
        errors[field] = str(exc)
        return default


def rule_from_doc(doc: Any, *, tenant: str, rule_id: str) -> Rule:
    """The rule a document describes; raises RuleError with every field's problem."""
    if not isinstance(doc, dict):
        raise RuleError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    nul = nul_field(doc)
    if nul is not None:  # one answer is enough: every other check would trip on it too
        raise RuleError({nul: "must not contain NUL characters"})
    for key in doc:
        if key not in FIELDS:
            errors[str(key)] = "unknown field"
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = "required: a non-empty string of at most 200 characters"
        name = ""
    values: dict[str, Any] = {}
    condition = doc.get("condition")
    if condition is not None:
        _from_condition(doc, condition, values, errors)
    else:
        _from_fields(doc, values, errors)
    aggregation = values.get("aggregation", "last")
    if aggregation not in AGGREGATIONS:
        errors["aggregation"] = f"must be one of {', '.join(AGGREGATIONS)}"
        aggregation = "last"
    window = values.get("window", 60.0)
    if not 1 <= window <= MAX_WINDOW:
        errors["window"] = "must be between 1s and 24h"
    clear = doc.get("clear_threshold")  # a finite number: infinity cannot be stored in JSON
    if clear is not None and _number(clear) is None:
        errors["clear_threshold"] = "must be a finite number"
    mode, windows = _no_data(doc.get("no_data", {}), errors)
    severity, labels, annotations, channels = _presentation(doc, errors)
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        errors["enabled"] = "must be true or false"
    keep_firing_for, repeat, cooldown, group_wait = _timing(doc, errors)
    if errors:
        raise RuleError(errors)
    return Rule(
        id=rule_id,
        tenant=tenant,
        name=name.strip(),
        metric=values["metric"],
        matchers=values.get("matchers", ()),
        aggregation=aggregation,
        window=window,
        op=values["op"],
        threshold=values["threshold"],
        for_=values.get("for_", 0.0),
        keep_firing_for=keep_firing_for,
        clear_threshold=None if clear is None else float(clear),
        no_data=mode,
        no_data_windows=windows,
        severity=severity,
        labels=labels,
        annotations=annotations,
        channels=tuple(dict.fromkeys(channels)),
        repeat_interval=repeat,
        cooldown=cooldown,
        group_wait=group_wait,
        enabled=enabled,
        expr=values.get("expr"),
    )


def _no_data(no_data: Any, errors: dict[str, str]) -> tuple[str, int]:
    """(mode, windows) of `no_data`: {mode, windows} or a mode alone."""
    if isinstance(no_data, str):
        no_data = {"mode": no_data}
    mode, windows = "alert", 3
    if not isinstance(no_data, dict):
        errors["no_data"] = "must be {mode, windows} or a mode"
        return mode, windows
    mode = no_data.get("mode", "alert")
    if mode not in NO_DATA_MODES:
        errors["no_data.mode"] = f"must be one of {', '.join(NO_DATA_MODES)}"
    checked = json_int(no_data.get("windows", 3), 1, 1000)  # 3.0 is 3, as JSON has it
    if checked is None:
        errors["no_data.windows"] = "must be an integer between 1 and 1000"
    else:
        windows = checked
    return mode, windows


def _presentation(
    doc: Mapping[str, Any], errors: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, str], list[Any]]:
    """(severity, labels, annotations, channels): what the alert says and where it goes."""
    severity = doc.get("severity", "warning")
    if severity not in SEVERITIES:
        errors["severity"] = f"must be one of {', '.join(SEVERITIES)}"
    labels = _str_map(doc.get("labels"), "labels", errors)
    for key in labels:
        if key in RESERVED_LABELS:
            errors[f"labels.{key}"] = "set by Belfry (alertname, severity)"
    annotations = _str_map(doc.get("annotations"), "annotations", errors)
    for key, text in annotations.items():
        problem = template_errors(text)
        if problem:
            errors[f"annotations.{key}"] = problem
    channels = doc.get("channels", [])
    if not isinstance(channels, list) or len(channels) > 20:
        errors["channels"] = "must be a list of at most 20 channel names"
        channels = []
    for i, channel in enumerate(channels):
        if not isinstance(channel, str) or not CHANNEL_NAME.fullmatch(channel):
            errors[f"channels.{i}"] = "not a channel name ([a-z0-9][a-z0-9_.-]*)"
    return severity, labels, annotations, channels


def _timing(
    doc: Mapping[str, Any], errors: dict[str, str]
) -> tuple[float, float, float, float | None]:
    """(keep_firing_for, repeat_interval, cooldown, group_wait)."""
    keep_firing_for = _duration(doc, "keep_firing_for", 0.0, errors)
    repeat = _duration(doc, "repeat_interval", 4 * 3600.0, errors)
    if 0 < repeat < 1:
        errors["repeat_interval"] = "must be 0 (never) or at least 1s"
    cooldown = _duration(doc, "cooldown", 0.0, errors)
    group_wait = None
    if doc.get("group_wait") is not None:
        group_wait = _duration(doc, "group_wait", 0.0, errors, MAX_GROUP_WAIT)
    return keep_firing_for, repeat, cooldown, group_wait


def _from_condition(
    doc: Mapping[str, Any], condition: Any, values: dict[str, Any], errors: dict[str, str]
) -> None:
    """The shorthand: one metric's aggregation (parse_condition), else an expression."""
    try:
        cond = parse_condition(condition)
    except ParseError as exc:
        if not isinstance(condition, str) or len(condition) > MAX_CONDITION:
            errors["condition"] = str(exc)
            return
        try:
            parsed = parse_expr_condition(condition)
        except ParseError as expr_exc:
            errors["condition"] = f"{exc}; as an expression: {expr_exc}"
            return
        _expr_values(parsed.expr, "condition", values, errors)
        values.update(op=parsed.op, threshold=parsed.threshold)
        if parsed.for_ is not None:
            values["for_"] = parsed.for_
    else:
        values.update(metric=cond.metric, op=cond.op, threshold=cond.threshold)
        values["matchers"] = check_matchers(cond.matchers, "condition", errors)
        if cond.aggregation:
            values["aggregation"] = cond.aggregation
        if cond.window is not None:
            values["window"] = cond.window
        if cond.for_ is not None:
            values["for_"] = cond.for_
    for field in CONDITION_FIELDS:
        if doc.get(field) is not None:
            errors[field] = "already given by condition; set one or the other"
    if values.get("for_", 0.0) > MAX_RULE_DURATION:
        errors["condition"] = f"for: must be at most {MAX_RULE_DURATION:g} seconds"


def _expr_values(expr: Any, field: str, values: dict[str, Any], errors: dict[str, str]) -> None:
    """An expression's values: a lone metric aggregation is a plain rule; otherwise `metric`
    and `window` are the first metric and the longest window (no-data, display)."""
    check(expr, errors, field)
    for selector in selectors(expr):
        check_matchers(selector.matchers, field, errors)
        if not 1 <= selector.window <= MAX_WINDOW:
            errors[field] = "windows must be between 1s and 24h"
    chosen = selectors(expr)
    if not chosen or field in errors:
        return
    values.update(metric=chosen[0].metric, window=max(s.window for s in chosen))
    if isinstance(expr, Selector):
        values.update(matchers=expr.matchers, aggregation=expr.aggregation)
    else:
        values["expr"] = expr


def _from_fields(doc: Mapping[str, Any], values: dict[str, Any], errors: dict[str, str]) -> None:
    if doc.get("expr") is not None:
        for field in SELECTOR_FIELDS:
            if doc.get(field) is not None:
                errors[field] = "already given by expr; set one or the other"
        expr = expr_from_doc(doc["expr"], errors)
        if expr is not None:
            _expr_values(expr, "expr", values, errors)
    else:
        metric = doc.get("metric")
        if not isinstance(metric, str) or not METRIC_NAME.fullmatch(metric):
            errors["metric"] = "required (or a condition or expr): a metric name"
        else:
            values["metric"] = metric
        values["matchers"] = matchers_from_doc(doc.get("matchers"), errors)
        if doc.get("aggregation") is not None:
            values["aggregation"] = doc["aggregation"]
        values["window"] = _duration(doc, "window", 60.0, errors)
    op = doc.get("op")
    if op not in COMPARISONS:
        errors["op"] = f"required (or a condition): one of {' '.join(COMPARISONS)}"
    else:
        values["op"] = op
    threshold = _number(doc.get("threshold"))
    if threshold is None:
        errors["threshold"] = "required (or a condition): a finite number"
    else:
        values["threshold"] = threshold
    values["for_"] = _duration(doc, "for", 0.0, errors)


def stored_doc(rule: Rule) -> dict[str, Any]:
    """What the database keeps (`alert_rules.spec`): the fields rule_from_doc reads back."""
    doc = rule.to_doc()
    for key in ("id", "condition"):
        doc.pop(key)
    return doc
