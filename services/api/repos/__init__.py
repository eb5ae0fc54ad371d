"""Repositories of the api service: the only modules that hold the SQL of its tenants,
keys and emails.

One module per aggregate, each with a `typing.Protocol` (what the services and route
handlers need) and its Postgres implementation, built on a connection or a pool
(`Conn`): the routes pass the app's pool, the command line its one connection. The
service-layer tests pass in-memory fakes of the same Protocols
(tests/api/test_api_repos_fakes.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg

# What a Postgres repository runs on: the app's pool or one connection.
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


@asynccontextmanager
async def transaction(conn: Conn) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `conn` (a connection of the pool, if it is one)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as one, one.transaction():
            yield one
    else:
        async with conn.transaction():
            yield conn
