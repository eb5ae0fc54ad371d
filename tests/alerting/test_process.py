"""`python -m services.alerting` as a real process: the default rule pack and a channels
file load at start, its own self-reported metric events come back through the broker and
are evaluated on the real clock, logs are JSON, and SIGTERM exits cleanly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import orjson

from devtools.children import run_to_end
from shared.auth import create_key
from tests.support.eventually import eventually
from tests.support.processes import ROOT


async def test_serves_the_default_pack_watches_itself_and_drains(
    spawn: Callable[..., Any], db: asyncpg.Connection, prefix: str
) -> None:
    proc = await spawn(
        "alerting",
        ALERTING_RULES_FILE=str(ROOT / "infra/alerting/rules.yaml"),
        ALERTING_CHANNELS_FILE=str(ROOT / "infra/alerting/channels.example.yaml"),
        ALERTING_EVAL_INTERVAL_SECONDS="0.1",
        METRICS_REPORT_INTERVAL_SECONDS="0.1",
    )
    rules = await db.fetch("SELECT name, source, tenant_id FROM alert_rules ORDER BY name")
    assert len(rules) == 7 and {(r["source"], r["tenant_id"]) for r in rules} == {
        ("file", "belfry")
    }
    channels = await db.fetchval("SELECT count(*) FROM alert_channels WHERE tenant_id = 'belfry'")
    assert channels == 4

    async def own_alerts() -> int:
        return int(
            await db.fetchval(
                "SELECT count(*) FROM alerts a JOIN alert_rules r ON r.id = a.rule_id"
                " WHERE r.name = 'BelfryHeartbeatMissing' AND a.labels->>'service' = 'alerting'"
            )
        )

    # Its heartbeat went out, came back on <prefix>.alerting.metrics and became a series.
    await eventually(own_alerts, lambda n: n == 1, timeout=15, what="alerting's own heartbeat")
    key = await create_key(db, "acme")
    async with aiohttp.ClientSession() as http:
        # The queue depths it can read: its metric queue and every notification queue.
        async with http.get(f"{proc.url}/metrics") as resp:
            text = await resp.text()
        for queue in ("alerting.metrics", "notify.webhook", "notify.email.dlq"):
            assert f'belfry_queue_messages{{queue="{prefix}.{queue}"}}' in text, queue
        # An open SSE stream must not hold up the drain.
        stream = await http.get(
            f"{proc.url}/api/v1/alerts/stream", headers={"Authorization": f"Bearer {key}"}
        )
        assert stream.status == 200
        assert await proc.child.stop(timeout=30) == 0, proc.child.tail()
        assert proc.child.exit_seconds is not None and proc.child.exit_seconds < 10
        stream.close()
    lines = [orjson.loads(line) for line in proc.log.read_text().splitlines() if line.strip()]
    assert all(line["service"] == "alerting" for line in lines)
    assert any(line["msg"] == "rules loaded" and line["rules"] == 7 for line in lines)


async def test_a_bad_rule_file_stops_start_up_naming_it(tmp_path: Any) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: broken\n    condition: 'latency >'\n")
    log = tmp_path / "alerting.log"
    ended = await run_to_end(
        "alerting",
        [sys.executable, "-m", "services.alerting"],
        env={"ALERTING_RULES_FILE": str(path), "PATH": "/usr/bin:/bin"},
        log=log,
        timeout=30,
    )
    assert ended.exit_code == 2, f"{ended.status()}: {ended.tail()}"
    err = log.read_text()
    assert "broken" in err and "condition" in err
