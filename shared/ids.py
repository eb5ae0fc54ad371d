"""Identifiers: UUIDv7 event ids (time-ordered, so inserts stay index-friendly) and the
documented patterns for tenant and email ids."""

from __future__ import annotations

import re

import uuid_utils

# Tenant ids: lowercase letters, digits, '_' and '-', starting with a letter or digit, <= 63.
TENANT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Email ids: letters, digits, '_' and '-', 1..64 (UUIDs, ULIDs and Little Bell ids fit).
EMAIL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_event_id() -> str:
    return str(uuid_utils.uuid7())


def valid_tenant(value: str) -> bool:
    return TENANT_ID_RE.fullmatch(value) is not None


def valid_email_id(value: str) -> bool:
    return EMAIL_ID_RE.fullmatch(value) is not None
