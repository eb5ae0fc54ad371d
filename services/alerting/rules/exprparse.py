"""The shorthand of expression rules, a small PromQL subset::

    sum by (service) (rate(http_errors_total[5m]))
      / sum by (service) (rate(http_requests_total[5m])) > 0.05
    p95(http_request_duration_seconds{service="web"}[5m]) > 0.5 for 5m
    avg(errors[5m]) / avg(requests[5m]) * 100 > 5

Terms: a number; `metric{matchers}[window]` (the last value in the window, default 1m);
`agg(metric{...}[window])` with agg one of the rule aggregations (avg, min, max, sum, count,
rate, increase, p50, p95, p99, last: over each series' window); `sum|avg|min|max|count [by
(labels)] (<expr>) [by (labels)]` across series (a `sum(x[5m])` without `by` around a bare
metric stays the window aggregation it always was); `( )`; `+ - * /` with the usual
precedence. Then a comparison, a threshold (`5%` = 0.05) and an optional `for`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from services.alerting.rules.expr import (
    DEFAULT_WINDOW,
    GROUPINGS,
    Aggregate,
    Binary,
    Expr,
    Number,
    Selector,
)
from services.alerting.rules.model import AGGREGATIONS
from services.alerting.rules.parse import ParseError, parse_duration, parse_matchers

MAX_DEPTH = 12
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | \{(?P<matchers>[^}]*)\}
    | \[(?P<window>[^\]]*)\]
    | (?P<op>>=|<=|==|!=|[><()+\-*/,%])
    )""",
    re.VERBOSE,
)
_COMPARISONS = (">", ">=", "<", "<=", "==", "!=")


@dataclass(frozen=True, slots=True)
class ExprCondition:
    expr: Expr
    op: str
    threshold: float
    for_: float | None


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ParseError(f"unexpected text at {text[pos : pos + 30].strip()!r}")
        kind = match.lastgroup or "op"
        out.append(_Tok(kind, match[kind], match.start(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> _Tok | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def is_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "op" and tok.text in ops

    def expect(self, op: str) -> None:
        if not self.is_op(op):
            raise ParseError(f"expected {op!r} {self.where()}")
        self.i += 1

    def where(self) -> str:
        tok = self.peek()
        return f"at {tok.text[:30]!r}" if tok else "at the end"

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"nested deeper than {MAX_DEPTH} levels")
        node = self.term()
        while self.is_op("+", "-"):
            op = self.toks[self.i].text
            self.i += 1
            node = Binary(op, node, self.term())
        self.depth -= 1
        return node

    def term(self) -> Expr:
        node = self.unary()
        while self.is_op("*", "/"):
            op = self.toks[self.i].text
            self.i += 1
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise ParseError("expected a metric, a number or '(' at the end")
        if tok.kind == "number":
            self.i += 1
            return Number(float(tok.text))
        if self.is_op("("):
            self.i += 1
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind != "ident":
            raise ParseError(f"expected a metric, a number or '(' {self.where()}")
        nxt = self.peek(1)
        calls = nxt is not None and nxt.kind == "op" and nxt.text == "("
        if tok.text in GROUPINGS and (calls or (nxt is not None and nxt.text == "by")):
            return self.grouping(tok.text)
        if tok.text in AGGREGATIONS and calls:
            self.i += 2
            inner = self.selector(tok.text)
            self.expect(")")
            return inner
        return self.selector("last")

    def by(self) -> tuple[str, ...] | None:
        tok = self.peek()
        if tok is None or tok.kind != "ident" or tok.text != "by":
            return None
        self.i += 1
        self.expect("(")
        labels: list[str] = []
        while not self.is_op(")"):
            label = self.peek()
            if label is None or label.kind != "ident" or ":" in label.text:
                raise ParseError(f"expected a label name {self.where()}")
            labels.append(label.text)
            self.i += 1
            if not self.is_op(")"):
                self.expect(",")
        self.i += 1
        return tuple(dict.fromkeys(labels))

    def grouping(self, op: str) -> Expr:
        self.i += 1
        by = self.by()
        start = self.i
        self.expect("(")
        inner = self.expr()
        self.expect(")")
        after = self.by()
        if by is not None and after is not None:
            raise ParseError("`by` given twice")
        by = by if by is not None else after
        # A bare metric, not a call like last(x[1m]) nor a parenthesised expression.
        called = start + 2 < len(self.toks) and self.toks[start + 2].text == "("
        bare = isinstance(inner, Selector) and self.toks[start + 1].kind == "ident" and not called
        if by is None and bare:
            # sum(x[5m]): the window aggregation of each series, as before expressions.
            assert isinstance(inner, Selector)
            return Selector(inner.metric, inner.matchers, op, inner.window)
        return Aggregate(op, inner, by or ())

    def selector(self, aggregation: str) -> Selector:
        tok = self.peek()
        if tok is None or tok.kind != "ident":
            raise ParseError(f"expected a metric name {self.where()}")
        self.i += 1
        matchers: tuple = ()
        window = DEFAULT_WINDOW
        nxt = self.peek()
        if nxt is not None and nxt.kind == "matchers":
            matchers = parse_matchers(nxt.text)
            self.i += 1
            nxt = self.peek()
        if nxt is not None and nxt.kind == "window":
            window = parse_duration(nxt.text)
            self.i += 1
        return Selector(tok.text, matchers, aggregation, window)


def parse_expr_condition(text: str) -> ExprCondition:
    """`<expr> <op> <number>[%] [for <duration>]`."""
    parser = _Parser(text)
    expr = parser.expr()
    tok = parser.peek()
    if tok is None or tok.kind != "op" or tok.text not in _COMPARISONS:
        raise ParseError(f"expected a comparison (> >= < <= == !=) {parser.where()}")
    op = tok.text
    parser.i += 1
    sign = 1.0
    if parser.is_op("-", "+"):
        sign = -1.0 if parser.toks[parser.i].text == "-" else 1.0
        parser.i += 1
    number = parser.peek()
    if number is None or number.kind != "number":
        raise ParseError(f"expected a threshold {parser.where()}")
    parser.i += 1
    threshold = sign * float(number.text)
    if parser.is_op("%"):
        threshold /= 100
        parser.i += 1
    if not math.isfinite(threshold):
        raise ParseError(f"threshold {number.text[:40]} is not a finite number")
    for_ = None
    word = parser.peek()
    if word is not None and word.kind == "ident" and word.text == "for":
        rest = text[word.pos + 3 :].strip()
        if not rest or " " in rest:
            raise ParseError("expected one duration after `for`")
        for_ = parse_duration(rest)
    elif word is not None:
        raise ParseError(f"unexpected {word.text[:30]!r} after the threshold")
    return ExprCondition(expr, op, threshold, for_)
