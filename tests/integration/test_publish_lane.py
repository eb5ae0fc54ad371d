"""Ingest's publish lane (services/ingest/publishlane.py) against the real broker: what it
publishes arrives whole and in order with its properties, every way it can end fails
the publishes it has not had confirmed, and a lane that dies makes ingest reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aio_pika
import pytest
from pamqp import commands

from services.ingest.keys import BROKER, PUBLISH_LANE, SPOOL
from services.ingest.publishlane import LaneClosed, PublishLane, lane_supported
from services.ingest.settings import IngestSettings
from shared.topology import Topology
from tests.conftest import AMQP_URL, Started
from tests.support.eventually import eventually
from tests.support.tcpproxy import TcpProxy


def props(n: int) -> commands.Basic.Properties:
    message = aio_pika.Message(
        b"",
        message_id=f"m{n}",
        type="batch.v1",
        app_id="lane-test",
        headers={"x-belfry-events": n},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    return message.properties


async def open_lane(url: str = AMQP_URL) -> tuple[PublishLane, list[str]]:
    lost: list[str] = []
    lane = PublishLane(url, "lane-test", on_lost=lost.append)
    await lane.connect(timeout=5)
    return lane, lost


@pytest.fixture
async def queue(
    amqp: aio_pika.abc.AbstractConnection, prefix: str
) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    channel = await amqp.channel()
    # Not in the prefix's topology, whose clean-up would leave it behind: deleted here.
    queue = await channel.declare_queue(f"{Topology(prefix).writer_queue}-lane", durable=True)
    yield queue
    await queue.delete(if_unused=False, if_empty=False)


async def take(queue: aio_pika.abc.AbstractQueue, count: int) -> list[Any]:
    got: list[Any] = []
    async with queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            got.append(message)
            if len(got) == count:
                return got
    return got


async def test_publishes_are_confirmed_and_arrive_whole_in_order_with_their_properties(
    queue: aio_pika.abc.AbstractQueue,
) -> None:
    lane, lost = await open_lane()
    try:
        # One body larger than a frame: split into body frames, joined by the broker.
        bodies = [f"body {n}".encode() for n in range(30)] + [b"x" * 300_000]
        futures = [lane.publish(b, props(n), "", queue.name) for n, b in enumerate(bodies)]
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert lane.unconfirmed == 0

        got = await asyncio.wait_for(take(queue, len(bodies)), 10)
        assert [m.body for m in got] == bodies
        assert [m.message_id for m in got] == [f"m{n}" for n in range(len(bodies))]
        assert got[3].headers == {"x-belfry-events": 3}
        assert got[3].type == "batch.v1"
        assert got[3].app_id == "lane-test"
        assert got[3].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    finally:
        lane.close()
    assert lost == []  # closing on purpose is no loss


async def test_a_publish_to_a_missing_exchange_fails_and_reports_the_loss(prefix: str) -> None:
    lane, lost = await open_lane()
    with pytest.raises(LaneClosed, match="404"):
        await asyncio.wait_for(lane.publish(b"x", props(0), f"{prefix}-nowhere", "k"), 5)
    assert not lane.open
    assert len(lost) == 1 and "404" in lost[0]
    with pytest.raises(LaneClosed, match="not open"):
        lane.publish(b"x", props(1), "", "k")


async def test_a_cut_connection_fails_what_is_unconfirmed_and_reports_the_loss(
    rabbit_proxy: TcpProxy, queue: aio_pika.abc.AbstractQueue
) -> None:
    lane, lost = await open_lane(rabbit_proxy.url_for(AMQP_URL))
    await asyncio.wait_for(lane.publish(b"before", props(0), "", queue.name), 5)
    rabbit_proxy.freeze()  # the confirm of the next one can't come back
    pending = lane.publish(b"during", props(1), "", queue.name)
    await asyncio.sleep(0)
    assert not pending.done()

    rabbit_proxy.cut()
    with pytest.raises(LaneClosed, match="connection"):
        await asyncio.wait_for(pending, 5)
    assert len(lost) == 1
    assert not lane.open


async def test_closing_fails_what_is_unconfirmed_without_reporting_a_loss(
    rabbit_proxy: TcpProxy, queue: aio_pika.abc.AbstractQueue
) -> None:
    lane, lost = await open_lane(rabbit_proxy.url_for(AMQP_URL))
    rabbit_proxy.freeze()
    pending = lane.publish(b"during", props(0), "", queue.name)
    lane.close()
    with pytest.raises(LaneClosed, match="closed"):
        await pending
    rabbit_proxy.thaw()
    assert lost == []


async def test_refused_credentials_fail_the_connect() -> None:
    bad = AMQP_URL.replace("guest:guest@", "guest:wrong@")
    assert bad != AMQP_URL
    with pytest.raises(LaneClosed, match=r"403 ACCESS_REFUSED"):
        await open_lane(bad)


async def test_a_silent_broker_fails_the_connect_in_time(rabbit_proxy: TcpProxy) -> None:
    rabbit_proxy.freeze()
    lane = PublishLane(rabbit_proxy.url_for(AMQP_URL), "lane-test")
    with pytest.raises(TimeoutError):
        await lane.connect(timeout=0.5)
    rabbit_proxy.thaw()
    assert not lane.open


def test_only_plain_amqp_urls_get_a_lane() -> None:
    assert lane_supported("amqp://guest:guest@127.0.0.1:5672/")
    assert not lane_supported("amqps://guest:guest@broker:5671/?cafile=/ca.pem")


async def test_ingest_reconnects_when_its_lane_dies_and_publishes_on_the_new_one(
    start_ingest: Started, ingest_settings: IngestSettings
) -> None:
    ingest = await start_ingest()
    app = ingest.app
    assert app is not None
    lane, broker = app[PUBLISH_LANE], app[BROKER]
    await eventually(lambda: _value(broker.available), bool, what="broker available")
    assert lane.opened == 1
    current = lane.exchange
    assert current is not None

    current.lane.connection_lost(ConnectionResetError("reset by a test"))
    # The Broker gives up its connection too, and its connect hook opens a new lane.
    await eventually(lambda: _value(lane.opened), lambda n: n == 2, what="a second lane")
    await eventually(lambda: _value(broker.available), bool, what="broker available again")
    assert lane.exchange is not None and lane.exchange is not current

    response = await ingest.get("/acme/pixel/after-reconnect.gif")
    assert response.status == 200
    assert app[SPOOL].appended == 0  # published on the new lane, not spooled


async def test_ingest_without_a_lane_publishes_through_aio_pika(
    start_ingest: Started, ingest_settings: IngestSettings
) -> None:
    ingest = await start_ingest(replace(ingest_settings, publish_lane=False))
    app = ingest.app
    assert app is not None
    assert PUBLISH_LANE not in app
    await eventually(lambda: _value(app[BROKER].available), bool, what="broker available")
    response = await ingest.get("/acme/pixel/no-lane.gif")
    assert response.status == 200
    assert app[SPOOL].appended == 0


async def _value(value: Any) -> Any:
    return value
