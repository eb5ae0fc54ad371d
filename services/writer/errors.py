"""What the writer makes of an exception: a refusal of the data (split the batch and
dead-letter the one event), or the database being away (keep the batch, back off), and
how to log it."""

from __future__ import annotations

import asyncpg

from shared import failures

# Postgres refusing the rows themselves: a value it can't take (class 22), a constraint
# (23), a value past a limit (54); asyncpg reports a Python value it can't encode as a
# DataError too. Errors raised in Python while building the rows are about the data as
# well. Anything else (connection lost, server shutting down, disk full, a missing
# table) may pass: the batch is kept and retried.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
    ValueError,
    TypeError,
    LookupError,
    ArithmeticError,
)


def is_data_error(exc: BaseException) -> bool:
    """True when retrying the same rows can only fail the same way."""
    return isinstance(exc, _DATA_ERRORS)


def error_text(exc: BaseException, limit: int = 300) -> str:
    """`shared.failures.error_text` (never empty) cut to `limit` characters."""
    return failures.error_text(exc)[:limit]
