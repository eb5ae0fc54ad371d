"""GET /api/v1/alerts/stream: Server-Sent Events, one `transition` event per committed
alert transition of the key's tenant, and a comment every 15 s to keep proxies open."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from services.alerting.keys import HUB
from services.alerting.routes.common import tenant_of

KEEPALIVE_SECONDS = 15.0


async def stream(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_of(request)
    hub = request.app[HUB]
    queue = hub.subscribe(tenant)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        counter = 0
        while not hub.closed:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if hub.is_close(event):
                break
            counter += 1
            data = orjson.dumps(event)
            await response.write(b"id: %d\nevent: transition\ndata: %s\n\n" % (counter, data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(tenant, queue)
    return response


def add_stream_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts/stream", stream)
