"""One address in front of several API processes, as a load balancer puts it in production: a
small asyncio TCP proxy that hands each new connection to the next target in turn (round-robin
per connection) and counts what each target was given. A client that opens a connection per
request (no keep-alive) therefore alternates its requests over the targets. Used by the soak's
two-of-everything mode (bench/soak.py --apis 2)."""

from __future__ import annotations

import asyncio
import contextlib


class RoundRobin:
    """`start()` listens on a free loopback port (`url`); `stop()` closes it and every live
    connection. `connections[i]` counts the connections handed to `targets[i]`, `refused[i]`
    those whose target did not accept (the client sees the connection closed and retries)."""

    def __init__(self, targets: list[tuple[str, int]]) -> None:
        assert targets, "at least one target"
        self.targets = targets
        self.connections = [0] * len(targets)
        self.refused = [0] * len(targets)
        self.port = 0
        self._next = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self._next
        self._next = (self._next + 1) % len(self.targets)
        self.connections[index] += 1
        task = asyncio.create_task(self._serve(index, reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _serve(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = self.targets[index]
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, upstream = await asyncio.open_connection(host, port)
            except OSError:
                self.refused[index] += 1
                return
            async with asyncio.TaskGroup() as pipes:  # one direction failing ends both
                pipes.create_task(_pipe(reader, upstream))
                pipes.create_task(_pipe(up_reader, writer))
        except* OSError:
            pass  # either side went away: the other is closed below
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
