"""The benchmark's baseline: a bare aiohttp app serving ingest's pixel, and nothing else.

Same event loop (uvloop), same listener settings (no access log, backlog 1024) and the
same 43-byte GIF with the same headers as `services/ingest/routes/pixel.py`, but no id
validation, no envelope, no broker. wrk against it gives the ceiling that ingest's
throughput is compared with.

    python scripts/bare_pixel.py --port 8090
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvloop
from aiohttp import web
from standalone import serve_until_signal

# Run as a file (`python scripts/bare_pixel.py`), so the repo root is not on sys.path.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The exact bytes and headers ingest answers with, so only the work behind them differs.
from services.ingest.routes.pixel import GIF, HEADERS  # noqa: E402


async def pixel(request: web.Request) -> web.Response:
    return web.Response(body=GIF, headers=HEADERS)


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/{tenant}/pixel/{email_id}.gif", pixel)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvloop.run(serve_until_signal(create_app(), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
