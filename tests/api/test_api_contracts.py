"""The api's request contracts (services/api/contracts.py) refuse what the hand-written
checks refused, with the same `{"error", "fields"}` answers, every field's problem at
once; and the answers encode as the routes answered before."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from aiohttp import web

from services.api import privacy
from services.api.contracts import EmailCreated, Error, Settings
from services.api.emails import email_input
from services.api.http import json_response


def refusal(body: Any) -> dict[str, Any]:
    with pytest.raises(web.HTTPBadRequest) as caught:
        email_input(body)
    assert caught.value.text is not None
    doc: dict[str, Any] = orjson.loads(caught.value.text)
    msgspec.convert(doc, Error)  # the documented shape
    return doc


def test_an_email_body_is_optional_and_other_fields_are_ignored() -> None:
    assert email_input(None).links == []
    given = email_input({"subject": "Hi", "recipient": None, "list_id": 7})
    assert (given.subject, given.recipient) == ("Hi", None)


def test_every_field_of_an_email_is_reported_at_once() -> None:
    doc = refusal({"subject": 42, "recipient": "x" * 321, "links": "https://x.test/"})
    assert doc["error"] == "invalid email"
    assert doc["fields"] == {
        "subject": "must be a string of at most 998 characters",
        "recipient": "must be a string of at most 320 characters",
        "links": "must be a list of at most 100 URLs",
    }
    doc = refusal({"links": ["https://ok.test/", 5, "javascript:alert(1)"]})
    assert doc["fields"] == {
        "links[1]": "must be a string",
        "links[2]": "url must be http or https",
    }
    # A link's problem is named beside the other fields' (as the hand-written check did).
    doc = refusal({"subject": [], "links": [None]})
    assert doc["fields"] == {
        "subject": "must be a string of at most 998 characters",
        "links[0]": "must be a string",
    }
    assert refusal([1, 2]) == {"error": "body must be a JSON object"}
    assert "links" in refusal({"links": ["https://x.test/"] * 101})["fields"]


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"ip_mode": "hashed"}, "ip_mode"),
        ({"respect_dnt": "yes"}, "respect_dnt"),
        ({"retention_months": 0}, "retention_months"),
        ({"retention_months": 6.5}, "retention_months"),
        ({"retention_months": True}, "retention_months"),
        ({"retention_months": 121}, "retention_months"),
        ({"colour": "red"}, "colour"),
        ([], "body"),
    ],
)
def test_a_settings_update_is_checked_field_by_field(update: Any, field: str) -> None:
    with pytest.raises(privacy.SettingsInvalid) as caught:
        privacy.validate_update(update)
    assert field in caught.value.fields


def test_settings_messages_name_what_is_allowed() -> None:
    with pytest.raises(privacy.SettingsInvalid) as caught:
        privacy.validate_update({"colour": "red", "ip_mode": 1})
    assert caught.value.fields == {
        "colour": "unknown setting (known: ip_mode, respect_dnt, retention_months)",
        "ip_mode": "must be one of full, truncated, none",
    }
    assert privacy.validate_update({"retention_months": None}) == {"retention_months": None}
    assert privacy.validate_update({}) == {}


def test_answers_encode_as_plain_json() -> None:
    created = EmailCreated("e" * 22, "http://t/p.gif", "/a/click-url/e?url=", "2026-01-01T00:00:00")
    body = json_response(created, status=201).body
    assert isinstance(body, bytes)
    assert orjson.loads(body) == {
        "email_id": "e" * 22,
        "tracking_pixel_url": "http://t/p.gif",
        "click_url_endpoint": "/a/click-url/e?url=",
        "created_at": "2026-01-01T00:00:00",
    }
    settings = json_response(Settings("none", False, 12)).body
    assert isinstance(settings, bytes)
    assert orjson.loads(settings) == {
        "ip_mode": "none",
        "respect_dnt": False,
        "retention_months": 12,
    }
