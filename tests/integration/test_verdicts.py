"""Machine-open verdicts and per-tenant privacy, through ingest → RabbitMQ → writer → Postgres.

The request-only rules are unit-tested one by one (tests/unit/test_verdicts.py); here each
is shown end to end from the HTTP request, plus the two rules that need other rows
(a click right after registration, every link at once) and the privacy settings."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from shared.signing import SigningKeys, click_path
from tests.conftest import Started
from tests.integration.helpers import rows, start_pipeline

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


async def _verdicts(db: asyncpg.Connection, n: int) -> dict[str, tuple[str, str | None]]:
    stored = await rows(db, n)
    return {r["email_id"]: (r["verdict"], r["verdict_reason"]) for r in stored}


async def test_each_open_gets_a_verdict_from_its_request(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    requests: dict[str, dict[str, str]] = {
        "human": {"User-Agent": CHROME},
        "mpp": {"User-Agent": "Mozilla/5.0"},
        "gmail": {"User-Agent": "Mozilla/5.0 (Windows NT 5.1) (via ggpht.com GoogleImageProxy)"},
        "prefetch": {"User-Agent": CHROME, "Sec-Purpose": "prefetch"},
        "scanner": {"User-Agent": "Barracuda Sentinel (EE)"},
        "no-ua": {"User-Agent": ""},
    }
    for email_id, headers in requests.items():
        resp = await ingest.get(f"/acme/pixel/{email_id}.gif", headers=headers)
        assert resp.status == 200
    assert await _verdicts(db, len(requests)) == {
        "human": ("human", None),
        "mpp": ("machine", "apple_mpp"),
        "gmail": ("machine", "image_proxy"),
        "prefetch": ("machine", "prefetch"),
        "scanner": ("machine", "scanner"),
        "no-ua": ("machine", "scanner"),
    }


async def test_click_right_after_registration_is_a_scanner(
    start_ingest: Started,
    start_writer: Started,
    db: asyncpg.Connection,
    signing: SigningKeys,
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    await db.execute(
        "INSERT INTO emails (tenant_id, id, created_at) VALUES"
        " ('acme', 'fresh', now()), ('acme', 'old', now() - interval '1 hour')"
    )
    for email_id in ("fresh", "old", "unregistered"):
        link = click_path(signing, "acme", email_id, "https://example.com/a")
        resp = await ingest.get(link, headers={"User-Agent": CHROME}, allow_redirects=False)
        assert resp.status == 302
    assert await _verdicts(db, 3) == {
        "fresh": ("machine", "click_too_soon"),
        "old": ("human", None),
        "unregistered": ("human", None),
    }


async def test_every_link_of_an_email_at_once_is_a_scanner(
    start_ingest: Started,
    start_writer: Started,
    db: asyncpg.Connection,
    signing: SigningKeys,
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)

    async def click(email_id: str, url: str) -> None:
        link = click_path(signing, "acme", email_id, url)
        resp = await ingest.get(link, headers={"User-Agent": CHROME}, allow_redirects=False)
        assert resp.status == 302

    links = [f"https://example.com/{n}" for n in range(3)]
    await asyncio.gather(*(click("scanned", url) for url in links))
    await click("read", links[0])
    await click("read", links[0])  # the same link twice is a person clicking again
    stored = await rows(db, 5)
    verdicts = sorted((r["email_id"], r["verdict"], r["verdict_reason"]) for r in stored)
    assert verdicts == [
        ("read", "human", None),
        ("read", "human", None),
        *[("scanned", "machine", "all_links_at_once")] * 3,
    ]


async def _set_privacy(db: asyncpg.Connection, tenant: str, settings: dict[str, Any]) -> None:
    await db.execute(
        "INSERT INTO tenants (id, settings) VALUES ($1, $2::jsonb)",
        tenant,
        orjson.dumps(settings).decode(),
    )


async def test_tenant_privacy_settings_and_dnt_decide_what_is_kept(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    await _set_privacy(db, "trunc", {"ip_mode": "truncated"})
    await _set_privacy(db, "noip", {"ip_mode": "none"})
    await _set_privacy(db, "keepdnt", {"respect_dnt": False})
    _, ingest = await start_pipeline(start_writer, start_ingest)
    sent = [
        ("acme", "full", {}),
        ("trunc", "t", {}),
        ("noip", "n", {}),
        ("acme", "dnt", {"DNT": "1"}),
        ("acme", "gpc", {"Sec-GPC": "1"}),
        ("keepdnt", "kept", {"DNT": "1"}),
    ]
    for tenant, email_id, extra in sent:
        headers = {"User-Agent": "Mozilla/5.0", **extra}  # Apple MPP: judged before it's erased
        resp = await ingest.get(f"/{tenant}/pixel/{email_id}.gif", headers=headers)
        assert resp.status == 200
    stored = {r["email_id"]: r for r in await rows(db, len(sent))}
    kept = {k: (str(r["ip"]) if r["ip"] else None, r["user_agent"]) for k, r in stored.items()}
    assert kept == {
        "full": ("127.0.0.1", "Mozilla/5.0"),
        "t": ("127.0.0.0", "Mozilla/5.0"),
        "n": (None, "Mozilla/5.0"),
        "dnt": (None, None),
        "gpc": (None, None),
        "kept": ("127.0.0.1", "Mozilla/5.0"),
    }
    assert {r["verdict_reason"] for r in stored.values()} == {"apple_mpp"}
