"""The hits' publish lane: one AMQP connection that only publishes batches under
publisher confirms, written and settled in the protocol's own callbacks.

Through aio-pika a batch's confirm reaches the publisher four event-loop turns after it
arrives (aiormq's reader task, the confirm future, the publishing task, its writer task),
and the next batch leaves as many turns later. At wrk -c64 each turn holds dozens of
requests' work, and on the wire a confirm's arrival to the next publish took ~1.5-2 ms
of a ~4.5 ms cycle (bench/README.md): here the Basic.Ack is parsed in `data_received`,
which resolves the batch's future, and a publish is written to the socket in the call
that asks for it.

The lane holds no topology and no reconnect loop of its own. `HitsLane` (re)opens it
from the service's `Broker` connect hook, after the topology is declared, and closes it
when that connection goes; when the lane dies by itself it asks the `Broker` to
reconnect (`Broker.drop`), so readiness, backoff and the spool's replay stay the
`Broker`'s. Heartbeats are off on this connection: the `Broker`'s own connection to the
same server carries them, and a frozen broker shows as confirms that time out, which
the publisher already spools around. Frames are pamqp's, as aiormq's are.

Only `amqp://` URLs use a lane; with `amqps://` (whose TLS options aio-pika reads from
the URL) hits publish through aio-pika as before, as they do with
`INGEST_PUBLISH_LANE=false`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aio_pika
from pamqp import commands, frame, header
from pamqp.body import ContentBody
from pamqp.exceptions import UnmarshalingException

log = logging.getLogger("belfry.publishlane")

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
CHANNEL = 1
# The broker's frame_max when it proposes none (0: no limit); RabbitMQ proposes 131072.
DEFAULT_FRAME_MAX = 131072


class LaneClosed(ConnectionError):
    """The lane can't take or confirm a publish: not open, closed, or a Basic.Nack."""


def lane_supported(url: str) -> bool:
    return urlsplit(url).scheme == "amqp"


class PublishLane(asyncio.Protocol):
    """One connection, one channel in confirm mode; `publish()` returns a future the
    broker's Basic.Ack resolves (a Basic.Nack or the connection's end fails it)."""

    def __init__(self, url: str, name: str, on_lost: Callable[[str], None] | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5672
        self._user = unquote(parts.username or "guest")
        self._password = unquote(parts.password or "guest")
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.name = name
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._opened: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._tag = 0  # the channel's last delivery tag
        self._frame_max = DEFAULT_FRAME_MAX
        self.open = False
        self._closing = False  # closed on purpose: not a loss to report

    # --- lifecycle ---------------------------------------------------------------------

    async def connect(self, timeout: float) -> None:
        """Connect, log in, open the channel and select confirms; raises on failure."""
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: self, self.host, self.port)
                await self._opened
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close now; publishes not yet confirmed fail with LaneClosed (the publisher
        spools them, the broker may still have them: at-least-once, as with aio-pika)."""
        self._closing = True
        self.open = False
        transport, self._transport = self._transport, None
        if transport is not None and not transport.is_closing():
            # A polite Connection.Close: the broker logs no "client unexpectedly closed".
            transport.write(frame.marshal(commands.Connection.Close(200, "closing", 0, 0), 0))
            transport.close()
        self._fail(LaneClosed("publish lane closed"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: cast, don't check.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(PROTOCOL_HEADER)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(f"connection lost: {exc}" if exc else "connection closed")

    def _lost(self, reason: str) -> None:
        was_open, self.open = self.open, False
        self._fail(LaneClosed(f"publish lane: {reason}"))
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        if was_open and not self._closing:
            log.warning("publish lane lost", extra={"error": reason})
            if self._on_lost is not None:
                self._on_lost(reason)
        self._closing = True  # once

    def _fail(self, exc: LaneClosed) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(exc)

    # --- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 8:
            try:
                used, _channel, value = frame.unmarshal(bytes(self._buffer))
            except UnmarshalingException:
                if _frame_complete(self._buffer):
                    self._protocol_error("a frame that could not be read")
                return  # wait for the rest of the frame
            del self._buffer[:used]
            self._on_frame(value)
            if self._transport is None:
                return

    def _on_frame(self, value: Any) -> None:
        if isinstance(value, commands.Basic.Ack):
            self._settle(value.delivery_tag, value.multiple, None)
        elif isinstance(value, commands.Basic.Nack):
            self._settle(value.delivery_tag, value.multiple, LaneClosed("broker nacked"))
        elif isinstance(value, commands.Connection.Start):
            if "PLAIN" not in str(value.mechanisms).split():
                self._protocol_error(f"no PLAIN login offered: {value.mechanisms}")
                return
            self._send(
                commands.Connection.StartOk(
                    client_properties={
                        "connection_name": self.name,
                        "product": "belfry",
                        # A refused login then comes as Connection.Close 403, with the
                        # broker's reason, not as a bare reset.
                        "capabilities": {"authentication_failure_close": True},
                    },
                    mechanism="PLAIN",
                    response=f"\0{self._user}\0{self._password}",
                )
            )
        elif isinstance(value, commands.Connection.Tune):
            self._frame_max = value.frame_max or DEFAULT_FRAME_MAX
            self._send(commands.Connection.TuneOk(value.channel_max, self._frame_max, 0))
            self._send(commands.Connection.Open(self.vhost))
        elif isinstance(value, commands.Connection.OpenOk):
            self._send(commands.Channel.Open(), CHANNEL)
        elif isinstance(value, commands.Channel.OpenOk):
            self._send(commands.Confirm.Select(), CHANNEL)
        elif isinstance(value, commands.Confirm.SelectOk):
            self.open = True
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(None)
        elif isinstance(value, commands.Channel.Close):
            # E.g. a publish to an exchange that is gone (404): answer, then reconnect.
            self._send(commands.Channel.CloseOk(), CHANNEL)
            self._lost(f"channel closed by the broker: {value.reply_code} {value.reply_text}")
        elif isinstance(value, commands.Connection.Close):
            self._send(commands.Connection.CloseOk())
            self._lost(f"closed by the broker: {value.reply_code} {value.reply_text}")
        # Anything else (heartbeats, Connection.Blocked, Channel.Flow) needs no answer.

    def _protocol_error(self, reason: str) -> None:
        self._lost(reason)

    def _settle(self, tag: int, multiple: bool, exc: LaneClosed | None) -> None:
        tags = [t for t in self._pending if t <= tag] if multiple else [tag]
        for t in tags:
            fut = self._pending.pop(t, None)
            if fut is None or fut.done():
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    # --- writing -----------------------------------------------------------------------

    def _send(self, value: Any, channel: int = 0) -> None:
        if self._transport is not None:
            self._transport.write(frame.marshal(value, channel))

    def publish(
        self,
        body: bytes,
        properties: commands.Basic.Properties,
        exchange: str,
        routing_key: str,
    ) -> asyncio.Future[None]:
        """Write one message now; the future resolves when the broker confirms it."""
        if not self.open or self._transport is None:
            raise LaneClosed("publish lane not open")
        self._tag += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[self._tag] = fut
        parts = [
            frame.marshal(
                commands.Basic.Publish(exchange=exchange, routing_key=routing_key), CHANNEL
            ),
            frame.marshal(header.ContentHeader(0, len(body), properties), CHANNEL),
        ]
        step = self._frame_max - 8  # a frame's header and end octet
        for start in range(0, len(body), step):
            parts.append(frame.marshal(ContentBody(body[start : start + step]), CHANNEL))
        self._transport.write(b"".join(parts))
        return fut

    @property
    def unconfirmed(self) -> int:
        return len(self._pending)


def _frame_complete(buffer: bytearray) -> bool:
    """Whether the buffer holds a whole frame (so a failed read is not for want of bytes)."""
    if buffer[:4] == b"AMQP":
        return True  # the broker refused our protocol version
    size = int.from_bytes(buffer[3:7], "big")
    return len(buffer) >= 8 + size


class LaneExchange:
    """What BatchPublisher publishes to (it awaits `publish`, as aio-pika's exchange)."""

    def __init__(self, lane: PublishLane, name: str) -> None:
        self.lane = lane
        self.name = name

    async def publish(
        self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = False
    ) -> None:
        # `mandatory` is never asked for: the readiness probe's unroutable message is
        # confirmed and dropped, as through aio-pika with mandatory=False.
        await self.lane.publish(message.body, message.properties, self.name, routing_key)


class HitsLane:
    """The service's lane across reconnects: opened by a `Broker` connect hook, closed
    by its disconnect hook; a lane that dies by itself makes the `Broker` reconnect."""

    def __init__(
        self, url: str, name: str, exchange_name: str, drop: Callable[[str], None]
    ) -> None:
        self._url = url
        self._name = name
        self._exchange_name = exchange_name
        self._drop = drop
        self._current: LaneExchange | None = None
        self.opened = 0

    async def reopen(self, timeout: float = 5.0) -> None:
        self.close()
        lane = PublishLane(self._url, self._name, on_lost=self._drop)
        await lane.connect(timeout)
        self._current = LaneExchange(lane, self._exchange_name)
        self.opened += 1

    def close(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            current.lane.close()

    @property
    def exchange(self) -> LaneExchange | None:
        current = self._current
        return current if current is not None and current.lane.open else None
