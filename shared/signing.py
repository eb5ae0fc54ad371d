"""Signed click links: HMAC-SHA256 over tenant, email id and target URL.

The signature travels as `sig=<key id>.<base64url mac>`, so keys rotate: the api signs
with the first (active) key, the ingest accepts any key still configured. Verification
needs no database, and a link whose tenant, email or URL was changed doesn't verify —
which is what closes Little Bell's `?url=` open redirect. A target's scheme is compared
in any case and normalised to lowercase (`normalize_target`) where a link is signed and
where a click is published, so the api, the ingest and the writer agree on one URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from shared.contracts import MAX_URL_LEN
from shared.settings import SettingsError

_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
MIN_SECRET_LEN = 16


@dataclass(frozen=True, slots=True)
class SigningKeys:
    active: str
    keys: Mapping[str, bytes]

    def __repr__(self) -> str:  # never print secrets
        return f"SigningKeys(active={self.active!r}, kids={sorted(self.keys)!r})"

    @classmethod
    def parse(cls, raw: str, name: str = "CLICK_SIGNING_KEYS") -> SigningKeys:
        """Parse `kid:secret[,kid:secret...]`; the first key signs, all verify."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (p.strip() for p in raw.split(","))):
            kid, sep, secret = item.partition(":")
            if not sep or not _KID_RE.match(kid):
                raise SettingsError(f"{name}: each key is kid:secret, kid [A-Za-z0-9_-]{{1,16}}")
            if len(secret) < MIN_SECRET_LEN:
                raise SettingsError(
                    f"{name}: secret of key {kid!r} is shorter than {MIN_SECRET_LEN}"
                )
            if kid in keys:
                raise SettingsError(f"{name}: key id {kid!r} appears twice")
            keys[kid] = secret.encode()
        if not keys:
            raise SettingsError(f"{name} must hold at least one kid:secret key")
        return cls(active=next(iter(keys)), keys=keys)


def _mac(secret: bytes, tenant: str, email_id: str, url: str) -> str:
    msg = f"{tenant}\n{email_id}\n{url}".encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_click(keys: SigningKeys, tenant: str, email_id: str, url: str) -> str:
    return f"{keys.active}.{_mac(keys.keys[keys.active], tenant, email_id, url)}"


def verify_click(keys: SigningKeys, tenant: str, email_id: str, url: str, sig: str) -> bool:
    kid, _, mac = sig.partition(".")
    secret = keys.keys.get(kid)
    if secret is None or not mac:
        return False
    # Bytes: compare_digest refuses non-ASCII str, and the sig comes from a query string.
    return hmac.compare_digest(mac.encode(), _mac(secret, tenant, email_id, url).encode())


def click_path(keys: SigningKeys, tenant: str, email_id: str, url: str) -> str:
    """The path + query of a signed click link (prefix it with the ingest base URL), for
    the target in its normal form (`normalize_target`)."""
    url = normalize_target(url)
    query = urlencode({"url": url, "sig": sign_click(keys, tenant, email_id, url)})
    return f"/{tenant}/click/{email_id}?{query}"


def target_problem(url: str) -> str | None:
    """Why `url` may not be a click target, or None: one rule for the api that signs links
    and the ingest that redirects them, so every link signed is one that redirects."""
    if len(url) > MAX_URL_LEN:
        return f"url longer than {MAX_URL_LEN} characters"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in url):
        return "url contains control characters or backslashes"
    # Literally `http://` or `https://` first, in any case: urlsplit would also take
    # leading spaces, which the writer's contract (rightly) refuses in a stored URL.
    if not url[:8].lower().startswith(("http://", "https://")):
        return "url must be http or https"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "url is not a valid URL"
    if not parts.hostname:
        return "url has no host"
    return None


def normalize_target(url: str) -> str:
    """A click target (one `target_problem` accepts) with its scheme in lowercase:
    schemes are case-insensitive (RFC 3986), and the api signs, ingest publishes and the
    writer stores one spelling, so `HTTPS://x` and `https://x` are the same link."""
    scheme, sep, rest = url.partition("://")
    return url if scheme.islower() else f"{scheme.lower()}{sep}{rest}"
