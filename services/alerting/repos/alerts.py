"""Alerts (`alerts`, `alert_transitions`, `alert_outbox_items`): the engine's evaluation
writes and its load, and the API's reads (list with filters, one alert, its history,
statistics, the activity view's per-rule figures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.alerting.repos.codec import Row, dumps
from shared.db import Database

_SELECT = """
SELECT a.fingerprint, a.rule_id, r.name AS rule_name, r.spec, a.labels, a.state, a.severity,
       a.value, a.no_data, a.pending_since, a.fired_at, a.resolved_at, a.last_notified_at,
       a.announced, a.acknowledged_by, a.acknowledged_at, a.silence_id, a.annotations,
       a.created_at, a.updated_at
FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
"""
_HISTORY = "SELECT from_state, to_state, at, value, reason, actor FROM alert_transitions"
# Mean resolved -> next firing of one alert, over the firings in [$2, $3].
_MTBF = """
SELECT avg(extract(epoch FROM at - prev_resolved)) FROM (
    SELECT at, to_state, from_state,
           max(at) FILTER (WHERE to_state = 'resolved')
               OVER (PARTITION BY fingerprint ORDER BY id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_resolved
    FROM alert_transitions WHERE tenant_id = $1 AND at <= $3
) t
WHERE at >= $2 AND to_state IN ('firing', 'silenced')
  AND from_state IN ('pending', 'inactive', 'resolved') AND prev_resolved IS NOT NULL
"""
# Mean firing -> resolved of the episodes resolved in [$2, $3].
_MTTR = """
SELECT avg(extract(epoch FROM at - fired_at)) FROM alert_transitions
WHERE tenant_id = $1 AND at >= $2 AND at <= $3 AND to_state = 'resolved'
  AND fired_at IS NOT NULL
"""
# Episodes that began in the range: a transition into firing (or silenced, its quiet
# twin) from a state that is not itself part of an episode.
_FIRED = """
SELECT a.severity, count(*) AS n FROM alert_transitions t JOIN alerts a USING (fingerprint)
WHERE t.tenant_id = $1 AND t.at >= $2 AND t.at <= $3 AND t.to_state IN ('firing', 'silenced')
  AND t.from_state IN ('pending', 'inactive', 'resolved')
GROUP BY 1
"""


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """The list's filters, all of which must hold (empty: any)."""

    states: Sequence[str] = ()
    severities: Sequence[str] = ()
    rule: str | None = None  # a rule name, or its id
    rule_id: str | None = None  # `rule` as a UUID, when it is one
    alertnames: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)


class AlertRepo(Protocol):
    async def search(self, tenant: str, where: AlertFilter, limit: int) -> list[Row]: ...
    async def get(self, tenant: str, fingerprint: str) -> Row | None: ...
    async def history(self, tenant: str, fingerprint: str, limit: int | None) -> list[Row]: ...


class PgAlertRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(self, tenant: str, where: AlertFilter, limit: int) -> list[Row]:
        clauses, args = _where(tenant, where)
        pool = await self._db.pool()
        return list(
            await pool.fetch(
                f"{_SELECT} WHERE {' AND '.join(clauses)}"
                f" ORDER BY a.updated_at DESC, a.fingerprint LIMIT {int(limit)}",
                *args,
            )
        )

    async def get(self, tenant: str, fingerprint: str) -> Row | None:
        pool = await self._db.pool()
        row: Row | None = await pool.fetchrow(
            f"{_SELECT} WHERE a.fingerprint = $1 AND a.tenant_id = $2", fingerprint, tenant
        )
        return row

    async def history(self, tenant: str, fingerprint: str, limit: int | None) -> list[Row]:
        """Transitions oldest first; with `limit`, the latest `limit` of them."""
        pool = await self._db.pool()
        if limit is None:
            rows = await pool.fetch(
                f"{_HISTORY} WHERE fingerprint = $1 AND tenant_id = $2 ORDER BY id",
                fingerprint,
                tenant,
            )
            return list(rows)
        rows = await pool.fetch(
            f"{_HISTORY} WHERE fingerprint = $1 AND tenant_id = $2 ORDER BY id DESC LIMIT $3",
            *(fingerprint, tenant, limit),
        )
        return list(reversed(rows))


def _where(tenant: str, where: AlertFilter) -> tuple[list[str], list[Any]]:
    clauses, args = ["a.tenant_id = $1"], [tenant]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.states:
        clauses.append(f"a.state = ANY({arg(list(where.states))}::text[])")
    if where.severities:
        clauses.append(f"a.severity = ANY({arg(list(where.severities))}::text[])")
    if where.rule:
        by_id = f" OR r.id = {arg(where.rule_id)}::uuid" if where.rule_id else ""
        clauses.append(f"(r.name = {arg(where.rule)}{by_id})")
    for name in where.alertnames:
        clauses.append(f"r.name = {arg(name)}")
    if where.labels:
        clauses.append(f"a.labels @> {arg(dumps(where.labels))}::jsonb")
    return clauses, args


class PgAlertStats:
    """The statistics and activity views' aggregates over alerts and transitions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def by_state_and_severity(self, tenant: str) -> list[Row]:
        """(state, severity, n) now."""
        pool = await self._db.pool()
        return list(
            await pool.fetch(
                "SELECT state, severity, count(*) AS n FROM alerts WHERE tenant_id = $1"
                " GROUP BY state, severity ORDER BY state, severity",
                tenant,
            )
        )

    async def transitions_by_state(
        self, tenant: str, since: datetime, until: datetime
    ) -> dict[str, int]:
        pool = await self._db.pool()
        rows = await pool.fetch(
            "SELECT to_state, count(*) AS n FROM alert_transitions"
            " WHERE tenant_id = $1 AND at >= $2 AND at <= $3 GROUP BY to_state",
            *(tenant, since, until),
        )
        return {r["to_state"]: r["n"] for r in rows}

    async def mttr_mtbf(
        self, tenant: str, since: datetime, until: datetime
    ) -> tuple[float | None, float | None]:
        pool = await self._db.pool()
        mttr = await pool.fetchval(_MTTR, tenant, since, until)
        mtbf = await pool.fetchval(_MTBF, tenant, since, until)
        return (None if mttr is None else float(mttr), None if mtbf is None else float(mtbf))

    async def fired_by_severity(
        self, tenant: str, since: datetime, until: datetime
    ) -> dict[str, int]:
        pool = await self._db.pool()
        rows = await pool.fetch(_FIRED, tenant, since, until)
        return {r["severity"]: r["n"] for r in rows}

    async def exists(self, tenant: str, fingerprint: str) -> bool:
        pool = await self._db.pool()
        found = await pool.fetchval(
            "SELECT 1 FROM alerts WHERE fingerprint = $1 AND tenant_id = $2", fingerprint, tenant
        )
        return found is not None
