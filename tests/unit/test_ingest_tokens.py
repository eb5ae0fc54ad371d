"""Ingest tokens (shared.ingest_tokens): what verifies, what does not, and rotation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ingest.settings import IngestSettings
from shared.ingest_tokens import (
    MAX_TOKEN_LEN,
    PREFIX,
    TenantSelection,
    mint_token,
    parse_keys,
    verify_claims,
    verify_token,
)
from shared.settings import SettingsError
from shared.signing import SigningKeys, sign_click

KEYS = SigningKeys.parse("k2:new-secret-0123456789,k1:old-secret-0123456789")
NOW = datetime(2026, 12, 1, 4, 40, tzinfo=UTC)


def test_a_minted_token_verifies_as_its_tenant_and_says_when_and_by_which_key() -> None:
    token = mint_token(KEYS, "acme", NOW)
    assert token.startswith(f"{PREFIX}k2.acme.")
    assert verify_token(KEYS, token) == "acme"
    claims = verify_claims(KEYS, token)
    assert claims is not None
    assert (claims.kid, claims.tenant, claims.issued_at) == ("k2", "acme", NOW)
    assert mint_token(KEYS, "acme", NOW) != token  # random part


def test_rotation_old_tokens_verify_while_their_key_is_listed_and_not_after() -> None:
    old_keys = SigningKeys.parse("k1:old-secret-0123456789")
    old_token = mint_token(old_keys, "acme", NOW)
    assert verify_token(KEYS, old_token) == "acme"  # k1 still listed, k2 now signs
    assert mint_token(KEYS, "acme").startswith(f"{PREFIX}k2.")
    revoked = SigningKeys.parse("k2:new-secret-0123456789")
    assert verify_token(revoked, old_token) is None  # removing k1 revokes its tokens
    assert verify_token(revoked, mint_token(KEYS, "acme")) == "acme"


def test_a_token_for_one_tenant_cannot_be_turned_into_another() -> None:
    token = mint_token(KEYS, "acme", NOW)
    forged = token.replace(".acme.", ".globex.")
    assert verify_token(KEYS, forged) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: t.replace("k2.", "k1.", 1),  # another listed key's id
        lambda t: t.replace("k2.", "k9.", 1),  # unknown key id
        lambda t: t[len(PREFIX) :],  # no prefix
        lambda t: "blf_" + t[len(PREFIX) :],  # an api key's prefix
        lambda t: t.rsplit(".", 1)[0],  # no signature
        lambda t: t + ".x",  # an extra part
        lambda t: t.replace(".", "..", 1),
        lambda t: t.upper(),
        lambda t: "",
        lambda t: t + "é",
        lambda t: t[:-2] + "\x00\x00",
        lambda t: t[:-2] + "\udcff\udcfe",  # undecodable header bytes (surrogateescape)
    ],
)
def test_tampered_or_malformed_tokens_do_not_verify(mangle: object) -> None:
    token = mint_token(KEYS, "acme", NOW)
    assert verify_token(KEYS, mangle(token)) is None  # type: ignore[operator]


def test_length_is_bounded_and_checked_before_parsing() -> None:
    longest = mint_token(KEYS, "a" * 63, NOW)  # the longest tenant id...
    long_kid = SigningKeys.parse("k" * 16 + ":secret-0123456789abc")
    assert len(mint_token(long_kid, "a" * 63, NOW)) == MAX_TOKEN_LEN  # ...and kid fit
    assert verify_token(KEYS, longest) == "a" * 63
    assert verify_token(KEYS, longest + "x" * 10_000) is None
    assert verify_token(KEYS, "bit_" + "." * 1_000_000) is None


def test_no_key_list_verifies_nothing_and_a_click_signature_is_no_token() -> None:
    token = mint_token(KEYS, "acme", NOW)
    assert verify_token(None, token) is None
    assert parse_keys("") is None and parse_keys("  ") is None
    # The same secret signing a click never yields a valid token signature (context).
    sig = sign_click(KEYS, "acme", "k2.acme.x", "n").split(".")[1]
    assert verify_token(KEYS, f"{token.rsplit('.', 1)[0]}.{sig}") is None


def test_key_list_errors_name_the_setting() -> None:
    with pytest.raises(SettingsError, match="INGEST_TOKEN_KEYS"):
        parse_keys("k1:short")
    with pytest.raises(SettingsError, match="INGEST_TOKEN_KEYS"):
        parse_keys("no-colon")


def test_minting_refuses_an_invalid_tenant() -> None:
    with pytest.raises(ValueError, match="tenant"):
        mint_token(KEYS, "Acme.Corp")


def test_tenant_selection() -> None:
    every = TenantSelection.parse(" * ", "X")
    assert "anyone" in every and every
    some = TenantSelection.parse("acme, globex", "X")
    assert "acme" in some and "globex" in some and "initech" not in some
    none = TenantSelection.parse("", "X")
    assert "acme" not in none and not none
    for bad in ("*,acme", "Acme", "a b", "acme;globex"):
        with pytest.raises(SettingsError, match="INGEST_TRACK_REQUIRE_TOKEN"):
            TenantSelection.parse(bad, "INGEST_TRACK_REQUIRE_TOKEN")


def test_ingest_settings_read_the_token_settings_and_fail_fast_on_bad_ones() -> None:
    click = "k1:click-secret-0123456789"
    tokens = "t1:token-secret-0123456789"
    s = IngestSettings.from_env(
        {
            "CLICK_SIGNING_KEYS": click,
            "INGEST_TOKEN_KEYS": tokens,
            "INGEST_TRACK_REQUIRE_TOKEN": "acme",
        }
    )
    assert s.token_keys is not None and s.token_keys.active == "t1"
    assert "acme" in s.track_require_token and "globex" not in s.track_require_token
    unset = IngestSettings.from_env({"CLICK_SIGNING_KEYS": click})
    assert unset.token_keys is None and not unset.track_require_token
    with pytest.raises(SettingsError, match="needs INGEST_TOKEN_KEYS"):
        IngestSettings.from_env({"CLICK_SIGNING_KEYS": click, "INGEST_TRACK_REQUIRE_TOKEN": "*"})
    with pytest.raises(SettingsError, match="INGEST_TRACK_REQUIRE_TOKEN"):
        IngestSettings.from_env(
            {
                "CLICK_SIGNING_KEYS": click,
                "INGEST_TOKEN_KEYS": tokens,
                "INGEST_TRACK_REQUIRE_TOKEN": "yes please",
            }
        )
    with pytest.raises(SettingsError, match="INGEST_TOKEN_KEYS"):
        IngestSettings.from_env({"CLICK_SIGNING_KEYS": click, "INGEST_TOKEN_KEYS": "t1:short"})
