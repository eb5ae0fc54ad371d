"""A channel gets a `resolved` only for alerts whose `firing` (same episode) was delivered
to it: "announced" is per channel and means delivered. A firing that failed or was
refused there leaves its resolved `skipped`; a firing still retrying makes the resolved
wait for it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    add_webhook,
    auth,
    engine_of,
    metric_event,
    webhook_alerts,
)
from tests.alerting.notify.conftest import (
    AddChannel,
    Publish,
    Receiver,
    StartNotify,
    attempts,
    delivery,
    notification,
)
from tests.support.eventually import eventually


def _alert(fingerprint: str, status: str) -> dict[str, Any]:
    alert = notification("x", "webhook", status=status)["data"]["alerts"][0]
    return {**alert, "fingerprint": fingerprint}


async def test_no_resolved_where_the_firing_was_not_delivered(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    ok: Receiver = await receiver()
    broken: Receiver = await receiver()
    broken.answers = [(400, {})]  # the firing fails for good on this channel
    await add_channel("ok", "webhook", {"url": ok.url})
    await add_channel("broken", "webhook", {"url": broken.url})
    await start_notify()
    for channel in ("ok", "broken"):
        firing = notification(channel, "webhook")
        await publish(firing)
        status = "delivered" if channel == "ok" else "failed"
        await delivery(db, firing["data"]["notification_id"], status)

    resolved = {c: notification(c, "webhook", status="resolved") for c in ("ok", "broken")}
    for env in resolved.values():
        await publish(env)
    await delivery(db, resolved["ok"]["data"]["notification_id"], "delivered")
    row = await delivery(db, resolved["broken"]["data"]["notification_id"], "skipped")
    assert "no firing" in row["last_error"] and row["attempts"] == 0
    assert [r.json()["status"] for r in ok.requests] == ["firing", "resolved"]
    assert [r.json()["status"] for r in broken.requests] == ["firing"]  # the failed one


async def test_resolved_carries_only_the_alerts_the_channel_heard_of(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify()
    firing = notification("h", "webhook", alerts=[_alert("fp-a", "firing")])
    await publish(firing)
    await delivery(db, firing["data"]["notification_id"], "delivered")
    # fp-b's firing went to another channel only; an earlier episode of fp-a (another
    # start) does not count for this one either.
    earlier = {**_alert("fp-a", "resolved"), "starts_at": "2025-01-01T00:00:00+00:00"}
    resolved = notification(
        "h",
        "webhook",
        status="resolved",
        alerts=[_alert("fp-a", "resolved"), _alert("fp-b", "resolved")],
    )
    await publish(resolved)
    await delivery(db, resolved["data"]["notification_id"], "delivered")
    old = notification("h", "webhook", status="resolved", alerts=[earlier])
    await publish(old)
    await delivery(db, old["data"]["notification_id"], "skipped")
    sent = hook.requests[-1].json()
    assert sent["status"] == "resolved"
    assert [a["fingerprint"] for a in sent["alerts"]] == ["fp-a"]


async def test_resolved_waits_for_a_firing_still_being_retried(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(503, {"Retry-After": "1"})]  # the firing's first attempt fails
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify(max_attempts=5)
    firing = notification("h", "webhook")
    resolved = notification("h", "webhook", status="resolved")
    await publish(firing)
    await hook.wait(1)
    await publish(resolved)
    await delivery(db, resolved["data"]["notification_id"], "delivered")
    assert [r.json()["status"] for r in hook.requests] == ["firing", "firing", "resolved"]


async def test_resolved_waits_for_a_firing_published_but_not_yet_taken(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    """Firing and resolved of a quick flap are handled at once: a resolved whose firing
    the outbox published but no consumer has begun yet waits for it, not skipped."""
    hook: Receiver = await receiver()
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify(max_attempts=8, backoff_base=0.2)
    firing = notification("h", "webhook")
    await db.execute(
        "INSERT INTO alert_outbox (notification_id, tenant_id, rule_id, channel, channel_type,"
        " status, envelope, created_at, sent_at)"
        " VALUES ($1, $2, $3, 'h', 'webhook', 'firing', $4::jsonb, now(), now())",
        firing["data"]["notification_id"],
        TENANT,
        str(uuid.uuid4()),
        orjson.dumps(firing).decode(),
    )
    resolved = notification("h", "webhook", status="resolved")
    await publish(resolved)
    await eventually(
        lambda: attempts(db, resolved["data"]["notification_id"]),
        lambda found: len(found) >= 1,
        what="the resolved waiting",
    )
    assert hook.requests == []  # not sent, and not skipped either
    await publish(firing)
    await delivery(db, resolved["data"]["notification_id"], "delivered")
    assert [r.json()["status"] for r in hook.requests] == ["firing", "resolved"]


async def test_deleting_a_rule_whose_firing_was_refused_sends_no_resolved_there(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
    webhook_receiver: Receiver,
) -> None:
    """The issue's case end to end: the firing of a channel is refused by the egress guard,
    the rule is deleted; that channel gets no resolved, the one that got the firing does."""
    await add_webhook(db, "ok", webhook_receiver)
    await db.execute(
        "INSERT INTO alert_channels (tenant_id, name, type, config)"
        " VALUES ($1, 'internal', 'webhook', $2::jsonb)",
        TENANT,
        orjson.dumps({"url": "http://10.255.255.1:9/hook"}).decode(),  # refused: private
    )
    client = await start_alerting()
    h = auth(api_key)
    resp = await client.post(
        "/api/v1/rules",
        json={"name": "lat", "condition": "latency > 1", "channels": ["ok", "internal"]},
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    rule = await resp.json()
    await send_metrics(client, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await engine_of(client).tick()

    async def by_channel() -> dict[tuple[str, str], str]:
        rows = await db.fetch("SELECT channel, alert_status, status FROM notification_deliveries")
        return {(r["channel"], r["alert_status"]): r["status"] for r in rows}

    await eventually(by_channel, lambda d: len(d) == 2 and "pending" not in d.values())
    clock.advance(5)
    assert (await client.delete(f"/api/v1/rules/{rule['id']}", headers=h)).status == 204
    done = await eventually(
        by_channel, lambda d: len(d) == 4 and "pending" not in d.values(), what="4 settled"
    )
    assert done == {
        ("ok", "firing"): "delivered",
        ("ok", "resolved"): "delivered",
        ("internal", "firing"): "refused",
        ("internal", "resolved"): "skipped",
    }
    assert [status for status, _ in webhook_alerts(webhook_receiver)] == ["firing", "resolved"]
