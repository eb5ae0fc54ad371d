"""Ports on this machine: a free one to give a child, and whether one answers already."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from devtools import describe


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def tcp_refusal(host: str, port: int, timeout: float = 1.0) -> str | None:
    """None when something accepts a TCP connection at host:port, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return "connect timed out"
    except OSError as exc:
        return describe(exc)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
