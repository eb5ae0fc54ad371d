"""Notification channels CRUD: /api/v1/channels[/{name}], named per tenant. Configs are
checked by the notify package's `validate_channel_config` and shown only through
`redact_channel_config`, so a secret given once is never shown again."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.alerting.contracts import CHANNEL_NAME, Channel, ChannelBody, Channels
from services.alerting.keys import DATABASE, SETTINGS
from services.alerting.notify.config import redact_channel_config, validate_channel_config
from services.alerting.repos.channels import ChannelRepo, PgChannelRepo
from services.alerting.repos.codec import NameTaken, Row, loads
from services.alerting.routes.common import fail, found, json_response, read_object, tenant_of
from shared.decoding import field_values
from shared.selfreport import TENANT as BELFRY_TENANT


def channel_json(row: Row) -> Channel:
    return Channel(
        name=row["name"],
        type=row["type"],
        config=redact_channel_config(row["type"], loads(row["config"])),
        enabled=row["enabled"],
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


_MESSAGES = {
    "name": f"required: matching {CHANNEL_NAME}",
    "config": "required: an object",
    "enabled": "must be true or false",
}


def _check(
    request: web.Request, tenant: str, body: dict[str, Any], *, stored: Row | None = None
) -> tuple[str, dict[str, Any], bool, str | None]:
    """(type, config, enabled, name) of a channel body (the ChannelBody contract, then
    the config of its type); else a 400 with every field's problem."""
    given, errors = field_values(ChannelBody, body, _MESSAGES)
    if stored is None and given.get("name") is None:
        errors.setdefault("name", _MESSAGES["name"])
    # A destination the egress guard always refuses (internal address in any spelling)
    # is refused when given; a stored config kept by a PUT is left to the guard.
    allow = request.app[SETTINGS].notify.egress_allow if "config" in body else None
    # A PUT without `type` keeps the stored one; a null one is refused with the others.
    kind = given.get("type") if "type" in body or stored is None else stored["type"]
    if kind == "log" and tenant != BELFRY_TENANT:
        # The service log is the operators': a tenant's alerts don't belong in it.
        errors["type"] = f"'log' is for Belfry's own channels (tenant {BELFRY_TENANT})"
    config = given.get("config")
    if config is None and stored is not None and kind == stored["type"]:
        config = loads(stored["config"])  # PUT without config keeps the stored one (secrets)
    if config is None:
        errors.setdefault("config", _MESSAGES["config"])
    else:
        checked = validate_channel_config(str(kind), config, egress_allow=allow)
        for field, problem in checked.items():
            errors[field if field == "type" else f"config.{field}"] = problem
    if errors:
        fail(400, "invalid channel", errors)
    assert config is not None
    return str(kind), dict(config), given.get("enabled", True), given.get("name")


def _repo(request: web.Request) -> PgChannelRepo:
    return PgChannelRepo(request.app[DATABASE])


async def fetch(repo: ChannelRepo, tenant: str, name: str) -> Row:
    return found(await repo.get(tenant, name), "channel")


async def list_channels(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    rows = await _repo(request).of_tenant(tenant)
    return json_response(Channels([channel_json(r) for r in rows]))


async def create_channel(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    body = await read_object(request)
    kind, config, enabled, name = _check(request, tenant, body)
    assert name is not None
    try:
        row = await _repo(request).create(tenant, name, kind, config, enabled)
    except NameTaken:
        fail(409, "a channel with this name exists", {"name": "already used"})
    return json_response(channel_json(row), 201)


async def get_channel(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    return json_response(
        channel_json(await fetch(_repo(request), tenant, request.match_info["name"]))
    )


async def replace_channel(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    repo = _repo(request)
    stored = await fetch(repo, tenant, request.match_info["name"])
    body = await read_object(request)
    if body.get("name", stored["name"]) != stored["name"]:
        fail(400, "invalid channel", {"name": "a channel cannot be renamed"})
    kind, config, enabled, _ = _check(request, tenant, body, stored=stored)
    row = await repo.replace(tenant, stored["name"], kind, config, enabled)
    return json_response(channel_json(row))


async def delete_channel(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    if not await _repo(request).delete(tenant, request.match_info["name"]):
        fail(404, "no such channel")
    return web.Response(status=204)


def add_channel_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/channels", list_channels)
    app.router.add_post("/api/v1/channels", create_channel)
    app.router.add_get("/api/v1/channels/{name}", get_channel)
    app.router.add_put("/api/v1/channels/{name}", replace_channel)
    app.router.add_delete("/api/v1/channels/{name}", delete_channel)
