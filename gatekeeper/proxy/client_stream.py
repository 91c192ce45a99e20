"""A client's connection to the proxy as one asyncio.Protocol: the reads and writes the
transport makes of it (gatekeeper.proxy.server.ClientConnection, the relays), with
asyncio's StreamReader and StreamWriter semantics for those calls, without their objects.

asyncio.start_unix_server gives every connection a StreamReaderProtocol, a StreamReader
and a StreamWriter: each piece that arrives is copied into the reader's bytearray and
copied out again by read(), through two more Python layers. The proxy wakes for each
request with cold caches (the CLI and the engine ran in between), so that code costs
more than its size says. Here a piece that arrives is kept as it came and read() hands it
over whole (or its first `n` bytes).

Kept from asyncio's streams: reading pauses while more than 2 * `limit` bytes wait unread
(a client that sends faster than the proxy reads is held in its socket), and resumes below
`limit`; read() raises what ended the connection (a reset), else b"" at its end; drain()
waits while the transport's write buffer is over its high-water mark and raises
ConnectionResetError once the connection is lost; the end of the client's sending (a
half-close) keeps the connection open for the answer.
"""

from __future__ import annotations

import asyncio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any


class ClientStream(asyncio.Protocol):
    """One client connection: reader and writer in one object."""

    def __init__(self, handle: Callable[[ClientStream, ClientStream], Coroutine[Any, Any, None]],
                 limit: int) -> None:
        self.handle = handle  # the connection's coroutine, started once the transport is ours
        self.limit = limit
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.WriteTransport = None  # type: ignore[assignment]  # set by connection_made
        self.task: asyncio.Task[None] | None = None
        self.pieces: list[bytes] = []  # arrived, not yet read
        self.unread = 0  # their bytes
        self.ended = False  # the client's end of stream (or the connection's)
        self.error: Exception | None = None  # what ended the connection, raised by read
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for bytes
        self.reading_paused = False
        self.writing_paused = False
        self.lost = False
        self.drainers: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------ the transport's calls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a unix socket's: read and write
        self.task = self.loop.create_task(self.handle(self, self))

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        self.unread += len(data)
        self.wake()
        if self.unread > 2 * self.limit and not self.reading_paused:
            self.transport.pause_reading()  # type: ignore[attr-defined]  # a read transport too
            self.reading_paused = True

    def eof_received(self) -> bool:
        self.ended = True
        self.wake()
        return True  # keep the connection: the answer still goes out

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is None:
            self.ended = True
        else:
            self.error = exc
        self.wake()
        drainers, self.drainers = self.drainers, []
        for waiter in drainers:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drainers, self.drainers = self.drainers, []
        for waiter in drainers:
            if not waiter.done():
                waiter.set_result(None)

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ reading (StreamReader.read)

    async def read(self, n: int) -> bytes:
        """Up to `n` bytes as they came (n > 0), b"" at the end; the connection's error if it broke."""
        if self.error is not None:
            raise self.error
        if not self.pieces and not self.ended:
            if self.waiter is not None:  # (asyncio's StreamReader refuses it the same way)
                raise RuntimeError("read() called while another coroutine is already waiting for data")
            if self.reading_paused:
                self.resume_reading()
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
            if self.error is not None:
                raise self.error
        if not self.pieces:
            return b""
        data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        rest = data[n:]
        self.pieces = [rest] if rest else []
        self.unread = len(rest)
        if self.reading_paused and self.unread <= self.limit:
            self.resume_reading()
        return data[:n] if rest else data

    def resume_reading(self) -> None:
        self.reading_paused = False
        self.transport.resume_reading()  # type: ignore[attr-defined]  # a read transport too

    # ------------------------------------------------------------ writing (StreamWriter's calls)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        if self.error is not None:
            raise self.error
        if self.transport.is_closing():
            await asyncio.sleep(0)  # as StreamWriter.drain: let connection_lost be seen
        if self.lost:
            raise ConnectionResetError("Connection lost")
        if not self.writing_paused:
            return
        waiter = self.loop.create_future()
        self.drainers.append(waiter)
        await waiter

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def write_eof(self) -> None:
        self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def get_extra_info(self, name: str, default: object = None) -> Any:
        return self.transport.get_extra_info(name, default)
