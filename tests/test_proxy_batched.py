"""gatekeeper.proxy.server.Batched: a streamed body that comes fast in small pieces (docker
logs, a line per write) is read in fewer, larger reads; a slow stream is not held back."""

from __future__ import annotations

import asyncio

import pytest

from gatekeeper.proxy.server import BATCH_WAIT, Batched


class Recording:
    """Records pause/resume; while paused, what the 'engine' sends waits (as in the socket)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.paused = False
        self.pauses = 0
        self.held: list[bytes | None] = []  # None: the engine's end

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for data in held:
            self.arrive(data)

    def is_reading(self) -> bool:
        return not self.paused

    def arrive(self, data: bytes | None) -> None:
        if self.paused:
            self.held.append(data)
        elif data is None:
            self.reader.feed_eof()
        else:
            self.reader.feed_data(data)


class Transport(Recording, asyncio.ReadTransport):
    """An asyncio read transport."""


class DuckTransport(Recording):
    """Like uvloop's transports: pause and resume reading, not an asyncio.ReadTransport."""


@pytest.mark.parametrize("kind", [Transport, DuckTransport], ids=["asyncio", "uvloop-like"])
def test_small_pieces_back_to_back_are_gathered_into_one_read(kind: type[Recording]) -> None:
    async def run() -> tuple[list[bytes], int]:
        reader = asyncio.StreamReader()
        transport = kind(reader)
        reads = Batched(reader, transport)
        loop = asyncio.get_running_loop()
        transport.arrive(b"line 0\n")
        for n in range(1, 50):  # 49 more lines within the first wait
            loop.call_later(BATCH_WAIT * n / 100, transport.arrive, f"line {n}\n".encode())
        loop.call_later(BATCH_WAIT * 3, transport.arrive, None)
        got = []
        while data := await reads.read(1 << 18):
            got.append(data)
        return got, transport.pauses

    got, pauses = asyncio.run(run())
    assert b"".join(got) == b"".join(f"line {n}\n".encode() for n in range(50))  # all, in order
    assert len(got) <= 3  # line 0, then the rest in one read (not 49)
    assert pauses >= 1  # the engine's socket was left to fill meanwhile


def test_a_slow_stream_is_read_as_it_comes() -> None:
    """Control: a piece that comes while the read waits for it (logs -f, events) is taken at
    once, and the read after it is not held back either."""

    async def run() -> tuple[list[bytes], int]:
        reader = asyncio.StreamReader()
        transport = Transport(reader)
        reads = Batched(reader, transport)
        got = []
        for n in range(5):
            read = asyncio.ensure_future(reads.read(1 << 18))
            await asyncio.sleep(BATCH_WAIT * 3)  # the read waits, its buffer empty
            assert not read.done()
            transport.arrive(f"event {n}\n".encode())
            got.append(await read)
        return got, transport.pauses

    got, pauses = asyncio.run(run())
    assert got == [f"event {n}\n".encode() for n in range(5)]  # one read per event, none gathered
    assert pauses == 0  # no read was made to wait
