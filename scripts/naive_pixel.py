"""The naive peer of the benchmark: what a user writes first to count email opens — the
bare pixel app (scripts/bare_pixel.py), but each hit INSERTed into Postgres through an
asyncpg pool of 16 before the GIF is answered. No queue, no batching, no spool: one row,
one round trip per hit. Belfry's ingest is compared with it (issue 15: at least 3 times its
requests/s), in the same benchmark run.

    python scripts/naive_pixel.py --port 8091 --database-url postgresql://…/belfry_naive_x

It creates its table (`naive_hits`: id, tenant, email id, user agent, ip, time) at start.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import uvloop
from aiohttp import web
from standalone import serve_until_signal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.ingest.routes.pixel import GIF, HEADERS  # noqa: E402

POOL = web.AppKey("pool", asyncpg.Pool)
TABLE = """CREATE TABLE IF NOT EXISTS naive_hits (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    email_id text NOT NULL,
    user_agent text,
    ip text,
    occurred_at timestamptz NOT NULL DEFAULT now()
)"""
INSERT = "INSERT INTO naive_hits (id, tenant, email_id, user_agent, ip) VALUES ($1, $2, $3, $4, $5)"


async def pixel(request: web.Request) -> web.Response:
    info = request.match_info
    await request.app[POOL].execute(
        INSERT,
        uuid.uuid4(),
        info["tenant"],
        info["email_id"],
        request.headers.get("User-Agent"),
        request.remote,
    )
    return web.Response(body=GIF, headers=HEADERS)


def create_app(database_url: str) -> web.Application:
    app = web.Application()

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(database_url, min_size=16, max_size=16)
        await pool.execute(TABLE)
        app[POOL] = pool
        yield
        await pool.close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_get("/{tenant}/pixel/{email_id}.gif", pixel)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvloop.run(serve_until_signal(create_app(args.database_url), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
