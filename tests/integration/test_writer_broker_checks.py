"""The writer's questions to the broker (readiness, queue depths) run on a channel of
their own, with a timeout: a frozen broker (a TCP proxy that stops forwarding bytes but
keeps the connection open, like SIGSTOP) makes `/readyz` 503, and a question that times
out does not close the consuming channel (which would redeliver every held message)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
import pytest

from services.writer.keys import BROKER
from services.writer.settings import WriterSettings
from tests.conftest import Started
from tests.integration.helpers import ready, rows
from tests.integration.test_writer import hit, publish
from tests.support.eventually import eventually
from tests.support.tcpproxy import TcpProxy


def through(proxy: TcpProxy, settings: WriterSettings, **common: Any) -> WriterSettings:
    url = proxy.url_for(settings.common.amqp_url)
    return replace(settings, common=replace(settings.common, amqp_url=url, **common))


async def readyz(client: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz")
    return resp.status, await resp.json()


async def test_a_frozen_broker_makes_readyz_503_until_it_answers_again(
    start_writer: Started,
    writer_settings: WriterSettings,
    rabbit_proxy: TcpProxy,
    db: asyncpg.Connection,
    amqp: Any,
    prefix: str,
) -> None:
    writer = await start_writer(through(rabbit_proxy, writer_settings), check_timeout=0.5)
    await ready(writer)

    rabbit_proxy.freeze()
    _, body = await eventually(
        lambda: readyz(writer), lambda r: r[0] == 503, timeout=10, what="/readyz 503"
    )
    assert body["reasons"]["broker"] == "broker not answering within 0.5s"

    rabbit_proxy.thaw()
    await ready(writer)
    await publish(await amqp.channel(), prefix, orjson.dumps([hit("after")]))
    assert [r["email_id"] for r in await rows(db, 1)] == ["after"]


async def test_a_timed_out_queue_depth_read_leaves_the_consuming_channel_open(
    start_writer: Started,
    writer_settings: WriterSettings,
    rabbit_proxy: TcpProxy,
    db: asyncpg.Connection,
    amqp: Any,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = through(rabbit_proxy, writer_settings, metrics_interval=0.2)
    writer = await start_writer(settings, check_timeout=0.5)
    await ready(writer)
    assert writer.app is not None
    broker = writer.app[BROKER]
    consuming, connects = broker.channel, broker.connects

    caplog.set_level(logging.WARNING, logger="belfry.selfreport")
    rabbit_proxy.freeze()  # the next self-report's queue-depth read times out

    async def failed() -> bool:
        return any(r.getMessage() == "metric collector failed" for r in caplog.records)

    await eventually(failed, bool, timeout=15, what="a timed-out queue-depth read")
    rabbit_proxy.thaw()

    # Frames keep their order on the connection: once a message published now is
    # stored, a close the timed-out read had asked for would have come back already.
    await publish(await amqp.channel(), prefix, orjson.dumps([hit("after")]))
    assert [r["email_id"] for r in await rows(db, 1)] == ["after"]
    assert broker.channel is consuming and consuming is not None
    assert not consuming.is_closed
    assert broker.connects == connects
