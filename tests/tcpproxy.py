"""A TCP proxy a test can cut and restore, to make a real dependency (the Temporal server,
PostgreSQL) go down and come back without mocking it: `cut()` closes the listening socket and
resets every live connection, so clients see exactly what a crashed server looks like (refused
connects, dropped sockets); `stall()` makes it a server that accepts but never answers;
`restore()` listens again on the same port and passes traffic through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0  # chosen by the OS on the first start, then kept
        self._server: asyncio.Server | None = None
        self._stalled = False
        self._conns: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._server is not None

    async def restore(self) -> None:
        """Listen (again): new connections reach the target."""
        await self._listen(stall=False)

    async def stall(self) -> None:
        """Reset live connections, then accept new ones but pass nothing either way: a server
        that hangs instead of refusing."""
        await self._listen(stall=True)

    async def _listen(self, *, stall: bool) -> None:
        if self._server is not None and self._stalled == stall:
            return
        await self.cut()
        self._stalled = stall
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and reset every live connection, both ways."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._stalled:
                while await reader.read(65536):
                    pass
                return
            up_reader, upstream = await asyncio.open_connection(self.target_host, self.target_port)
            self._writers.add(upstream)
            async with asyncio.TaskGroup() as pipes:  # one direction failing ends both
                pipes.create_task(_pipe(reader, upstream))
                pipes.create_task(_pipe(up_reader, writer))
        except* OSError:
            pass  # the target is down or either side went away: the other is reset below
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


@asynccontextmanager
async def tcp_proxy(target: str, *, up: bool = True) -> AsyncIterator[TcpProxy]:
    """A proxy to `host:port`, listening on a free local port (or with `up=False`, holding one
    that is cut until the test restores it)."""
    host, _, port = target.rpartition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.restore()  # pick the port even when the proxy starts cut
    if not up:
        await proxy.cut()
    try:
        yield proxy
    finally:
        await proxy.cut()
