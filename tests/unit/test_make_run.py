"""`make run`'s configuration (devtools/run, through scripts/run.py, the entry the
integration tests run) and what it relies on, without servers:
links on the ingest's real port, loopback channels admitted and said so, a `log` channel
for Belfry's own `belfry-ops`, and a rule pack whose notification-failure rule never
stays firing on a count of 0. The whole `make run` is tests/integration/test_make_run.py."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.alerting.engine.observe import observe
from services.alerting.engine.state import ACTIVE, Alert, evaluate
from services.alerting.engine.windows import SampleStore
from services.alerting.files import load_rules_file
from services.alerting.notify.channels import SendContext
from services.alerting.notify.channels import service_log as log_channel
from services.alerting.notify.config import (
    CHANNEL_TYPES,
    LOG_LEVELS,
    redact_channel_config,
    validate_channel_config,
)
from services.alerting.notify.model import Alert as NotifyAlert
from services.alerting.notify.model import Notification
from services.alerting.notify.settings import NotifySettings
from services.alerting.notify.ssrf import EgressPolicy
from services.api.settings import ApiSettings
from shared.jsonlog import JsonFormatter
from shared.settings import Env
from shared.topology import CHANNEL_TYPES as TOPOLOGY_CHANNEL_TYPES
from shared.topology import Topology
from tests.deploy.support import INFRA, load_script

run = load_script("run")
KEYS = {
    "CLICK_SIGNING_KEYS": "k1:make-run-test-secret-0123",
    "INGEST_TOKEN_KEYS": "t1:make-run-token-secret-0123",
}
LOOPBACK = ipaddress.ip_address("127.0.0.1")


# --- 9: the api's links follow the ingest's port ---------------------------------------


def test_api_links_default_to_the_ingests_own_host_and_port() -> None:
    settings = ApiSettings.from_env({**KEYS, "INGEST_PORT": "38080"})
    assert settings.public_url == "http://127.0.0.1:38080"
    ipv6 = ApiSettings.from_env({**KEYS, "INGEST_HOST": "::1", "INGEST_PORT": "38080"})
    assert ipv6.public_url == "http://[::1]:38080"
    assert ApiSettings.from_env(KEYS).public_url == "http://127.0.0.1:8080"
    # Set, it wins, and the ingest's variables aren't even read.
    given = {**KEYS, "API_PUBLIC_URL": "https://t.example.com/", "INGEST_PORT": "x"}
    assert ApiSettings.from_env(given).public_url == "https://t.example.com"


def test_make_run_on_other_ports_hands_out_links_to_its_ingest() -> None:
    environ = {**KEYS, "INGEST_PORT": "38080", "API_PORT": "38083"}
    config = run.Config.from_env(environ)
    env = config.service_env(environ)
    assert env["API_PUBLIC_URL"] == "http://127.0.0.1:38080"
    assert ApiSettings.from_env(env).public_url == "http://127.0.0.1:38080"
    assert "API_PUBLIC_URL=http://127.0.0.1:38080" in run.banner(config)


# --- 10: loopback channels in development, said so --------------------------------------


def test_make_run_admits_loopback_channels_and_prints_it() -> None:
    config = run.Config.from_env(KEYS)
    env = config.service_env(KEYS)
    assert env["ALERTING_EGRESS_ALLOW_CIDRS"] == "127.0.0.0/8,::1/128"
    policy = EgressPolicy(NotifySettings.from_env(Env(env)).egress_allow)
    assert policy.verdict(LOOPBACK) is None
    assert policy.verdict(ipaddress.ip_address("::1")) is None
    assert policy.verdict(ipaddress.ip_address("10.0.0.1")) is not None  # loopback only
    banner = run.banner(config)
    assert "ALERTING_EGRESS_ALLOW_CIDRS=127.0.0.0/8,::1/128" in banner
    assert "development only" in banner


def test_what_the_user_sets_is_kept() -> None:
    environ = {
        **KEYS,
        "ALERTING_EGRESS_ALLOW_CIDRS": "10.9.0.0/16",
        "API_PUBLIC_URL": "https://t.example.com",
        "ALERTING_RULES_FILE": "/elsewhere.yaml",
    }
    config = run.Config.from_env(environ)
    env = config.service_env(environ)
    assert env["ALERTING_EGRESS_ALLOW_CIDRS"] == "10.9.0.0/16"
    assert env["API_PUBLIC_URL"] == "https://t.example.com"
    assert env["ALERTING_RULES_FILE"] == "/elsewhere.yaml"
    assert config.dev_settings == ()
    assert "Set by make run" not in run.banner(config)


def test_a_refused_channel_address_names_the_allow_list_variable() -> None:
    errors = validate_channel_config(
        "webhook", {"url": "http://127.0.0.1:9000/hook"}, egress_allow=()
    )
    assert "ALERTING_EGRESS_ALLOW_CIDRS" in errors["url"]
    assert "loopback" in errors["url"]
    allowed = validate_channel_config(
        "webhook",
        {"url": "http://127.0.0.1:9000/hook"},
        egress_allow=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    assert allowed == {}


# --- 11: a `log` channel, and belfry-ops ---------------------------------------------------


def test_the_log_channel_type_is_known_everywhere() -> None:
    assert "log" in CHANNEL_TYPES and "log" in TOPOLOGY_CHANNEL_TYPES
    names = {q.name for q in Topology("p").spec().queues}
    assert {"p.notify.log", "p.notify.log.dlq"} <= names
    assert set(LOG_LEVELS) == set(log_channel.LEVELS)
    assert validate_channel_config("log", {}) == {}
    assert validate_channel_config("log", {"level": None}) == {}
    assert validate_channel_config("log", {"level": "error"}, egress_allow=()) == {}
    assert set(validate_channel_config("log", {"level": "loud"})) == {"level"}
    assert redact_channel_config("log", {"level": "info"}) == {"level": "info"}


def _notification(status: str = "firing") -> Notification:
    alert: dict[str, Any] = {
        "fingerprint": "fp1",
        "status": status,
        "labels": {"service": "writer"},
        "annotations": {"summary": "writer lag 42 s"},
        "starts_at": "2026-12-01T05:00:00+00:00",
        "ends_at": None,
        "generator_url": "http://127.0.0.1:8082/api/v1/alerts/fp1",
        "value": 42.0,
        "severity": "warning",
    }
    return Notification(
        id="n-1",
        tenant="belfry",
        channel="belfry-ops",
        channel_type="log",
        rule_id="r-1",
        rule_name="BelfryWriterLag",
        status=status,
        group_key="g",
        group_labels={},
        alerts=(NotifyAlert.from_data(alert),),
    )


async def test_a_log_channel_writes_the_notification_as_one_json_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = SendContext(NotifySettings(), None, lambda: 0.0, asyncio.sleep)
    with caplog.at_level(logging.INFO, logger="belfry.alerting.notify.log"):
        outcome = await log_channel.send(_notification(), {}, ctx)
    assert outcome.delivered
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="belfry.alerting.notify.log"):
        for level in (None, "info", "error"):  # null is absent: the default
            assert (await log_channel.send(_notification(), {"level": level}, ctx)).delivered
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO, logging.ERROR]
    line = json.loads(JsonFormatter("alerting").format(record))
    assert line["msg"] == "alert notification"
    assert line["channel"] == "belfry-ops" and line["rule"] == "BelfryWriterLag"
    assert line["status"] == "firing"
    (alert,) = line["alerts"]
    assert alert["labels"] == {
        "alertname": "BelfryWriterLag",
        "severity": "warning",
        "service": "writer",
    }
    assert alert["annotations"] == {"summary": "writer lag 42 s"} and alert["value"] == 42.0


def test_the_rule_pack_routes_to_belfry_ops() -> None:
    rules = load_rules_file(str(INFRA / "alerting" / "rules.yaml"))
    assert rules and all(r.channels == ("belfry-ops",) for r in rules)
    assert run.OPS_CHANNEL == "belfry-ops" and run.OPS_CHANNEL_TYPE == "log"


# --- 11: BelfryNotificationsFailing never fires on a count of 0 ------------------------

T0 = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


def test_notifications_failing_is_firing_only_while_failures_are_counted() -> None:
    """The figure is failures per report (every few seconds); one failure makes the
    5-minute sum 1. While the alert is active its value must be that count: above 0."""
    (rule,) = [
        r
        for r in load_rules_file(str(INFRA / "alerting" / "rules.yaml"))
        if r.name == "BelfryNotificationsFailing"
    ]
    store = SampleStore()
    store.watch({(rule.tenant, rule.metric): rule.window * 2})
    labels = {"service": "alerting", "owner": "belfry"}
    alerts: dict[str, Alert] = {}
    states = []
    for second in range(0, 1200, 5):
        now = T0 + timedelta(seconds=second)
        store.add(rule.tenant, rule.metric, labels, now, 1.0 if second == 10 else 0.0)
        for seen in observe(rule, store, alerts, now):
            alert = alerts.get(seen.fingerprint) or Alert(
                seen.fingerprint, rule.id, rule.tenant, dict(seen.labels), rule.severity
            )
            alert, _ = evaluate(alert, rule, seen.observation, now)
            alert.last_seen = seen.last_seen
            alerts[seen.fingerprint] = alert
            states.append((second, alert.state, alert.value))
    active = [(s, v) for s, state, v in states if state in ACTIVE]
    assert active, "one failure fires the rule"
    assert all(v is not None and v > 0 for _, v in active), active[-3:]
    assert states[-1][1] == "resolved"


def test_the_banner_opens_the_console_views_with_their_keys() -> None:
    """The alerts view with the demo tenant's key; the health view (operators) with
    tenant belfry's, on the api's own port."""
    environ = {**KEYS, "API_PORT": "38083"}
    config = dataclasses.replace(
        run.Config.from_env(environ),
        api_keys=(("demo", "blf_demo_key"), ("belfry", "blf_ops_key")),
    )
    text = run.banner(config)
    assert "http://127.0.0.1:38083/demo/console/alerts#key=blf_demo_key" in text
    assert "http://127.0.0.1:38083/console/health#key=blf_ops_key" in text
