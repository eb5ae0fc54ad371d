"""URLs the api hands out: the tracking pixel and signed click links on the tracking
host (`API_PUBLIC_URL`), built exactly as the ingest serves and verifies them."""

from __future__ import annotations

from shared.signing import SigningKeys, click_path


def pixel_url(public_url: str, tenant: str, email_id: str) -> str:
    return f"{public_url}/{tenant}/pixel/{email_id}.gif"


def click_url(public_url: str, keys: SigningKeys, tenant: str, email_id: str, url: str) -> str:
    return public_url + click_path(keys, tenant, email_id, url)
