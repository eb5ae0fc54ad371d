"""The pixel's id checks (services/ingest/routes/pixel.py): the set of tenant ids seen
stands in for the regex only for ids that passed it, and never grows past its bound."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry

from services.ingest.keys import METRICS
from services.ingest.metrics import IngestMetrics
from services.ingest.routes import pixel


async def answer(tenant: str, email_id: str) -> int:
    app = web.Application()
    app[METRICS] = IngestMetrics(CollectorRegistry())  # a refusal is counted there
    request = make_mocked_request(
        "HEAD",
        f"/{tenant}/pixel/{email_id}.gif",
        match_info={"tenant": tenant, "email_id": email_id},
        app=app,
    )
    return (await pixel.pixel(request)).status


@pytest.mark.parametrize(
    ("tenant", "email_id", "status"),
    [
        ("acme", "welcome-42", 200),
        ("acme", "welcome-42", 200),  # the tenant now known
        ("ACME", "welcome-42", 404),
        ("acme", "bad id", 404),
        ("acme", "x" * 65, 404),
        ("a" * 64, "e1", 404),
    ],
)
async def test_ids_outside_their_patterns_are_404(tenant: str, email_id: str, status: int) -> None:
    assert await answer(tenant, email_id) == status
    assert "ACME" not in pixel._tenants and "a" * 64 not in pixel._tenants


async def test_the_known_tenants_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixel, "_tenants", set())
    monkeypatch.setattr(pixel, "_MAX_TENANTS", 3)
    for n in range(10):
        assert await answer(f"t{n}", "e1") == 200
    assert pixel._tenants == {"t0", "t1", "t2"}
