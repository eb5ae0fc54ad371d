"""The console's health view, its JSON API: who may call it (tenant `belfry`'s key), every
service's health (a refused, hung or real one), queue figures from the real broker, and
the dead letters: list, replay and purge, the last two only when confirmed, for queue
names of the topology only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.console.health_services import _figures, _read_figures
from services.api.console.targets import ConsoleTargets
from services.api.routes.dashboard import page_headers
from services.api.settings import ApiSettings
from shared.deadletter import dead_letter_message
from shared.topology import Topology, declare_all
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support.eventually import eventually
from tests.support.processes import free_port
from tests.support.prometheus import exporter
from tests.support.tcpproxy import TcpProxy


def nowhere(timeout: float = 1.0) -> ConsoleTargets:
    """Targets on ports nothing listens on: every other service refuses."""
    urls = {f"{n}_url": f"http://127.0.0.1:{free_port()}" for n in ("ingest", "writer", "alerting")}
    return ConsoleTargets(**urls, timeout_seconds=timeout)


@pytest.fixture
async def hung_port() -> AsyncIterator[int]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


async def declared(amqp: Any, prefix: str) -> aio_pika.abc.AbstractChannel:
    channel = await amqp.channel(publisher_confirms=True)
    await declare_all(channel, Topology(prefix))
    return channel


async def dead_letter(channel: Any, prefix: str, body: bytes, reason: str) -> None:
    """A dead letter in the alerting metrics DLQ, as the alerting consumer sends it."""
    topo = Topology(prefix)
    dlx = await channel.get_exchange(topo.dead_letter_exchange)
    message = dead_letter_message(body, reason, "validate", None, topo.alerting_queue)
    await dlx.publish(message, topo.ALERTING_DLQ_KEY)


async def depth(channel: Any, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return int(queue.declaration_result.message_count or 0)


async def json_of(resp: Any) -> Any:
    return orjson.loads(await resp.read())


async def test_only_tenant_belfrys_key_opens_the_view(
    db: asyncpg.Connection, start_api: Started, api_settings: ApiSettings
) -> None:
    api = await start_api(console=nowhere())
    belfry = await new_tenant(db, "belfry")
    acme = await new_tenant(db, "acme")
    routes = [
        ("GET", "/console/api/health"),
        ("GET", f"/console/api/dead-letters/{Topology(api_settings.common.prefix).writer_dlq}"),
        ("POST", "/console/api/dead-letters/x.dlq/replay?confirm=x.dlq"),
        ("POST", "/console/api/dead-letters/x.dlq/purge?confirm=x.dlq"),
    ]
    for method, path in routes:
        resp = await api.request(method, path)
        assert resp.status == 401, path
        assert "error" in await json_of(resp)
        resp = await api.request(method, path, headers=bearer("blf_000000000000_" + "x" * 40))
        assert resp.status == 401, path
        resp = await api.request(method, path, headers=bearer(acme))
        assert resp.status == 403, path
        assert "tenant belfry" in (await json_of(resp))["error"]
    resp = await api.get("/console/api/health", headers=bearer(belfry))
    assert resp.status == 200


async def test_the_page_is_served_with_a_strict_csp(start_api: Started) -> None:
    api = await start_api()
    resp = await api.get("/console/health")
    assert resp.status == 200
    page = await resp.text()
    csp = resp.headers["Content-Security-Policy"]
    assert csp == page_headers("health")["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "https:" not in csp and "unsafe-inline" not in csp
    assert page.count("<script>") == 1 and "src=" not in page.split("<script>")[1][:20]
    assert 'data-poll="15"' in page
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_services_that_hang_show_as_down_and_the_rest_render(
    db: asyncpg.Connection,
    start_api: Started,
    start_writer: Started,
    hung_port: int,
    amqp: Any,
    prefix: str,
) -> None:
    writer = await start_writer()
    await ready(writer)
    hung = f"http://127.0.0.1:{hung_port}"
    targets = ConsoleTargets(hung, str(writer.make_url("")).rstrip("/"), hung, 1.5)
    api = await start_api(console=targets)
    key = await new_tenant(db, "belfry")
    await declared(amqp, prefix)

    started = asyncio.get_running_loop().time()
    resp = await api.get("/console/api/health", headers=bearer(key))
    took = asyncio.get_running_loop().time() - started
    assert resp.status == 200
    doc = await json_of(resp)
    by_name = {s["service"]: s for s in doc["services"]}
    assert list(by_name) == ["api", "ingest", "writer", "alerting"]
    assert by_name["api"]["status"] == "healthy"
    assert "database" in by_name["api"]["health"]["dependencies"]
    for name in ("ingest", "alerting"):
        assert by_name[name] == {
            "service": name,
            "url": hung,
            "status": "down",
            "reason": "no answer within 1.5 s",
        }
    w = by_name["writer"]
    assert w["status"] == "healthy" and w["health"]["service"] == "writer"
    assert set(w["health"]["dependencies"]) >= {"broker", "database", "inserts"}
    assert w["figures"]["lag_seconds"] == 0
    assert took < 2.9  # in parallel: one after the other, the two hung ones took 3 s

    assert doc["broker"]["status"] == "up"
    queues = {q["name"]: q for q in doc["broker"]["queues"]}
    topo = Topology(prefix)
    assert len(queues) == len(topo.spec().queues)
    assert queues[topo.writer_queue]["consumers"] == 1 and queues[topo.writer_queue]["depth"] == 0
    assert queues[topo.writer_dlq]["kind"] == "dead-letter"
    assert queues[topo.writer_dlq]["replays_to"] == topo.writer_queue
    assert queues[topo.delay_queue("slack", 1000)]["kind"] == "delay"


async def test_services_refusing_queues_not_declared_and_a_broker_down_say_so(
    db: asyncpg.Connection, start_api: Started, api_settings: ApiSettings, prefix: str
) -> None:
    key = await new_tenant(db, "belfry")
    api = await start_api(console=nowhere())
    doc = await json_of(await api.get("/console/api/health", headers=bearer(key)))
    assert {q.get("missing") for q in doc["broker"]["queues"]} == {"not declared yet"}
    assert [(s["status"], s.get("reason")) for s in doc["services"][1:]] == [
        ("down", "cannot connect: Connection refused")
    ] * 3  # nothing listens where the others should be

    common = replace(api_settings.common, amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    api = await start_api(replace(api_settings, common=common), console=nowhere())
    resp = await api.get("/console/api/health", headers=bearer(key))
    assert resp.status == 200
    doc = await json_of(resp)
    assert doc["broker"]["status"] == "down" and doc["broker"]["reason"]
    assert [s["service"] for s in doc["services"]] == ["api", "ingest", "writer", "alerting"]
    dlq = Topology(prefix).writer_dlq
    resp = await api.get(f"/console/api/dead-letters/{dlq}", headers=bearer(key))
    assert resp.status == 503 and "broker unavailable" in (await json_of(resp))["error"]


async def test_rates_are_depth_changes_between_two_looks() -> None:
    from services.api.console.health_queues import DepthSampler

    sampler = DepthSampler()
    assert sampler.rate("q", 10, now=100.0) is None  # nothing to compare with yet
    assert sampler.rate("q", 12, now=100.5) is None  # too soon: noise
    assert sampler.rate("q", 30, now=102.0) == 10.0
    assert sampler.rate("q", 0, now=105.0) == -10.0


async def test_dead_letters_list_replay_and_purge(
    db: asyncpg.Connection, start_api: Started, amqp: Any, prefix: str
) -> None:
    key = await new_tenant(db, "belfry")
    api = await start_api(console=nowhere())
    channel = await declared(amqp, prefix)
    topo = Topology(prefix)
    dlq, work = topo.alerting_dlq, topo.alerting_queue
    for i in range(3):
        await dead_letter(channel, prefix, orjson.dumps([{"n": i}]), f"bad sample {i}")
    headers = bearer(key)

    resp = await api.get(f"/console/api/dead-letters/{dlq}?limit=2", headers=headers)
    listed = await json_of(resp)
    assert resp.status == 200 and listed["count"] == 3
    assert [m["reason"] for m in listed["messages"]] == ["bad sample 0", "bad sample 1"]
    assert listed["messages"][0]["stage"] == "validate" and listed["messages"][0]["events"] == 1
    # Listing leaves them queued (returned when its connection closes).
    await eventually(lambda: depth(channel, dlq), lambda n: n == 3, what="3 dead letters")

    base = f"/console/api/dead-letters/{dlq}"
    for unconfirmed in (
        api.post(f"{base}/replay", headers=headers),
        api.post(f"{base}/replay", headers=headers, json={"confirm": "yes"}),
        api.post(f"{base}/replay?confirm=wrong.dlq", headers=headers),
    ):
        resp = await unconfirmed
        assert resp.status == 400 and "confirmation" in (await json_of(resp))["error"]
    assert await depth(channel, dlq) == 3

    resp = await api.post(f"{base}/replay", headers=headers, json={"confirm": True, "limit": 1})
    assert await json_of(resp) == {"queue": dlq, "replayed": 1, "to": work}
    assert await depth(channel, dlq) == 2 and await depth(channel, work) == 1
    queue = await channel.declare_queue(work, passive=True)
    back = await queue.get(no_ack=True)
    assert back is not None and orjson.loads(back.body) in ([{"n": 0}], [{"n": 1}], [{"n": 2}])
    assert back.headers["x-belfry-replayed-from"] == dlq
    assert "x-belfry-reason" not in back.headers

    for unconfirmed in (
        api.post(f"{base}/purge", headers=headers),
        api.post(f"{base}/purge?confirm={work}", headers=headers),
    ):
        assert (await unconfirmed).status == 400
    assert await depth(channel, dlq) == 2
    resp = await api.post(f"{base}/purge?confirm={dlq}", headers=headers)
    assert await json_of(resp) == {"queue": dlq, "purged": 2}
    assert await depth(channel, dlq) == 0


async def test_bad_queue_names_and_limits_are_4xx(
    db: asyncpg.Connection, start_api: Started, amqp: Any, prefix: str
) -> None:
    key = await new_tenant(db, "belfry")
    api = await start_api(console=nowhere())
    headers = bearer(key)
    topo = Topology(prefix)
    names = [
        "nothing.dlq",
        topo.writer_queue,  # a work queue is no dead-letter queue
        "other-prefix.writer.hits.dlq",
        "x" * 3000 + ".dlq",
        "%2e%2e",
        "%E2%80%AE.dlq",
    ]
    for name in names:
        for method, action in (("GET", ""), ("POST", "/replay"), ("POST", "/purge")):
            path = f"/console/api/dead-letters/{name}{action}?confirm={name}"
            resp = await api.request(method, path, headers=headers)
            assert resp.status == 404, (name, action, resp.status)
            assert "error" in await json_of(resp)

    # A dead-letter queue of the topology that nobody declared yet.
    resp = await api.get(f"/console/api/dead-letters/{topo.writer_dlq}", headers=headers)
    assert resp.status == 404 and "not declared" in (await json_of(resp))["error"]

    await declared(amqp, prefix)
    base = f"/console/api/dead-letters/{topo.alerting_dlq}"
    for limit in ("0", "-1", "abc", "1e3", "201", "\N{FULLWIDTH DIGIT NINE}", "9" * 40, ""):
        resp = await api.get(f"{base}?limit={limit}", headers=headers)
        assert resp.status == 400, limit
    for body in (
        {"confirm": True, "limit": 0},
        {"confirm": True, "limit": True},
        {"confirm": True, "limit": "2"},
    ):
        resp = await api.post(f"{base}/replay", headers=headers, json=body)
        assert resp.status == 400, body
    for raw in (b"[true]", b"{", b'"confirm"'):
        resp = await api.post(f"{base}/replay", headers=headers, data=raw)
        assert resp.status == 400, raw


async def test_a_recent_operator_key_still_opens_the_view_while_postgres_is_down(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    pg_proxy: TcpProxy,
) -> None:
    key = await new_tenant(db, "belfry")
    other = await new_tenant(db, "belfry2")
    common = replace(
        api_settings.common, database_url=pg_proxy.url_for(api_settings.common.database_url)
    )
    api: TestClient = await start_api(replace(api_settings, common=common), console=nowhere())
    assert (await api.get("/console/api/health", headers=bearer(key))).status == 200
    pg_proxy.cut()
    resp = await api.get("/console/api/health", headers=bearer(key))
    assert resp.status == 200
    doc = await json_of(resp)
    api_entry = doc["services"][0]
    assert api_entry["status"] == "unhealthy"
    assert api_entry["health"]["dependencies"]["database"]["status"] == "unhealthy"
    # A key not verified before can't be checked now: 503 with the reason, not a 500.
    resp = await api.get("/console/api/health", headers=bearer(other))
    assert resp.status == 503 and "database unavailable" in (await json_of(resp))["error"]


async def test_a_service_answering_no_health_document_shows_as_down_with_why(
    db: asyncpg.Connection, start_api: Started, start_app: Any
) -> None:
    """Real HTTP servers standing in for broken services (outside things: fakes allowed)."""

    def server(status: int, body: bytes, **headers: str) -> web.Application:
        async def answer(_request: web.Request) -> web.Response:
            return web.Response(status=status, body=body, headers=headers)

        app = web.Application()
        app.router.add_get("/health/detailed", answer)
        return app

    fakes = [
        await start_app(server(200, b"<html>hello</html>")),
        await start_app(server(500, b"oops")),
        await start_app(server(200, b'{"status": "fine"}')),
    ]
    ingest, writer, alerting = (str(f.make_url("")).rstrip("/") for f in fakes)
    api = await start_api(console=ConsoleTargets(ingest, writer, alerting, timeout_seconds=2.0))
    key = await new_tenant(db, "belfry")
    resp = await api.get("/console/api/health", headers=bearer(key))
    assert resp.status == 200
    reasons = {s["service"]: s.get("reason") for s in (await json_of(resp))["services"]}
    assert reasons == {
        "api": None,
        "ingest": "/health/detailed answered something that is not JSON",
        "writer": "/health/detailed answered HTTP 500",
        "alerting": "/health/detailed answered something that is not a health document",
    }


async def test_a_failed_notification_replayed_from_its_dlq_is_pending_again(
    db: asyncpg.Connection, start_api: Started, amqp: Any, prefix: str
) -> None:
    """The notify consumer skips a finished notification: a replay sets a failed one
    pending again (as the notification log's replay does), and leaves others alone."""
    key = await new_tenant(db, "belfry")
    api = await start_api(console=nowhere())
    channel = await declared(amqp, prefix)
    topo = Topology(prefix)
    dlx = await channel.get_exchange(topo.dead_letter_exchange)
    failed, delivered = str(uuid.uuid4()), str(uuid.uuid4())
    for nid, status in ((failed, "failed"), (delivered, "delivered")):
        envelope = orjson.dumps(
            {"tenant": "acme", "data": {"notification_id": nid, "channel_type": "webhook"}}
        )
        await db.execute(
            "INSERT INTO notification_deliveries (notification_id, tenant_id, channel,"
            " channel_type, rule_id, status, payload) VALUES ($1, 'acme', 'ops', 'webhook',"
            " 'r1', $2, $3::jsonb)",
            nid,
            status,
            envelope.decode(),
        )
        extra = {"x-belfry-attempts": 5, "x-belfry-outcome": "failed", "x-belfry-attempt": 5}
        message = dead_letter_message(
            envelope, "HTTP 500", "deliver", None, topo.notify_queue("webhook"), extra=extra
        )
        await dlx.publish(message, topo.notify_dlq_key("webhook"))
    poison = b'{"tenant": "acme\\u0000", "data": {"notification_id": "1; DROP"}}'
    await dlx.publish(
        dead_letter_message(poison, "invalid", "validate", None, topo.notify_queue("webhook")),
        topo.notify_dlq_key("webhook"),
    )
    dlq = topo.notify_dlq("webhook")
    resp = await api.post(
        f"/console/api/dead-letters/{dlq}/replay", headers=bearer(key), json={"confirm": True}
    )
    assert await json_of(resp) == {"queue": dlq, "replayed": 3, "to": topo.notify_queue("webhook")}
    statuses = dict(
        await db.fetch("SELECT notification_id::text, status FROM notification_deliveries")
    )
    assert statuses == {failed: "pending", delivered: "delivered"}
    queue = await channel.declare_queue(topo.notify_queue("webhook"), passive=True)
    for _ in range(3):
        back = await queue.get(no_ack=True)
        assert back is not None and back.headers["x-belfry-replayed-from"] == dlq
        assert not {"x-belfry-attempt", "x-belfry-attempts", "x-belfry-outcome"} & set(back.headers)


def test_figures_are_read_even_beside_a_line_the_parser_refuses() -> None:
    """The api's /metrics parse of a service failed whole on one odd line (seen in the
    full suite, where many apps share a process's registry); the figures are read line
    by line now."""
    text = (
        "# TYPE belfry_writer_lag_seconds gauge\n"
        "belfry_writer_lag_seconds 2.5\n"
        'odd_metric{label="unterminated} 1\n'
        "belfry_ingest_spool_bytes 4096.0\n"
    )
    assert _read_figures(text) == {"lag_seconds": 2.5, "spool_bytes": 4096.0}


async def test_a_large_metrics_text_is_read_to_its_end() -> None:
    """A /metrics text larger than one network read (a process with many label sets) was
    read only as far as had arrived, and its figures at the end were lost."""
    filler = "".join(f'some_metric{{n="{i}"}} 1\n' for i in range(20_000))  # ~500 KB
    text = filler + "belfry_writer_lag_seconds 3.0\n"

    async with exporter(text) as where, aiohttp.ClientSession() as http:
        assert await _figures(http, f"http://{where}") == {"lag_seconds": 3.0}
