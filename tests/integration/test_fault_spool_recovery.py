"""Fault suite: ingest leaves spool mode after a broker outage while load continues.

Ingest and the writer run as real processes; ingest reaches RabbitMQ through a TCP proxy
the test cuts for 15 s while it offers 80 % of the capacity it measured just before (on
a shared 2-core machine a fixed rate would be too much one day and too little the next).
Issue 13, point 2: the spool must be empty and direct publishing back within 30 s of the
broker's return, and every acknowledged hit stored once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from tests.conftest import AMQP_URL
from tests.support.eventually import eventually
from tests.support.httpload import Load, capacity
from tests.support.tcpproxy import TcpProxy

OUTAGE = 15.0
RECOVERY_BOUND = 30.0
# Bounds on the rate offered: enough load to matter, not more than the writer, broker
# and Postgres (sharing the same two cores) take comfortably.
MIN_RATE, MAX_RATE = 200.0, 2500.0


_SAMPLE = re.compile(r"^belfry_ingest_(spool_bytes|events_total)(\{[^}]*\})? (\S+)$", re.M)


async def figures(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """spool bytes and hits by outcome, from ingest's /metrics."""
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    out = {"spool_bytes": 0.0, "published": 0.0, "spooled": 0.0, "dropped": 0.0}
    for name, labels, value in _SAMPLE.findall(text):
        if name == "spool_bytes":
            out["spool_bytes"] = float(value)
        else:
            outcome = re.search(r'outcome="(\w+)"', labels or "")
            if outcome:
                out[outcome.group(1)] += float(value)
    return out


async def recovered_after(http: aiohttp.ClientSession, url: str, bound: float) -> float:
    """Seconds until the spool is empty and hits are published directly again (more
    published, none spooled, between two looks at /metrics); inf if not within bound."""
    started = time.monotonic()
    last = await figures(http, url)
    while time.monotonic() - started < bound:
        await asyncio.sleep(0.25)
        now = await figures(http, url)
        direct = now["published"] > last["published"] and now["spooled"] == last["spooled"]
        if now["spool_bytes"] == 0 and direct:
            return time.monotonic() - started
        last = now
    return float("inf")


async def test_ingest_returns_to_direct_publishing_within_30s_of_an_outage_under_load(
    spawn: Callable[..., Any], rabbit_proxy: TcpProxy, db: asyncpg.Connection
) -> None:
    await spawn("writer")
    ingest = await spawn("ingest", AMQP_URL=rabbit_proxy.url_for(AMQP_URL))
    host, port = "127.0.0.1", ingest.port

    measured = await capacity(host, port, lambda n: f"/acme/pixel/cap{n}.gif", seconds=3)
    rate = min(max(0.8 * measured, MIN_RATE), MAX_RATE)
    load = Load(host, port, lambda n: f"/acme/pixel/load{n}.gif", rate)
    async with aiohttp.ClientSession() as http:
        load.start()
        try:
            await asyncio.sleep(3)  # steady state first (this is the load's own duration)
            rabbit_proxy.cut()
            await asyncio.sleep(OUTAGE)
            during = await figures(http, ingest.url)
            rabbit_proxy.heal()
            recovery = await recovered_after(http, ingest.url, RECOVERY_BOUND)
            await asyncio.sleep(2)
        finally:
            await load.stop()
        end = await figures(http, ingest.url)

    summary = (
        f"capacity {measured:.0f}/s, offered {rate:.0f}/s, acknowledged {load.ok}, "
        f"spooled during the outage {during['spooled']:.0f}, recovery {recovery:.1f}s"
    )
    print(summary)
    assert during["spooled"] > 0, f"the outage spooled nothing: {summary}"
    assert recovery <= RECOVERY_BOUND, f"still spooling {RECOVERY_BOUND}s after: {summary}"
    assert end["dropped"] == 0, summary
    assert len(load.answered) == load.sent, summary

    async def stored() -> tuple[int, int]:
        row = await db.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT email_id) AS d FROM events"
            " WHERE email_id LIKE 'load%'"
        )
        return int(row["n"]), int(row["d"])

    n, distinct = await eventually(
        stored, lambda r: r[0] >= load.ok, timeout=30, interval=0.5, what="acknowledged rows"
    )
    assert n == distinct == load.ok, f"{n} rows, {distinct} distinct, {summary}"
