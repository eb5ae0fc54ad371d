"""`/metrics` of every service is valid Prometheus text (`promtool check metrics`), and
its counters move when hits go through.

Both apps run in this one process. Each serves its own registry (shared.prom), so the
figures counted here are that app's alone (a service still on module globals serves
prometheus_client's default registry as well: see shared.prom).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.writer.settings import WriterSettings
from shared.topology import Topology
from tests.conftest import Started
from tests.integration.helpers import ready, rows
from tests.support.eventually import eventually
from tests.support.tools import promtool

PIXEL_ROUTE = "/{tenant}/pixel/{email_id}.gif"
HITS = 3


async def check_metrics(text: str) -> tuple[int, str]:
    """promtool's verdict on `text`: exit status, and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        promtool(),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def scrape(client: TestClient) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample `name` whose labels include `labels` (0 if absent)."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else 0.0


async def test_promtool_detects_invalid_text() -> None:
    # Guards the check below: a promtool that accepted anything would prove nothing.
    code, out = await check_metrics("# TYPE x counter\nx{ 1\n")
    assert code != 0, out


async def test_metrics_of_every_service_pass_promtool_and_counters_move(
    start_ingest: Started,
    start_writer: Started,
    writer_settings: WriterSettings,
    db: asyncpg.Connection,
    prefix: str,
) -> None:
    promtool()
    # A short self-report interval, so the queue gauge its poll sets is in the text too.
    writer = await start_writer(common=replace(writer_settings.common, metrics_interval=0.2))
    ingest = await start_ingest()
    await ready(writer)
    await ready(ingest)
    pixel = {"service": "ingest", "method": "GET", "route": PIXEL_ROUTE, "status": "200"}
    before = await scrape(ingest)
    pixels_before = sample(before, "http_requests_total", **pixel)
    rows_before = sample(await scrape(writer), "belfry_writer_rows_inserted_total")

    for i in range(HITS):
        resp = await ingest.get(f"/acme/pixel/prom-{i}.gif")
        assert resp.status == 200
    await rows(db, HITS)
    queue = Topology(prefix).writer_queue
    await eventually(
        lambda: scrape(writer),
        lambda text: f'belfry_queue_messages{{queue="{queue}"}}' in text,
        what="the writer's queue gauge",
    )

    for name, client in (("ingest", ingest), ("writer", writer)):
        text = await scrape(client)
        code, out = await check_metrics(text)
        assert (code, out) == (0, ""), f"promtool check metrics on {name}'s /metrics:\n{out}"
    after_ingest, after_writer = await scrape(ingest), await scrape(writer)
    assert sample(after_ingest, "http_requests_total", **pixel) - pixels_before == HITS
    assert sample(after_writer, "belfry_writer_rows_inserted_total") - rows_before == HITS
