"""The decision's engine questions on the event loop (gatekeeper.proxy.engine.fetch_pooled):
bounded in time by one timer per question, not an asyncio.timeout scope. An engine that never
answers gives the decision an error (denied on it), a cancellation from outside (a shutdown, the
client gone) still cancels, and a target that is not visible ASCII is never sent."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gatekeeper.proxy.engine import EngineAnswer, EngineError, check_target, fetch_pooled
from gatekeeper.proxy.server import UpstreamPool


async def silent_engine(path: Path) -> asyncio.AbstractServer:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the question, never answers

    return await asyncio.start_unix_server(hold, str(path))


async def answering_engine(path: Path) -> asyncio.AbstractServer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await answer(reader, writer)

    return await asyncio.start_unix_server(serve, str(path))


def test_an_engine_that_never_answers_is_an_error_in_time(tmp_path: Path) -> None:
    async def scenario() -> object:
        server = await silent_engine(tmp_path / "engine.sock")
        async with server:
            return await fetch_pooled(UpstreamPool(), str(tmp_path / "engine.sock"), "/containers/x/json",
                                      timeout=0.2)

    answer = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert isinstance(answer, EngineError)
    assert "did not answer in time" in str(answer)


def test_an_answer_within_the_bound_is_given_and_its_timer_left_nothing_behind(tmp_path: Path) -> None:
    async def scenario() -> tuple[object, object]:
        server = await answering_engine(tmp_path / "engine.sock")
        pool = UpstreamPool()
        async with server:
            engine = str(tmp_path / "engine.sock")
            first = await fetch_pooled(pool, engine, "/containers/x/json", timeout=0.2)
            await asyncio.sleep(0.3)  # past the first question's bound: its timer must not fire
            second = await fetch_pooled(pool, engine, "/containers/x/json", timeout=0.2)
            pool.close()
            return first, second

    first, second = asyncio.run(asyncio.wait_for(scenario(), 5))
    for answer in (first, second):
        assert isinstance(answer, EngineAnswer), answer
        assert (answer.status, answer.body) == (200, b"{}")


def test_a_cancellation_from_outside_still_cancels(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await silent_engine(tmp_path / "engine.sock")
        async with server:
            asking = asyncio.ensure_future(fetch_pooled(UpstreamPool(), str(tmp_path / "engine.sock"),
                                                        "/containers/x/json", timeout=5))
            await asyncio.sleep(0.1)
            asking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asking

    asyncio.run(asyncio.wait_for(scenario(), 5))


@pytest.mark.parametrize("target", ["/containers/a b/json", "/x\x7f", "/x\t", "/caf\u00e9", "containers/x",
                                    ""])
def test_a_target_not_visible_ascii_is_never_sent(target: str) -> None:
    with pytest.raises(EngineError):
        check_target(target)
    answer = asyncio.run(fetch_pooled(UpstreamPool(), "/nonexistent/engine.sock", target))
    assert isinstance(answer, EngineError) and "not a request target" in str(answer)


@pytest.mark.parametrize("target", ["/containers/json?all=1&filters=%7B%7D", "/v1.41/images/sha256:ab/json",
                                    "/_ping"])
def test_a_visible_ascii_target_passes(target: str) -> None:
    check_target(target)
