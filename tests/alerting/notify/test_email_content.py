"""What the email says, read from a real SMTP server (aiosmtpd): a resolved alert tells
when it resolved and how long it fired (not "RESOLVED since <start>"), and a runbook_url
annotation is a link in the HTML part, escaped, http(s) only."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from typing import Any

import asyncpg

from services.alerting.notify.channels.email import link
from services.alerting.notify.model import duration
from tests.alerting.notify.conftest import (
    AddChannel,
    Inbox,
    Publish,
    StartNotify,
    delivery,
    notification,
)

RUNBOOK = "https://runbooks.example.com/ingest?step=1&x=<b>"


def _parts(raw: bytes) -> tuple[str, str]:
    msg = message_from_bytes(raw)
    parts: dict[str, Message] = {p.get_content_type(): p for p in msg.walk()}
    text, html = (parts[k].get_payload(decode=True) for k in ("text/plain", "text/html"))
    assert isinstance(text, bytes) and isinstance(html, bytes)
    return text.decode(), html.decode()


def _alert(status: str, **annotations: str) -> dict[str, Any]:
    alert = notification("m", "email", status=status)["data"]["alerts"][0]
    # Fired 03:04:05, resolved 04:06:15: 1h 2m 10s.
    ends = "2026-01-02T04:06:15+00:00" if status == "resolved" else None
    return {**alert, "ends_at": ends, "annotations": {**alert["annotations"], **annotations}}


def test_duration_and_link() -> None:
    assert (
        duration(3730) == "1h 2m 10s" and duration(0) == "0s" and duration(90061) == "1d 1h 1m 1s"
    )
    assert link("https://x.example/a") == "https://x.example/a"
    for bad in ("javascript:alert(1)", "data:text/html,x", "ftp://x.example", "//x.example"):
        assert link(bad) is None


async def test_resolved_email_says_when_it_resolved_and_for_how_long(
    smtp_inbox: Inbox,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    await add_channel(
        "mail",
        "email",
        {
            "host": "127.0.0.1",
            "port": smtp_inbox.port,
            "tls": "none",
            "from": "belfry@example.com",
            "to": ["oncall@example.com"],
        },
    )
    await start_notify(types=("email",))
    extra = {"runbook_url": RUNBOOK, "dashboard_url": "javascript:alert(1)"}
    for status in ("firing", "resolved"):
        env = notification("mail", "email", status=status, alerts=[_alert(status, **extra)])
        await publish(env)
        await delivery(db, env["data"]["notification_id"], "delivered")

    (firing_text, _), (text, html) = (_parts(m.content) for m in smtp_inbox.messages)
    assert "- FIRING since 2026-01-02T03:04:05+00:00" in firing_text
    assert "RESOLVED since" not in text
    assert (
        "- RESOLVED at 2026-01-02T04:06:15+00:00, after firing 1h 2m 10s"
        " (since 2026-01-02T03:04:05+00:00)"
    ) in text
    assert "after firing 1h 2m 10s" in html
    escaped = "https://runbooks.example.com/ingest?step=1&amp;x=&lt;b&gt;"
    assert f'<a href="{escaped}">{escaped}</a>' in html
    # Not http(s): shown as text, never a link.
    assert 'href="javascript' not in html and "javascript:alert(1)" in html
    assert f"runbook_url: {RUNBOOK}" in text
