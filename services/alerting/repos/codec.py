"""jsonb in and out of Postgres, and the row type repositories hand back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# A row by column name: an asyncpg Record, or a dict from an in-memory fake.
Row = Mapping[str, Any]


def dumps(value: Any) -> str:
    """A jsonb parameter. The pool is shared with the notify package, so no type codec is
    installed on it: jsonb goes in and comes out as text."""
    return orjson.dumps(value).decode()


def loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class NameTaken(Exception):
    """A name unique per tenant (rule, channel) is used already."""
