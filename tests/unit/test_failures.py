"""Error texts are never empty; repeated errors log once per interval with a count."""

from __future__ import annotations

import errno

from shared.failures import LogThrottle, error_text


def test_an_exception_without_a_message_still_says_what_happened() -> None:
    # The trial saw `"error":""` and `TimeoutError: ` in ingest logs.
    assert error_text(TimeoutError()) == "TimeoutError: timed out"
    assert error_text(ConnectionError()) == "ConnectionError: no message"
    assert error_text(KeyError("hits")) == "KeyError: 'hits'"
    assert error_text(RuntimeError("boom")) == "RuntimeError: boom"


def test_an_empty_exception_raised_from_another_names_the_cause() -> None:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except OSError as exc:
            raise StopAsyncIteration from exc
    except StopAsyncIteration as outer:
        assert error_text(outer) == (
            "StopAsyncIteration from ConnectionResetError: [Errno 104] Connection reset by peer"
        )


def test_an_os_error_names_its_errno() -> None:
    assert error_text(OSError(errno.ENOSPC, "No space left on device")) == (
        "OSError: [Errno 28] No space left on device"
    )
    assert error_text(OSError(errno.EIO, "")) == "OSError: [Errno 5] Input/output error"


def test_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = LogThrottle(5.0, clock=lambda: now[0])
    assert throttle.allow() == 0
    assert [throttle.allow() for _ in range(3)] == [None, None, None]
    now[0] = 4.9
    assert throttle.allow() is None
    now[0] = 5.0
    assert throttle.allow() == 4
    assert throttle.allow() is None
