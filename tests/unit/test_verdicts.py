"""Each request-only machine-open rule, one by one (services/writer/verdicts.py), and the
privacy settings applied after it (services/writer/privacy.py)."""

from __future__ import annotations

from typing import Any

import pytest

from services.writer.privacy import Privacy, TenantPrivacy
from services.writer.verdicts import classify, purpose_of

CHROME = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"
IPHONE_MAIL = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile"


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        # people
        ("open", {"ua": CHROME}, ("human", None)),
        ("open", {"ua": IPHONE_MAIL, "ip": "198.51.100.7"}, ("human", None)),
        ("click", {"ua": CHROME, "url": "https://x.test/"}, ("human", None)),
        # prefetch: v2 hint, v1 props, any hit kind
        ("open", {"ua": CHROME, "hints": {"purpose": "prefetch"}}, ("machine", "prefetch")),
        (
            "open",
            {"ua": CHROME, "hints": {"purpose": "prefetch;prerender"}},
            ("machine", "prefetch"),
        ),
        ("click", {"ua": CHROME, "props": {"purpose": "preview"}}, ("machine", "prefetch")),
        ("open", {"ua": CHROME, "hints": {"purpose": "unrelated"}}, ("human", None)),
        # Apple Mail Privacy Protection: the bare UA, or Apple's network
        ("open", {"ua": "Mozilla/5.0"}, ("machine", "apple_mpp")),
        ("open", {"ua": IPHONE_MAIL, "ip": "17.58.1.2"}, ("machine", "apple_mpp")),
        ("open", {"ua": IPHONE_MAIL, "ip": "2620:149:a:1::5"}, ("machine", "apple_mpp")),
        ("open", {"ua": IPHONE_MAIL, "ip": "170.1.2.3"}, ("human", None)),
        ("click", {"ua": CHROME, "ip": "17.58.1.2"}, ("human", None)),  # MPP only prefetches
        # image proxies
        (
            "open",
            {"ua": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"},
            ("machine", "image_proxy"),
        ),
        ("open", {"ua": "YahooMailProxy; https://help.yahoo.com"}, ("machine", "image_proxy")),
        ("open", {"ua": "Mozilla/4.0 OutlookImageProxy"}, ("machine", "image_proxy")),
        # scanners, libraries, bots, nothing at all
        ("click", {"ua": "Barracuda Sentinel (EE)"}, ("machine", "scanner")),
        ("click", {"ua": "Mimecast URL Protect"}, ("machine", "scanner")),
        ("click", {"ua": "python-requests/2.32"}, ("machine", "scanner")),
        ("open", {"ua": "curl/8.5.0"}, ("machine", "scanner")),
        ("open", {"ua": "Mozilla/5.0 HeadlessChrome/126.0"}, ("machine", "scanner")),
        ("click", {"ua": "Slackbot-LinkExpanding 1.0"}, ("machine", "scanner")),
        ("click", {"ua": "Mozilla/5.0 (compatible; bingbot/2.0)"}, ("machine", "scanner")),
        ("click", {"ua": "SomeCheckerBot"}, ("machine", "scanner")),
        ("open", {"ua": "Mozilla/5.0 (Linux; Android 12; CUBOT_X30) Mobile"}, ("human", None)),
        ("click", {}, ("machine", "scanner")),
        ("open", {"ua": "   "}, ("machine", "scanner")),
    ],
)
def test_rules(kind: str, data: dict[str, Any], expected: tuple[str, str | None]) -> None:
    assert classify(kind, data) == expected


def test_remembered_user_agents_keep_kind_and_address_rules_apart() -> None:
    # The user-agent rules are cached per (kind, user agent); what differs by kind or by
    # address must still differ when the same user agent comes again.
    for _ in range(3):
        assert classify("open", {"ua": "Mozilla/5.0"}) == ("machine", "apple_mpp")
        assert classify("click", {"ua": "Mozilla/5.0"}) == ("human", None)
        assert classify("open", {"ua": IPHONE_MAIL, "ip": "17.1.2.3"}) == ("machine", "apple_mpp")
        assert classify("open", {"ua": IPHONE_MAIL, "ip": "18.1.2.3"}) == ("human", None)
        assert classify("click", {"ua": 42}) == ("machine", "scanner")  # not a string: none


def test_prefetch_hint_wins_over_v1_props() -> None:
    assert purpose_of({"hints": {"purpose": "a"}, "props": {"purpose": "b"}}) == "a"
    assert purpose_of({"props": {"purpose": 3}}) is None


@pytest.mark.parametrize(
    ("settings", "hints", "expected"),
    [
        ({}, None, ("192.0.2.77", "UA")),
        ({"ip_mode": "truncated"}, None, ("192.0.2.0", "UA")),
        ({"ip_mode": "none"}, None, (None, "UA")),
        ({}, {"dnt": True}, (None, None)),
        ({}, {"gpc": True}, (None, None)),
        ({"respect_dnt": False}, {"dnt": True}, ("192.0.2.77", "UA")),
        ({"ip_mode": "bogus", "respect_dnt": "yes"}, {"dnt": True}, (None, None)),  # defaults
    ],
)
def test_privacy(
    settings: dict[str, Any], hints: dict[str, Any] | None, expected: tuple[str | None, str | None]
) -> None:
    assert Privacy.from_settings(settings).apply("192.0.2.77", "UA", hints) == expected


def test_ipv6_is_truncated_to_48_bits() -> None:
    assert Privacy("truncated").apply("2001:db8:1:2::9", None, None) == ("2001:db8:1::", None)


class _Conn:
    """Stands in for the tenants query (the real one runs in tests/integration)."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"acme": '{"ip_mode": "none"}'}
        self.queries = 0

    async def fetch(self, _sql: str, tenants: list[str]) -> list[dict[str, Any]]:
        self.queries += 1
        return [{"id": t, "settings": self.settings[t]} for t in tenants if t in self.settings]


async def test_settings_are_cached_for_ttl_on_the_clock() -> None:
    now = [0.0]
    cache = TenantPrivacy(ttl=30, clock=lambda: now[0])
    conn = _Conn()
    got = await cache.for_tenants(conn, ["acme", "other"])  # type: ignore[arg-type]
    assert got == {"acme": Privacy("none"), "other": Privacy()}
    conn.settings["acme"] = '{"ip_mode": "full"}'
    now[0] = 29.9
    assert (await cache.for_tenants(conn, ["acme"]))["acme"] == Privacy("none")  # type: ignore[arg-type]
    assert conn.queries == 1
    now[0] = 30.0
    assert (await cache.for_tenants(conn, ["acme"]))["acme"] == Privacy("full")  # type: ignore[arg-type]
    assert conn.queries == 2
