"""A TCP proxy a test can cut and heal, to simulate a broker or database outage
without touching the shared servers, or freeze and thaw, to simulate a server that
stops answering (SIGSTOP) while its connections stay open."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut_now = False
        self.connections = 0
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url_for(self, url: str) -> str:
        """`url` with its host:port pointed at this proxy."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        hostport = f"127.0.0.1:{self.port}"
        new = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
        return parts._replace(netloc=new).geturl()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `heal()`."""
        self.cut_now = True
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    def heal(self) -> None:
        self.cut_now = False

    def freeze(self) -> None:
        """Stop forwarding bytes both ways, keeping every connection open (and accepting
        new ones), like a server stopped with SIGSTOP: peers see silence, not a close."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Forward again; bytes held while frozen go through in order."""
        self._flowing.set()

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
            self._tasks.discard(task)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                await self._flowing.wait()  # frozen: stop reading, so nothing flows
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()  # frozen mid-read: hold the chunk until thawed
                writer.write(data)
                await writer.drain()
