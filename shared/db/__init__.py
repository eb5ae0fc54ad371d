"""Postgres access: the connection pool and forward-only SQL migrations."""

from shared.db.migrate import apply_migrations, ensure_database
from shared.db.pool import UNAVAILABLE, Database

__all__ = ["UNAVAILABLE", "Database", "apply_migrations", "ensure_database"]
