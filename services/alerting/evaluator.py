"""The alert engine at run time: rules, alerts and sample windows in memory, evaluated on
each tick of the injectable clock, with every state change committed to Postgres (with its
outbox items) before memory, SSE subscribers and metrics see it.

The sample windows are journaled to Postgres on each tick and at stop, and read back at
load (services/alerting/sample_log.py), so a restart keeps them.

One lock serialises ticks, API actions (ack, resolve) and rule changes, so an alert never
changes twice at once. Only one alerting process should evaluate a database's rules (the
state in memory is the writer's cache of the alerts table).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan

from services.alerting import external, sample_log
from services.alerting.engine.exprs import Cache
from services.alerting.engine.observe import Fingerprints, observe
from services.alerting.engine.state import (
    RESOLVED,
    SEVERITIES_FOR_METRICS,
    STATES,
    Alert,
    Change,
    acknowledge,
    evaluate,
    flush_held,
    full_labels,
    notification_alert,
    render_annotations,
    resolve_manually,
)
from services.alerting.engine.windows import LabelKey, SampleStore, label_key
from services.alerting.hub import TransitionHub
from services.alerting.metrics import AlertingMetrics, unserved
from services.alerting.outbox import group_due
from services.alerting.retrying import Failures
from services.alerting.rules.model import Rule
from services.alerting.store import (
    OutboxItem,
    active_silences,
    load_alerts,
    load_rules,
    save_evaluation,
)
from services.alerting.work import Pending, silence_for
from shared.db import Database
from shared.failures import error_text
from shared.samples import SampleTuple
from shared.tasks import stop_task
from shared.tracing import span_context_of, traceparent

log = logging.getLogger("belfry.alerting.engine")
LABEL_KEYS_KEPT = 200_000  # label dicts whose key is remembered (then the memo starts over)

T = TypeVar("T")


class AlertEngine:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime],
        group_wait: float,
        external_url: str,
        hub: TransitionHub | None = None,
        tracer: trace.Tracer | None = None,
        on_outbox: Callable[[], None] = lambda: None,
        arrival_gap: float = 0.0,
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics or unserved()  # the app's (shared.prom); served nowhere: tests
        self.clock = clock
        self.group_wait = group_wait
        self.external_url = external_url
        self.hub = hub or TransitionHub()
        self.tracer = tracer
        self.on_outbox = on_outbox
        # > 0: a sample of a metric some rule with `for: 0` watches brings the next tick
        # forward, at most once per this many seconds (0: ticks only on the interval).
        self.arrival_gap = arrival_gap
        self._urgent: set[tuple[str, str]] = set()
        self._arrived = asyncio.Event()
        self.rules: dict[str, Rule] = {}
        self.alerts: dict[str, Alert] = {}
        # The same alerts by rule id (what each rule's evaluation reads), kept in step.
        self._by_rule: dict[str, dict[str, Alert]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()  # the alerts gauge's
        self.samples = SampleStore()
        self._fingerprints: Fingerprints = {}
        # id(labels dict) → (the dict, its label key): see observe_samples.
        self._label_keys: dict[int, tuple[Mapping[str, str], LabelKey]] = {}
        self.lock = asyncio.Lock()
        self.loaded = False
        self.ticks = 0
        self.last_tick_at: datetime | None = None  # the clock's now at the last tick
        self.last_error: str | None = "not loaded yet"
        self._task: asyncio.Task[None] | None = None

    # --- loading -------------------------------------------------------------------

    async def load(self) -> None:
        """Rules and alerts from the database (start-up, or after it was away)."""
        async with self.lock:
            await self._load()

    async def _load(self) -> None:
        pool = await self.db.pool()
        rules = await load_rules(pool)
        alerts = await load_alerts(pool)
        started = self.clock().timestamp()
        self.rules = {r.id: r for r in rules}
        for alert in alerts:
            # No-data counts from now (the stored samples move it on where they reach).
            alert.last_seen = started
        self.alerts = {a.fingerprint: a for a in alerts}
        self._by_rule = {}
        for alert in alerts:
            self._by_rule.setdefault(alert.rule_id, {})[alert.fingerprint] = alert
        # The windows from Postgres (what this store journaled is written first, so a
        # reload after a lost evaluator lock neither loses nor doubles samples).
        async with pool.acquire() as conn:
            await sample_log.flush(conn, self.samples, started, prune=False)
            self.samples = SampleStore()
            self._watch()
            await sample_log.reload(conn, self.samples, started)
        self.samples.journaling = True
        self.loaded = True
        self.last_error = None
        self._update_gauge()
        log.info("rules loaded", extra={"rules": len(rules), "alerts": len(alerts)})

    def _watch(self) -> None:
        retention: dict[tuple[str, str], float] = {}
        urgent: set[tuple[str, str]] = set()
        for rule in self.rules.values():
            if rule.enabled:
                for metric, window in rule.watches():
                    key = (rule.tenant, metric)
                    retention[key] = max(retention.get(key, 0.0), window)
                    if rule.for_ <= 0:
                        urgent.add(key)
        self.samples.watch(retention)
        self._urgent = urgent

    # --- samples -------------------------------------------------------------------

    def observe(
        self,
        tenant: str,
        metric: str,
        labels: Mapping[str, str],
        at: datetime,
        value: float,
        trace_carrier: dict[str, str] | None = None,
    ) -> bool:
        now = self.clock()
        kept = self.samples.add(tenant, metric, labels, min(at, now), value, trace_carrier)
        if kept and self.arrival_gap > 0 and (tenant, metric) in self._urgent:
            self._arrived.set()
        return kept

    def observe_sample(
        self,
        tenant: str,
        metric: str,
        labels: Mapping[str, str],
        ts: float,
        value: float,
        kind: str,
        trace_carrier: dict[str, str] | None = None,
    ) -> bool:
        """`observe` for a metric.v2 sample: time in epoch seconds, with its kind."""
        ts = min(ts, self.clock().timestamp())
        kept = self.samples.add_ts(tenant, metric, labels, ts, value, kind, trace_carrier)
        if kept and self.arrival_gap > 0 and (tenant, metric) in self._urgent:
            self._arrived.set()
        return kept

    def observe_samples(
        self, tenant: str, samples: Sequence[SampleTuple], carrier: dict[str, str] | None
    ) -> int:
        """`observe_sample` for one metric.v2 envelope's samples (time in ms): the clock
        read once, and each label set's key computed once per labels dict (the decoder
        hands out one dict per series), not a sort per sample. Returns how many were kept."""
        now = self.clock().timestamp()
        store, keys, kept = self.samples, self._label_keys, 0
        urgent = self._urgent if self.arrival_gap > 0 else None
        for name, labels, ts, value, kind in samples:
            if not store.watched(tenant, name):
                continue
            entry = keys.get(id(labels))
            if entry is None or entry[0] is not labels:  # holding the dict keeps its id
                if len(keys) >= LABEL_KEYS_KEPT:
                    keys.clear()
                entry = keys[id(labels)] = (labels, label_key(labels))
            at = min(ts / 1000, now)
            if store.add_ts(tenant, name, labels, at, value, kind, carrier, entry[1]):
                kept += 1
                if urgent is not None and (tenant, name) in urgent:
                    self._arrived.set()
        return kept

    # --- the tick ------------------------------------------------------------------

    def start(self, interval: float) -> None:
        self._task = asyncio.create_task(self._run(interval), name="alerting-ticks")

    async def stop(self) -> None:
        await stop_task(self._task)
        await self.save_samples()

    async def save_samples(self) -> None:
        """Write the journaled samples now (at stop; a failure is logged, not raised)."""
        if not self.samples.journal:
            return
        try:
            pool = await self.db.pool()
            async with pool.acquire() as conn:
                await sample_log.flush(conn, self.samples, self.clock().timestamp(), prune=False)
        except Exception as exc:
            log.warning("samples not saved", extra={"error": error_text(exc)[:300]})

    async def _run(self, interval: float) -> None:
        """Tick every `interval`, or sooner (`arrival_gap` after the last tick) when a
        sample arrived for a rule that fires at once: its notification should not wait
        for the interval. Failures back off and are logged when they start and end."""
        loop = asyncio.get_running_loop()
        failures = Failures(log, "evaluation", base=interval, cap=max(interval, 30.0))
        while True:
            self._arrived.clear()  # samples arriving during the tick ask for the next one
            started = loop.time()
            try:
                await self.tick()
            except Exception as exc:  # database away: state stays as committed; retry
                self.last_error = error_text(exc)[:300]
                await asyncio.sleep(failures.failed(exc))
                continue
            failures.succeeded()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), interval)
                await asyncio.sleep(max(0.0, started + self.arrival_gap - loop.time()))

    async def tick(self) -> list[Change]:
        """Evaluate every enabled rule at the clock's now; commit; group due outbox items."""
        with self.metrics.tick_seconds.time():
            async with self.lock:
                if not self.loaded:
                    await self._load()
                if self.tracer is None:
                    changes = await self._tick()
                else:
                    with self.tracer.start_as_current_span(
                        "evaluate rules", attributes={"belfry.rules": len(self.rules)}
                    ):
                        changes = await self._tick()
                await self._group()
        self.ticks += 1
        self.last_tick_at = self.clock()
        self.last_error = None
        return changes

    async def _tick(self) -> list[Change]:
        now = self.clock()
        pool = await self.db.pool()
        silences = await active_silences(pool, now)
        silenced = {s["tenant"] for s in silences}
        work: list[Pending] = []
        cache: Cache = {}  # selector values shared by this tick's rules
        if len(self._fingerprints) > 2 * len(self.alerts) + 100_000:
            self._fingerprints.clear()  # label sets gone for good: start the memo afresh
        for rule in self.rules.values():
            if not rule.enabled or external.is_external(rule):  # received, not evaluated
                continue
            self.metrics.evaluations.inc()
            known = self._by_rule.get(rule.id, {})
            unsilenced = rule.tenant not in silenced
            for seen in observe(
                rule, self.samples, known, now, cache, self._fingerprints, unsilenced
            ):
                current = self.alerts.get(seen.fingerprint)
                base = current or Alert(
                    seen.fingerprint, rule.id, rule.tenant, dict(seen.labels), rule.severity
                )
                base.last_seen = seen.last_seen
                silence = silence_for(silences, rule.tenant, full_labels(rule, base))
                after, changes = evaluate(base, rule, seen.observation, now, silence)
                after.severity = rule.severity
                if current is None or changes or current.severity != rule.severity:
                    work.append(Pending(current, after, changes, rule, seen.trace))
                else:
                    # Nothing to announce or store, but keep what the next evaluation
                    # reads: the value (shown by the API) and the last breach, which
                    # keep_firing_for counts from.
                    current.value = after.value
                    current.last_breach_at = after.last_breach_at
        work += [Pending(*w) for w in await external.tick_work(self, pool, now, silences)]
        await self._commit(work, now)
        # Series that left every window stop counting toward the per-metric cap; their
        # alerts (committed above) carry on to no-data by themselves.
        self.samples.expire(now.timestamp())
        async with pool.acquire() as conn:
            await sample_log.flush(conn, self.samples, now.timestamp())
        return [c for w in work for c in w.changes]

    async def _group(self) -> int:
        made = await group_due(self.db, self.clock(), self.group_wait, self.external_url)
        if made:
            self.on_outbox()
        return made

    async def flush_groups(self) -> int:
        """Group what is due now (tests with a fake clock call this after advancing it)."""
        async with self.lock:
            return await self._group()

    # --- commit ----------------------------------------------------------------------

    async def _commit(
        self,
        work: list[Pending],
        now: datetime,
        extra: Callable[[asyncpg.Connection], Awaitable[Any]] | None = None,
    ) -> Any:
        items: list[OutboxItem] = []
        changes: list[Change] = []
        for entry in work:
            # Stored and shown by the API: the text of the alert's latest change.
            entry.after.annotations = render_annotations(entry.after, entry.rule)
            for change in entry.changes:
                carrier = self._state_span(entry, change)
                changes.append(change)
                if change.notify is not None:
                    items.append(self._outbox_item(entry.rule, change, carrier, now))
        result = None
        if work or extra is not None:
            pool = await self.db.pool()
            async with pool.acquire() as conn, conn.transaction():
                await save_evaluation(conn, [w.after for w in work], changes, items)
                if extra is not None:
                    result = await extra(conn)
        for entry in work:
            after = entry.after
            self._count(self.alerts.get(after.fingerprint), -1)
            self._count(after, +1)
            self.alerts[after.fingerprint] = after
            self._by_rule.setdefault(after.rule_id, {})[after.fingerprint] = after
        for change in changes:
            if change.is_transition:
                self._announce(change)
        if work:
            self._publish_gauge()
        return result

    def _outbox_item(
        self, rule: Rule, change: Change, carrier: str | None, now: datetime
    ) -> OutboxItem:
        assert change.notify is not None
        return OutboxItem(
            tenant=rule.tenant,
            rule_id=rule.id,
            status=change.notify,
            fingerprint=change.alert.fingerprint,
            alert=notification_alert(change.alert, rule, change.notify, self.external_url),
            rule={
                "name": rule.name,
                "channels": list(rule.channels),
                # An acknowledgement is one person's action: sent at once.
                "group_wait": 0 if change.notify == "acknowledged" else rule.group_wait,
            },
            traceparent=carrier,
            created_at=now,
        )

    def _announce(self, change: Change) -> None:
        """A committed transition: counted, logged, and sent to the SSE subscribers."""
        self.metrics.transitions.labels(change.to_state).inc()
        alert = change.alert
        rule = self.rules.get(alert.rule_id)
        log.info(
            f"alert {change.to_state}",
            extra={
                "rule_id": alert.rule_id,
                "rule": rule.name if rule is not None else "",
                "alert": alert.fingerprint,
                "tenant": alert.tenant,
                "from_state": change.from_state,
                "state": change.to_state,
                "reason": change.reason,
                "value": alert.value,
            },
        )
        self.hub.publish(alert.tenant, change.describe())

    def _state_span(self, entry: Pending, change: Change) -> str | None:
        """A span for the state change, a child of the consumer span that brought the
        series' latest sample (so the trace runs metric → evaluation → change → publish),
        linked to the evaluation; returns its traceparent for the outbox."""
        if self.tracer is None:
            return None
        current = trace.get_current_span().get_span_context()
        producer = span_context_of(entry.trace)
        parent = trace.set_span_in_context(NonRecordingSpan(producer)) if producer else None
        attributes = {
            "belfry.tenant": change.alert.tenant,
            "belfry.rule.id": entry.rule.id,
            "belfry.rule.name": entry.rule.name,
            "belfry.alert.fingerprint": change.alert.fingerprint,
            "belfry.alert.from_state": change.from_state,
            "belfry.alert.state": change.to_state,
            "belfry.alert.reason": change.reason[:200],
        }
        with self.tracer.start_as_current_span(
            f"alert {change.to_state}",
            context=parent,
            links=[Link(current)] if current.is_valid and producer else None,
            attributes=attributes,
        ) as span:
            ctx = span.get_span_context()
            return traceparent(ctx) if ctx.is_valid else None

    def _update_gauge(self) -> None:
        """Count every alert of a known rule by (state, severity) afresh (load, rule
        changes); a commit adjusts the counts by what it changed (`_count`)."""
        counts: Counter[tuple[str, str]] = Counter()
        for rule_id, alerts in self._by_rule.items():
            if rule_id in self.rules:
                counts.update((a.state, a.severity) for a in alerts.values())
        self._counts = counts
        self._publish_gauge()

    def _count(self, alert: Alert | None, delta: int) -> None:
        if alert is not None and alert.rule_id in self.rules:
            self._counts[(alert.state, alert.severity)] += delta

    def _publish_gauge(self) -> None:
        counts, gauge = self._counts, self.metrics.alerts
        for state in STATES:
            for severity in SEVERITIES_FOR_METRICS:
                gauge.labels(state, severity).set(counts.get((state, severity), 0))

    # --- API actions -------------------------------------------------------------------

    async def act(self, tenant: str, fp: str, action: str, actor: str) -> Alert | None:
        """ack | resolve one alert; None when the tenant has no such alert. Raises
        StateError when the state does not allow the action."""
        async with self.lock:
            alert = self.alerts.get(fp)
            rule = self.rules.get(alert.rule_id) if alert else None
            if alert is None or rule is None or alert.tenant != tenant:
                return None
            rule = await external.own_rule(self, alert, rule)
            now = self.clock()
            step = acknowledge if action == "ack" else resolve_manually
            after, changes = step(alert, now, actor)
            if action == "ack" and alert.announced:
                # Channels that can acknowledge (PagerDuty) hear of it; see outbox.py.
                changes = [replace(c, notify="acknowledged") for c in changes]
            if changes:
                await self._commit([Pending(alert, after, changes, rule)], now)
                await self._group()
            return self.alerts[fp]

    async def change_rule(
        self,
        rule_id: str,
        new: Rule | None,
        write: Callable[[asyncpg.Connection], Awaitable[T]],
        actor: str,
    ) -> T:
        """Apply a rule change: `write(conn)` stores it, in the same transaction as the
        resolution of the rule's alerts when it is deleted, disabled, or watches other
        series now (so they still get their `resolved`)."""
        async with self.lock:
            old = self.rules.get(rule_id)
            now = self.clock()
            work: list[Pending] = []
            drop = False
            if old is not None:
                drop = new is None or (new.metric, new.matchers, new.expr) != (
                    old.metric,
                    old.matchers,
                    old.expr,
                )
                if drop or (new is not None and not new.enabled):
                    reason = "rule deleted" if new is None else "rule changed"
                    for alert in self.alerts.values():
                        if alert.rule_id != rule_id:
                            continue
                        # A resolved held by the cooldown goes now: no later evaluation would.
                        step = flush_held if alert.state == RESOLVED else resolve_manually
                        after, changes = step(alert, now, actor)
                        changes = [_with_reason(c, reason) for c in changes]
                        if changes:
                            rule = await external.own_rule(self, alert, old)
                            work.append(Pending(alert, after, changes, rule))

            async def extra(conn: asyncpg.Connection) -> T:
                result = await write(conn)
                if drop and new is not None:
                    await conn.execute("DELETE FROM alerts WHERE rule_id = $1", rule_id)
                return result

            result: T = await self._commit(work, now, extra)
            if drop:
                for fp in [fp for fp, a in self.alerts.items() if a.rule_id == rule_id]:
                    del self.alerts[fp]
                self._by_rule.pop(rule_id, None)
            if new is None:
                self.rules.pop(rule_id, None)
            else:
                self.rules[new.id] = new
            self._watch()
            self._update_gauge()
            await self._group()
            return result

    def current_value(self, fp: str) -> float | None:
        alert = self.alerts.get(fp)
        return alert.value if alert else None


def _with_reason(change: Change, reason: str) -> Change:
    return replace(change, reason=reason)
