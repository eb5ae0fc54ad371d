"""Fault suite, ingest side of issue 13 points 3 and 5: readiness sees a broker that
stops confirming and a spool that cannot take the next batch; the port opens after the
first broker connect; a full disk is named as such, once per interval."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from services.ingest.keys import BROKER, SPOOL
from services.ingest.settings import IngestSettings
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support.eventually import eventually
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
def via_proxy(ingest_settings: IngestSettings, rabbit_proxy: TcpProxy) -> IngestSettings:
    common = ingest_settings.common
    return replace(
        ingest_settings, common=replace(common, amqp_url=rabbit_proxy.url_for(common.amqp_url))
    )


async def readyz(client: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz")
    return resp.status, await resp.json()


async def test_a_frozen_broker_makes_ingest_unready_and_thawing_makes_it_ready(
    start_ingest: Started, via_proxy: IngestSettings, rabbit_proxy: TcpProxy
) -> None:
    # The trial: SIGSTOP of the broker for 15 s left /readyz 200 (the connection stays up).
    ingest = await start_ingest(via_proxy)
    await ready(ingest)
    rabbit_proxy.freeze()
    # Idle: once the last confirm is older than the confirm timeout (1 s here), a probe
    # message must be confirmed within it.
    _status, body = await eventually(
        lambda: readyz(ingest), lambda r: r[0] == 503, timeout=5, what="/readyz 503"
    )
    assert body["reasons"]["confirms"] == (
        "broker not confirming: no publisher confirm within 1.0s"
    )
    # Under traffic: hits are answered (spooled after the confirm timeout), still unready.
    hits = await asyncio.gather(*(ingest.get(f"/acme/pixel/z{i}.gif") for i in range(5)))
    assert {r.status for r in hits} == {200}
    app = ingest.app
    assert app is not None and app[SPOOL].appended > 0
    assert (await readyz(ingest))[0] == 503
    detailed = await (await ingest.get("/health/detailed")).json()
    assert detailed["dependencies"]["confirms"]["status"] == "unhealthy"

    rabbit_proxy.thaw()
    await ready(ingest)
    await eventually(lambda: _pending(app), lambda p: not p, what="spool drained")


async def _pending(app: Any) -> bool:
    return bool(app[SPOOL].pending())


async def test_a_spool_on_a_full_disk_makes_ingest_unready_and_says_disk_full(
    start_ingest: Started,
    via_proxy: IngestSettings,
    rabbit_proxy: TcpProxy,
    tiny_disk: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The trial: ENOSPC at 61 KB of a 1 GiB spool showed "spool: healthy" and logged
    # "spool full" on 1-2 ERROR lines per batch.
    # 20 hits per batch: the room readiness wants for one (~10 KB) fits the 64 KiB disk.
    ingest = await start_ingest(via_proxy, spool_dir=tiny_disk / "spool", batch_max=20)
    await ready(ingest)
    app = ingest.app
    assert app is not None
    rabbit_proxy.cut()
    await eventually(lambda: _available(app), lambda up: not up, what="broker marked down")
    caplog.set_level(logging.INFO)
    for i in range(400):  # ~130 KB of records for a 64 KiB disk
        resp = await ingest.get(f"/acme/pixel/{'e' * 60}{i}.gif")
        assert resp.status == 200  # pixels are always served
    assert app[SPOOL].size_bytes < 64 << 10 < app[SPOOL].max_bytes

    status, body = await readyz(ingest)
    assert status == 503
    reason = body["reasons"]["spool"]
    assert "No space left on device" in reason or reason.startswith("spool disk full"), reason
    detailed = await (await ingest.get("/health/detailed")).json()
    assert detailed["dependencies"]["spool"]["status"] == "unhealthy"

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    dropped = [r.getMessage() for r in errors if r.name == "belfry.publisher"]
    assert dropped, "dropped batches must be logged"
    assert all("[Errno 28] No space left on device" in m for m in dropped), dropped
    assert not any("spool full" in m for m in dropped), dropped
    assert len(errors) <= 4, [r.getMessage() for r in errors]  # not one per batch

    rabbit_proxy.heal()
    await ready(ingest, timeout=20)  # replay frees the disk: ready again


async def _available(app: Any) -> bool:
    return bool(app[BROKER].available)


async def test_a_spool_that_cannot_fit_the_next_batch_makes_ingest_unready(
    start_ingest: Started, via_proxy: IngestSettings, rabbit_proxy: TcpProxy
) -> None:
    # The trial: 3938 of 4096 bytes used, every batch refused, "spool: healthy".
    ingest = await start_ingest(via_proxy, spool_max_bytes=4096)
    await ready(ingest)
    app = ingest.app
    assert app is not None
    rabbit_proxy.cut()
    await eventually(lambda: _available(app), lambda up: not up, what="broker marked down")
    for i in range(40):
        assert (await ingest.get(f"/acme/pixel/f{i}.gif")).status == 200
    assert not app[SPOOL].full
    status, body = await readyz(ingest)
    assert status == 503
    assert body["reasons"]["spool"].startswith("spool cannot take the next batch: ")


async def test_the_port_opens_after_the_first_broker_connect(start_ingest: Started) -> None:
    # The trial: the port opened ~15 ms before the broker connection, so a restart
    # spooled the first hits with the broker up.
    ingest = await start_ingest()
    app = ingest.app
    assert app is not None
    assert app[BROKER].available
    assert (await ingest.get("/acme/pixel/first.gif")).status == 200
    assert app[SPOOL].appended == 0


async def test_a_broker_that_is_down_at_start_does_not_hold_the_port_closed(
    start_ingest: Started, via_proxy: IngestSettings, rabbit_proxy: TcpProxy
) -> None:
    rabbit_proxy.cut()
    started = time.monotonic()
    ingest = await start_ingest(via_proxy)
    assert time.monotonic() - started < 3  # the refused connect ends the wait
    assert (await ingest.get("/livez")).status == 200
    assert (await readyz(ingest))[0] == 503
