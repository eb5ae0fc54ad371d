"""Little Bell-compatible email routes.

- `POST /{tenant}/emails` `{"subject"?, "recipient"?}` → 201 `{"email_id",
  "tracking_pixel_url"}` plus Belfry's extras: `click_url_endpoint` (where to get a signed
  click link) and, for each URL listed in an optional `"links": [...]`, its signed
  `click_urls[url]`, which saves a round trip per link.
- `GET /{tenant}/click-url/{email_id}?url=` → `{"click_url", "original_url"}`.
- `GET /{tenant}/emails` (newest first, `?limit=&before=`) and `GET /{tenant}/emails/{id}`.

Email ids are 128-bit random (`secrets.token_urlsafe(16)`): not guessable, not enumerable.
`created_at` is set here, at registration: the writer's classifier reads it ("a click
within seconds of registration is a scanner").
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from services.api import metrics
from services.api.access import authorize, pool
from services.api.http import bad_request, json_response, not_found, read_json
from services.api.keys import SETTINGS
from services.api.links import click_url, pixel_url
from services.api.timerange import parse_instant
from shared.ids import valid_email_id
from shared.signing import target_problem

MAX_SUBJECT = 998  # RFC 5322's line limit: no real subject is longer
MAX_RECIPIENT = 320
MAX_LINKS = 100
MAX_LIST = 500


def new_email_id() -> str:
    return secrets.token_urlsafe(16)  # 22 chars of [A-Za-z0-9_-]: shared.ids accepts it


def _validate(body: Any) -> tuple[dict[str, str | None], list[str]]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    errors: dict[str, str] = {}
    fields: dict[str, str | None] = {}
    for name, limit in (("subject", MAX_SUBJECT), ("recipient", MAX_RECIPIENT)):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors[name] = f"must be a string of at most {limit} characters"
        fields[name] = value
    links = body.get("links", [])
    if not isinstance(links, list) or len(links) > MAX_LINKS:
        errors["links"] = f"must be a list of at most {MAX_LINKS} URLs"
        links = []
    for index, link in enumerate(links):
        problem = "must be a string" if not isinstance(link, str) else target_problem(link)
        if problem:
            errors[f"links[{index}]"] = problem
    if errors:
        raise bad_request("invalid email", errors)
    return fields, links


async def create_email(request: web.Request) -> web.Response:
    tenant = await authorize(request, little_bell=True)
    fields, links = _validate(await read_json(request))
    email_id = new_email_id()
    db = await pool(request)
    created = await db.fetchval(
        "INSERT INTO emails (tenant_id, id, subject, recipient, created_at)"
        " VALUES ($1, $2, $3, $4, now()) RETURNING created_at",
        tenant,
        email_id,
        fields["subject"],
        fields["recipient"],
    )
    metrics.EMAILS_REGISTERED.inc()
    settings = request.app[SETTINGS]
    body: dict[str, Any] = {
        "email_id": email_id,
        "tracking_pixel_url": pixel_url(settings.public_url, tenant, email_id),
        "click_url_endpoint": f"/{tenant}/click-url/{email_id}?url=",
        "created_at": created.isoformat(),
    }
    if links:
        body["click_urls"] = {
            link: click_url(settings.public_url, settings.signing, tenant, email_id, link)
            for link in links
        }
        metrics.CLICK_URLS_SIGNED.inc(len(body["click_urls"]))
    return json_response(body, status=201)


async def _email_row(request: web.Request, tenant: str) -> Any:
    email_id = request.match_info["email_id"]
    if not valid_email_id(email_id):
        raise not_found("unknown email")
    db = await pool(request)
    row = await db.fetchrow(
        "SELECT id, subject, recipient, created_at FROM emails WHERE tenant_id = $1 AND id = $2",
        tenant,
        email_id,
    )
    if row is None:
        raise not_found("unknown email")
    return row


async def click_url_route(request: web.Request) -> web.Response:
    tenant = await authorize(request, little_bell=True)
    url = request.query.get("url")
    if not url:
        raise bad_request("url is required", {"url": "required"})
    problem = target_problem(url)
    if problem:
        raise bad_request(problem, {"url": problem})
    row = await _email_row(request, tenant)
    settings = request.app[SETTINGS]
    metrics.CLICK_URLS_SIGNED.inc()
    return json_response(
        {
            "click_url": click_url(settings.public_url, settings.signing, tenant, row["id"], url),
            "original_url": url,
        }
    )


def _email_json(row: Any) -> dict[str, Any]:
    return {
        "email_id": row["id"],
        "subject": row["subject"],
        "recipient": row["recipient"],
        "created_at": row["created_at"].isoformat(),
    }


async def get_email(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    row = await _email_row(request, tenant)
    settings = request.app[SETTINGS]
    return json_response(
        {
            **_email_json(row),
            "tracking_pixel_url": pixel_url(settings.public_url, tenant, row["id"]),
            "stats_url": f"/{tenant}/stats?email_id={row['id']}",
        }
    )


async def list_emails(request: web.Request) -> web.Response:
    """Newest first; `before` (the `created_at` of the last row seen) pages on."""
    tenant = await authorize(request)
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
    db = await pool(request)
    rows = await db.fetch(
        "SELECT id, subject, recipient, created_at FROM emails WHERE tenant_id = $1"
        " AND ($2::timestamptz IS NULL OR created_at < $2)"
        " ORDER BY created_at DESC, id LIMIT $3",
        tenant,
        before,
        limit,
    )
    return json_response({"emails": [_email_json(r) for r in rows]})
