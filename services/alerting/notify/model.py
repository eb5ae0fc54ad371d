"""A notification as delivery sees it: one group of alerts of one rule, for one channel.

Built from a validated `alert.notification.v1` or `.v2` envelope (shared.contracts), so
every field here is known to be well-formed; `status` is firing, resolved or (v2 only)
acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.contracts import Envelope

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
# Alertmanager's JSON for a zero time: what its webhook sends as endsAt while firing.
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(value: datetime) -> str:
    """UTC with a Z, milliseconds kept, the way Alertmanager writes times."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def duration(seconds: float) -> str:
    """`1h 2m 3s`, `4m 5s`, `6s`: how long an alert fired."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return " ".join(f"{v}{u}" for v, u in parts if v) or "0s"


def when(alert: Alert) -> str:
    """`since <start>` while firing; `at <end>, after firing <duration> (since <start>)`
    once resolved (email and Slack)."""
    start = alert.starts_at.isoformat(timespec="seconds")
    if alert.status != "resolved" or alert.ends_at is None:
        return f"since {start}"
    fired = duration((alert.ends_at - alert.starts_at).total_seconds())
    return f"at {alert.ends_at.isoformat(timespec='seconds')}, after firing {fired} (since {start})"


@dataclass(frozen=True, slots=True)
class Alert:
    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    value: float | None
    severity: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Alert:
        ends = data.get("ends_at")
        value = data.get("value")
        return cls(
            fingerprint=data["fingerprint"],
            status=data["status"],
            labels=dict(data["labels"]),
            annotations=dict(data["annotations"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(ends) if isinstance(ends, str) else None,
            generator_url=str(data.get("generator_url") or ""),
            value=float(value) if value is not None else None,
            severity=str(data.get("severity") or data["labels"].get("severity") or "warning"),
        )


def receiver_labels(rule_name: str, alert: Alert) -> dict[str, str]:
    """An alert's labels as receivers expect them: `alertname` and `severity` set."""
    labels = {"alertname": rule_name, "severity": alert.severity}
    labels.update(alert.labels)
    return labels


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    tenant: str
    channel: str
    channel_type: str
    rule_id: str
    rule_name: str
    status: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[Alert, ...]

    @classmethod
    def from_envelope(cls, env: Envelope) -> Notification:
        data = env.data
        return cls(
            id=data["notification_id"],
            tenant=env.tenant,
            channel=data["channel"],
            channel_type=data["channel_type"],
            rule_id=data["rule_id"],
            rule_name=data["rule_name"],
            status=data["status"],
            group_key=data["group_key"],
            group_labels=dict(data["group_labels"]),
            alerts=tuple(Alert.from_data(a) for a in data["alerts"]),
        )

    @property
    def severity(self) -> str:
        """The highest severity among the alerts."""
        return max((a.severity for a in self.alerts), key=lambda s: SEVERITY_ORDER.get(s, 1))

    def labels_of(self, alert: Alert) -> dict[str, str]:
        """An alert's labels as receivers expect them: `alertname` and `severity` set."""
        return receiver_labels(self.rule_name, alert)

    def common(self, attribute: str) -> dict[str, str]:
        """Label (or annotation) pairs every alert shares."""
        maps = [self.labels_of(a) if attribute == "labels" else a.annotations for a in self.alerts]
        first = maps[0]
        return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}
