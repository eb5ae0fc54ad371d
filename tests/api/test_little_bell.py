"""Little Bell's routes on the api: same shapes, and the whole flow through the real
ingest and writer (create email → pixel → click → stats count them)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import asyncpg

from shared.ids import valid_email_id
from shared.signing import SigningKeys, sign_click, verify_click
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started
from tests.integration.helpers import rows, start_pipeline
from tests.integration.test_writer import dlq_depth

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"}


async def test_create_email_pixel_click_then_stats_count_them(
    db: asyncpg.Connection, start_api: Started, start_writer: Started, start_ingest: Started
) -> None:
    _writer, ingest = await start_pipeline(start_writer, start_ingest)
    tracking = str(ingest.make_url("")).rstrip("/")
    api = await start_api(public_url=tracking)
    key = await new_tenant(db, "acme")

    resp = await api.post(
        "/acme/emails",
        json={"subject": "Welcome", "recipient": "ada@example.com"},
        headers=bearer(key),
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    email_id = created["email_id"]
    assert valid_email_id(email_id) and len(email_id) >= 22
    assert created["tracking_pixel_url"] == f"{tracking}/acme/pixel/{email_id}.gif"

    resp = await api.get(
        f"/acme/click-url/{email_id}",
        params={"url": "https://example.com/offer?a=1"},
        headers=bearer(key),
    )
    assert resp.status == 200
    link = await resp.json()
    assert link["original_url"] == "https://example.com/offer?a=1"
    assert link["click_url"].startswith(f"{tracking}/acme/click/{email_id}?")

    # A person opens a while after sending (not "within seconds of registration").
    await db.execute("UPDATE emails SET created_at = now() - interval '1 hour'")
    async with aiohttp.ClientSession(headers=BROWSER) as http:
        async with http.get(created["tracking_pixel_url"]) as pixel:
            assert pixel.status == 200 and pixel.content_type == "image/gif"
        async with http.get(link["click_url"], allow_redirects=False) as click:
            assert click.status == 302, await click.text()
            assert click.headers["Location"] == "https://example.com/offer?a=1"
    stored = await rows(db, 2)
    assert {(r["kind"], r["email_id"], r["tenant_id"]) for r in stored} == {
        ("open", email_id, "acme"),
        ("click", email_id, "acme"),
    }

    resp = await api.get("/acme/stats", headers=bearer(key))
    assert resp.status == 200
    stats = await resp.json()
    assert stats["registered_emails"] == 1
    assert stats["opens"]["total"] == 1 and stats["opens"]["unique"] == 1
    assert stats["clicks"]["total"] == 1 and stats["clicks"]["unique"] == 1
    # Whatever the classifier decided, each event is counted once, human or machine.
    for kind in ("opens", "clicks"):
        assert stats[kind]["human"] + stats[kind]["machine"] == 1
    assert stats["top_links"][0]["url"] == "https://example.com/offer?a=1"
    assert stats["top_links"][0]["clicks"] == 1

    resp = await api.get(f"/acme/stats?email_id={email_id}", headers=bearer(key))
    assert (await resp.json())["clicks"]["total"] == 1


async def test_a_click_on_an_uppercase_scheme_url_is_signed_redirected_and_stored(
    db: asyncpg.Connection,
    start_api: Started,
    start_writer: Started,
    start_ingest: Started,
    signing: SigningKeys,
    prefix: str,
) -> None:
    # HTTPS:// was signed by the api and redirected by ingest, then refused by the
    # writer's contract and dead-lettered; the scheme is now lowercased where links are
    # signed and clicks published, and the contract takes a link signed before that.
    _writer, ingest = await start_pipeline(start_writer, start_ingest)
    tracking = str(ingest.make_url("")).rstrip("/")
    api = await start_api(public_url=tracking)
    key = await new_tenant(db, "acme")
    resp = await api.post("/acme/emails", json={"subject": "Hi"}, headers=bearer(key))
    email_id = (await resp.json())["email_id"]
    resp = await api.get(
        f"/acme/click-url/{email_id}",
        params={"url": "HTTPS://example.com/Offer"},
        headers=bearer(key),
    )
    assert resp.status == 200, await resp.text()
    link = (await resp.json())["click_url"]
    assert parse_qs(urlsplit(link).query)["url"] == ["https://example.com/Offer"]
    old_target = "HTTPS://example.com/old"  # a link signed before the normalisation
    old_sig = sign_click(signing, "acme", email_id, old_target)
    old_link = f"/acme/click/{email_id}?" + urlencode({"url": old_target, "sig": old_sig})

    async with aiohttp.ClientSession(headers=BROWSER) as http:
        for url, location in ((link, "https://example.com/Offer"), (tracking + old_link, None)):
            async with http.get(url, allow_redirects=False) as click:
                assert click.status == 302, await click.text()
                assert click.headers["Location"] == (location or old_target)
    stored = await rows(db, 2)
    assert sorted(r["url"] for r in stored) == [
        "https://example.com/Offer",
        "https://example.com/old",
    ]
    assert await dlq_depth(prefix) == 0


async def test_little_bell_shapes_and_refusals(
    db: asyncpg.Connection, start_api: Started, signing: SigningKeys
) -> None:
    api = await start_api()
    key = await new_tenant(db, "acme")

    # No body at all is fine (Little Bell's fields are optional); extras: signed links.
    resp = await api.post("/acme/emails", headers=bearer(key))
    assert resp.status == 201
    plain = await resp.json()
    assert set(plain) >= {"email_id", "tracking_pixel_url", "click_url_endpoint"}
    resp = await api.post(
        "/acme/emails", json={"links": ["https://example.com/a"]}, headers=bearer(key)
    )
    with_links = await resp.json()
    signed = with_links["click_urls"]["https://example.com/a"]
    query = parse_qs(urlsplit(signed).query)
    assert verify_click(
        signing, "acme", with_links["email_id"], "https://example.com/a", query["sig"][0]
    )
    ids = {plain["email_id"], with_links["email_id"]}
    assert len(ids) == 2  # fresh random ids
    row = await db.fetchrow("SELECT created_at FROM emails WHERE id = $1", plain["email_id"])
    assert row["created_at"] is not None  # the classifier reads it

    for body, field in (
        ({"subject": 42}, "subject"),
        ({"recipient": "x" * 400}, "recipient"),
        ({"links": ["javascript:alert(1)"]}, "links[0]"),
    ):
        resp = await api.post("/acme/emails", json=body, headers=bearer(key))
        assert resp.status == 400
        assert field in (await resp.json())["fields"]
    resp = await api.post("/acme/emails", data=b"{not json", headers=bearer(key))
    assert resp.status == 400 and "error" in await resp.json()
    resp = await api.post("/acme/emails", json=[1, 2], headers=bearer(key))
    assert resp.status == 400
    # A large valid body arrives whole (many TCP reads); an oversized one is a JSON 413.
    many = [f"https://example.com/{i}?q={'x' * 1500}" for i in range(100)]
    resp = await api.post("/acme/emails", json={"links": many}, headers=bearer(key))
    assert resp.status == 201 and len((await resp.json())["click_urls"]) == 100
    resp = await api.post("/acme/emails", data=b" " * (2 << 20), headers=bearer(key))
    assert resp.status == 413 and "error" in await resp.json()

    email_id = plain["email_id"]
    for query_string in ("", "?url=", "?url=ftp://example.com/x", "?url=javascript:alert(1)"):
        resp = await api.get(f"/acme/click-url/{email_id}{query_string}", headers=bearer(key))
        assert resp.status == 400, query_string
        assert "error" in await resp.json()
    resp = await api.get("/acme/click-url/nope?url=https://example.com/", headers=bearer(key))
    assert resp.status == 404

    resp = await api.get(f"/acme/emails/{email_id}", headers=bearer(key))
    assert resp.status == 200 and (await resp.json())["email_id"] == email_id
    resp = await api.get("/acme/emails?limit=1", headers=bearer(key))
    assert len((await resp.json())["emails"]) == 1
    resp = await api.get("/acme/emails?limit=0", headers=bearer(key))
    assert resp.status == 400

    resp = await api.get("/health")
    health = await resp.json()
    assert health["status"] == "healthy" and health["service"] == "api"
    assert {"version", "timestamp"} <= set(health)
    resp = await api.get("/acme/dashboard")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "script-src 'sha256-" in resp.headers["Content-Security-Policy"]
