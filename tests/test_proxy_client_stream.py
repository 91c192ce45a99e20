"""The client's connection as one protocol (gatekeeper.proxy.client_stream.ClientStream): the
reads and writes the transport makes, as asyncio's StreamReader and StreamWriter answer them,
its flow control included (a client sending faster than the proxy reads is held in its socket,
not in the proxy's memory). Every case runs against asyncio's own streams too, as the control."""

from __future__ import annotations

import asyncio

import pytest

from gatekeeper.proxy.client_stream import ClientStream

LIMIT = 100


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.written: list[bytes] = []
        self.closing = False
        self.eof_written = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def write(self, data: bytes) -> None:  # type: ignore[override]  # bytes only here
        self.written.append(bytes(data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": "fake"}.get(name, default)


class Streams:
    """asyncio's pair (the control) or ClientStream, fed by the same FakeTransport calls."""

    def __init__(self, kind: str) -> None:
        self.transport = FakeTransport()
        if kind == "asyncio":
            self.reader = asyncio.StreamReader(limit=LIMIT)
            self.protocol: asyncio.Protocol = asyncio.StreamReaderProtocol(self.reader)
            self.protocol.connection_made(self.transport)
            self.writer: object = asyncio.StreamWriter(self.transport, self.protocol, self.reader,
                                                       asyncio.get_running_loop())
        else:
            async def nothing(reader: ClientStream, writer: ClientStream) -> None:
                return None

            stream = ClientStream(nothing, LIMIT)
            stream.connection_made(self.transport)
            self.protocol, self.reader, self.writer = stream, stream, stream  # type: ignore[assignment]

    async def read(self, n: int = 1 << 18) -> bytes:
        return await self.reader.read(n)


KINDS = ["asyncio", "client_stream"]


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


@pytest.mark.parametrize("kind", KINDS)
def test_reads_hand_over_what_came_then_the_end(kind: str) -> None:
    async def case() -> list[bytes]:
        streams = Streams(kind)
        streams.protocol.data_received(b"GET / HTTP/1.1\r\n")
        streams.protocol.data_received(b"Host: x\r\n\r\n")
        got = [await streams.read()]
        streams.protocol.data_received(b"abcdefgh")
        got += [await streams.read(3), await streams.read(100)]
        streams.protocol.eof_received()
        got += [await streams.read(), await streams.read()]
        return got

    assert run(case()) == [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"abc", b"defgh", b"", b""]


@pytest.mark.parametrize("kind", KINDS)
def test_a_read_waits_for_bytes_and_is_woken_by_them(kind: str) -> None:
    async def case() -> bytes:
        streams = Streams(kind)
        reading = asyncio.ensure_future(streams.read())
        await asyncio.sleep(0)
        assert not reading.done()
        streams.protocol.data_received(b"late")
        return await reading

    assert run(case()) == b"late"


@pytest.mark.parametrize("kind", KINDS)
def test_a_client_sending_faster_than_read_is_paused_then_resumed(kind: str) -> None:
    async def case() -> list[bool]:
        streams = Streams(kind)
        seen = []
        streams.protocol.data_received(b"x" * (2 * LIMIT))
        seen.append(streams.transport.paused)  # not over 2 * limit yet
        streams.protocol.data_received(b"x")
        seen.append(streams.transport.paused)  # over: the rest waits in the socket
        await streams.read(LIMIT // 2)
        seen.append(streams.transport.paused)  # still over the limit
        await streams.read(1 << 18)
        seen.append(streams.transport.paused)  # drained: reading again
        return seen

    assert run(case()) == [False, True, True, False]


@pytest.mark.parametrize("kind", KINDS)
def test_a_reset_is_raised_by_read_and_drain(kind: str) -> None:
    async def case() -> list[str]:
        streams = Streams(kind)
        outcomes = []
        streams.protocol.data_received(b"kept")
        streams.protocol.connection_lost(ConnectionResetError("reset by peer"))
        for attempt in (streams.read, streams.writer.drain):  # type: ignore[attr-defined]
            try:
                await attempt()
                outcomes.append("none")
            except ConnectionResetError as error:
                outcomes.append(str(error))
        return outcomes

    assert run(case()) == ["reset by peer", "reset by peer"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_waiting_read_ends_when_the_connection_does(kind: str) -> None:
    async def case() -> bytes:
        streams = Streams(kind)
        reading = asyncio.ensure_future(streams.read())
        await asyncio.sleep(0)
        streams.protocol.connection_lost(None)
        return await reading

    assert run(case()) == b""


@pytest.mark.parametrize("kind", KINDS)
def test_drain_waits_while_the_write_buffer_is_full(kind: str) -> None:
    async def case() -> list[object]:
        streams = Streams(kind)
        writer = streams.writer
        writer.write(b"answer")  # type: ignore[attr-defined]
        await writer.drain()  # type: ignore[attr-defined]  # not paused: at once
        streams.protocol.pause_writing()
        draining = asyncio.ensure_future(writer.drain())  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        waited = not draining.done()
        streams.protocol.resume_writing()
        await draining
        streams.protocol.pause_writing()
        lost = asyncio.ensure_future(writer.drain())  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        streams.protocol.connection_lost(None)
        await asyncio.sleep(0)
        try:
            await lost
            after_loss: object = "returned"
        except ConnectionResetError:
            after_loss = "reset"
        try:
            await writer.drain()  # type: ignore[attr-defined]
            again: object = "returned"
        except ConnectionResetError as error:
            again = str(error)
        return [streams.transport.written, waited, after_loss, again]

    assert run(case()) == [[b"answer"], True, "returned", "Connection lost"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_clients_half_close_keeps_the_connection_for_the_answer(kind: str) -> None:
    async def case() -> tuple[object, bool, bool]:
        streams = Streams(kind)
        keep = streams.protocol.eof_received()
        writer = streams.writer
        writer.write_eof()  # type: ignore[attr-defined]
        return keep, streams.transport.eof_written, writer.can_write_eof()  # type: ignore[attr-defined]

    assert run(case()) == (True, True, True)


@pytest.mark.parametrize("kind", KINDS)
def test_two_reads_waiting_at_once_is_an_error_not_a_lost_wake_up(kind: str) -> None:
    async def case() -> tuple[bytes, str]:
        streams = Streams(kind)
        first = asyncio.ensure_future(streams.read())
        await asyncio.sleep(0)
        try:
            await streams.read()
            second = "read"
        except RuntimeError:
            second = "refused"
        streams.protocol.data_received(b"one")
        return await first, second

    assert run(case()) == (b"one", "refused")
