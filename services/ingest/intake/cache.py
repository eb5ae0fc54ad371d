"""A cache of what raw label lists mean, bounded in entries and in bytes.

The decoders see the same series again at every scrape or export, so they remember what
each distinct raw label list decoded to. Keys come from tenants: one label list may be
~140 kB (64 labels of 2 kB), so an entry count alone would not bound memory. When either
bound would be passed the cache is emptied: simple, and a flood of distinct series costs
only the speed-up, never memory.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class LabelCache(Generic[V]):
    __slots__ = ("_bytes", "_entries", "max_bytes", "max_entries")

    def __init__(self, max_entries: int = 32768, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[tuple[bytes, ...], V] = {}
        self._bytes = 0

    def get(self, key: tuple[bytes, ...]) -> V | None:
        return self._entries.get(key)

    def put(self, key: tuple[bytes, ...], value: V) -> None:
        size = sum(map(len, key)) + 64 * len(key)  # the bytes, and the objects around them
        if size > self.max_bytes // 16:
            return  # too big to be worth keeping
        if len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes:
            self._entries.clear()
            self._bytes = 0
        self._entries[key] = value
        self._bytes += size

    def __len__(self) -> int:
        return len(self._entries)
