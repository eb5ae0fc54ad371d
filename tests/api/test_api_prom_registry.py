"""The api's metrics live on each app's own registry (shared.prom): two api apps in one
process count their own emails, and nothing of the api lands on prometheus_client's
default registry."""

from __future__ import annotations

import asyncpg
from prometheus_client import REGISTRY

from services.api.keys import METRICS
from shared.prom import PROMETHEUS
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started

EMAILS = "belfry_api_emails_registered_total"


async def test_two_api_apps_count_their_own_emails(
    db: asyncpg.Connection, start_api: Started
) -> None:
    key = await new_tenant(db, "acme")
    first, second = await start_api(), await start_api()
    for _ in range(3):
        assert (await first.post("/acme/emails", headers=bearer(key))).status == 201
    assert (await second.post("/acme/emails", headers=bearer(key))).status == 201
    assert (await second.get("/acme/stats")).status == 401
    one, two = first.server.app, second.server.app
    assert one[PROMETHEUS].get_sample_value(EMAILS) == 3
    assert two[PROMETHEUS].get_sample_value(EMAILS) == 1
    refused = {"reason": "unauthenticated"}
    assert two[PROMETHEUS].get_sample_value("belfry_api_auth_refused_total", refused) == 1
    assert one[PROMETHEUS].get_sample_value("belfry_api_auth_refused_total", refused) == 0
    assert one[METRICS] is not two[METRICS]
    assert REGISTRY.get_sample_value(EMAILS) is None
