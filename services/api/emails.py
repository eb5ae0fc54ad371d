"""The email service behind the Little Bell-compatible routes (services/api/routes/
emails.py): register an email (and sign its links), read one, page through a tenant's,
sign a click link for one. It works on an `EmailRepo` (services/api/repos/emails.py) and
answers contract types (services/api/contracts.py).

Email ids are 128-bit random (`secrets.token_urlsafe(16)`): not guessable, not enumerable.
`created_at` is set at registration: the writer's classifier reads it ("a click within
seconds of registration is a scanner").
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.api.contracts import (
    MAX_LINKS,
    MAX_RECIPIENT,
    MAX_SUBJECT,
    ClickUrl,
    Email,
    EmailCreated,
    EmailDetail,
    EmailInput,
    Emails,
)
from services.api.http import bad_request
from services.api.links import click_url, pixel_url
from services.api.repos.emails import EmailRepo, EmailRow
from shared.decoding import field_values
from shared.signing import SigningKeys, target_problem

MESSAGES = {
    "subject": f"must be a string of at most {MAX_SUBJECT} characters",
    "recipient": f"must be a string of at most {MAX_RECIPIENT} characters",
    "links": f"must be a list of at most {MAX_LINKS} URLs",
}


def new_email_id() -> str:
    return secrets.token_urlsafe(16)  # 22 chars of [A-Za-z0-9_-]: shared.ids accepts it


@dataclass(frozen=True, slots=True)
class Links:
    """Where the tracking host serves pixels and clicks, and the keys that sign clicks."""

    public_url: str
    signing: SigningKeys

    def pixel(self, tenant: str, email_id: str) -> str:
        return pixel_url(self.public_url, tenant, email_id)

    def click(self, tenant: str, email_id: str, url: str) -> str:
        return click_url(self.public_url, self.signing, tenant, email_id, url)


def email_input(body: Any) -> EmailInput:
    """The body of `POST /{tenant}/emails` (None: no body), checked; a 400 naming every
    field's problem otherwise, each link's as `links[i]`."""
    doc = {} if body is None else body
    if not isinstance(doc, Mapping):
        raise bad_request("body must be a JSON object")
    given, errors = field_values(EmailInput, doc, MESSAGES)
    for index, link in enumerate(given.get("links", ())):
        problem = "must be a string" if not isinstance(link, str) else target_problem(link)
        if problem:
            errors[f"links[{index}]"] = problem
    if errors:
        raise bad_request("invalid email", errors)
    return EmailInput(**given)


async def register(
    repo: EmailRepo,
    links: Links,
    tenant: str,
    email: EmailInput,
    new_id: Callable[[], str] = new_email_id,
) -> EmailCreated:
    """Store the email; its pixel URL, and a signed click URL per link given."""
    email_id = new_id()
    created = await repo.create(tenant, email_id, email.subject, email.recipient)
    answer = EmailCreated(
        email_id=email_id,
        tracking_pixel_url=links.pixel(tenant, email_id),
        click_url_endpoint=f"/{tenant}/click-url/{email_id}?url=",
        created_at=created.isoformat(),
    )
    if email.links:
        answer.click_urls = {link: links.click(tenant, email_id, link) for link in email.links}
    return answer


def _email(row: EmailRow) -> Email:
    return Email(row.id, row.subject, row.recipient, row.created_at.isoformat())


async def detail(repo: EmailRepo, links: Links, tenant: str, email_id: str) -> EmailDetail | None:
    row = await repo.get(tenant, email_id)
    if row is None:
        return None
    return EmailDetail(
        **{f: getattr(_email(row), f) for f in Email.__struct_fields__},
        tracking_pixel_url=links.pixel(tenant, row.id),
        stats_url=f"/{tenant}/stats?email_id={row.id}",
    )


async def page(repo: EmailRepo, tenant: str, before: datetime | None, limit: int) -> Emails:
    """Newest first; `before` (the `created_at` of the last one seen) pages on."""
    return Emails([_email(row) for row in await repo.page(tenant, before, limit)])


async def signed_click(
    repo: EmailRepo, links: Links, tenant: str, email_id: str, url: str
) -> ClickUrl | None:
    """A signed click link to `url` (a checked target) for a registered email, or None."""
    row = await repo.get(tenant, email_id)
    if row is None:
        return None
    return ClickUrl(click_url=links.click(tenant, row.id, url), original_url=url)
