"""`make run`'s banner shows how to send metrics as the demo tenant, and each example works
as printed: the curl is run as is, the OTel SDK environment drives a real SDK exporter in a
child process, and the `remote_write:` line is a Prometheus config promtool accepts."""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from aio_pika.abc import AbstractConnection

from devtools.children import run_to_end
from shared.ingest_tokens import parse_keys
from tests.conftest import Started
from tests.deploy.support import load_script
from tests.integration.helpers import ready
from tests.support.metric_sink import MetricSink
from tests.support.tools import promtool

run = load_script("run")
KEYS = {
    "CLICK_SIGNING_KEYS": "k1:make-run-test-secret-0123",
    "INGEST_TOKEN_KEYS": "t1:make-run-token-secret-0123",
}
SDK_SCRIPT = """
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3600000)
provider = MeterProvider(metric_readers=[reader])
provider.get_meter("banner").create_counter("banner_orders").add(5)
provider.shutdown()
"""


def _example(banner: str, label: str) -> str:
    (line,) = [line for line in banner.splitlines() if line.startswith(f"  {label} ")]
    return line[len(label) + 2 :].strip()


async def test_the_banners_metric_examples_work_as_printed(
    start_ingest: Started, amqp: AbstractConnection, prefix: str, tmp_path: Path
) -> None:
    ingest = await start_ingest(token_keys=parse_keys(KEYS["INGEST_TOKEN_KEYS"]))
    await ready(ingest)
    sink = await MetricSink(amqp, prefix).start()
    config = run.Config.from_env({**KEYS, "INGEST_PORT": str(ingest.server.port)})
    banner = run.banner(config)

    curl = shlex.split(_example(banner, "samples"))
    assert curl[0] == "curl"
    done = await asyncio.to_thread(subprocess.run, curl, capture_output=True, timeout=30)
    assert b" 202 " in done.stdout.splitlines()[0], done.stdout

    env = dict(item.split("=", 1) for item in _example(banner, "OTel SDK").split())
    assert set(env) == {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    }
    sdk = await run_to_end(
        "otel-sdk",
        [sys.executable, "-c", SDK_SCRIPT],
        env={"PATH": "/usr/bin:/bin", **env},
        log=tmp_path / "otel-sdk.log",
        timeout=60,
    )
    assert sdk.exit_code == 0, f"{sdk.status()}: {sdk.tail()}"

    samples = await sink.wait_for("queue_depth", "banner_orders")
    assert {s["tenant"] for s in samples} == {"demo"}

    remote_write = yaml.safe_load(_example(banner, "Prometheus"))
    assert remote_write["remote_write"][0]["url"].endswith("/api/v1/write")
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(remote_write))
    checked = await asyncio.to_thread(
        subprocess.run, [promtool(), "check", "config", str(config_file)], capture_output=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_no_token_keys_no_metric_examples() -> None:
    config = dataclasses.replace(run.Config.from_env(KEYS), token_keys="")
    assert "Send metrics" not in run.banner(config)
    assert "Send metrics" in run.banner(run.Config.from_env(KEYS))
