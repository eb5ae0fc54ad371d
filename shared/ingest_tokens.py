"""Ingest tokens: write credentials for the ingest's intake routes, verified offline.

    bit_<kid>.<tenant>.<nonce>.<sig>

- `kid`: the key that signed it (`INGEST_TOKEN_KEYS`, parsed like `CLICK_SIGNING_KEYS`:
  `kid:secret[,kid:secret...]`, the first signs, every one listed verifies). Rotation: put
  a new key first, re-mint, then drop the old one; revocation: remove its key id, which
  revokes every token it signed.
- `tenant`: the only tenant the token may write for (shared.ids pattern, no dots).
- `nonce`: base64url of 6 bytes of issue time (Unix seconds) and 10 random bytes, so two
  tokens are never equal and each says when it was minted.
- `sig`: base64url HMAC-SHA256 over `belfry-ingest-token.v1\\n<kid>.<tenant>.<nonce>`; the
  context string keeps it apart from click signatures even if a secret were shared.

Ingest has no database, so the token carries everything needed to check it. Minted by
`python -m services.api ingest-token create <tenant>`; verified by `verify_token`, which
returns the tenant (for `/v1/track` now, the metric intake later). A token is at most
MAX_TOKEN_LEN characters: anything longer is refused before it is parsed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.ids import valid_tenant
from shared.settings import SettingsError
from shared.signing import SigningKeys

PREFIX = "bit_"
_CONTEXT = b"belfry-ingest-token.v1\n"
_NONCE_BYTES = 16  # 6 of issue time, 10 random
_NONCE_LEN = 22  # base64url of 16 bytes, unpadded
_SIG_LEN = 43  # base64url of 32 bytes, unpadded
# prefix + kid (16) + tenant (63) + nonce + sig + 3 dots
MAX_TOKEN_LEN = len(PREFIX) + 16 + 63 + _NONCE_LEN + _SIG_LEN + 3
KEYS_SETTING = "INGEST_TOKEN_KEYS"


def parse_keys(raw: str) -> SigningKeys | None:
    """`INGEST_TOKEN_KEYS`; None when unset (no token can then verify)."""
    return SigningKeys.parse(raw, KEYS_SETTING) if raw.strip() else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sig(secret: bytes, signed: str) -> str:
    return _b64(hmac.new(secret, _CONTEXT + signed.encode(), hashlib.sha256).digest())


def mint_token(keys: SigningKeys, tenant: str, now: datetime | None = None) -> str:
    """A new token for `tenant`, signed with the active key."""
    if not valid_tenant(tenant):
        raise ValueError(f"{tenant!r} is not a valid tenant id")
    issued = int((now or datetime.now(UTC)).timestamp())
    nonce = _b64(issued.to_bytes(6, "big") + secrets.token_bytes(_NONCE_BYTES - 6))
    signed = f"{keys.active}.{tenant}.{nonce}"
    return f"{PREFIX}{signed}.{_sig(keys.keys[keys.active], signed)}"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    kid: str
    tenant: str
    issued_at: datetime


def verify_claims(keys: SigningKeys | None, token: str) -> TokenClaims | None:
    """The claims of a well-formed token signed by a configured key; None otherwise."""
    if keys is None or len(token) > MAX_TOKEN_LEN or not token.startswith(PREFIX):
        return None
    if not token.isascii():  # a header's undecodable bytes arrive as lone surrogates
        return None
    signed, dot, sig = token[len(PREFIX) :].rpartition(".")
    parts = signed.split(".")
    if not dot or len(parts) != 3 or len(sig) != _SIG_LEN:
        return None
    kid, tenant, nonce = parts
    secret = keys.keys.get(kid)
    if secret is None or not valid_tenant(tenant) or len(nonce) != _NONCE_LEN:
        return None
    if not hmac.compare_digest(sig.encode(), _sig(secret, signed).encode()):
        return None
    raw = base64.urlsafe_b64decode(nonce + "==")
    issued = datetime.fromtimestamp(int.from_bytes(raw[:6], "big"), UTC)
    return TokenClaims(kid, tenant, issued)


def verify_token(keys: SigningKeys | None, token: str) -> str | None:
    """The tenant a valid token writes for; None for a missing key list or a malformed,
    tampered or revoked (key removed) token."""
    claims = verify_claims(keys, token)
    return None if claims is None else claims.tenant


@dataclass(frozen=True, slots=True)
class TenantSelection:
    """Which tenants a rule applies to: every one (`*`), a list, or none (unset)."""

    every: bool = False
    tenants: frozenset[str] = frozenset()

    def __contains__(self, tenant: object) -> bool:
        # Only a string names a tenant (and a list from a JSON body is unhashable).
        return isinstance(tenant, str) and (self.every or tenant in self.tenants)

    def __bool__(self) -> bool:
        return self.every or bool(self.tenants)

    @classmethod
    def parse(cls, raw: str, name: str) -> TenantSelection:
        """`*` for every tenant, or a comma list of tenant ids; empty for none."""
        items = [p.strip() for p in raw.split(",") if p.strip()]
        if items == ["*"]:
            return cls(every=True)
        bad = [t for t in items if not valid_tenant(t)]
        if bad:
            raise SettingsError(
                f"{name} must be * or a comma list of tenant ids; {bad[0]!r} is neither"
            )
        return cls(tenants=frozenset(items))

    @classmethod
    def of(cls, tenants: Iterable[str]) -> TenantSelection:
        return cls(tenants=frozenset(tenants))
