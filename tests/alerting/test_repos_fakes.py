"""The rules and silences service functions (services/alerting/routes/rules.py,
silences.py) on in-memory fakes of their repository Protocols (services/alerting/repos/):
validation, tenancy, 404/409 and what is stored, without Postgres or a broker."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web

from services.alerting.contracts import StoredMatcher
from services.alerting.repos.channels import ChannelRepo
from services.alerting.repos.codec import NameTaken, Row
from services.alerting.repos.rules import RuleRepo
from services.alerting.repos.silences import SilenceRepo, SilenceSpec
from services.alerting.routes import rules as rules_service
from services.alerting.routes import silences as silences_service
from services.alerting.rules.model import Rule
from services.alerting.rules.validate import stored_doc

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeRules:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def of_tenant(self, tenant: str) -> list[Row]:
        return sorted((r for r in self.rows.values() if r["tenant_id"] == tenant), key=_name)

    async def get(self, tenant: str, rule_id: str) -> Row | None:
        row = self.rows.get(rule_id)
        return row if row is not None and row["tenant_id"] == tenant else None

    async def insert(self, conn: Any, rule: Rule, source: str) -> Row:
        self._unique(rule)
        self.rows[rule.id] = {
            "id": rule.id,
            "tenant_id": rule.tenant,
            "spec": stored_doc(rule),
            "enabled": rule.enabled,
            "source": source,
            "created_at": NOW,
            "updated_at": NOW,
        }
        return self.rows[rule.id]

    async def update(self, conn: Any, rule: Rule) -> Row:
        self._unique(rule)
        row = self.rows[rule.id]
        row.update(spec=stored_doc(rule), enabled=rule.enabled)
        return row

    async def delete(self, conn: Any, rule_id: str) -> None:
        del self.rows[rule_id]

    def _unique(self, rule: Rule) -> None:
        for row in self.rows.values():
            same = (row["tenant_id"], row["spec"]["name"]) == (rule.tenant, rule.name)
            if same and row["id"] != rule.id:
                raise NameTaken(rule.name)


def _name(row: Row) -> str:
    return str(row["spec"]["name"])


@dataclass
class FakeChannels:
    names: set[tuple[str, str]] = field(default_factory=set)

    async def existing(self, tenant: str, names: Sequence[str]) -> set[str]:
        return {n for n in names if (tenant, n) in self.names}

    # The rest of ChannelRepo is not used by the rules service.
    async def of_tenant(self, tenant: str) -> list[Row]:
        raise NotImplementedError

    async def get(self, tenant: str, name: str) -> Row | None:
        raise NotImplementedError

    async def create(self, tenant: str, name: str, kind: str, config: Any, enabled: bool) -> Row:
        raise NotImplementedError

    async def replace(self, tenant: str, name: str, kind: str, config: Any, enabled: bool) -> Row:
        raise NotImplementedError

    async def delete(self, tenant: str, name: str) -> bool:
        raise NotImplementedError


@dataclass
class FakeEngine:
    """Records each change and runs its write, as AlertEngine.change_rule does."""

    changes: list[tuple[str, Rule | None]] = field(default_factory=list)

    async def change_rule(
        self, rule_id: str, new: Rule | None, write: Callable[[Any], Awaitable[Any]], actor: str
    ) -> Any:
        self.changes.append((rule_id, new))
        return await write(None)


@dataclass
class FakeSilences:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def of_tenant(self, tenant: str, active_at: datetime | None) -> list[Row]:
        return [
            r
            for r in self.rows.values()
            if r["tenant_id"] == tenant
            and (active_at is None or r["starts_at"] <= active_at < r["ends_at"])
        ]

    async def get(self, tenant: str, silence_id: str) -> Row | None:
        row = self.rows.get(silence_id)
        return row if row is not None and row["tenant_id"] == tenant else None

    async def create(self, tenant: str, spec: SilenceSpec) -> Row:
        silence_id = str(uuid.uuid4())
        self.rows[silence_id] = {"id": silence_id, "tenant_id": tenant, **_columns(spec)}
        return self.rows[silence_id]

    async def replace(self, tenant: str, silence_id: str, spec: SilenceSpec) -> Row | None:
        row = await self.get(tenant, silence_id)
        if row is None:
            return None
        self.rows[silence_id].update(_columns(spec))
        return self.rows[silence_id]

    async def delete(self, tenant: str, silence_id: str) -> bool:
        if await self.get(tenant, silence_id) is None:
            return False
        del self.rows[silence_id]
        return True


def _columns(spec: SilenceSpec) -> dict[str, Any]:
    return {
        "matchers": spec.matchers,
        "starts_at": spec.starts_at,
        "ends_at": spec.ends_at,
        "author": spec.author,
        "comment": spec.comment,
        "created_at": NOW,
        "updated_at": NOW,
    }


def refusal(exc: pytest.ExceptionInfo[web.HTTPException]) -> tuple[int, Any]:
    return exc.value.status, orjson.loads(exc.value.text or "{}")


# The fakes are what the handlers' Postgres repositories promise.
_RULES: RuleRepo = FakeRules()
_CHANNELS: ChannelRepo = FakeChannels()
_SILENCES: SilenceRepo = FakeSilences()


async def test_a_rule_is_created_listed_replaced_and_deleted_through_the_engine() -> None:
    rules, channels, engine = FakeRules(), FakeChannels({("acme", "ops")}), FakeEngine()
    body = {"name": "lat", "condition": "latency > 1 for 1m", "channels": ["ops"], "id": "x"}
    made = await rules_service.create(rules, channels, engine, "acme", body)
    assert made.name == "lat" and made.source == "api" and made.id != "x"
    assert [r["id"] for r in await rules.of_tenant("acme")] == [made.id]
    assert await rules.of_tenant("globex") == []
    changed = await rules_service.replace(
        rules, channels, engine, "acme", made.id, {"name": "lat2", "condition": "latency > 2"}
    )
    assert (changed.name, changed.threshold) == ("lat2", 2.0)
    await rules_service.remove(rules, engine, "acme", made.id)
    assert rules.rows == {}
    assert [(rid, new.name if new else None) for rid, new in engine.changes] == [
        (made.id, "lat"),
        (made.id, "lat2"),
        (made.id, None),
    ]


async def test_a_rule_naming_a_missing_channel_or_with_bad_fields_is_a_400() -> None:
    rules, engine = FakeRules(), FakeEngine()
    with pytest.raises(web.HTTPBadRequest) as bad:
        await rules_service.create(
            rules,
            FakeChannels(),
            engine,
            "acme",
            {"name": "r", "condition": "x > 1", "channels": ["ghost"]},
        )
    assert refusal(bad) == (
        400,
        {"error": "invalid rule", "fields": {"channels.0": "no channel named 'ghost'"}},
    )
    with pytest.raises(web.HTTPBadRequest) as bad:
        await rules_service.create(
            rules, FakeChannels(), engine, "acme", {"condition": "x >", "severity": "loud"}
        )
    assert set(refusal(bad)[1]["fields"]) == {"name", "condition", "severity"}
    assert rules.rows == {} and engine.changes == []


async def test_a_rule_name_used_twice_is_a_409_and_another_tenants_rule_a_404() -> None:
    rules, channels, engine = FakeRules(), FakeChannels(), FakeEngine()
    made = await rules_service.create(
        rules, channels, engine, "acme", {"name": "r", "condition": "x > 1"}
    )
    with pytest.raises(web.HTTPConflict) as taken:
        await rules_service.create(
            rules, channels, engine, "acme", {"name": "r", "condition": "x > 2"}
        )
    assert refusal(taken)[1]["fields"] == {"name": "already used by another rule"}
    for raw in (made.id, "not-a-uuid", str(uuid.uuid4())):
        with pytest.raises(web.HTTPNotFound):
            await rules_service.fetch(rules, "globex" if raw == made.id else "acme", raw)


async def test_a_silence_is_created_listed_replaced_and_deleted() -> None:
    repo = FakeSilences()
    body = {"matchers": {"alertname": "lat"}, "duration": "1h", "author": " alice "}
    made = await silences_service.create(repo, "acme", body, NOW)
    assert made.state == "active" and made.author == "alice"
    assert made.matchers == [StoredMatcher("alertname", "=", "lat")]
    assert made.ends_at == (NOW + timedelta(hours=1)).isoformat()
    assert len(await repo.of_tenant("acme", NOW)) == 1
    assert await repo.of_tenant("acme", NOW + timedelta(hours=2)) == []
    later = {**body, "starts_at": "2026-02-01T00:00:00Z"}
    replaced = await silences_service.replace(repo, "acme", made.id, later, NOW)
    assert replaced.state == "pending"
    with pytest.raises(web.HTTPNotFound):
        await silences_service.fetch(repo, "globex", made.id, NOW)
    await silences_service.remove(repo, "acme", made.id)
    with pytest.raises(web.HTTPNotFound):
        await silences_service.remove(repo, "acme", made.id)


async def test_a_silence_reports_every_bad_field_at_once() -> None:
    repo = FakeSilences()
    with pytest.raises(web.HTTPBadRequest) as bad:
        await silences_service.create(repo, "acme", {"matchers": [], "duration": "soon"}, NOW)
    status, body = refusal(bad)
    assert (status, body["error"]) == (400, "invalid silence")
    assert set(body["fields"]) == {"matchers", "duration", "author"}
    with pytest.raises(web.HTTPBadRequest) as bad:
        await silences_service.create(
            repo,
            "acme",
            {"matchers": {"a": "b"}, "ends_at": "2025-01-01T00:00:00Z", "author": "a", "x": 1},
            NOW,
        )
    assert refusal(bad)[1]["fields"] == {
        "x": "unknown field",
        "ends_at": "must be after starts_at",
    }
    assert repo.rows == {}
