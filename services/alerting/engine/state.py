"""The alert state machine, pure: (alert, rule, observation, now) → new alert + changes.

States: inactive → pending (condition holds, waiting `for`) → firing → resolved, plus
acknowledged (firing, a human is on it: no repeats) and silenced (firing, but a silence
matches: no notifications). `announced` records that a `firing` notification went out and
no `resolved` yet, so a `resolved` is sent exactly for alerts that were announced.

No data: `no_data` is true while the series has been quiet for the rule's no-data period;
mode `alert` makes that a breach (a firing alert going quiet is announced again, with no
value), `resolve` resolves, `keep` changes nothing but the flag.

Cooldown: a notification of one status for an alert is held while the previous one of that
status is younger than the rule's `cooldown`; a held `firing` leaves the alert firing and
unannounced, a held `resolved` leaves it resolved and announced, and either goes out on the
first evaluation after the cooldown if the alert is still in that state (a flap inside the
cooldown sends nothing at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.alerting.rules.model import Rule, compare
from services.alerting.rules.template import render

INACTIVE, PENDING, FIRING, ACKNOWLEDGED, SILENCED, RESOLVED = (
    "inactive",
    "pending",
    "firing",
    "acknowledged",
    "silenced",
    "resolved",
)
STATES = (INACTIVE, PENDING, FIRING, ACKNOWLEDGED, SILENCED, RESOLVED)
SEVERITIES_FOR_METRICS = ("info", "warning", "critical")
# States in which the alert counts as firing (hysteresis, keep_firing_for, resolve).
ACTIVE = (FIRING, ACKNOWLEDGED, SILENCED)


class StateError(ValueError):
    """An action that the alert's state does not allow (API: 409)."""


@dataclass(slots=True)
class Alert:
    fingerprint: str
    rule_id: str
    tenant: str
    labels: dict[str, str]
    severity: str
    state: str = INACTIVE
    value: float | None = None
    pending_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_breach_at: datetime | None = None
    last_notified_at: datetime | None = None
    # The last notification of each status (for the rule's cooldown).
    last_firing_at: datetime | None = None
    last_resolved_at: datetime | None = None
    announced: bool = False
    no_data: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    silence_id: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    # In memory only: when a sample of the series was last seen (engine start for alerts
    # loaded from the database), for no-data detection.
    last_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """One state change (or a repeat notification: from_state == to_state == firing)."""

    alert: Alert  # the alert after the change
    from_state: str
    to_state: str
    at: datetime
    reason: str
    notify: str | None = None  # "firing" | "resolved" | "acknowledged": a notification is due
    fired_at: datetime | None = None
    actor: str | None = None
    trace: dict[str, str] | None = None

    @property
    def is_transition(self) -> bool:
        return self.from_state != self.to_state

    def describe(self) -> dict[str, Any]:
        a = self.alert
        return {
            "fingerprint": a.fingerprint,
            "rule_id": a.rule_id,
            "from": self.from_state,
            "to": self.to_state,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "value": a.value,
            "labels": a.labels,
            "severity": a.severity,
        }


@dataclass(frozen=True, slots=True)
class Observation:
    """What the window says about one series at `now`: a value, or none; `stale` when
    there were no samples for the rule's no-data period."""

    value: float | None
    stale: bool = False


class _Step:
    def __init__(self, alert: Alert, now: datetime) -> None:
        self.alert = replace(alert, labels=dict(alert.labels), annotations=dict(alert.annotations))
        self.now = now
        self.changes: list[Change] = []

    def move(
        self,
        to: str,
        reason: str,
        notify: str | None = None,
        fired_at: datetime | None = None,
        actor: str | None = None,
    ) -> None:
        a = self.alert
        if notify is not None:
            a.last_notified_at = self.now
            if notify == "firing":
                a.last_firing_at = self.now
            else:
                a.last_resolved_at = self.now
        self.changes.append(Change(a, a.state, to, self.now, reason, notify, fired_at, actor))
        a.state = to

    def cooled(self, rule: Rule | None, status: str) -> bool:
        """True when the rule's cooldown lets a `status` notification go out now."""
        if rule is None or rule.cooldown <= 0:
            return True
        last = self.alert.last_firing_at if status == "firing" else self.alert.last_resolved_at
        return last is None or (self.now - last).total_seconds() >= rule.cooldown

    def fire(self, reason: str, silence_id: str | None, rule: Rule | None = None) -> None:
        a = self.alert
        owed = a.announced  # a held `resolved`: receivers still see it firing
        a.fired_at = self.now
        a.resolved_at = None
        a.acknowledged_by = a.acknowledged_at = None
        if silence_id is not None:
            a.silence_id = silence_id
            self.move(SILENCED, f"{reason}; silenced")
        elif owed:
            self.move(FIRING, f"{reason}; its resolved was held by the cooldown")
        elif self.cooled(rule, "firing"):
            a.announced = True
            self.move(FIRING, reason, notify="firing")
        else:
            self.move(FIRING, f"{reason}; notification held by the cooldown")

    def resolve(self, reason: str, actor: str | None = None, rule: Rule | None = None) -> None:
        a = self.alert
        held = a.announced and not self.cooled(rule, "resolved")
        notify = "resolved" if a.announced and not held else None
        fired_at = a.fired_at
        a.announced = held
        a.resolved_at = self.now
        a.pending_since = None
        a.silence_id = None
        if held:
            reason = f"{reason}; notification held by the cooldown"
        self.move(RESOLVED, reason, notify=notify, fired_at=fired_at, actor=actor)

    def owed(self, rule: Rule) -> None:
        """Send what a cooldown held, once it is over and still true."""
        a = self.alert
        if a.state == FIRING and not a.announced and self.cooled(rule, "firing"):
            a.announced = True
            self.move(FIRING, "cooldown over", notify="firing")
        elif a.state == RESOLVED and a.announced and self.cooled(rule, "resolved"):
            a.announced = False
            self.move(RESOLVED, "cooldown over", notify="resolved", fired_at=a.fired_at)


def _breach(alert: Alert, rule: Rule, obs: Observation) -> bool | None:
    """True/False, or None when nothing should change (no data yet, or mode keep)."""
    if obs.value is None:
        if not obs.stale or rule.no_data == "keep":
            return None
        return rule.no_data == "alert"
    threshold = rule.threshold
    if alert.state in ACTIVE and rule.clear_threshold is not None:
        threshold = rule.clear_threshold
    return compare(obs.value, rule.op, threshold)


def settle(alert: Alert, rule: Rule, value: float | None, now: datetime, unsilenced: bool) -> bool:
    """Apply `evaluate(alert, rule, Observation(value), now, silence)` in place and
    return True when it would change nothing but the alert's value (and its last breach):
    the hot path of a tick, which settles most series without copying their alert.
    `unsilenced`: no silence of the tenant is active (so none can begin).

    Settled: an inactive alert, or a resolved one with nothing owed, whose value does not
    breach; an acknowledged alert, or a firing announced one with no repeat due and no
    silence possible, whose value still breaches. Anything else (no value, a no-data flag
    to clear, another severity, a state to change) is left to `evaluate`."""
    if value is None or alert.no_data or alert.severity != rule.severity:
        return False
    state = alert.state
    if state == INACTIVE or (state == RESOLVED and not alert.announced):
        if compare(value, rule.op, rule.threshold):
            return False
        alert.value = value
        return True
    if state != ACKNOWLEDGED and not (state == FIRING and alert.announced and unsilenced):
        return False
    threshold = rule.threshold if rule.clear_threshold is None else rule.clear_threshold
    if not compare(value, rule.op, threshold):
        return False
    if state == FIRING and rule.repeat_interval > 0:
        last = alert.last_notified_at
        if last is None or (now - last).total_seconds() >= rule.repeat_interval:
            return False  # a repeat may be due
    alert.value = value
    alert.last_breach_at = now
    return True


def evaluate(
    alert: Alert,
    rule: Rule,
    obs: Observation,
    now: datetime,
    silence_id: str | None = None,
) -> tuple[Alert, list[Change]]:
    """One evaluation of one alert. Returns the alert after it and what changed."""
    step = _Step(alert, now)
    a = step.alert
    if obs.value is not None:
        a.value = obs.value
        a.no_data = False
    elif obs.stale:
        a.no_data = True
    breach = _breach(alert, rule, obs)
    if breach:
        _breached(step, rule, silence_id)
    elif breach is not None:
        _cleared(step, rule, obs)
    _silence(step, silence_id, rule)
    if not step.changes:
        step.owed(rule)
    if not step.changes and a.no_data != alert.no_data:
        _no_data_changed(step, rule, silence_id)
    return a, step.changes


def _breached(step: _Step, rule: Rule, silence_id: str | None) -> None:
    a = step.alert
    reason = "no data" if a.no_data else f"{rule.condition} (value {a.value})"
    a.last_breach_at = step.now
    if a.state in (INACTIVE, RESOLVED):
        a.pending_since = step.now
        if rule.for_ <= 0:
            step.fire(reason, silence_id, rule)
        else:
            step.move(PENDING, reason)
    elif a.state == PENDING:
        if a.pending_since is None or (step.now - a.pending_since).total_seconds() >= rule.for_:
            step.fire(reason, silence_id, rule)
    elif (
        a.state == FIRING
        and a.announced
        and rule.repeat_interval > 0
        and a.last_notified_at is not None
        and (step.now - a.last_notified_at).total_seconds() >= rule.repeat_interval
        and step.cooled(rule, "firing")
        and silence_id is None  # a silence that begins now holds this repeat too
    ):
        step.move(FIRING, "repeat", notify="firing")


def _cleared(step: _Step, rule: Rule, obs: Observation) -> None:
    a = step.alert
    if a.state == PENDING:
        a.pending_since = None
        step.move(INACTIVE, "condition no longer holds")
    elif a.state in ACTIVE:
        held = (step.now - a.last_breach_at).total_seconds() if a.last_breach_at else None
        if held is None or held >= rule.keep_firing_for:
            reason = "no data" if obs.value is None else "condition no longer holds"
            step.resolve(reason, rule=rule)


def _silence(step: _Step, silence_id: str | None, rule: Rule) -> None:
    """Silences apply to firing alerts; an acknowledged alert stays acknowledged."""
    a = step.alert
    if a.state == FIRING and silence_id is not None:
        a.silence_id = silence_id
        step.move(SILENCED, "silenced")
    elif a.state == SILENCED and silence_id is None:
        a.silence_id = None
        if a.announced or not step.cooled(rule, "firing"):
            step.move(FIRING, "silence ended")
        else:
            a.announced = True
            step.move(FIRING, "silence ended", notify="firing")
    elif a.state == SILENCED:
        a.silence_id = silence_id


def _no_data_changed(step: _Step, rule: Rule, silence_id: str | None) -> None:
    """The series went quiet or came back without a state change: record the flag (the
    API shows it); a firing alert going quiet under mode `alert` is announced again, so
    receivers learn its data stopped (the notification carries no value)."""
    a = step.alert
    alerting = a.no_data and rule.no_data == "alert" and a.state == FIRING and a.announced
    if alerting and step.cooled(rule, "firing"):
        step.move(FIRING, "no data", notify="firing")
        return
    step.move(a.state, "no data" if a.no_data else "data again")


def flush_held(alert: Alert, now: datetime, actor: str | None = None) -> tuple[Alert, list[Change]]:
    """A `resolved` the cooldown held goes out now (the rule is deleted or changed, so no
    later evaluation would send it)."""
    if alert.state != RESOLVED or not alert.announced:
        return alert, []
    step = _Step(alert, now)
    step.alert.announced = False
    step.move(RESOLVED, "cooldown cut short", "resolved", alert.fired_at, actor)
    return step.alert, step.changes


def acknowledge(alert: Alert, now: datetime, actor: str) -> tuple[Alert, list[Change]]:
    """firing → acknowledged (repeats stop); idempotent on an acknowledged alert."""
    if alert.state == ACKNOWLEDGED:
        return alert, []
    if alert.state != FIRING:
        raise StateError(f"only a firing alert can be acknowledged (this one is {alert.state})")
    step = _Step(alert, now)
    step.alert.acknowledged_by = actor
    step.alert.acknowledged_at = now
    step.move(ACKNOWLEDGED, "acknowledged", actor=actor)
    return step.alert, step.changes


def resolve_manually(alert: Alert, now: datetime, actor: str) -> tuple[Alert, list[Change]]:
    """Any pending or firing-like alert → resolved (a `resolved` goes out if it was
    announced); idempotent on resolved and inactive alerts."""
    if alert.state in (RESOLVED, INACTIVE):
        return alert, []
    step = _Step(alert, now)
    step.resolve("resolved by hand", actor=actor)
    step.alert.last_breach_at = None
    return step.alert, step.changes


def render_annotations(alert: Alert, rule: Rule) -> dict[str, str]:
    """The rule's annotation templates rendered for the alert as it is now (the API
    stores and shows them; notifications carry them)."""
    return {
        key: render(
            text,
            value=None if alert.no_data else alert.value,
            labels=full_labels(rule, alert),
            threshold=rule.threshold,
            rule=rule.name,
            severity=rule.severity,
        )
        for key, text in rule.annotations.items()
    }


def full_labels(rule: Rule, alert: Alert) -> dict[str, str]:
    return {"alertname": rule.name, "severity": rule.severity, **rule.labels, **alert.labels}


def notification_alert(alert: Alert, rule: Rule, status: str, external_url: str) -> dict[str, Any]:
    """The alert as the `alert.notification.v1` contract carries it."""
    starts = alert.fired_at or alert.pending_since
    ends = alert.resolved_at if status == "resolved" else None
    return {
        "fingerprint": alert.fingerprint,
        "status": status,
        "labels": full_labels(rule, alert),
        "annotations": render_annotations(alert, rule),
        "starts_at": (starts or ends or datetime.now().astimezone()).isoformat(),
        "ends_at": ends.isoformat() if ends else None,
        "generator_url": f"{external_url.rstrip('/')}/api/v1/alerts/{alert.fingerprint}",
        "value": None if alert.no_data else alert.value,
        "severity": rule.severity,
    }
