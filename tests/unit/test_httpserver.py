"""shared.httpserver's bookkeeping: the connection cap and the end-of-burst signal that
hands memory back to the OS (the sockets themselves: tests/integration/test_http_hardening.py)."""

from __future__ import annotations

from shared.httpserver import ConnectionCount, HttpLimits
from shared.settings import CommonSettings


def test_the_cap_refuses_beyond_the_limit_and_admits_again_after_a_close() -> None:
    count = ConnectionCount(2)
    assert count.take() and count.take()
    assert not count.take()
    assert count.open == 2
    count.give_back()
    assert count.take()


def test_a_drained_burst_is_signalled_once_a_small_one_never() -> None:
    signals: list[int] = []
    count = ConnectionCount(10_000, lambda: signals.append(count.open), burst=100)
    for _ in range(99):
        count.take()
    for _ in range(99):
        count.give_back()
    assert signals == []  # below the burst size: nothing to hand back
    for _ in range(400):
        count.take()
    for _ in range(300):
        count.give_back()
    assert signals == [100]  # a quarter of the 400 peak
    for _ in range(90):
        count.give_back()
    assert signals == [100]


def test_limits_come_from_the_common_settings() -> None:
    common = CommonSettings.from_env(
        "x", {"HTTP_HEADER_TIMEOUT_SECONDS": "3", "HTTP_MAX_CONNECTIONS": "9"}
    )
    assert HttpLimits.of(common) == HttpLimits(header_timeout=3.0, max_connections=9)
