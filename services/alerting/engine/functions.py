"""Prometheus's range functions over one window, as `rate`, `increase` and
`histogram_quantile` compute them, so a rule written against an app's Prometheus metrics
means here what it means there.

- `extrapolated_increase`: Prometheus `increase` (and `rate` = it / the range): the counter
  resets inside the window added back, then extrapolated to the window's edges when the
  samples reach to within 1.1 average intervals of them (else by half an interval), never
  below a counter's zero. Needs two samples in the window.
- `delta_increase`: OTLP delta sums (`counter_delta`): each sample is already an increase,
  so the window's increase is their sum (no extrapolation: nothing is missing).
- `bucket_quantile`: `histogram_quantile` over (upper bound, cumulative count) buckets:
  linear interpolation inside the bucket holding the rank; the `+Inf` bucket answers the
  highest finite bound; no `+Inf` bucket, fewer than two buckets or no observations →
  no value (Prometheus: NaN). Counts that are not monotonic (scrapes of buckets taken at
  slightly different times) are made so, as Prometheus does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

Point = tuple[float, float]  # (epoch seconds, value)


def raw_increase(points: Sequence[Point]) -> float:
    """last - first with each counter reset (a drop) added back: the increase the samples
    saw. Prometheus treats any drop as a reset to 0."""
    increase = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        increase += after - before if after >= before else after
    return increase


def extrapolated_increase(points: Sequence[Point], start: float, end: float) -> float | None:
    """Prometheus `increase(x[end-start])` at `end` over the points in (start, end]."""
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t = points[-1][0]
    if last_t - first_t <= 0:
        return None
    return extrapolate(raw_increase(points), first_t, first_v, last_t, len(points), start, end)


def extrapolate(
    result: float, first_t: float, first_v: float, last_t: float, n: int, start: float, end: float
) -> float:
    """The increase `result` seen between the first and last of `n` samples (n ≥ 2,
    last_t > first_t), extrapolated to the window (start, end] as Prometheus does."""
    sampled = last_t - first_t
    to_start, to_end = first_t - start, end - last_t
    average = sampled / (n - 1)
    if result > 0 and first_v >= 0:
        # A counter does not go below zero: extrapolate no further back than where it was 0.
        to_start = min(to_start, sampled * (first_v / result))
    threshold = average * 1.1
    extended = sampled
    extended += to_start if to_start < threshold else average / 2
    extended += to_end if to_end < threshold else average / 2
    return result * (extended / sampled)


def delta_increase(points: Sequence[Point]) -> float | None:
    return sum(v for _, v in points) if points else None


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """`histogram_quantile(q, ...)` over (upper bound, cumulative count) pairs."""
    if not 0 <= q <= 1:
        return None
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [b for b, _ in ordered]
    counts = list(itertools.accumulate((c for _, c in ordered), max))  # monotonic
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(ordered) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = 0.0, counts[index]
    if index > 0:
        start = bounds[index - 1]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    if count <= 0:
        return bounds[index]
    return start + (bounds[index] - start) * (rank / count)


def parse_le(text: str) -> float | None:
    """A bucket's `le` label as a float (`+Inf`, `1e3`, `0.5`); None when it isn't one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value
