"""The local spool: where confirmed-by-disk batches wait while the broker is away.

Segment files of length-prefixed, CRC-checked records, appended and fsync'd before the
caller is told "stored". Appends are group-committed: whatever arrives while one fsync
runs goes out with the next one, so a broker outage costs one fsync per few ms, not per
hit. `drain()` replays sealed segments oldest first, handing the publisher a whole
segment at a time (so it can publish many records per message, many messages in flight)
and deletes a segment only after every record in it was published; a crash mid-segment
replays it again, and the writer's `ON CONFLICT (id)` turns that into no duplicate row.
A torn record at the tail (kill -9 during a write) fails its CRC and is skipped: it was
never acknowledged.

`check()` is the readiness view: it fails whenever the next batch could not be stored -
the spool's own limit, the disk's free space, or a write that just failed (ENOSPC, EIO,
EFBIG), with the errno in the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from shared.failures import LogThrottle, error_text

log = logging.getLogger("belfry.spool")

_HEADER = struct.Struct(">II")  # body length, crc32(body)
# A segment is sealed past this size, so a long outage becomes many small files that
# replay (and free their space) one at a time.
SEGMENT_BYTES = 16 << 20
_PREFIX = "seg-"
_SUFFIX = ".spool"
# A drain calls `on_tail` when what is left is one sealed segment at most this big: the
# publisher then holds new batches for the few ms that segment takes, instead of
# spooling them behind it forever while load continues.
TAIL_BYTES = 1 << 20


class Spool:
    def __init__(
        self, directory: Path, max_bytes: int, owner: str = "", *, reserve_bytes: int = 0
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Room the next batch may need, before any was seen (readiness); grows with the
        # largest batch seen that could ever fit.
        self._need = min(reserve_bytes, max_bytes)
        # Why the last append was refused, or None after one succeeded.
        self.refused: str | None = None
        # The last write error (error text with errno), until a write or a probe succeeds.
        self.write_error: str | None = None
        self._log_throttle = LogThrottle()
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_directory(directory)
        try:
            _check_owner(directory, owner)
        except SpoolError:
            os.close(self._lock_fd)
            raise
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._lock = threading.Lock()
        self._queue: list[tuple[bytes, asyncio.Future[bool]]] = []
        self._writing = False
        self._segments = sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"))
        self.size_bytes = sum(p.stat().st_size for p in self._segments)
        next_no = int(self._segments[-1].stem[len(_PREFIX) :]) + 1 if self._segments else 1
        # Segments found at start-up are sealed: they wait for replay.
        self._current = self._segment_path(next_no)
        self._current_records = 0
        self._fh: BinaryIO = open(self._current, "ab")  # noqa: SIM115 - lives as long as the spool
        self.appended = 0
        self.replayed = 0

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"{_PREFIX}{number:012d}{_SUFFIX}"

    @property
    def full(self) -> bool:
        return self.size_bytes >= self.max_bytes

    def pending(self) -> bool:
        """True while anything waits for replay (sealed segments, records, queued appends)."""
        return bool(self._segments or self._current_records or self._queue or self._writing)

    @property
    def room_needed(self) -> int:
        """Bytes the next batch may take: the largest batch seen, at least the reserve."""
        return self._need

    async def check(self) -> str | None:
        """Readiness: None while the next batch can be stored, else why it cannot."""
        need = self._need
        if self.write_error is not None and not await self._probe(need):
            return f"spool cannot write: {self.write_error}"
        free = self.max_bytes - self.size_bytes
        if free < need:
            return (
                f"spool cannot take the next batch: {max(free, 0)} of {self.max_bytes} "
                f"bytes free, batches need up to {need}"
            )
        disk = _disk_free(self.directory)
        if disk is not None and disk < need:
            return f"spool disk full: {disk} bytes free on the device, batches need up to {need}"
        return None

    async def _probe(self, need: int) -> bool:
        """After a failed write: can `need` bytes be written and fsync'd now? Clears the
        error if so (the disk got space back while nothing was spooled)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._exec, _probe_write, self.directory, need)
        except OSError as exc:
            self.write_error = error_text(exc)
            return False
        self.write_error = None
        return True

    async def append(self, body: bytes) -> bool:
        """Store one batch durably. False (nothing written) when the spool is full or the
        write failed; `refused` says which."""
        size = len(body) + _HEADER.size
        if size > self._need and size <= self.max_bytes:
            self._need = size
        if self.size_bytes + size > self.max_bytes:
            self.refused = f"spool full: {self.size_bytes} of {self.max_bytes} bytes used"
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self.size_bytes += size
        self._queue.append((body, fut))
        if not self._writing:
            self._writing = True
            loop.run_in_executor(self._exec, self._write_pending, loop)
        ok = await fut
        if ok:
            self.refused = None
        else:
            self.size_bytes -= size  # nothing of it stayed on disk
            self.refused = f"spool write failed: {self.write_error}"
        return ok

    def _write_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        """Executor thread: write every queued record, one fsync, then resolve them all."""
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._writing = False
                    return
            error: BaseException | None = None
            good = self._current.stat().st_size if self._current.exists() else 0
            try:
                for body, _ in batch:
                    self._fh.write(_HEADER.pack(len(body), zlib.crc32(body)))
                    self._fh.write(body)
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._current_records += len(batch)
                self.appended += len(batch)
                self.write_error = None
            except Exception as exc:  # every waiter must hear back, whatever broke
                error = exc
                self.write_error = error_text(exc)
                self._log_write_error(exc, len(batch))
                self._truncate(good)
            if error is None and self._fh.tell() >= SEGMENT_BYTES:
                self._seal()  # bounded segments: replay memory and space come back sooner
            for _, fut in batch:
                loop.call_soon_threadsafe(_resolve, fut, error is None)

    def _log_write_error(self, exc: BaseException, records: int) -> None:
        # A full disk fails every batch: one line per few seconds says it all.
        suppressed = self._log_throttle.allow()
        if suppressed is not None:
            log.error(
                "spool write failed: batches not stored",
                extra={
                    "error": error_text(exc),
                    "errno": getattr(exc, "errno", None),
                    "records": records,
                    "suppressed": suppressed,
                },
            )

    def _truncate(self, offset: int) -> None:
        """Cut a partly written batch off, so records appended later stay readable."""
        try:
            self._fh = _reopen_truncated(self._fh, self._current, offset)
        except OSError as exc:  # can't repair this segment: start a new one
            log.error("spool truncate failed", extra={"error": error_text(exc)})
            self._seal(force=True)

    def _seal(self, force: bool = False) -> None:
        """Executor thread: close the current segment and start the next one."""
        if self._current_records == 0 and not force:
            return
        with contextlib.suppress(OSError):
            self._fh.close()
        self._segments.append(self._current)
        number = int(self._current.stem[len(_PREFIX) :]) + 1
        self._current = self._segment_path(number)
        self._current_records = 0
        self._fh = open(self._current, "ab")  # noqa: SIM115
        _fsync_dir(self.directory)

    async def drain(
        self,
        publish: Callable[[list[bytes]], Awaitable[None]],
        on_tail: Callable[[], None] | None = None,
    ) -> int:
        """Publish everything spooled, oldest first, one segment's records per `publish`
        call (in order; it returns once all are published). Stops at the first publish
        error (raised to the caller) with the unfinished segment kept for the next drain.
        `on_tail()` is called when the segment about to replay is the last sealed one
        and small (TAIL_BYTES): from then on the caller should stop appending."""
        loop = asyncio.get_running_loop()
        count = 0
        while True:
            await loop.run_in_executor(self._exec, self._seal)
            if not self._segments:
                if not (self._queue or self._writing or self._current_records):
                    return count
                continue
            segment = self._segments[0]
            size = segment.stat().st_size
            if on_tail is not None and len(self._segments) == 1 and size <= TAIL_BYTES:
                on_tail()
            records = await loop.run_in_executor(self._exec, read_segment, segment)
            if records:
                await publish(records)
            count += len(records)
            self.replayed += len(records)
            await loop.run_in_executor(self._exec, _unlink, segment)
            self._segments.pop(0)
            self.size_bytes = max(0, self.size_bytes - size)
            # Debug: while load continues, catching up seals a small segment every few ms.
            log.debug(
                "spool segment replayed", extra={"segment": segment.name, "records": len(records)}
            )

    def close(self) -> None:
        self._exec.shutdown(wait=True)
        self._fh.close()
        if self._current_records == 0:
            self._current.unlink(missing_ok=True)
        os.close(self._lock_fd)  # releases the flock


class SpoolError(RuntimeError):
    """The spool directory can't be used; the message says why and what to do."""


def _lock_directory(directory: Path) -> int:
    """One process per spool directory: two writers would interleave segment files."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolError(
            f"spool directory {directory} is in use by another process; "
            "give each ingest process its own INGEST_SPOOL_DIR"
        ) from None
    return fd


def _check_owner(directory: Path, owner: str) -> None:
    """Records spooled for one topology prefix must not replay into another's exchange."""
    marker = directory / ".owner"
    if marker.exists():
        found = marker.read_text().strip()
        if found != owner and any(directory.glob(f"{_PREFIX}*{_SUFFIX}")):
            raise SpoolError(
                f"spool directory {directory} holds records of {found!r}, not {owner!r}; "
                "replay them with that configuration or choose another INGEST_SPOOL_DIR"
            )
    marker.write_text(owner + "\n")


def _reopen_truncated(fh: BinaryIO, path: Path, offset: int) -> BinaryIO:
    with contextlib.suppress(OSError):
        fh.close()
    with open(path, "r+b") as raw:
        raw.truncate(offset)
        os.fsync(raw.fileno())
    return open(path, "ab")


def _disk_free(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the spool's device."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _probe_write(directory: Path, size: int) -> None:
    path = directory / ".probe"
    try:
        with open(path, "wb") as fh:
            fh.write(b"\0" * max(size, 1))
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        path.unlink(missing_ok=True)


def _resolve(fut: asyncio.Future[bool], ok: bool) -> None:
    if not fut.done():
        fut.set_result(ok)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_segment(path: Path) -> list[bytes]:
    """Every intact record of a segment; stops at a torn or corrupt tail."""
    data = path.read_bytes()
    records, offset = [], 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        body = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(body) != length or zlib.crc32(body) != crc:
            log.warning("spool segment has a torn tail", extra={"segment": path.name})
            break
        records.append(body)
        offset += _HEADER.size + length
    return records
