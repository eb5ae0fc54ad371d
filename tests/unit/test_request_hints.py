"""What ingest reads from a request's headers into hit v2 `hints`."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from services.ingest.routes.common import request_hints


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"User-Agent": "x", "DNT": "0"}, None),
        ({"Sec-Purpose": "prefetch;prerender"}, {"purpose": "prefetch;prerender"}),
        ({"Purpose": "prefetch"}, {"purpose": "prefetch"}),
        ({"X-Moz": "prefetch"}, {"purpose": "prefetch"}),
        ({"dnt": "1"}, {"dnt": True}),
        ({"Sec-GPC": "1", "X-Purpose": "preview"}, {"purpose": "preview", "gpc": True}),
        ({"Purpose": "p" * 100}, {"purpose": "p" * 64}),
    ],
)
def test_request_hints(headers: dict[str, str], expected: dict[str, object] | None) -> None:
    assert request_hints(CIMultiDict(headers)) == expected
