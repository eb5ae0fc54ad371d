"""A label matcher and the aggregations a selector may use: what both a rule
(rules/model.py) and an expression (rules/expr.py) are built from, so neither module
needs the other to define them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.alerting.rules.regex import full_match

AGGREGATIONS = (
    "avg",
    "min",
    "max",
    "sum",
    "count",
    "rate",
    "increase",
    "p50",
    "p95",
    "p99",
    "last",
)
MATCH_OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are RE2 and match the whole value (as in Prometheus);
    each pattern is compiled once (cached in rules/regex.py)."""

    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = full_match(self.value, actual)
        return found if self.op == "=~" else not found

    def to_doc(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op, "value": self.value}
