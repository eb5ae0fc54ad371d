"""Who sees what: no key → 401, a key of another tenant → 404 (as for a tenant that does
not exist), revoked keys stop working, and Little Bell's open mode opens only its routes."""

from __future__ import annotations

import asyncpg

from shared.auth import list_keys, revoke_key
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started

EMAIL = "AAAAAAAAAAAAAAAAAAAAAA"
# (method, path, opened by API_LITTLE_BELL_OPEN: Little Bell's routes and the figures its
# dashboard shows)
ROUTES = [
    ("POST", "/acme/emails", True),
    ("GET", f"/acme/click-url/{EMAIL}?url=https://example.com/", True),
    ("GET", "/acme/stats", True),
    ("GET", "/acme/emails", False),
    ("GET", f"/acme/emails/{EMAIL}", False),
    ("GET", "/acme/export.csv", False),
    ("GET", "/acme/export.ndjson", False),
    ("GET", "/acme/settings", False),
    ("PUT", "/acme/settings", False),
]


async def test_keys_see_only_their_tenant(db: asyncpg.Connection, start_api: Started) -> None:
    api = await start_api()
    acme = await new_tenant(db, "acme")
    globex = await new_tenant(db, "globex")
    await db.execute("INSERT INTO emails (tenant_id, id) VALUES ('acme', $1)", EMAIL)

    for method, path, _ in ROUTES:
        resp = await api.request(method, path)
        assert resp.status == 401, (method, path)
        assert "error" in await resp.json()
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await api.request(method, path, headers=bearer("blf_nothing_" + "x" * 40))
        assert resp.status == 401, (method, path)
        resp = await api.request(method, path, headers=bearer(globex))
        assert resp.status == 404, (method, path)
        assert "error" in await resp.json()
        resp = await api.request(method, path, headers=bearer(acme), json={})
        assert resp.status in (200, 201), (method, path, await resp.text())

    # The same 404 for a tenant that does not exist: no way to tell the two apart.
    resp = await api.get("/nobody/stats", headers=bearer(globex))
    assert resp.status == 404
    resp = await api.get("/Not_A_Tenant!/stats", headers=bearer(globex))
    assert resp.status == 404

    (info,) = await list_keys(db, "acme")
    assert await revoke_key(db, info.id)
    resp = await api.get("/acme/stats", headers=bearer(acme))
    assert resp.status == 401


async def test_little_bell_open_mode(db: asyncpg.Connection, start_api: Started) -> None:
    closed = await start_api()
    resp = await closed.post("/acme/emails")
    assert resp.status == 401  # off by default

    api = await start_api(little_bell_open=True)
    globex = await new_tenant(db, "globex")
    await new_tenant(db, "acme")
    await db.execute("INSERT INTO emails (tenant_id, id) VALUES ('acme', $1)", EMAIL)
    for method, path, opened in ROUTES:
        resp = await api.request(method, path, json={})
        if opened:
            assert resp.status in (200, 201), (method, path)
        else:
            assert resp.status == 401, (method, path)  # management needs a key still
        # A key that is sent is still checked.
        resp = await api.request(method, path, headers=bearer(globex), json={})
        assert resp.status == 404, (method, path)
    resp = await api.post("/unknown/emails")
    assert resp.status == 404  # registered tenants only
