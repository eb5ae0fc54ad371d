"""The benchmark's trace receiver: accepts OTLP/HTTP exports and throws them away.

`POST /v1/traces` reads the body (without decoding it: the bench measures what tracing
costs the services, not a collector) and answers 200 with an empty body, which is a valid
empty `ExportTraceServiceResponse`. `GET /stats` returns what arrived so far as JSON:
`{"requests": n, "bytes": n, "other_requests": n}` (bytes as sent, i.e. compressed if the
exporter compresses; `other_requests` counts any other path, which should stay 0).

    python scripts/otlp_sink.py --port 4318
"""

from __future__ import annotations

import argparse
import sys

import orjson
import uvloop
from aiohttp import web
from standalone import serve_until_signal

PROTOBUF = "application/x-protobuf"


class Sink:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.other_requests = 0

    async def traces(self, request: web.Request) -> web.Response:
        # Streamed, so no client_max_size limit and no buffering of large exports.
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
        self.requests += 1
        self.bytes += size
        return web.Response(status=200, body=b"", content_type=PROTOBUF)

    async def stats(self, request: web.Request) -> web.Response:
        body = {
            "requests": self.requests,
            "bytes": self.bytes,
            "other_requests": self.other_requests,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def other(self, request: web.Request) -> web.Response:
        self.other_requests += 1
        await request.read()
        return web.Response(status=404, text="only POST /v1/traces and GET /stats\n")


def create_app(sink: Sink) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/traces", sink.traces)
    app.router.add_get("/stats", sink.stats)
    app.router.add_route("*", "/{tail:.*}", sink.other)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    uvloop.run(serve_until_signal(create_app(Sink()), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
