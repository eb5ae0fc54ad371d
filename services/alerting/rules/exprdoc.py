"""The field form of a rule expression (`expr`) → `Expr`, with an error per path.

See rules/expr.py for the node shapes. Every node is checked (names, matchers with RE2,
windows, `by` labels); the whole tree is bounded by MAX_NODES before it is walked, so a
deep document costs no more than a small one.
"""

from __future__ import annotations

import math
from typing import Any

from services.alerting.rules.expr import (
    ARITHMETIC,
    DEFAULT_WINDOW,
    GROUPINGS,
    MAX_BY,
    MAX_NODES,
    Aggregate,
    Binary,
    Expr,
    Number,
    Selector,
    check,
)
from services.alerting.rules.matchdoc import matchers_from_doc
from services.alerting.rules.matcher import AGGREGATIONS
from services.alerting.rules.parse import LABEL_NAME, METRIC_NAME, ParseError, parse_duration

MAX_WINDOW = 24 * 3600.0
_SELECTOR_KEYS = frozenset({"metric", "matchers", "aggregation", "window"})


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_NODES

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def expr_from_doc(doc: Any, errors: dict[str, str], field: str = "expr") -> Expr | None:
    """The expression `doc` describes, or None with `errors` filled in."""
    before = len(errors)
    expr = _node(doc, errors, field, _Budget())
    if expr is None or len(errors) > before:
        return None
    check(expr, errors, field)
    return None if len(errors) > before else expr


def _node(doc: Any, errors: dict[str, str], path: str, budget: _Budget) -> Expr | None:
    if not budget.take():
        errors[path] = f"an expression has at most {MAX_NODES} terms"
        return None
    if not isinstance(doc, dict):
        errors[path] = (
            "must be an object: {metric, ...}, {aggregate, by, of}, {op, left, right} or {number}"
        )
        return None
    if "number" in doc:
        return _number(doc, errors, path)
    if "aggregate" in doc:
        return _aggregate(doc, errors, path, budget)
    if "left" in doc or "right" in doc:
        return _binary(doc, errors, path, budget)
    if "metric" in doc:
        return _selector(doc, errors, path)
    errors[path] = "must hold one of metric, aggregate, left/right (with op) or number"
    return None


def _unknown(doc: dict[str, Any], allowed: set[str], errors: dict[str, str], path: str) -> None:
    for key in doc:
        if key not in allowed:
            errors[f"{path}.{key}"] = "unknown field"


def _number(doc: dict[str, Any], errors: dict[str, str], path: str) -> Expr | None:
    _unknown(doc, {"number"}, errors, path)
    value = doc["number"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors[f"{path}.number"] = "must be a finite number"
        return None
    return Number(float(value))


def _aggregate(
    doc: dict[str, Any], errors: dict[str, str], path: str, budget: _Budget
) -> Expr | None:
    _unknown(doc, {"aggregate", "by", "of"}, errors, path)
    op, by = doc["aggregate"], doc.get("by") or []
    if op not in GROUPINGS:
        errors[f"{path}.aggregate"] = f"must be one of {', '.join(GROUPINGS)}"
    if not isinstance(by, list) or len(by) > MAX_BY:
        errors[f"{path}.by"] = f"must be a list of at most {MAX_BY} label names"
        by = []
    for i, label in enumerate(by):
        if not isinstance(label, str) or not LABEL_NAME.fullmatch(label):
            errors[f"{path}.by.{i}"] = "must be a label name"
    of = _node(doc.get("of"), errors, f"{path}.of", budget)
    if of is None or op not in GROUPINGS or any(f"{path}.by" in k for k in errors):
        return None
    return Aggregate(op, of, tuple(dict.fromkeys(by)))


def _binary(doc: dict[str, Any], errors: dict[str, str], path: str, budget: _Budget) -> Expr | None:
    _unknown(doc, {"op", "left", "right"}, errors, path)
    op = doc.get("op")
    if op not in ARITHMETIC:
        errors[f"{path}.op"] = f"must be one of {' '.join(ARITHMETIC)}"
    left = _node(doc.get("left"), errors, f"{path}.left", budget)
    right = _node(doc.get("right"), errors, f"{path}.right", budget)
    if left is None or right is None or op not in ARITHMETIC:
        return None
    return Binary(op, left, right)


def _selector(doc: dict[str, Any], errors: dict[str, str], path: str) -> Expr | None:
    _unknown(doc, set(_SELECTOR_KEYS), errors, path)
    metric = doc["metric"]
    if not isinstance(metric, str) or not METRIC_NAME.fullmatch(metric):
        errors[f"{path}.metric"] = "must be a metric name"
    aggregation = doc.get("aggregation") or "last"
    if aggregation not in AGGREGATIONS:
        errors[f"{path}.aggregation"] = f"must be one of {', '.join(AGGREGATIONS)}"
    window = DEFAULT_WINDOW
    if doc.get("window") is not None:
        try:
            window = parse_duration(doc["window"], MAX_WINDOW)
        except ParseError as exc:
            errors[f"{path}.window"] = str(exc)
    if not 1 <= window <= MAX_WINDOW:
        errors[f"{path}.window"] = "must be between 1s and 24h"
    inner: dict[str, str] = {}
    matchers = matchers_from_doc(doc.get("matchers"), inner)
    errors.update({f"{path}.{k}": v for k, v in inner.items()})
    if inner or f"{path}.metric" in errors or f"{path}.aggregation" in errors:
        return None
    return Selector(metric, matchers, aggregation, window)
