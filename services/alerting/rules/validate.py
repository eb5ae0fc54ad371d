"""Building a `Rule` from a JSON/YAML document, with an error per field: the document is
decoded through its contract (services/alerting/contracts_rules.py:RuleInput), then
checked for what a type cannot say (conditions and expressions parsed, durations and
windows in range, RE2 patterns, templates, reserved labels, fields that exclude others).

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

from services.alerting.contracts_rules import NoData, RuleInput
from services.alerting.rules.expr import Selector, check, selectors
from services.alerting.rules.exprdoc import expr_from_doc
from services.alerting.rules.exprparse import parse_expr_condition
from services.alerting.rules.matchdoc import check_matchers, matchers_of
from services.alerting.rules.model import (
    COMPARISONS,
    SEVERITIES,
    Rule,
)
from services.alerting.rules.parse import (
    MAX_CONDITION,
    ParseError,
    parse_condition,
    parse_duration,
)
from services.alerting.rules.template import template_errors
from shared.decoding import field_values
from shared.jsonnum import json_int

# Set by a condition; giving one of them beside it is ambiguous.
CONDITION_FIELDS = ("metric", "matchers", "aggregation", "window", "op", "threshold", "for", "expr")
# Held by an expression instead.
SELECTOR_FIELDS = ("metric", "matchers", "aggregation", "window")
RESERVED_LABELS = frozenset({"alertname", "severity"})
MAX_WINDOW = 24 * 3600.0
MAX_RULE_DURATION = 366 * 86400.0  # for, keep_firing_for, repeat_interval, cooldown
MAX_GROUP_WAIT = 3600.0  # a notification held longer than an hour is a lost one
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# The problem reported for a field whose value the contract (RuleInput) refuses.
MESSAGES = {
    "name": "required: a non-empty string of at most 200 characters",
    "metric": "required (or a condition or expr): a metric name",
    "op": f"required (or a condition): one of {' '.join(COMPARISONS)}",
    "threshold": "required (or a condition): a finite number",
    "clear_threshold": "must be a finite number",
    "no_data": "must be {mode, windows} or a mode",
    "severity": f"must be one of {', '.join(SEVERITIES)}",
    "labels": "must be an object of strings",
    "annotations": "must be an object of strings",
    "channels": "must be a list of at most 20 channel names",
    "enabled": "must be true or false",
    "matchers": "must be a list of {label, op, value} or an object of label values",
}


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
    """The rule a document describes (the RuleInput contract, then what a type cannot
    say); raises RuleError with every field's problem."""
    if not isinstance(doc, dict):
        raise RuleError({"body": "must be a JSON object"})
    nul = nul_field(doc)
    if nul is not None:  # one answer is enough: every other check would trip on it too
        raise RuleError({nul: "must not contain NUL characters"})
    given, errors = field_values(RuleInput, doc, MESSAGES)
    name = given.get("name", "")
    if not name.strip() and "name" not in errors:
        errors["name"] = MESSAGES["name"]
    values: dict[str, Any] = {}
    if doc.get("condition") is not None:
        _from_condition(doc, values, errors)
    else:
        _from_fields(doc, given, values, errors)
    window = values.get("window", 60.0)
    if not 1 <= window <= MAX_WINDOW:
        errors["window"] = "must be between 1s and 24h"
    clear = given.get("clear_threshold")  # finite: infinity cannot be stored in JSON
    if clear is not None and not math.isfinite(clear):
        errors["clear_threshold"] = MESSAGES["clear_threshold"]
    mode, windows = _no_data(doc, errors)
    labels, annotations = _presentation(given, errors)
    keep_firing_for, repeat, cooldown, group_wait = _timing(given, errors)
    if errors:
        raise RuleError(errors)
    return Rule(
        id=rule_id,
        tenant=tenant,
        name=name.strip(),
        metric=values["metric"],
        matchers=values.get("matchers", ()),
        aggregation=values.get("aggregation") or "last",
        window=window,
        op=values["op"],
        threshold=values["threshold"],
        for_=values.get("for_", 0.0),
        keep_firing_for=keep_firing_for,
        clear_threshold=clear,
        no_data=mode,
        no_data_windows=windows,
        severity=given.get("severity", "warning"),
        labels=labels,
        annotations=annotations,
        channels=tuple(dict.fromkeys(given.get("channels", ()))),
        repeat_interval=repeat,
        cooldown=cooldown,
        group_wait=group_wait,
        enabled=given.get("enabled", True),
        expr=values.get("expr"),
    )


def _no_data(doc: Mapping[str, Any], errors: dict[str, str]) -> tuple[str, int]:
    """(mode, windows) of `no_data`: {mode, windows} (each field's problem reported) or a
    mode alone (its type checked by RuleInput)."""
    raw = doc.get("no_data")
    if not isinstance(raw, dict):
        return (raw, 3) if isinstance(raw, str) and "no_data" not in errors else ("alert", 3)
    for key in [k for k in errors if k.split(".")[0] == "no_data"]:
        del errors[key]  # the union's first problem: NoData's own say every one
    given, problems = field_values(NoData, raw)
    errors.update({f"no_data.{k}": v for k, v in problems.items()})
    windows = json_int(given.get("windows", 3), 1, 1000)  # 3.0 is 3, as JSON has it
    if windows is None and "no_data.windows" not in errors:
        errors["no_data.windows"] = "must be an integer between 1 and 1000"
    return given.get("mode", "alert"), windows or 3


def _presentation(
    given: Mapping[str, Any], errors: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations): the labels Belfry sets refused, the templates checked."""
    labels = dict(given.get("labels") or {})
    for key in labels:
        if key in RESERVED_LABELS:
            errors[f"labels.{key}"] = "set by Belfry (alertname, severity)"
    annotations = dict(given.get("annotations") or {})
    for key, text in annotations.items():
        problem = template_errors(text)
        if problem:
            errors[f"annotations.{key}"] = problem
    return labels, annotations


def _timing(
    given: Mapping[str, Any], errors: dict[str, str]
) -> tuple[float, float, float, float | None]:
    """(keep_firing_for, repeat_interval, cooldown, group_wait)."""
    keep_firing_for = _duration(given, "keep_firing_for", 0.0, errors)
    repeat = _duration(given, "repeat_interval", 4 * 3600.0, errors)
    if 0 < repeat < 1:
        errors["repeat_interval"] = "must be 0 (never) or at least 1s"
    cooldown = _duration(given, "cooldown", 0.0, errors)
    group_wait = None
    if given.get("group_wait") is not None:
        group_wait = _duration(given, "group_wait", 0.0, errors, MAX_GROUP_WAIT)
    return keep_firing_for, repeat, cooldown, group_wait


def _from_condition(doc: Mapping[str, Any], values: dict[str, Any], errors: dict[str, str]) -> None:
    """The shorthand: one metric's aggregation (parse_condition), else an expression."""
    condition = doc["condition"]
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


def _from_fields(
    doc: Mapping[str, Any], given: Mapping[str, Any], values: dict[str, Any], errors: dict[str, str]
) -> None:
    """The explicit form: `metric` (with matchers, aggregation, window) or `expr`, then
    `op`, `threshold` and `for`. `doc` as given tells what is set; `given` the values."""
    if doc.get("expr") is not None:
        for field in SELECTOR_FIELDS:
            if doc.get(field) is not None:
                errors[field] = "already given by expr; set one or the other"
        expr = expr_from_doc(doc["expr"], errors) if "expr" not in errors else None
        if expr is not None:
            _expr_values(expr, "expr", values, errors)
    else:
        if given.get("metric") is None:
            errors.setdefault("metric", MESSAGES["metric"])
        values.update(metric=given.get("metric"), aggregation=given.get("aggregation"))
        values["matchers"] = check_matchers(matchers_of(given.get("matchers")), "matchers", errors)
        values["window"] = _duration(given, "window", 60.0, errors)
    if given.get("op") is None:
        errors.setdefault("op", MESSAGES["op"])
    threshold = given.get("threshold")
    if threshold is None or not math.isfinite(threshold):
        errors.setdefault("threshold", MESSAGES["threshold"])
    values.update(op=given.get("op"), threshold=threshold)
    values["for_"] = _duration(given, "for", 0.0, errors)


def stored_doc(rule: Rule) -> dict[str, Any]:
    """What the database keeps (`alert_rules.spec`): the fields rule_from_doc reads back."""
    doc = rule.to_doc()
    for key in ("id", "condition"):
        doc.pop(key)
    return doc
