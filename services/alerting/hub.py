"""In-process fan-out of committed alert transitions to Server-Sent-Event subscribers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

_CLOSED: dict[str, Any] = {}


class TransitionHub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[tuple[str, asyncio.Queue[dict[str, Any]]]] = set()
        self._size = queue_size
        self.closed = False

    def subscribe(self, tenant: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._size)
        self._subscribers.add((tenant, queue))
        return queue

    def unsubscribe(self, tenant: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard((tenant, queue))

    def publish(self, tenant: str, event: dict[str, Any]) -> None:
        for owner, queue in list(self._subscribers):
            if owner == tenant:
                # A subscriber that doesn't read loses events rather than holding memory.
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(event)

    def close(self) -> None:
        """End every stream (shutdown)."""
        self.closed = True
        for _, queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_CLOSED)

    @staticmethod
    def is_close(event: dict[str, Any]) -> bool:
        return event is _CLOSED
