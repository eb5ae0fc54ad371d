"""`errors_total` is a metric the rules can use: errors posted to ingest's `/v1/errors`
count per fingerprint (kind `counter_delta`), and an `increase(errors_total[10m])` rule
of the token's tenant fires per fingerprint on the real broker and database; another
tenant's errors never reach it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from services.alerting.consumer import MetricConsumer
from services.alerting.keys import CONSUMER, AlertingDeps
from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from shared.ingest_tokens import mint_token
from shared.signing import SigningKeys
from tests.alerting.conftest import (  # noqa: F401 (fixtures)
    StartAlerting,
    alerting_settings,
    clock,
    engine_of,
    start_alerting,
)
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support.eventually import eventually

KEYS = SigningKeys.parse("r1:errors-rules-token-secret-0123")


def token(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(KEYS, tenant)}"}


async def test_errors_total_fires_a_rule_per_fingerprint(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    start_ingest: Started,
) -> None:
    rule = rule_from_doc(
        {"name": "ErrorBurst", "condition": "increase(errors_total[10m]) > 2"},
        tenant="acme",
        rule_id=str(uuid.uuid4()),
    )
    await upsert_rule(db, rule)
    # The real clock: ingest stamps the counts with the time they arrived.
    alerting = await start_alerting(deps=AlertingDeps())
    ingest = await start_ingest(token_keys=KEYS)
    await ready(ingest)

    burst = [{"type": "Timeout", "message": "db", "fingerprint": "db-timeout"}] * 3
    burst += [{"type": "KeyError", "message": "once", "labels": {"service": "web"}}]
    for tenant, body in (("acme", burst), ("globex", burst * 5)):
        resp = await ingest.post("/v1/errors", json=body, headers=token(tenant))
        assert resp.status == 202, await resp.text()
    await _consumed(alerting, 2)
    engine = engine_of(alerting)
    await engine.tick()

    alerts = {tuple(sorted(a.labels.items())): (a.state, a.value) for a in engine.alerts.values()}
    assert alerts[(("fingerprint", "db-timeout"),)] == ("firing", 3.0)
    assert all(
        state != "firing"
        for key, (state, _) in alerts.items()
        if key != (("fingerprint", "db-timeout"),)
    )


async def _consumed(client: TestClient, messages: int) -> None:
    assert client.app is not None
    consumer: Any = client.app[CONSUMER]
    assert isinstance(consumer, MetricConsumer)

    async def count() -> int:
        return int(consumer.messages)

    await eventually(count, lambda n: n >= messages, what=f"{messages} metric messages")
