"""Slack, email and Alertmanager delivery against real servers, isolation between
channel types, and the trace carried from the AMQP header to the receiver."""

from __future__ import annotations

import itertools
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiosmtpd.controller import Controller
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.alerting.notify.deps import NotifyDeps
from tests.alerting.notify.conftest import (
    AddChannel,
    Inbox,
    Publish,
    Receiver,
    StartNotify,
    delivery,
    notification,
    run_alertmanager,
)
from tests.support.processes import free_port


async def test_slack_payload_and_one_message_per_second_per_url(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hooks: Receiver = await receiver()
    await add_channel("team-a", "slack", {"url": f"{hooks.url}/services/T1/B1/aaa"})
    await add_channel("team-b", "slack", {"url": f"{hooks.url}/services/T1/B2/bbb"})
    # The limiter's logic is proven at 1/s on a fake clock (test_units); here at 0.5 s
    # through the real path, to keep the suite fast.
    await start_notify(types=("slack",), slack_min_interval=0.5)
    envs = [notification("team-a", "slack") for _ in range(3)] + [notification("team-b", "slack")]
    for env in envs:
        await publish(env)
    for env in envs:
        await delivery(db, env["data"]["notification_id"], "delivered")
    requests = await hooks.wait(4)
    a = [r for r in requests if r.path.endswith("/aaa")]
    b = [r for r in requests if r.path.endswith("/bbb")]
    assert len(a) == 3 and len(b) == 1
    gaps = [y.at - x.at for x, y in itertools.pairwise(a)]
    assert all(g >= 0.45 for g in gaps), gaps
    assert b[0].at < a[-1].at  # another URL is not held up by the first one's limit
    body = a[0].json()
    assert body["text"].startswith("[FIRING] critical: HighLatency")
    blocks = str(body["blocks"])
    # mrkdwn control characters arrive escaped, as Slack requires
    for part in ("critical", "p95 latency 1.4s &gt; 1s", "service=ingest", "1.4", "http://"):
        assert part in blocks


async def test_slack_429_retry_after_holds_that_webhook(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(429, {"Retry-After": "1"})]
    await add_channel("team", "slack", {"url": f"{hook.url}/services/T1/B1/ccc"})
    await start_notify(types=("slack",), slack_min_interval=0.1)  # backoff 20 ms
    first, second = notification("team", "slack"), notification("team", "slack")
    await publish(first)
    await hook.wait(1)  # the 429
    await publish(second)
    for env in (first, second):
        await delivery(db, env["data"]["notification_id"], "delivered")
    requests = await hook.wait(3)
    assert len(requests) == 3
    # Nothing reached that webhook within the Retry-After: not the retry, not the next one.
    assert all(r.at - requests[0].at >= 0.95 for r in requests[1:])


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS SMTP test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
async def test_email_reaches_a_real_smtp_server(
    tls: str,
    request: pytest.FixtureRequest,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    inbox = Inbox()
    port = free_port()
    deps = NotifyDeps()
    kwargs: dict[str, Any] = {}
    if tls != "none":
        cert, key = request.getfixturevalue("tls_files")
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        kwargs = (
            {"tls_context": server_ctx, "require_starttls": True}
            if tls == "starttls"
            else {"ssl_context": server_ctx}
        )
        deps = NotifyDeps(ssl_context=ssl.create_default_context(cafile=str(cert)))
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        await add_channel(
            "oncall",
            "email",
            {
                "host": "127.0.0.1",
                "port": port,
                "tls": tls,
                "from": "belfry@example.com",
                "to": ["oncall@example.com", "lead@example.com"],
            },
        )
        await start_notify(deps=deps, types=("email",))
        for status in ("firing", "resolved"):  # a resolved needs its firing delivered
            env = notification("oncall", "email", status=status)
            await publish(env)
            await delivery(db, env["data"]["notification_id"], "delivered")
    finally:
        controller.stop()
    _, envelope = inbox.messages
    assert envelope.rcpt_tos == ["oncall@example.com", "lead@example.com"]
    msg = message_from_bytes(envelope.content)
    assert msg["Subject"] == "[RESOLVED] critical: HighLatency"
    assert msg["X-Belfry-Notification-Id"] == env["data"]["notification_id"]
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert {"text/plain", "text/html"} <= set(parts)
    text, html = (parts[k].get_payload(decode=True) for k in ("text/plain", "text/html"))
    assert isinstance(text, bytes) and isinstance(html, bytes)
    assert b"p95 latency 1.4s > 1s" in text and b"<table" in html


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[str]:
    async with run_alertmanager(tmp_path) as url:
        yield url


async def test_alertmanager_receives_the_alert(
    alertmanager: str,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    await add_channel("am", "alertmanager", {"url": alertmanager})
    await start_notify(types=("alertmanager",))
    env = notification("am", "alertmanager", rule_name=f"NotifyTest{time.time_ns()}")
    await publish(env)
    await delivery(db, env["data"]["notification_id"], "delivered")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{alertmanager}/api/v2/alerts") as resp,
    ):
        alerts = await resp.json()
    (alert,) = [a for a in alerts if a["labels"].get("alertname") == env["data"]["rule_name"]]
    assert alert["labels"]["service"] == "ingest" and alert["status"]["state"] == "active"
    assert alert["annotations"]["summary"] == "p95 latency 1.4s > 1s"
    assert alert["generatorURL"].startswith("http://localhost:8082/alerts/")


async def test_a_hanging_webhook_does_not_delay_slack(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    stuck: Receiver = await receiver(hanging=True)
    slack: Receiver = await receiver()
    await add_channel("stuck", "webhook", {"url": stuck.url})
    await add_channel("chat", "slack", {"url": slack.url})
    await start_notify(types=("webhook", "slack"), prefetch=2, request_timeout=30)
    webhooks = [notification("stuck", "webhook") for _ in range(6)]
    for env in webhooks:  # fills the webhook prefetch window and its queue
        await publish(env)
    started = time.monotonic()
    env = notification("chat", "slack")
    await publish(env)
    await delivery(db, env["data"]["notification_id"], "delivered", timeout=5)
    assert time.monotonic() - started < 2
    pending = await db.fetchval(
        "SELECT count(*) FROM notification_deliveries"
        " WHERE channel_type = 'webhook' AND status = 'pending'"
    )
    assert pending == 2  # the two in flight, still hanging


async def test_traceparent_continues_the_amqp_trace_to_the_receiver(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hook: Receiver = await receiver()
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify(tracer=provider.get_tracer("test"))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = notification("h", "webhook")
    await publish(env, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    await delivery(db, env["data"]["notification_id"], "delivered")
    (request,) = await hook.wait(1)
    _version, got_trace, got_span, flags = request.headers["traceparent"].split("-")
    assert got_trace == trace_id and flags == "01"
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    consumer, client = spans[SpanKind.CONSUMER], spans[SpanKind.CLIENT]
    assert consumer.parent is not None and f"{consumer.parent.span_id:016x}" == parent_id
    assert client.parent is not None and client.parent.span_id == consumer.context.span_id
    assert f"{client.context.span_id:016x}" == got_span  # the receiver's parent: the POST
    assert consumer.attributes is not None and client.attributes is not None
    assert consumer.attributes["messaging.system"] == "rabbitmq"
    assert client.attributes["http.response.status_code"] == 200
    assert client.attributes["http.request.method"] == "POST"
