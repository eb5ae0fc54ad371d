"""Links in notifications point where the alerting service really listens: without
ALERTING_EXTERNAL_URL, the base of externalURL and of every alert's generatorURL comes
from ALERTING_HOST and ALERTING_PORT (the machine's host name for a wildcard address),
not a fixed http://localhost:8082."""

from __future__ import annotations

import socket
import uuid

from services.alerting.engine.state import FIRING, Alert, notification_alert
from services.alerting.notify.settings import NotifySettings, default_external_url
from services.alerting.rules import rule_from_doc
from services.alerting.settings import AlertingSettings
from shared.settings import Env


def test_default_external_url_follows_host_and_port() -> None:
    host = socket.gethostname()
    settings = AlertingSettings.from_env({"ALERTING_PORT": "38082"})
    assert settings.external_url == settings.notify.external_url == f"http://{host}:38082"
    assert default_external_url("0.0.0.0", 9000) == f"http://{host}:9000"
    assert default_external_url("::", 9000) == f"http://{host}:9000"
    assert default_external_url("127.0.0.1", 9000) == "http://127.0.0.1:9000"
    assert default_external_url("::1", 9000) == "http://[::1]:9000"
    env = {"ALERTING_HOST": "alerts.internal", "ALERTING_PORT": "9100"}
    assert NotifySettings.from_env(Env(env)).external_url == "http://alerts.internal:9100"
    # Set explicitly (a proxy in front, TLS): taken as given.
    env["ALERTING_EXTERNAL_URL"] = "https://alerts.example.com/"
    assert AlertingSettings.from_env(env).external_url == "https://alerts.example.com"


def test_generator_url_is_the_alert_route_under_the_external_url() -> None:
    settings = AlertingSettings.from_env({"ALERTING_HOST": "127.0.0.1", "ALERTING_PORT": "38082"})
    rule = rule_from_doc(
        {"name": "HighLatency", "channels": ["ops"], "condition": "latency > 1"},
        tenant="acme",
        rule_id=str(uuid.uuid4()),
    )
    alert = Alert("fp-1", rule.id, "acme", {"service": "api"}, "warning", state=FIRING)
    data = notification_alert(alert, rule, "firing", settings.external_url)
    assert data["generator_url"] == "http://127.0.0.1:38082/api/v1/alerts/fp-1"
