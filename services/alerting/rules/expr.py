"""Rule expressions: what a rule computes when one metric's aggregation is not enough.

A rule's value is an expression tree, evaluated per label set (group):

- `Selector`: one metric's series (label matchers), each aggregated over a window
  (`rate(http_requests_total[5m])`); per series. `p50/p95/p99` of a histogram read its
  buckets (see engine/exprs.py).
- `Aggregate`: `sum|avg|min|max|count by (labels) (<expr>)` across series: one group per
  value of the `by` labels (no `by`: one group of all).
- `Binary`: `<expr> + - * / <expr>`, matched one-to-one on identical label sets (as
  Prometheus matches vectors); a number on either side applies to every group. A group
  whose denominator is 0 has no value (never infinity).
- `Number`: a constant (`... * 100`).

Field form (JSON/YAML), node by node::

    {"metric": "http_requests_total", "matchers": {...}, "aggregation": "rate", "window": "5m"}
    {"aggregate": "sum", "by": ["service"], "of": <node>}
    {"op": "/", "left": <node>, "right": <node>}
    {"number": 100}

Bounded: at most MAX_NODES nodes, MAX_BY labels per `by`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.alerting.rules.matcher import AGGREGATIONS, Matcher

GROUPINGS = ("sum", "avg", "min", "max", "count")
ARITHMETIC = ("+", "-", "*", "/")
QUANTILES = ("p50", "p95", "p99")
MAX_NODES = 16
MAX_BY = 16
DEFAULT_WINDOW = 60.0


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()
    aggregation: str = "last"
    window: float = DEFAULT_WINDOW

    def to_doc(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "matchers": [m.to_doc() for m in self.matchers],
            "aggregation": self.aggregation,
            "window": self.window,
        }

    def text(self) -> str:
        sel = ",".join(f'{m.label}{m.op}"{m.value}"' for m in self.matchers)
        name = f"{self.metric}{{{sel}}}" if sel else self.metric
        return f"{self.aggregation}({name}[{dur(self.window)}])"


@dataclass(frozen=True)
class Aggregate:
    op: str
    of: Expr
    by: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"aggregate": self.op, "by": list(self.by), "of": self.of.to_doc()}

    def text(self) -> str:
        by = f" by ({', '.join(self.by)})" if self.by else ""
        return f"{self.op}{by} ({self.of.text()})"


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expr
    right: Expr

    def to_doc(self) -> dict[str, Any]:
        return {"op": self.op, "left": self.left.to_doc(), "right": self.right.to_doc()}

    def text(self) -> str:
        return f"({self.left.text()} {self.op} {self.right.text()})"


@dataclass(frozen=True)
class Number:
    value: float

    def to_doc(self) -> dict[str, Any]:
        return {"number": self.value}

    def text(self) -> str:
        return f"{self.value:g}"


Expr = Selector | Aggregate | Binary | Number


def nodes(expr: Expr) -> Iterator[Expr]:
    yield expr
    if isinstance(expr, Aggregate):
        yield from nodes(expr.of)
    elif isinstance(expr, Binary):
        yield from nodes(expr.left)
        yield from nodes(expr.right)


def selectors(expr: Expr) -> list[Selector]:
    return [n for n in nodes(expr) if isinstance(n, Selector)]


def watched(selector: Selector) -> list[str]:
    """The metric names a selector reads: a quantile also reads `<name>_bucket` (the
    histogram of that base name)."""
    if selector.aggregation in QUANTILES and not selector.metric.endswith("_bucket"):
        return [selector.metric, f"{selector.metric}_bucket"]
    return [selector.metric]


def dur(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def check(expr: Expr, errors: dict[str, str], field: str) -> None:
    """Bounds the parsers and the field form share."""
    count = sum(1 for _ in nodes(expr))
    if count > MAX_NODES:
        errors[field] = f"at most {MAX_NODES} terms (metrics, numbers, operations)"
    if not selectors(expr):
        errors[field] = "needs at least one metric"
    for node in nodes(expr):
        if isinstance(node, Selector) and node.aggregation not in AGGREGATIONS:
            errors[field] = f"aggregation must be one of {', '.join(AGGREGATIONS)}"
        elif isinstance(node, Aggregate) and len(node.by) > MAX_BY:
            errors[field] = f"at most {MAX_BY} labels in a `by`"
