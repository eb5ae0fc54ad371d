"""Rules (`alert_rules`): the API's CRUD and the engine's load and file upsert.

Writes take the connection of the engine's transaction (`AlertEngine.change_rule` passes
it), so a rule change and the resolution of its alerts commit together.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

import asyncpg

from services.alerting.repos.codec import NameTaken, Row, dumps, loads
from services.alerting.rules.model import Rule
from services.alerting.rules.validate import RuleError, rule_from_doc, stored_doc
from shared.db import Database

_COLUMNS = "id, tenant_id, spec, enabled, source, created_at, updated_at"
_SELECT = f"SELECT {_COLUMNS} FROM alert_rules"
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
# Per rule its alerts by state and its last transition (the activity view).
_ACTIVITY = """
SELECT r.id, r.spec->>'name' AS name, r.enabled, r.spec->>'severity' AS severity,
       coalesce((SELECT jsonb_object_agg(s.state, s.n) FROM (
           SELECT a.state, count(*) AS n FROM alerts a WHERE a.rule_id = r.id GROUP BY 1) s),
           '{}'::jsonb) AS alerts,
       (SELECT max(t.at) FROM alert_transitions t WHERE t.rule_id = r.id) AS last_transition_at
FROM alert_rules r WHERE r.tenant_id = $1 ORDER BY r.spec->>'name' LIMIT 1000
"""


def _values(rule: Rule, source: str) -> tuple[Any, ...]:
    """The values of an alert_rules row's id, tenant_id, name, spec, enabled and source."""
    return (rule.id, rule.tenant, rule.name, dumps(stored_doc(rule)), rule.enabled, source)


class RuleRepo(Protocol):
    async def of_tenant(self, tenant: str) -> list[Row]: ...
    async def get(self, tenant: str, rule_id: str) -> Row | None: ...
    # `conn`: the engine's transaction (a fake ignores it). NameTaken on a used name.
    async def insert(self, conn: Any, rule: Rule, source: str) -> Row: ...
    async def update(self, conn: Any, rule: Rule) -> Row: ...
    async def delete(self, conn: Any, rule_id: str) -> None: ...


class PgRuleRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_tenant(self, tenant: str) -> list[Row]:
        pool = await self._db.pool()
        return list(await pool.fetch(f"{_SELECT} WHERE tenant_id = $1 ORDER BY name", tenant))

    async def get(self, tenant: str, rule_id: str) -> Row | None:
        pool = await self._db.pool()
        row: Row | None = await pool.fetchrow(
            f"{_SELECT} WHERE id = $1 AND tenant_id = $2", rule_id, tenant
        )
        return row

    async def insert(self, conn: Any, rule: Rule, source: str) -> Row:
        try:
            row: Row = await conn.fetchrow(
                f"""INSERT INTO alert_rules (id, tenant_id, name, spec, enabled, source)
                    VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}""",
                *_values(rule, source),
            )
        except asyncpg.UniqueViolationError as exc:
            raise NameTaken(rule.name) from exc
        return row

    async def update(self, conn: Any, rule: Rule) -> Row:
        try:
            row: Row = await conn.fetchrow(
                f"""UPDATE alert_rules SET name = $2, spec = $3, enabled = $4, updated_at = now()
                    WHERE id = $1 RETURNING {_COLUMNS}""",
                rule.id,
                rule.name,
                dumps(stored_doc(rule)),
                rule.enabled,
            )
        except asyncpg.UniqueViolationError as exc:
            raise NameTaken(rule.name) from exc
        return row

    async def delete(self, conn: Any, rule_id: str) -> None:
        await conn.execute("DELETE FROM alert_rules WHERE id = $1", rule_id)

    async def activity(self, tenant: str) -> list[Row]:
        """id, name, enabled, severity, alerts (by state), last_transition_at."""
        pool = await self._db.pool()
        return list(await pool.fetch(_ACTIVITY, tenant))


def rule_from_row(row: Row) -> Rule:
    doc = dict(loads(row["spec"]))
    doc["enabled"] = row["enabled"]
    return rule_from_doc(doc, tenant=row["tenant_id"], rule_id=str(row["id"]))


async def load_rules(conn: Conn) -> list[Rule]:
    """Every readable rule of every tenant (the engine's start)."""
    rows = await conn.fetch("SELECT id, tenant_id, spec, enabled FROM alert_rules")
    rules = []
    for row in rows:
        try:
            rules.append(rule_from_row(row))
        except RuleError:  # stored by an older version with other rules: skip, don't crash
            continue
    return rules


async def upsert_rule(conn: Conn, rule: Rule, source: str = "api") -> str:
    """Insert or replace (by tenant + name for file rules); returns the stored id."""
    row = await conn.fetchrow(
        """INSERT INTO alert_rules (id, tenant_id, name, spec, enabled, source)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, name) DO UPDATE SET spec = EXCLUDED.spec,
               enabled = EXCLUDED.enabled, source = EXCLUDED.source, updated_at = now()
           RETURNING id""",
        *_values(rule, source),
    )
    return str(row["id"])
