"""Sliding windows of metric samples, per series, and the aggregations over them.

A series is one (tenant, metric name, label set), with the kind of its latest sample
(`gauge`, `counter`, `counter_delta`, `histogram_bucket`, `summary_quantile`: how `rate`
and the quantiles read it). Only metrics some rule watches are kept, each for the longest
window a rule needs, so memory follows the rules, not the traffic.

Each kept sample is also appended to `journal` (when `journaling` is on), which the
engine drains into Postgres on its tick, so the windows survive a restart.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.alerting.engine.functions import (
    delta_increase,
    extrapolate,
    extrapolated_increase,
    raw_increase,
)

LabelKey = tuple[tuple[str, str], ...]


def label_key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the value below which q of the samples lie)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _rate(points: list[tuple[float, float]]) -> float | None:
    """Per-second increase of a counter over the sampled span; a drop counts as a reset."""
    if len(points) < 2:
        return None
    elapsed = points[-1][0] - points[0][0]
    if elapsed <= 0:
        return None
    return raw_increase(points) / elapsed


def _increase(
    name: str, points: list[tuple[float, float]], span: tuple[float, float] | None, kind: str
) -> float | None:
    """`rate` or `increase`: Prometheus's extrapolation over the window `span`, a plain sum
    of deltas for `counter_delta` series, the sampled span's rate without a window."""
    if kind == "counter_delta":
        total = delta_increase(points)
        if total is None or name == "increase":
            return total
        return total / (span[1] - span[0]) if span else None
    if span is None:
        rate = _rate(points)
        if rate is None or name == "rate":
            return rate
        return rate * (points[-1][0] - points[0][0])
    increase = extrapolated_increase(points, *span)
    if increase is None or name == "increase":
        return increase
    return increase / (span[1] - span[0])


def aggregate(
    name: str,
    points: list[tuple[float, float]],
    span: tuple[float, float] | None = None,
    kind: str = "gauge",
) -> float | None:
    """The aggregation `name` of (timestamp, value) points in time order; None = no data.
    `span`: the window (start, end] the points were taken from (rate and increase
    extrapolate to it, as Prometheus does); `kind`: the series' sample kind."""
    if not points:
        return None
    if name in ("rate", "increase"):
        return _increase(name, points, span, kind)
    return aggregate_values(name, [v for _, v in points])


def aggregate_values(name: str, values: Sequence[float]) -> float:
    """A gauge aggregation of a window's values (at least one)."""
    if name == "avg":
        return sum(values) / len(values)
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    if name == "sum":
        return sum(values)
    if name == "count":
        return float(len(values))
    if name == "last":
        return values[-1]
    if name in ("p50", "p95", "p99"):
        return _percentile(values, int(name[1:]) / 100)
    raise ValueError(f"unknown aggregation {name!r}")


@dataclass(slots=True)
class Series:
    """One series' samples in time order, as parallel lists (so a window is two bisects
    and its sums and extremes run over list slices in C), with `adj`: the value plus
    every counter reset before it, so a counter's increase over any window (resets added
    back, as Prometheus counts them) is one subtraction instead of a walk."""

    labels: dict[str, str]
    key: LabelKey = ()
    # array('d'): 8 bytes a number, no float object each (a busy tenant's windows hold
    # millions of points), and nothing for the garbage collector to walk.
    ts: array[float] = field(default_factory=lambda: array("d"))
    vs: array[float] = field(default_factory=lambda: array("d"))
    adj: array[float] = field(default_factory=lambda: array("d"))
    # Points before `head` are pruned (the lists are compacted when that is half of them).
    head: int = 0
    last_seen: float = 0.0
    kind: str = "gauge"
    # traceparent carrier of the consumer span that brought the latest sample.
    trace: dict[str, str] | None = None

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(zip(self.ts[self.head :], self.vs[self.head :], strict=True))

    def add(self, at: float, value: float) -> None:
        ts, vs = self.ts, self.vs
        if len(ts) == self.head or at >= ts[-1]:
            if len(ts) > self.head:
                before = vs[-1]
                self.adj.append(self.adj[-1] + (value - before if value >= before else value))
            else:
                self.adj.append(value)
            ts.append(at)
            vs.append(value)
        else:  # late sample: keep time order, and recount the resets after it
            i = bisect.bisect_right(ts, at, self.head)
            ts.insert(i, at)
            vs.insert(i, value)
            self._recount(i)
        self.last_seen = max(self.last_seen, at)

    def _recount(self, start: int) -> None:
        adj, vs = self.adj, self.vs
        del adj[max(start, self.head) :]
        for i in range(len(adj), len(vs)):
            if i == self.head:
                adj.append(vs[i])
            else:
                before, value = vs[i - 1], vs[i]
                adj.append(adj[-1] + (value - before if value >= before else value))

    def prune(self, before: float) -> None:
        ts, head = self.ts, self.head
        if head < len(ts) and ts[head] < before:
            head = bisect.bisect_left(ts, before, head)
            if head * 2 >= len(ts):
                del ts[:head], self.vs[:head], self.adj[:head]
                head = 0
            self.head = head

    def bounds(self, start: float, end: float) -> tuple[int, int]:
        """The index range [lo, hi) of the points in (start, end]."""
        lo = bisect.bisect_right(self.ts, start, self.head)
        return lo, bisect.bisect_right(self.ts, end, lo)

    def window(self, start: float, end: float) -> list[tuple[float, float]]:
        lo, hi = self.bounds(start, end)
        return list(zip(self.ts[lo:hi], self.vs[lo:hi], strict=True))

    def increase(self, start: float, end: float) -> float | None:
        """Prometheus `increase` over (start, end] (extrapolated_increase, in O(log n)).
        The tick's hottest function: bounds() inline."""
        ts = self.ts
        lo = bisect.bisect_right(ts, start, self.head)
        hi = bisect.bisect_right(ts, end, lo) - 1  # the last point's index
        if hi <= lo or ts[hi] <= ts[lo]:
            return None
        adj = self.adj
        return extrapolate(adj[hi] - adj[lo], ts[lo], self.vs[lo], ts[hi], hi - lo + 1, start, end)

    def aggregate(self, name: str, span: tuple[float, float]) -> float | None:
        """`aggregate(name, self.window(*span), span, self.kind)`, without building the
        window's points."""
        if name in ("rate", "increase") and self.kind != "counter_delta":
            increase = self.increase(*span)
            if increase is None or name == "increase":
                return increase
            return increase / (span[1] - span[0])
        lo, hi = self.bounds(*span)
        if hi == lo:
            return None
        values = self.vs[lo:hi]
        if name in ("rate", "increase"):  # counter_delta: the sum of the deltas
            total = sum(values)
            return total if name == "increase" else total / (span[1] - span[0])
        return aggregate_values(name, values)


class SampleStore:
    """Every watched series' recent samples. `watch()` says which metrics to keep and for
    how long; everything else is dropped on arrival."""

    def __init__(self, max_series_per_metric: int = 10_000, journal_limit: int = 1_000_000) -> None:
        self._retention: dict[tuple[str, str], float] = {}
        self._series: dict[tuple[str, str], dict[LabelKey, Series]] = {}
        self.max_series = max_series_per_metric
        self.dropped_series = 0
        # Kept samples not yet written to Postgres: (tenant, metric, labels, kind, ts, value).
        self.journaling = False
        self.journal: list[tuple[str, str, LabelKey, str, float, float]] = []
        self.journal_limit = journal_limit
        self.journal_dropped = 0

    def watch(self, retention: Mapping[tuple[str, str], float]) -> None:
        """(tenant, metric) → seconds to keep; series of metrics no longer watched go."""
        self._retention = dict(retention)
        for key in list(self._series):
            if key not in self._retention:
                del self._series[key]

    def watched(self, tenant: str, metric: str) -> bool:
        return (tenant, metric) in self._retention

    def add(
        self,
        tenant: str,
        metric: str,
        labels: Mapping[str, str],
        at: datetime,
        value: float,
        trace: dict[str, str] | None = None,
        kind: str = "gauge",
    ) -> bool:
        """Record one sample; False when nobody watches the metric (or too many series)."""
        return self.add_ts(tenant, metric, labels, at.timestamp(), value, kind, trace)

    def add_ts(
        self,
        tenant: str,
        metric: str,
        labels: Mapping[str, str],
        ts: float,
        value: float,
        kind: str = "gauge",
        trace: dict[str, str] | None = None,
        lk: LabelKey | None = None,
    ) -> bool:
        """`add` with the time in epoch seconds (the metric.v2 path); `lk`: the labels'
        key when the caller has it already."""
        key = (tenant, metric)
        retention = self._retention.get(key)
        if retention is None or not math.isfinite(value):
            return False
        by_labels = self._series.setdefault(key, {})
        if lk is None:
            lk = label_key(labels)
        series = by_labels.get(lk)
        if series is None:
            if len(by_labels) >= self.max_series:
                self.dropped_series += 1
                return False
            series = by_labels[lk] = Series(dict(labels), lk)
        series.add(ts, value)
        series.kind = kind
        series.prune(series.last_seen - retention)
        if trace:
            series.trace = trace
        if self.journaling:
            if len(self.journal) >= self.journal_limit:  # Postgres away for long: bounded
                self.journal_dropped += 1
            else:
                self.journal.append((tenant, metric, lk, kind, ts, value))
        return True

    def drain(self) -> list[tuple[str, str, LabelKey, str, float, float]]:
        """The journal so far, emptied."""
        out, self.journal = self.journal, []
        return out

    def longest_retention(self) -> float:
        return max(self._retention.values(), default=0.0)

    def series(self, tenant: str, metric: str) -> Iterator[Series]:
        yield from self._series.get((tenant, metric), {}).values()

    def find(self, tenant: str, metric: str, labels: Mapping[str, str]) -> Series | None:
        return self._series.get((tenant, metric), {}).get(label_key(labels))

    def expire(self, now: float) -> int:
        """Drop the series with no sample inside their metric's retention before `now`
        (no window of any rule sees them any more), so a series that stopped reporting
        stops counting toward the per-metric cap; their alerts keep their own last state
        and go on to no-data. Returns how many went."""
        dropped = 0
        for key, by_labels in self._series.items():
            cutoff = now - self._retention.get(key, 0.0)
            for lk in [k for k, s in by_labels.items() if s.last_seen <= cutoff]:
                del by_labels[lk]
                dropped += 1
        return dropped
