"""Postgres persistence of the engine, kept as the import path evaluator.py, app.py,
__main__.py, outbox.py and the tests use: the SQL lives in the repositories
(services/alerting/repos/), this module only re-exports it."""

from __future__ import annotations

from services.alerting.repos.channels import upsert_channel
from services.alerting.repos.codec import dumps, loads
from services.alerting.repos.evaluation import (
    INSERT_ITEM,
    INSERT_TRANSITION,
    UPSERT_ALERT,
    OutboxItem,
    alert_from_row,
    load_alerts,
    save_evaluation,
)
from services.alerting.repos.rules import load_rules, rule_from_row, upsert_rule
from services.alerting.repos.silences import active_silences

__all__ = [
    "INSERT_ITEM",
    "INSERT_TRANSITION",
    "UPSERT_ALERT",
    "OutboxItem",
    "active_silences",
    "alert_from_row",
    "dumps",
    "load_alerts",
    "load_rules",
    "loads",
    "rule_from_row",
    "save_evaluation",
    "upsert_channel",
    "upsert_rule",
]
