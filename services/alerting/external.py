"""Alerts from outside — Prometheus, Grafana — received through Alertmanager's v2 API
(`POST /api/v2/alerts`, routes/am_alerts.py), in Belfry's own alert lifecycle.

Mapping: each distinct `alertname` of a tenant gets an *external rule*, created on first
sight (`alert_rules.source = 'external'`, metric `belfry:external_alert`, which no
evaluation reads). The rule is what grouping, channels, `repeat_interval`, `cooldown`,
`group_wait`, disabling and the rules API act on; each distinct label set is one alert of
it (fingerprint = hash of the rule id and the sorted labels: Alertmanager's identity, per
tenant). An alert is *active* while its `endsAt` is in the future; every re-send moves the
expiry on (Prometheus re-sends about every minute with `endsAt` ahead); without `endsAt`
it expires `resolve_timeout` after it was last received (Alertmanager's default: 5 m).
The state machine is the rules' (engine/state.py `evaluate`, with the observation 1 while
active, 0 once ended), so silences, ack, cooldown and `resolved` work as for rule-made
alerts; the evaluator's tick ends the alerts whose expiry passed.

Everything that decides is a pure function here; `receive` and `tick_work` apply them to
the engine's memory (under its lock) and write through its commit path.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from services.alerting.engine.state import (
    INACTIVE,
    RESOLVED,
    SEVERITIES_FOR_METRICS,
    Alert,
    Change,
    Observation,
    evaluate,
    full_labels,
)
from services.alerting.rules.model import Rule, fingerprint
from services.alerting.rules.validate import RuleError, rule_from_doc, stored_doc
from services.alerting.store import active_silences, dumps
from services.alerting.work import Pending, silence_for

if TYPE_CHECKING:
    from services.alerting.evaluator import AlertEngine

log = logging.getLogger("belfry.alerting.external")

EXTERNAL_METRIC = "belfry:external_alert"
MAX_ALERTS = 1000  # per request (Prometheus sends batches of at most 64)
MAX_LABELS = 64  # labels, and annotations, per alert
MAX_TEXT = 4096  # characters of a label or annotation value, or of generatorURL
MAX_NAME = 200  # an alertname is a rule name
MAX_RULES = 1000  # external rules (distinct alertnames) per tenant
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's zero time.Time, which Prometheus sends for a time it does not set.
GO_ZERO = datetime(1, 1, 1, tzinfo=UTC)


class AlertsError(ValueError):
    """A request body that is not an Alertmanager v2 alert list; `fields` say where."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("invalid alerts")
        self.fields = fields


@dataclass(frozen=True, slots=True)
class Incoming:
    """One received alert, validated."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str

    @property
    def alertname(self) -> str:
        return self.labels["alertname"].strip()


# --- parsing (pure) --------------------------------------------------------------------


def parse_alerts(body: Any) -> list[Incoming]:
    """The alerts of a `POST /api/v2/alerts` body; raises AlertsError with field errors."""
    if not isinstance(body, list):
        raise AlertsError({"body": "must be a JSON array of alerts"})
    if len(body) > MAX_ALERTS:
        raise AlertsError({"body": f"at most {MAX_ALERTS} alerts per request"})
    errors: dict[str, str] = {}
    alerts = [_alert(item, str(i), errors) for i, item in enumerate(body)]
    if errors:
        raise AlertsError(dict(list(errors.items())[:20]))
    return [a for a in alerts if a is not None]


def _alert(item: Any, at: str, errors: dict[str, str]) -> Incoming | None:
    if not isinstance(item, dict):
        errors[at] = "must be an object {labels, annotations, startsAt, endsAt, generatorURL}"
        return None
    labels = _strings(item.get("labels"), f"{at}.labels", errors, names=True)
    annotations = _strings(item.get("annotations", {}), f"{at}.annotations", errors)
    name = labels.get("alertname", "") if labels is not None else ""
    if labels is not None and not (name.strip() and len(name) <= MAX_NAME):
        errors[f"{at}.labels.alertname"] = f"required: a non-blank name of at most {MAX_NAME}"
    starts = _time(item.get("startsAt"), f"{at}.startsAt", errors)
    ends = _time(item.get("endsAt"), f"{at}.endsAt", errors)
    url = item.get("generatorURL", "")
    if url is None:
        url = ""
    if not isinstance(url, str) or len(url) > MAX_TEXT or "\x00" in url:
        errors[f"{at}.generatorURL"] = f"must be text of at most {MAX_TEXT} characters"
        url = ""
    if labels is None or annotations is None or any(k.startswith(at + ".") for k in errors):
        return None
    return Incoming(labels, annotations, starts, ends, url)


def _strings(
    raw: Any, at: str, errors: dict[str, str], names: bool = False
) -> dict[str, str] | None:
    if raw is None and not names:
        return {}
    if not isinstance(raw, dict) or (names and not raw):
        errors[at] = "must be an object of strings" + (" (at least alertname)" if names else "")
        return None
    if len(raw) > MAX_LABELS:
        errors[at] = f"at most {MAX_LABELS} entries"
        return None
    for key, value in raw.items():
        if names and not _LABEL_NAME.fullmatch(key):
            errors[f"{at}.{key[:100]}"] = "not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        elif not isinstance(value, str) or len(value) > MAX_TEXT or len(key) > MAX_TEXT:
            errors[f"{at}.{key[:100]}"] = f"must be a string of at most {MAX_TEXT} characters"
        elif "\x00" in key or "\x00" in value:  # Postgres cannot store it
            errors[f"{at}.{key[:100]}"] = "must not contain NUL characters"
    return raw if not any(k.startswith(at) for k in errors) else None


def _time(raw: Any, at: str, errors: dict[str, str]) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        errors[at] = "must be an RFC 3339 timestamp"
        return None
    text = raw.replace("Z", "+00:00").replace("z", "+00:00")
    # Go writes up to nine fractional digits; Python reads six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        errors[at] = "must be an RFC 3339 timestamp"
        return None
    if value.tzinfo is None:
        errors[at] = "must carry a UTC offset"
        return None
    if value == GO_ZERO:
        return None
    if not MIN_TIME <= value < MAX_TIME:
        errors[at] = f"must be between {MIN_TIME:%Y} and {MAX_TIME:%Y}"
        return None
    return value


# --- decisions (pure) ------------------------------------------------------------------


def is_external(rule: Rule) -> bool:
    return rule.expr is None and rule.metric == EXTERNAL_METRIC


def expires_at(alert: Incoming, now: datetime, resolve_timeout: float) -> datetime:
    """When the alert ends unless it is sent again: its `endsAt`, else `resolve_timeout`
    after now (Alertmanager's `resolve_timeout`)."""
    if alert.ends_at is not None:
        return alert.ends_at
    return now + timedelta(seconds=resolve_timeout)


def rule_doc(name: str) -> dict[str, Any]:
    """The external rule of one alertname: fires while an alert is active, at once."""
    return {
        "name": name,
        "metric": EXTERNAL_METRIC,
        "op": ">",
        "threshold": 0,
        "no_data": {"mode": "keep"},
        "channels": [],
    }


def alert_rule(
    rule: Rule, severity: str, annotations: Mapping[str, str], channels: Iterable[str]
) -> Rule:
    """The external rule as it applies to one alert: the alert's severity and annotations;
    the rule's channels, or every enabled channel of the tenant when it names none; the
    condition fixed (active → 1 > 0), whatever an edit through the rules API put there."""
    return replace(
        rule,
        severity=severity,
        annotations=dict(annotations),
        channels=tuple(rule.channels) or tuple(channels),
        op=">",
        threshold=0.0,
        clear_threshold=None,
        no_data="keep",
    )


def severity_of(labels: Mapping[str, str], default: str) -> str:
    value = labels.get("severity", "")
    return value if value in SEVERITIES_FOR_METRICS else default


def apply(
    alert: Alert | None,
    rule: Rule,
    labels: Mapping[str, str],
    active: bool,
    now: datetime,
    silence_id: str | None,
    starts_at: datetime | None = None,
    reason: str = "",
) -> tuple[Alert, list[Change]] | None:
    """One received (or expired) state of an external alert applied to its Belfry alert.
    None when there is nothing to keep: an alert that ended before it was ever seen."""
    if alert is None:
        if not active:
            return None
        fp = fingerprint(rule.id, labels)
        alert = Alert(fp, rule.id, rule.tenant, dict(labels), rule.severity)
    after, changes = evaluate(alert, rule, Observation(1.0 if active else 0.0), now, silence_id)
    after.value = None  # an external alert carries no value of Belfry's
    began = any(c.is_transition and c.from_state in (INACTIVE, RESOLVED) for c in changes)
    if began and starts_at is not None and starts_at < now:
        # The episode began when the sender says (MTTR counts from there), but not
        # before the previous episode of the alert ended.
        floor = alert.resolved_at
        after.fired_at = starts_at if floor is None else max(starts_at, floor)
    return after, [_reworded(c, rule.condition, reason) for c in changes]


def _reworded(change: Change, condition: str, reason: str) -> Change:
    """The state machine's reasons speak of a condition; an external alert's of what
    was received."""
    if change.reason.startswith(condition):
        text = change.reason.replace(f"{condition} (value 1.0)", reason or "received", 1)
        return replace(change, reason=text)
    if change.reason == "condition no longer holds":
        return replace(change, reason="ended (endsAt passed)")
    return change


# --- the engine side -------------------------------------------------------------------


async def tenant_channels(
    conn: asyncpg.Connection | asyncpg.Pool, tenants: Iterable[str]
) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "SELECT tenant_id, name FROM alert_channels WHERE tenant_id = ANY($1::text[])"
        " AND enabled ORDER BY tenant_id, name",
        list(set(tenants)),
    )
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["tenant_id"], []).append(row["name"])
    return out


async def _ensure_rules(
    engine: AlertEngine, conn: asyncpg.Connection, tenant: str, names: Iterable[str]
) -> dict[str, Rule]:
    """The external rule of each alertname, created on first sight (named `<alertname>
    (external)` when a rule of the tenant already has the alertname as its name)."""
    mine = {r.name: r for r in engine.rules.values() if r.tenant == tenant and is_external(r)}
    count = len(mine)
    found: dict[str, Rule] = {}
    for name in names:
        rule = mine.get(name) or mine.get(f"{name} (external)")
        if rule is None and count >= MAX_RULES:
            log.warning("external rules at their limit", extra={"tenant": tenant, "rule": name})
            continue
        if rule is None:
            rule = await _create_rule(conn, tenant, name)
            if rule is None:
                continue
            engine.rules[rule.id] = rule
            count += 1
        found[name] = rule
    return found


async def _create_rule(conn: asyncpg.Connection, tenant: str, name: str) -> Rule | None:
    for candidate in (name, f"{name} (external)"):
        try:
            rule = rule_from_doc(rule_doc(candidate), tenant=tenant, rule_id=str(uuid.uuid4()))
        except RuleError:  # a name the rules refuse (parse_alerts lets none through)
            return None
        created = await conn.fetchval(
            """INSERT INTO alert_rules (id, tenant_id, name, spec, enabled, source)
               VALUES ($1, $2, $3, $4, true, 'external')
               ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id""",
            rule.id,
            tenant,
            rule.name,
            _dumps(stored_doc(rule)),
        )
        if created is not None:
            log.info("external rule created", extra={"tenant": tenant, "rule": rule.name})
            return rule
    return None


def _dumps(value: Any) -> str:

    return dumps(value)


UPSERT_END = """
INSERT INTO alert_external (fingerprint, tenant_id, ends_at, generator_url)
VALUES ($1, $2, $3, $4)
ON CONFLICT (fingerprint) DO UPDATE SET ends_at = EXCLUDED.ends_at,
    generator_url = EXCLUDED.generator_url, updated_at = now()
"""

Work = tuple[Alert | None, Alert, list[Change], Rule]  # before, after, changes, rule


async def receive(
    engine: AlertEngine, tenant: str, alerts: list[Incoming], resolve_timeout: float
) -> int:
    """Apply received alerts (the later of two with the same labels wins); returns how
    many were taken. Alerts of a disabled external rule are taken and dropped."""

    latest = {tuple(sorted(a.labels.items())): a for a in alerts}
    async with engine.lock:
        now = engine.clock()
        pool = await engine.db.pool()
        async with pool.acquire() as conn:
            names = sorted({a.alertname for a in latest.values()})
            rules = await _ensure_rules(engine, conn, tenant, names)
            silences = await active_silences(conn, now)
            channels = (await tenant_channels(conn, [tenant])).get(tenant, [])
        work: list[Work] = []
        ends: list[tuple[str, str, datetime, str]] = []
        for incoming in latest.values():
            rule = rules.get(incoming.alertname)
            if rule is None or not rule.enabled:
                continue
            severity = severity_of(incoming.labels, rule.severity)
            per = alert_rule(rule, severity, incoming.annotations, channels)
            fp = fingerprint(rule.id, incoming.labels)
            current = engine.alerts.get(fp)
            shown = current or Alert(fp, rule.id, tenant, dict(incoming.labels), severity)
            silence = silence_for(silences, tenant, full_labels(per, shown))
            until = expires_at(incoming, now, resolve_timeout)
            why = f"received from {incoming.generator_url[:300]}" if incoming.generator_url else ""
            result = apply(
                current, per, incoming.labels, until > now, now, silence, incoming.starts_at, why
            )
            if result is None:
                continue
            if current is None or result[1]:
                work.append((current, *result, per))
            ends.append((fp, tenant, until, incoming.generator_url))
        await _commit(engine, work, now, ends)
    return len(ends)


async def _commit(
    engine: AlertEngine, work: list[Work], now: datetime, ends: list[tuple[Any, ...]]
) -> None:
    """Through the engine's commit (alert rows, transitions, outbox items, then memory,
    SSE and metrics), with the expiries in the same transaction."""

    async def write_ends(conn: asyncpg.Connection) -> None:
        await conn.executemany(UPSERT_END, ends)

    await engine._commit([Pending(*w) for w in work], now, write_ends if ends else None)
    await engine._group()


async def tick_work(
    engine: AlertEngine, pool: asyncpg.Pool, now: datetime, silences: list[dict[str, Any]]
) -> list[Work]:
    """At each tick: the external alerts that ended (expiry passed), a silence that began
    or ended, a repeat or a cooldown that is over — what changed, for the tick's commit."""

    if not any(r.enabled and is_external(r) for r in engine.rules.values()):
        return []  # no alert to look at (and no walk over every rule-made one)
    live = [a for a in engine.alerts.values() if _watched(engine, a)]
    if not live:
        return []
    rows = await pool.fetch(
        "SELECT fingerprint, ends_at FROM alert_external WHERE fingerprint = ANY($1::text[])",
        [a.fingerprint for a in live],
    )
    ends = {r["fingerprint"]: r["ends_at"] for r in rows}
    channels = await tenant_channels(pool, {a.tenant for a in live})
    work: list[Work] = []
    for alert in live:
        per = alert_rule(
            engine.rules[alert.rule_id],
            alert.severity,
            alert.annotations,
            channels.get(alert.tenant, []),
        )
        until = ends.get(alert.fingerprint)
        silence = silence_for(silences, alert.tenant, full_labels(per, alert))
        result = apply(alert, per, alert.labels, until is not None and until > now, now, silence)
        if result is not None and result[1]:
            work.append((alert, *result, per))
    return work


def _watched(engine: AlertEngine, alert: Alert) -> bool:
    """An alert of an enabled external rule that a tick may change: not inactive, and
    not resolved unless a held `resolved` is still owed."""
    rule = engine.rules.get(alert.rule_id)
    if rule is None or not rule.enabled or not is_external(rule):
        return False
    return alert.state not in (INACTIVE, RESOLVED) or alert.announced


async def own_rule(engine: AlertEngine, alert: Alert, rule: Rule) -> Rule:
    """The rule to notify an alert's change with (ack, resolve by hand, its rule deleted
    or disabled): an external alert's own severity, annotations and channels."""
    if not is_external(rule):
        return rule
    pool = await engine.db.pool()
    channels = (await tenant_channels(pool, [alert.tenant])).get(alert.tenant, [])
    return alert_rule(rule, alert.severity, alert.annotations, channels)
