"""Rules CRUD: /api/v1/rules[/{id}]. Every change goes through the engine, which resolves
the alerts of a deleted or disabled rule in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from services.alerting.keys import DATABASE, ENGINE
from services.alerting.routes.common import (
    fail,
    iso,
    json_response,
    parse_uuid,
    read_object,
    tenant_of,
)
from services.alerting.rules.model import Rule
from services.alerting.rules.validate import RuleError, rule_from_doc, stored_doc
from services.alerting.store import dumps, loads, rule_from_row

_SELECT = "SELECT id, tenant_id, spec, enabled, source, created_at, updated_at FROM alert_rules"


def rule_json(row: Any) -> dict[str, Any]:
    try:
        doc = rule_from_row(row).to_doc()
    except RuleError as exc:
        doc = _unreadable(row, exc)
    doc.update(source=row["source"], created_at=iso(row["created_at"]))
    doc["updated_at"] = iso(row["updated_at"])
    return doc


def _unreadable(row: Any, exc: RuleError) -> dict[str, Any]:
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


async def _validated(request: web.Request, tenant: str, rule_id: str) -> Rule:
    body = await read_object(request)
    body.pop("id", None)
    try:
        rule = rule_from_doc(body, tenant=tenant, rule_id=rule_id)
    except RuleError as exc:
        fail(400, "invalid rule", exc.errors)
    if rule.channels:
        pool = await request.app[DATABASE].pool()
        known = {
            r["name"]
            for r in await pool.fetch(
                "SELECT name FROM alert_channels WHERE tenant_id = $1 AND name = ANY($2::text[])",
                tenant,
                list(rule.channels),
            )
        }
        missing = {
            f"channels.{i}": f"no channel named {name!r}"
            for i, name in enumerate(rule.channels)
            if name not in known
        }
        if missing:
            fail(400, "invalid rule", missing)
    return rule


async def list_rules(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    pool = await request.app[DATABASE].pool()
    rows = await pool.fetch(f"{_SELECT} WHERE tenant_id = $1 ORDER BY name", tenant)
    return json_response({"rules": [rule_json(r) for r in rows]})


async def _fetch(request: web.Request, tenant: str) -> Any:
    rule_id = parse_uuid(request.match_info["rule_id"])
    if rule_id is None:
        fail(404, "no such rule")
    pool = await request.app[DATABASE].pool()
    row = await pool.fetchrow(f"{_SELECT} WHERE id = $1 AND tenant_id = $2", rule_id, tenant)
    if row is None:
        fail(404, "no such rule")
    return row


async def get_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    return json_response(rule_json(await _fetch(request, tenant)))


async def create_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    rule = await _validated(request, tenant, str(uuid.uuid4()))

    async def write(conn: asyncpg.Connection) -> Any:
        return await conn.fetchrow(
            """INSERT INTO alert_rules (id, tenant_id, name, spec, enabled, source)
               VALUES ($1, $2, $3, $4, $5, 'api')
               RETURNING id, tenant_id, spec, enabled, source, created_at, updated_at""",
            rule.id,
            tenant,
            rule.name,
            dumps(stored_doc(rule)),
            rule.enabled,
        )

    try:
        row = await request.app[ENGINE].change_rule(rule.id, rule, write, "api")
    except asyncpg.UniqueViolationError:
        fail(409, "a rule with this name exists", {"name": "already used by another rule"})
    return json_response(rule_json(row), 201)


async def replace_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    existing = await _fetch(request, tenant)
    rule = await _validated(request, tenant, str(existing["id"]))

    async def write(conn: asyncpg.Connection) -> Any:
        return await conn.fetchrow(
            """UPDATE alert_rules SET name = $2, spec = $3, enabled = $4, updated_at = now()
               WHERE id = $1
               RETURNING id, tenant_id, spec, enabled, source, created_at, updated_at""",
            rule.id,
            rule.name,
            dumps(stored_doc(rule)),
            rule.enabled,
        )

    try:
        row = await request.app[ENGINE].change_rule(rule.id, rule, write, "api")
    except asyncpg.UniqueViolationError:
        fail(409, "a rule with this name exists", {"name": "already used by another rule"})
    return json_response(rule_json(row))


async def delete_rule(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    existing = await _fetch(request, tenant)

    async def write(conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM alert_rules WHERE id = $1", existing["id"])

    await request.app[ENGINE].change_rule(str(existing["id"]), None, write, "api")
    return web.Response(status=204)


def add_rule_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/rules", list_rules)
    app.router.add_post("/api/v1/rules", create_rule)
    app.router.add_get("/api/v1/rules/{rule_id}", get_rule)
    app.router.add_put("/api/v1/rules/{rule_id}", replace_rule)
    app.router.add_delete("/api/v1/rules/{rule_id}", delete_rule)


__all__ = ["add_rule_routes"]
