"""What a rule sees at `now`: one observation per series it matches (or per label set of
its expression), including series that went quiet (known only from their alert), so a
missing series becomes no-data.

The hot path of a tick: most series of most rules are quiet (an inactive alert whose
value stays on the safe side of the threshold). Those are settled here, their value
updated in place (`state.settle`), and never reach the state machine; the fingerprints
of known label sets come from a memo instead of a hash per series per tick.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.alerting.engine.exprs import Cache, Vector, evaluate, select
from services.alerting.engine.state import Alert, Observation, settle
from services.alerting.engine.windows import LabelKey, SampleStore
from services.alerting.rules.model import Rule, fingerprint

# (rule id, label set) → fingerprint; the engine keeps one, bounded by its alerts.
Fingerprints = dict[tuple[str, LabelKey], str]


@dataclass(frozen=True, slots=True)
class Seen:
    fingerprint: str
    labels: Mapping[str, str]
    observation: Observation
    last_seen: float
    trace: dict[str, str] | None = None


def observe(
    rule: Rule,
    samples: SampleStore,
    alerts: Mapping[str, Alert],
    now: datetime,
    cache: Cache | None = None,
    fingerprints: Fingerprints | None = None,
    unsilenced: bool = False,
) -> Iterator[Seen]:
    """`alerts`: this rule's known alerts by fingerprint. Known alerts that `settle`
    are updated in place and not yielded (`unsilenced`: the tenant has no active
    silence)."""
    now_ts = now.timestamp()
    quiet_after = rule.no_data_windows * rule.window
    fps: Fingerprints = {} if fingerprints is None else fingerprints
    seen: set[str] = set()
    rule_id, known_fp, alert_of = rule.id, fps.get, alerts.get  # locals: the hot loop
    for key, value in _values(rule, samples, now_ts, cache).items():
        fp = known_fp((rule_id, key))
        if fp is None:
            fp = fps[(rule_id, key)] = fingerprint(rule_id, value.labels)
        seen.add(fp)
        known = alert_of(fp)
        last_seen = max(value.last_seen, known.last_seen) if known else value.last_seen
        if known is not None and settle(known, rule, value.value, now, unsilenced):
            known.last_seen = last_seen
            continue
        stale = value.value is None and now_ts - last_seen >= quiet_after
        yield Seen(fp, value.labels, Observation(value.value, stale), last_seen, value.trace)
    for fp, alert in alerts.items():
        if fp in seen or not rule.matches(alert.labels):
            continue
        stale = now_ts - alert.last_seen >= quiet_after
        yield Seen(fp, alert.labels, Observation(None, stale), alert.last_seen)


def _values(rule: Rule, samples: SampleStore, now_ts: float, cache: Cache | None) -> Vector:
    """The rule's value per label set: a plain rule's selector (a histogram quantile's
    over its buckets), or its expression's."""
    if rule.expr is not None:
        result = evaluate(rule.expr, samples, rule.tenant, now_ts, cache)
        return result if isinstance(result, dict) else {}
    return select(rule.selector, samples, rule.tenant, now_ts, cache)
