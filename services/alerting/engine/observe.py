"""What a rule sees at `now`: one observation per series it matches (or per label set of
its expression), including series that went quiet (known only from their alert), so a
missing series becomes no-data."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.alerting.engine.exprs import Value, evaluate, histogram_name, select
from services.alerting.engine.state import Alert, Observation
from services.alerting.engine.windows import SampleStore, aggregate
from services.alerting.rules.model import Rule, fingerprint


@dataclass(frozen=True, slots=True)
class Seen:
    fingerprint: str
    labels: Mapping[str, str]
    observation: Observation
    last_seen: float
    trace: dict[str, str] | None = None


def observe(
    rule: Rule, samples: SampleStore, alerts: Mapping[str, Alert], now: datetime
) -> Iterator[Seen]:
    """`alerts`: this rule's known alerts by fingerprint."""
    now_ts = now.timestamp()
    quiet_after = rule.no_data_windows * rule.window
    seen: set[str] = set()
    for value in _values(rule, samples, now_ts):
        fp = fingerprint(rule.id, value.labels)
        seen.add(fp)
        known = alerts.get(fp)
        last_seen = max(value.last_seen, known.last_seen if known else 0.0)
        stale = value.value is None and now_ts - last_seen >= quiet_after
        yield Seen(fp, value.labels, Observation(value.value, stale), last_seen, value.trace)
    for fp, alert in alerts.items():
        if fp in seen or not rule.matches(alert.labels):
            continue
        stale = now_ts - alert.last_seen >= quiet_after
        yield Seen(fp, alert.labels, Observation(None, stale), alert.last_seen)


def _values(rule: Rule, samples: SampleStore, now_ts: float) -> Iterator[Value]:
    """The rule's value per label set: a plain rule's per series (the hot path, inline),
    a histogram quantile's or an expression's through engine/exprs.py."""
    if rule.expr is not None:
        result = evaluate(rule.expr, samples, rule.tenant, now_ts)
        yield from result.values() if isinstance(result, dict) else ()
        return
    bucket_metric = histogram_name(rule.selector)
    if bucket_metric is not None and any(
        s.kind == "histogram_bucket" for s in samples.series(rule.tenant, bucket_metric)
    ):
        yield from select(rule.selector, samples, rule.tenant, now_ts).values()
        return
    span = (now_ts - rule.window, now_ts)
    for series in samples.series(rule.tenant, rule.metric):
        if not rule.matches(series.labels):
            continue
        value = aggregate(rule.aggregation, series.window(*span), span, series.kind)
        yield Value(series.labels, value, series.last_seen, series.trace)
