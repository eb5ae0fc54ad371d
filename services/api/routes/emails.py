"""Little Bell-compatible email routes (the service: services/api/emails.py).

- `POST /{tenant}/emails` `{"subject"?, "recipient"?}` → 201 `{"email_id",
  "tracking_pixel_url"}` plus Belfry's extras: `click_url_endpoint` (where to get a signed
  click link) and, for each URL listed in an optional `"links": [...]`, its signed
  `click_urls[url]`, which saves a round trip per link.
- `GET /{tenant}/click-url/{email_id}?url=` → `{"click_url", "original_url"}`.
- `GET /{tenant}/emails` (newest first, `?limit=&before=`) and `GET /{tenant}/emails/{id}`.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from services.api import emails
from services.api.access import authorize, pool
from services.api.contracts import MAX_LIST
from services.api.http import bad_request, json_response, not_found, read_json
from services.api.keys import METRICS, SETTINGS
from services.api.repos.emails import PgEmailRepo
from services.api.timerange import parse_instant
from shared.ids import valid_email_id
from shared.signing import target_problem


async def _repo(request: web.Request) -> PgEmailRepo:
    return PgEmailRepo(await pool(request))


def _links(request: web.Request) -> emails.Links:
    settings = request.app[SETTINGS]
    return emails.Links(settings.public_url, settings.signing)


def _email_id(request: web.Request) -> str:
    email_id = request.match_info["email_id"]
    if not valid_email_id(email_id):
        raise not_found("unknown email")
    return email_id


async def create_email(request: web.Request) -> web.Response:
    tenant = await authorize(request, little_bell=True)
    email = emails.email_input(await read_json(request))
    answer = await emails.register(await _repo(request), _links(request), tenant, email)
    request.app[METRICS].emails_registered.inc()
    if answer.click_urls:
        request.app[METRICS].click_urls_signed.inc(len(answer.click_urls))
    return json_response(answer, status=201)


async def click_url_route(request: web.Request) -> web.Response:
    tenant = await authorize(request, little_bell=True)
    url = request.query.get("url")
    if not url:
        raise bad_request("url is required", {"url": "required"})
    problem = target_problem(url)
    if problem:
        raise bad_request(problem, {"url": problem})
    email_id = _email_id(request)
    answer = await emails.signed_click(await _repo(request), _links(request), tenant, email_id, url)
    if answer is None:
        raise not_found("unknown email")
    request.app[METRICS].click_urls_signed.inc()
    return json_response(answer)


async def get_email(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    email_id = _email_id(request)
    answer = await emails.detail(await _repo(request), _links(request), tenant, email_id)
    if answer is None:
        raise not_found("unknown email")
    return json_response(answer)


def _page_query(request: web.Request) -> tuple[datetime | None, int]:
    errors: dict[str, str] = {}
    try:
        limit = int(request.query.get("limit", "100"))
        if not 1 <= limit <= MAX_LIST:
            raise ValueError
    except ValueError:
        errors["limit"] = f"must be an integer from 1 to {MAX_LIST}"
        limit = 0
    before = None
    if request.query.get("before"):
        try:
            before = parse_instant(request.query["before"])
        except ValueError as exc:
            errors["before"] = str(exc)
    if errors:
        raise bad_request("invalid query", errors)
    return before, limit


async def list_emails(request: web.Request) -> web.Response:
    """Newest first; `before` (the `created_at` of the last row seen) pages on."""
    tenant = await authorize(request)
    before, limit = _page_query(request)
    return json_response(await emails.page(await _repo(request), tenant, before, limit))
