"""Rules over what applications send, end to end on the real broker and database (fake
clock): `metric.v2` batches published to `<prefix>.metrics` as ingest publishes them →
a division of two aggregations, a histogram p95 and a counter rate each fire and reach a
webhook subscriber that verifies the Standard Webhooks signature; another tenant's samples
of the same metric names never reach the tenant's rules; a `for` pending across a restart
of the alerting service fires on time, from the sample windows kept in Postgres."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import datetime
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from services.alerting.keys import CONSUMER
from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from shared.contracts import BATCH_V1, make_envelope
from shared.samples import METRIC_V2, Sample, metric_v2_data
from shared.topology import Topology
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    StartAlerting,
    auth,
    engine_of,
    metric_event,
)
from tests.alerting.notify.conftest import Receiver
from tests.support.eventually import eventually

OTHER = "globex"
INF = "+Inf"


async def add_rule(db: asyncpg.Connection, name: str, condition: str, **doc: Any) -> str:
    rule = rule_from_doc(
        {"name": name, "condition": condition, "channels": ["hook"], **doc},
        tenant=TENANT,
        rule_id=str(uuid.uuid4()),
    )
    return await upsert_rule(db, rule)


async def add_signed_webhook(db: asyncpg.Connection, receiver: Receiver) -> str:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    config = {"url": f"{receiver.url}/hook", "secrets": [secret]}
    await db.execute(
        "INSERT INTO alert_channels (tenant_id, name, type, config)"
        " VALUES ($1, 'hook', 'webhook', $2::jsonb)",
        TENANT,
        orjson.dumps(config).decode(),
    )
    return secret


def sample(name: str, value: float, at: datetime, kind: str, **labels: str) -> Sample:
    return Sample(name, float(value), int(at.timestamp() * 1000), labels, kind)  # type: ignore[arg-type]


@pytest.fixture
async def send_v2(amqp: aio_pika.abc.AbstractConnection, prefix: str) -> Any:
    """Publish one batch.v1 message of metric.v2 envelopes (one per tenant) as ingest
    does (routing key metric.intake), then wait until the consumer took it."""
    channel = await amqp.channel(publisher_confirms=True)

    async def send(client: TestClient, by_tenant: dict[str, list[Sample]], at: datetime) -> None:
        assert client.app is not None
        exchange = await channel.get_exchange(Topology(prefix).metrics_exchange)
        consumer = client.app[CONSUMER]
        before = consumer.messages
        envelopes = [
            make_envelope(
                str(uuid.uuid4()),
                METRIC_V2,
                tenant,
                at.isoformat(),
                at.isoformat(),
                metric_v2_data(samples),
            )
            for tenant, samples in by_tenant.items()
        ]
        await exchange.publish(
            aio_pika.Message(orjson.dumps(envelopes), type=BATCH_V1),
            routing_key="metric.intake",
        )

        async def consumed() -> int:
            return consumer.messages

        await eventually(consumed, lambda n: n > before, timeout=10, what="batch consumed")

    yield send
    await channel.close()


def app_traffic(at: datetime, step: int) -> list[Sample]:
    """What a web app exports at scrape `step` (0, 1): requests and errors per service,
    a latency histogram and a job counter that resets between the scrapes."""
    errors = {"web": (0, 30), "api": (0, 1)}
    samples = []
    for service, counts in errors.items():
        samples.append(sample("http_errors_total", counts[step], at, "counter", service=service))
        samples.append(sample("http_requests_total", 100 * step, at, "counter", service=service))
    buckets = {"0.1": 10, "0.5": 50, "1": 90, INF: 100}
    for le, count in buckets.items():
        samples.append(
            sample(
                "http_request_duration_seconds_bucket",
                count * step,
                at,
                "histogram_bucket",
                service="web",
                le=le,
            )
        )
    samples.append(sample("jobs_failed_total", (100, 50)[step], at, "counter", job="mailer"))
    return samples


async def test_division_histogram_and_rate_rules_fire_to_a_signed_webhook_per_tenant(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_v2: Any,
    clock: FakeClock,
    webhook_receiver: Receiver,
) -> None:
    secret = await add_signed_webhook(db, webhook_receiver)
    await add_rule(
        db,
        "ErrorRatio",
        "sum by (service) (rate(http_errors_total[5m]))"
        " / sum by (service) (rate(http_requests_total[5m])) > 5%",
    )
    await add_rule(db, "SlowRequests", "p95(http_request_duration_seconds[5m]) > 0.5")
    await add_rule(db, "JobsFailing", "rate(jobs_failed_total[5m]) > 0.1")
    client = await start_alerting()
    engine = engine_of(client)

    # The other tenant sends the same names with values that would breach every rule,
    # in its own envelopes of the same messages.
    theirs = [
        sample("http_errors_total", 0, clock(), "counter", service="billing"),
        sample("http_requests_total", 0, clock(), "counter", service="billing"),
    ]
    await send_v2(client, {TENANT: app_traffic(clock(), 0), OTHER: theirs}, clock())
    clock.advance(60)
    theirs = [
        sample("http_errors_total", 90, clock(), "counter", service="billing"),
        sample("http_requests_total", 100, clock(), "counter", service="billing"),
        sample("jobs_failed_total", 1e6, clock(), "counter", job="mailer"),
    ]
    await send_v2(client, {OTHER: theirs, TENANT: app_traffic(clock(), 1)}, clock())
    await engine.tick()

    states = {
        (engine.rules[a.rule_id].name, tuple(sorted(a.labels.items()))): (a.state, a.value)
        for a in engine.alerts.values()
    }
    assert states[("ErrorRatio", (("service", "web"),))] == ("firing", pytest.approx(0.3))
    assert states[("ErrorRatio", (("service", "api"),))][0] == "inactive"  # 1 %
    assert states[("SlowRequests", (("service", "web"),))] == ("firing", 1.0)
    # 100 → reset → 50: an increase of 50 in 60 s, extrapolated by half an interval at
    # the start (the window reaches further back than 1.1 intervals), over 300 s.
    (state, value) = states[("JobsFailing", (("job", "mailer"),))]
    assert state == "firing" and value == pytest.approx(50 * (60 + 30) / 60 / 300)
    assert len(states) == 4  # no label set of the other tenant's

    requests = await webhook_receiver.wait(3)
    fired = {}
    for request in requests:
        body = Webhook(secret).verify(request.body, request.headers)
        (alert,) = body["alerts"]
        fired[alert["labels"]["alertname"]] = alert["labels"]
    assert fired == {
        "ErrorRatio": {"alertname": "ErrorRatio", "severity": "warning", "service": "web"},
        "SlowRequests": {"alertname": "SlowRequests", "severity": "warning", "service": "web"},
        "JobsFailing": {"alertname": "JobsFailing", "severity": "warning", "job": "mailer"},
    }


async def test_a_pending_alert_fires_on_time_across_a_restart(
    db: asyncpg.Connection, start_alerting: StartAlerting, send_v2: Any, clock: FakeClock
) -> None:
    """Samples at 0, 60, 120 s, a restart at 200 s, one sample at 360 s: the rate over the
    5-minute window needs the samples from before the restart, and the `for: 5m` that
    started at 60 s ends at 360 s, not 5 minutes after the restart."""
    await add_rule(db, "Jobs", "rate(jobs_total[5m]) > 1 for 5m", channels=[])
    start = clock()
    first = await start_alerting()
    for value in (0, 600, 1200):
        await send_v2(first, {TENANT: [sample("jobs_total", value, clock(), "counter")]}, clock())
        await engine_of(first).tick()
        clock.advance(60)
    (alert,) = engine_of(first).alerts.values()
    assert alert.state == "pending" and alert.pending_since == start.replace(minute=1)
    await first.close()
    stored = await db.fetchval("SELECT count(*) FROM alert_samples WHERE tenant_id = $1", TENANT)
    assert stored == 3

    clock.now = start.replace(minute=3, second=20)
    second = await start_alerting()
    engine = engine_of(second)
    clock.now = start.replace(minute=5)
    await engine.tick()  # no new sample: the window still holds 60 s and 120 s
    (alert,) = engine.alerts.values()
    assert alert.state == "pending" and alert.value == pytest.approx(5.0)

    clock.now = start.replace(minute=6)
    await send_v2(second, {TENANT: [sample("jobs_total", 1800, clock(), "counter")]}, clock())
    # Without the stored samples this window would hold one sample: no rate, still pending.
    await engine.tick()
    (alert,) = engine.alerts.values()
    assert alert.state == "firing"
    assert alert.fired_at == clock() and alert.pending_since == start.replace(minute=1)
    # Pruned to the longest window on the tick: the sample at 0 s is gone.
    assert await db.fetchval("SELECT min(ts) FROM alert_samples") > start.timestamp()


async def test_a_bad_metric_v2_envelope_is_dead_lettered_alone(
    amqp: aio_pika.abc.AbstractConnection,
    prefix: str,
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_v2: Any,
    clock: FakeClock,
) -> None:
    """A batch mixing a valid metric.v2 envelope, an invalid one (a bucket without `le`)
    and a metric.v1 event: the bad one goes to the dead-letter queue with its reason, the
    others are taken (the v1 path keeps working beside v2)."""
    await add_rule(db, "Depth", "queue_depth > 10", channels=[])
    client = await start_alerting()
    good = make_envelope(
        str(uuid.uuid4()),
        METRIC_V2,
        TENANT,
        clock().isoformat(),
        clock().isoformat(),
        {"samples": [{"name": "queue_depth", "value": 50, "ts": 1, "labels": {"q": "a"}}]},
    )
    bad = {**good, "id": str(uuid.uuid4())}
    bad["data"] = {
        "samples": [{"name": "x_bucket", "value": 1, "ts": 1, "kind": "histogram_bucket"}]
    }
    v1 = metric_event("queue_depth", 20, {"q": "b"}, at=clock())
    assert client.app is not None
    consumer = client.app[CONSUMER]
    exchange = await (await amqp.channel()).get_exchange(Topology(prefix).metrics_exchange)
    await exchange.publish(
        aio_pika.Message(orjson.dumps([good, bad, v1]), type=BATCH_V1), routing_key="metric.x"
    )

    async def consumed() -> int:
        return consumer.messages

    await eventually(consumed, lambda n: n >= 1, what="batch consumed")
    await engine_of(client).tick()
    states = {a.labels["q"]: a.state for a in engine_of(client).alerts.values()}
    assert states == {"a": "firing", "b": "firing"}

    channel = await amqp.channel()
    queue = await channel.get_queue(Topology(prefix).alerting_dlq)

    async def take() -> Any:
        return await queue.get(no_ack=True, fail=False)

    message = await eventually(take, lambda m: m is not None, what="a dead letter")
    assert [e["id"] for e in orjson.loads(message.body)] == [bad["id"]]
    assert "`le`" in str(message.headers["x-belfry-reason"])


async def test_expression_rules_through_the_api(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    """An expression rule in the field form is stored and shown with its shorthand; what
    GET shows, PUT back, is the same rule; a bad node is a 400 naming its path."""
    client = await start_alerting()
    h = auth(api_key)
    side = {"metric": "e_total", "aggregation": "rate", "window": "5m"}
    body = {
        "name": "ErrorRatio",
        "expr": {
            "op": "/",
            "left": {"aggregate": "sum", "by": ["service"], "of": side},
            "right": {"aggregate": "sum", "by": ["service"], "of": {**side, "metric": "r_total"}},
        },
        "op": ">",
        "threshold": 0.05,
    }
    resp = await client.post("/api/v1/rules", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["condition"] == (
        "sum by (service) (rate(e_total[5m])) / sum by (service) (rate(r_total[5m])) > 0.05"
    )
    assert made["metric"] is None and made["expr"]["op"] == "/"
    shown = {
        k: v
        for k, v in made.items()
        if k not in ("condition", "source", "created_at", "updated_at", "id")
    }
    resp = await client.put(f"/api/v1/rules/{made['id']}", json=shown, headers=h)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["condition"] == made["condition"]

    bad = {**body, "name": "Bad", "expr": {"op": "/", "left": {"metric": "a"}, "right": 3}}
    resp = await client.post("/api/v1/rules", json=bad, headers=h)
    assert resp.status == 400
    assert "expr.right" in (await resp.json())["fields"]
    resp = await client.post(
        "/api/v1/rules",
        json={"name": "Both", "condition": "a / b > 1", "expr": body["expr"]},
        headers=h,
    )
    assert resp.status == 400 and "expr" in (await resp.json())["fields"]
