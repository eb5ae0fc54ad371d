"""`GET /{tenant}/export.csv` and `/{tenant}/export.ndjson` (`?from=&to=&email_id=&kind=`):
the raw events, oldest first, streamed (read by services/api/repos/events.py).

Rows come from a server-side cursor `API_EXPORT_CHUNK_ROWS` at a time and each chunk is
written out before the next is fetched, so memory stays flat however many rows there are
(the client's pace holds the cursor back: aiohttp's write waits for the socket to drain).
A client that goes away ends the transaction and releases the connection.

CSV cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) get
a leading `'`: user agents and URLs come from strangers.
"""

from __future__ import annotations

import csv
import io
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web

from services.api.access import authorize, pool
from services.api.http import bad_request
from services.api.keys import DEPS, METRICS, SETTINGS
from services.api.repos.events import COLUMNS, PgEventRepo
from services.api.timerange import parse_scope

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _iso(value: Any) -> str:
    # Fixed width (always microseconds), so the text sorts like the time.
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _guard(text: str | None) -> str | None:
    """A cell a spreadsheet would run as a formula, defused."""
    return "'" + text if text and text.startswith(_FORMULA_START) else text


def csv_chunk(rows: list[Any], header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # csv writes None as an empty cell
    if header:
        writer.writerow(COLUMNS)
    # Only email_id, url and user_agent can hold a stranger's text; the rest are ids,
    # times, fixed words, addresses and JSON objects.
    writer.writerows(
        (
            r[0],
            _iso(r[1]),
            _iso(r[2]),
            r[3],
            _guard(r[4]),
            _guard(r[5]),
            r[6],
            _guard(r[7]),
            r[8],
            r[9],
            r[10],
        )
        for r in rows
    )
    return out.getvalue().encode()


def ndjson_chunk(rows: list[Any], header: bool) -> bytes:
    lines = []
    for row in rows:
        doc = dict(zip(COLUMNS, row, strict=True))
        doc["occurred_at"] = _iso(doc["occurred_at"])
        doc["received_at"] = _iso(doc["received_at"])
        if doc["props"] is not None:
            doc["props"] = orjson.Fragment(doc["props"])  # already JSON text
        lines.append(orjson.dumps(doc))
        lines.append(b"\n")
    return b"".join(lines)


FORMATS = {
    "csv": ("text/csv; charset=utf-8", csv_chunk),
    "ndjson": ("application/x-ndjson", ndjson_chunk),
}


async def export(request: web.Request) -> web.StreamResponse:
    tenant = await authorize(request)
    fmt = request.match_info["format"]
    content_type, encode = FORMATS[fmt]
    scope, errors = parse_scope(request.query, request.app[DEPS].now(), default_span=None)
    kind = request.query.get("kind") or None
    if kind not in (None, "open", "click"):
        errors["kind"] = "must be open or click"
    if scope is None or errors:
        raise bad_request("invalid query", errors)
    chunks = PgEventRepo(await pool(request)).chunks(
        tenant, scope, kind, request.app[SETTINGS].export_chunk_rows
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{tenant}-events.{fmt}"',
            "Cache-Control": "no-store",
        }
    )
    outcome = "aborted"
    exported = 0
    try:
        async with aclosing(chunks):  # a client gone: the transaction ends, the conn is free
            header = True
            async for rows in chunks:
                if header:
                    # Headers go out only once the query ran: a failure is still a clean 5xx.
                    await response.prepare(request)
                elif not rows:
                    break
                await response.write(encode(rows, header))
                exported += len(rows)
                header = False
        await response.write_eof()
        outcome = "complete"
    finally:
        request.app[METRICS].export_rows.labels(fmt).inc(exported)
        request.app[METRICS].exports.labels(fmt, outcome).inc()
    return response
