"""Stopping background tasks, one way for every service."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None, grace: float = 0.0) -> None:
    """Let `task` end by itself for up to `grace` seconds, then cancel it until it is done
    and wait for it (an exception it ended with is raised here).

    One `cancel()` is not always enough: Python 3.11's `wait_for` swallows a cancel that
    lands just as its inner await completes, and a loop around it then runs on, so a
    single cancel followed by `await task` could hang a shutdown."""
    if task is None:
        return
    if grace > 0 and not task.done():
        await asyncio.wait({task}, timeout=grace)
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task
