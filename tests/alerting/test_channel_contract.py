"""Channel bodies decode through the ChannelBody contract (services/alerting/contracts.py):
every field's problem at once, and what a PUT leaves out is kept while what it sets to
null is refused (the fuzzer found `"type": null` accepted once)."""

from __future__ import annotations

from typing import Any

from tests.alerting.conftest import StartAlerting, auth

URL = {"url": "https://hooks.example.com/x"}


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_a_channel_body_reports_every_bad_field_at_once(
    start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    body = {"name": "Bad Name", "type": "webhook", "config": URL, "enabled": "yes", "x": 1}
    bad = await _json(await client.post("/api/v1/channels", json=body, headers=auth(api_key)), 400)
    assert set(bad["fields"]) == {"name", "enabled", "x"}
    assert bad["fields"]["x"] == "unknown field"


async def test_a_put_keeps_an_absent_type_and_refuses_a_null_one(
    start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    body = {"name": "hook", "type": "webhook", "config": URL}
    await _json(await client.post("/api/v1/channels", json=body, headers=h), 201)
    kept = await _json(
        await client.put("/api/v1/channels/hook", json={"enabled": False}, headers=h), 200
    )
    assert (kept["type"], kept["enabled"]) == ("webhook", False)
    bad = await _json(
        await client.put("/api/v1/channels/hook", json={"type": None, "config": URL}, headers=h),
        400,
    )
    assert set(bad["fields"]) == {"type"}
