"""Signed click links: roundtrip, key rotation, tampering, key parsing, no secret leaks;
click targets: the one rule the api and the ingest apply, and the scheme normalised so
the writer stores what they agree on."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import HIT_CLICK_V2, make_envelope, validate_envelope
from shared.settings import SettingsError
from shared.signing import (
    SigningKeys,
    click_path,
    normalize_target,
    sign_click,
    target_problem,
    verify_click,
)

NEW = "new-secret-0123456789"
OLD = "old-secret-0123456789"
TENANT, EMAIL, URL = "acme", "em-1", "https://example.com/offer?x=1"


@pytest.fixture
def rotated() -> SigningKeys:
    """After rotation: k2 signs, k1 (listed second) still verifies."""
    return SigningKeys.parse(f"k2:{NEW},k1:{OLD}")


def test_signature_roundtrip_verifies(rotated: SigningKeys) -> None:
    sig = sign_click(rotated, TENANT, EMAIL, URL)
    assert verify_click(rotated, TENANT, EMAIL, URL, sig) is True


def test_first_key_is_active_and_signatures_carry_its_kid(rotated: SigningKeys) -> None:
    assert rotated.active == "k2"
    kid, _, mac = sign_click(rotated, TENANT, EMAIL, URL).partition(".")
    assert kid == "k2"
    # base64url of a SHA-256 digest without padding
    assert len(mac) == 43
    assert "=" not in mac


def test_link_signed_with_old_key_still_verifies_after_rotation(rotated: SigningKeys) -> None:
    before_rotation = SigningKeys.parse(f"k1:{OLD}")
    old_sig = sign_click(before_rotation, TENANT, EMAIL, URL)
    assert old_sig.startswith("k1.")
    assert verify_click(rotated, TENANT, EMAIL, URL, old_sig) is True


def test_link_signed_with_retired_key_fails(rotated: SigningKeys) -> None:
    old_sig = sign_click(rotated, TENANT, EMAIL, URL)
    only_newer = SigningKeys.parse("k3:newest-secret-0123456789")
    assert verify_click(only_newer, TENANT, EMAIL, URL, old_sig) is False


@pytest.mark.parametrize(
    ("tenant", "email_id", "url"),
    [
        ("evil", EMAIL, URL),
        (TENANT, "em-2", URL),
        (TENANT, EMAIL, "https://evil.example/"),
        (TENANT, EMAIL, URL + "&y=2"),
    ],
)
def test_changing_tenant_email_or_url_fails(
    rotated: SigningKeys, tenant: str, email_id: str, url: str
) -> None:
    sig = sign_click(rotated, TENANT, EMAIL, URL)
    assert verify_click(rotated, tenant, email_id, url, sig) is False


def test_field_boundaries_are_part_of_the_mac(rotated: SigningKeys) -> None:
    # "a"+"bc" and "ab"+"c" must not collide.
    sig = sign_click(rotated, "a", "bc", URL)
    assert verify_click(rotated, "ab", "c", URL, sig) is False


def test_tampered_mac_fails(rotated: SigningKeys) -> None:
    sig = sign_click(rotated, TENANT, EMAIL, URL)
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert verify_click(rotated, TENANT, EMAIL, URL, flipped) is False


def test_mac_moved_to_another_kid_fails(rotated: SigningKeys) -> None:
    mac = sign_click(rotated, TENANT, EMAIL, URL).partition(".")[2]
    assert verify_click(rotated, TENANT, EMAIL, URL, f"k1.{mac}") is False


@pytest.mark.parametrize("sig", ["k9.abcdef", "", "k2", "k2.", ".abc", "nodot"])
def test_unknown_kid_or_malformed_sig_fails(rotated: SigningKeys, sig: str) -> None:
    assert verify_click(rotated, TENANT, EMAIL, URL, sig) is False


def test_non_ascii_sig_fails_instead_of_raising(rotated: SigningKeys) -> None:
    assert verify_click(rotated, TENANT, EMAIL, URL, "k2.\u00e9") is False


def test_click_path_carries_url_and_verifiable_sig(rotated: SigningKeys) -> None:
    path = click_path(rotated, TENANT, EMAIL, URL)
    parts = urlsplit(path)
    assert parts.path == f"/{TENANT}/click/{EMAIL}"
    query = parse_qs(parts.query)
    assert query["url"] == [URL]
    assert verify_click(rotated, TENANT, EMAIL, URL, query["sig"][0]) is True


def test_parse_strips_whitespace_and_skips_empty_items() -> None:
    keys = SigningKeys.parse(f" k2:{NEW} ,, k1:{OLD} ")
    assert keys.active == "k2"
    assert dict(keys.keys) == {"k2": NEW.encode(), "k1": OLD.encode()}


def test_parse_secret_may_contain_colons() -> None:
    keys = SigningKeys.parse("k1:abc:def:0123456789xyz")
    assert keys.keys["k1"] == b"abc:def:0123456789xyz"


def test_parse_rejects_short_secret() -> None:
    with pytest.raises(SettingsError, match=r"^CLICK_SIGNING_KEYS: secret of key 'k1' is shorter"):
        SigningKeys.parse("k1:short")


def test_parse_rejects_duplicate_kid() -> None:
    with pytest.raises(SettingsError, match=r"key id 'k1' appears twice"):
        SigningKeys.parse(f"k1:{NEW},k1:{OLD}")


@pytest.mark.parametrize("raw", ["", " , ,"])
def test_parse_rejects_empty(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"^CLICK_SIGNING_KEYS must hold at least one"):
        SigningKeys.parse(raw)


@pytest.mark.parametrize("raw", [NEW, f"bad kid:{NEW}", f"{'k' * 17}:{NEW}", f":{NEW}"])
def test_parse_rejects_malformed_items(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"^CLICK_SIGNING_KEYS: each key is kid:secret"):
        SigningKeys.parse(raw)


def test_parse_error_uses_given_variable_name() -> None:
    with pytest.raises(SettingsError, match=r"^OTHER_KEYS must hold"):
        SigningKeys.parse("", name="OTHER_KEYS")


def test_repr_and_str_never_show_secrets(rotated: SigningKeys) -> None:
    for text in (repr(rotated), str(rotated), f"{rotated}", repr([rotated])):
        assert NEW not in text
        assert OLD not in text
    assert repr(rotated) == "SigningKeys(active='k2', kids=['k1', 'k2'])"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTPS://example.com/A?B=C", "https://example.com/A?B=C"),
        ("Http://Example.com/", "http://Example.com/"),
        ("https://example.com/X", "https://example.com/X"),
    ],
)
def test_normalize_target_lowercases_the_scheme_only(url: str, normal: str) -> None:
    assert target_problem(url) is None
    assert normalize_target(url) == normal


def test_click_path_signs_and_carries_the_normalised_target(rotated: SigningKeys) -> None:
    query = parse_qs(urlsplit(click_path(rotated, TENANT, EMAIL, "HTTPS://example.com/A")).query)
    assert query["url"] == ["https://example.com/A"]
    assert verify_click(rotated, TENANT, EMAIL, "https://example.com/A", query["sig"][0])


def test_a_link_signed_before_normalisation_still_verifies(rotated: SigningKeys) -> None:
    sig = sign_click(rotated, TENANT, EMAIL, "HTTPS://example.com/")
    assert verify_click(rotated, TENANT, EMAIL, "HTTPS://example.com/", sig)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (" https://example.com/", "url must be http or https"),
        ("https:/example.com/", "url must be http or https"),
        ("ftp://example.com/", "url must be http or https"),
        ("https://", "url has no host"),
        ("https://example.com/\x00", "url contains control characters or backslashes"),
    ],
)
def test_target_problem(url: str, problem: str) -> None:
    assert target_problem(url) == problem


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://example.com/",
        "hTtP://example.com/a b",
        "https://example.com/" + "a" * 2000,
        "https://[2001:db8::1]:8443/x",
        "https://user:pw@example.com/#frag",
    ],
)
def test_every_target_the_ingest_accepts_passes_the_writers_contract(url: str) -> None:
    assert target_problem(url) is None
    data = {"email_id": EMAIL, "url": normalize_target(url)}
    now = "2025-03-01T12:00:00+00:00"
    event = make_envelope(
        "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", HIT_CLICK_V2, TENANT, now, now, data
    )
    assert validate_envelope(event).data["url"].startswith(("http://", "https://"))


@given(
    st.sampled_from(["http", "https"]).flatmap(
        lambda s: st.tuples(*(st.sampled_from([c, c.upper()]) for c in s))
    ),
    st.text(max_size=80),
)
def test_any_accepted_target_normalised_passes_the_writers_contract(
    scheme: tuple[str, ...], rest: str
) -> None:
    url = "".join(scheme) + "://example.com/" + rest
    if target_problem(url) is not None:
        return
    data = {"email_id": EMAIL, "url": normalize_target(url)}
    now = "2025-03-01T12:00:00+00:00"
    event = make_envelope(
        "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", HIT_CLICK_V2, TENANT, now, now, data
    )
    validate_envelope(event)
