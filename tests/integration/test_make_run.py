"""`make run` as a user meets it: scripts/run.py as a child process on other ports (the
README's second-copy recipe), with this test's database and prefix. The links the api
hands out reach its ingest, a webhook to a receiver on this machine is accepted, and
Belfry's own alerts reach `belfry-ops` (a log line), with no "channels missing"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.children import Child, spawn
from shared.settings import CommonSettings
from tests.deploy.support import load_script
from tests.support.eventually import eventually
from tests.support.processes import ROOT, free_port

run = load_script("run")
# Variables make run supplies when unset: unset here, whatever the test's environment says.
SUPPLIED = ("ALERTING_EGRESS_ALLOW_CIDRS", "API_PUBLIC_URL", "ALERTING_RULES_FILE")


class MakeRun:
    """The running `make run`: its output lines, as they come."""

    def __init__(self, child: Child, ports: dict[str, int]) -> None:
        self.child, self.proc, self.ports = child, child.proc, ports
        self.lines: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def service_logs(self, service: str) -> list[dict[str, Any]]:
        """The JSON log lines of one service (prefixed `<name> | ` by make run)."""
        out = []
        for line in self.lines:
            name, sep, rest = line.partition(" | ")
            if sep and name.strip() == service:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(rest))
        return out

    def tail(self) -> str:
        return "\n".join(self.lines[-60:])


@pytest.fixture
def dev_keys_file() -> Any:
    """make run keeps dev API keys in var/; this run's database has other keys, so the
    developer's file is put back afterwards."""
    path: Path = run.DEV_API_KEYS_FILE
    saved = path.read_bytes() if path.exists() else None
    yield path
    if saved is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(saved)
        path.chmod(0o600)


@pytest.fixture
async def make_run(
    common: CommonSettings, tmp_path: Path, dev_keys_file: Path
) -> AsyncIterator[MakeRun]:
    ports = {name: free_port() for name in ("ingest", "writer", "alerting", "api")}
    env = {k: v for k, v in os.environ.items() if k not in SUPPLIED}
    env.update(
        AMQP_URL=common.amqp_url,
        DATABASE_URL=common.database_url,
        BELFRY_PREFIX=common.prefix,
        CLICK_SIGNING_KEYS="k1:make-run-test-secret-0123",
        INGEST_TOKEN_KEYS="t1:make-run-token-secret-0123",
        INGEST_SPOOL_DIR=str(tmp_path / "spool"),
        NO_COLOR="1",
        # Quick self-reports and notifications, so an alert is seen in seconds.
        METRICS_REPORT_INTERVAL_SECONDS="0.5",
        ALERTING_GROUP_WAIT_SECONDS="0",
        ALERTING_EVAL_INTERVAL_SECONDS="0.5",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **{f"{name.upper()}_HOST": "127.0.0.1" for name in ports},
    )
    child = await spawn("make run", [sys.executable, str(ROOT / "scripts" / "run.py")], env=env)
    started = MakeRun(child, ports)
    try:
        await eventually(
            lambda: _banner_or_exit(started),
            bool,
            timeout=90,
            what="make run's banner",
        )
        yield started
    finally:
        # SIGTERM (make run stops its services), SIGKILL to the group after 60 s.
        await child.stop(timeout=60)
        await started.reader


async def _banner_or_exit(started: MakeRun) -> bool:
    if started.proc.returncode is not None:
        await started.reader
        raise AssertionError(f"make run exited: {started.tail()}")
    return any(line.startswith("Belfry is running") for line in started.lines)


async def test_make_run_on_other_ports_works_on_the_first_try(
    make_run: MakeRun, dev_keys_file: Path
) -> None:
    keys = json.loads(await asyncio.to_thread(dev_keys_file.read_text))
    banner = "\n".join(make_run.lines)
    ingest, api, alerting = (make_run.url(s) for s in ("ingest", "api", "alerting"))
    assert f"API_PUBLIC_URL={ingest}" in banner
    assert "ALERTING_EGRESS_ALLOW_CIDRS=127.0.0.0/8,::1/128" in banner
    assert "belfry-ops (a JSON line in the alerting output)" in banner

    async with aiohttp.ClientSession() as http:
        # 9: the api's links point at this ingest, and work there.
        demo = {"Authorization": f"Bearer {keys['demo']}"}
        async with http.post(f"{api}/demo/emails", json={"subject": "hi"}, headers=demo) as r:
            assert r.status == 201, await r.text()
            pixel = (await r.json())["tracking_pixel_url"]
        assert pixel.startswith(f"{ingest}/demo/pixel/")
        async with http.get(pixel) as r:
            assert r.status == 200

        # 10: a webhook to a receiver on this machine is accepted (development only).
        hook = {"name": "local", "type": "webhook", "config": {"url": "http://127.0.0.1:9/h"}}
        async with http.post(f"{alerting}/api/v1/channels", json=hook, headers=demo) as r:
            assert r.status == 201, await r.text()

        # 11: a rule of Belfry's that fires at once reaches belfry-ops, as a log line.
        belfry = {"Authorization": f"Bearer {keys['belfry']}"}
        async with http.get(f"{alerting}/api/v1/channels/belfry-ops", headers=belfry) as r:
            assert r.status == 200 and (await r.json())["type"] == "log"
        rule = {
            "name": "MakeRunCheck",
            "condition": "count(belfry_heartbeat[60s]) > 0",
            "channels": ["belfry-ops"],
            "annotations": {"summary": "{{ labels.service }} is alive"},
        }
        async with http.post(f"{alerting}/api/v1/rules", json=rule, headers=belfry) as r:
            assert r.status == 201, await r.text()

    def notified() -> list[dict[str, Any]]:
        return [
            line
            for line in make_run.service_logs("alerting")
            if line.get("msg") == "alert notification" and line.get("rule") == "MakeRunCheck"
        ]

    async def seen() -> list[dict[str, Any]]:
        return notified()

    await eventually(seen, bool, timeout=60, what="the log channel's notification")
    line = notified()[0]
    assert line["channel"] == "belfry-ops" and line["status"] == "firing"
    assert line["level"] == "warning"
    assert line["alerts"][0]["annotations"]["summary"].endswith(" is alive")
    missing = [
        line
        for line in make_run.service_logs("alerting")
        if "channels missing" in str(line.get("msg"))
    ]
    assert missing == []
