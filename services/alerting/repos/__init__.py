"""Repositories of the alerting service: the only modules that hold its SQL.

One module per aggregate (rules, alerts, silences, channels, notifications), each with a
`typing.Protocol` (what the route handlers and their service functions need) and its
Postgres implementation. Handlers build the Postgres ones from the app's `Database`
(`rule_repo(app)` ...); service-layer tests pass in-memory fakes of the same Protocols
(tests/alerting/test_repos_fakes.py).

Rows cross the boundary as read-only mappings (an asyncpg Record, or a dict in a fake),
keyed by column name.
"""

from __future__ import annotations

from services.alerting.repos.codec import Row, dumps, loads

__all__ = ["Row", "dumps", "loads"]
