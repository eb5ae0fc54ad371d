"""The console's health view for Belfry's operators (routes and the calls behind them).

- `GET /console/health`: the page (health_page.py); it needs no key, its script does.
- `GET /console/api/health`: every service's `/health/detailed` (the api's own and each
  ConsoleTargets URL, in parallel, each within the timeout; a service that is down shows
  as `down` with the reason) and every queue's depth, consumers and net rate.
- `GET /console/api/dead-letters/{queue}?limit=N`: the first N dead letters with reasons.
- `POST /console/api/dead-letters/{queue}/replay` and `.../purge`: need a confirmation,
  `{"confirm": true}` as the body or `?confirm=<queue name>`; replay takes `limit` too.

Every `/console/api/` route needs a key of tenant `belfry` (health_access.py). The
answer is never a 500 for a service or the broker being down: the view says which.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiormq.exceptions import AMQPError

from services.alerting.notify.store import DeliveryStore
from services.api.console import health_deadletters as dead
from services.api.console.health_access import RECENT, RecentKeys, require_operator
from services.api.console.health_page import health_page
from services.api.console.health_queues import DepthSampler, queue_figures
from services.api.console.health_services import all_services
from services.api.http import bad_request, json_response, not_found, read_json, unavailable
from services.api.keys import DATABASE, DEPS, SETTINGS
from shared.failures import error_text

log = logging.getLogger("belfry.api.console")

SAMPLER = web.AppKey("console_depth_sampler", DepthSampler)
LIST_DEFAULT, LIST_MAX = 20, 200
BROKER_ERRORS = (AMQPError, OSError, TimeoutError, ConnectionError)


def _amqp(request: web.Request) -> tuple[str, str, float]:
    settings = request.app[SETTINGS]
    return settings.common.amqp_url, settings.common.prefix, settings.console.timeout_seconds


async def _queues(request: web.Request) -> dict[str, Any]:
    url, prefix, timeout = _amqp(request)
    try:
        async with asyncio.timeout(timeout):
            queues = await queue_figures(url, prefix, timeout, request.app[SAMPLER])
    except TimeoutError:
        return {"status": "down", "reason": f"no answer within {timeout:g} s", "queues": []}
    except BROKER_ERRORS as exc:
        return {"status": "down", "reason": error_text(exc), "queues": []}
    return {"status": "up", "queues": queues}


async def health_json(request: web.Request) -> web.Response:
    await require_operator(request)
    settings = request.app[SETTINGS]
    services, broker = await asyncio.gather(
        all_services(request, settings.console), _queues(request)
    )
    now = request.app[DEPS].now()
    return json_response({"generated_at": now.isoformat(), "services": services, "broker": broker})


def _dead_letter_queue(request: web.Request) -> str:
    """The path's queue when it is a dead-letter queue of this topology, else 404."""
    queue = request.match_info["queue"]
    if queue not in dead.dead_letter_queues(_amqp(request)[1]):
        raise not_found("unknown dead-letter queue (GET /console/api/health lists them)")
    return queue


def _limit(value: object, default: int | None) -> int | None:
    """`limit` of a JSON body (a number) or, as text, of the query; 400 unless it is a
    whole number from 1 to LIST_MAX."""
    if value is None:
        return default
    limit = value if isinstance(value, int) and not isinstance(value, bool) else 0
    if not 1 <= limit <= LIST_MAX:
        raise bad_request(f"limit must be a whole number from 1 to {LIST_MAX}")
    return limit


def _query_limit(request: web.Request) -> int | None:
    """The query's `limit` as a number (left out: None); text that is no number: 0."""
    text = request.query.get("limit")
    if text is None:
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0


async def _confirmed(request: web.Request, queue: str, action: str) -> dict[str, Any]:
    """The request's JSON body once the action is confirmed; 400 otherwise."""
    body = await read_json(request, empty={})
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    if body.get("confirm") is True or request.query.get("confirm") == queue:
        return body
    raise bad_request(
        f'{action} needs a confirmation: send {{"confirm": true}} or ?confirm=<queue name>'
    )


async def _broker_call(coro: Any) -> Any:
    try:
        return await coro
    except dead.NotDeclared as exc:
        raise not_found(str(exc)) from None
    except BROKER_ERRORS as exc:
        raise unavailable(f"broker unavailable: {error_text(exc)}") from None


async def list_route(request: web.Request) -> web.Response:
    await require_operator(request)
    queue = _dead_letter_queue(request)
    limit = _limit(_query_limit(request), LIST_DEFAULT)
    assert limit is not None
    url, _, timeout = _amqp(request)
    return json_response(await _broker_call(dead.list_dead_letters(url, queue, limit, timeout)))


async def replay_route(request: web.Request) -> web.Response:
    await require_operator(request)
    queue = _dead_letter_queue(request)
    body = await _confirmed(request, queue, "replay")
    limit = _limit(body["limit"] if "limit" in body else _query_limit(request), None)
    url, prefix, timeout = _amqp(request)
    notified = queue in dead.notification_dlqs(prefix)
    store = DeliveryStore(request.app[DATABASE]) if notified else None
    count = await _broker_call(dead.replay_dead_letters(url, prefix, queue, limit, timeout, store))
    log.info("dead letters replayed from the console", extra={"queue": queue, "count": count})
    return json_response({"queue": queue, "replayed": count, "to": queue.removesuffix(".dlq")})


async def purge_route(request: web.Request) -> web.Response:
    await require_operator(request)
    queue = _dead_letter_queue(request)
    await _confirmed(request, queue, "purge")
    url, _, timeout = _amqp(request)
    count = await _broker_call(dead.purge_dead_letters(url, queue, timeout))
    log.warning("dead letters purged from the console", extra={"queue": queue, "count": count})
    return json_response({"queue": queue, "purged": count})


def add_routes(app: web.Application) -> None:
    app[SAMPLER] = DepthSampler()
    app[RECENT] = RecentKeys()
    r = app.router
    r.add_get("/console/health", health_page)
    r.add_get("/console/api/health", health_json)
    r.add_get("/console/api/dead-letters/{queue}", list_route)
    r.add_post("/console/api/dead-letters/{queue}/replay", replay_route)
    r.add_post("/console/api/dead-letters/{queue}/purge", purge_route)
