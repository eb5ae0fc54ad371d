"""Bad input to the api is a 4xx with a JSON `{"error": ...}`, never a 500: NUL characters
(which Postgres text refuses) in any body string, query parameter or path segment, and
instants whose range overflows Python's datetime or the bucket arithmetic."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import asyncpg
import orjson
import pytest
from yarl import URL

from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started

# (method, raw path + query (already percent-encoded), JSON body or None, field named)
CASES: list[tuple[str, str, Any, str | None]] = [
    # NUL in a JSON string, a JSON key, a query value, a query key and a path segment.
    ("POST", "/acme/emails", {"subject": "a\u0000b"}, None),
    ("POST", "/acme/emails", {"recipient": "x\u0000@example.com"}, None),
    ("POST", "/acme/emails", {"links": ["https://example.com/\u0000"]}, None),
    ("PUT", "/acme/settings", {"ip_mode": "full\u0000"}, None),
    ("PUT", "/acme/settings", {"\u0000": True}, None),
    ("GET", "/acme/stats?email_id=%00", None, None),
    ("GET", "/acme/stats?bucket=%00", None, None),
    ("GET", "/acme/stats?%00=1", None, None),
    ("GET", "/acme/export.csv?kind=%00", None, None),
    ("GET", "/acme/export.ndjson?email_id=a%00b", None, None),
    ("GET", "/acme/emails?before=%00", None, None),
    ("GET", "/acme/emails?limit=1%00", None, None),
    ("GET", "/acme/emails/%00", None, None),
    ("GET", "/acme/click-url/%00?url=https://example.com/", None, None),
    ("GET", "/ac%00me/stats", None, None),
    # Ranges that overflow datetime when shifted by the default span, an offset or a bucket.
    ("GET", "/acme/stats?to=0001-01-05", None, "to"),
    ("GET", "/acme/stats?from=9999-12-30&to=9999-12-31T23:30:00Z", None, None),
    ("GET", "/acme/stats?from=9999-12-30T00:00:00Z", None, None),
    ("GET", "/acme/stats?from=9999-12-31T23:59:59-14:00", None, "from"),
    ("GET", "/acme/stats?from=0001-01-01T00:00:00%2B14:00", None, "from"),
    ("GET", "/acme/emails?before=0001-01-01T00:00:00%2B14:00", None, "before"),
    ("GET", "/acme/export.csv?to=9999-12-31T23:59:59-14:00", None, "to"),
    ("GET", "/acme/export.ndjson?from=0001-01-01T00:00:00%2B01:00", None, "from"),
    ("GET", "/acme/stats?from=99999999999999999999", None, "from"),
    ("GET", "/acme/stats?to=1e400", None, "to"),
    ("GET", "/acme/emails?limit=99999999999999999999999", None, "limit"),
    ("GET", "/acme/emails?limit=" + "9" * 5000, None, "limit"),
]


@pytest.mark.parametrize(("method", "target", "body", "field"), CASES)
async def test_bad_input_is_a_4xx_with_a_json_reason(
    start_api: Started,
    db: asyncpg.Connection,
    method: str,
    target: str,
    body: Any,
    field: str | None,
) -> None:
    key = await new_tenant(db, "acme")
    client = await start_api()
    url = URL(str(client.make_url("/")).rstrip("/") + target, encoded=True)
    async with client.session.request(method, url, json=body, headers=bearer(key)) as resp:
        text = await resp.text()
        assert 400 <= resp.status < 500, (resp.status, text)
        assert resp.content_type == "application/json", text
        doc = await resp.json()
    assert doc["error"], doc
    if field is not None:
        assert field in doc.get("fields", {}), doc


async def test_a_corrupt_deflate_body_is_a_400(start_api: Started, db: asyncpg.Connection) -> None:
    key = await new_tenant(db, "acme")
    client = await start_api()
    good = zlib.compress(b'{"subject": "hello"}')
    for data, status in ((good, 201), (b"\x78\x9c not deflate at all", 400)):
        headers = {**bearer(key), "Content-Encoding": "deflate", "Content-Type": "application/json"}
        async with client.post("/acme/emails", data=data, headers=headers) as resp:
            assert resp.status == status, await resp.text()
            assert resp.content_type == "application/json"


@pytest.mark.parametrize(
    "auth",
    [
        b"Bearer blf_\xff\xfe\xff\xfe\xff\xfe\xff\xfe\xff\xfe\xff\xfe_" + b"a" * 40,  # not UTF-8
        b"Bearer blf_0123456789ab_" + b"\xff" * 40,  # a well-formed id, undecodable secret
        "Bearer blf_ééééééééééé_".encode() + b"a" * 40,
    ],
)
async def test_an_undecodable_authorization_header_is_a_401(
    start_api: Started, db: asyncpg.Connection, auth: bytes
) -> None:
    """Header bytes that are not UTF-8 (which aiohttp hands over as lone surrogates) never
    reach Postgres: a 401 with a JSON reason. Raw bytes: an HTTP client would refuse them."""
    await new_tenant(db, "acme")
    # A live key whose id the second case names: its secret is compared, not encoded.
    await db.execute(
        "INSERT INTO api_keys (id, tenant_id, key_hash, label)"
        " VALUES ('0123456789ab', 'acme', '\\x00', '')"
    )
    client = await start_api()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"GET /acme/stats HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), answer
    assert orjson.loads(body)["error"]
