"""URLs the api hands out: the tracking pixel and signed click links on the tracking
host (`API_PUBLIC_URL`), built exactly as the ingest serves and verifies them."""

from __future__ import annotations

from urllib.parse import urlsplit

from shared.contracts import MAX_URL_LEN
from shared.signing import SigningKeys, click_path


def pixel_url(public_url: str, tenant: str, email_id: str) -> str:
    return f"{public_url}/{tenant}/pixel/{email_id}.gif"


def click_url(public_url: str, keys: SigningKeys, tenant: str, email_id: str, url: str) -> str:
    return public_url + click_path(keys, tenant, email_id, url)


def target_problem(url: str) -> str | None:
    """Why `url` cannot be a click target, or None. The same rules as the ingest's
    redirect, so every link signed here also redirects there."""
    if len(url) > MAX_URL_LEN:
        return f"url longer than {MAX_URL_LEN} characters"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in url):
        return "url contains control characters or backslashes"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "url is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "url must be an http or https URL"
    if not parts.hostname:
        return "url has no host"
    return None
