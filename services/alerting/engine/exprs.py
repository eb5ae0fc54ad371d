"""Evaluating a rule expression (rules/expr.py) at `now` over the sample windows: one
value per label set.

- A selector gives one value per matching series: its aggregation over the window.
  `p50/p95/p99` of a histogram: when the tenant sends `histogram_bucket` series named
  `<metric>_bucket` (or the rule names the `_bucket` metric itself), the quantile is
  Prometheus's `histogram_quantile` over each bucket's `increase` in the window, one value
  per label set without `le`; otherwise it is the percentile of the samples, as for any
  gauge.
- `sum/avg/min/max/count by (labels)` folds the values of each `by` group.
- `+ - * /` match label sets one to one; a label set on one side only is dropped, a
  divisor of 0 (or any result that is not finite) gives no value.

Within one tick, rules share work: a selector's values over every series of its metric
(before matchers) are computed once per (metric, aggregation, window) and kept in the
tick's `Cache`, so ten rules over `rate(x[5m])` with other thresholds or matchers cost one
pass over the series.

A label set that is known but has no value (its window holds too few samples, or a
division by zero) is kept with value None, so the rule sees it as "no value yet" and the
no-data clock runs from its last sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.alerting.engine.functions import bucket_quantile, parse_le
from services.alerting.engine.windows import LabelKey, SampleStore, Series, label_key
from services.alerting.rules.expr import QUANTILES, Aggregate, Expr, Number, Selector


@dataclass(slots=True)
class Value:
    labels: dict[str, str]
    value: float | None
    last_seen: float
    trace: dict[str, str] | None = None


Vector = dict[LabelKey, Value]
# One tick's results: a selector's before matchers, by (tenant, metric, aggregation,
# window); an aggregation's or a binary expression's, by (tenant, expression).
Cache = dict[tuple[Any, ...], Any]


def evaluate(
    expr: Expr, store: SampleStore, tenant: str, now: float, cache: Cache | None = None
) -> Vector | float:
    """A vector (label set → value), or a number for a constant expression."""
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, Selector):
        return select(expr, store, tenant, now, cache)
    key = (tenant, expr)
    if cache is not None and key in cache:
        return cache[key]
    result: Vector | float
    if isinstance(expr, Aggregate):
        inner = evaluate(expr.of, store, tenant, now, cache)
        result = fold(expr.op, expr.by, inner if isinstance(inner, dict) else {})
    else:
        result = combine(
            expr.op,
            evaluate(expr.left, store, tenant, now, cache),
            evaluate(expr.right, store, tenant, now, cache),
        )
    if cache is not None:
        cache[key] = result
    return result


def histogram_name(selector: Selector) -> str | None:
    if selector.aggregation not in QUANTILES:
        return None
    metric = selector.metric
    return metric if metric.endswith("_bucket") else f"{metric}_bucket"


def select(
    selector: Selector, store: SampleStore, tenant: str, now: float, cache: Cache | None = None
) -> Vector:
    """The selector's value per matching series (the cache holds every series' value)."""
    key = (tenant, selector.metric, selector.aggregation, selector.window)
    every = cache.get(key) if cache is not None else None
    if every is None:
        every = _select_all(selector, store, tenant, now)
        if cache is not None:
            cache[key] = every
    matchers = selector.matchers
    if not matchers:
        return every
    if len(matchers) == 1:  # the common case, without a generator per series
        matches = matchers[0].matches
        return {k: v for k, v in every.items() if matches(v.labels)}
    return {k: v for k, v in every.items() if all(m.matches(v.labels) for m in matchers)}


def _select_all(selector: Selector, store: SampleStore, tenant: str, now: float) -> Vector:
    span = (now - selector.window, now)
    bucket_metric = histogram_name(selector)
    if bucket_metric is not None:
        buckets = [s for s in store.series(tenant, bucket_metric) if s.kind == "histogram_bucket"]
        if buckets:
            return histogram(int(selector.aggregation[1:]) / 100, buckets, span)
    aggregation = selector.aggregation
    return {
        series.key: Value(
            series.labels, series.aggregate(aggregation, span), series.last_seen, series.trace
        )
        for series in store.series(tenant, selector.metric)
    }


def histogram(q: float, buckets: Iterable[Series], span: tuple[float, float]) -> Vector:
    """`histogram_quantile(q, increase(<buckets>[window]))` per label set without `le`."""
    groups: dict[LabelKey, list[tuple[float, float | None]]] = {}
    seen: Vector = {}
    for series in buckets:
        le = parse_le(series.labels.get("le", ""))
        if le is None:
            continue
        labels = {k: v for k, v in series.labels.items() if k != "le"}
        key = label_key(labels)
        increase = series.increase(*span)
        groups.setdefault(key, []).append((le, increase))
        _touch(seen, key, labels, series.last_seen, series.trace)
    for key, pairs in groups.items():
        if any(count is None for _, count in pairs):
            continue  # a bucket without two samples in the window: no value yet
        seen[key].value = bucket_quantile(q, [(le, c or 0.0) for le, c in pairs])
    return seen


def _touch(
    out: Vector,
    key: LabelKey,
    labels: dict[str, str],
    last_seen: float,
    trace: dict[str, str] | None,
) -> Value:
    entry = out.get(key)
    if entry is None:
        entry = out[key] = Value(labels, None, last_seen, trace)
    elif last_seen > entry.last_seen:
        entry.last_seen, entry.trace = last_seen, trace or entry.trace
    return entry


_FOLDS: Mapping[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "avg": lambda v: math.fsum(v) / len(v),
    "min": min,
    "max": max,
    "count": lambda v: float(len(v)),
}


def fold(op: str, by: tuple[str, ...], vector: Vector) -> Vector:
    out: Vector = {}
    values: dict[LabelKey, list[float]] = {}
    for item in vector.values():
        labels = {k: item.labels[k] for k in by if k in item.labels}
        key = label_key(labels)
        _touch(out, key, labels, item.last_seen, item.trace)
        if item.value is not None:
            values.setdefault(key, []).append(item.value)
    for key, found in values.items():
        out[key].value = _FOLDS[op](found)
    return out


def _apply(op: str, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if op == "/":
        if b == 0:
            return None
        result = a / b
    elif op == "*":
        result = a * b
    elif op == "+":
        result = a + b
    else:
        result = a - b
    return result if math.isfinite(result) else None


def combine(op: str, left: Vector | float, right: Vector | float) -> Vector | float:
    if not isinstance(left, dict) and not isinstance(right, dict):
        value = _apply(op, left, right)
        return math.nan if value is None else value
    out: Vector = {}
    if not isinstance(left, dict):
        assert isinstance(right, dict)
        for key, item in right.items():
            out[key] = Value(item.labels, _apply(op, left, item.value), item.last_seen, item.trace)
        return out
    for key, item in left.items():
        if isinstance(right, dict):
            other = right.get(key)
            if other is None:
                continue  # one-to-one matching: a label set on one side only
            value = _apply(op, item.value, other.value)
            last_seen = max(item.last_seen, other.last_seen)
        else:
            value, last_seen = _apply(op, item.value, right), item.last_seen
        out[key] = Value(item.labels, value, last_seen, item.trace)
    return out
