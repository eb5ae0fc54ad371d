"""Reading an HTTP body whole, within a bound: `StreamReader.read(n)` returns only what
has arrived so far (a body larger than one network read comes back cut), so a bounded
read must loop to the end."""

from __future__ import annotations

from aiohttp import StreamReader

CHUNK = 64 * 1024


async def read_limited(stream: StreamReader, limit: int) -> bytes | None:
    """The whole body; None as soon as it is larger than `limit` bytes."""
    body = bytearray()
    async for chunk in stream.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
