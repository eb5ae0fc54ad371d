"""The metric intake in real ingest processes: with INGEST_WORKERS each worker has its own
metrics spool (`worker-<i>/metrics`, next to its hits spool) and samples sent to the
shared port arrive; INTAKE_* settings that make no sense stop the service at start-up."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractConnection

from devtools.children import run_to_end
from services.ingest.settings import IngestSettings
from shared.ingest_tokens import mint_token, parse_keys
from shared.settings import SettingsError
from tests.support.eventually import eventually
from tests.support.metric_sink import MetricSink

TOKEN_KEYS = "p1:intake-process-secret-0123"
BASE = {"CLICK_SIGNING_KEYS": "k1:intake-process-click-0123"}


async def test_workers_each_spool_metrics_apart_and_samples_arrive(
    spawn: Callable[..., Any], amqp: AbstractConnection, prefix: str, tmp_path: Path
) -> None:
    sink = await MetricSink(amqp, prefix).start()
    ingest = await spawn("ingest", INGEST_WORKERS="2", INGEST_TOKEN_KEYS=TOKEN_KEYS)
    spool = tmp_path / "spool"

    async def metric_spools() -> list[str]:
        return sorted(str(p.relative_to(spool)) for p in spool.glob("worker-*/metrics"))

    await eventually(metric_spools, lambda d: len(d) == 2, what="both workers' metric spools")
    keys = parse_keys(TOKEN_KEYS)
    assert keys is not None
    headers = {"Authorization": f"Bearer {mint_token(keys, 'acme')}"}
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{ingest.url}/v1/samples",
                    json=[{"name": f"w{i}", "value": i}],
                    headers=headers,
                )
                for i in range(20)
            )
        )
        assert {r.status for r in answers} == {202}
    await sink.wait_for(*(f"w{i}" for i in range(20)))
    assert await metric_spools() == ["worker-0/metrics", "worker-1/metrics"]
    # SIGTERM: both workers drain and the service exits 0 well inside the 30 s.
    assert await ingest.child.stop(timeout=30) == 0, ingest.child.tail()
    assert not ingest.child.killed


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("INTAKE_SAMPLES_PER_SECOND", "0", "INTAKE_SAMPLES_PER_SECOND must be > 0"),
        ("INTAKE_SAMPLES_PER_SECOND", "lots", "must be a number"),
        ("INTAKE_SERIES_IDLE_SECONDS", "0", "INTAKE_SERIES_IDLE_SECONDS must be > 0"),
        ("INTAKE_MAX_LABELS", "65", "INTAKE_MAX_LABELS must be <= 64"),
        ("INTAKE_MAX_SERIES", "0", "INTAKE_MAX_SERIES must be >= 1"),
        ("INTAKE_MAX_BODY_BYTES", "64", "INTAKE_MAX_BODY_BYTES must be >= 1024"),
        ("INTAKE_MAX_DECODED_BYTES", "2048", "INTAKE_MAX_DECODED_BYTES must be >="),
    ],
)
def test_intake_settings_fail_fast(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        IngestSettings.from_env({**BASE, name: value})


def test_intake_settings_are_read() -> None:
    settings = IngestSettings.from_env(
        {
            **BASE,
            "INTAKE_SAMPLES_PER_SECOND": "500.5",
            "INTAKE_BURST_SAMPLES": "5000",
            "INTAKE_MAX_SERIES": "100",
            "INTAKE_MAX_LABELS": "10",
            "INTAKE_MAX_BODY_BYTES": "2048",
            "INTAKE_MAX_DECODED_BYTES": "4096",
            "INTAKE_MAX_ITEMS": "50",
        }
    )
    limits = settings.intake_limits
    assert (limits.samples_per_second, limits.burst_samples) == (500.5, 5000)
    assert (limits.max_series, limits.max_labels) == (100, 10)
    assert (settings.intake_max_body_bytes, settings.intake_max_decoded_bytes) == (2048, 4096)
    assert settings.intake_max_items == 50


async def test_a_bad_intake_setting_stops_the_process_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, **BASE, "INTAKE_MAX_LABELS": "100"}
    log = tmp_path / "ingest.log"
    ended = await run_to_end(
        "ingest", [sys.executable, "-m", "services.ingest"], env=env, log=log, timeout=30
    )
    assert ended.exit_code == 2, f"{ended.status()}: {ended.tail()}"
    assert "INTAKE_MAX_LABELS must be <= 64" in log.read_text()
