"""What a rule sees at `now`: one observation per series it matches, including series
that went quiet (known only from their alert), so a missing series becomes no-data."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

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
    for series in samples.series(rule.tenant, rule.metric):
        if not rule.matches(series.labels):
            continue
        fp = fingerprint(rule.id, series.labels)
        seen.add(fp)
        value = aggregate(rule.aggregation, series.window(now_ts - rule.window, now_ts))
        known = alerts.get(fp)
        last_seen = max(series.last_seen, known.last_seen if known else 0.0)
        stale = value is None and now_ts - last_seen >= quiet_after
        yield Seen(fp, series.labels, Observation(value, stale), last_seen, series.trace)
    for fp, alert in alerts.items():
        if fp in seen or not rule.matches(alert.labels):
            continue
        stale = now_ts - alert.last_seen >= quiet_after
        yield Seen(fp, alert.labels, Observation(None, stale), alert.last_seen)
