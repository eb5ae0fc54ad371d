"""A real `prometheus` (Debian package) sends its alerts to Belfry as to an Alertmanager
(`alerting: alertmanagers:` with `api_version: v2` and the tenant's API key as bearer
credentials): the alert fires in Belfry and reaches a webhook subscriber that verifies
the Standard Webhooks signature; when the rule stops firing (rules reloaded), Prometheus
sends it resolved and the subscriber gets `resolved`. Real broker, database and clock."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import asyncpg
from standardwebhooks.webhooks import Webhook

from services.alerting.keys import AlertingDeps, utc_now
from tests.alerting.conftest import TENANT, StartAlerting
from tests.alerting.notify.conftest import Receiver
from tests.alerting.test_metric_rules_flow import add_signed_webhook
from tests.support.eventually import eventually
from tests.support.prometheus import prometheus

CONFIG = """
global:
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
      authorization: {{credentials: "{key}"}}
"""

FIRING = """
groups:
  - name: app
    interval: 1s
    rules:
      - alert: AppDown
        expr: vector(1)
        labels: {severity: critical, service: web}
        annotations: {summary: "web is down"}
"""

QUIET = FIRING.replace("vector(1)", "vector(1) > 2")


async def test_prometheus_alert_fires_and_resolves_at_a_signed_webhook(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    webhook_receiver: Receiver,
    tmp_path: Path,
) -> None:
    secret = await add_signed_webhook(db, webhook_receiver)
    client = await start_alerting(deps=AlertingDeps(clock=utc_now))
    assert client.server is not None
    rules = tmp_path / "rules.yml"
    rules.write_text(FIRING)
    config = CONFIG.format(rules=rules, port=client.server.port, key=api_key)
    async with prometheus(config, tmp_path, "--rules.alert.resend-delay=1s") as (proc, log):
        firing = await _wait_for(webhook_receiver, "firing", secret, log)
        rules.write_text(QUIET)
        proc.send_signal(signal.SIGHUP)  # reload: the rule no longer fires
        resolved = await _wait_for(webhook_receiver, "resolved", secret, log)
    (alert,) = firing["alerts"]
    assert alert["labels"] == {"alertname": "AppDown", "severity": "critical", "service": "web"}
    assert alert["annotations"] == {"summary": "web is down"}
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    statuses = [r.json()["status"] for r in webhook_receiver.requests]
    assert statuses == ["firing", "resolved"]  # re-sends every second: still one firing
    row = await db.fetchrow(
        "SELECT count(*) AS n, min(state) AS state FROM alerts WHERE tenant_id = $1", TENANT
    )
    assert (row["n"], row["state"]) == (1, "resolved")


async def _wait_for(receiver: Receiver, status: str, secret: str, log: Path) -> Any:
    async def signed() -> list[Any]:
        # Webhook(...).verify raises unless the signature is the channel secret's.
        return [Webhook(secret).verify(r.body, r.headers) for r in receiver.requests]

    try:
        bodies = await eventually(
            signed,
            lambda b: any(x["status"] == status for x in b),
            timeout=60,
            what=f"a signed {status} webhook",
        )
    except AssertionError:
        raise AssertionError(_tail(log)) from None
    return next(b for b in bodies if b["status"] == status)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]
