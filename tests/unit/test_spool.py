"""The local spool: durable appends, ordered replay, capacity, torn tails, restart replay
and at-least-once drains when publishing fails."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.ingest.spool import Spool, SpoolError, read_segment

HEADER = 8  # length + crc32


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.spool"))


def collector() -> tuple[list[bytes], Callable[[list[bytes]], Awaitable[None]]]:
    published: list[bytes] = []

    async def publish(records: list[bytes]) -> None:
        published.extend(records)

    return published, publish


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = Spool(tmp_path / "spool", max_bytes=1 << 20)
    yield s
    s.close()


async def test_append_then_drain_returns_records_in_order(spool: Spool) -> None:
    bodies = [b'[{"n":1}]', b'[{"n":2}]', b'[{"n":3}]']
    for body in bodies:
        assert await spool.append(body) is True
    assert spool.pending() is True
    assert spool.appended == 3

    published, publish = collector()
    assert await spool.drain(publish) == 3
    assert published == bodies
    assert spool.replayed == 3
    assert spool.pending() is False
    assert spool.size_bytes == 0


async def test_drain_of_empty_spool_publishes_nothing(spool: Spool) -> None:
    published, publish = collector()
    assert await spool.drain(publish) == 0
    assert published == []


async def test_drain_deletes_replayed_segments(spool: Spool) -> None:
    await spool.append(b"one")
    _, publish = collector()
    await spool.drain(publish)
    # Only the fresh, empty current segment remains.
    remaining = segments(spool.directory)
    assert len(remaining) == 1
    assert remaining[0].stat().st_size == 0


async def test_concurrent_appends_are_all_stored_in_submission_order(spool: Spool) -> None:
    bodies = [f"rec-{i}".encode() for i in range(25)]
    results = await asyncio.gather(*(spool.append(b) for b in bodies))
    assert results == [True] * 25
    published, publish = collector()
    await spool.drain(publish)
    assert published == bodies


async def test_size_counts_header_and_body(spool: Spool) -> None:
    await spool.append(b"x" * 100)
    await spool.append(b"y" * 50)
    assert spool.size_bytes == 150 + 2 * HEADER
    assert sum(p.stat().st_size for p in segments(spool.directory)) == spool.size_bytes


async def test_full_and_append_refused_past_max_bytes(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=2 * (HEADER + 10))
    try:
        assert await s.append(b"a" * 10) is True
        assert s.full is False
        assert await s.check() is None
        assert await s.append(b"b" * 10) is True
        assert s.full is True
        assert await s.check() == (
            "spool cannot take the next batch: 0 of 36 bytes free, batches need up to 18"
        )
        assert await s.append(b"c") is False
        assert s.refused == "spool full: 36 of 36 bytes used"
        assert s.size_bytes == 36
        published, publish = collector()
        await s.drain(publish)
        assert published == [b"a" * 10, b"b" * 10]
    finally:
        s.close()


async def test_append_that_would_overflow_is_refused_before_full(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=40)
    try:
        assert await s.append(b"a" * 10) is True  # 18 bytes used
        assert await s.append(b"b" * 20) is False  # would need 46
        assert s.full is False
        assert s.size_bytes == 18
        assert await s.append(b"c" * 14) is True  # exactly 40
        assert s.full is True
    finally:
        s.close()


async def test_drain_frees_capacity(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=HEADER + 10)
    try:
        assert await s.append(b"a" * 10) is True
        assert s.full is True
        _, publish = collector()
        await s.drain(publish)
        assert s.full is False
        assert await s.append(b"b" * 10) is True
    finally:
        s.close()


async def test_read_segment_skips_torn_tail(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    for body in (b"first", b"second", b"third-record"):
        await s.append(body)
    s.close()
    [segment] = segments(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # kill -9 in the middle of writing the last record

    assert read_segment(segment) == [b"first", b"second"]


async def test_read_segment_skips_torn_header(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    await s.append(b"first")
    s.close()
    [segment] = segments(tmp_path)
    with segment.open("ab") as fh:
        fh.write(b"\x00\x00\x00")  # less than a header
    assert read_segment(segment) == [b"first"]


async def test_read_segment_stops_at_crc_mismatch(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    for body in (b"aaaa", b"bbbb", b"cccc"):
        await s.append(body)
    s.close()
    [segment] = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second_body = 2 * HEADER + 4
    data[second_body] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert read_segment(segment) == [b"aaaa"]


async def test_drain_after_torn_tail_returns_intact_records(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    for body in (b"first", b"second", b"third-record"):
        await s.append(body)
    s.close()
    [segment] = segments(tmp_path)
    segment.write_bytes(segment.read_bytes()[:-3])

    restarted = Spool(tmp_path, max_bytes=1 << 20)
    try:
        published, publish = collector()
        assert await restarted.drain(publish) == 2
        assert published == [b"first", b"second"]
        assert restarted.pending() is False
        assert restarted.size_bytes == 0
        assert segment.exists() is False
    finally:
        restarted.close()


async def test_segments_found_at_start_up_are_replayed_before_new_records(
    tmp_path: Path,
) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    await first.append(b"before-crash-1")
    await first.append(b"before-crash-2")
    first.close()
    on_disk = segments(tmp_path)
    assert len(on_disk) == 1

    second = Spool(tmp_path, max_bytes=1 << 20)
    try:
        assert second.pending() is True
        assert second.size_bytes == on_disk[0].stat().st_size
        assert await second.append(b"after-restart") is True
        published, publish = collector()
        assert await second.drain(publish) == 3
        assert published == [b"before-crash-1", b"before-crash-2", b"after-restart"]
        assert second.pending() is False
    finally:
        second.close()


async def test_new_spool_numbers_segments_after_existing_ones(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    await first.append(b"x")
    first.close()
    [old] = segments(tmp_path)
    second = Spool(tmp_path, max_bytes=1 << 20)
    try:
        await second.append(b"y")
        names = [p.name for p in segments(tmp_path)]
        assert names[0] == old.name
        assert len(names) == 2
        assert names[1] > names[0]
    finally:
        second.close()


async def test_close_removes_empty_current_segment(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    s.close()
    assert segments(tmp_path) == []


async def test_failing_publish_raises_and_keeps_segment_for_next_drain(spool: Spool) -> None:
    bodies = [b"a", b"b", b"c"]
    for body in bodies:
        await spool.append(body)

    attempts: list[list[bytes]] = []

    async def flaky(records: list[bytes]) -> None:
        attempts.append(records)
        raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError, match="broker went away"):
        await spool.drain(flaky)
    assert attempts == [bodies]  # a whole segment per call, in order
    assert spool.pending() is True
    assert spool.size_bytes == 3 * (HEADER + 1)
    kept = [p for p in segments(spool.directory) if p.stat().st_size > 0]
    assert [read_segment(p) for p in kept] == [bodies]

    published, publish = collector()
    assert await spool.drain(publish) == 3
    # At-least-once: whatever of the segment went out before the failure goes again;
    # the writer's ON CONFLICT drops the copies.
    assert published == bodies
    assert spool.pending() is False


async def test_on_tail_is_called_once_only_a_small_last_segment_is_left(spool: Spool) -> None:
    await spool.append(b"old")
    await spool.drain(collector()[1])  # seals and replays
    await spool.append(b"one")
    tails: list[int] = []
    seen: list[bytes] = []

    async def publish(records: list[bytes]) -> None:
        seen.extend(records)
        if len(seen) == 1:
            # Appended while the tail replays: the drain goes on until nothing is left.
            assert await spool.append(b"two") is True

    assert await spool.drain(publish, lambda: tails.append(len(seen))) == 2
    assert seen == [b"one", b"two"]
    assert tails == [0, 1]
    assert spool.pending() is False


class FailingFile:
    """Wraps the spool's segment file; the next write writes `keep` of its bytes (a
    short write, e.g. ENOSPC) and raises."""

    def __init__(self, real: Any, keep: float) -> None:
        self.real = real
        self.keep = keep
        self.armed = True

    def write(self, data: bytes) -> int:
        if self.armed:
            self.armed = False
            part = data[: int(len(data) * self.keep)]
            if part:
                self.real.write(part)
                self.real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self.real.write(data))

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return int(self.real.fileno())

    def close(self) -> None:
        self.real.close()


async def test_failed_write_is_reported_as_not_stored(spool: Spool) -> None:
    spool._fh = FailingFile(spool._fh, keep=0.0)  # type: ignore[assignment]
    assert await spool.append(b"lost") is False
    assert spool.appended == 0


async def test_failed_write_does_not_consume_capacity(spool: Spool) -> None:
    spool._fh = FailingFile(spool._fh, keep=0.0)  # type: ignore[assignment]
    assert await spool.append(b"x" * 100) is False
    assert spool.size_bytes == 0


async def test_records_acknowledged_after_a_short_write_are_replayed(spool: Spool) -> None:
    assert await spool.append(b"first") is True
    spool._fh = FailingFile(spool._fh, keep=0.5)  # type: ignore[assignment]
    assert await spool.append(b"second") is False
    assert await spool.append(b"third") is True  # acknowledged: must not be lost
    published, publish = collector()
    await spool.drain(publish)
    assert published == [b"first", b"third"]


def test_a_second_spool_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s", 1 << 20, owner="prefix=a")
    try:
        with pytest.raises(SpoolError, match="in use by another process"):
            Spool(tmp_path / "s", 1 << 20, owner="prefix=a")
    finally:
        first.close()
    Spool(tmp_path / "s", 1 << 20, owner="prefix=a").close()  # free again after close


async def test_records_of_another_prefix_are_not_replayed_into_this_one(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s", 1 << 20, owner="prefix=a")
    assert await first.append(b"for a") is True
    first.close()
    with pytest.raises(SpoolError, match="holds records of 'prefix=a'"):
        Spool(tmp_path / "s", 1 << 20, owner="prefix=b")
    again = Spool(tmp_path / "s", 1 << 20, owner="prefix=a")
    assert again.pending()
    again.close()


# --- readiness: can the spool take the next batch? ---------------------------------------


async def test_check_fails_while_the_room_left_is_smaller_than_the_largest_batch(
    tmp_path: Path,
) -> None:
    # The trial's case: 3938 of 4096 bytes used and every batch refused for not fitting,
    # while the old check said healthy (not "full").
    s = Spool(tmp_path, max_bytes=4096)
    try:
        for _ in range(12):
            assert await s.append(b"x" * 320) is True
        assert await s.append(b"y" * 320) is False
        assert s.full is False  # 3936 of 4096 bytes
        assert await s.check() == (
            "spool cannot take the next batch: 160 of 4096 bytes free, batches need up to 328"
        )
    finally:
        s.close()


async def test_check_wants_the_reserve_free_before_any_batch_was_seen(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1000, reserve_bytes=600)
    try:
        assert await s.check() is None
        assert await s.append(b"x" * 500) is True
        assert await s.check() == (
            "spool cannot take the next batch: 492 of 1000 bytes free, batches need up to 600"
        )
    finally:
        s.close()


async def test_a_failed_write_keeps_the_spool_unready_until_a_write_succeeds(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool._fh = FailingFile(spool._fh, keep=0.0)  # type: ignore[assignment]
    assert await spool.append(b"lost") is False
    assert spool.refused == ("spool write failed: OSError: [Errno 28] No space left on device")

    def still_failing(directory: Path, size: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("services.ingest.spool._probe_write", still_failing)
    assert await spool.check() == "spool cannot write: OSError: [Errno 5] Input/output error"
    monkeypatch.undo()
    # The disk works again (a probe write succeeds): ready without waiting for a batch.
    assert await spool.check() is None
    assert await spool.append(b"kept") is True
    assert spool.refused is None


async def test_write_errors_are_logged_once_per_interval_with_a_count(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        spool._fh = FailingFile(spool._fh, keep=0.0)  # type: ignore[assignment]
        assert await spool.append(b"lost") is False
    lines = [r for r in caplog.records if r.name == "belfry.spool" and r.levelname == "ERROR"]
    assert len(lines) == 1
    assert lines[0].error == "OSError: [Errno 28] No space left on device"  # type: ignore[attr-defined]
    assert lines[0].errno == errno.ENOSPC  # type: ignore[attr-defined]


async def test_a_full_disk_refuses_the_batch_says_so_and_makes_the_spool_unready(
    tiny_disk: Path,
) -> None:
    s = Spool(tiny_disk / "spool", max_bytes=1 << 30)
    try:
        assert await s.check() is None
        stored = 0
        while await s.append(b"x" * 4000):
            stored += 1
        assert 5 < stored < 20  # 64 KiB of 1 GiB: the disk, not the spool, is full
        assert s.refused is not None and "[Errno 28]" in s.refused
        reason = await s.check()
        assert reason is not None
        assert "No space left on device" in reason or "spool disk full" in reason
        _published, publish = collector()
        assert await s.drain(publish) == stored  # what was acknowledged is all there
        assert await s.check() is None  # space came back
        assert await s.append(b"y" * 4000) is True
    finally:
        s.close()
