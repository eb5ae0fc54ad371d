"""The notification log API: list with filters, one with its attempts, replay of a failed
one (same webhook-id), behind bearer tokens that each see one tenant."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from services.alerting.notify.routes import NOTIFY, add_routes
from shared.auth import create_key
from tests.alerting.notify.conftest import (
    TENANT,
    AddChannel,
    Publish,
    Receiver,
    StartNotify,
    delivery,
    notification,
)


async def test_log_detail_and_replay(
    start_notify: StartNotify,
    start_app: Any,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(410, {})]
    await add_channel("h", "webhook", {"url": hook.url})
    service = await start_notify()
    app = web.Application()
    app[NOTIFY] = service
    add_routes(app)
    client = await start_app(app)
    mine = {"Authorization": f"Bearer {await create_key(db, TENANT)}"}
    theirs = {"Authorization": f"Bearer {await create_key(db, 'globex')}"}

    env = notification("h", "webhook", rule_id="r-42")
    nid = env["data"]["notification_id"]
    await publish(env)
    await delivery(db, nid, "failed")

    assert (await client.get("/api/v1/notifications")).status == 401
    resp = await client.get("/api/v1/notifications?status=failed&rule=r-42", headers=mine)
    listed = await resp.json()
    assert resp.status == 200 and [n["notification_id"] for n in listed["notifications"]] == [nid]
    resp = await client.get("/api/v1/notifications?status=delivered", headers=mine)
    assert (await resp.json())["notifications"] == []
    resp = await client.get("/api/v1/notifications?since=2000-01-01T00:00:00Z", headers=mine)
    assert len((await resp.json())["notifications"]) == 1
    resp = await client.get("/api/v1/notifications?status=lost&limit=0&since=x", headers=theirs)
    assert resp.status == 400
    assert set((await resp.json())["fields"]) == {"status", "limit", "since"}
    resp = await client.get("/api/v1/notifications", headers=theirs)
    assert (await resp.json())["notifications"] == []

    resp = await client.get(f"/api/v1/notifications/{nid}", headers=mine)
    detail = await resp.json()
    assert detail["status"] == "failed" and detail["last_error"].startswith("HTTP 410")
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in detail["attempts"]] == [
        (1, "failed", 410)
    ]
    assert (await client.get(f"/api/v1/notifications/{nid}", headers=theirs)).status == 404
    assert (await client.get("/api/v1/notifications/not-a-uuid", headers=mine)).status == 404

    # Replay: another tenant can't, a failed one goes again with the same webhook-id.
    assert (await client.post(f"/api/v1/notifications/{nid}/replay", headers=theirs)).status == 404
    resp = await client.post(f"/api/v1/notifications/{nid}/replay", headers=mine)
    assert resp.status == 202
    await delivery(db, nid, "delivered")
    first, second = await hook.wait(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == nid
    resp = await client.post(f"/api/v1/notifications/{nid}/replay", headers=mine)
    assert resp.status == 409  # delivered: nothing to replay
    unknown = uuid.uuid4()
    resp = await client.post(f"/api/v1/notifications/{unknown}/replay", headers=mine)
    assert resp.status == 404 and "error" in await resp.json()
    detail = await (await client.get(f"/api/v1/notifications/{nid}", headers=mine)).json()
    assert [a["outcome"] for a in detail["attempts"]] == ["failed", "delivered"]
    assert detail["delivered_at"] is not None and detail["attempts"][1]["attempt"] == 1
