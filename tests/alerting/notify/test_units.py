"""Delivery logic that needs no broker or database: channel config validation and
redaction, the retry schedule, the egress policy, the payload builders (checked against
the reference Standard Webhooks verifier) and the Slack rate limiter on a fake clock."""

from __future__ import annotations

import base64
import email
import ipaddress
import os
import random
import re
import socket
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from services.alerting.notify.channels import (
    RateLimiter,
    SendContext,
    alertmanager,
    slack,
    webhook,
)
from services.alerting.notify.channels import email as email_channel
from services.alerting.notify.config import redact_channel_config, validate_channel_config
from services.alerting.notify.destinations import destination_problem, literal_address
from services.alerting.notify.metrics import NotifyMetrics, owner_of
from services.alerting.notify.model import Notification
from services.alerting.notify.retry import backoff, parse_retry_after, retry_delay
from services.alerting.notify.settings import NotifySettings, default_external_url
from services.alerting.notify.ssrf import (
    EgressPolicy,
    EgressRefused,
    Network,
    open_checked,
    refusal,
)
from shared.contracts import validate_envelope
from shared.settings import Env, SettingsError
from tests.alerting.notify.conftest import notification


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def parsed(env: dict[str, Any]) -> Notification:
    return Notification.from_envelope(validate_envelope(env))


# --- config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("webhook", {"url": "https://example.com/hook", "secrets": [], "headers": {"X-A": "b"}}),
        ("slack", {"url": "https://hooks.slack.com/services/T/B/x"}),
        ("email", {"host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"]}),
        ("alertmanager", {"url": "http://am:9093"}),
    ],
)
def test_valid_configs_have_no_errors(kind: str, config: dict[str, Any]) -> None:
    assert validate_channel_config(kind, config) == {}


def test_config_errors_name_the_fields() -> None:
    errors = validate_channel_config(
        "webhook",
        {"url": "ftp://x", "secrets": ["whsec_short", secret()], "headers": {"Content-Type": "x"}},
    )
    assert set(errors) == {"url", "secrets.0", "headers.Content-Type"}
    errors = validate_channel_config(
        "email", {"host": "", "port": 70000, "tls": "ssl", "from": "nobody", "to": []}
    )
    assert set(errors) == {"host", "port", "tls", "from", "to"}
    assert set(validate_channel_config("pager", {})) == {"type"}
    assert validate_channel_config("slack", "nope") == {"config": "must be an object"}


def test_redaction_masks_every_secret() -> None:
    s = secret()
    shown = redact_channel_config(
        "webhook",
        {"url": "https://u:pw@h.example/p?token=abc", "secrets": [s], "headers": {"X-K": "v"}},
    )
    text = repr(shown)
    assert s not in text and "pw" not in text and "abc" not in text and "'v'" not in text
    assert shown["secrets"][0].startswith("whsec_")
    slack_shown = redact_channel_config("slack", {"url": "https://hooks.slack.com/services/T/B/X"})
    assert "T/B/X" not in slack_shown["url"]
    mail = redact_channel_config("email", {"host": "h", "username": "u", "password": "pw"})
    assert mail["password"] == "***" and mail["username"] == "u"


# --- retry schedule --------------------------------------------------------------------


def test_backoff_grows_exponentially_capped_with_bounded_jitter() -> None:
    s = NotifySettings(backoff_base=1, backoff_factor=4, backoff_max=60, backoff_jitter=0.2)
    rng = random.Random(1)
    for attempt, base in [(1, 1), (2, 4), (3, 16), (4, 60), (9, 60)]:
        delays = [backoff(attempt, s, rng) for _ in range(200)]
        assert min(delays) >= base * 0.8 and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.2  # jitter really spreads them


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    s = NotifySettings(backoff_base=0.01, retry_after_max=100)
    assert retry_delay(1, 2.0, s, random.Random()) == 2.0  # honoured, not jittered
    assert retry_delay(1, 10_000.0, s, random.Random()) == 100  # capped


def test_settings_from_env_fail_fast_naming_the_variable() -> None:
    s = NotifySettings.from_env(
        Env(
            {
                "ALERTING_EGRESS_ALLOW_CIDRS": "127.0.0.0/8, 10.1.0.0/16",
                "ALERTING_NOTIFY_MAX_ATTEMPTS": "4",
            }
        )
    )
    assert s.max_attempts == 4 and ipaddress.ip_network("10.1.0.0/16") in s.egress_allow
    with pytest.raises(SettingsError, match="ALERTING_EGRESS_ALLOW_CIDRS"):
        NotifySettings.from_env(Env({"ALERTING_EGRESS_ALLOW_CIDRS": "10.0.0.0/99"}))
    with pytest.raises(SettingsError, match="ALERTING_NOTIFY_MAX_ATTEMPTS"):
        NotifySettings.from_env(Env({"ALERTING_NOTIFY_MAX_ATTEMPTS": "0"}))
    defaults = replace(NotifySettings(), external_url=default_external_url("0.0.0.0", 8082))
    assert NotifySettings.from_env(Env({})) == defaults
    with pytest.raises(SettingsError, match="ALERTING_ALERTMANAGER_RESEND_SECONDS"):
        NotifySettings.from_env(Env({"ALERTING_ALERTMANAGER_RESEND_SECONDS": "0"}))
    with pytest.raises(SettingsError, match="ALERTING_PAGERDUTY_EVENTS_URL"):
        NotifySettings.from_env(Env({"ALERTING_PAGERDUTY_EVENTS_URL": "ftp://x"}))


# --- egress policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",  # IPv4-mapped form of a private address
        "::ffff:169.254.169.254",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().check(address)


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("2002:7f00:1::1", "loopback, in 6to4 form"),
        ("2002:a9fe:a9fe::", "metadata endpoint, in 6to4 form"),
        ("64:ff9b::a00:1", "private, in NAT64 form"),
        ("64:ff9b::7f00:1", "loopback, in NAT64 form"),
        ("64:ff9b:1:a00:0:100::", "private, in NAT64 local-use form"),
        # Teredo: server 65.54.227.120, client 10.0.0.1 (stored inverted)
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private, in Teredo form"),
        # Teredo: server 10.0.0.1, client 8.8.8.8
        ("2001:0:a00:1::f7f7:f7f7", "private, in Teredo form"),
        ("::127.0.0.1", "loopback, in IPv4-compatible form"),
        ("::a9fe:a9fe", "metadata endpoint, in IPv4-compatible form"),
        ("::ffff:127.0.0.1", "loopback, in IPv4-mapped form"),
        ("::ffff:192.168.0.1", "private, in IPv4-mapped form"),
    ],
)
def test_ipv6_forms_embedding_an_internal_ipv4_are_refused(address: str, embedded: str) -> None:
    with pytest.raises(EgressRefused, match=re.escape(embedded)):
        EgressPolicy().check(address)


def test_ipv6_forms_are_judged_by_their_public_ipv4_too() -> None:
    EgressPolicy().check("2002:808:808::1")  # 6to4 of 8.8.8.8
    EgressPolicy().check("64:ff9b::808:808")  # NAT64 of 8.8.8.8: only that host
    for address in ("2001:0:808:808::f7f7:f7f7", "::8.8.8.8", "64:ff9b:1:808:8:800::"):
        with pytest.raises(EgressRefused):  # Teredo, IPv4-compatible, local NAT64: never
            EgressPolicy().check(address)


def test_public_addresses_pass_and_allow_list_admits() -> None:
    EgressPolicy().check("93.184.215.14")
    EgressPolicy().check("2606:4700::1111")
    allow = EgressPolicy((ipaddress.ip_network("127.0.0.0/8"),))
    allow.check("127.0.0.1")
    allow.check("::ffff:127.0.0.1")
    with pytest.raises(EgressRefused):
        allow.check("10.0.0.1")


def test_refusal_is_found_inside_client_errors() -> None:
    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("h", 80, False, True, None, None, None)
    wrapped = aiohttp.ClientConnectorError(key, EgressRefused("10.0.0.1", "private"))
    assert refusal(wrapped) == "connection refused by the egress policy (private)"
    assert refusal(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "x"))) is None


# --- builders --------------------------------------------------------------------------


def test_webhook_is_alertmanager_v4_and_verifies_with_every_rotated_secret() -> None:
    old, new = secret(), secret()
    n = parsed(notification("ops", "webhook"))
    req = webhook.build_request(
        n,
        {"url": "https://h/x", "secrets": [new, old], "headers": {"X-Team": "ops"}},
        timestamp=int(__import__("time").time()),
        external_url="http://belfry:8082",
        trace_headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    for s in (old, new):  # each secret alone verifies (receivers mid-rotation)
        payload = Webhook(s).verify(req.body, req.headers)
        assert payload["version"] == "4"
    assert req.headers["webhook-id"] == n.id
    assert req.headers["X-Team"] == "ops" and req.headers["traceparent"].startswith("00-aaa")
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    body = payload
    assert set(body) >= {
        "version",
        "groupKey",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
        "truncatedAlerts",
    }
    (alert,) = body["alerts"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"  # Alertmanager's zero time while firing
    assert alert["startsAt"] == "2026-01-02T03:04:05.000Z"
    assert alert["labels"]["alertname"] == "HighLatency"
    assert body["commonLabels"]["service"] == "ingest" and body["receiver"] == "ops"
    with pytest.raises(Exception, match="signature"):
        Webhook(secret()).verify(req.body, req.headers)


def test_common_labels_are_the_shared_pairs_only() -> None:
    env = notification("ops", "webhook", status="resolved")
    a = env["data"]["alerts"][0]
    b = {**a, "fingerprint": "fp2", "labels": {"service": "writer", "severity": "critical"}}
    env["data"]["alerts"] = [a, b]
    body = webhook.build_payload(parsed(env), "http://x")
    assert "service" not in body["commonLabels"] and body["commonLabels"]["severity"] == "critical"
    assert body["alerts"][0]["endsAt"] == "2026-01-02T04:00:00.000Z"


def test_slack_payload_has_text_and_blocks() -> None:
    body = slack.build_payload(parsed(notification("s", "slack")), "http://belfry")
    assert body["text"].startswith("[FIRING] critical: HighLatency")
    text = str(body["blocks"])
    assert "p95 latency 1.4s" in text and "service=ingest" in text and "1.4" in text
    assert "http://localhost:8082/alerts/" in text
    assert "State: firing, since 2026-01-02T03:04:05+00:00" in text
    done = str(slack.build_payload(parsed(notification("s", "slack", status="resolved")), "h"))
    # Resolved 04:00:00 after a start at 03:04:05: when it ended and for how long it fired.
    assert "State: resolved, at 2026-01-02T04:00:00+00:00, after firing 55m 55s" in done


def test_email_is_multipart_with_a_subject_naming_state_severity_rule() -> None:
    cfg = {"host": "h", "from": "belfry@example.com", "to": ["oncall@example.com"]}
    msg = email_channel.build_message(parsed(notification("m", "email")), cfg, "http://b")
    assert msg["Subject"] == "[FIRING] critical: HighLatency"
    parsed_msg = email.message_from_bytes(msg.as_bytes())
    kinds = [p.get_content_type() for p in parsed_msg.walk()]
    assert kinds == ["multipart/alternative", "text/plain", "text/html"]


def test_alertmanager_alerts_shape() -> None:
    firing = alertmanager.build_alerts(parsed(notification("a", "alertmanager")))
    assert "endsAt" not in firing[0] and firing[0]["labels"]["alertname"] == "HighLatency"
    resolved = alertmanager.build_alerts(
        parsed(notification("a", "alertmanager", status="resolved"))
    )
    assert resolved[0]["endsAt"] == "2026-01-02T04:00:00.000Z"
    req = alertmanager.build_request(
        parsed(notification("a", "alertmanager")), {"url": "http://am/"}, {}
    )
    assert req.url == "http://am/api/v2/alerts"
    # Sent: a firing alert ends 4 resend intervals ahead (Prometheus), a resolved one at
    # its real end.
    ctx = SendContext(
        settings=NotifySettings(alertmanager_resend=60), session=None, clock=lambda: 1e9, sleep=_nap
    )
    ends = alertmanager.firing_ends_at(ctx)
    assert ends.timestamp() == 1e9 + 240
    (sent,) = alertmanager.build_alerts(parsed(notification("a", "alertmanager")), ends)
    assert sent["endsAt"] == "2001-09-09T01:50:40.000Z"
    (done,) = alertmanager.build_alerts(
        parsed(notification("a", "alertmanager", status="resolved")), ends
    )
    assert done["endsAt"] == "2026-01-02T04:00:00.000Z"


async def _nap(seconds: float) -> None:
    return None


# --- slack limiter ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_limiter_spaces_sends_to_one_url_one_second_apart() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock, clock.sleep)
    sent = []
    for _ in range(3):
        await limiter.wait("https://hooks.slack.com/a")
        sent.append(clock.now)
    await limiter.wait("https://hooks.slack.com/b")  # another URL: not held up
    assert sent == [1000.0, 1001.0, 1002.0] and clock.now == 1002.0
    limiter.hold("https://hooks.slack.com/b", 30)  # a 429 asked for 30 s
    assert await limiter.wait("https://hooks.slack.com/b") == pytest.approx(30)


async def test_failure_figures_count_since_the_last_round() -> None:
    metrics = NotifyMetrics(CollectorRegistry())
    metrics.count("webhook", "failed", "tenant")
    metrics.count("slack", "refused", "tenant")
    metrics.count("slack", "delivered", "belfry")
    metrics.count("email", "failed", "belfry")
    samples = await metrics.failure_figures()
    assert {s.name for s in samples} == {"belfry_notifications_failed"}
    assert {s.labels["owner"]: s.value for s in samples} == {"belfry": 1, "tenant": 2}
    assert [s.value for s in await metrics.failure_figures()] == [0, 0]


def test_owner_is_belfry_only_for_belfrys_own_tenant() -> None:
    assert owner_of("belfry") == "belfry"
    assert owner_of("acme") == "tenant"


# --- destinations checked when a channel is saved ---------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("0xa9.254.43518", "169.254.169.254"),
        ("10.0.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("localhost", "127.0.0.1"),
        ("api.localhost", "127.0.0.1"),
    ],
)
def test_literal_addresses_are_read_as_resolvers_read_them(host: str, address: str) -> None:
    found = literal_address(host)
    assert found is not None and found[0] == ipaddress.ip_address(address)
    problem = destination_problem(host, EgressPolicy())
    assert problem is not None and "refused by the egress policy" in problem


def test_names_are_left_to_the_connect_time_guard_and_bad_numbers_refused() -> None:
    assert literal_address("smtp.example.com") is None
    assert literal_address("1password.com") is None
    assert destination_problem("hooks.example.com", EgressPolicy()) is None
    assert destination_problem("8.8.8.8", EgressPolicy()) is None
    for host in ("1.2.3.4.5", "999.1", "0189.0.0.1", "256.0.0.1", "127..1"):
        assert destination_problem(host, EgressPolicy()) == "not a valid host name or IP address"


def test_channel_config_refuses_internal_destinations_under_the_allow_list() -> None:
    mail = {"from": "a@example.com", "to": ["b@example.com"]}
    none: tuple[Network, ...] = ()
    assert set(validate_channel_config("webhook", {"url": "http://127.1/x"}, egress_allow=none))
    errors = validate_channel_config("email", {"host": "0x7f.1", **mail}, egress_allow=none)
    assert set(errors) == {"host"} and "127.0.0.1" in errors["host"]
    errors = validate_channel_config(
        "alertmanager", {"url": "http://[64:ff9b::a9fe:a9fe]:9093"}, egress_allow=none
    )
    assert set(errors) == {"url"}
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    assert validate_channel_config("slack", {"url": "http://127.1/x"}, egress_allow=loopback) == {}
    assert validate_channel_config("email", {"host": "127.1", **mail}, egress_allow=loopback) == {}
    # Delivery validates without the allow-list: a stored channel ends `refused` there.
    assert validate_channel_config("webhook", {"url": "http://127.1/x"}) == {}


class StaticResolver(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_smtp_connect_refuses_a_name_with_any_internal_address() -> None:
    # One internal address among public ones refuses the host: no address is tried.
    resolver = StaticResolver("93.184.215.14", "10.0.0.1")
    with pytest.raises(EgressRefused) as refused:
        await open_checked(EgressPolicy(), resolver, "smtp.example.com", 25)
    assert refused.value.address == "10.0.0.1"
    # The tenant's log shows the kind of address, not what the name resolved to.
    assert refused.value.strerror == "connection refused by the egress policy (private)"


RULE_PACK = Path(__file__).resolve().parents[3] / "infra/alerting/rules.yaml"


async def test_default_rule_pack_counts_only_belfrys_own_failures() -> None:
    # The self-reported figures as the reporter sends them (plus its `service` label),
    # against the rule pack's BelfryNotificationsFailing: a tenant's failures don't match.
    from services.alerting.files import load_rules_file

    rules = load_rules_file(str(RULE_PACK))
    (rule,) = [r for r in rules if r.name == "BelfryNotificationsFailing"]
    metrics = NotifyMetrics(CollectorRegistry())
    metrics.count("email", "refused", owner_of("acme"))
    metrics.count("webhook", "failed", owner_of("belfry"))
    matched = {
        s.labels["owner"]: s.value
        for s in await metrics.failure_figures()
        if s.name == rule.metric and rule.matches({**s.labels, "service": "alerting"})
    }
    assert matched == {"belfry": 1}
