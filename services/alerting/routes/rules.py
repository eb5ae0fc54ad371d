"""Rules CRUD: /api/v1/rules[/{id}]. Every change goes through the engine, which resolves
the alerts of a deleted or disabled rule in the same transaction.

The service functions (`create`, `replace`, `remove`) take the repositories and the engine
as Protocols, so tests drive them with in-memory fakes; the handlers only add HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

import msgspec
from aiohttp import web

from services.alerting import contracts
from services.alerting.keys import DATABASE, ENGINE
from services.alerting.repos.channels import ChannelRepo, PgChannelRepo
from services.alerting.repos.codec import NameTaken, Row, loads
from services.alerting.repos.rules import PgRuleRepo, RuleRepo, rule_from_row
from services.alerting.routes.common import (
    fail,
    found,
    iso,
    json_response,
    parse_uuid,
    read_object,
    tenant_of,
)
from services.alerting.rules.model import Rule
from services.alerting.rules.validate import RuleError, rule_from_doc


class RuleChanger(Protocol):
    """The engine's side of a rule change (services/alerting/evaluator.py)."""

    async def change_rule(
        self, rule_id: str, new: Rule | None, write: Callable[[Any], Awaitable[Any]], actor: str
    ) -> Any: ...


def rule_json(row: Row) -> contracts.Rule:
    try:
        doc = rule_from_row(row).to_doc()
    except RuleError as exc:
        doc = _unreadable(row, exc)
    doc.update(source=row["source"], created_at=iso(row["created_at"]))
    doc["updated_at"] = iso(row["updated_at"])
    return msgspec.convert(doc, contracts.Rule)


def _unreadable(row: Row, exc: RuleError) -> dict[str, Any]:
    """A stored rule today's checks refuse (written by an older version, e.g. an infinite
    threshold or a regex RE2 cannot run): shown with its problems, so that listing still
    works and the tenant can fix (PUT) or delete it; the engine skips it meanwhile."""
    name = loads(row["spec"]).get("name")
    return {
        "id": str(row["id"]),
        "name": name if isinstance(name, str) else "",
        "enabled": False,
        "invalid": exc.errors,
    }


async def validated(channels: ChannelRepo, tenant: str, rule_id: str, body: Any) -> Rule:
    """The rule `body` describes, every channel it names existing; else a 400."""
    if isinstance(body, dict):
        body.pop("id", None)
    try:
        rule = rule_from_doc(body, tenant=tenant, rule_id=rule_id)
    except RuleError as exc:
        fail(400, "invalid rule", exc.errors)
    if rule.channels:
        known = await channels.existing(tenant, rule.channels)
        missing = {
            f"channels.{i}": f"no channel named {name!r}"
            for i, name in enumerate(rule.channels)
            if name not in known
        }
        if missing:
            fail(400, "invalid rule", missing)
    return rule


def _taken() -> NoReturn:
    fail(409, "a rule with this name exists", {"name": "already used by another rule"})


async def create(
    rules: RuleRepo, channels: ChannelRepo, engine: RuleChanger, tenant: str, body: Any
) -> contracts.Rule:
    rule = await validated(channels, tenant, str(uuid.uuid4()), body)
    try:
        row = await engine.change_rule(
            rule.id, rule, lambda conn: rules.insert(conn, rule, "api"), "api"
        )
    except NameTaken:
        _taken()
    return rule_json(row)


async def fetch(rules: RuleRepo, tenant: str, raw_id: str) -> Row:
    rule_id = parse_uuid(raw_id)
    return found(None if rule_id is None else await rules.get(tenant, rule_id), "rule")


async def replace(
    rules: RuleRepo,
    channels: ChannelRepo,
    engine: RuleChanger,
    tenant: str,
    rule_id: str,
    body: Any,
) -> contracts.Rule:
    """Replace the stored rule `rule_id` (found by `fetch` first)."""
    rule = await validated(channels, tenant, rule_id, body)
    try:
        row = await engine.change_rule(rule.id, rule, lambda conn: rules.update(conn, rule), "api")
    except NameTaken:
        _taken()
    return rule_json(row)


async def remove(rules: RuleRepo, engine: RuleChanger, tenant: str, raw_id: str) -> None:
    rule_id = str((await fetch(rules, tenant, raw_id))["id"])
    await engine.change_rule(rule_id, None, lambda conn: rules.delete(conn, rule_id), "api")


def _repos(request: web.Request) -> tuple[PgRuleRepo, PgChannelRepo]:
    db = request.app[DATABASE]
    return PgRuleRepo(db), PgChannelRepo(db)


async def list_rules(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    rows = await _repos(request)[0].of_tenant(tenant)
    return json_response(contracts.Rules([rule_json(r) for r in rows]))


async def get_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    rules, _ = _repos(request)
    return json_response(rule_json(await fetch(rules, tenant, request.match_info["rule_id"])))


async def create_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    body = await read_object(request)
    doc = await create(*_repos(request), request.app[ENGINE], tenant, body)
    return json_response(doc, 201)


async def replace_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    rules, channels = _repos(request)
    existing = await fetch(rules, tenant, request.match_info["rule_id"])
    body = await read_object(request)
    engine = request.app[ENGINE]
    return json_response(await replace(rules, channels, engine, tenant, str(existing["id"]), body))


async def delete_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    rules, _ = _repos(request)
    await remove(rules, request.app[ENGINE], tenant, request.match_info["rule_id"])
    return web.Response(status=204)


def add_rule_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/rules", list_rules)
    app.router.add_post("/api/v1/rules", create_rule)
    app.router.add_get("/api/v1/rules/{rule_id}", get_rule)
    app.router.add_put("/api/v1/rules/{rule_id}", replace_rule)
    app.router.add_delete("/api/v1/rules/{rule_id}", delete_rule)


__all__ = ["add_rule_routes"]
