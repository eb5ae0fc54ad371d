"""The intake benchmark's ceiling: a bare aiohttp app that takes intake bodies and no more.

Same event loop (uvloop) and listener settings (no access log, backlog 1024) as ingest.
`POST /v1/metrics`, `/api/v1/write`, `/v1/samples` and `/v1/track` read the whole body
(the HTTP layer's share of the work: the bytes must arrive) and answer 204, without
decoding, authorizing or publishing anything. The intake bench's load generator against
it gives what the HTTP layer alone allows on this machine (scripts/bench_intake.py).

    python scripts/bare_intake.py --port 8091
"""

from __future__ import annotations

import argparse
import sys

import uvloop
from aiohttp import web
from standalone import serve_until_signal

PATHS = ("/v1/metrics", "/api/v1/write", "/v1/samples", "/v1/track")


async def take(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app() -> web.Application:
    # Ingest's intake bound is 10 MiB; aiohttp's default (1 MiB) would refuse big batches.
    app = web.Application(client_max_size=10 << 20)
    for path in PATHS:
        app.router.add_post(path, take)
    app.router.add_get("/readyz", ready)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    uvloop.run(serve_until_signal(create_app(), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
