"""One supervised AMQP connection per service.

`Broker` connects in the background, runs the service's `on_connect` hooks (declare
topology, start consumers) on each fresh connection, and reconnects with jittered
backoff when the connection or channel dies. `available` is true only while a channel
is open and every hook has run: it is what `/readyz` reports and what the publisher
checks before choosing between the broker and the spool. A broker that is down at
start-up does not stop the service from starting; `wait_first_attempt()` lets a service
open its port only once the first connect has succeeded or failed, so a restart with the
broker up does not spool the first hits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from shared.backoff import Backoff
from shared.failures import error_text
from shared.settings import redact_url
from shared.tasks import stop_task

log = logging.getLogger("belfry.broker")

ConnectHook = Callable[[AbstractChannel], Awaitable[None]]


class Broker:
    def __init__(
        self,
        url: str,
        name: str,
        *,
        reconnect_min: float = 0.2,
        reconnect_max: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.name = name
        self._hooks: list[ConnectHook] = []
        self._disconnect_hooks: list[Callable[[], None]] = []
        self._available_hooks: list[Callable[[], None]] = []
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._attempted = asyncio.Event()  # the first connect ended, either way
        self._conn: AbstractRobustConnection | None = None
        self._lost: asyncio.Event | None = None  # set: the current connection is done
        self.channel: AbstractChannel | None = None
        self.last_error: str | None = "not connected yet"
        self.connects = 0

    @property
    def available(self) -> bool:
        return self._ready.is_set()

    def on_connect(self, hook: ConnectHook) -> None:
        """Run `hook(channel)` on every fresh connection, in registration order."""
        self._hooks.append(hook)

    def on_disconnect(self, hook: Callable[[], None]) -> None:
        self._disconnect_hooks.append(hook)

    def on_available(self, hook: Callable[[], None]) -> None:
        """Run `hook()` each time the broker becomes available (after the connect hooks)."""
        self._available_hooks.append(hook)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"broker-{self.name}")

    async def wait_available(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_first_attempt(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until the first connect succeeded or failed;
        True if the broker is available then."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), timeout)
        return self.available

    async def stop(self) -> None:
        self._stopping.set()
        await stop_task(self._task)
        await self._close()

    def drop(self, reason: str) -> None:
        """Give up the current connection and reconnect with the usual backoff: something
        the service opened beside it, on its connect hook, died (ingest's publish lane)."""
        lost = self._lost
        if lost is not None and not lost.is_set():
            self.last_error = reason
            self._mark_down()  # at once: the publisher spools from now on
            lost.set()

    async def check(self) -> str | None:
        """Readiness check: None when usable, else why not."""
        return None if self.available else f"broker unavailable: {self.last_error}"

    async def open_channel(self) -> AbstractChannel:
        """Another channel on the current connection, for RPCs that must not share the
        main channel's fate (an RPC that fails or times out closes its channel): checks.
        The caller closes it; it dies with the connection."""
        conn = self._conn
        if conn is None or conn.is_closed:
            raise ConnectionError(f"broker unavailable: {self.last_error}")
        return await conn.channel(publisher_confirms=False)

    async def _close(self) -> None:
        self._mark_down()
        conn, self._conn, self.channel = self._conn, None, None
        if conn is not None and not conn.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    def _mark_down(self) -> None:
        if self._ready.is_set():
            self._ready.clear()
            for hook in self._disconnect_hooks:
                hook()

    async def _supervise(self) -> None:
        backoff = Backoff(self._reconnect_min, self._reconnect_max)
        while not self._stopping.is_set():
            lost = self._lost = asyncio.Event()
            started = time.monotonic()
            try:
                conn = await aio_pika.connect(
                    self.url,
                    timeout=self._connect_timeout,
                    client_properties={"connection_name": self.name},
                )
                self._conn = conn  # type: ignore[assignment]
                conn.close_callbacks.add(lambda *_, ev=lost: ev.set())
                channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
                channel.close_callbacks.add(lambda *_, ev=lost: ev.set())
                self.channel = channel
                for hook in self._hooks:
                    await hook(channel)
                self.connects += 1
                self.last_error = None
                self._ready.set()
                for up in self._available_hooks:
                    up()
                self._attempted.set()
                log.info("broker connected", extra={"broker": redact_url(self.url)})
                await lost.wait()
                self.last_error = self.last_error or "connection lost"
                log.warning("broker connection lost", extra={"broker": redact_url(self.url)})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connect/declare failures: retry, never crash
                self.last_error = error_text(exc)[:300]
                log.warning("broker connect failed", extra={"error": self.last_error})
            self._attempted.set()
            await self._close()
            if time.monotonic() - started > 10:
                backoff.reset()  # it was up for a while: start the backoff over
            await asyncio.sleep(backoff.failed())


class SideChannel:
    """A channel of its own on a Broker's connection, (re)opened when needed, for
    questions to the broker that may fail or time out (readiness, queue depths): such an
    RPC closes its channel, and closing the consuming one would drop every held
    message's delivery tag (the broker redelivers them all)."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> AbstractChannel | None:
        """The channel; None while the broker is down."""
        if not self._broker.available:
            return None
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._broker.open_channel()
            return self._channel
