"""AlertingSettings: the one frozen configuration object of the alerting service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.alerting.notify.settings import NotifySettings
from shared.settings import CommonSettings, Env


@dataclass(frozen=True, slots=True)
class AlertingSettings:
    common: CommonSettings
    host: str = "0.0.0.0"
    port: int = 8082
    # Rules (and channels) loaded from YAML at start; empty = none.
    rules_file: str = ""
    channels_file: str = ""
    # Seconds between two evaluation ticks (driven by the injectable clock in tests).
    eval_interval: float = 5.0
    # A sample of a metric watched by a rule with `for: 0` brings the next tick forward
    # to this many seconds after the last one (the least gap between such ticks); 0 = off.
    eval_on_arrival: float = 0.25
    # Window within which transitions of one rule to the same status become one
    # notification (Alertmanager's group_wait).
    group_wait: float = 10.0
    # Seconds between relay passes over the outbox (a pass also runs after each commit).
    outbox_interval: float = 1.0
    prefetch: int = 50
    # Link put into notifications (generatorURL, externalURL): ALERTING_EXTERNAL_URL.
    external_url: str = "http://localhost:8082"
    migrate_on_start: bool = True
    # Seconds an alert received without `endsAt` (POST /api/v2/alerts) stays active
    # unless sent again: Alertmanager's resolve_timeout.
    resolve_timeout: float = 300.0
    notify: NotifySettings = field(default_factory=NotifySettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AlertingSettings:
        env = Env(environ)
        port = env.integer("ALERTING_PORT", 8082, lo=0, hi=65535)
        notify = NotifySettings.from_env(env)
        return cls(
            common=CommonSettings.from_env("alerting", environ),
            host=env.text("ALERTING_HOST", "0.0.0.0"),
            port=port,
            rules_file=env.text("ALERTING_RULES_FILE", ""),
            channels_file=env.text("ALERTING_CHANNELS_FILE", ""),
            eval_interval=env.number("ALERTING_EVAL_INTERVAL_SECONDS", 5.0, lo=0.05),
            eval_on_arrival=env.number("ALERTING_EVAL_ON_ARRIVAL_SECONDS", 0.25, lo=0.0),
            group_wait=env.number("ALERTING_GROUP_WAIT_SECONDS", 10.0),
            outbox_interval=env.number("ALERTING_OUTBOX_INTERVAL_SECONDS", 1.0, lo=0.01),
            prefetch=env.integer("ALERTING_PREFETCH", 50, lo=1, hi=65535),
            # One variable for both: notify reads ALERTING_EXTERNAL_URL too.
            external_url=notify.external_url,
            migrate_on_start=env.flag("ALERTING_MIGRATE", True),
            resolve_timeout=env.number("ALERTING_RESOLVE_TIMEOUT_SECONDS", 300.0, lo=1.0),
            notify=notify,
        )
