"""The api's service layer (services/api/emails.py, privacy.py, tenants.py) on in-memory
fakes of the repository Protocols (services/api/repos/): no database, no HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from services.api import emails, privacy, tenants
from services.api.contracts import EmailInput, Settings
from services.api.repos.emails import EmailRepo, EmailRow
from services.api.repos.keys import KeyRepo
from services.api.repos.tenants import Document, TenantRepo, TenantRow
from shared.auth import KeyInfo
from shared.signing import SigningKeys, verify_click

T0 = datetime(2026, 3, 1, tzinfo=UTC)
LINKS = emails.Links("http://t.test", SigningKeys.parse("k1:fake-secret-0123456789"))


@dataclass
class FakeEmails:
    rows: dict[tuple[str, str], EmailRow] = field(default_factory=dict)
    clock: list[datetime] = field(default_factory=lambda: [T0])

    async def create(
        self, tenant: str, email_id: str, subject: str | None, recipient: str | None
    ) -> datetime:
        self.clock[0] += timedelta(seconds=1)
        self.rows[tenant, email_id] = EmailRow(email_id, subject, recipient, self.clock[0])
        return self.clock[0]

    async def get(self, tenant: str, email_id: str) -> EmailRow | None:
        return self.rows.get((tenant, email_id))

    async def page(self, tenant: str, before: datetime | None, limit: int) -> list[EmailRow]:
        mine = [r for (t, _), r in self.rows.items() if t == tenant]
        mine = [r for r in mine if before is None or r.created_at < before]
        return sorted(mine, key=lambda r: (-r.created_at.timestamp(), r.id))[:limit]


@dataclass
class FakeTenants:
    rows: dict[str, TenantRow] = field(default_factory=dict)
    keys: FakeKeys | None = None

    async def create(self, tenant: str, name: str, key_label: str) -> str | None:
        if tenant in self.rows:
            return None
        self.rows[tenant] = TenantRow(tenant, name, T0, {}, 1, 0)
        return await (self.keys or FakeKeys()).create(tenant, key_label)

    async def exists(self, tenant: str) -> bool:
        return tenant in self.rows

    async def all(self) -> list[TenantRow]:
        return [self.rows[t] for t in sorted(self.rows)]

    async def settings(self, tenant: str) -> Document | None:
        row = self.rows.get(tenant)
        return None if row is None else dict(row.settings)

    async def all_settings(self) -> dict[str, Document]:
        return {t: dict(row.settings) for t, row in sorted(self.rows.items())}

    async def change_settings(
        self, tenant: str, change: Callable[[Document], Document]
    ) -> Document | None:
        row = self.rows.get(tenant)
        if row is None:
            return None
        self.rows[tenant] = replace(row, settings=change(dict(row.settings)))
        return dict(self.rows[tenant].settings)


@dataclass
class FakeKeys:
    infos: dict[str, KeyInfo] = field(default_factory=dict)

    async def create(self, tenant: str, label: str) -> str:
        key_id = f"{len(self.infos):012x}"
        self.infos[key_id] = KeyInfo(key_id, tenant, label, T0, None)
        return f"blf_{key_id}_{'s' * 40}"

    async def of_tenant(self, tenant: str | None) -> list[KeyInfo]:
        return [k for k in self.infos.values() if tenant in (None, k.tenant_id)]

    async def revoke(self, key_id: str) -> bool:
        info = self.infos.get(key_id)
        if info is None or info.revoked_at is not None:
            return False
        self.infos[key_id] = replace(info, revoked_at=T0)
        return True

    async def tenant_of(self, key: str) -> str | None:
        info = self.infos.get(key[4:16])
        return info.tenant_id if info and info.revoked_at is None else None


# The fakes are what the Protocols say (mypy checks these assignments).
_EMAILS: EmailRepo = FakeEmails()
_TENANTS: TenantRepo = FakeTenants()
_KEYS: KeyRepo = FakeKeys()


async def test_register_signs_each_link_and_stores_the_email() -> None:
    repo = FakeEmails()
    given = EmailInput(subject="Hi", links=["https://example.com/a"])
    answer = await emails.register(repo, LINKS, "acme", given, new_id=lambda: "e" * 22)
    assert answer.email_id == "e" * 22
    assert answer.tracking_pixel_url == "http://t.test/acme/pixel/" + "e" * 22 + ".gif"
    assert answer.click_url_endpoint == f"/acme/click-url/{'e' * 22}?url="
    signed = answer.click_urls["https://example.com/a"]  # type: ignore[index]
    sig = signed.rsplit("sig=", 1)[1]
    assert verify_click(LINKS.signing, "acme", "e" * 22, "https://example.com/a", sig)
    assert repo.rows["acme", "e" * 22].subject == "Hi"
    plain = await emails.register(repo, LINKS, "acme", EmailInput(), new_id=lambda: "f" * 22)
    assert "click_urls" not in emails_json(plain)  # only when links were given


def emails_json(value: Any) -> dict[str, Any]:
    return dict(msgspec.to_builtins(value))


async def test_emails_are_one_tenants_and_page_newest_first() -> None:
    repo = FakeEmails()
    for name in ("a0", "a1", "a2"):
        await emails.register(repo, LINKS, "acme", EmailInput(), new_id=lambda: name)  # noqa: B023
    await emails.register(repo, LINKS, "rival", EmailInput(), new_id=lambda: "r0")
    first = await emails.page(repo, "acme", None, 2)
    assert [e.email_id for e in first.emails] == ["a2", "a1"]
    before = datetime.fromisoformat(first.emails[-1].created_at)
    assert [e.email_id for e in (await emails.page(repo, "acme", before, 2)).emails] == ["a0"]
    assert await emails.detail(repo, LINKS, "acme", "r0") is None  # another tenant's
    one = await emails.detail(repo, LINKS, "acme", "a1")
    assert one is not None and one.stats_url == "/acme/stats?email_id=a1"
    assert await emails.signed_click(repo, LINKS, "rival", "a1", "https://x.test/") is None
    click = await emails.signed_click(repo, LINKS, "acme", "a1", "https://x.test/")
    assert click is not None and click.original_url == "https://x.test/"


async def test_settings_change_merges_over_the_stored_document() -> None:
    repo = FakeTenants()
    await tenants.new_tenant(repo, "acme", "Acme")
    assert await privacy.settings_of(repo, "acme") == Settings("full", True, None)
    update = privacy.validate_update({"retention_months": 6.0})
    assert update == {"retention_months": 6}  # a whole number written as a float
    after = await privacy.change(repo, "acme", update)
    assert after == Settings("full", True, 6)
    assert repo.rows["acme"].settings == {"retention_months": 6}  # only what was set
    assert await privacy.change(repo, "nobody", update) is None


async def test_tenant_and_key_rules() -> None:
    keys = FakeKeys()
    repo = FakeTenants(keys=keys)
    key = await tenants.new_tenant(repo, "acme", "Acme")
    assert await keys.tenant_of(key) == "acme"
    with pytest.raises(tenants.TenantError, match="exists already"):
        await tenants.new_tenant(repo, "acme")
    with pytest.raises(tenants.TenantError, match="no tenant"):
        await tenants.new_key(repo, keys, "nobody", "")
    second = await tenants.new_key(repo, keys, "acme", "ci")
    listed = await tenants.list_keys(keys, "acme")
    assert [k["label"] for k in listed] == ["created with the tenant", "ci"]
    await tenants.revoke_key(keys, second[4:16])
    assert await keys.tenant_of(second) is None
    with pytest.raises(tenants.TenantError, match="no live key"):
        await tenants.revoke_key(keys, second[4:16])
    (doc,) = await tenants.list_tenants(repo)
    assert doc["settings"] == privacy.DEFAULTS and doc["id"] == "acme"
